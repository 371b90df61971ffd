"""The "kselftest" job kind: the kernel's own selftests, cross-built from the job's kernel tree and
run in the guest by the kernel's runner, every leaf recorded as collection/test/subtest.

build    `make headers` of the (patched) tree into an object directory, then each collection of the
         suite's collections.yaml on its own (`make -C tools/testing/selftests TARGETS=<c>`) with
         the target's cross compiler, then `install` of those that built.  Programs are linked
         against the cross toolchain's glibc; the guest gets the loader and the shared libraries
         they need (resolved through the compiler's own search path), so one recipe serves every
         target, ppc64 big-endian (no Debian userland) included.  A collection that does not build
         (a library the target's sysroot lacks, e.g. libcap) becomes one SKIP result with the
         reason read from its build log.  Cached by content: tree key, target toolchain,
         collections and flags.
install  the installed tree and the libraries are a cpio archive appended to the suite's rootfs.
run      per collection, `run_kselftest.sh -c <collection>` in the guest under a per-collection
         time limit (each test keeps the runner's own per-test timeout from its `settings`).
collect  crlab.ktap reads the runner's TAP; each leaf `selftests: <c>: <prog>/<sub>` is stored as
         `<c>/<prog>/<sub>`.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from crlab import kernel as kstages
from crlab import runner
from crlab.cache import Cache, hash_file, hash_inputs, host_build_lock
from crlab.cpio import CpioWriter
from crlab.guest.shell import GuestError
from crlab.jobkinds import JobContext, KindOutcome
from crlab.model import FailureClass, Status, TestResult
from crlab.rootfs import Rootfs
from crlab.tap import parse_tap
from crlab.targets import TargetProfile
from crlab.userland.debian import Apt
from crlab.userland.elf import elf_info, elf_needed, is_elf

# Bump when the build recipe changes in a way its inputs do not show.
KSELFTEST_RECIPE = "1"
GUEST_DIR = "/opt/crlab/kselftest"  # run_kselftest.sh and one directory per collection
GUEST_LIB_DIR = "/opt/crlab/kselftest-lib"  # the shared libraries the programs need
BUILD_TIMEOUT = 1800  # seconds per collection
# busybox's timeout (the guest's /usr/bin/timeout) has no --foreground, which the 6.1 runner
# passes; and "timeout=0" in a collection's settings means "no limit" to the runner
TIMEOUT_WRAPPER = """#!/bin/sh
# crlab: the kselftest runner calls `timeout --foreground N timeout N prog`; busybox's timeout
# knows neither --foreground nor 0 as "no limit"
[ "$1" = --foreground ] && shift
secs=$1
shift
[ "$secs" = 0 ] && exec "$@"
exec /bin/busybox timeout "$secs" "$@"
"""


# The runner scripts of several collections (vm/run_vmtests.sh, futex/run.sh, rseq's) start with
# #!/bin/bash; the guest has busybox only, so /bin/bash runs busybox's ash there (BASH_SHIM).  A script that
# needs more than ash gives a failing result, never a hidden one.
GUEST_BASH = "busybox ash"


class KselftestError(RuntimeError):
    """The selftests could not be built at all (not one collection's failure: that is a SKIP)."""


@dataclass(frozen=True)
class Collection:
    name: str
    timeout: int  # seconds for the whole collection in the guest


def load_collections(suite_dir: Path) -> list[Collection]:
    """suites/<suite>/collections.yaml: `collections: [{name, timeout}]`, run in that order."""
    path = suite_dir / "collections.yaml"
    data = yaml.safe_load(path.read_text()) or {}
    out: list[Collection] = []
    for entry in data.get("collections", []):
        if isinstance(entry, str):
            entry = {"name": entry}
        name = str(entry["name"])
        if not re.fullmatch(r"\w[\w.-]*(/\w[\w.-]*)*", name):
            raise ValueError(f"{path}: not a selftest collection name: {name!r}")
        out.append(Collection(name, int(entry.get("timeout", 300))))
    names = [c.name for c in out]
    if not out or len(set(names)) != len(names):
        raise ValueError(f"{path}: needs a non-empty list of distinct collections")
    return out


# --------------------------------------------------------------------------- pure logic


_SKIP_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"cannot find -l([\w+.-]+)", "needs lib{0} for {target}, which the {cross}gcc sysroot does not have"),
    (r"fatal error: ([^:\s]+): No such file or directory",
     "needs the header {0}, which the {cross}gcc sysroot does not have"),
    (r"No rule to make target '([^']+)'", "the build needs {0}, which it cannot make"),
    (r"Permission denied", "the build writes into the read-only kernel tree"),
)


