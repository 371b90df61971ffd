from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console

from crlab.model import (
    EXIT_FAIL,
    EXIT_INCOMPLETE,
    EXIT_PASS,
    FailureClass,
    JobResult,
    JobSpec,
    Status,
)
from crlab.model import TestResult as TResult  # aliased so that pytest does not collect it
from crlab.results import (
    DEFAULT_REPORTERS,
    ReportError,
    ResultStore,
    Run,
    RunInfo,
    RunNotFound,
    TerminalReporter,
    exit_code,
    print_summary,
    status_counts,
    summary_table,
    verdict,
)

HOST = {"hostname": "builder", "cpus": 8}


def spec(kernel: str = "v6.6", target: str = "x86_64", suite: str = "smoke") -> JobSpec:
    return JobSpec(kernel=kernel, target=target, suite=suite)


def rich_result() -> JobResult:
    return JobResult(
        spec=spec(),
        status=Status.FAIL,
        failure=FailureClass.TEST,
        stage="run",
        message="1 of 3 tests failed: 2 ns_last_pid",
        tests=[
            TResult("kernel release is the one just built", Status.PASS, "", 1),
            TResult("ns_last_pid exists", Status.FAIL, "missing or read-only", 2),
            TResult("criu dump", Status.SKIP, "criu not built for this target", 3),
        ],
        timings={"build_s": 312.5, "boot_s": 4.25, "run_s": 1.5, "total_s": 318.25},
        artifacts={"console": "console.log", "kernel": "../../cache/kernel/abc/bzImage"},
        info={"qemu": "8.2.2", "release": "6.6.58-crlab", "keys": {"kernel": "abc", "rootfs": "def"}},
        attempts=2,
    )


@pytest.fixture
def store(tmp_path: Path) -> ResultStore:
    return ResultStore(tmp_path / "results")


