"""`harness.py` subcommands: run, plan, doctor, shell, selftest, bench, report.

Exit codes: 0 every job passed; 1 a test, boot or build failed; 2 incomplete (bad config, missing
host tools, infrastructure error, timeout of the harness itself, interrupted).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import NoReturn

from rich.console import Console

from crlab import hostenv
from crlab.cache import Cache
from crlab.config import ConfigError, MatrixConfig, load_config
from crlab.errors import UserError
from crlab.model import EXIT_FAIL, EXIT_INCOMPLETE, EXIT_PASS
from crlab.paths import DEFAULT_CONFIG, REPO_ROOT

console = Console(stderr=True)


def _load(path: Path) -> MatrixConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        console.print(f"[red]configuration rejected[/]: {len(exc.problems)} problem(s)", highlight=False)
        print(str(exc), file=sys.stderr)
        return None
    except OSError as exc:
        raise UserError(f"cannot read configuration {path}: {exc.strerror or exc}") from exc


def _debian_sources(cfg: MatrixConfig) -> list[str]:
    return sorted({k.source.value for k in cfg.kernels.values() if k.source.kind == "debian"})


def ensure_host(cfg: MatrixConfig, install: bool = True) -> bool:
    """Install what the matrix needs (as root), or say exactly what to run. True when ready."""
    report = hostenv.check(list(cfg.targets.values()), _debian_sources(cfg))
    if report.ok:
        return True
    if install and hostenv.install(report.missing_packages, log=lambda m: console.print(f"crlab: {m}")):
        return hostenv.check(list(cfg.targets.values()), _debian_sources(cfg)).ok
    console.print("[red]missing Debian packages[/] (crlab installs them itself when run as root):")
    print(hostenv.install_command(report.missing_packages), file=sys.stderr)
    return False


def _stdout_console() -> Console:
    """The summary table; wide enough for its columns in a CI log too."""
    return Console() if sys.stdout.isatty() else Console(width=180)


def _sigterm_as_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt()


def ctrl_c_ignored_note() -> str | None:
    """Why Ctrl-C will not stop this process, if it will not.  A command started with `&` from a
    script (a shell without job control) inherits SIGINT as ignored, and Python then installs no
    Ctrl-C handler: crlab keeps that choice, as other tools do, but says so, because the run can
    then only be stopped with SIGTERM."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        return ("crlab: SIGINT was ignored when this process started (e.g. `cmd &` in a script), so "
                "Ctrl-C will not stop the run; SIGTERM stops it and keeps finished jobs")
    return None