def skip_reason(build_log: str, target: str, cross: str) -> str:
    """Why a collection did not build, in one line, from its make output."""
    for pattern, text in _SKIP_PATTERNS:
        m = re.search(pattern, build_log)
        if m:
            return "not built: " + text.format(*m.groups(), target=target, cross=cross)
    errors = [line.strip() for line in build_log.splitlines() if re.search(r"\berror\b", line, re.I)]
    return "not built: " + (errors[0][:200] if errors else "make failed (see the collection's build log)")


_RUNNER_PREFIX = re.compile(r"^selftests:\s*([^:]+):\s*(.*)$")


def leaf_name(collection: str, name: str) -> str:
    """`selftests: <c>: <prog>/<sub>` (what the kselftest runner's TAP gives) -> `<c>/<prog>/<sub>`."""
    head, sep, rest = name.partition("/")
    m = _RUNNER_PREFIX.match(head)
    if m:
        return f"{m.group(1).strip()}/{m.group(2).strip()}" + sep + rest
    return name if name.startswith(collection + "/") else f"{collection}/{name}"


def collection_results(collection: Collection, output: str) -> tuple[list[TestResult], list[str]]:
    """The leaves of one collection's run and the reasons it is incomplete (timeout, crash, ...)."""
    report = parse_tap(output)
    tests = [TestResult(leaf_name(collection.name, t.name), t.status, t.message, t.number) for t in report.tests]
    problems: list[str] = []
    if f"crlab-kselftest: {collection.name} timed out" in output:
        problems.append(f"{collection.name}: stopped after {collection.timeout} s (the collection's limit)")
    if report.crash is not None:
        problems.append(f"{collection.name}: kernel crashed: {report.crash}")
    if not report.complete:
        why = "; ".join(report.incomplete) or "the runner's TAP is incomplete"
        problems.append(f"{collection.name}: {why}")
        for missing in report.missing:
            tests.append(TestResult(leaf_name(collection.name, missing), Status.FAIL, "never reported (run cut short)"))
    if not tests and not problems:
        problems.append(f"{collection.name}: the runner reported no test")
    return tests, problems


# --------------------------------------------------------------------------- build


@dataclass
class SelftestBuild:
    key: str
    dir: Path  # the cache entry
    archive: Path  # cpio.gz with the installed tree and the libraries
    built: dict[str, bool]  # collection -> it built
    reasons: dict[str, str]  # collection -> why it did not build
    seconds: float  # how long the build took when it was made
    cached: bool


def _needed_libraries(programs: list[Path], profile: TargetProfile) -> tuple[dict[str, Path], set[str]]:
    """guest path -> host file for the loader(s) and the closure of shared libraries the programs
    need, found where the target's cross gcc finds them; and the names it could not find."""
    gcc = f"{profile.cross_compile}gcc"
    found: dict[str, Path] = {}
    missing: set[str] = set()
    queue = list(programs)
    # a collection's own libraries (rseq's librseq.so) sit beside its programs, found by their rpath
    seen_names: set[str] = {p.name for p in programs}
    while queue:
        path = queue.pop()
        try:
            info = elf_info(path)
            needed = elf_needed(path)
        except ValueError:
            continue
        names = list(needed)
        if info.interp and info.interp not in found:
            host = _locate(gcc, Path(info.interp).name)
            if host is None:
                missing.add(info.interp)
            else:
                found[info.interp] = host
        for name in names:
            if name in seen_names:
                continue
            seen_names.add(name)
            host = _locate(gcc, name)
            if host is None:
                missing.add(name)
                continue
            found[f"{GUEST_LIB_DIR}/{name}"] = host
            queue.append(host)
    return found, missing