def test_create_run_layout(store: ResultStore) -> None:
    run = store.create_run(Path("configs/default.yaml"), "d1g3st", [spec(), spec(target="i386")], HOST)
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", run.run_id)
    assert run.dir.is_dir()
    latest = store.results_dir / "latest"
    assert latest.is_symlink() and latest.resolve() == run.dir.resolve()
    assert (store.results_dir / "crlab.sqlite").exists()
    with sqlite3.connect(store.db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    info = run.info()
    assert info.status == "running"
    assert info.config_digest == "d1g3st"
    assert info.host == HOST
    assert info.job_counts == {"pending": 2}
    assert [r.status for r in run.results()] == [Status.PENDING, Status.PENDING]
    job_dir = run.job_dir(spec())
    assert job_dir == run.dir / "v6.6__x86_64__smoke" and job_dir.is_dir()


def test_duplicate_jobs_are_refused(store: ResultStore) -> None:
    with pytest.raises(ValueError):
        store.create_run(Path("c.yaml"), "x", [spec(), spec()], HOST)


def test_round_trip(store: ResultStore) -> None:
    run = store.create_run(Path("c.yaml"), "x", [spec(), spec(target="ppc64")], HOST)
    result = rich_result()
    run.record(result)
    got = run.result(result.spec.job_id)
    assert got == result
    assert run.results()[0] == result  # planned order is kept
    on_disk = json.loads((run.job_dir(result.spec) / "result.json").read_text())
    assert on_disk == result.to_dict()
    assert JobResult.from_dict(on_disk) == result


def test_record_replaces_previous_result(store: ResultStore) -> None:
    run = store.create_run(Path("c.yaml"), "x", [spec()], HOST)
    run.record(rich_result())
    again = JobResult(spec=spec(), status=Status.PASS, stage="run", tests=[TResult("only", Status.PASS)])
    run.record(again)
    assert run.results() == [again]


def test_generic_artifacts_and_kernel_pairs(store: ResultStore) -> None:
    # a checkpoint on one kernel restored on another is just a job with richer info/artifacts
    pair = JobSpec(kernel="v6.6+v6.12", target="x86_64", suite="migrate")
    run = store.create_run(Path("c.yaml"), "x", [pair], HOST)
    result = JobResult(
        spec=pair, status=Status.PASS, stage="run",
        info={"kernels": ["v6.6", "v6.12", "v6.13"], "roles": {"dump": "v6.6", "restore": "v6.12"}},
        artifacts={"image": "images/dump.tar", "dump.log": "dump.log", "restore.log": "restore.log"},
    )
    run.record(result)
    assert run.results() == [result]


def test_duplicate_test_names_are_refused(store: ResultStore) -> None:
    # a test's name is its identity across runs: the store neither renames nor drops one
    run = store.create_run(Path("c.yaml"), "x", [spec()], HOST)
    first = JobResult(spec=spec(), status=Status.PASS, tests=[TResult("same", Status.PASS, number=1)])
    run.record(first)
    tests = [TResult("same", Status.PASS, number=1), TResult("same", Status.FAIL, number=2)]
    with pytest.raises(ValueError, match="v6.6/x86_64/smoke: test name.*'same'"):
        run.record(JobResult(spec=spec(), status=Status.FAIL, tests=tests))
    assert run.results() == [first]


def test_test_names_are_kept_as_given(store: ResultStore) -> None:
    jobs = [spec(), spec(target="i386")]
    run = store.create_run(Path("c.yaml"), "x", jobs, HOST)
    names = ["ns_last_pid exists (2)", "a [#3]", "criu dump"]
    for job in jobs:  # the same names in two jobs are two different tests
        run.record(JobResult(spec=job, status=Status.PASS, tests=[TResult(n, Status.PASS) for n in names]))
    assert [[t.name for t in r.tests] for r in run.results()] == [names, names]


def test_resume(store: ResultStore) -> None:
    jobs = [spec(target="x86_64"), spec(target="i386"), spec(target="armv7")]
    run = store.create_run(Path("c.yaml"), "x", jobs, HOST)
    run.record(JobResult(spec=jobs[0], status=Status.PASS, stage="run"))
    run.finish("incomplete")

    reopened = ResultStore(store.results_dir).open_run("latest")
    assert reopened.run_id == run.run_id
    assert reopened.info().status == "incomplete"
    assert reopened.info().finished
    assert reopened.pending_jobs() == jobs[1:]

    # an interrupted job is run again on resume, a failed one is not
    reopened.mark_running()
    assert reopened.info().status == "running" and reopened.info().finished is None
    reopened.record(JobResult(spec=jobs[1], status=Status.INCOMPLETE, failure=FailureClass.INTERRUPTED))
    reopened.record(JobResult(spec=jobs[2], status=Status.FAIL, failure=FailureClass.BOOT_PANIC))
    assert reopened.pending_jobs() == [jobs[1]]
    reopened.finish("complete")
    assert store.open_run(run.run_id).info().status == "complete"


def test_finish_rejects_unknown_status(store: ResultStore) -> None:
    run = store.create_run(Path("c.yaml"), "x", [spec()], HOST)
    with pytest.raises(ValueError):
        run.finish("done")


def test_open_and_list_runs(store: ResultStore) -> None:
    with pytest.raises(RunNotFound):
        store.open_run("latest")
    first = store.create_run(Path("a.yaml"), "a", [spec()], HOST)
    second = store.create_run(Path("b.yaml"), "b", [spec(), spec(suite="criu")], HOST)
    assert store.open_run().run_id == second.run_id
    assert store.open_run(first.run_id).run_id == first.run_id
    with pytest.raises(RunNotFound):
        store.open_run("19700101-000000-0000")
    runs = {info.run_id: info for info in store.list_runs()}
    assert set(runs) == {first.run_id, second.run_id}
    assert runs[second.run_id].job_counts == {"pending": 2}
    assert runs[first.run_id].config_path == "a.yaml"


def test_latest_falls_back_to_the_database(store: ResultStore) -> None:
    run = store.create_run(Path("a.yaml"), "a", [spec()], HOST)
    (store.results_dir / "latest").unlink()
    assert store.open_run("latest").run_id == run.run_id


def test_concurrent_recording(store: ResultStore) -> None:
    per_thread = 10
    jobs = [spec(kernel=f"k{t}", suite=f"s{i}") for t in range(4) for i in range(per_thread)]
    run = store.create_run(Path("c.yaml"), "x", jobs, HOST)
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def worker(t: int) -> None:
        try:
            # half the threads share the Run, half open their own store like a separate process would
            target_run = run if t % 2 else ResultStore(store.results_dir).open_run(run.run_id)
            barrier.wait()
            for i in range(per_thread):
                job = jobs[t * per_thread + i]
                tests = [TResult(f"t{n}", Status.PASS, number=n) for n in range(1, 21)]
                target_run.record(JobResult(spec=job, status=Status.PASS, stage="run", tests=tests,
                                            timings={"run_s": float(i)}))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    results = run.results()
    assert len(results) == len(jobs)
    assert all(r.status is Status.PASS and len(r.tests) == 20 for r in results)
    assert run.pending_jobs() == []


def matrix_results() -> list[JobResult]:
    return [
        JobResult(spec=spec(target="x86_64"), status=Status.PASS, stage="run",
                  tests=[TResult("a", Status.PASS, number=1), TResult("b", Status.SKIP, "no criu", 2)],
                  timings={"build_s": 300.0, "boot_s": 3.5, "run_s": 1.0}),
        dataclasses.replace(rich_result(), spec=spec(target="i386")),
        JobResult(spec=spec(target="armv7"), status=Status.FAIL, failure=FailureClass.BUILD, stage="build",
                  message="make failed: <undefined reference> \x1b[0m\x00", timings={"build_s": 40.0}),
        JobResult(spec=spec(target="ppc64"), status=Status.INCOMPLETE, failure=FailureClass.BOOT_HANG,
                  stage="boot", message="no prompt within 300 s"),
        JobResult(spec=spec(kernel="v6.12", target="x86_64"), status=Status.INCOMPLETE,
                  failure=FailureClass.TIMEOUT, stage="run", message="suite timed out",
                  tests=[TResult("a", Status.PASS, number=1)]),
        JobResult(spec=spec(kernel="v6.12", target="x86_64", suite="criu"), status=Status.PENDING),
    ]


@pytest.fixture
def reported(store: ResultStore) -> tuple[ResultStore, Run, dict[str, Path]]:
    results = matrix_results()
    run = store.create_run(Path("c.yaml"), "digest", [r.spec for r in results], HOST)
    for result in results[:-1]:  # the last one stays pending
        run.record(result)
    (run.job_dir(results[0].spec) / "console.log").write_text("booted\n")
    (run.job_dir(results[2].spec) / "build.log").write_text("error\n")
    run.finish("incomplete")
    return store, run, run.write_reports()


def test_junit(reported: tuple[ResultStore, Run, dict[str, Path]]) -> None:
    _, _, paths = reported
    root = ET.parse(paths["junit"]).getroot()
    assert root.tag == "testsuites"
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {r.spec.job_id for r in matrix_results()}
    for name, suite in suites.items():
        assert all(case.get("classname") == name for case in suite.findall("testcase"))
        assert int(suite.get("tests", -1)) == len(suite.findall("testcase"))
        assert int(suite.get("failures", -1)) == len(suite.findall("testcase/failure"))
        assert int(suite.get("errors", -1)) == len(suite.findall("testcase/error"))
        assert int(suite.get("skipped", -1)) == len(suite.findall("testcase/skipped"))
    # failures: the failed test on i386 and the build failure on armv7
    assert len(root.findall(".//failure")) == 2 and root.get("failures") == "2"
    # skipped: one in x86_64, one in i386
    assert len(root.findall(".//skipped")) == 2 and root.get("skipped") == "2"
    # errors: the boot hang, the timeout after a passing test, the pending job
    assert len(root.findall(".//error")) == 3 and root.get("errors") == "3"
    assert root.get("tests") == str(2 + 3 + 1 + 1 + 2 + 1)

    build = suites["v6.6/armv7/smoke"].find("testcase")
    assert build is not None and build.get("name") == "build"
    failure = build.find("failure")
    assert failure is not None and failure.get("type") == "build"
    assert (failure.get("message") or "").startswith("make failed: <undefined reference>")
    failed_test = suites["v6.6/i386/smoke"].find("testcase[@name='ns_last_pid exists']/failure")
    assert failed_test is not None and failed_test.get("message") == "missing or read-only"
    skipped = suites["v6.6/x86_64/smoke"].find("testcase[@name='b']/skipped")
    assert skipped is not None and skipped.get("message") == "no criu"
    hang = suites["v6.6/ppc64/smoke"].find("testcase")
    assert hang is not None and hang.get("name") == "boot"
    assert hang.find("error") is not None
    timeout = suites["v6.12/x86_64/smoke"].findall("testcase")
    assert [c.get("name") for c in timeout] == ["a", "run"]


def test_results_json(reported: tuple[ResultStore, Run, dict[str, Path]]) -> None:
    store, run, paths = reported
    data = json.loads(paths["json"].read_text())
    assert data["run"]["run_id"] == run.run_id
    assert data["run"]["status"] == "incomplete"
    assert data["run"]["host"] == HOST
    assert data["jobs"] == [r.to_dict() for r in run.results()]
    assert [JobResult.from_dict(j) for j in data["jobs"]][:-1] == matrix_results()[:-1]
    assert data["summary"]["exit_code"] == EXIT_FAIL
    assert data["summary"]["fail"] == 2 and data["summary"]["pending"] == 1


def test_report_html(reported: tuple[ResultStore, Run, dict[str, Path]]) -> None:
    _, _, paths = reported
    page = paths["html"].read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert 'class="grid"' in page
    for result in matrix_results():
        assert result.spec.job_id in page
    # targets are columns, a row per kernel; each cell lists its suites
    grid = page[page.index('class="grid"'):page.index("</table>", page.index('class="grid"'))]
    header = grid[:grid.index("</thead>")]
    assert [t for t in ("x86_64", "i386", "armv7", "ppc64") if f"<th>{t}</th>" in header] == [
        "x86_64", "i386", "armv7", "ppc64"]
    rows = grid.split("<tr>")[2:]
    assert [r[r.index(">") + 1:r.index("</th>")] for r in rows] == ["v6.6", "v6.12"]
    v612 = rows[1]
    assert v612.count('<td class="cell none">') == 3  # v6.12 ran on x86_64 only
    assert 'class="cell incomplete"' in v612  # the worst of its two jobs
    assert '<div class="job incomplete"><a href="#job-v6.12__x86_64__smoke"' in v612
    assert '<div class="job pending"><a href="#job-v6.12__x86_64__criu"' in v612
    assert 'href="v6.6__x86_64__smoke/console.log"' in page
    assert 'href="v6.6__armv7__smoke/build.log"' in page
    assert 'href="v6.6__x86_64__smoke/result.json"' in page
    assert "boot-hang @ boot" in page and "build 300s" in page and "boot 3.5s" in page
    assert "<undefined reference>" not in page and "&lt;undefined reference&gt;" in page
    assert "\x00" not in page and "\x1b" not in page
    assert 'href="../cache/kernel/abc/bzImage"' in page  # artifacts are relative to the job dir
    assert 'class="cell fail"' in page and 'class="cell pass"' in page


def test_report_html_escapes_everything(store: ResultStore) -> None:
    hostile = '<script>alert("x")</script>'
    job = JobSpec(kernel=f"k{hostile}", target="x86_64", suite="s", engine='e"><b>')
    run = store.create_run(Path("c.yaml"), "x", [job], {"hostname": hostile})
    run.record(JobResult(spec=job, status=Status.FAIL, failure=FailureClass.TEST, message=hostile,
                         tests=[TResult(hostile, Status.FAIL, hostile + "\x1b[31m")],
                         artifacts={hostile: "a b&c.log"}))
    page = run.write_reports()["html"].read_text()
    assert "<script>" not in page and '"><b>' not in page and "\x1b" not in page
    assert page.count("&lt;script&gt;") >= 5
    assert 'href="k%3Cscript%3Ealert%28%22x%22%29%3C/script%3E__x86_64__s__e%22%3E%3Cb%3E/a%20b%26c.log"' in page


def test_report_html_engine_consumer_and_flaky(store: ResultStore) -> None:
    jobs = [
        JobSpec(kernel="v6.6", target="x86_64", suite="cr", engine="criu"),
        JobSpec(kernel="v6.6", target="x86_64", suite="cr", engine="criu", consumer="v6.12"),
        JobSpec(kernel="v6.6", target="x86_64", suite="smoke"),
    ]
    run = store.create_run(Path("c.yaml"), "x", jobs, HOST)
    run.record(JobResult(spec=jobs[0], status=Status.PASS, attempts=2, info={"flaky": True}))
    run.record(JobResult(spec=jobs[1], status=Status.FAIL, failure=FailureClass.TEST,
                         artifacts={"image": "images/dump.tar", "diff": "image.diff"}))
    page = run.write_reports()["html"].read_text()
    grid = page[page.index('class="grid"'):page.index("<h2>Jobs</h2>")]
    rows = grid.split("<tr>")[2:]
    assert len(rows) == 2  # v6.6, and v6.6 restored on v6.12
    assert "v6.6</th>" in rows[0] and "&rarr; v6.12</span></th>" in rows[1]
    assert ">cr@criu</a>" in rows[0] and ">smoke</a>" in rows[0] and ">cr@criu</a>" in rows[1]
    assert "pass (flaky)" in rows[0]
    assert 'href="v6.6__x86_64__cr__criu__to-v6.12/images/dump.tar">image</a>' in rows[1]
    assert "1 flaky" in page


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        ([Status.PASS, Status.PASS], EXIT_PASS),
        ([Status.PASS, Status.FAIL], EXIT_FAIL),
        ([Status.INCOMPLETE, Status.FAIL], EXIT_FAIL),
        ([Status.PASS, Status.INCOMPLETE], EXIT_INCOMPLETE),
        ([Status.PASS, Status.PENDING], EXIT_INCOMPLETE),
        ([Status.PASS, Status.SKIP], EXIT_INCOMPLETE),
        ([], EXIT_INCOMPLETE),
    ],
)
def test_exit_code(statuses: list[Status], code: int) -> None:
    results = [JobResult(spec=spec(suite=f"s{i}"), status=s) for i, s in enumerate(statuses)]
    assert exit_code(results) == code