# ---------------------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    from crlab.orchestrator import Interrupted, Orchestrator, host_info
    from crlab.progress import make_progress
    from crlab.results import ResultStore, exit_code, print_summary

    t_start = time.monotonic()
    store_dir = Path(args.results) if args.results else None
    if args.resume:
        store = ResultStore(store_dir or REPO_ROOT / "results")
        run = store.open_run(args.resume)
        info = run.info()
        cfg = _load(Path(info.config_path))
        if cfg is None:
            return EXIT_INCOMPLETE
        if cfg.digest != info.config_digest and not args.force:
            console.print(f"[red]{info.config_path} changed since run {run.run_id} started[/]; "
                          "resume with --force to use the new file anyway", highlight=False)
            return EXIT_INCOMPLETE
        specs = run.pending_jobs()
        console.print(f"crlab: resuming run {run.run_id}: {len(specs)} job(s) left", highlight=False)
    else:
        cfg = _load(Path(args.config))
        if cfg is None:
            return EXIT_INCOMPLETE
        store = ResultStore(store_dir or cfg.options.results_dir)
        specs = list(cfg.jobs)
    if args.jobs:
        cfg.options = dataclasses.replace(cfg.options, jobs=args.jobs)
    if args.transport:
        if args.resume:
            console.print("[red]--transport cannot change a run being resumed[/]")
            return EXIT_INCOMPLETE
        specs = [dataclasses.replace(spec, transport=args.transport) for spec in specs]
    if not ensure_host(cfg, install=not args.no_install):
        return EXIT_INCOMPLETE
    if not args.resume:
        run = store.create_run(cfg.path, cfg.digest, specs, host_info(), config_text=cfg.text,
                               config_sources=cfg.sources)
    run.mark_running()
    progress = make_progress(plain=args.plain or None)
    orchestrator = Orchestrator(cfg, run, progress, Cache(notify=progress.note),
                                retry_test_failures=args.retry_failures)
    if note := ctrl_c_ignored_note():
        progress.note(note)
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    interrupted = False
    try:
        orchestrator.execute(specs)
    except (Interrupted, KeyboardInterrupt):
        interrupted = True
        orchestrator.interrupt()
    finally:
        signal.signal(signal.SIGTERM, previous)
    results = run.results()
    finished = not interrupted and not run.pending_jobs()
    run.finish("complete" if finished else "incomplete")
    reports = run.write_reports()
    print_summary(results, _stdout_console())
    guest_s = sum(r.timings.get("boot_s", 0.0) + r.timings.get("run_s", 0.0) for r in results
                  if r.spec in specs)
    built_s = sum(r.timings.get("kernel_stage_s", 0.0) for r in results
                  if r.spec in specs and not r.info.get("kernel_cached", True))
    wall = time.monotonic() - t_start
    line = f"run {run.run_id}: {wall:.1f} s wall, {guest_s:.1f} s in guests, {built_s:.1f} s building kernels"
    # with parallel jobs the sums overlap, and a cross-kernel job's second kernel and guest are not
    # in them: a difference would mean nothing
    if cfg.options.jobs == 1 and not any(spec.consumer for spec in specs):
        line += f", harness overhead {wall - guest_s - built_s:.1f} s"
    print(line)
    for name, path in reports.items():
        print(f"  {name}: {path}")
    if interrupted:
        print(f"interrupted: finished jobs are kept; continue with `harness.py run --resume {run.run_id}`")
        return EXIT_INCOMPLETE  # every guest and build command was stopped: the workers have returned
    return exit_code(results)


# ---------------------------------------------------------------------------- plan / doctor


def cmd_plan(args: argparse.Namespace) -> int:
    from crlab import kernel as kstages
    from crlab.paths import FRAGMENTS_DIR

    cfg = _load(Path(args.config))
    if cfg is None:
        return EXIT_INCOMPLETE
    cache = Cache()
    print(f"{cfg.path}: {len(cfg.jobs)} job(s), {cfg.options.jobs} at a time, retries {cfg.options.retries}")
    kernel_state: dict[tuple[str, str], str] = {}
    for spec in cfg.jobs:
        cell = (spec.kernel, spec.target)
        if cell not in kernel_state:
            kernel, profile = cfg.kernels[spec.kernel], cfg.targets[spec.target]
            try:
                key = kstages.planned_build_key(kernel, profile, FRAGMENTS_DIR)
                kernel_state[cell] = f"kernel {key} " + ("cached" if cache.has("kernels", key) else "to build")
            except Exception as exc:  # plan never builds: say what is unknown
                kernel_state[cell] = f"kernel key unknown ({exc})"
        print(f"  {spec.job_id:40s} transport={spec.transport:8s} {kernel_state[cell]}")
    return EXIT_PASS


def cmd_doctor(args: argparse.Namespace) -> int:
    cfg = _load(Path(args.config))
    if cfg is None:
        return EXIT_INCOMPLETE
    report = hostenv.check(list(cfg.targets.values()), _debian_sources(cfg))
    print(f"matrix {cfg.path}: targets {', '.join(cfg.targets)}")
    print(f"present: {' '.join(report.present_packages)}")
    for note in report.notes:
        print(f"note: {note}")
    print(f"cache: {Cache().root}")
    if report.ok:
        print("the host has everything this matrix needs")
        return EXIT_PASS
    print(f"missing: {' '.join(report.missing_packages)}")
    if args.install and ensure_host(cfg):
        print("installed")
        return EXIT_PASS
    how = "`harness.py doctor --install` (as root)" if os.geteuid() == 0 else "as root"
    print(f"install with {how}:\n  {hostenv.install_command(report.missing_packages)}")
    return EXIT_INCOMPLETE


# ---------------------------------------------------------------------------- shell


