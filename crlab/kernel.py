"""Kernel stages: source -> patch -> configure -> build, each cached by the hash of its inputs.

source     the pristine tree, unpacked once into a read-only cache entry
patch      a copy of it (hard links) with the patch series applied; all patches or no tree at all
configure  base config + fragments merged by the kernel's own scripts/kconfig/merge_config.sh,
           then every requested symbol checked against the resulting .config
build      the target's image made with its cross toolchain under ccache (depend mode), in an object
           tree kept per (kernel tree, target) so that a rebuild after a small change is incremental;
           KBUILD_BUILD_* come from the inputs, so the same inputs give the same image bytes
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from crlab import runner
from crlab.buildwarnings import first_error
from crlab.cache import Cache, force_rmtree, hash_file, hash_inputs, host_build_lock
from crlab.config import KernelSource, KernelTree
from crlab.patchsafety import check_patch_file
from crlab.targets import TargetProfile

StageCallback = Callable[[str], object]


class KernelStageError(Exception):
    """A stage failed for a reason that belongs to the kernel (patch, config, build)."""

    def __init__(self, stage: str, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.stage = stage
        self.log = log


@dataclass
class BuiltKernel:
    """A cache entry holding one built kernel."""

    key: str
    dir: Path
    image: Path
    config: Path
    build_log: Path
    metadata: dict[str, object] = field(default_factory=dict)
    cached: bool = False  # True when nothing had to be built

    @property
    def release(self) -> str:
        return str(self.metadata.get("kernelrelease", ""))

    @property
    def uts_version(self) -> str:
        return str(self.metadata.get("uts_version", ""))

    @property
    def image_sha256(self) -> str:
        return str(self.metadata.get("image_sha256", ""))


# the orchestrator's name for runner.cancel_all (kept while it still calls it by this name)
terminate_running = runner.cancel_all


def _run(cmd: list[str], log: Path, cwd: Path | None = None, env: dict[str, str] | None = None,
         timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command, appending the command line and its output to `log`."""
    return runner.run(cmd, log=log, cwd=cwd, env=env, timeout=timeout)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------- source


def source_key(source: KernelSource) -> str:
    """Identity of a source's content, computed cheaply (no unpacking)."""
    if source.kind == "debian":
        version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", source.value], text=True,
                                 capture_output=True).stdout.strip()
        if not version:
            raise KernelStageError("source", f"Debian package {source.value} is not installed "
                                   f"(run `harness.py doctor`)")
        return hash_inputs("source", {"debian": source.value, "version": version})
    if source.kind == "tarball":
        return hash_inputs("source", {"sha256": source.sha256})
    if source.kind == "git":
        return hash_inputs("source", {"git": source.value, "commit": _git_commit(source)})
    if source.kind == "local":
        return hash_inputs("source", {"local": source.value, "state": _local_tree_state(Path(source.value))})
    raise ValueError(source.kind)


def _git_commit(source: KernelSource) -> str:
    ref = source.ref or "HEAD"
    if re.fullmatch(r"[0-9a-f]{40}", ref):
        return ref
    out = subprocess.run(["git", "ls-remote", source.value, ref], text=True, capture_output=True, timeout=120)
    if out.returncode != 0 or not out.stdout.strip():
        raise KernelStageError("source", f"git ls-remote {source.value} {ref} failed: {out.stderr.strip()}")
    return out.stdout.split()[0]


def _local_tree_state(tree: Path) -> str:
    """A local tree is identified by its git commit plus uncommitted changes, else by file stats."""
    head = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], text=True, capture_output=True)
    if head.returncode == 0:
        diff = subprocess.run(["git", "-C", str(tree), "diff", "HEAD"], capture_output=True).stdout
        untracked = subprocess.run(["git", "-C", str(tree), "status", "--porcelain"], capture_output=True).stdout
        return head.stdout.strip() + hashlib.sha256(diff + untracked).hexdigest()
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(tree):
        dirs.sort()
        for name in sorted(files):
            st = os.lstat(os.path.join(root, name))
            digest.update(f"{os.path.relpath(os.path.join(root, name), tree)}:{st.st_size}:{st.st_mtime_ns}\n"
                          .encode())
    return digest.hexdigest()


