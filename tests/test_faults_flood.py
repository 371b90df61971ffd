"""A guest that floods its console (real x86_64 guest, test-only suite tests/data/faults/suites/flood):
crlab keeps the first and last OUTPUT_KEEP characters of the command's output and the first
CONSOLE_LOG_CAP bytes of the console, each with a note saying how much more there was, and still
reads the TAP that follows the flood.  The caps are lowered for the test (a TCG serial console moves
about 0.25 MB/s, so the 6 MB here stand for the 200 MB of a real flood)."""

from __future__ import annotations

from pathlib import Path

import pytest

import crlab.guest.console as console
import crlab.guest.qemu as qemu
import crlab.orchestrator as orchestrator
from crlab.config import load_config
from crlab.guest.lifecycle import Guest
from crlab.model import Status
from crlab.orchestrator import Orchestrator
from crlab.progress import PlainProgress
from crlab.results import ResultStore
from tests.conftest import require_qemu
from tests.test_faults_suite import fault_suites

pytestmark = [pytest.mark.boot, pytest.mark.slow]

FLOOD_MB = 6
KEEP = 1_000_000
LOG_CAP = 2_000_000


def test_console_flood_is_kept_up_to_the_caps_and_the_tap_still_read(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    require_qemu("qemu-system-x86_64")
    fault_suites(tmp_path, monkeypatch)
    monkeypatch.setattr(console, "OUTPUT_KEEP", KEEP)
    monkeypatch.setattr(qemu, "CONSOLE_LOG_CAP", LOG_CAP)

    class FloodJob(orchestrator.Job):
        def guest_env(self, guest: Guest) -> dict[str, str]:
            return {**super().guest_env(guest), "CRLAB_FLOOD_MB": str(FLOOD_MB)}

    monkeypatch.setattr(orchestrator, "Job", FloodJob)
    config = tmp_path / "flood.yaml"
    config.write_text("kernels: [linux-6.1]\ntargets: [x86_64]\nsuites: [flood]\noptions: {jobs: 1, retries: 0}\n")
    cfg = load_config(config)
    run = ResultStore(tmp_path / "results").create_run(config, cfg.digest, cfg.jobs, {})
    [result] = Orchestrator(cfg, run, PlainProgress()).execute(cfg.jobs)
    assert result.status == Status.PASS, result.message
    assert [t.name for t in result.tests] == ["survived the flood"]

    job_dir = run.job_dir(cfg.jobs[0])
    suite_log = (job_dir / "suite.log").read_text()
    # head + tail (less the carriage returns crlab strips, plus up to one read) + the note
    assert 1.9 * KEEP <= len(suite_log) < 2 * KEEP + 200_000
    assert "characters of output not kept here" in suite_log
    assert suite_log.rstrip().endswith("ok 1 - survived the flood")

    log = (job_dir / "console.log").read_bytes()
    assert len(log) < LOG_CAP + 1000
    assert b"[crlab: console log capped at 2000000 bytes; later output not kept]" in log
    assert log.rstrip().endswith(b"characters of console output were not kept]")
