"""A store written by crlab before the result key (schema 1, tests/data/store-v1.sqlite, made by
tests/data/make_store_v1.py at commit df51904) opens, migrates and keeps every run, job and test."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from crlab.model import EXIT_FAIL, EXIT_PASS, FailureClass, JobResult, JobSpec, Status
from crlab.model import TestResult as TResult  # aliased so that pytest does not collect it
from crlab.results import SCHEMA_VERSION, ResultStore, StoreError, StoreVersionError, schema

REPO = Path(__file__).resolve().parent.parent
OLD_STORE = REPO / "tests" / "data" / "store-v1.sqlite"
PASSING_RUN = "20261123-154451-bc0c"
MIXED_RUN = "20261123-154451-fc0b"
HOST = {"hostname": "lab1", "cpus": 2, "qemu": "7.2.0"}


@pytest.fixture
def old_results(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(OLD_STORE, results / "crlab.sqlite")
    return results


def _version(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])


def _layout(db: Path) -> dict[str, object]:
    """Columns, indexes and foreign keys of every table: what a fresh and a migrated store share."""
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {
            table: (
                conn.execute(f"PRAGMA table_info({table})").fetchall(),
                sorted(conn.execute(f"PRAGMA index_list({table})").fetchall()),
                conn.execute(f"PRAGMA foreign_key_list({table})").fetchall(),
            )
            for table in tables
        }


def test_the_checked_in_store_is_schema_1() -> None:
    assert _version(OLD_STORE) == "1"
    with sqlite3.connect(OLD_STORE) as conn:
        assert "job_id" in [r[1] for r in conn.execute("PRAGMA table_info(tests)")]


def test_old_store_migrates_and_keeps_everything(old_results: Path) -> None:
    store = ResultStore(old_results)
    assert store.version_found == 1 and _version(store.db_path) == str(SCHEMA_VERSION)
    assert _version(old_results / "crlab.sqlite.schema-1.bak") == "1"  # the file as it was

    runs = store.list_runs()
    assert [(r.run_id, r.status, r.config_path, r.config_digest) for r in runs] == [
        (MIXED_RUN, "incomplete", "configs/nightly.yaml", "b" * 64),
        (PASSING_RUN, "complete", "configs/default.yaml", "a" * 64),
    ]
    assert all(r.host == HOST and r.finished and r.config_text == "" and r.config_sources == {} for r in runs)
    assert runs[0].job_counts == {"fail": 1, "incomplete": 1, "pending": 1, "pass": 1}
    assert runs[1].job_counts == {"pass": 2}

    passing = store.open_run(PASSING_RUN).results()
    assert [r.spec for r in passing] == [JobSpec("v6.1", "x86_64", "smoke"),
                                        JobSpec("v6.1", "i386", "smoke", transport="ssh")]
    for result in passing:
        assert result == JobResult(
            spec=result.spec, status=Status.PASS, stage="run", message="2 tests passed",
            tests=[TResult("kernel release is the one just built", Status.PASS, "", 1),
                   TResult("ns_last_pid exists", Status.PASS, "", 2)],
            timings={"build_s": 250.5, "boot_s": 3.25, "run_s": 0.75, "total_s": 254.5},
            artifacts={"kernel": "../../cache/kernel/0123/bzImage"},
            info={"release": "6.1.112-crlab", "keys": {"kernel": "0123", "rootfs": "4567"}},
        )

    mixed = store.open_run(MIXED_RUN)
    failed, hung, never, repeat = mixed.results()
    assert failed == JobResult(
        spec=JobSpec("v6.1", "x86_64", "smoke"), status=Status.FAIL, failure=FailureClass.TEST, stage="run",
        message="1 of 3 tests failed: 2 ns_last_pid exists",
        tests=[TResult("kernel release is the one just built", Status.PASS, "", 1),
               TResult("ns_last_pid exists", Status.FAIL, "missing or read-only <ns>", 2),
               TResult("criu dump", Status.SKIP, "criu not built for this target", 3)],
        timings={"build_s": 12.0, "boot_s": 3.5, "run_s": 1.0}, info={"release": "6.1.112-crlab"},
    )
    assert hung == JobResult(
        spec=JobSpec("v6.1", "armv7", "smoke"), status=Status.INCOMPLETE, failure=FailureClass.BOOT_HANG,
        stage="boot", message="no prompt within 300 s", timings={"build_s": 400.0, "boot_s": 300.0},
        artifacts={"console": "console.log"}, info={"qemu_cmd": "qemu-system-arm -M virt"}, attempts=2,
    )
    assert never == JobResult(spec=JobSpec("v6.1", "ppc64", "smoke"), attempts=0)
    # names the old store made unique with a suffix stay as they were
    assert [t.name for t in repeat.tests] == ["same", "same [#2]"]

    with sqlite3.connect(store.db_path) as conn:
        keys = conn.execute("SELECT key, kernel, target, suite, transport FROM jobs").fetchall()
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert all(key == JobSpec(*axes).key for key, *axes in keys)
    assert _layout(store.db_path) == _layout(ResultStore(old_results.parent / "fresh").db_path)


def test_an_old_interrupted_run_can_be_resumed(old_results: Path) -> None:
    run = ResultStore(old_results).open_run("latest")
    assert run.run_id == MIXED_RUN  # no `latest` link in the copy: the newest run in the database
    assert run.pending_jobs() == [JobSpec("v6.1", "armv7", "smoke"), JobSpec("v6.1", "ppc64", "smoke")]
    run.mark_running()
    for spec in run.pending_jobs():
        run.record(JobResult(spec=spec, status=Status.PASS, stage="run", tests=[TResult("boots", Status.PASS)]))
    run.finish("complete")
    assert run.pending_jobs() == [] and run.info().job_counts == {"fail": 1, "pass": 3}


def test_reports_of_a_migrated_run(old_results: Path) -> None:
    run = ResultStore(old_results).open_run(MIXED_RUN)
    paths = run.write_reports()
    assert {p.name for p in paths.values()} == {"results.json", "junit.xml", "report.html"}
    page = paths["html"].read_text()
    assert "missing or read-only &lt;ns&gt;" in page and "boot-hang @ boot" in page


def test_harness_report_shows_the_old_runs(old_results: Path) -> None:
    for run_id, code, needles in (
        (PASSING_RUN, EXIT_PASS, ["2 jobs: 2 pass -> exit 0", "i386", "ssh", "250"]),
        (MIXED_RUN, EXIT_FAIL, ["4 jobs: 1 pass, 1 fail, 1 incomplete, 1 pending -> exit 1",
                                "boot-hang", "no prompt within 300 s", "1 of 3 tests failed", "repeat"]),
    ):
        done = subprocess.run([sys.executable, str(REPO / "harness.py"), "report", run_id, "--results",
                               str(old_results)], capture_output=True, text=True, cwd=REPO, timeout=120)
        assert done.returncode == code, done.stderr
        assert "Traceback" not in done.stderr
        for needle in needles:
            assert needle in done.stdout
        assert (old_results / run_id / "report.html").is_file()
    assert _version(old_results / "crlab.sqlite") == str(SCHEMA_VERSION)


def test_a_newer_store_is_refused_untouched(old_results: Path) -> None:
    db = old_results / "crlab.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    before = db.read_bytes()
    with pytest.raises(StoreVersionError, match=rf"newer crlab \(schema version {SCHEMA_VERSION + 1}; this crlab "
                                                rf"reads up to {SCHEMA_VERSION}\)"):
        ResultStore(old_results)
    assert db.read_bytes() == before and not list(old_results.glob("*.bak"))


def test_a_failed_migration_changes_nothing(old_results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = schema.MIGRATIONS[1]

    def half_done(conn: sqlite3.Connection) -> None:
        real(conn)
        raise RuntimeError("disk trouble")

    monkeypatch.setitem(schema.MIGRATIONS, 1, half_done)
    with pytest.raises(RuntimeError, match="disk trouble"):
        ResultStore(old_results)
    db = old_results / "crlab.sqlite"
    assert _version(db) == "1"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM jobs WHERE job_id LIKE 'v6.1/%'").fetchone()[0] == 6
        assert conn.execute("SELECT COUNT(*) FROM tests").fetchone()[0] == 9
    monkeypatch.setitem(schema.MIGRATIONS, 1, real)
    assert len(ResultStore(old_results).open_run(MIXED_RUN).results()) == 4


def test_several_openers_of_an_old_store_migrate_it_once(old_results: Path) -> None:
    barrier = threading.Barrier(4)
    opened: list[int] = []
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            barrier.wait()
            opened.append(ResultStore(old_results).version_found)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(opened) == [1, SCHEMA_VERSION, SCHEMA_VERSION, SCHEMA_VERSION]  # one of them migrated ...
    assert len(ResultStore(old_results).open_run(MIXED_RUN).results()) == 4  # ... and nothing was doubled


def test_a_database_that_is_not_a_store(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "crlab.sqlite") as conn:
        conn.execute("CREATE TABLE photos (id INTEGER)")
    with pytest.raises(StoreError, match="not a crlab results database"):
        ResultStore(tmp_path)


def test_a_new_store_has_the_current_version(tmp_path: Path) -> None:
    assert ResultStore(tmp_path).version_found == 0
    assert ResultStore(tmp_path).version_found == SCHEMA_VERSION
    assert _version(tmp_path / "crlab.sqlite") == str(SCHEMA_VERSION) and not list(tmp_path.glob("*.bak"))


def test_harness_report_on_a_newer_store_says_why(old_results: Path) -> None:
    with sqlite3.connect(old_results / "crlab.sqlite") as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    done = subprocess.run([sys.executable, str(REPO / "harness.py"), "report", "--results", str(old_results)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 2 and "Traceback" not in output
    assert "written by a newer crlab (schema version 99" in output