def _locate(gcc: str, name: str) -> Path | None:
    proc = runner.run([gcc, f"-print-file-name={name}"])
    out = proc.stdout.strip()
    if proc.returncode != 0 or "/" not in out or not Path(out).exists():
        return None
    return Path(out).resolve()


def build_selftests(tree_key: str, tree: Path, profile: TargetProfile, collections: list[Collection],
                    cache: Cache, notify: Any = None) -> SelftestBuild:
    what = f"kselftests for {profile.name}"
    names = [c.name for c in collections]
    # some Makefiles (vm) pick arch-specific programs by the build host's `uname -m` unless told;
    # they fold it the way vm/Makefile does (ppc64le -> ppc64)
    machine = re.sub(r"^ppc64.*", "ppc64", re.sub(r"^aarch64.*", "arm64", profile.uname_machine or profile.arch))
    inputs = {"tree": tree_key, "target": profile.name, "arch": profile.arch,
              "cross_compile": profile.cross_compile, "toolchain": Apt(cache).toolchain(profile, what),
              "collections": sorted(names), "machine": machine, "wrapper": TIMEOUT_WRAPPER,
              "bash": GUEST_BASH, "recipe": KSELFTEST_RECIPE}
    key = hash_inputs("kselftest", inputs)
    selftests = tree / "tools" / "testing" / "selftests"
    if not selftests.is_dir():
        raise KselftestError(f"{what}: the kernel tree has no tools/testing/selftests")

    def build(scratch: Path) -> None:
        started = time.monotonic()
        log = scratch / "build.log"
        obj = scratch / "obj"
        logs = scratch / "logs"
        logs.mkdir()
        install = scratch / "install"
        make = ["make", f"ARCH={profile.arch}", f"CROSS_COMPILE={profile.cross_compile}", f"O={obj}",
                f"MACHINE={machine}"]
        built: dict[str, bool] = {}
        reasons: dict[str, str] = {}
        with host_build_lock() as waited:
            proc = runner.run([*make, "-C", str(tree), "headers"], log=log, timeout=BUILD_TIMEOUT)
            if proc.returncode != 0:
                raise KselftestError(f"{what}: `make headers` failed (exit {proc.returncode}); see {log}")
            for name in names:
                clog = logs / f"{name.replace('/', '_')}.log"
                proc = runner.run([*make, "-C", str(selftests), f"TARGETS={name}", "-j2"], log=clog,
                                  timeout=BUILD_TIMEOUT)
                built[name] = proc.returncode == 0
                if not built[name]:
                    reasons[name] = skip_reason(clog.read_text(errors="replace"), profile.name,
                                                profile.cross_compile)
            good = [n for n in names if built[n]]
            if good:
                proc = runner.run([*make, "-C", str(selftests), f"TARGETS={' '.join(good)}",
                                   f"KSFT_INSTALL_PATH={install}", "install"], log=log, timeout=BUILD_TIMEOUT)
                if proc.returncode != 0:
                    raise KselftestError(f"{what}: `make install` failed (exit {proc.returncode}); see {log}")
        programs = [p for p in install.rglob("*") if p.is_file() and not p.is_symlink() and is_elf(p)] \
            if good else []
        libraries, missing = _needed_libraries(programs, profile)
        archive = CpioWriter()
        if good:
            archive.add_tree(install, GUEST_DIR.lstrip("/"))
        archive.add_dir(GUEST_LIB_DIR.lstrip("/"))
        for guest_path, host in sorted(libraries.items()):
            archive.add_file(guest_path.lstrip("/"), host, mode=0o755)
        archive.add_file("usr/bin/timeout", TIMEOUT_WRAPPER.encode(), mode=0o755)
        if GUEST_BASH:
            archive.add_symlink("bin/bash", "busybox")
        archive.write(scratch / "kselftest.cpio.gz")
        meta = {**inputs, "built": built, "reasons": reasons, "programs": len(programs),
                "libraries": {k: str(v) for k, v in sorted(libraries.items())}, "missing_libraries": sorted(missing),
                "seconds": round(time.monotonic() - started - waited, 1), "build_lock_wait_seconds": round(waited, 1)}
        (scratch / "info.json").write_text(json.dumps(meta, indent=1) + "\n")
        kstages.force_rmtree(obj)

    entry = cache.get_or_build("kselftest", key, build, what=what)
    meta = json.loads((entry.path / "info.json").read_text())
    return SelftestBuild(key, entry.path, entry.path / "kselftest.cpio.gz", meta["built"], meta["reasons"],
                         float(meta["seconds"]), cached=not entry.built)