def prepare_source(source: KernelSource, cache: Cache, log: Path) -> tuple[str, Path]:
    """Return (key, tree) for a pristine source; unpacks it into a read-only cache entry once."""
    key = source_key(source)
    if source.kind == "local":
        return key, Path(source.value)

    def unpack(scratch: Path) -> None:
        tree = scratch / "tree"
        if source.kind == "debian":
            tarballs = sorted(Path("/usr/src").glob(f"{source.value}.tar.*"))
            if not tarballs:
                raise KernelStageError("source", f"/usr/src/{source.value}.tar.* not found")
            _unpack(tarballs[0], tree, log)
        elif source.kind == "tarball":
            archive = scratch / "download"
            if re.match(r"^[a-z]+://", source.value):
                urllib.request.urlretrieve(source.value, archive)  # noqa: S310 - url from the user's config
            else:
                shutil.copyfile(source.value, archive)
            actual = hash_file(archive)
            if actual != source.sha256:
                raise KernelStageError("source", f"sha256 mismatch for {source.value}: "
                                       f"expected {source.sha256}, got {actual}")
            _unpack(archive, tree, log)
            archive.unlink()
        elif source.kind == "git":
            commit = _git_commit(source)
            _check(_run(["git", "init", "-q", str(tree)], log), "source", "git init", log)
            _check(_run(["git", "-C", str(tree), "fetch", "--depth", "1", source.value, commit], log),
                   "source", f"git fetch {source.value} {commit}", log)
            _check(_run(["git", "-C", str(tree), "checkout", "-q", "FETCH_HEAD"], log), "source",
                   "git checkout", log)
        # the pristine tree is shared by every job: nobody may write to it
        _run(["chmod", "-R", "a-w", str(tree)], log)

    entry = cache.get_or_build("sources", key, unpack, what=f"kernel source {source.kind}:{source.value}")
    return key, entry.path / "tree"


def _unpack(archive: Path, dest: Path, log: Path) -> None:
    dest.mkdir(parents=True)
    proc = _run(["tar", "-xf", str(archive), "-C", str(dest), "--strip-components=1", "--no-same-owner"], log)
    _check(proc, "source", f"unpacking {archive}", log)


def first_compiler_error(log: Path) -> str | None:
    """The first compiler or linker error of a build log (crlab.buildwarnings reads it)."""
    try:
        return first_error(log.read_text(errors="replace"))
    except OSError:
        return None


def _check(proc: subprocess.CompletedProcess[str], stage: str, what: str, log: Path) -> None:
    if proc.returncode != 0:
        first = first_compiler_error(log) if stage == "build" else None
        cause = f"{first}\n" if first else ""
        raise KernelStageError(stage, f"{what} failed (exit {proc.returncode}): {cause}{_tail(log)}", log)


# --------------------------------------------------------------------------- patch

_DIFF_PATH = re.compile(r"^(?:---|\+\+\+) (?:[ab]/)?(\S+)")
_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+\d+(?:,\d+)? @@")


def check_patch_paths(patch: Path, tree: Path | None = None) -> list[str]:
    """Reasons an (untrusted) patch must not be applied (crlab.patchsafety): paths leaving the tree,
    symlinks made, changed or (with `tree`) written through, absurd sizes."""
    return check_patch_file(patch, tree)


def _failing_hunk(patch: Path, file: str, line: int) -> str:
    """Name the hunk of `patch` for `file` that starts at old line `line` (git apply reports that)."""
    current = None
    index = 0
    for text in patch.read_text(errors="replace").splitlines():
        match = _DIFF_PATH.match(text)
        if match and text.startswith("---"):
            current, index = match.group(1), 0
        hunk = _HUNK.match(text)
        if hunk and current == file:
            index += 1
            if int(hunk.group(1)) == line:
                return f"hunk #{index} ({text.strip()})"
    return f"the hunk at line {line}"


