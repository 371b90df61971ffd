"""Static programs cross-built for a target with its Debian cross toolchain, cached by content.

`static_artifact` is the one shape of every such artifact: a recipe fills a scratch directory, each
output is checked to be a static ELF program of the target, a fresh build is smoke-run where the host
can run it, and the entry records its inputs, ELF headers and timings in info.json.  Recipes here:
busybox and dropbear from Debian's source packages (for targets Debian has no userland for), and
`build_static_programs`, which compiles C files one program each (test programs for the C/R suites).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from crlab.cache import Cache, hash_file, hash_inputs, host_build_lock
from crlab.targets import TargetProfile
from crlab.userland.common import USERLAND_RECIPE, Job, UserlandError, run
from crlab.userland.debian import Apt
from crlab.userland.elf import check_elf, runs_on_this_host

# Config edits after `make defconfig` for a static (cross) build of busybox against glibc.
# None turns an option off.  tc does not build against current kernel headers; the rest need
# libraries or features a static glibc build does not have (PAM, SELinux, Sun RPC).
BUSYBOX_CONFIG: dict[str, str | None] = {
    "CONFIG_STATIC": "y",
    "CONFIG_PIE": None,
    "CONFIG_BUILD_LIBBUSYBOX": None,
    "CONFIG_TC": None,
    "CONFIG_FEATURE_TC_INGRESS": None,
    "CONFIG_PAM": None,
    "CONFIG_SELINUX": None,
    "CONFIG_FEATURE_MOUNT_NFS": None,
    "CONFIG_FEATURE_INETD_RPC": None,
}

DROPBEAR_CONFIGURE = (
    "--enable-static",
    "--enable-bundled-libtom",
    "--disable-zlib",
    "--disable-pam",
    "--disable-lastlog",
    "--disable-utmp",
    "--disable-utmpx",
    "--disable-wtmp",
    "--disable-wtmpx",
)
DROPBEAR_PROGRAMS = "dropbear dropbearkey"
# Debian's cross sysroots have no libcrypt (glibc 2.36 left crypt() to libxcrypt, which has no
# -cross package), and dropbear refuses password authentication without crypt(): a source-built
# dropbear accepts public-key logins only.
DROPBEAR_LOCALOPTIONS = "#define DROPBEAR_SVR_PASSWORD_AUTH 0\n"

STATIC_PROGRAM_CFLAGS = ("-static", "-O2", "-Wall")

Recipe = Callable[[Path, Job], None]


class Smoke:
    """How to smoke-run a fresh build on a host that runs the target's programs natively."""

    def __init__(self, program: str, args: Sequence[str], expect_stdout: str | None = None) -> None:
        self.program, self.args, self.expect_stdout = program, list(args), expect_stdout

    def check(self, root: Path, what: str) -> str:
        proc = subprocess.run([str(root / self.program), *self.args], capture_output=True, text=True, timeout=30)
        out = proc.stdout.strip()
        if proc.returncode != 0 or (self.expect_stdout is not None and out != self.expect_stdout):
            raise UserlandError(f"{what}: {self.program} does not run on this host "
                                f"(exit {proc.returncode}): {(out + ' ' + proc.stderr.strip()).strip()}")
        return out


def static_artifact(profile: TargetProfile, kind: str, inputs: dict[str, Any], recipe: Recipe,
                    outputs: Sequence[str], cache: Cache, what: str, smoke: Smoke | None = None) -> Path:
    """The cache entry kind/<hash of inputs>, made by `recipe(scratch, job)` if missing; every path in
    `outputs` (relative to the entry) must then be a static program of the target."""

    def build(scratch: Path) -> None:
        started = time.monotonic()
        log = scratch / "build.log"
        log.touch()
        job = Job(what, log)
        recipe(scratch, job)
        elf = {rel: check_elf(scratch / rel, profile, static=True, what=what)._asdict() for rel in outputs}
        host_run = ""
        if smoke is not None and runs_on_this_host(profile):
            host_run = smoke.check(scratch, what)
        meta = {**inputs, "elf": elf, "host_run": host_run, "seconds": round(time.monotonic() - started, 1),
                "build_lock_wait_seconds": round(job.lock_wait, 1)}
        (scratch / "info.json").write_text(json.dumps(meta, indent=1) + "\n")

    return cache.get_or_build(kind, hash_inputs(kind, inputs), build, what=what).path


