"""results.json: the run (with the config it was made from), a summary, and every job in full."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from crlab.model import JobResult
from crlab.results import verdict
from crlab.results.compat import compat_rows
from crlab.results.files import atomic_write
from crlab.results.runinfo import RunInfo

FILENAME = "results.json"


def results_data(info: RunInfo, results: list[JobResult]) -> dict[str, Any]:
    return {
        "run": info.to_dict(),
        "summary": verdict.summary(results),
        "jobs": [r.to_dict() for r in results],
        "compat": compat_rows(results),
    }


class JsonReporter:
    name = "json"

    def write(self, run_dir: Path, info: RunInfo, results: list[JobResult]) -> Path:
        path = run_dir / FILENAME
        atomic_write(path, json.dumps(results_data(info, results), indent=2, sort_keys=True, default=str) + "\n")
        return path
