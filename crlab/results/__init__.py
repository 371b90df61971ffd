"""Results: the versioned store (store.py, schema.py), the verdict logic (verdict.py) and the
reporters that turn a run into files or a terminal table (reporters/)."""

from crlab.results.reporters import DEFAULT_REPORTERS, Reporter
from crlab.results.reporters.terminal import TerminalReporter, print_summary, summary_table
from crlab.results.runinfo import RunInfo
from crlab.results.schema import SCHEMA_VERSION, StoreError, StoreVersionError
from crlab.results.store import LATEST, ReportError, ResultStore, Run, RunNotFound
from crlab.results.verdict import exit_code, status_counts

__all__ = [
    "DEFAULT_REPORTERS", "LATEST", "SCHEMA_VERSION", "ReportError", "Reporter", "ResultStore", "Run", "RunInfo",
    "RunNotFound", "StoreError", "StoreVersionError", "TerminalReporter", "exit_code", "print_summary",
    "status_counts", "summary_table",
]