@contextlib.contextmanager
def compile_lock(job: Job) -> Iterator[None]:
    """The host-wide build lock around a compile, counting the wait into the job."""
    with host_build_lock() as waited:
        job.lock_wait += waited
        yield


# --------------------------------------------------------------------------------------------------
# Debian source packages


def debian_source(apt: Apt, srcpkg: str, what: str) -> tuple[Path, dict[str, str]]:
    """Debian's source package unpacked (with Debian's patches) in the cache: (src dir, info)."""
    info = apt.source(srcpkg, what)

    def fetch(scratch: Path) -> None:
        job = Job(what, scratch / "build.log")
        dl = scratch / "download"
        dl.mkdir()
        os.chmod(dl, 0o755)  # apt's _apt user writes there
        run(["apt-get", "source", "-q", srcpkg], what=what, job=job, cwd=dl)
        if not (dl / info["dsc"]).exists():
            raise UserlandError(f"{what}: apt-get source did not fetch {info['dsc']} (apt changed?)")
        unpacked = [p for p in dl.iterdir() if p.is_dir()]
        if len(unpacked) != 1:
            raise UserlandError(f"{what}: apt-get source unpacked {len(unpacked)} trees, expected one")
        unpacked[0].rename(scratch / "src")
        changelog = run(["dpkg-parsechangelog", "-l", str(scratch / "src/debian/changelog"), "-S", "Version"],
                        what=what, job=job)
        full = {**info, "full_version": changelog.stdout.strip()}
        (scratch / "info.json").write_text(json.dumps(full, indent=1) + "\n")

    entry = apt.cache.get_or_build("deb-source", hash_inputs("deb-source", info), fetch, what=f"source of {srcpkg}")
    return entry.path / "src", json.loads((entry.path / "info.json").read_text())


def set_kconfig(config: Path, settings: dict[str, str | None]) -> None:
    """Set (or, for None, unset) Kconfig symbols in a .config, appending those it lacks."""
    lines = config.read_text().splitlines()
    seen: set[str] = set()
    out: list[str] = []
    for line in lines:
        m = re.match(r"^(?:# )?(CONFIG_[A-Za-z0-9_]+)(?:=| is not set)", line)
        if m and m.group(1) in settings:
            name = m.group(1)
            seen.add(name)
            value = settings[name]
            out.append(f"{name}={value}" if value is not None else f"# {name} is not set")
        else:
            out.append(line)
    for name, value in settings.items():
        if name not in seen:
            out.append(f"{name}={value}" if value is not None else f"# {name} is not set")
    config.write_text("\n".join(out) + "\n")


def busybox_source_inputs(profile: TargetProfile, apt: Apt, what: str) -> dict[str, Any]:
    return {"from": "source", "source": apt.source("busybox", what), "cross_compile": profile.cross_compile,
            "toolchain": apt.toolchain(profile, what), "config": BUSYBOX_CONFIG, "recipe": USERLAND_RECIPE}


def dropbear_source_inputs(profile: TargetProfile, apt: Apt, what: str) -> dict[str, Any]:
    return {"from": "source", "source": apt.source("dropbear", what), "cross_compile": profile.cross_compile,
            "toolchain": apt.toolchain(profile, what), "configure": list(DROPBEAR_CONFIGURE),
            "localoptions": DROPBEAR_LOCALOPTIONS, "programs": DROPBEAR_PROGRAMS, "recipe": USERLAND_RECIPE}


