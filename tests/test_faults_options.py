"""Options and subcommands that had no test: fail_fast, -j above 1 with --transport, report,
bench boot, and `shell` driven through a pty as a person would (boots, takes a command, Ctrl-]
leaves, QEMU is gone afterwards).  Real guests from the cached configs/targets.yaml kernels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pexpect
import pytest

from crlab.paths import DEFAULT_RESULTS_DIR, REPO_ROOT
from tests.conftest import require_qemu

pytestmark = [pytest.mark.boot, pytest.mark.slow]

HARNESS = [sys.executable, str(REPO_ROOT / "harness.py")]


def harness(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HARNESS, *args], text=True, capture_output=True, timeout=timeout, cwd=REPO_ROOT,
                          env={**os.environ, "CRLAB_PLAIN": "1"})


def qemu_under(marker: str) -> set[int]:
    """QEMU processes whose command line mentions `marker` (a results or job directory)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"qemu-system" in cmdline.split(b"\0")[0] and marker.encode() in cmdline:
                found.add(int(entry.name))
    return found


def jobs(results: Path) -> dict[str, dict[str, object]]:
    data = json.loads((results / "latest" / "results.json").read_text())
    return {job["job_id"]: job for job in data["jobs"]}


def test_fail_fast_starts_no_further_job(tmp_path: Path) -> None:
    require_qemu("qemu-system-x86_64")
    config = tmp_path / "fast.yaml"
    config.write_text("""kernels: [linux-6.1]
targets:
  - {name: x86_64, as: x86_64-noinit, kernel_cmdline: "rdinit=/nonexistent init=/nonexistent"}
  - x86_64
suites: [smoke]
options: {jobs: 1, retries: 0, fail_fast: true, timeouts: {boot: 60}}
""")
    results = tmp_path / "results"
    proc = harness("run", str(config), "--results", str(results), "--no-install")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "fail_fast: not starting further jobs" in proc.stderr
    got = jobs(results)
    assert got["linux-6.1/x86_64-noinit/smoke"]["failure"] == "boot-panic"
    assert got["linux-6.1/x86_64/smoke"]["status"] == "pending"  # never started
    assert not (Path(os.path.realpath(results / "latest")) / "linux-6.1__x86_64__smoke" / "console.log").exists()


def test_two_guests_at_once_over_ssh_then_report(tmp_path: Path) -> None:
    """-j 2 with --transport ssh on two targets: both guests run at the same moment (seen in /proc),
    every job used SSH; then `report` prints the run and rewrites its reports."""
    require_qemu("qemu-system-x86_64")
    require_qemu("qemu-system-ppc64")
    config = tmp_path / "two.yaml"
    config.write_text("kernels: [linux-6.1]\ntargets: [x86_64, ppc64le]\nsuites: [smoke]\n"
                      "options: {jobs: 1, retries: 0}\n")
    results = tmp_path / "results"
    most = [0]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            most[0] = max(most[0], len(qemu_under(str(results))))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        proc = harness("run", str(config), "--results", str(results), "--no-install", "-j", "2",
                       "--transport", "ssh")
    finally:
        done.set()
        watcher.join()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = jobs(results)
    assert set(got) == {"linux-6.1/x86_64/smoke", "linux-6.1/ppc64le/smoke"}
    assert {job["key"]["transport"] for job in got.values()} == {"ssh"}  # type: ignore[index]
    assert most[0] == 2, f"at most {most[0]} guest(s) ran at once with -j 2"

    run_dir = Path(os.path.realpath(results / "latest"))
    (run_dir / "junit.xml").unlink()
    report = harness("report", run_dir.name, "--results", str(results))
    assert report.returncode == 0, report.stdout + report.stderr
    assert "2 jobs: 2 pass" in report.stdout and (run_dir / "junit.xml").exists()
    missing = harness("report", "no-such-run", "--results", str(results))
    assert missing.returncode == 2 and "Traceback" not in missing.stdout + missing.stderr


def test_bench_boot_measures_crlab_against_bare_qemu() -> None:
    require_qemu("qemu-system-ppc64")
    before = set(DEFAULT_RESULTS_DIR.glob("bench-boot-*.json"))
    proc = harness("bench", "boot", "--targets", "ppc64", "--rounds", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [written] = set(DEFAULT_RESULTS_DIR.glob("bench-boot-*.json")) - before
    try:
        text = written.read_text()
        assert "ppc64" in text and "ratio" in text
    finally:
        written.unlink()


def test_shell_through_a_pty(tmp_path: Path) -> None:
    require_qemu("qemu-system-x86_64")
    child = pexpect.spawn(HARNESS[0], [*HARNESS[1:], "shell", "linux-6.1", "x86_64"], cwd=str(REPO_ROOT),
                          env={**os.environ, "CRLAB_PLAIN": "1"}, encoding="utf-8", codec_errors="replace",
                          timeout=300, dimensions=(50, 200))
    try:
        child.expect(r"booted in [0-9.]+ s; console log: (\S+)console.log")
        job_dir = child.match.group(1)
        guests = qemu_under(job_dir)
        assert len(guests) == 1
        child.sendline("echo crlab-$((6*7))")
        child.expect("crlab-42")  # typed, run by the guest's shell, answered
        child.sendcontrol("]")  # leave the console
        child.expect(pexpect.EOF, timeout=60)
    finally:
        child.close(force=False)
    assert child.exitstatus == 0, child.before
    for _ in range(40):
        if not any(Path(f"/proc/{pid}").exists() for pid in guests):
            break
        time.sleep(0.25)
    assert not any(Path(f"/proc/{pid}").exists() for pid in guests), "QEMU outlived `harness.py shell`"