def patched_tree_key(source_key_: str, patches: tuple[Path, ...]) -> str:
    return hash_inputs("tree", {"source": source_key_, "patches": [hash_file(p) for p in patches]})


def apply_patches(source_key_: str, source_tree: Path, patches: tuple[Path, ...], cache: Cache,
                  log: Path) -> tuple[str, Path]:
    """Return (key, tree) with every patch applied; on any failure nothing is left behind."""
    if not patches:
        return source_key_, source_tree
    key = patched_tree_key(source_key_, patches)
    if not cache.has("trees", key):
        for patch in patches:
            problems = check_patch_paths(patch, source_tree)
            if problems:
                raise KernelStageError("patch", f"refusing patch {patch.name}: " + "; ".join(problems))

    def patch_tree(scratch: Path) -> None:
        tree = scratch / "tree"
        # hard links are cheap; git apply replaces a file rather than writing through the link
        _check(_run(["cp", "-al", str(source_tree), str(tree)], log), "patch", "copying the tree", log)
        _run(["find", str(tree), "-type", "d", "-exec", "chmod", "u+w", "{}", "+"], log)
        for number, patch in enumerate(patches, 1):
            proc = subprocess.run(["git", "apply", "--verbose", "-p1", str(patch)], cwd=tree, text=True,
                                  capture_output=True, env={**os.environ, "GIT_DIR": "/nonexistent"})
            with open(log, "a") as fh:
                fh.write(f"$ git apply -p1 {patch}\n{proc.stdout}{proc.stderr}[exit {proc.returncode}]\n")
            if proc.returncode != 0:
                raise KernelStageError("patch", _describe_apply_failure(number, patch, proc.stderr), log)
        # the build's timestamp comes from the top Makefile's date: a patch to it must not change that
        if (source_tree / "Makefile").exists():
            pristine = (source_tree / "Makefile").stat()
            os.utime(tree / "Makefile", ns=(pristine.st_atime_ns, pristine.st_mtime_ns))
        _run(["chmod", "-R", "a-w", str(tree)], log)

    entry = cache.get_or_build("trees", key, patch_tree, what=f"patched tree ({len(patches)} patches)")
    return key, entry.path / "tree"


def _describe_apply_failure(number: int, patch: Path, stderr: str) -> str:
    match = re.search(r"error: patch failed: (.+):(\d+)", stderr)
    if match:
        file, line = match.group(1), int(match.group(2))
        hunk = _failing_hunk(patch, file, line)
        return f"patch {number} ({patch.name}) does not apply: {hunk} of {file} failed; tree left untouched"
    first = next((ln for ln in stderr.splitlines() if ln.startswith("error:")), stderr.strip())
    return f"patch {number} ({patch.name}) does not apply: {first}; tree left untouched"


# --------------------------------------------------------------------------- configure + build

_SYMBOL_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_SYMBOL_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


def read_config_lines(path: Path) -> dict[str, tuple[str, int]]:
    """Symbol -> (value, line) for a .config or a fragment; 'n' stands for 'is not set'."""
    values: dict[str, tuple[str, int]] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if match := _SYMBOL_SET.match(line):
            values[match.group(1)] = (match.group(2), number)
        elif match := _SYMBOL_UNSET.match(line):
            values[match.group(1)] = ("n", number)
    return values


def check_requested_symbols(fragments: list[Path], final_config: Path) -> list[str]:
    """Every symbol a fragment asked for, with the value it did not get."""
    final = {sym: value for sym, (value, _) in read_config_lines(final_config).items()}
    requested: dict[str, tuple[str, Path, int]] = {}
    for fragment in fragments:
        for sym, (value, line) in read_config_lines(fragment).items():
            requested[sym] = (value, fragment, line)  # a later fragment overrides an earlier one
    lost = []
    for sym, (want, fragment, line) in sorted(requested.items()):
        got = final.get(sym, "n")
        if got != want:
            shown = "not set" if got == "n" else got
            lost.append(f"{sym}={want} ({fragment.name}:{line}) ended up {shown}")
    return lost


