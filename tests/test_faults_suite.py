"""Failures while a suite runs, through the orchestrator, on real x86_64 guests (one run, one guest
at a time, test-only suites from tests/data/faults/suites): a suite timeout, an oops line in the
kernel log after boot, a non-zero exit with a passing TAP stream, a kernel panic during the suite,
invalid UTF-8 and NUL bytes on the console and in test names; then an ordinary job must still pass,
and every report of the run must still be written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crlab.config import load_config
from crlab.model import FailureClass, Status
from crlab.orchestrator import Orchestrator
from crlab.paths import REPO_ROOT
from crlab.progress import PlainProgress
from crlab.results import ResultStore
from tests.conftest import require_qemu

pytestmark = [pytest.mark.boot, pytest.mark.slow]


def fault_suites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/data/faults/suites plus the shipped smoke suite, as the suites directory."""
    from crlab import paths

    suites = tmp_path / "suites"
    suites.mkdir()
    for suite in (REPO_ROOT / "tests" / "data" / "faults" / "suites").iterdir():
        (suites / suite.name).symlink_to(suite)
    (suites / "smoke").symlink_to(paths.SUITES_DIR / "smoke")
    monkeypatch.setattr(paths, "SUITES_DIR", suites)


def test_suite_failures_are_classified_and_the_run_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_qemu("qemu-system-x86_64")
    fault_suites(tmp_path, monkeypatch)
    config = tmp_path / "suites.yaml"
    config.write_text("""kernels: [linux-6.1]
targets: [x86_64]
suites: [timeout, oops, exitcode, panic, bytes, smoke]
options: {jobs: 1, retries: 0}
""")
    cfg = load_config(config)
    run = ResultStore(tmp_path / "results").create_run(config, cfg.digest, cfg.jobs, {})
    results = {r.spec.suite: r for r in Orchestrator(cfg, run, PlainProgress()).execute(cfg.jobs)}
    dirs = {spec.suite: run.job_dir(spec) for spec in cfg.jobs}

    def outcome(suite: str) -> tuple[Status, FailureClass]:
        return results[suite].status, results[suite].failure

    assert outcome("timeout") == (Status.FAIL, FailureClass.TIMEOUT), results["timeout"].message
    assert "did not finish within 5 s" in results["timeout"].message
    assert (dirs["timeout"] / "suite.log").read_text().startswith("started")  # the partial output is kept

    assert outcome("oops") == (Status.FAIL, FailureClass.KERNEL_OOPS), results["oops"].message
    assert "BUG: crlab-injected oops after boot" in results["oops"].message
    assert [t.status for t in results["oops"].tests] == [Status.PASS]  # the tests themselves passed

    assert outcome("exitcode") == (Status.FAIL, FailureClass.TEST), results["exitcode"].message
    assert results["exitcode"].message == "suite command exited 3"

    assert outcome("panic") == (Status.FAIL, FailureClass.GUEST_PANIC), results["panic"].message
    assert "Kernel panic" in (dirs["panic"] / "console.log").read_text(errors="replace")

    bytes_job = results["bytes"]
    assert bytes_job.status == Status.PASS, bytes_job.message
    assert len(bytes_job.tests) == 2 and "\ufffd" in bytes_job.tests[0].name
    assert "raw" in (dirs["bytes"] / "console.log").read_text(errors="replace")

    assert outcome("smoke") == (Status.PASS, FailureClass.NONE), results["smoke"].message

    run.finish("complete")
    reports = run.write_reports()  # NUL and U+FFFD in test names must not break any report
    assert {"json", "junit", "html"} <= set(reports)
    data = json.loads((reports["json"]).read_text())
    assert data["summary"]["jobs"] == 6
    assert "\x00" not in (reports["junit"]).read_text()  # not allowed in XML 1.0
