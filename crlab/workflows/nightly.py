"""`harness.py nightly CONFIG`: run a matrix, store it, compare it with the previous run of the same
matrix, and say what regressed.

Exit codes: 0 nothing regressed (failures that were failing already, or that a known issue covers,
do not count), 1 a regression (pass -> fail of a job or of a leaf test), 2 the run is incomplete
(a job could not finish; it is never counted as a failure or a pass) or the input was bad.

The comparison goes to <run>/comparison.json and into report.html, with plots of build and boot
time per target over the stored runs of the matrix (crlab.results.history says what "the same
matrix" is: the same set of result keys).
"""

from __future__ import annotations

import json
import signal
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from rich.console import Console

from crlab.cache import Cache
from crlab.config import MatrixConfig
from crlab.model import EXIT_INCOMPLETE
from crlab.paths import CONFIGS_DIR
from crlab.results import ResultStore, Run, print_summary
from crlab.results.compare import Category, Comparison, compare
from crlab.results.files import atomic_write
from crlab.results.history import matrix_id, previous_run, runs_of_matrix, timing_series
from crlab.results.known import KnownIssues, load_known_issues

DEFAULT_KNOWN_ISSUES = CONFIGS_DIR / "known-issues.yaml"
COMPARISON_FILE = "comparison.json"
COMPARISON_SCHEMA = 1  # version of comparison.json's layout


@dataclass
class NightlyOutcome:
    run: Run
    previous: Run | None
    comparison: Comparison
    interrupted: bool


def read_known(path: str | None) -> KnownIssues | None:
    """The known-issues file: the one named (it must exist), else configs/known-issues.yaml if present."""
    if path is None:
        return load_known_issues(DEFAULT_KNOWN_ISSUES) if DEFAULT_KNOWN_ISSUES.is_file() else None
    return load_known_issues(path)  # a missing file is reported as FILE:1 by the loader