# Bump when the way a kernel is built changes in a way its inputs do not show.
# 2: reproducible KBUILD_BUILD_* values, ccache depend mode, kept object trees
# 3: sources that .incbin a build product are compiled without ccache (see CC_WRAPPER)
KERNEL_RECIPE = "3"

# ccache hashes a source, its headers and the compiler's arguments, but not a file that the
# assembler pulls in with .incbin.  The kernel's boot wrappers do exactly that (ARM's piggy.S
# includes the compressed kernel, piggy_data): under ccache, every zImage after the first one
# carried the first build's kernel.  Such sources go to the compiler directly.
CC_WRAPPER = """#!/bin/sh
# crlab: ccache for everything except sources that .incbin another file (written by crlab.kernel)
for arg in "$@"; do
    case "$arg" in
        *.S|*.c) if [ -f "$arg" ] && grep -q '\\.incbin' "$arg"; then exec "$@"; fi ;;
    esac
done
exec ccache "$@"
"""


def cc_wrapper(cache: Cache) -> Path:
    """The compiler wrapper, at a path that stays the same for this cache (kbuild records CC)."""
    path = cache.root / "bin" / "crlab-cc"
    if not path.is_file() or path.read_text() != CC_WRAPPER:
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_name(f".crlab-cc.{os.getpid()}")
        scratch.write_text(CC_WRAPPER)
        scratch.chmod(0o755)
        scratch.replace(path)
    return path


def fragment_paths(kernel: KernelTree, profile: TargetProfile, fragments_dir: Path) -> list[Path]:
    """The user's fragments, then those of the target's C/R engines, then the target's own (the
    target has the last word on arch facts)."""
    engines = [fragments_dir / "engine" / f"{engine}.config" for engine in profile.engines]
    return [*kernel.fragments, *engines, *(fragments_dir / name for name in profile.kconfig_fragments)]


def toolchain_version(profile: TargetProfile) -> str:
    gcc = f"{profile.cross_compile}gcc"
    try:
        out = subprocess.run([gcc, "--version"], text=True, capture_output=True).stdout
    except FileNotFoundError:
        return "missing"
    return out.splitlines()[0] if out else "unknown"


def build_key(tree_key: str, kernel: KernelTree, profile: TargetProfile, fragments_dir: Path) -> str:
    frags = fragment_paths(kernel, profile, fragments_dir)
    missing = [str(p) for p in frags if not p.is_file()]
    if missing:
        raise KernelStageError("configure", f"Kconfig fragment not found: {', '.join(missing)}")
    base = kernel.config_base
    return hash_inputs("kernel", {
        "tree": tree_key,
        "base": base if not os.path.isabs(base) else hash_file(Path(base)),
        "fragments": [hash_file(p) for p in frags],
        "toolchain": toolchain_version(profile),
        "arch": profile.arch,
        "cross": profile.cross_compile,
        "make_target": profile.make_target,
        "tiny": list(profile.tiny_arch_fragments),
        "recipe": KERNEL_RECIPE,
    })


def planned_build_key(kernel: KernelTree, profile: TargetProfile, fragments_dir: Path) -> str:
    """The build's cache key from the inputs alone, without unpacking or patching anything."""
    tree_key = source_key(kernel.source)
    if kernel.patches:
        tree_key = patched_tree_key(tree_key, kernel.patches)
    return build_key(tree_key, kernel, profile, fragments_dir)


def lookup_kernel(cache: Cache, key: str) -> BuiltKernel | None:
    if not cache.has("kernels", key):
        return None
    return _entry_kernel(cache.entry("kernels", key), key, cached=True)


def _entry_kernel(entry: Path, key: str, cached: bool) -> BuiltKernel:
    metadata = json.loads((entry / "metadata.json").read_text())
    return BuiltKernel(key=key, dir=entry, image=entry / str(metadata["image"]), config=entry / "config",
                       build_log=entry / "build.log", metadata=metadata, cached=cached)


