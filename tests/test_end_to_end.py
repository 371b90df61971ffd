"""`harness.py run` as a user runs it: real builds (cached), real boots, results on disk."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from crlab.paths import REPO_ROOT
from tests.conftest import require_qemu

pytestmark = [pytest.mark.boot, pytest.mark.slow]

HARNESS = [sys.executable, str(REPO_ROOT / "harness.py")]


def harness(*args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRLAB_PLAIN": "1"}
    return subprocess.run([*HARNESS, *args], text=True, capture_output=True, timeout=timeout, env=env,
                          cwd=REPO_ROOT)


def run_results(results_dir: Path) -> dict[str, Any]:
    return json.loads((results_dir / "latest" / "results.json").read_text())


def jobs_by_id(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    jobs = results["jobs"]
    assert isinstance(jobs, list)
    return {job["job_id"]: job for job in jobs}


def test_default_matrix_passes_then_nothing_is_rebuilt(tmp_path: Path) -> None:
    require_qemu("qemu-system-x86_64")
    first = harness("run", "--results", str(tmp_path))
    assert first.returncode == 0, first.stdout + first.stderr
    job = jobs_by_id(run_results(tmp_path))["linux-6.1/x86_64/smoke"]
    assert job["status"] == "pass"
    assert len(job["tests"]) == 8 and all(t["status"] == "pass" for t in job["tests"])
    run_dir = Path(os.path.realpath(tmp_path / "latest"))
    for name in ("console.log", "build.log", "suite.log", "kernel.config", "result.json"):
        assert (run_dir / "linux-6.1__x86_64__smoke" / name).exists(), name
    assert (run_dir / "junit.xml").exists() and (run_dir / "report.html").exists()

    second = harness("run", "--results", str(tmp_path))
    assert second.returncode == 0, second.stdout + second.stderr
    job = jobs_by_id(run_results(tmp_path))["linux-6.1/x86_64/smoke"]
    assert job["info"]["kernel_cached"] is True
    assert job["info"]["rootfs"]["cached"] is True
    assert "0.0 s building kernels" in second.stdout


def _write_config(path: Path, targets: str) -> Path:
    path.write_text(f"""kernels:
  - linux-6.1
targets:
{targets}
suites:
  - smoke
options:
  jobs: 1
  timeouts:
    boot: 60
""")
    return path


def test_panicking_and_hung_guests_are_classified_and_the_run_goes_on(tmp_path: Path) -> None:
    require_qemu("qemu-system-x86_64")
    # a kernel that cannot start init panics; a QEMU whose CPU never starts (-S) prints nothing
    config = _write_config(tmp_path / "broken.yaml", """  - name: x86_64
    as: x86_64-noinit
    kernel_cmdline: "rdinit=/nonexistent init=/nonexistent"
  - name: x86_64
    as: x86_64-hang
    qemu_extra_args: ["-S"]
    boot_timeout: 15
  - x86_64""")
    proc = harness("run", str(config), "--results", str(tmp_path / "results"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    jobs = jobs_by_id(run_results(tmp_path / "results"))
    run_dir = Path(os.path.realpath(tmp_path / "results" / "latest"))

    panicked = jobs["linux-6.1/x86_64-noinit/smoke"]
    assert (panicked["status"], panicked["failure"], panicked["stage"]) == ("fail", "boot-panic", "boot")
    assert "Kernel panic" in str(panicked["message"])
    console = (run_dir / "linux-6.1__x86_64-noinit__smoke" / "console.log").read_text()
    assert "Requested init /nonexistent failed" in console

    hung = jobs["linux-6.1/x86_64-hang/smoke"]
    assert (hung["status"], hung["failure"], hung["stage"]) == ("fail", "boot-hang", "boot")
    assert "no console output within 15 s" in str(hung["message"])
    assert (run_dir / "linux-6.1__x86_64-hang__smoke" / "console.log").exists()

    assert jobs["linux-6.1/x86_64/smoke"]["status"] == "pass"


def test_interrupted_run_keeps_finished_jobs_and_resumes(tmp_path: Path) -> None:
    require_qemu("qemu-system-x86_64")
    # the second job's QEMU starts with its CPU stopped (-S), so it is mid-boot when we interrupt
    paused = """  - x86_64
  - name: x86_64
    as: x86_64-b
    qemu_extra_args: ["-S"]"""
    config = _write_config(tmp_path / "resume.yaml", paused)
    results = tmp_path / "results"
    env = {**os.environ, "CRLAB_PLAIN": "1"}
    proc = subprocess.Popen([*HARNESS, "run", str(config), "--results", str(results)], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    second_console = None
    for _ in range(1200):  # the first job may have to build the kernel
        time.sleep(0.5)
        latest = results / "latest"
        if latest.exists():
            second_console = Path(os.path.realpath(latest)) / "linux-6.1__x86_64-b__smoke" / "console.log"
            if second_console.exists():
                break
        assert proc.poll() is None, proc.communicate()[0]
    assert second_console is not None and second_console.exists()
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 2, output
    assert "--resume" in output
    jobs = jobs_by_id(run_results(results))
    assert jobs["linux-6.1/x86_64/smoke"]["status"] == "pass"
    assert jobs["linux-6.1/x86_64-b/smoke"]["status"] == "incomplete"
    db = sqlite3.connect(results / "crlab.sqlite")
    assert db.execute("SELECT status FROM runs").fetchall() == [("incomplete",)]
    first_result = (Path(os.path.realpath(results / "latest")) / "linux-6.1__x86_64__smoke" / "result.json")
    before = first_result.read_text()

    # fix the config and finish the run: only the unfinished job runs again
    _write_config(config, "  - x86_64\n  - name: x86_64\n    as: x86_64-b")
    resumed = harness("run", "--resume", "--force", "--results", str(results))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "1 job(s) left" in resumed.stderr
    jobs = jobs_by_id(run_results(results))
    assert {job["status"] for job in jobs.values()} == {"pass"}
    assert first_result.read_text() == before
    assert db.execute("SELECT status FROM runs").fetchall() == [("complete",)]