def test_exit_code_skipped_tests_in_a_passing_job() -> None:
    result = JobResult(spec=spec(), status=Status.PASS, tests=[TResult("x", Status.SKIP, "why")])
    assert exit_code([result]) == EXIT_PASS


def test_summary_table() -> None:
    results = matrix_results()
    results[3].message = "no prompt [/proc] [bold]"  # must not be read as rich markup
    console = Console(record=True, width=250, color_system=None)
    console.print(summary_table(results))
    text = console.export_text()
    header = text.splitlines()[2]
    assert [c.strip() for c in header.split("┃")[1:5]] == ["kernel", "target", "suite", "transport"]
    assert "engine" not in header and "consumer" not in header  # shown only when some job has one
    for result in results:
        assert re.search(rf"│ {re.escape(result.spec.kernel)} +│ {result.spec.target} +│ {result.spec.suite} ", text)
    assert "[/proc] [bold]" in text
    assert "boot-hang" in text and "300" in text and "40.0" in text
    assert "\x1b" not in text
    console = Console(record=True, width=250, color_system=None)
    print_summary(results, console)
    assert "6 jobs: 1 pass, 2 fail, 2 incomplete, 1 pending -> exit 1 (failures)" in console.export_text()


def test_summary_table_engine_consumer_flaky() -> None:
    results = [JobResult(spec=JobSpec("v6.6", "x86_64", "cr", engine="criu", consumer="v6.12"),
                         status=Status.PASS, attempts=2, info={"flaky": True}),
               JobResult(spec=spec(), status=Status.PASS)]
    console = Console(record=True, width=250, color_system=None)
    print_summary(results, console)
    text = console.export_text()
    header = text.splitlines()[2]
    assert [c.strip() for c in header.split("┃")[1:7]] == [
        "kernel", "target", "suite", "transport", "engine", "consumer"]
    assert "PASS (flaky)" in text and "2 jobs: 2 pass (1 flaky) -> exit 0 (all passed)" in text