def kbuild_identity(key: str, tree: Path) -> dict[str, str]:
    """What kbuild writes into the image about the build, from the build's inputs alone: the date of
    the source (its top Makefile's), the build key as host, and build number 1 (not .version's
    counter), so that two builds of the same inputs give the same bytes."""
    stamp = time.gmtime((tree / "Makefile").stat().st_mtime)
    return {
        "KBUILD_BUILD_TIMESTAMP": time.strftime("%a %b %d %H:%M:%S UTC %Y", stamp),
        "KBUILD_BUILD_USER": "crlab",
        "KBUILD_BUILD_HOST": f"crlab-{key[:12]}",
        "KBUILD_BUILD_VERSION": "1",
    }


def make_env(profile: TargetProfile, cache: Cache, base_dir: Path | None = None
             ) -> tuple[list[str], dict[str, str]]:
    """make's variables and environment for this target, compilers under ccache in depend mode.

    Depend mode takes the kernel's own -MMD dependency files instead of running the preprocessor a
    second time, which is most of ccache's cost on a cold cache.  `base_dir` (the workspace) makes
    paths under it relative in ccache's hashes, so another workspace hits the same entries.
    """
    env = dict(os.environ)
    # the inode cache keeps the hashes of headers that depend mode would otherwise hash again for
    # every object; uncompressed entries save the compressor's time on a cold build
    env.update(ARCH=profile.arch, CROSS_COMPILE=profile.cross_compile, CCACHE_DIR=str(cache.ccache_dir),
               CCACHE_DEPEND="1", CCACHE_NOHASHDIR="1", CCACHE_INODECACHE="1", CCACHE_NOCOMPRESS="1")
    if base_dir is not None:
        env["CCACHE_BASEDIR"] = str(base_dir)
    make_vars = [f"ARCH={profile.arch}", f"CROSS_COMPILE={profile.cross_compile}"]
    if shutil.which("ccache"):
        make_vars.append(f"CC={cc_wrapper(cache)} {profile.cross_compile}gcc")
    return make_vars, env


