"""Kernel stages: source -> patch -> configure -> build, each cached by the hash of its inputs.

source     the pristine tree, unpacked once into a read-only cache entry
patch      a copy of it (hard links) with the patch series applied; all patches or no tree at all
configure  base config + fragments merged by the kernel's own scripts/kconfig/merge_config.sh,
           then every requested symbol checked against the resulting .config
build      the target's image made with its cross toolchain under ccache
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from crlab.cache import Cache, hash_file, hash_inputs
from crlab.config import KernelSource, KernelTree
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


_RUNNING: set[subprocess.Popen[str]] = set()
_RUNNING_LOCK = threading.Lock()


def terminate_running() -> None:
    """Stop every build command still running (on Ctrl-C or SIGTERM of the harness)."""
    with _RUNNING_LOCK:
        procs = list(_RUNNING)
    for proc in procs:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGTERM)


def _run(cmd: list[str], log: Path | None = None, cwd: Path | None = None, env: dict[str, str] | None = None,
         timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command; with `log`, append the command line and its output to it."""
    if log is None:
        return subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True, timeout=timeout)
    with open(log, "a") as fh:
        fh.write(f"$ {shlex.join(cmd)}\n")
        fh.flush()
        # its own process group, so that stopping it stops make's children too
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, text=True, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
        with _RUNNING_LOCK:
            _RUNNING.add(proc)
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            with _RUNNING_LOCK:
                _RUNNING.discard(proc)
        fh.write(f"[exit {returncode}]\n")
    return subprocess.CompletedProcess(cmd, returncode)


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
    if source.kind == "local":
        tree = Path(source.value)
        return source_key(source), tree
    key = source_key(source)
    entry = cache.entry("sources", key)
    if cache.has("sources", key):
        return key, entry / "tree"
    with cache.lock(f"source-{key}"):
        if cache.has("sources", key):
            return key, entry / "tree"
        with cache.building("sources", key) as scratch:
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
    return key, entry / "tree"


def _unpack(archive: Path, dest: Path, log: Path) -> None:
    dest.mkdir(parents=True)
    proc = _run(["tar", "-xf", str(archive), "-C", str(dest), "--strip-components=1", "--no-same-owner"], log)
    _check(proc, "source", f"unpacking {archive}", log)


def _check(proc: subprocess.CompletedProcess[str], stage: str, what: str, log: Path) -> None:
    if proc.returncode != 0:
        raise KernelStageError(stage, f"{what} failed (exit {proc.returncode}):\n{_tail(log)}", log)


# --------------------------------------------------------------------------- patch

_DIFF_PATH = re.compile(r"^(?:---|\+\+\+) (?:[ab]/)?(\S+)")
_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+\d+(?:,\d+)? @@")


def check_patch_paths(patch: Path) -> list[str]:
    """Reasons an (untrusted) patch must not be applied: paths leaving the tree, symlinks."""
    problems = []
    for number, line in enumerate(patch.read_text(errors="replace").splitlines(), 1):
        match = _DIFF_PATH.match(line)
        if match and match.group(1) != "/dev/null":
            path = match.group(1)
            if path.startswith("/") or ".." in Path(path).parts:
                problems.append(f"{patch.name}:{number}: path {path!r} leaves the kernel tree")
        if line.startswith(("new file mode 120", "new mode 120")):
            problems.append(f"{patch.name}:{number}: creates a symlink")
    return problems


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
    if cache.has("trees", key):
        return key, cache.entry("trees", key) / "tree"
    for patch in patches:
        problems = check_patch_paths(patch)
        if problems:
            raise KernelStageError("patch", f"refusing patch {patch.name}: " + "; ".join(problems))
    with cache.lock(f"tree-{key}"):
        if cache.has("trees", key):
            return key, cache.entry("trees", key) / "tree"
        with cache.building("trees", key) as scratch:
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
            _run(["chmod", "-R", "a-w", str(tree)], log)
    return key, cache.entry("trees", key) / "tree"


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


def fragment_paths(kernel: KernelTree, profile: TargetProfile, fragments_dir: Path) -> list[Path]:
    """The user's fragments, then the target's own (the target has the last word on arch facts)."""
    return list(kernel.fragments) + [fragments_dir / name for name in profile.kconfig_fragments]


def toolchain_version(profile: TargetProfile) -> str:
    gcc = f"{profile.cross_compile}gcc"
    try:
        out = subprocess.run([gcc, "--version"], text=True, capture_output=True).stdout
    except FileNotFoundError:
        return "missing"
    return out.splitlines()[0] if out else "unknown"


