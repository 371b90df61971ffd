"""The store's SQLite schema, its version, and the migrations from every earlier version.

A store records its version in `meta.schema_version`.  Opening a store:

- an empty database gets the current schema;
- an older one is upgraded by the migrations in order (1 -> 2 -> ...), all in one transaction, after
  a copy of the old file is kept next to it (`crlab.sqlite.schema-1.bak`);
- a newer one (written by a newer crlab) is refused, so that this code never misreads it.

A migration is frozen once released: it creates the tables of *its* target version with its own
DDL, so that a later change to the current schema needs a new migration, never an edit of an old one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

from crlab.errors import UserError
from crlab.model import JobSpec

SCHEMA_VERSION = 2


class StoreError(UserError):
    """A results database that this crlab cannot use as it is (the command line says why, exits 2)."""


class StoreVersionError(StoreError):
    pass


# -- version 2 (current) -----------------------------------------------------------------------
# A job is keyed by its result key (JobSpec.key, canonical JSON of the named axes); the axes are
# columns too, for queries across runs.  Tests are keyed by (run, job key, test name).

_V2_META = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
)"""

_V2_RUNS = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    started TEXT NOT NULL,
    finished TEXT,
    status TEXT NOT NULL,
    config_path TEXT NOT NULL DEFAULT '',
    config_digest TEXT NOT NULL DEFAULT '',
    host TEXT NOT NULL DEFAULT '{}',
    config_text TEXT NOT NULL DEFAULT '',
    config_sources TEXT NOT NULL DEFAULT '{}'
)"""

_V2_JOBS = """
CREATE TABLE jobs (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    job_id TEXT NOT NULL,
    kernel TEXT NOT NULL,
    target TEXT NOT NULL,
    suite TEXT NOT NULL,
    transport TEXT NOT NULL,
    engine TEXT NOT NULL DEFAULT '',
    consumer TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    failure TEXT NOT NULL DEFAULT '',
    stage TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    timings TEXT NOT NULL DEFAULT '{}',
    info TEXT NOT NULL DEFAULT '{}',
    artifacts TEXT NOT NULL DEFAULT '{}',
    updated TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
)"""

_V2_TESTS = """
CREATE TABLE tests (
    run_id TEXT NOT NULL,
    job_key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    number INTEGER,
    status TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, job_key, name),
    FOREIGN KEY (run_id, job_key) REFERENCES jobs(run_id, key) ON DELETE CASCADE
)"""

_V2_INDEXES = (
    "CREATE INDEX jobs_by_axes ON jobs (kernel, target, suite, transport, engine, consumer)",
    "CREATE INDEX jobs_by_key ON jobs (key, run_id)",
)

CURRENT_SCHEMA = (_V2_META, _V2_RUNS, _V2_JOBS, _V2_TESTS, *_V2_INDEXES)


# -- migrations --------------------------------------------------------------------------------


def _v1_to_v2(conn: sqlite3.Connection) -> None:
    """Jobs keyed by job id (kernel/target/suite) become jobs keyed by the result key; runs keep
    their config text.  Every run, job and test is carried over as it was (test names included)."""

    def key(kernel: str, target: str, suite: str, transport: str) -> str:
        return JobSpec(kernel=kernel, target=target, suite=suite, transport=transport).key

    conn.create_function("crlab_v2_key", 4, key, deterministic=True)
    conn.execute("ALTER TABLE runs ADD COLUMN config_text TEXT NOT NULL DEFAULT ''")
    conn.execute("ALTER TABLE runs ADD COLUMN config_sources TEXT NOT NULL DEFAULT '{}'")
    conn.execute("ALTER TABLE tests RENAME TO tests_v1")
    conn.execute("ALTER TABLE jobs RENAME TO jobs_v1")
    conn.execute("DROP INDEX IF EXISTS jobs_by_cell")
    conn.execute(_V2_JOBS)
    conn.execute(_V2_TESTS)
    for index in _V2_INDEXES:
        conn.execute(index)
    conn.execute(
        "INSERT INTO jobs (run_id, key, seq, job_id, kernel, target, suite, transport, status, failure, stage,"
        " message, attempts, timings, info, artifacts, updated)"
        " SELECT run_id, crlab_v2_key(kernel, target, suite, transport),"
        " ROW_NUMBER() OVER (PARTITION BY run_id ORDER BY rowid) - 1, job_id, kernel, target, suite,"
        " transport, status, failure, stage, message, attempts, timings, info, artifacts, updated"
        " FROM jobs_v1 ORDER BY rowid"
    )
    conn.execute(
        "INSERT INTO tests (run_id, job_key, seq, name, number, status, message)"
        " SELECT t.run_id, crlab_v2_key(j.kernel, j.target, j.suite, j.transport), t.seq, t.name, t.number,"
        " t.status, t.message FROM tests_v1 AS t JOIN jobs_v1 AS j USING (run_id, job_id)"
    )
    carried = conn.execute("SELECT (SELECT COUNT(*) FROM tests), (SELECT COUNT(*) FROM tests_v1)").fetchone()
    if carried[0] != carried[1]:  # a test whose job row is missing: refuse rather than drop it
        raise StoreError(f"migration 1 -> 2 would lose {carried[1] - carried[0]} test row(s) without a job")
    conn.execute("DROP TABLE tests_v1")
    conn.execute("DROP TABLE jobs_v1")


# MIGRATIONS[n] upgrades a store of version n to version n + 1.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _v1_to_v2}
assert sorted(MIGRATIONS) == list(range(1, SCHEMA_VERSION)), "one migration per version step"


# -- opening -----------------------------------------------------------------------------------


def read_version(conn: sqlite3.Connection) -> int | None:
    """The schema version of an open database; None for an empty one."""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        return None
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() if "meta" in tables \
        else None
    if row is None:
        raise StoreError(f"not a crlab results database (tables: {', '.join(sorted(tables))})")
    try:
        return int(row[0])
    except ValueError:
        raise StoreError(f"unreadable schema version {row[0]!r}") from None


@contextlib.contextmanager
def _connection(db_path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(db_path, timeout=60.0, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def _check_known(db_path: Path, version: int | None) -> None:
    if version is not None and version > SCHEMA_VERSION:
        raise StoreVersionError(
            f"{db_path}: written by a newer crlab (schema version {version}; this crlab reads up to "
            f"{SCHEMA_VERSION}); use that crlab, or another results directory"
        )


def ensure_schema(db_path: Path) -> int:
    """Make `db_path` a store of the current version: create it, or migrate it.  Returns the version
    found: 0 for a new store, SCHEMA_VERSION when nothing had to change."""
    with _connection(db_path) as conn:
        try:
            version = read_version(conn)
        except StoreError as exc:
            raise StoreError(f"{db_path}: {exc}") from None
        _check_known(db_path, version)  # before anything could change the file
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{db_path}: could not switch SQLite to WAL mode (got {mode!r})")
        if version == SCHEMA_VERSION:  # the usual case: no write lock taken
            return version
    with _connection(db_path) as conn:
        # foreign keys stay off while tables are rebuilt; they are checked before the commit
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = read_version(conn)  # another process may have done it meanwhile
            _check_known(db_path, version)
            if version is None:
                for statement in CURRENT_SCHEMA:
                    conn.execute(statement)
            elif version < SCHEMA_VERSION:
                _backup(db_path, version)  # we hold the write lock: the copy is exactly what we migrate
                for step in range(version, SCHEMA_VERSION):
                    MIGRATIONS[step](conn)
            problems = conn.execute("PRAGMA foreign_key_check").fetchall()
            if problems:
                raise StoreError(f"{db_path}: migration left {len(problems)} dangling reference(s)")
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                         (str(SCHEMA_VERSION),))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return version or 0


def _backup(db_path: Path, version: int) -> None:
    """A consistent copy of the database as it was, kept once per old version."""
    target = db_path.with_name(f"{db_path.name}.schema-{version}.bak")
    if target.exists():
        return
    partial = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        with _connection(db_path) as source, _connection(partial) as copy:
            source.backup(copy)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
