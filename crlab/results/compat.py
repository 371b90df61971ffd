"""The C/R compatibility matrix: (producer kernel, consumer kernel, target, engine, test) -> outcome.

Cross-kernel job kinds record their rows in a job's info["compat"]; this module gathers them for
results.json, the terminal summary and the HTML grid.  Outcomes: compatible, differs (with the
diff), restore-failed / checkpoint-failed (with the error), expected-incompatible (with the
reason from the repo's known-incompatibilities file), not-run (with why).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from crlab.model import JobResult

OUTCOMES = ("compatible", "differs", "restore-failed", "checkpoint-failed", "expected-incompatible", "not-run")
ROW_KEYS = ("producer", "consumer", "target", "engine", "test")


def compat_rows(results: Iterable[JobResult]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for result in results:
        for row in result.info.get("compat", []) or []:
            if isinstance(row, dict):
                rows.append({**row, "job_id": result.spec.job_id})
    return sorted(rows, key=lambda r: tuple(str(r.get(k, "")) for k in ROW_KEYS))


def compat_cells(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str, str], Counter[str]]:
    """Outcome counts per (producer, consumer, target, engine)."""
    cells: dict[tuple[str, str, str, str], Counter[str]] = {}
    for row in rows:
        key = (str(row.get("producer", "")), str(row.get("consumer", "")), str(row.get("target", "")),
               str(row.get("engine", "")))
        cells.setdefault(key, Counter())[str(row.get("outcome", "not-run"))] += 1
    return cells


def cell_text(counts: Counter[str]) -> str:
    return ", ".join(f"{counts[o]} {o}" for o in OUTCOMES if counts.get(o))