def cmd_shell(args: argparse.Namespace) -> int:
    from crlab.guest.lifecycle import GuestFailure
    from crlab.kernel import KernelStageError
    from crlab.session import boot_cell

    cfg = _load(Path(args.config))
    if cfg is None:
        return EXIT_INCOMPLETE
    if args.kernel not in cfg.kernels or args.target not in cfg.targets:
        raise UserError(f"no cell {args.kernel}/{args.target} in {args.config}: kernels "
                        f"{', '.join(cfg.kernels)}; targets {', '.join(cfg.targets)}")
    if not ensure_host(cfg):
        return EXIT_INCOMPLETE
    console.print(f"building/booting {args.kernel} on {args.target} (Ctrl-] leaves the console)")
    try:
        with boot_cell(cfg, args.kernel, args.target, log=lambda m: console.print(m)) as (guest, _):
            print(f"booted in {guest.boot.seconds_to_prompt:.1f} s; console log: {guest.machine.console_log}")
            assert guest.machine.child is not None
            guest.machine.child.logfile_read = None
            guest.machine.child.sendline("")
            guest.machine.child.interact()
    except GuestFailure as exc:
        first = str(exc).splitlines()[0] if str(exc) else exc.failure.value
        raise UserError(f"{args.kernel}/{args.target} did not start ({exc.failure.value}): {first}") from exc
    except KernelStageError as exc:
        raise UserError(f"{args.kernel}/{args.target}: {exc.stage} failed: {str(exc).splitlines()[0]}") from exc
    return EXIT_PASS


# ---------------------------------------------------------------------------- selftest / bench / report


# the matrices the tests run: their host packages are installed before pytest starts
SELFTEST_CONFIGS = ("configs/targets.yaml", "tests/data/cr/ci.yaml")


def cmd_selftest(args: argparse.Namespace) -> int:
    for name in SELFTEST_CONFIGS:
        cfg = _load(REPO_ROOT / name)
        if cfg is None or not ensure_host(cfg):
            return EXIT_INCOMPLETE
    # packages only the tests use (headless browser, LAVA dispatcher): hostenv.TEST_PACKAGES
    if (missing := hostenv.missing_test_packages()) and not hostenv.install(
            missing, log=lambda m: console.print(f"crlab: {m}")):
        console.print("[red]missing Debian packages for the tests[/] (crlab installs them when run as root):")
        print(hostenv.install_command(missing), file=sys.stderr)
        return EXIT_INCOMPLETE
    # -rs: every skip prints its reason in the summary, so that a skip is never silent
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--durations=15", "-rs", *args.pytest_args]
    if not any(a.startswith("-n") for a in args.pytest_args):
        cmd += ["-n", "2", "--dist", "loadgroup"]
    console.print(f"crlab: {' '.join(cmd)}", highlight=False)
    code = subprocess.run(cmd, cwd=REPO_ROOT).returncode
    return EXIT_INCOMPLETE if code == 4 else code  # 4: pytest's usage error, i.e. bad arguments


def cmd_bench(args: argparse.Namespace) -> int:
    if args.what == "build":
        from crlab.buildbench import main as bench_build

        return bench_build([*(["--target", args.targets[0]] if args.targets else [])])
    if args.what == "cr":
        from crlab.crbench import main as bench_cr

        return bench_cr([*(["--config", args.config] if args.config else []),
                         *(["--run-dir", args.run_dir] if args.run_dir else [])])
    from crlab.bench import bench_boot

    args.config = args.config or str(REPO_ROOT / "configs" / "targets.yaml")
    cfg = _load(Path(args.config))
    if cfg is None:
        return EXIT_INCOMPLETE
    unknown = [t for t in (args.targets or []) if t not in cfg.targets]
    if unknown:
        raise UserError(f"unknown target(s) {', '.join(unknown)}; {args.config} has {', '.join(cfg.targets)}")
    if not ensure_host(cfg):
        return EXIT_INCOMPLETE
    return bench_boot(cfg, args.targets or list(cfg.targets), rounds=args.rounds)