def test_jobs_are_keyed_by_axes(store: ResultStore) -> None:
    # the same kernel/target/suite with another engine or consumer is another job
    jobs = [
        JobSpec("v6.6", "x86_64", "cr", engine="criu"),
        JobSpec("v6.6", "x86_64", "cr", engine="criu", consumer="v6.12"),
        JobSpec("v6.6", "x86_64", "cr", engine="other"),
        JobSpec("v6.6", "x86_64", "smoke", transport="ssh"),
    ]
    run = store.create_run(Path("c.yaml"), "x", jobs, HOST)
    run.record(JobResult(spec=jobs[1], status=Status.PASS, tests=[TResult("restore", Status.PASS)]))
    run.record(JobResult(spec=jobs[2], status=Status.INCOMPLETE, failure=FailureClass.INTERRUPTED))
    assert run.specs() == jobs
    assert run.pending_jobs() == [jobs[0], jobs[2], jobs[3]]
    assert run.result(jobs[1]) == JobResult(spec=jobs[1], status=Status.PASS,
                                            tests=[TResult("restore", Status.PASS)])
    assert run.result("v6.6>v6.12/x86_64/cr@criu") == run.result(jobs[1])
    with sqlite3.connect(store.db_path) as conn:
        rows = conn.execute("SELECT key, kernel, target, suite, transport, engine, consumer, status FROM jobs"
                            " WHERE consumer = 'v6.12'").fetchall()
        tests = conn.execute("SELECT job_key, name FROM tests").fetchall()
    assert rows == [(jobs[1].key, "v6.6", "x86_64", "cr", "console", "criu", "v6.12", "pass")]
    assert json.loads(rows[0][0]) == jobs[1].axes
    assert tests == [(jobs[1].key, "restore")]


