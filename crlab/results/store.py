"""The results store: SQLite, safe for concurrent writers, versioned (see schema.py).

Layout of a results directory::

    results/
      crlab.sqlite            every run, job and test (WAL mode)
      latest -> 20261123-105430-ab12
      20261123-105430-ab12/
        config.yaml  results.json  junit.xml  report.html   (one file per reporter)
        <kernel>__<target>__<suite>/   console.log, build.log, suite.log, result.json ...

A job is identified by its result key (JobSpec.key: the named axes) and a test by (run, job key,
test name), so the same job and test keep their identity across runs.  Anything job-specific
beyond that (image artefacts, cache keys ...) goes into the generic `artifacts` and `info` JSON
columns.  The store knows nothing of report formats: `Run.write_reports` hands a run to reporters.

Every call opens its own short-lived connection and keeps its transaction short, so that the
orchestrator's threads and separate processes can record results at the same time.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from crlab.errors import UserError
from crlab.model import AXES, FailureClass, JobResult, JobSpec, Status, TestResult
from crlab.results.files import atomic_write
from crlab.results.reporters import DEFAULT_REPORTERS, Reporter
from crlab.results.runinfo import RunInfo
from crlab.results.schema import StoreError, ensure_schema

DB_NAME = "crlab.sqlite"
LATEST = "latest"
CONFIG_COPY = "config.yaml"

RUN_RUNNING = "running"
RUN_COMPLETE = "complete"
RUN_INCOMPLETE = "incomplete"

# Jobs in these states still have to be run (again) when a run is resumed.
UNFINISHED = (Status.PENDING, Status.INCOMPLETE)

_AXIS_COLUMNS = ", ".join(AXES)


class RunNotFound(UserError, LookupError):
    pass


class ReportError(RuntimeError):
    """One or more reporters failed; the others still wrote their files."""


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _new_run_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _repeated(values: Sequence[str]) -> list[str]:
    return sorted(value for value, n in Counter(values).items() if n > 1)


def _no_space(path: Path) -> bool:
    try:
        usage = os.statvfs(path)
    except OSError:
        return False
    return usage.f_bavail * usage.f_frsize < 1 << 20  # under 1 MiB left: SQLite cannot grow its journal


@contextlib.contextmanager
def storage_errors(results_dir: Path) -> Iterator[None]:
    """A full disk under the results directory becomes one clear error (StoreError: the command line
    prints it on one line and exits 2) instead of SQLite's "disk I/O error" traceback; the store's
    transactions and atomic writes mean nothing half-written stays behind."""
    try:
        yield
    except (OSError, sqlite3.OperationalError) as exc:
        full = getattr(exc, "errno", None) == errno.ENOSPC or (
            isinstance(exc, sqlite3.OperationalError) and _no_space(results_dir))
        if not full:
            raise
        raise StoreError(f"results directory {results_dir}: no space left on device ({exc}); "
                         "earlier results are intact, free some space and run again") from exc


class ResultStore:
    def __init__(self, results_dir: Path) -> None:
        self.results_dir = Path(results_dir)
        with storage_errors(self.results_dir):
            self.results_dir.mkdir(parents=True, exist_ok=True)
            self.db_path = self.results_dir / DB_NAME
            self.version_found = ensure_schema(self.db_path)  # 0: new; below SCHEMA_VERSION: migrated

    # -- database plumbing -------------------------------------------------------------------

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A fresh connection in autocommit mode; use `transaction()` to write."""
        conn = sqlite3.connect(self.db_path, timeout=60.0, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = NORMAL")
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction; it takes the write lock up front so it cannot deadlock."""
        with storage_errors(self.results_dir), self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # a failed COMMIT has rolled back already
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # -- runs --------------------------------------------------------------------------------

    def create_run(
        self, config_path: Path, config_digest: str, jobs: list[JobSpec], host: dict[str, Any],
        config_text: str = "", config_sources: dict[str, str] | None = None,
    ) -> Run:
        """Record a new run with all of its jobs pending, and the config it was made from (also
        copied to config.yaml in the run directory); point `latest` at it."""
        for what, values in (("job", [s.key for s in jobs]), ("job directory", [s.dir_name for s in jobs])):
            if duplicates := _repeated(values):
                raise ValueError(f"the same {what} appears more than once: {', '.join(duplicates)}")
        with storage_errors(self.results_dir):
            return self._create_run(config_path, config_digest, jobs, host, config_text, config_sources)

    def _create_run(self, config_path: Path, config_digest: str, jobs: list[JobSpec], host: dict[str, Any],
                    config_text: str, config_sources: dict[str, str] | None) -> Run:
        for _ in range(20):
            run_id = _new_run_id()
            run_dir = self.results_dir / run_id
            try:
                run_dir.mkdir(parents=True)
            except FileExistsError:
                continue
            try:
                with self.transaction() as conn:
                    conn.execute(
                        "INSERT INTO runs (run_id, started, finished, status, config_path, config_digest,"
                        " host, config_text, config_sources) VALUES (?, ?, NULL, ?, ?, ?, ?, ?, ?)",
                        (run_id, _now(), RUN_RUNNING, str(config_path), config_digest, _dumps(host),
                         config_text, _dumps(config_sources or {})),
                    )
                    now = _now()
                    conn.executemany(
                        f"INSERT INTO jobs (run_id, key, seq, job_id, {_AXIS_COLUMNS}, status, attempts, updated)"
                        f" VALUES (?, ?, ?, ?, {', '.join('?' for _ in AXES)}, ?, 0, ?)",
                        [(run_id, s.key, seq, s.job_id, *(getattr(s, a) for a in AXES), Status.PENDING.value, now)
                         for seq, s in enumerate(jobs)],
                    )
            except sqlite3.IntegrityError:
                run_dir.rmdir()
                continue
            if config_text:
                atomic_write(run_dir / CONFIG_COPY, config_text)
            self._point_latest(run_id)
            return Run(self, run_id)
        raise RuntimeError("could not find a free run id")

    def _point_latest(self, run_id: str) -> None:
        link = self.results_dir / LATEST
        tmp = self.results_dir / f".{LATEST}.{os.getpid()}.{secrets.token_hex(4)}"
        os.symlink(run_id, tmp)
        try:
            os.replace(tmp, link)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise

    def open_run(self, run_id: str = LATEST) -> Run:
        """Open a run by id, by a unique prefix of its id, or "latest"."""
        with self.connect() as conn:
            if run_id == LATEST:
                link = self.results_dir / LATEST
                if link.is_symlink():
                    run_id = Path(os.readlink(link)).name
                else:
                    row = conn.execute(
                        "SELECT run_id FROM runs ORDER BY started DESC, run_id DESC LIMIT 1"
                    ).fetchone()
                    if row is None:
                        raise RunNotFound(f"no runs in {self.results_dir}")
                    run_id = row["run_id"]
            if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
                return Run(self, run_id)
            rows = conn.execute(
                "SELECT run_id FROM runs WHERE substr(run_id, 1, ?) = ?", (len(run_id), run_id)
            ).fetchall()
        if len(rows) == 1:
            return Run(self, rows[0]["run_id"])
        if rows:
            raise RunNotFound(f"run id {run_id!r} is ambiguous: {', '.join(r['run_id'] for r in rows)}")
        raise RunNotFound(f"no run {run_id!r} in {self.results_dir}")

    def list_runs(self) -> list[RunInfo]:
        """Every run, newest first."""
        with self.connect() as conn:
            rows = conn.execute("SELECT * FROM runs ORDER BY started DESC, run_id DESC").fetchall()
            counts: dict[str, dict[str, int]] = {}
            for row in conn.execute("SELECT run_id, status, COUNT(*) AS n FROM jobs GROUP BY run_id, status"):
                counts.setdefault(row["run_id"], {})[row["status"]] = row["n"]
        return [_run_info(row, counts.get(row["run_id"], {})) for row in rows]


def _run_info(row: sqlite3.Row, counts: dict[str, int]) -> RunInfo:
    return RunInfo(
        run_id=row["run_id"],
        started=row["started"],
        finished=row["finished"],
        status=row["status"],
        config_path=row["config_path"],
        config_digest=row["config_digest"],
        host=json.loads(row["host"] or "{}"),
        job_counts=counts,
        config_text=row["config_text"],
        config_sources=json.loads(row["config_sources"] or "{}"),
    )


class Run:
    """One run in the store.  Cheap to create; safe to share between threads."""

    def __init__(self, store: ResultStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.dir = store.results_dir / run_id

    def __repr__(self) -> str:
        return f"Run({self.run_id!r})"

    def info(self) -> RunInfo:
        with self.store.connect() as conn:
            row = conn.execute("SELECT * FROM runs WHERE run_id = ?", (self.run_id,)).fetchone()
            if row is None:
                raise RunNotFound(self.run_id)
            counts = {
                r["status"]: r["n"]
                for r in conn.execute(
                    "SELECT status, COUNT(*) AS n FROM jobs WHERE run_id = ? GROUP BY status", (self.run_id,)
                )
            }
        return _run_info(row, counts)

    def job_dir(self, spec: JobSpec) -> Path:
        path = self.dir / spec.dir_name
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- recording ---------------------------------------------------------------------------

    def record(self, result: JobResult) -> None:
        """Store a job's result (replacing its previous result and tests) and write result.json.

        Test names are the tests' identity across runs, so they must be unique within a job; a
        result that repeats one is refused before anything is written."""
        spec = result.spec
        if duplicates := _repeated([t.name for t in result.tests]):
            raise ValueError(f"{spec.job_id}: test name(s) repeated: {', '.join(map(repr, duplicates))}")
        test_rows = [
            (self.run_id, spec.key, seq, test.name, test.number, Status(test.status).value, test.message)
            for seq, test in enumerate(result.tests)
        ]
        with self.store.transaction() as conn:
            conn.execute(
                f"INSERT INTO jobs (run_id, key, seq, job_id, {_AXIS_COLUMNS}, status, failure, stage, message,"
                " attempts, timings, info, artifacts, updated)"
                " VALUES (?, ?, (SELECT COALESCE(MAX(seq), -1) + 1 FROM jobs WHERE run_id = ?), ?,"
                f" {', '.join('?' for _ in AXES)}, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (run_id, key) DO UPDATE SET"
                " status = excluded.status, failure = excluded.failure, stage = excluded.stage,"
                " message = excluded.message, attempts = excluded.attempts, timings = excluded.timings,"
                " info = excluded.info, artifacts = excluded.artifacts, updated = excluded.updated",
                (
                    self.run_id, spec.key, self.run_id, spec.job_id, *(getattr(spec, a) for a in AXES),
                    Status(result.status).value, FailureClass(result.failure).value, result.stage,
                    result.message, result.attempts, _dumps(result.timings), _dumps(result.info),
                    _dumps(result.artifacts), _now(),
                ),
            )
            conn.execute("DELETE FROM tests WHERE run_id = ? AND job_key = ?", (self.run_id, spec.key))
            conn.executemany(
                "INSERT INTO tests (run_id, job_key, seq, name, number, status, message)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                test_rows,
            )
        with storage_errors(self.store.results_dir):
            atomic_write(self.job_dir(spec) / "result.json",
                         json.dumps(result.to_dict(), indent=2, sort_keys=True, default=str) + "\n")

    def mark_running(self) -> None:
        """Mark the run as running again (when it is resumed)."""
        with self.store.transaction() as conn:
            conn.execute("UPDATE runs SET status = ?, finished = NULL WHERE run_id = ?",
                         (RUN_RUNNING, self.run_id))

    def finish(self, status: str) -> None:
        """End the run: "complete", or "incomplete" (interrupted; it can be resumed)."""
        if status not in (RUN_COMPLETE, RUN_INCOMPLETE):
            raise ValueError(f"a run finishes {RUN_COMPLETE!r} or {RUN_INCOMPLETE!r}, not {status!r}")
        with self.store.transaction() as conn:
            conn.execute("UPDATE runs SET status = ?, finished = ? WHERE run_id = ?",
                         (status, _now(), self.run_id))

    # -- reading -----------------------------------------------------------------------------

    def results(self) -> list[JobResult]:
        """Every job of the run, in the order the jobs were planned."""
        with self.store.connect() as conn:
            job_rows = conn.execute("SELECT * FROM jobs WHERE run_id = ? ORDER BY seq", (self.run_id,)).fetchall()
            test_rows = conn.execute(
                "SELECT * FROM tests WHERE run_id = ? ORDER BY job_key, seq", (self.run_id,)
            ).fetchall()
        tests: dict[str, list[TestResult]] = {}
        for row in test_rows:
            tests.setdefault(row["job_key"], []).append(
                TestResult(name=row["name"], status=Status(row["status"]), message=row["message"],
                           number=row["number"])
            )
        return [_job_result(row, tests.get(row["key"], [])) for row in job_rows]

    def result(self, job: str | JobSpec) -> JobResult | None:
        """One job's result, by its spec (its key) or by its job id."""
        for result in self.results():
            if (result.spec == job) if isinstance(job, JobSpec) else (result.spec.job_id == job):
                return result
        return None

    def specs(self) -> list[JobSpec]:
        return [r.spec for r in self.results()]

    def pending_jobs(self) -> list[JobSpec]:
        """Jobs still to run: never run, or left incomplete (interrupted, infrastructure trouble)."""
        marks = ", ".join("?" for _ in UNFINISHED)
        with self.store.connect() as conn:
            rows = conn.execute(
                f"SELECT {_AXIS_COLUMNS} FROM jobs WHERE run_id = ? AND status IN ({marks}) ORDER BY seq",
                (self.run_id, *(s.value for s in UNFINISHED)),
            ).fetchall()
        return [_spec(row) for row in rows]

    # -- reports -----------------------------------------------------------------------------

    def write_reports(self, reporters: Sequence[Reporter] | None = None) -> dict[str, Path]:
        """Hand the run to each reporter (default: results.json, junit.xml, report.html); returns
        reporter name -> file written.  A failing reporter does not stop the others."""
        info = self.info()
        results = self.results()
        self.dir.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        failed: list[str] = []
        for reporter in DEFAULT_REPORTERS if reporters is None else reporters:
            try:
                path = reporter.write(self.dir, info, results)
            except Exception as exc:  # noqa: BLE001 - collected and raised below
                failed.append(f"{reporter.name}: {type(exc).__name__}: {exc}")
                continue
            if path is not None:
                paths[reporter.name] = path
        if failed and _no_space(self.dir):
            raise StoreError(f"results directory {self.dir}: no space left on device; reports not written: "
                             + "; ".join(failed) + " (the results are in the store: `harness.py report "
                             f"{self.run_id}` rewrites them once there is space)")
        if failed:
            raise ReportError(f"run {self.run_id}: reports failed: " + "; ".join(failed))
        return paths


def _spec(row: sqlite3.Row) -> JobSpec:
    return JobSpec.from_axes({axis: row[axis] for axis in AXES})


def _job_result(row: sqlite3.Row, tests: list[TestResult]) -> JobResult:
    return JobResult(
        spec=_spec(row),
        status=Status(row["status"]),
        failure=FailureClass(row["failure"]),
        stage=row["stage"],
        message=row["message"],
        tests=tests,
        timings=json.loads(row["timings"] or "{}"),
        artifacts=json.loads(row["artifacts"] or "{}"),
        info=json.loads(row["info"] or "{}"),
        attempts=row["attempts"],
    )