# glibc loads these with dlopen (no DT_NEEDED): pthread_exit and cancellation unwind through
# libgcc_s ("libgcc_s.so.1 must be installed for pthread_exit to work", futex's tests abort)
DLOPENED_LIBRARIES = ("libgcc_s.so.1",)


BASH_SHIM = ("#!/bin/sh\n# crlab: the guest has no bash; #!/bin/bash scripts run under busybox ash\n"
             'exec /bin/busybox ash "$@"\n')


def runtime_archive(profile: TargetProfile, cache: Cache) -> tuple[Path, str]:
    """A cpio of the libraries glibc opens at run time, from the target's cross toolchain: (path, key)."""
    gcc = f"{profile.cross_compile}gcc"
    found = {name: _locate(gcc, name) for name in DLOPENED_LIBRARIES}
    inputs = {"target": profile.name, "libraries": {n: [str(p), hash_file(p)] if p else None for n, p in found.items()},
              "bash": BASH_SHIM}
    key = hash_inputs("kselftest-runtime", inputs)

    def build(scratch: Path) -> None:
        archive = CpioWriter()
        archive.add_dir(GUEST_LIB_DIR.lstrip("/"))
        for name, host in found.items():
            if host is not None:
                archive.add_file(f"{GUEST_LIB_DIR.lstrip('/')}/{name}", host, mode=0o755)
        # replaces the build archive's bin/bash -> busybox link: Debian's busybox has no "bash" applet
        archive.add_file("bin/bash", BASH_SHIM.encode(), mode=0o755)
        archive.write(scratch / "runtime.cpio.gz")
        (scratch / "info.json").write_text(json.dumps(inputs, indent=1) + "\n")

    entry = cache.get_or_build("kselftest-runtime", key, build, what=f"kselftest runtime libraries for {profile.name}")
    return entry.path / "runtime.cpio.gz", key


def with_archives(base: Rootfs, extras: list[tuple[Path, str]], cache: Cache) -> Rootfs:
    """The suite's rootfs with more archives after it (the kernel unpacks them in order)."""
    key = hash_inputs("rootfs-plus", {"base": base.key, "extra": [k for _, k in extras]})

    def build(scratch: Path) -> None:
        with open(scratch / "initramfs.cpio.gz", "wb") as out:
            for part in (base.path, *(p for p, _ in extras)):
                out.write(part.read_bytes())

    entry = cache.get_or_build("rootfs", key, build, what="rootfs with the kselftests")
    return Rootfs(key, entry.path / "initramfs.cpio.gz", cached=not entry.built)


def listed_collections(install_list: Path) -> set[str]:
    """Collections with at least one test in the runner's kselftest-list.txt (`collection:test`)."""
    if not install_list.exists():
        return set()
    return {line.split(":", 1)[0] for line in install_list.read_text().splitlines() if ":" in line}


# --------------------------------------------------------------------------- the kind