def test_jobs_sharing_a_directory_are_refused(store: ResultStore) -> None:
    # console and ssh runs of one cell would write their logs into the same directory
    with pytest.raises(ValueError, match="job directory"):
        store.create_run(Path("c.yaml"), "x", [spec(), dataclasses.replace(spec(), transport="ssh")], HOST)


def test_config_text_is_kept(store: ResultStore) -> None:
    text = "kernels:\n  v6.6: {source: {git: x}}\n"
    sources = {"configs/default.yaml": text, "configs/targets.yaml": "targets: {}\n"}
    run = store.create_run(Path("configs/default.yaml"), "d", [spec()], HOST, config_text=text,
                           config_sources=sources)
    for info in (run.info(), store.list_runs()[0], ResultStore(store.results_dir).open_run().info()):
        assert info.config_text == text and info.config_sources == sources
    assert (run.dir / "config.yaml").read_text() == text
    data = json.loads(run.write_reports()["json"].read_text())
    assert data["run"]["config_text"] == text and data["run"]["config_sources"] == sources
    assert 'href="config.yaml"' in (run.dir / "report.html").read_text()
    bare = store.create_run(Path("c.yaml"), "x", [spec()], HOST)  # callers that have no text yet
    assert bare.info().config_text == "" and not (bare.dir / "config.yaml").exists()