def workspace_dir(cache: Cache, kernel: KernelTree, profile: TargetProfile) -> Path:
    """Where the most recent build of this (kernel tree, target) keeps its source copy and objects:
    always the same path, so an unchanged file is not rebuilt and a one-file patch builds in seconds."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", kernel.name)
    return cache.root / "objtrees" / f"{name}-{profile.name}"


def sync_tree(tree: Path, dest: Path) -> int | None:
    """Make `dest` hold the files of `tree`: hard links at first; later only what differs is
    replaced, by a copy with a fresh mtime, so make rebuilds exactly what changed, also when going
    back to an older tree.  Cached trees never change, so a file is the same when it is the same
    inode, or a copy of it (dest's manifest remembers what each copy was made from).  Returns how
    many entries changed (None: a fresh copy)."""
    manifest_path = dest.parent / f"{dest.name}.copies.json"
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".partial")
        if partial.exists():
            force_rmtree(partial)
        subprocess.run(["cp", "-al", str(tree), str(partial)], check=True)
        subprocess.run(["find", str(partial), "-type", "d", "-exec", "chmod", "u+w", "{}", "+"], check=True)
        manifest_path.unlink(missing_ok=True)
        partial.rename(dest)
        return None
    try:
        copies: dict[str, list[int]] = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        copies = {}
    manifest_path.unlink(missing_ok=True)  # rewritten below; a crash in between only costs rebuilds
    changed = 0
    for root, dirs, files in os.walk(tree):
        rel_dir = os.path.relpath(root, tree)
        target = dest / rel_dir
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            target.unlink()
        target.mkdir(exist_ok=True)
        existing = set(os.listdir(target))
        for name in dirs + files:
            existing.discard(name)
            src, dst = os.path.join(root, name), target / name
            rel = os.path.normpath(os.path.join(rel_dir, name))
            s = os.lstat(src)
            try:
                d: os.stat_result | None = os.lstat(dst)
            except FileNotFoundError:
                d = None
            if stat.S_ISDIR(s.st_mode):
                continue  # os.walk comes to it
            identity = [s.st_ino, s.st_dev, s.st_size, s.st_mtime_ns]
            if d is not None and ((d.st_ino, d.st_dev) == (s.st_ino, s.st_dev) or copies.get(rel) == identity):
                continue
            changed += 1
            if d is not None:
                force_rmtree(dst) if stat.S_ISDIR(d.st_mode) else dst.unlink()
            if stat.S_ISLNK(s.st_mode):
                dst.symlink_to(os.readlink(src))
            else:
                shutil.copyfile(src, dst)
                os.chmod(dst, s.st_mode & 0o755 | 0o200)
            copies[rel] = identity
        for name in existing:  # gone from the new tree
            changed += 1
            gone = target / name
            copies.pop(os.path.normpath(os.path.join(rel_dir, name)), None)
            force_rmtree(gone) if gone.is_dir() and not gone.is_symlink() else gone.unlink()
    manifest_path.write_text(json.dumps(copies))
    return changed


def build_kernel(kernel: KernelTree, profile: TargetProfile, tree_key: str, tree: Path, cache: Cache,
                 fragments_dir: Path, log_dir: Path, on_stage: StageCallback, timeout: int = 3600) -> BuiltKernel:
    """Configure and build; returns the cached entry. Logs go to log_dir while building."""
    key = build_key(tree_key, kernel, profile, fragments_dir)
    found = lookup_kernel(cache, key)
    if found:
        return found
    log = log_dir / "build.log"
    on_stage("build-queued")

    def build(scratch: Path) -> None:
        _configure_and_build(kernel, profile, key, tree, cache, fragments_dir, scratch, log, on_stage, timeout)

    # one compile at a time on this host: two would only fight over the same cores
    entry = cache.get_or_build("kernels", key, build, what=f"kernel {kernel.name} for {profile.name}",
                               lock=host_build_lock)
    return _entry_kernel(entry.path, key, cached=not entry.built)


def _configure_and_build(kernel: KernelTree, profile: TargetProfile, key: str, tree: Path, cache: Cache,
                         fragments_dir: Path, scratch: Path, log: Path, on_stage: StageCallback,
                         timeout: int) -> None:
    started = time.monotonic()
    workspace = workspace_dir(cache, kernel, profile)
    objdir = workspace / "obj"
    if kernel.source.kind == "local":
        srcdir, synced = tree, None  # the user's tree has a stable path of its own
    else:
        srcdir = workspace / "src"
        synced = sync_tree(tree, srcdir)
    incremental = (objdir / "vmlinux").exists()
    objdir.mkdir(parents=True, exist_ok=True)
    make_vars, env = make_env(profile, cache, base_dir=workspace)
    identity = kbuild_identity(key, tree)
    env.update(identity)
    make = ["make", "-C", str(srcdir), f"O={objdir}", *make_vars]
    commands: list[str] = [f"export {k}={shlex.quote(v)}" for k, v in identity.items()]

    def step(cmd: list[str], stage: str, what: str, cwd: Path | None = None, limit: float | None = None) -> None:
        line = shlex.join(cmd) if cwd is None else f"(cd {cwd} && {shlex.join(cmd)})"
        commands.append(line.replace(str(objdir), "$BUILD_DIR").replace(str(srcdir), "$SRC_DIR"))
        try:
            proc = _run(cmd, log, cwd=cwd, env=env, timeout=limit)
        except subprocess.TimeoutExpired as exc:
            raise KernelStageError(stage, f"{what} timed out after {limit} s", log) from exc
        _check(proc, stage, what, log)

    on_stage("configure")
    # merge_config.sh writes temporaries into, and runs make from, its working directory: run it in
    # the object dir (through the Makefile kbuild puts there) so the source tree stays read-only
    step([*make, "outputmakefile"], "configure", "make outputmakefile")
    frags = fragment_paths(kernel, profile, fragments_dir)
    merge = str(srcdir / "scripts/kconfig/merge_config.sh")
    base = kernel.config_base
    if base in ("tinyconfig", "allnoconfig"):
        tiny = []
        if base == "tinyconfig":
            tiny = [str(srcdir / "kernel/configs/tiny-base.config"), str(srcdir / "kernel/configs/tiny.config")]
            tiny += [str(srcdir / p) for p in profile.tiny_arch_fragments]
        step(["sh", merge, "-n", *tiny, *map(str, frags)], "configure", "merge_config.sh", cwd=objdir)
    else:
        if os.path.isabs(base):
            shutil.copyfile(base, objdir / ".config")
            step([*make, "olddefconfig"], "configure", "make olddefconfig")
        else:
            step([*make, base], "configure", f"make {base}")
        step(["sh", merge, "-m", ".config", *map(str, frags)], "configure", "merge_config.sh", cwd=objdir)
        step([*make, "olddefconfig"], "configure", "make olddefconfig")
    lost = check_requested_symbols(frags, objdir / ".config")
    if lost:
        raise KernelStageError("configure", "requested Kconfig symbols did not survive: " + "; ".join(lost), log)
    configured = time.monotonic()

    on_stage("build")
    stats_before = ccache_stats(cache)
    jobs = str(os.cpu_count() or 1)
    step([*make, f"-j{jobs}", profile.make_target], "build", f"make {profile.make_target}", limit=timeout)
    built = time.monotonic()
    stats_after = ccache_stats(cache)
    release = subprocess.run([*make, "-s", "kernelrelease"], text=True, capture_output=True, env=env
                             ).stdout.strip().splitlines()[-1]

    image = objdir / profile.kernel_image
    shutil.copy2(image, scratch / image.name)
    shutil.copy2(objdir / ".config", scratch / "config")
    log_text = log.read_text(errors="replace")
    warnings = sorted({ln for ln in log_text.splitlines() if ": warning: " in ln})
    metadata: dict[str, object] = {
        "key": key,
        "kernel": kernel.name,
        "target": profile.name,
        "image": image.name,
        "image_sha256": hash_file(scratch / image.name),
        "kernelrelease": release,
        "uts_version": _uts_version(objdir),
        "kbuild": identity,
        "engines": list(profile.engines),
        "configure_s": round(configured - started, 1),
        "build_s": round(built - configured, 1),
        "object_tree": {"path": str(workspace), "incremental": incremental,
                        "source_files_changed": synced},
        "ccache": {name: stats_after.get(name, 0) - stats_before.get(name, 0) for name in _CCACHE_COUNTERS}
        if stats_after else None,
        "warnings": warnings,
        "toolchain": toolchain_version(profile),
        "make": subprocess.run(["make", "--version"], text=True, capture_output=True).stdout.splitlines()[0],
        "reproduce": commands,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (scratch / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    shutil.copy2(log, scratch / "build.log")


_CCACHE_COUNTERS = ("direct_cache_hit", "preprocessed_cache_hit", "cache_miss")


def ccache_stats(cache: Cache) -> dict[str, int]:
    """ccache's counters for this cache's ccache dir ({} without ccache)."""
    if not shutil.which("ccache"):
        return {}
    proc = subprocess.run(["ccache", "--print-stats"], text=True, capture_output=True,
                          env={**os.environ, "CCACHE_DIR": str(cache.ccache_dir)})
    out: dict[str, int] = {}
    for line in proc.stdout.splitlines():
        name, _, value = line.partition("\t")
        if value.strip().isdigit():
            out[name] = int(value)
    return out


def _uts_version(objdir: Path) -> str:
    """What `uname -v` will print: UTS_VERSION from the generated headers."""
    for name in ("include/generated/utsversion.h", "include/generated/compile.h"):
        path = objdir / name
        if path.exists():
            match = re.search(r'#define UTS_VERSION "(.*)"', path.read_text())
            if match:
                return match.group(1)
    return ""
