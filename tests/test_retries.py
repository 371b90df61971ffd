"""Flakes are retried: a real guest whose first QEMU cannot start (its SSH forward port was taken by
another program between reservation and start) passes on the second attempt, and the first
attempt's failure and QEMU's own message are kept."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import crlab.guest.lifecycle as lifecycle
from crlab.config import load_config
from crlab.guest.ports import PortReservation
from crlab.model import FailureClass, Status
from crlab.orchestrator import Orchestrator
from crlab.progress import PlainProgress
from crlab.results import ResultStore
from tests.conftest import require_qemu

pytestmark = [pytest.mark.boot, pytest.mark.slow]


def test_qemu_that_cannot_start_is_classified_and_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_qemu("qemu-system-x86_64")
    config = tmp_path / "retry.yaml"
    config.write_text("""kernels: [linux-6.1]
targets: [x86_64]
suites:
  - {name: smoke-ssh, suite: smoke, transport: ssh}
options: {jobs: 1, retries: 1}
""")
    cfg = load_config(config)
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    stolen = squatter.getsockname()[1]
    real_reserve = lifecycle.reserve_port
    handed_out: list[int] = []

    def reserve(lock_dir: Path) -> PortReservation:
        reservation = (PortReservation(stolen, open(tmp_path / "stolen.lock", "w")) if not handed_out
                       else real_reserve(lock_dir))
        handed_out.append(reservation.port)
        return reservation

    monkeypatch.setattr(lifecycle, "reserve_port", reserve)
    try:
        store = ResultStore(tmp_path / "results")
        run = store.create_run(config, cfg.digest, cfg.jobs, {})
        [result] = Orchestrator(cfg, run, PlainProgress()).execute(cfg.jobs)
    finally:
        squatter.close()
    assert handed_out[0] == stolen and len(handed_out) == 2
    assert result.status == Status.PASS, result.message
    assert result.attempts == 2 and result.info.get("flaky") is True
    [first] = result.info["earlier_attempts"]
    assert first["failure"] == FailureClass.QEMU_EXIT.value and first["status"] == Status.INCOMPLETE.value
    job_dir = run.job_dir(cfg.jobs[0])
    assert "host forwarding" in (job_dir / "qemu.stderr.attempt1").read_text()


def _failing_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A suite whose one test always fails, in a suites/ directory of the test's own."""
    from crlab import paths

    suites = tmp_path / "suites"
    (suites / "failing").mkdir(parents=True)
    (suites / "failing" / "suite.yaml").write_text(
        "description: one check that always fails\ncommand: printf '1..1\\nnot ok 1 - boom\\n'\ntimeout: 60\n")
    monkeypatch.setattr(paths, "SUITES_DIR", suites)
    config = tmp_path / "failing.yaml"
    config.write_text("kernels: [linux-6.1]\ntargets: [x86_64]\nsuites: [failing]\noptions: {jobs: 1, retries: 1}\n")
    return config


@pytest.mark.parametrize("retry_failures", [False, True])
def test_a_failing_test_is_retried_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   retry_failures: bool) -> None:
    require_qemu("qemu-system-x86_64")
    config = _failing_suite(tmp_path, monkeypatch)
    cfg = load_config(config)
    store = ResultStore(tmp_path / "results")
    run = store.create_run(config, cfg.digest, cfg.jobs, {})
    [result] = Orchestrator(cfg, run, PlainProgress(), retry_test_failures=retry_failures).execute(cfg.jobs)
    assert (result.status, result.failure) == (Status.FAIL, FailureClass.TEST), result.message
    assert result.attempts == (2 if retry_failures else 1)
    assert not result.info.get("flaky")
    if retry_failures:
        [first] = result.info["earlier_attempts"]
        assert first["failure"] == "test" and first["tests"] == {"boom": "fail"}
