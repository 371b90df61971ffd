"""The summary table printed at the end of `harness.py run` and by `harness.py report`."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from crlab.model import AXES, OPTIONAL_AXES, FailureClass, JobResult, Status
from crlab.results import verdict
from crlab.results.compat import cell_text, compat_cells, compat_rows
from crlab.results.reporters.text import first_line, seconds
from crlab.results.runinfo import RunInfo

_STYLES = {
    Status.PASS: "bold green",
    Status.FAIL: "bold red",
    Status.SKIP: "dim",
    Status.INCOMPLETE: "bold yellow",
    Status.PENDING: "dim",
}


def summary_table(results: Iterable[JobResult]) -> Table:
    """A row per job: its axes (engine and consumer only when some job has one), then the outcome."""
    results = list(results)
    axes = [a for a in AXES if a not in OPTIONAL_AXES or any(getattr(r.spec, a) for r in results)]
    table = Table(title="crlab results", show_lines=False)
    for axis in axes:
        table.add_column(axis, no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("failure")
    table.add_column("stage")
    for label in ("build s", "boot s", "run s"):
        table.add_column(label, justify="right")
    table.add_column("message", overflow="fold")
    for result in results:
        status = Status(result.status)
        flaky = " (flaky)" if verdict.is_flaky(result) else ""
        timings = [seconds(result.timings[k]) if k in result.timings else "-" for k in ("build_s", "boot_s", "run_s")]
        # Text, not str: names and messages must never be taken for rich markup
        table.add_row(
            *(Text(getattr(result.spec, axis)) for axis in axes),
            Text(status.value.upper() + flaky, style=_STYLES[status]),
            Text(FailureClass(result.failure).value),
            Text(result.stage),
            *(Text(t) for t in timings),
            Text(first_line(result.message, 160)),
        )
    return table


def compat_table(results: Iterable[JobResult]) -> Table | None:
    """The C/R compatibility matrix, a row per (producer, consumer, target, engine); None without one."""
    cells = compat_cells(compat_rows(results))
    if not cells:
        return None
    table = Table(title="C/R compatibility (checkpoint on producer, restore on consumer)")
    for label in ("producer", "consumer", "target", "engine", "outcomes"):
        table.add_column(label, no_wrap=label != "outcomes")
    for (producer, consumer, target, engine), counts in sorted(cells.items()):
        style = "green" if set(counts) <= {"compatible", "expected-incompatible"} else "red"
        table.add_row(Text(producer), Text(consumer), Text(target), Text(engine),
                      Text(cell_text(counts), style=style))
    return table


def print_summary(results: Iterable[JobResult], console: Console) -> None:
    results = list(results)
    console.print(summary_table(results))
    compat = compat_table(results)
    if compat is not None:
        console.print(compat)
    console.print(verdict.verdict_line(results), highlight=False)


class TerminalReporter:
    """The summary as a reporter: prints, writes no file."""

    name = "terminal"

    def __init__(self, console: Console) -> None:
        self.console = console

    def write(self, run_dir: Path, info: RunInfo, results: list[JobResult]) -> None:
        print_summary(results, self.console)