class LinesReporter:
    """A reporter from outside the store: one line per job."""

    name = "lines"

    def write(self, run_dir: Path, info: RunInfo, results: list[JobResult]) -> Path:
        path = run_dir / "jobs.txt"
        path.write_text("".join(f"{r.spec.key} {r.status.value}\n" for r in results))
        return path


class BrokenReporter:
    name = "broken"

    def write(self, run_dir: Path, info: RunInfo, results: list[JobResult]) -> Path | None:
        raise OSError("no space left on device")


class NothingReporter:
    name = "nothing"

    def write(self, run_dir: Path, info: RunInfo, results: list[JobResult]) -> None:
        return None


def test_reporters_are_a_list(store: ResultStore) -> None:
    assert [r.name for r in DEFAULT_REPORTERS] == ["json", "junit", "html"]
    run = store.create_run(Path("c.yaml"), "x", [spec()], HOST)
    paths = run.write_reports([LinesReporter(), NothingReporter(), *DEFAULT_REPORTERS])
    assert list(paths) == ["lines", "json", "junit", "html"]
    assert paths["lines"].read_text() == f"{spec().key} pending\n"
    (run.dir / "results.json").unlink()
    with pytest.raises(ReportError, match="broken: OSError: no space left on device"):
        run.write_reports([BrokenReporter(), *DEFAULT_REPORTERS])
    assert (run.dir / "results.json").is_file()  # the others still wrote theirs


