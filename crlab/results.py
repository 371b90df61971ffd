"""The results store (SQLite, safe for concurrent writers) and the reports made from it.

Layout of a results directory::

    results/
      crlab.sqlite            every run, job and test (WAL mode)
      latest -> 20261123-105430-ab12
      20261123-105430-ab12/
        results.json  junit.xml  report.html
        <kernel>__<target>__<suite>/   console.log, build.log, suite.log, result.json ...

A job is identified inside a run by its job id (kernel/target/suite) and a test by
(run, kernel, target, suite, test name).  Anything job-specific beyond that (image artefacts,
the kernels of a checkpoint/restore pair, cache keys ...) goes into the generic `artifacts`
and `info` JSON columns, so the schema does not need to change for new kinds of jobs.

Every call opens its own short-lived connection and keeps its transaction short, so that the
orchestrator's threads and separate processes can record results at the same time.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import posixpath
import re
import secrets
import sqlite3
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rich.console import Console
from rich.table import Table
from rich.text import Text

from crlab.model import (
    EXIT_FAIL,
    EXIT_INCOMPLETE,
    EXIT_PASS,
    FailureClass,
    JobResult,
    JobSpec,
    Status,
    TestResult,
)

DB_NAME = "crlab.sqlite"
LATEST = "latest"
SCHEMA_VERSION = "1"

RUN_RUNNING = "running"
RUN_COMPLETE = "complete"
RUN_INCOMPLETE = "incomplete"

# Jobs in these states still have to be run (again) when a run is resumed.
UNFINISHED = (Status.PENDING, Status.INCOMPLETE)

# The job files the HTML report links to when they exist, besides the job's own artifacts.
JOB_FILES = ("console.log", "build.log", "suite.log", "result.json")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started TEXT NOT NULL,
    finished TEXT,
    status TEXT NOT NULL,
    config_path TEXT NOT NULL DEFAULT '',
    config_digest TEXT NOT NULL DEFAULT '',
    host TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS jobs (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    job_id TEXT NOT NULL,
    kernel TEXT NOT NULL,
    target TEXT NOT NULL,
    suite TEXT NOT NULL,
    transport TEXT NOT NULL,
    status TEXT NOT NULL,
    failure TEXT NOT NULL DEFAULT '',
    stage TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    timings TEXT NOT NULL DEFAULT '{}',
    info TEXT NOT NULL DEFAULT '{}',
    artifacts TEXT NOT NULL DEFAULT '{}',
    updated TEXT NOT NULL,
    PRIMARY KEY (run_id, job_id)
);
CREATE INDEX IF NOT EXISTS jobs_by_cell ON jobs (kernel, target, suite);
CREATE TABLE IF NOT EXISTS tests (
    run_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    number INTEGER,
    status TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, job_id, name),
    FOREIGN KEY (run_id, job_id) REFERENCES jobs(run_id, job_id) ON DELETE CASCADE
);
"""


class RunNotFound(LookupError):
    pass


