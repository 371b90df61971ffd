"""Reporters turn a finished (or interrupted) run into files; the store only hands them the run.

A reporter is any object with a `name` and a `write(run_dir, info, results)` that writes its
file(s) into the run directory and returns the main one (or None when it wrote nothing).  A new
output (a C/R compatibility matrix, KCIDB, LAVA ...) is one more class here, or a list passed to
`Run.write_reports(reporters=...)`; nothing in the store changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from crlab.model import JobResult
from crlab.results.reporters.html import HtmlReporter
from crlab.results.reporters.json import JsonReporter
from crlab.results.reporters.junit import JunitReporter
from crlab.results.runinfo import RunInfo


class Reporter(Protocol):
    name: str

    def write(self, run_dir: Path, info: RunInfo, results: list[JobResult]) -> Path | None: ...


DEFAULT_REPORTERS: list[Reporter] = [JsonReporter(), JunitReporter(), HtmlReporter()]

__all__ = ["DEFAULT_REPORTERS", "HtmlReporter", "JsonReporter", "JunitReporter", "Reporter"]