class KselftestSuite:
    """Cross-build the suite's selftest collections from the job's kernel tree, run them in the guest."""

    name = "kselftest"

    def run(self, ctx: JobContext) -> KindOutcome:
        collections = load_collections(ctx.suite.suite_dir)
        tree_cfg = ctx.cfg.kernels[ctx.spec.kernel]
        log = ctx.job_dir / "build.log"
        source_key, tree = kstages.prepare_source(tree_cfg.source, ctx.cache, log)
        tree_key, tree = kstages.apply_patches(source_key, tree, tree_cfg.patches, ctx.cache, log)
        ctx.stage("build", "kselftests")
        build = build_selftests(tree_key, tree, ctx.profile, collections, ctx.cache)
        ctx.timings["selftests_build_s"] = build.seconds
        ctx.info["selftests"] = {"key": build.key, "cached": build.cached, "built": build.built,
                                 "reasons": build.reasons}
        for logfile in sorted((build.dir / "logs").glob("*.log")):
            copy = _copy(logfile, ctx.job_dir / f"kselftest-build-{logfile.name}")
            ctx.artifact(f"kselftest-build-{logfile.stem}", copy)
        rootfs = with_archives(ctx.rootfs(), [(build.archive, build.key), runtime_archive(ctx.profile, ctx.cache)],
                               ctx.cache)
        tests: list[TestResult] = []
        problems: list[str] = []
        listed = listed_collections(build.dir / "install" / "kselftest-list.txt")
        runnable = [c for c in collections if build.built.get(c.name) and c.name in listed]
        for c in collections:
            if not build.built.get(c.name):
                tests.append(TestResult(c.name, Status.SKIP, build.reasons.get(c.name, "not built")))
            elif c.name not in listed:
                tests.append(TestResult(c.name, Status.SKIP, "built, but its Makefile gives the kselftest runner no"
                                        " test to run (none in kselftest-list.txt)"))
        if runnable:
            with ctx.boot(rootfs=rootfs) as guest:
                ctx.stage("run", guest.spec.transport)
                started = time.monotonic()
                env = {**ctx.guest_env(guest), "LD_LIBRARY_PATH": GUEST_LIB_DIR}
                script = f"{ctx.suite_dir_in_guest}/{ctx.suite.command}"
                for c in runnable:
                    ctx.stage("run", c.name)
                    cmd = f"sh {shlex.quote(script)} {GUEST_DIR} {shlex.quote(c.name)} {c.timeout}"
                    t0 = time.monotonic()
                    try:
                        out = guest.shell.run(cmd, timeout=c.timeout + 120, env=env).output
                    except GuestError as exc:
                        out = getattr(exc, "partial", "") or ""
                        (ctx.job_dir / f"kselftest-{c.name.replace('/', '_')}.log").write_text(out)
                        raise
                    ctx.timings[f"run_{c.name}_s"] = round(time.monotonic() - t0, 2)
                    path = ctx.job_dir / f"kselftest-{c.name.replace('/', '_')}.log"
                    path.write_text(out)
                    ctx.artifact(f"kselftest-{c.name}", path)
                    leaves, trouble = collection_results(c, out)
                    tests += leaves
                    problems += trouble
                ctx.timings["run_s"] = round(time.monotonic() - started, 2)
                ctx.stage("collect")
                oops = guest.kernel_oops()
                if oops:
                    return KindOutcome(Status.FAIL, FailureClass.KERNEL_OOPS, "run", f"kernel reported {oops!r}",
                                       tests)
        return outcome(tests, problems)


def outcome(tests: list[TestResult], problems: list[str]) -> KindOutcome:
    """The job's verdict: FAIL if a leaf failed, INCOMPLETE-like FAIL if a collection was cut short."""
    failed = [t.name for t in tests if t.status is Status.FAIL]
    counts = {s: sum(1 for t in tests if t.status is s) for s in (Status.PASS, Status.FAIL, Status.SKIP)}
    summary = f"{counts[Status.PASS]} passed, {counts[Status.FAIL]} failed, {counts[Status.SKIP]} skipped"
    if problems:
        return KindOutcome(Status.FAIL, FailureClass.TEST, "run", f"{summary}; " + "; ".join(problems)[:2000], tests)
    if failed:
        return KindOutcome(Status.FAIL, FailureClass.TEST, "run",
                           f"{summary}; failed: {', '.join(failed[:10])}" + (" ..." if len(failed) > 10 else ""),
                           tests)
    if counts[Status.PASS] == 0:
        return KindOutcome(Status.SKIP, FailureClass.NONE, "collect", summary, tests)
    return KindOutcome(Status.PASS, FailureClass.NONE, "collect", summary, tests)


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


KINDS = (KselftestSuite(),)