@dataclass
class RunInfo:
    run_id: str
    started: str
    finished: str | None
    status: str  # running, complete or incomplete
    config_path: str
    config_digest: str
    host: dict[str, Any] = field(default_factory=dict)
    job_counts: dict[str, int] = field(default_factory=dict)  # job status value -> number of jobs

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started": self.started,
            "finished": self.finished,
            "status": self.status,
            "config_path": self.config_path,
            "config_digest": self.config_digest,
            "host": self.host,
            "job_counts": self.job_counts,
        }


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _new_run_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class ResultStore:
    def __init__(self, results_dir: Path) -> None:
        self.results_dir = Path(results_dir)
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.results_dir / DB_NAME
        self._init_schema()

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
        with self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _init_schema(self) -> None:
        with self.connect() as conn:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"{self.db_path}: could not switch SQLite to WAL mode (got {mode!r})")
        with self.transaction() as conn:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
            )

    # -- runs --------------------------------------------------------------------------------

    def create_run(
        self, config_path: Path, config_digest: str, jobs: list[JobSpec], host: dict[str, Any]
    ) -> Run:
        """Record a new run with all of its jobs pending; point `latest` at it."""
        ids = [spec.job_id for spec in jobs]
        duplicates = sorted({job_id for job_id in ids if ids.count(job_id) > 1})
        if duplicates:
            raise ValueError(f"the same job appears more than once: {', '.join(duplicates)}")
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
                        "INSERT INTO runs (run_id, started, finished, status, config_path,"
                        " config_digest, host) VALUES (?, ?, NULL, ?, ?, ?, ?)",
                        (run_id, _now(), RUN_RUNNING, str(config_path), config_digest, _dumps(host)),
                    )
                    now = _now()
                    conn.executemany(
                        "INSERT INTO jobs (run_id, job_id, kernel, target, suite, transport, status,"
                        " attempts, updated) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)",
                        [
                            (run_id, s.job_id, s.kernel, s.target, s.suite, s.transport,
                             Status.PENDING.value, now)
                            for s in jobs
                        ],
                    )
            except sqlite3.IntegrityError:
                run_dir.rmdir()
                continue
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
        """Store a job's result (replacing its previous result and tests) and write result.json."""
        spec = result.spec
        names: set[str] = set()
        test_rows = []
        for seq, test in enumerate(result.tests):
            name = test.name
            if name in names:  # the key must be unique; keep every test even if a suite repeats a name
                name = f"{name} [#{test.number if test.number is not None else seq + 1}]"
            names.add(name)
            test_rows.append((self.run_id, spec.job_id, seq, name, test.number, Status(test.status).value,
                              test.message))
        with self.store.transaction() as conn:
            conn.execute(
                "INSERT INTO jobs (run_id, job_id, kernel, target, suite, transport, status, failure, stage,"
                " message, attempts, timings, info, artifacts, updated)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (run_id, job_id) DO UPDATE SET"
                " kernel = excluded.kernel, target = excluded.target, suite = excluded.suite,"
                " transport = excluded.transport, status = excluded.status, failure = excluded.failure,"
                " stage = excluded.stage, message = excluded.message, attempts = excluded.attempts,"
                " timings = excluded.timings, info = excluded.info, artifacts = excluded.artifacts,"
                " updated = excluded.updated",
                (
                    self.run_id, spec.job_id, spec.kernel, spec.target, spec.suite, spec.transport,
                    Status(result.status).value, FailureClass(result.failure).value, result.stage,
                    result.message, result.attempts, _dumps(result.timings), _dumps(result.info),
                    _dumps(result.artifacts), _now(),
                ),
            )
            conn.execute("DELETE FROM tests WHERE run_id = ? AND job_id = ?", (self.run_id, spec.job_id))
            conn.executemany(
                "INSERT INTO tests (run_id, job_id, seq, name, number, status, message)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                test_rows,
            )
        _atomic_write(self.job_dir(spec) / "result.json",
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
            job_rows = conn.execute(
                "SELECT * FROM jobs WHERE run_id = ? ORDER BY rowid", (self.run_id,)
            ).fetchall()
            test_rows = conn.execute(
                "SELECT * FROM tests WHERE run_id = ? ORDER BY job_id, seq", (self.run_id,)
            ).fetchall()
        tests: dict[str, list[TestResult]] = {}
        for row in test_rows:
            tests.setdefault(row["job_id"], []).append(
                TestResult(name=row["name"], status=Status(row["status"]), message=row["message"],
                           number=row["number"])
            )
        return [_job_result(row, tests.get(row["job_id"], [])) for row in job_rows]

    def result(self, job_id: str) -> JobResult | None:
        for result in self.results():
            if result.spec.job_id == job_id:
                return result
        return None

    def specs(self) -> list[JobSpec]:
        return [r.spec for r in self.results()]

    def pending_jobs(self) -> list[JobSpec]:
        """Jobs still to run: never run, or left incomplete (interrupted, infrastructure trouble)."""
        marks = ", ".join("?" for _ in UNFINISHED)
        with self.store.connect() as conn:
            rows = conn.execute(
                f"SELECT kernel, target, suite, transport FROM jobs WHERE run_id = ? AND status IN ({marks})"
                " ORDER BY rowid",
                (self.run_id, *(s.value for s in UNFINISHED)),
            ).fetchall()
        return [JobSpec(kernel=r["kernel"], target=r["target"], suite=r["suite"], transport=r["transport"])
                for r in rows]

    # -- reports -----------------------------------------------------------------------------

    def write_reports(self) -> dict[str, Path]:
        """Write results.json, junit.xml and report.html into the run directory."""
        info = self.info()
        results = self.results()
        self.dir.mkdir(parents=True, exist_ok=True)
        paths = {
            "json": self.dir / "results.json",
            "junit": self.dir / "junit.xml",
            "html": self.dir / "report.html",
        }
        _atomic_write(paths["json"], results_json(info, results))
        _atomic_write(paths["junit"], junit_xml(info.run_id, results))
        _atomic_write(paths["html"], html_report(info, results, self.dir))
        return paths


def _job_result(row: sqlite3.Row, tests: list[TestResult]) -> JobResult:
    return JobResult(
        spec=JobSpec(kernel=row["kernel"], target=row["target"], suite=row["suite"],
                     transport=row["transport"]),
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


# -- verdicts ---------------------------------------------------------------------------------


def exit_code(results: Iterable[JobResult]) -> int:
    """0 when every job passed (skipped tests inside a passing job are fine), 1 when anything
    failed, else 2 (something is incomplete, pending or skipped, or there were no jobs)."""
    results = list(results)
    if any(r.status is Status.FAIL or any(t.status is Status.FAIL for t in r.tests) for r in results):
        return EXIT_FAIL
    if not results or any(r.status is not Status.PASS for r in results):
        return EXIT_INCOMPLETE
    return EXIT_PASS


def status_counts(results: Iterable[JobResult]) -> dict[str, int]:
    counts = {status.value: 0 for status in Status}
    for result in results:
        counts[Status(result.status).value] += 1
    return counts


# -- results.json ------------------------------------------------------------------------------


def results_json(info: RunInfo, results: list[JobResult]) -> str:
    data = {
        "run": info.to_dict(),
        "summary": {"jobs": len(results), **status_counts(results), "exit_code": exit_code(results)},
        "jobs": [r.to_dict() for r in results],
    }
    return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"


# -- junit.xml ---------------------------------------------------------------------------------

# characters that XML 1.0 cannot carry at all (console output has plenty of them)
_XML_BAD = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _x(text: Any) -> str:
    return _XML_BAD.sub("\ufffd", str(text))


_TERMINAL_JUNK = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|[\x00-\x08\x0b-\x1f\x7f]")


def _first_line(text: str, limit: int = 200) -> str:
    """The first line of `text`, without escape sequences or control characters, shortened."""
    text = _TERMINAL_JUNK.sub("", text).strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[: limit - 1] + "\u2026"


def _job_seconds(result: JobResult) -> float:
    if "total_s" in result.timings:
        return float(result.timings["total_s"])
    return float(sum(v for k, v in result.timings.items() if k in ("build_s", "boot_s", "run_s")))


def _junit_case(suite: ET.Element, counts: dict[str, int], name: str, status: Status, message: str,
                kind: str = "", seconds: float | None = None) -> None:
    element = ET.SubElement(suite, "testcase", classname=suite.get("name", ""), name=_x(name))
    if seconds is not None:
        element.set("time", f"{seconds:.3f}")
    counts["tests"] += 1
    if status is Status.FAIL:
        child = ET.SubElement(element, "failure", message=_x(_first_line(message) or "failed"))
        child.set("type", _x(kind or "failure"))
        child.text = _x(message)
        counts["failures"] += 1
    elif status is Status.SKIP:
        ET.SubElement(element, "skipped", message=_x(message))
        counts["skipped"] += 1
    elif status in (Status.INCOMPLETE, Status.PENDING):
        child = ET.SubElement(element, "error", message=_x(_first_line(message) or status.value))
        child.set("type", _x(kind or status.value))
        child.text = _x(message)
        counts["errors"] += 1


def junit_xml(run_id: str, results: list[JobResult]) -> str:
    """One <testsuite> per job (name = job id); each test a <testcase> with classname = job id.

    When no test carries the job's own verdict (a build or boot failure before any test ran, a
    panic or timeout after the tests, an incomplete job) it becomes one more testcase named after
    the stage reached, with a <failure> or an <error>.
    """
    root = ET.Element("testsuites", name=_x(f"crlab {run_id}"))
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total_time = 0.0
    for result in results:
        suite = ET.SubElement(root, "testsuite", name=_x(result.spec.job_id))
        props = ET.SubElement(suite, "properties")
        for key, text in (
            ("kernel", result.spec.kernel), ("target", result.spec.target), ("suite", result.spec.suite),
            ("transport", result.spec.transport), ("status", Status(result.status).value),
            ("failure", FailureClass(result.failure).value), ("stage", result.stage),
            ("attempts", str(result.attempts)),
        ):
            ET.SubElement(props, "property", name=key, value=_x(text))
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        for test in result.tests:
            _junit_case(suite, counts, test.name, Status(test.status), test.message, kind="test")

        status = Status(result.status)
        failure = FailureClass(result.failure).value
        statuses = {Status(t.status) for t in result.tests}
        seconds = _job_seconds(result)
        job_message = result.message or failure or status.value
        job_case = result.stage or "job"
        unfinished = {Status.INCOMPLETE, Status.PENDING}
        if status is Status.FAIL and Status.FAIL not in statuses:
            _junit_case(suite, counts, job_case, Status.FAIL, job_message, failure, seconds)
        elif status in unfinished and not statuses & unfinished:
            _junit_case(suite, counts, job_case, status, job_message, failure or status.value, seconds)
        elif status is Status.SKIP and not result.tests:
            _junit_case(suite, counts, job_case, Status.SKIP, result.message or "skipped")
        elif not result.tests:
            _junit_case(suite, counts, job_case, status, result.message, seconds=seconds)

        total_time += seconds
        for key, count in counts.items():
            suite.set(key, str(count))
            totals[key] += count
        suite.set("time", f"{seconds:.3f}")
    for key, count in totals.items():
        root.set(key, str(count))
    root.set("time", f"{total_time:.3f}")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


# -- report.html -------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.5em; vertical-align: top; text-align: left; }
th { background: #eee; }
.meta td, .meta th { border: none; padding: 0.1em 0.6em 0.1em 0; background: none; }
table.grid td.cell { min-width: 9em; }
.cell .st { font-weight: bold; text-transform: uppercase; }
.cell .fc, .cell .t, .cell .links { font-size: 0.85em; }
.cell a, .details a { color: inherit; }
.pass { background: #c8f0c8; } .fail { background: #f5b8b8; } .skip { background: #e0e0e0; }
.incomplete { background: #fbe0a0; } .pending { background: #f4f4f4; color: #777; }
.none { background: #fff; color: #aaa; }
td.msg { max-width: 40em; white-space: pre-wrap; }
pre { white-space: pre-wrap; margin: 0.2em 0; }
"""


def _e(text: Any) -> str:
    """Escaped for HTML, without the terminal escapes and control characters of console output."""
    return html.escape(_TERMINAL_JUNK.sub("", str(text).replace("\r\n", "\n")), quote=True)


def _secs(value: Any) -> str:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return "-"
    return f"{seconds:.1f}" if seconds < 100 else f"{seconds:.0f}"


def _href(job_dir_name: str, path: str) -> str:
    if os.path.isabs(path):
        return Path(path).as_uri()
    return quote(posixpath.normpath(f"{job_dir_name}/{path}"))


def _job_links(result: JobResult, run_dir: Path) -> list[tuple[str, str]]:
    """(label, href) for the job's artifacts and the standard files present in its directory."""
    name = result.spec.dir_name
    links: list[tuple[str, str]] = []
    seen: set[str] = set()
    for label, path in result.artifacts.items():
        links.append((label, _href(name, str(path))))
        seen.add(os.path.normpath(str(path)))
    for filename in JOB_FILES:
        if filename not in seen and (run_dir / name / filename).is_file():
            links.append((filename.rsplit(".", 1)[0], _href(name, filename)))
    return links


def _ordered(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def html_report(info: RunInfo, results: list[JobResult], run_dir: Path) -> str:
    """A self-contained page: the kernel x target x suite matrix, then the details of every job."""
    counts = status_counts(results)
    code = exit_code(results)
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>crlab run {_e(info.run_id)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>crlab run {_e(info.run_id)}</h1>",
        '<table class="meta">',
    ]
    host = ", ".join(f"{k}={v}" for k, v in sorted(info.host.items()))
    verdict = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    for label, value in (
        ("status", info.status), ("started", info.started), ("finished", info.finished or "-"),
        ("config", f"{info.config_path} ({info.config_digest[:12]})"), ("host", host or "-"),
        ("jobs", f"{len(results)}: {verdict or 'none'}"), ("exit code", str(code)),
    ):
        out.append(f"<tr><th>{_e(label)}</th><td>{_e(value)}</td></tr>")
    out.append("</table>")

    # the matrix: a row group per kernel, a row per suite, a column per target
    kernels = _ordered(r.spec.kernel for r in results)
    targets = _ordered(r.spec.target for r in results)
    cells: dict[tuple[str, str, str], list[JobResult]] = {}
    for result in results:
        cells.setdefault((result.spec.kernel, result.spec.target, result.spec.suite), []).append(result)
    out.append("<h2>Matrix</h2>")
    out.append('<table class="grid"><thead><tr><th>kernel</th><th>suite</th>')
    out.extend(f"<th>{_e(t)}</th>" for t in targets)
    out.append("</tr></thead>")
    for kernel in kernels:
        suites = _ordered(r.spec.suite for r in results if r.spec.kernel == kernel)
        out.append("<tbody>")
        for index, suite in enumerate(suites):
            out.append("<tr>")
            if index == 0:
                out.append(f'<th class="kernel" rowspan="{len(suites)}">{_e(kernel)}</th>')
            out.append(f"<th>{_e(suite)}</th>")
            for target in targets:
                out.append(_grid_cell(cells.get((kernel, target, suite), []), run_dir))
            out.append("</tr>")
        out.append("</tbody>")
    out.append("</table>")

    out.append("<h2>Jobs</h2>")
    out.append('<table class="details"><thead><tr><th>job</th><th>status</th><th>failure</th><th>stage</th>'
               "<th>attempts</th><th>build s</th><th>boot s</th><th>run s</th><th>tests</th>"
               "<th>message</th><th>files</th></tr></thead><tbody>")
    for result in results:
        out.append(_detail_row(result, run_dir))
    out.append("</tbody></table>")
    out.append(f"<p><small>written {_e(_now())} by crlab</small></p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _anchor(result: JobResult) -> str:
    return "job-" + re.sub(r"[^A-Za-z0-9_.-]", "-", result.spec.dir_name)


def _grid_cell(results: list[JobResult], run_dir: Path) -> str:
    if not results:
        return '<td class="cell none">&ndash;</td>'
    worst = max(results, key=lambda r: _SEVERITY[Status(r.status)])
    parts = [f'<td class="cell {Status(worst.status).value}">']
    for result in results:
        status = Status(result.status).value
        title = _e(result.message)
        parts.append(f'<div class="st"><a href="#{_anchor(result)}" title="{title}">{_e(status)}</a>')
        if len(results) > 1:
            parts.append(f" <small>({_e(result.spec.transport)})</small>")
        parts.append("</div>")
        failure = FailureClass(result.failure).value
        if failure:
            stage = f" @ {result.stage}" if result.stage else ""
            parts.append(f'<div class="fc">{_e(failure)}{_e(stage)}</div>')
        times = [f"{label} {_secs(result.timings[key])}s"
                 for label, key in (("build", "build_s"), ("boot", "boot_s")) if key in result.timings]
        if times:
            parts.append(f'<div class="t">{_e(" · ".join(times))}</div>')
        links = _job_links(result, run_dir)
        if links:
            parts.append('<div class="links">'
                         + " ".join(f'<a href="{_e(href)}">{_e(label)}</a>' for label, href in links)
                         + "</div>")
    parts.append("</td>")
    return "".join(parts)


_SEVERITY = {Status.PASS: 0, Status.SKIP: 1, Status.PENDING: 2, Status.INCOMPLETE: 3, Status.FAIL: 4}


def _detail_row(result: JobResult, run_dir: Path) -> str:
    status = Status(result.status).value
    tests = {s: 0 for s in Status}
    for test in result.tests:
        tests[Status(test.status)] += 1
    test_text = ", ".join(f"{n} {s.value}" for s, n in tests.items() if n) or "-"
    message = _e(result.message)
    notable = [t for t in result.tests if Status(t.status) is not Status.PASS]
    if notable:
        items = "".join(
            f"<li>{_e(t.number if t.number is not None else '')} {_e(t.name)}: "
            f"<b>{_e(Status(t.status).value)}</b>"
            + (f"<pre>{_e(t.message)}</pre>" if t.message else "") + "</li>"
            for t in notable
        )
        message += f"<details><summary>{len(notable)} tests not passed</summary><ul>{items}</ul></details>"
    links = " ".join(f'<a href="{_e(href)}">{_e(label)}</a>' for label, href in _job_links(result, run_dir))
    cells = [
        f'<td id="{_anchor(result)}">{_e(result.spec.job_id)}</td>',
        f'<td class="{status}">{_e(status)}</td>',
        f"<td>{_e(FailureClass(result.failure).value or '-')}</td>",
        f"<td>{_e(result.stage or '-')}</td>",
        f"<td>{result.attempts}</td>",
        *(f"<td>{_secs(result.timings.get(k))}</td>" for k in ("build_s", "boot_s", "run_s")),
        f"<td>{_e(test_text)}</td>",
        f'<td class="msg">{message}</td>',
        f"<td>{links or '-'}</td>",
    ]
    return "<tr>" + "".join(cells) + "</tr>"


# -- terminal ----------------------------------------------------------------------------------

_STYLES = {
    Status.PASS: "bold green",
    Status.FAIL: "bold red",
    Status.SKIP: "dim",
    Status.INCOMPLETE: "bold yellow",
    Status.PENDING: "dim",
}


def summary_table(results: Iterable[JobResult]) -> Table:
    table = Table(title="crlab results", show_lines=False)
    table.add_column("job", no_wrap=True)
    table.add_column("status")
    table.add_column("failure")
    table.add_column("stage")
    for label in ("build s", "boot s", "run s"):
        table.add_column(label, justify="right")
    table.add_column("message", overflow="fold")
    for result in results:
        status = Status(result.status)
        timings = [_secs(result.timings[k]) if k in result.timings else "-"
                   for k in ("build_s", "boot_s", "run_s")]
        # Text, not str: job ids and messages must never be taken for rich markup
        table.add_row(
            Text(result.spec.job_id),
            Text(status.value.upper(), style=_STYLES[status]),
            Text(FailureClass(result.failure).value),
            Text(result.stage),
            *(Text(t) for t in timings),
            Text(_first_line(result.message, 160)),
        )
    return table


def print_summary(results: Iterable[JobResult], console: Console) -> None:
    results = list(results)
    console.print(summary_table(results))
    counts = status_counts(results)
    verdict = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no jobs"
    code = exit_code(results)
    meaning = {EXIT_PASS: "all passed", EXIT_FAIL: "failures", EXIT_INCOMPLETE: "incomplete"}[code]
    console.print(f"{len(results)} jobs: {verdict} -> exit {code} ({meaning})", highlight=False)
