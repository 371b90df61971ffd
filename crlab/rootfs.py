"""Guest initramfs: a cached base per (target, suite) and a tiny per-job overlay.

The base holds rootfs/base/ (init, /etc), the target's busybox and dropbear, /dev/console and the
suite's files.  The overlay holds what must never be shared between runs: the run's SSH public
key.  The kernel unpacks concatenated cpio archives in order, so the job's initrd is base+overlay.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from crlab import userland
from crlab.cache import Cache, hash_file, hash_inputs
from crlab.config import SuiteConfig
from crlab.cpio import CpioWriter
from crlab.paths import ROOTFS_DIR
from crlab.targets import TargetProfile

GUEST_SUITES_DIR = "/opt/crlab/suites"


@dataclass
class Rootfs:
    key: str
    path: Path  # the gzipped cpio
    cached: bool


def _tree_digest(root: Path) -> list[tuple[str, str, int]]:
    out = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            out.append((str(path.relative_to(root)), hash_file(path), path.stat().st_mode & 0o777))
    return out


def suite_extras(profile: TargetProfile, suite: SuiteConfig | None, cache: Cache) -> tuple[Path | None, list[Path]]:
    """What a suite adds beyond its files: its C programs built for the target (a bin/ directory),
    and the trees of the C/R engines it runs that the target has (e.g. criu and its libraries)."""
    if suite is None:
        return None, []
    programs = None
    if suite.programs:
        programs = userland.build_static_programs(profile, list(suite.programs), cache,
                                                  extra_cflags=suite.program_cflags,
                                                  common_sources=suite.program_common)
    from crlab.engines import get_engine

    # an engine says itself where it runs (CRIU: where the profile lists it; linux-cr: on the
    # targets its series has a port for, whatever engines the profile lists for its kernels)
    engines = [get_engine(name) for name in suite.engines]
    trees = [engine.guest_tree(profile, cache) for engine in engines if engine.unsupported_reason(profile) is None]
    return programs, trees


def rootfs_key(profile: TargetProfile, suite: SuiteConfig | None, busybox: Path, dropbear: Path | None,
               extras: tuple[Path | None, list[Path]] = (None, [])) -> str:
    suite_files = []
    if suite is not None:
        suite_files = [(name, hash_file(suite.suite_dir / name)) for name in suite.files]
    return hash_inputs("rootfs", {
        "target": profile.name,
        "base": _tree_digest(ROOTFS_DIR / "base"),
        "busybox": hash_file(busybox),
        "dropbear": str(dropbear) if dropbear else None,  # entry paths are content keys already
        "suite": suite.suite if suite else None,
        "suite_files": suite_files,
        # cache entry paths are content keys of their own
        "programs": str(extras[0]) if extras[0] else None,
        "engine_trees": [str(tree) for tree in extras[1]],
    })


def build_rootfs(profile: TargetProfile, suite: SuiteConfig | None, cache: Cache, with_ssh: bool = True) -> Rootfs:
    busybox = userland.busybox(profile, cache)
    dropbear = userland.dropbear(profile, cache) if with_ssh else None
    extras = suite_extras(profile, suite, cache)
    key = rootfs_key(profile, suite, busybox, dropbear, extras)

    def build(scratch: Path) -> None:
        archive = CpioWriter()
        for directory in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp",
                          "run", "root", "opt", "opt/crlab", "opt/crlab/suites", "var", "var/log"):
            archive.add_dir(directory)
        archive.add_dir("root/.ssh", mode=0o700)
        archive.add_chardev("dev/console", 5, 1, mode=0o600)
        archive.add_chardev("dev/null", 1, 3, mode=0o666)
        archive.add_file("bin/busybox", busybox, mode=0o755)
        archive.add_symlink("bin/sh", "busybox")
        if dropbear is not None:
            archive.add_tree(dropbear)
        archive.add_tree(ROOTFS_DIR / "base")
        if suite is not None:
            target_dir = f"{GUEST_SUITES_DIR.lstrip('/')}/{suite.suite}"
            archive.add_dir(target_dir)
            for name in suite.files:
                source = suite.suite_dir / name
                archive.add_file(f"{target_dir}/{name}", source, mode=source.stat().st_mode & 0o777)
            programs, engine_trees = extras
            if programs is not None:
                archive.add_dir(f"{target_dir}/bin")
                for program in sorted(programs.iterdir()):
                    archive.add_file(f"{target_dir}/bin/{program.name}", program, mode=0o755)
            for tree in engine_trees:
                archive.add_tree(tree)
        archive.write(scratch / "initramfs.cpio.gz")

    what = f"rootfs for {profile.name}" + (f" with suite {suite.suite}" if suite else "")
    entry = cache.get_or_build("rootfs", key, build, what=what)
    return Rootfs(key, entry.path / "initramfs.cpio.gz", cached=not entry.built)


def job_initrd(base: Rootfs, authorized_key: str | None, job_dir: Path) -> Path:
    """base + an overlay with this run's public key, written into the job's own directory."""
    out = job_dir / "initrd.cpio.gz"
    overlay = job_dir / "overlay.cpio.gz"
    archive = CpioWriter()
    archive.add_dir("root", mode=0o700)
    archive.add_dir("root/.ssh", mode=0o700)
    if authorized_key:
        archive.add_file("root/.ssh/authorized_keys", (authorized_key.strip() + "\n").encode(), mode=0o600)
    archive.write(overlay)
    with open(out, "wb") as dst:
        for part in (base.path, overlay):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, dst)
    overlay.unlink()
    return out
