"""Progress: which job, which stage, how long.  A live table on a terminal, one line per event otherwise."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Protocol, TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from crlab.model import JobResult, Status


class Progress(Protocol):
    def start(self, jobs: list[str]) -> None: ...
    def stage(self, job: str, stage: str, detail: str = "") -> None: ...
    def done(self, result: JobResult) -> None: ...
    def note(self, text: str) -> None: ...
    def stop(self) -> None: ...


STATUS_STYLE = {Status.PASS: "green", Status.FAIL: "red", Status.INCOMPLETE: "yellow", Status.SKIP: "blue",
                Status.PENDING: "dim"}


class PlainProgress:
    """For CI logs and pipes: a timestamped line per event."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.stage_started: dict[str, float] = {}

    def _line(self, text: str) -> None:
        with self.lock:
            print(f"[{time.monotonic() - self.t0:7.1f}s] {text}", file=self.stream, flush=True)

    def start(self, jobs: list[str]) -> None:
        self._line(f"{len(jobs)} job(s): " + ", ".join(jobs))

    def _since_last(self, job: str) -> str:
        """How long the job's previous stage took, so a slow stage stands out in a CI log."""
        now = time.monotonic()
        previous = self.stage_started.get(job)
        self.stage_started[job] = now
        return f" [previous stage {now - previous:.1f}s]" if previous is not None else ""

    def stage(self, job: str, stage: str, detail: str = "") -> None:
        took = self._since_last(job)
        self._line(f"{job}: {stage}" + (f" ({detail})" if detail else "") + took)

    def done(self, result: JobResult) -> None:
        extra = f" [{result.failure.value}]" if result.failure.value else ""
        took = self._since_last(result.spec.job_id)
        self._line(f"{result.spec.job_id}: {result.status.value.upper()}{extra} {result.message}".rstrip() + took)

    def note(self, text: str) -> None:
        self._line(text)

    def stop(self) -> None:
        pass


class LiveProgress:
    """For a terminal: a table of jobs with their stage and elapsed time, redrawn in place."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.rows: dict[str, dict[str, object]] = {}
        self.lock = threading.Lock()
        self.live: Live | None = None

    def _table(self) -> Table:
        table = Table(title="crlab", expand=False)
        for column in ("job", "stage", "elapsed", "status"):
            table.add_column(column)
        now = time.monotonic()
        with self.lock:
            for job, row in self.rows.items():
                started = row.get("started")
                ended = row.get("ended")
                elapsed = ""
                if isinstance(started, float):
                    elapsed = f"{(ended if isinstance(ended, float) else now) - started:.0f}s"
                status = row.get("status")
                shown = ""
                if isinstance(status, Status):
                    shown = f"[{STATUS_STYLE[status]}]{status.value.upper()}[/]"
                table.add_row(job, str(row.get("stage", "")), elapsed, shown)
        return table

    def start(self, jobs: list[str]) -> None:
        for job in jobs:
            self.rows[job] = {"stage": "queued"}
        self.live = Live(get_renderable=self._table, console=self.console, refresh_per_second=2, transient=False)
        self.live.start()

    def stage(self, job: str, stage: str, detail: str = "") -> None:
        with self.lock:
            row = self.rows.setdefault(job, {})
            row.setdefault("started", time.monotonic())
            row["stage"] = stage + (f" ({detail})" if detail else "")

    def done(self, result: JobResult) -> None:
        with self.lock:
            row = self.rows.setdefault(result.spec.job_id, {})
            row.setdefault("started", time.monotonic())
            row["ended"] = time.monotonic()
            row["status"] = result.status
            row["stage"] = result.failure.value or "done"

    def note(self, text: str) -> None:
        self.console.print(text)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def make_progress(plain: bool | None = None) -> Progress:
    if plain is None:
        plain = not sys.stderr.isatty() or bool(os.environ.get("CI") or os.environ.get("CRLAB_PLAIN"))
    return PlainProgress() if plain else LiveProgress()