def test_terminal_reporter_writes_no_file(store: ResultStore) -> None:
    console = Console(record=True, width=200, color_system=None)
    run = store.create_run(Path("c.yaml"), "x", [spec()], HOST)
    assert run.write_reports([TerminalReporter(console)]) == {}
    assert "1 jobs: 1 pending -> exit 2 (incomplete)" in console.export_text()


def test_junit_identity_is_stable_across_runs(store: ResultStore) -> None:
    results = matrix_results()
    identities = []
    for order in (results, results[::-1]):
        run = store.create_run(Path("c.yaml"), "x", [r.spec for r in order], HOST)
        for result in order:
            run.record(result)
        root = ET.parse(run.write_reports()["junit"]).getroot()
        identities.append(sorted((c.get("classname"), c.get("name")) for c in root.iter("testcase")))
    assert identities[0] == identities[1]
    assert ("v6.6/i386/smoke", "ns_last_pid exists") in identities[0]


def test_junit_properties_carry_every_axis(store: ResultStore) -> None:
    job = JobSpec("v6.6", "x86_64", "cr", engine="criu", consumer="v6.12")
    run = store.create_run(Path("c.yaml"), "x", [job], HOST)
    root = ET.parse(run.write_reports()["junit"]).getroot()
    suite = root.find("testsuite")
    assert suite is not None and suite.get("name") == "v6.6>v6.12/x86_64/cr@criu"
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert {k: props[k] for k in job.axes} == job.axes


def test_verdict_summary_counts_flaky() -> None:
    results = [JobResult(spec=spec(suite="a"), status=Status.PASS, info={"flaky": True}, attempts=2),
               JobResult(spec=spec(suite="b"), status=Status.PASS),
               JobResult(spec=spec(suite="c"), status=Status.INCOMPLETE)]
    assert verdict.summary(results) == {"jobs": 3, "pass": 2, "fail": 0, "skip": 0, "incomplete": 1,
                                        "pending": 0, "flaky": 1, "exit_code": EXIT_INCOMPLETE}
    assert status_counts(results)["incomplete"] == 1
    assert verdict.worst(results) is Status.INCOMPLETE and verdict.worst([]) is None
    assert verdict.is_flaky(JobResult(spec=spec(), status=Status.PASS, attempts=3))  # retried, even unmarked
    assert not verdict.is_flaky(JobResult(spec=spec(), status=Status.FAIL, attempts=3))


def test_the_compatibility_matrix_reaches_json_terminal_and_html(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    cross = JobSpec(kernel="linux-6.1", target="x86_64", suite="cr-cross", transport="ssh", engine="criu",
                    consumer="linux-6.12")
    run = store.create_run(tmp_path / "cfg.yaml", "d", [cross], {})
    rows = [{"producer": "linux-6.1", "consumer": "linux-6.12", "target": "x86_64", "engine": "criu",
             "test": "counter", "outcome": "compatible", "detail": ""},
            {"producer": "linux-6.1", "consumer": "linux-6.12", "target": "x86_64", "engine": "criu",
             "test": "pipe", "outcome": "differs", "detail": "files/pipes.img/entries/0/flags: 0 -> 2048"}]
    run.record(JobResult(cross, Status.FAIL, FailureClass.TEST, info={"compat": rows},
                         tests=[TResult("counter", Status.PASS), TResult("pipe", Status.FAIL, "differs")]))
    paths = run.write_reports()
    data = json.loads(paths["json"].read_text())
    assert [(r["test"], r["outcome"]) for r in data["compat"]] == [("counter", "compatible"), ("pipe", "differs")]
    page = paths["html"].read_text()
    assert "C/R compatibility" in page and "1 compatible, 1 differs" in page
    console = Console(record=True, width=200)
    print_summary(run.results(), console)
    assert "1 compatible, 1 differs" in console.export_text()
