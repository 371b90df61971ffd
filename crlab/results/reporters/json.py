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
# The layout's version; crlab/results/schema-results-v<N>.json documents it (JSON Schema).
SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).resolve().parent.parent / f"schema-results-v{SCHEMA_VERSION}.json"


def results_data(info: RunInfo, results: list[JobResult]) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
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