def _sigterm(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt()


def execute(cfg: MatrixConfig, store: ResultStore, *, plain: bool = False, retry_failures: bool = False) -> \
        tuple[Run, bool]:
    """Run every job of the matrix as `harness.py run` does; returns the run and whether it was
    interrupted.  The run is finished (complete/incomplete) but its reports are not written yet."""
    from crlab.orchestrator import Interrupted, Orchestrator, host_info
    from crlab.progress import make_progress

    specs = list(cfg.jobs)
    run = store.create_run(cfg.path, cfg.digest, specs, host_info(), config_text=cfg.text,
                           config_sources=cfg.sources)
    progress = make_progress(plain=plain or None)
    orchestrator = Orchestrator(cfg, run, progress, Cache(notify=progress.note), retry_test_failures=retry_failures)
    from crlab.cli import ctrl_c_ignored_note  # crlab.cli imports this module

    if note := ctrl_c_ignored_note():
        progress.note(note)
    previous_handler = signal.signal(signal.SIGTERM, _sigterm)
    interrupted = False
    try:
        orchestrator.execute(specs)
    except (Interrupted, KeyboardInterrupt):
        interrupted = True
        orchestrator.interrupt()
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    run.finish("complete" if not interrupted and not run.pending_jobs() else "incomplete")
    return run, interrupted


def compare_with_previous(store: ResultStore, run: Run, known: KnownIssues | None,
                          today: date | None = None, baseline: str | None = None) -> NightlyOutcome:
    """Compare `run` with the previous run of its matrix (or the run `baseline`), write
    comparison.json and the plots, and rewrite the run's reports."""
    from crlab.results.reporters.html_plots import write_plots

    previous = store.open_run(baseline) if baseline else previous_run(store, run)
    current_results = run.results()
    comparison = compare(previous.results() if previous else None, current_results, known=known, today=today,
                         previous_run=previous.run_id if previous else None, current_run=run.run_id)
    matrix = matrix_id(r.spec for r in current_results)
    today = today or date.today()
    data = {
        "schema_version": COMPARISON_SCHEMA,
        "matrix_id": matrix,
        "known_issues_file": known.path if known else None,
        "expired_known_issues": [{"cell": i.cell, "test": i.test, "reason": i.reason, "expires": str(i.expires),
                                  "line": i.line} for i in (known.expired(today) if known else [])],
        **comparison.to_dict(),
    }
    atomic_write(run.dir / COMPARISON_FILE, json.dumps(data, indent=2, sort_keys=True) + "\n")
    history = [r for r in runs_of_matrix(store, matrix) if r.run_id != run.run_id] + [run]
    write_plots(timing_series(store, history), run.dir)
    run.write_reports()
    return NightlyOutcome(run=run, previous=previous, comparison=comparison, interrupted=False)


_WORDS = {Category.REGRESSION: "REGRESSION", Category.KNOWN: "known", Category.STILL_FAILING: "still failing",
          Category.FLAKY: "flaky", Category.FIXED: "fixed", Category.INCOMPLETE: "incomplete",
          Category.NO_BASELINE: "no baseline", Category.NEW: "new", Category.REMOVED: "removed"}


def comparison_lines(comparison: Comparison) -> list[str]:
    """The comparison for a terminal: one line per listed unit, most important first."""
    lines = []
    for change in comparison.listed():
        arrow = f"{change.previous or '-'} -> {change.current or '-'}"
        detail = change.known_reason if change.category is Category.KNOWN else change.message.splitlines()[0] \
            if change.message else ""
        lines.append(f"  {_WORDS[change.category]:14s} {change.cell}  ({arrow})" + (f": {detail}" if detail else ""))
    return lines


def print_outcome(outcome: NightlyOutcome, console: Console, out: Any = None) -> None:
    out = out or sys.stdout
    print_summary(outcome.run.results(), console)
    print(f"nightly run {outcome.run.run_id}, matrix {matrix_id(outcome.run.specs())}: "
          + (f"previous run {outcome.previous.run_id}" if outcome.previous else "first run of this matrix"),
          file=out)
    for line in comparison_lines(outcome.comparison):
        print(line, file=out)
    print(outcome.comparison.summary_line(), file=out)
    print(f"  report: {outcome.run.dir / 'report.html'}", file=out)


def nightly(cfg: MatrixConfig, store: ResultStore, known: KnownIssues | None, *, plain: bool = False,
            retry_failures: bool = False, baseline: str | None = None, console: Console | None = None) -> int:
    run, interrupted = execute(cfg, store, plain=plain, retry_failures=retry_failures)
    outcome = compare_with_previous(store, run, known, baseline=baseline)
    outcome.interrupted = interrupted
    print_outcome(outcome, console or Console(width=180))
    if interrupted:
        print(f"interrupted: finished jobs are kept (run {run.run_id})")
        return outcome.comparison.exit_code() if outcome.comparison.regressed else EXIT_INCOMPLETE
    return outcome.comparison.exit_code()


def history_lines(store: ResultStore, job_id: str) -> list[str]:
    """`harness.py history CELL`: a line per run of the cell, oldest first."""
    from crlab.results.history import cell_history

    rows = cell_history(store, job_id)
    lines = [f"{'run':22s} {'started':25s} {'status':10s} {'failure':12s} {'build s':>8s} {'boot s':>7s}  tests"]
    for row in rows:
        tests = ", ".join(f"{n} {s}" for s, n in sorted(row.tests.items())) or "-"
        if row.failed_tests:
            tests += f" (failed: {', '.join(row.failed_tests)})"
        build = f"{row.build_s:.1f}" if row.build_s is not None else "-"
        if row.kernel_cached:
            build += "*"
        boot = f"{row.boot_s:.2f}" if row.boot_s is not None else "-"
        attempts = f" [{row.attempts} attempts]" if row.attempts > 1 else ""
        lines.append(f"{row.run_id:22s} {row.started:25s} {row.status:10s} {row.failure or '-':12s} "
                     f"{build:>8s} {boot:>7s}  {tests}{attempts}")
    return lines


__all__ = ["COMPARISON_FILE", "DEFAULT_KNOWN_ISSUES", "NightlyOutcome", "compare_with_previous", "execute",
           "history_lines", "nightly", "read_known"]


# ---------------------------------------------------------------------------- command line


def cmd_nightly(args: Any) -> int:
    """`harness.py nightly CONFIG` (registered in crlab.cli)."""
    from crlab.cli import _load, _stdout_console, ensure_host
    from crlab.config import ConfigError

    cfg = _load(Path(args.config))
    if cfg is None:
        return EXIT_INCOMPLETE
    try:
        known = read_known(args.known_issues)
    except ConfigError as exc:
        print(f"known issues rejected: {len(exc.problems)} problem(s)\n{exc}", file=sys.stderr)
        return EXIT_INCOMPLETE
    if not ensure_host(cfg, install=not args.no_install):
        return EXIT_INCOMPLETE
    store = ResultStore(Path(args.results) if args.results else cfg.options.results_dir)
    return nightly(cfg, store, known, plain=args.plain, retry_failures=args.retry_failures,
                   baseline=args.baseline, console=_stdout_console())


def cmd_history(args: Any) -> int:
    """`harness.py history CELL` (registered in crlab.cli)."""
    from crlab.errors import UserError
    from crlab.paths import DEFAULT_RESULTS_DIR
    from crlab.results.history import cell_history, known_job_ids

    store = ResultStore(Path(args.results) if args.results else DEFAULT_RESULTS_DIR)
    if not cell_history(store, args.cell):
        from crlab.config.document import did_you_mean

        hint = did_you_mean(args.cell, known_job_ids(store))
        raise UserError(f"no cell {args.cell!r} in {store.db_path}" + (f" ({hint})" if hint else ""))
    if args.json:
        print(json.dumps([row.to_dict() for row in cell_history(store, args.cell)], indent=2))
    else:
        print(f"{args.cell}: * = kernel taken from the cache (its build time is that of the build that made it)")
        for line in history_lines(store, args.cell):
            print(line)
    return 0


def add_arguments(sub: Any) -> None:
    """The nightly and history subcommands (crlab.cli calls this)."""
    nightly_p = sub.add_parser("nightly", help="run a matrix and compare it with its previous run (exit 1 on a "
                               "regression, 2 when incomplete)")
    nightly_p.add_argument("config", help="matrix YAML")
    nightly_p.add_argument("--known-issues", metavar="FILE",
                           help=f"expected failures (default: {DEFAULT_KNOWN_ISSUES.relative_to(CONFIGS_DIR.parent)}"
                           " when it exists)")
    nightly_p.add_argument("--baseline", metavar="RUN_ID", help="compare with this run instead of the previous one")
    nightly_p.add_argument("--results", help="results directory (overrides options.results_dir)")
    nightly_p.add_argument("--retry-failures", action="store_true",
                           help="retry jobs whose tests failed too (a pass on retry is flaky, not a pass)")
    nightly_p.add_argument("--plain", action="store_true", help="one line per event instead of a live table")
    nightly_p.add_argument("--no-install", action="store_true", help="never run apt-get")
    nightly_p.set_defaults(func=cmd_nightly)

    history_p = sub.add_parser("history", help="a cell's outcomes and build/boot times across runs")
    history_p.add_argument("cell", help="job id, e.g. linux-6.1/x86_64/smoke")
    history_p.add_argument("--results", help="results directory (default: results/)")
    history_p.add_argument("--json", action="store_true", help="as JSON")
    history_p.set_defaults(func=cmd_history)
