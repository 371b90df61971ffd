"""compare(previous, current) and known issues: pure logic, no guest."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from crlab.config.document import ConfigError
from crlab.model import FailureClass, JobResult, JobSpec, Status, TestResult
from crlab.results.compare import Category, compare
from crlab.results.known import load_known_issues
from crlab.results.store import ResultStore, Run

# results.json of two real `harness.py nightly` runs of one matrix (configs/nightly.yaml, then
# configs/nightly-regression.yaml): every job passed in both
GOLDEN = Path(__file__).resolve().parent / "data" / "nightly"
GOLDEN_RUNS = ("run1", "run2")


def golden_store(tmp_path: Path, names: tuple[str, ...] = GOLDEN_RUNS) -> tuple[ResultStore, list[Run]]:
    """A results store holding the golden runs as the real runs recorded them (their start times too)."""
    store = ResultStore(tmp_path / "results")
    runs = []
    for name in names:
        data = json.loads((GOLDEN / f"{name}.results.json").read_text())
        results = [JobResult.from_dict(job) for job in data["jobs"]]
        info = data["run"]
        run = store.create_run(Path(info["config_path"]), info["config_digest"], [r.spec for r in results],
                               info["host"], config_text=info.get("config_text", ""))
        for result in results:
            run.record(result)
        run.finish(info["status"])
        with store.transaction() as conn:
            conn.execute("UPDATE runs SET started = ? WHERE run_id = ?", (info["started"], run.run_id))
        runs.append(run)
    return store, runs

X86 = JobSpec("linux-6.1", "x86_64", "smoke")
ARM = JobSpec("linux-6.1", "armv7", "smoke")
PPC = JobSpec("linux-6.1", "ppc64", "smoke")


def job(spec: JobSpec, *tests: tuple[str, Status], status: Status | None = None,
        failure: FailureClass = FailureClass.NONE, attempts: int = 1) -> JobResult:
    leaf = [TestResult(name, st) for name, st in tests]
    if status is None:
        status = Status.FAIL if any(st is Status.FAIL for _, st in tests) else Status.PASS
        failure = FailureClass.TEST if status is Status.FAIL else failure
    return JobResult(spec=spec, status=status, failure=failure, tests=leaf, attempts=attempts)


OK = Status.PASS
BAD = Status.FAIL


def categories(comparison) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {c.cell: c.category.value for c in comparison.changes}


def test_one_broken_test_is_one_regression_not_two() -> None:
    before = [job(X86, ("a", OK), ("b", OK)), job(ARM, ("a", OK), ("b", OK))]
    after = [job(X86, ("a", OK), ("b", OK)), job(ARM, ("a", OK), ("b", BAD))]
    result = compare(before, after)
    assert categories(result) == {"linux-6.1/armv7/smoke:b": "regression"}
    assert result.exit_code() == 1
    assert result.counts["unchanged"] == 5


def test_fixed_still_failing_and_order_independence() -> None:
    before = [job(ARM, ("a", BAD), ("b", BAD)), job(X86, ("a", OK))]
    after = [job(X86, ("a", OK)), job(ARM, ("a", OK), ("b", BAD))]
    result = compare(before, after)
    assert categories(result) == {"linux-6.1/armv7/smoke:b": "still-failing", "linux-6.1/armv7/smoke:a": "fixed"}
    assert result.exit_code() == 0


def test_build_failure_is_a_job_level_regression_without_removed_tests() -> None:
    before = [job(PPC, ("a", OK), ("b", OK))]
    after = [job(PPC, status=BAD, failure=FailureClass.BUILD)]
    result = compare(before, after)
    assert categories(result) == {"linux-6.1/ppc64/smoke": "regression"}


def test_incomplete_is_neither_pass_nor_failure() -> None:
    before = [job(X86, ("a", OK)), job(ARM, ("a", OK))]
    after = [job(X86, ("a", OK)), job(ARM, status=Status.INCOMPLETE, failure=FailureClass.BOOT_HANG)]
    result = compare(before, after)
    assert categories(result) == {"linux-6.1/armv7/smoke": "incomplete"}
    assert result.exit_code() == 2
    # and an incomplete previous run gives no baseline: a failure now is not a regression
    again = compare(after, [job(X86, ("a", OK)), job(ARM, status=BAD, failure=FailureClass.BOOT_PANIC)])
    assert categories(again) == {"linux-6.1/armv7/smoke": "no-baseline"}
    assert again.exit_code() == 0


def test_regression_wins_over_incomplete() -> None:
    before = [job(X86, ("a", OK)), job(ARM, ("a", OK))]
    after = [job(X86, ("a", BAD)), job(ARM, status=Status.INCOMPLETE)]
    assert compare(before, after).exit_code() == 1


def test_flaky_new_and_removed_cells() -> None:
    before = [job(X86, ("a", OK)), job(PPC, ("a", OK))]
    after = [job(X86, ("a", OK), attempts=2), job(ARM, ("a", BAD)), job(PPC, ("a", OK), ("c", OK))]
    result = compare(before, after)
    assert categories(result) == {
        "linux-6.1/x86_64/smoke": "flaky", "linux-6.1/armv7/smoke": "new", "linux-6.1/armv7/smoke:a": "new",
        "linux-6.1/ppc64/smoke:c": "new"}
    removed = compare(after, before)
    assert {c.cell for c in removed.of(Category.REMOVED)} == {
        "linux-6.1/armv7/smoke", "linux-6.1/ppc64/smoke:c"}


def test_first_run_has_no_regression() -> None:
    result = compare(None, [job(ARM, ("a", BAD))])
    assert result.exit_code() == 0 and not result.regressions
    assert "no previous run" in result.summary_line()


def _known(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "known.yaml"
    path.write_text(text)
    return load_known_issues(path)


def test_known_issue_turns_regression_into_known_until_it_expires(tmp_path: Path) -> None:
    known = _known(tmp_path, "known_issues:\n"
                             "  - cell: '*/armv7/smoke'\n    test: b\n    reason: ARM uname\n"
                             "    expires: 2026-12-31\n")
    before = [job(ARM, ("a", OK), ("b", OK))]
    after = [job(ARM, ("a", OK), ("b", BAD))]
    result = compare(before, after, known=known, today=date(2026, 11, 23))
    assert [(c.cell, c.category, c.known_reason, c.known_expires) for c in result.changes] == [
        ("linux-6.1/armv7/smoke:b", Category.KNOWN, "ARM uname", "2026-12-31")]
    assert result.exit_code() == 0
    expired = compare(before, after, known=known, today=date(2026, 12, 31))
    assert expired.regressions and expired.exit_code() == 1
    other_test = compare(before, [job(ARM, ("a", BAD), ("b", OK))], known=known, today=date(2026, 11, 23))
    assert other_test.regressions


def test_known_issues_file_errors_have_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "known.yaml"
    path.write_text("known_issues:\n  - cell: linux-6.1/armv7/smoke\n    reason: x\n"
                    "  - cell: 3\n    expires: soon\n    extra: 1\n")
    with pytest.raises(ConfigError) as caught:
        load_known_issues(path)
    lines = str(caught.value).splitlines()
    assert all(line.startswith(f"{path}:") for line in lines), lines
    assert any(":4:" in line and "cell" in line for line in lines)
    assert any("missing required key 'reason'" in line for line in lines)
    assert any(":5:" in line and "expires" in line for line in lines)
    assert any(":6:" in line and "unknown key 'extra'" in line for line in lines)