def busybox_recipe(profile: TargetProfile, apt: Apt) -> Recipe:
    def recipe(scratch: Path, job: Job) -> None:
        src, _info = debian_source(apt, "busybox", job.what)
        build = scratch / "build"
        shutil.copytree(src, build, symlinks=True)
        make = ["make", f"CROSS_COMPILE={profile.cross_compile}"]
        with compile_lock(job):
            run([*make, "defconfig"], what=job.what, job=job, cwd=build)
            set_kconfig(build / ".config", BUSYBOX_CONFIG)
            run([*make, "oldconfig"], what=job.what, job=job, cwd=build, input="\n" * 2000)
            run([*make, "-j2", "busybox"], what=job.what, job=job, cwd=build)
        shutil.copyfile(build / "busybox", scratch / "busybox")
        os.chmod(scratch / "busybox", 0o755)
        shutil.copyfile(build / ".config", scratch / "busybox.config")
        shutil.rmtree(build)

    return recipe


def dropbear_recipe(profile: TargetProfile, apt: Apt) -> Recipe:
    def recipe(scratch: Path, job: Job) -> None:
        src, _info = debian_source(apt, "dropbear", job.what)
        build = scratch / "build"
        shutil.copytree(src, build, symlinks=True)
        cross = profile.cross_compile
        (build / "localoptions.h").write_text(DROPBEAR_LOCALOPTIONS)
        with compile_lock(job):
            run(["./configure", f"--host={cross.rstrip('-')}", *DROPBEAR_CONFIGURE], what=job.what, job=job,
                cwd=build)
            run(["make", "-j2", f"PROGRAMS={DROPBEAR_PROGRAMS}", "STATIC=1"], what=job.what, job=job, cwd=build)
            run([f"{cross}strip", "dropbear", "dropbearkey"], what=job.what, job=job, cwd=build)
        for name, dest in (("dropbear", "usr/sbin/dropbear"), ("dropbearkey", "usr/bin/dropbearkey")):
            (scratch / "root" / dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(build / name, scratch / "root" / dest)
            os.chmod(scratch / "root" / dest, 0o755)
        shutil.rmtree(build)

    return recipe


# --------------------------------------------------------------------------------------------------
# C programs of our own


def build_static_programs(profile: TargetProfile, sources: list[Path], cache: Cache,
                          extra_cflags: Sequence[str] = (), common_sources: Sequence[Path] = ()) -> Path:
    """A directory of static programs for the target, one per C file (named after it without .c),
    built with the target's Debian cross gcc and cached by the content of the sources, the files
    linked into every program (`common_sources`), the headers beside them, the flags and the
    toolchain's version."""
    what = f"static programs ({', '.join(p.name for p in sources)}) for {profile.name}"
    names = [p.stem for p in sources]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserlandError(f"{what}: two sources would make the same program: {', '.join(duplicates)}")
    headers = sorted({h for src in [*sources, *common_sources] for h in src.parent.glob("*.h")})
    cflags = [*STATIC_PROGRAM_CFLAGS, *extra_cflags]
    inputs = {
        "sources": [[p.name, hash_file(p)] for p in sources],
        "common": [[p.name, hash_file(p)] for p in common_sources],
        "headers": [[p.name, hash_file(p)] for p in headers],
        "cflags": cflags,
        "cross_compile": profile.cross_compile,
        "toolchain": Apt(cache).toolchain(profile, what),
        "recipe": USERLAND_RECIPE,
    }

    def recipe(scratch: Path, job: Job) -> None:
        copies = scratch / "src"
        copies.mkdir()
        for path in [*sources, *common_sources, *headers]:  # compile what was hashed, even if it changes now
            shutil.copyfile(path, copies / path.name)
        (scratch / "bin").mkdir()
        # no build lock: a few small files, and a C/R suite should not wait for a kernel build
        for src in sources:
            run([f"{profile.cross_compile}gcc", *cflags, "-Isrc", "-o", f"bin/{src.stem}", f"src/{src.name}",
                 *(f"src/{c.name}" for c in common_sources)], what=what, job=job, cwd=scratch)

    entry = static_artifact(profile, "static-programs", inputs, recipe, [f"bin/{n}" for n in names], cache, what)
    return entry / "bin"