def cmd_report(args: argparse.Namespace) -> int:
    from crlab.results import ResultStore, exit_code, print_summary

    store = ResultStore(Path(args.results) if args.results else REPO_ROOT / "results")
    run = store.open_run(args.run)
    results = run.results()
    print_summary(results, _stdout_console())
    for name, path in run.write_reports().items():
        print(f"  {name}: {path}")
    return exit_code(results)


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one line saying what is wrong and where help is, exit 2 (not the whole usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INCOMPLETE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="harness.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="build, boot and test every job of a matrix")
    run.add_argument("config", nargs="?", default=str(DEFAULT_CONFIG), help="matrix YAML (default: %(default)s)")
    run.add_argument("--resume", nargs="?", const="latest", metavar="RUN_ID",
                     help="finish an interrupted run (default: the latest)")
    run.add_argument("--force", action="store_true", help="resume even though the config file changed")
    run.add_argument("--jobs", "-j", type=int, help="guests at once (overrides options.jobs)")
    run.add_argument("--results", help="results directory (overrides options.results_dir)")
    run.add_argument("--transport", choices=["console", "ssh"], help="run every suite over this transport")
    run.add_argument("--retry-failures", action="store_true",
                     help="also retry jobs whose tests failed (a pass on retry is reported as flaky)")
    run.add_argument("--plain", action="store_true", help="one line per event instead of a live table")
    run.add_argument("--no-install", action="store_true", help="never run apt-get; fail if packages are missing")
    run.set_defaults(func=cmd_run)

    plan = sub.add_parser("plan", help="show the expanded jobs and what is cached; builds nothing")
    plan.add_argument("config", nargs="?", default=str(DEFAULT_CONFIG))
    plan.set_defaults(func=cmd_plan)

    doctor = sub.add_parser("doctor", help="what the host lacks for a matrix and how it gets installed")
    doctor.add_argument("config", nargs="?", default=str(REPO_ROOT / "configs" / "targets.yaml"))
    doctor.add_argument("--install", action="store_true", help="install what is missing (root)")
    doctor.set_defaults(func=cmd_doctor)

    shell = sub.add_parser("shell", help="boot one matrix cell and hand its console to you")
    shell.add_argument("kernel")
    shell.add_argument("target")
    shell.add_argument("--config", default=str(REPO_ROOT / "configs" / "targets.yaml"))
    shell.set_defaults(func=cmd_shell)

    selftest = sub.add_parser("selftest", help="crlab's own tests (pytest); extra arguments go to pytest")
    selftest.add_argument("pytest_args", nargs=argparse.REMAINDER)
    selftest.set_defaults(func=cmd_selftest)

    bench = sub.add_parser("bench", help="benchmarks: `bench boot` (boot-to-prompt vs bare QEMU), `bench build` "
                           "(kernel build vs plain make), `bench cr` (C/R times, image decode throughput)")
    bench.add_argument("what", choices=["boot", "build", "cr"])
    bench.add_argument("--run-dir", help="bench cr: summarise this run instead of running the matrix")
    bench.add_argument("--config", help="matrix (boot: configs/targets.yaml, cr: configs/cr-bench.yaml)")
    bench.add_argument("--targets", nargs="*")
    bench.add_argument("--rounds", type=int, default=3)
    bench.set_defaults(func=cmd_bench)

    report = sub.add_parser("report", help="print a run's summary and rewrite its reports")
    report.add_argument("run", nargs="?", default="latest")
    report.add_argument("--results")
    report.set_defaults(func=cmd_report)

    from crlab.cachecli import register as register_cache
    register_cache(sub)

    from crlab.workflows import nightly

    nightly.add_arguments(sub)  # nightly, history
    from crlab import exports

    exports.add_arguments(sub)  # export kcidb / lava
    from crlab.abicheck import register as register_abi_check
    register_abi_check(sub)
    from crlab.workflows import bisect, gate, repro

    gate.register(sub)
    repro.register(sub)
    bisect.register(sub)  # bisect, bisect-judge
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from crlab.results import RunNotFound

    try:
        return int(args.func(args))
    except (UserError, RunNotFound) as exc:
        message = str(exc.args[0]) if isinstance(exc, RunNotFound) and exc.args else str(exc)
        console.print(f"harness.py {args.command}: [red]error[/]: {message}", highlight=False, soft_wrap=True)
        return EXIT_INCOMPLETE
    except KeyboardInterrupt:
        return EXIT_INCOMPLETE
    except BrokenPipeError:  # e.g. `harness.py plan | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PASS


__all__ = ["main", "EXIT_PASS", "EXIT_FAIL", "EXIT_INCOMPLETE"]