def build_key(tree_key: str, kernel: KernelTree, profile: TargetProfile, fragments_dir: Path) -> str:
    frags = fragment_paths(kernel, profile, fragments_dir)
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
    entry = cache.entry("kernels", key)
    metadata = json.loads((entry / "metadata.json").read_text())
    return BuiltKernel(key=key, dir=entry, image=entry / str(metadata["image"]), config=entry / "config",
                       build_log=entry / "build.log", metadata=metadata, cached=True)


def make_env(profile: TargetProfile, cache: Cache) -> tuple[list[str], dict[str, str]]:
    """make's variables and environment for this target, compilers under ccache."""
    env = dict(os.environ)
    env["CCACHE_DIR"] = str(cache.root / "ccache")
    env["KBUILD_BUILD_USER"] = "crlab"
    env["KBUILD_BUILD_HOST"] = "crlab"
    env["ARCH"] = profile.arch
    env["CROSS_COMPILE"] = profile.cross_compile
    cc = f"{profile.cross_compile}gcc"
    make_vars = [f"ARCH={profile.arch}", f"CROSS_COMPILE={profile.cross_compile}"]
    if shutil.which("ccache"):
        make_vars.append(f"CC=ccache {cc}")
    return make_vars, env


def build_kernel(kernel: KernelTree, profile: TargetProfile, tree_key: str, tree: Path, cache: Cache,
                 fragments_dir: Path, log_dir: Path, on_stage: StageCallback, timeout: int = 3600) -> BuiltKernel:
    """Configure and build; returns the cached entry. Logs go to log_dir while building."""
    key = build_key(tree_key, kernel, profile, fragments_dir)
    found = lookup_kernel(cache, key)
    if found:
        return found
    log = log_dir / "build.log"
    # one kernel build at a time on this host: two would only fight over the same cores
    on_stage("build-queued")
    with cache.lock("build"):
        found = lookup_kernel(cache, key)
        if found:
            return found
        with cache.building("kernels", key) as scratch:
            return _configure_and_build(kernel, profile, key, tree, cache, fragments_dir, scratch, log,
                                        on_stage, timeout)


def _configure_and_build(kernel: KernelTree, profile: TargetProfile, key: str, tree: Path, cache: Cache,
                         fragments_dir: Path, scratch: Path, log: Path, on_stage: StageCallback,
                         timeout: int) -> BuiltKernel:
    started = time.monotonic()
    objdir = scratch / "build"
    objdir.mkdir()
    make_vars, env = make_env(profile, cache)
    make = ["make", "-C", str(tree), f"O={objdir}", *make_vars]
    commands: list[str] = []

    def step(cmd: list[str], stage: str, what: str, cwd: Path | None = None, limit: float | None = None) -> None:
        line = shlex.join(cmd) if cwd is None else f"(cd {cwd} && {shlex.join(cmd)})"
        commands.append(line.replace(str(objdir), "$BUILD_DIR"))
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
    merge = str(tree / "scripts/kconfig/merge_config.sh")
    base = kernel.config_base
    if base in ("tinyconfig", "allnoconfig"):
        tiny = []
        if base == "tinyconfig":
            tiny = [str(tree / "kernel/configs/tiny-base.config"), str(tree / "kernel/configs/tiny.config")]
            tiny += [str(tree / p) for p in profile.tiny_arch_fragments]
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
    jobs = str(os.cpu_count() or 1)
    step([*make, f"-j{jobs}", profile.make_target], "build", f"make {profile.make_target}", limit=timeout)
    built = time.monotonic()
    release = subprocess.run([*make, "-s", "kernelrelease"], text=True, capture_output=True, env=env
                             ).stdout.strip().splitlines()[-1]
    uts_version = _uts_version(objdir)

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
        "kernelrelease": release,
        "uts_version": uts_version,
        "configure_s": round(configured - started, 1),
        "build_s": round(built - configured, 1),
        "warnings": warnings,
        "toolchain": toolchain_version(profile),
        "make": subprocess.run(["make", "--version"], text=True, capture_output=True).stdout.splitlines()[0],
        "ccache": bool(shutil.which("ccache")),
        "reproduce": commands,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (scratch / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    shutil.copy2(log, scratch / "build.log")
    shutil.rmtree(objdir)  # the object tree is large; ccache makes a rebuild cheap
    final = cache.entry("kernels", key)
    return BuiltKernel(key=key, dir=final, image=final / image.name, config=final / "config",
                       build_log=final / "build.log", metadata=metadata, cached=False)


def _uts_version(objdir: Path) -> str:
    """What `uname -v` will print: UTS_VERSION from the generated headers."""
    for name in ("include/generated/utsversion.h", "include/generated/compile.h"):
        path = objdir / name
        if path.exists():
            match = re.search(r'#define UTS_VERSION "(.*)"', path.read_text())
            if match:
                return match.group(1)
    return ""
