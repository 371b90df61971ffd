"""Queries across runs of the results store: a cell's history, the previous run of a matrix, and
the build/boot time series the HTML report plots.

A *matrix* is identified by the set of its jobs' result keys (`matrix_id`): two runs of the same
cells are the same matrix whichever config file they came from, so a nightly with a patched tree
under the same kernel name compares with the nightly before it, and adding or removing a cell
starts a new history (a change of matrix is visible as a new id, not as phantom regressions).
Read-only: everything here goes through the store's connections and never writes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from crlab.model import JobSpec, Status
from crlab.results.store import RUN_RUNNING, ResultStore, Run


def matrix_id(keys: Iterable[str | JobSpec]) -> str:
    """A short stable id of a set of result keys (JobSpec.key strings or specs)."""
    canonical = sorted({k.key if isinstance(k, JobSpec) else k for k in keys})
    return hashlib.sha256("\n".join(canonical).encode()).hexdigest()[:16]


def run_matrix_ids(store: ResultStore) -> dict[str, str]:
    """run id -> matrix id for every run in the store."""
    keys: dict[str, list[str]] = {}
    with store.connect() as conn:
        for row in conn.execute("SELECT run_id, key FROM jobs"):
            keys.setdefault(row["run_id"], []).append(row["key"])
    return {run_id: matrix_id(k) for run_id, k in keys.items()}


def runs_of_matrix(store: ResultStore, matrix: str, before: str | None = None) -> list[Run]:
    """Finished runs (complete or incomplete, not still running) of a matrix, oldest first; with
    `before`, only runs that started before that run."""
    ids = run_matrix_ids(store)
    with store.connect() as conn:
        rows = conn.execute("SELECT run_id, started, status FROM runs ORDER BY started, run_id").fetchall()
    found: list[Run] = []
    for row in rows:
        if before is not None and row["run_id"] == before:
            break
        if ids.get(row["run_id"]) == matrix and row["status"] != RUN_RUNNING:
            found.append(Run(store, row["run_id"]))
    return found


def previous_run(store: ResultStore, current: Run) -> Run | None:
    """The newest finished run of the same matrix that started before `current`."""
    matrix = matrix_id(current.specs())
    earlier = runs_of_matrix(store, matrix, before=current.run_id)
    return earlier[-1] if earlier else None


@dataclass
class CellOutcome:
    """One run's outcome of one cell."""

    run_id: str
    started: str
    config_path: str
    status: str
    failure: str
    attempts: int
    build_s: float | None
    boot_s: float | None
    kernel_cached: bool | None
    tests: dict[str, int] = field(default_factory=dict)  # test status -> count
    failed_tests: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def cell_history(store: ResultStore, job_id: str) -> list[CellOutcome]:
    """Every recorded outcome of the cell with this job id, oldest first."""
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT j.run_id, r.started, r.config_path, j.key, j.status, j.failure, j.attempts, j.timings, j.info"
            " FROM jobs AS j JOIN runs AS r USING (run_id) WHERE j.job_id = ? ORDER BY r.started, j.run_id",
            (job_id,),
        ).fetchall()
        tests: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for row in conn.execute(
            "SELECT t.run_id, t.job_key, t.name, t.status FROM tests AS t JOIN jobs AS j"
            " ON t.run_id = j.run_id AND t.job_key = j.key WHERE j.job_id = ? ORDER BY t.seq", (job_id,),
        ):
            tests.setdefault((row["run_id"], row["job_key"]), []).append((row["name"], row["status"]))
    outcomes = []
    for row in rows:
        timings = json.loads(row["timings"] or "{}")
        info = json.loads(row["info"] or "{}")
        own = tests.get((row["run_id"], row["key"]), [])
        counts: dict[str, int] = {}
        for _name, status in own:
            counts[status] = counts.get(status, 0) + 1
        outcomes.append(CellOutcome(
            run_id=row["run_id"], started=row["started"], config_path=row["config_path"], status=row["status"],
            failure=row["failure"], attempts=row["attempts"], build_s=timings.get("build_s"),
            boot_s=timings.get("boot_s"), kernel_cached=info.get("kernel_cached"), tests=counts,
            failed_tests=[name for name, status in own if status == Status.FAIL.value],
        ))
    return outcomes


def known_job_ids(store: ResultStore) -> list[str]:
    with store.connect() as conn:
        return [row[0] for row in conn.execute("SELECT DISTINCT job_id FROM jobs ORDER BY job_id")]


@dataclass
class TimingPoint:
    run_id: str
    started: str
    target: str
    kernel: str
    build_s: float | None
    boot_s: float | None


def timing_series(store: ResultStore, runs: list[Run]) -> list[TimingPoint]:
    """Build and boot time per (kernel, target) in each of `runs` (oldest first).  Several jobs of a
    cell share one kernel: the build time is theirs in common, the boot time the median of theirs."""
    points: list[TimingPoint] = []
    for run in runs:
        info = run.info()
        cells: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
        for result in run.results():
            if result.spec.consumer:
                continue  # a cross-kernel job's times mix two kernels
            builds, boots = cells.setdefault((result.spec.kernel, result.spec.target), ([], []))
            if "build_s" in result.timings:
                builds.append(float(result.timings["build_s"]))
            if "boot_s" in result.timings:
                boots.append(float(result.timings["boot_s"]))
        for (kernel, target), (builds, boots) in cells.items():
            points.append(TimingPoint(run.run_id, info.started, target, kernel,
                                      max(builds) if builds else None,
                                      sorted(boots)[len(boots) // 2] if boots else None))
    return points


__all__ = ["CellOutcome", "TimingPoint", "cell_history", "known_job_ids", "matrix_id", "previous_run",
           "run_matrix_ids", "runs_of_matrix", "timing_series"]
