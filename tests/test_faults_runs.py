"""Whole `harness.py run` processes under faults: SIGKILL of the harness and a resume (refused
when the config changed, unless --force), a second Ctrl-C while the first is being handled, and two
runs started together on the same cache and results directory."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crlab.paths import REPO_ROOT
from tests.conftest import require_qemu
from tests.test_cache_faults import linked_copy
from tests.test_faults_guest import _qemu_pids

pytestmark = [pytest.mark.boot, pytest.mark.slow]

HARNESS = [sys.executable, str(REPO_ROOT / "harness.py")]


def write_config(path: Path, paused: bool) -> Path:
    """Two jobs; the second one's QEMU starts with its CPU stopped (-S) when `paused`, so it is
    mid-boot for as long as the test likes."""
    path.write_text(f"""kernels: [linux-6.1]
targets:
  - x86_64
  - name: x86_64
    as: x86_64-b
    {'qemu_extra_args: ["-S"]' if paused else 'memory_mb: 256'}
suites: [smoke]
options: {{jobs: 1, retries: 0, timeouts: {{boot: 120}}}}
""")
    return path


def _ctrl_c_as_from_a_terminal() -> None:
    # pytest itself may have been started with `&` by a script (a shell without job control), and
    # then SIGINT is inherited as ignored and the harness never sees a Ctrl-C (it says so; see
    # test_inherited_ignored_ctrl_c_is_announced).  A person at a terminal has it at its default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([*HARNESS, *args], cwd=REPO_ROOT, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env={**os.environ, "CRLAB_PLAIN": "1", **(env or {})},
                            preexec_fn=_ctrl_c_as_from_a_terminal)


def wait_for_second_guest(proc: subprocess.Popen[str], results: Path) -> Path:
    for _ in range(2400):
        time.sleep(0.25)
        latest = results / "latest"
        if latest.exists():
            job_dir = Path(os.path.realpath(latest)) / "linux-6.1__x86_64-b__smoke"
            if (job_dir / "console.log").exists() and _qemu_pids(job_dir):
                return job_dir
        assert proc.poll() is None, proc.communicate()[0]
    raise AssertionError("the second job never started its guest")


def wait_gone(job_dir: Path) -> list[int]:
    for _ in range(120):
        if not _qemu_pids(job_dir):
            return []
        time.sleep(0.25)
    return _qemu_pids(job_dir)


def run_statuses(results: Path) -> list[str]:
    with sqlite3.connect(results / "crlab.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return [row[0] for row in conn.execute("SELECT status FROM runs ORDER BY started")]


def test_resume_after_sigkill_refuses_a_changed_config_without_force(tmp_path: Path) -> None:
    require_qemu("qemu-system-x86_64")
    config = write_config(tmp_path / "resume.yaml", paused=True)
    results = tmp_path / "results"
    proc = start("run", str(config), "--results", str(results), "--no-install")
    job_dir = wait_for_second_guest(proc, results)
    proc.send_signal(signal.SIGKILL)  # no handler, no cleanup: what a crash or the OOM killer does
    proc.communicate(timeout=60)
    assert wait_gone(job_dir) == [], "the killed harness left its QEMU running"
    assert run_statuses(results) == ["running"]  # as the crash left it
    first = job_dir.parent / "linux-6.1__x86_64__smoke" / "result.json"
    assert json.loads(first.read_text())["status"] == "pass"
    before = first.read_text()

    write_config(config, paused=False)
    refused = subprocess.run([*HARNESS, "run", "--resume", "--results", str(results), "--no-install"],
                             cwd=REPO_ROOT, text=True, capture_output=True, timeout=300)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "changed since run" in refused.stdout + refused.stderr and "--force" in refused.stdout + refused.stderr

    resumed = subprocess.run([*HARNESS, "run", "--resume", "--force", "--results", str(results), "--no-install"],
                             cwd=REPO_ROOT, text=True, capture_output=True, timeout=600,
                             env={**os.environ, "CRLAB_PLAIN": "1"})
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "1 job(s) left" in resumed.stdout + resumed.stderr
    assert first.read_text() == before
    assert run_statuses(results) == ["complete"]


def test_second_ctrl_c_while_the_first_is_handled(tmp_path: Path) -> None:
    require_qemu("qemu-system-x86_64")
    config = write_config(tmp_path / "twice.yaml", paused=True)
    results = tmp_path / "results"
    proc = start("run", str(config), "--results", str(results), "--no-install")
    job_dir = wait_for_second_guest(proc, results)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)  # the first is being handled: guests being killed, workers returning
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 2, output
    assert "Traceback" not in output
    assert "--resume" in output
    assert wait_gone(job_dir) == []
    assert run_statuses(results) == ["incomplete"]
    jobs = {job["job_id"]: job for job in json.loads((results / "latest" / "results.json").read_text())["jobs"]}
    assert jobs["linux-6.1/x86_64/smoke"]["status"] == "pass"
    assert jobs["linux-6.1/x86_64-b/smoke"]["status"] in ("incomplete", "pending")


def test_inherited_ignored_ctrl_c_is_announced() -> None:
    """Found by a CI run started in the background from a script: SIGINT inherited as ignored made
    both Ctrl-Cs of the test above vanish.  crlab keeps an inherited SIG_IGN but says so."""
    from crlab.cli import ctrl_c_ignored_note

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        note = ctrl_c_ignored_note()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, as at a terminal
        assert ctrl_c_ignored_note() is None
    finally:
        signal.signal(signal.SIGINT, previous)
    assert note is not None and "Ctrl-C will not stop the run" in note and "SIGTERM" in note
    probe = [sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"]
    # what `cmd &` in a script does to its child, whatever the script's own Ctrl-C
    inherited = subprocess.run(["sh", "-c", f"{shlex.join(probe)} & wait"], capture_output=True, text=True,
                               check=True).stdout.strip()
    # and start() gives the harness a default Ctrl-C even under a parent that ignores it
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        undone = subprocess.run(probe, capture_output=True, text=True, check=True,
                                preexec_fn=_ctrl_c_as_from_a_terminal).stdout.strip()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (inherited, undone) == ("True", "False"), (inherited, undone)


def test_two_runs_at_once_on_one_cache_and_results_directory(tmp_path: Path) -> None:
    """Separate processes: both finish, each missing entry is built once (the rootfs entries of a
    fresh cache copy; the kernel is a hit for both), every job of both runs is recorded."""
    require_qemu("qemu-system-x86_64")
    cache = linked_copy(tmp_path / "cache")
    config = tmp_path / "both.yaml"
    config.write_text("""kernels: [linux-6.1]
targets: [x86_64]
suites: [smoke, {name: smoke-ssh, suite: smoke, transport: ssh}]
options: {jobs: 2, retries: 0}
""")
    results = tmp_path / "results"
    env = {"CRLAB_CACHE": str(cache)}
    procs = [start("run", str(config), "--results", str(results), "--no-install", env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, output
    # the copy lacks the SSH rootfs (its key names the dropbear entry's path, which is the copy's):
    # one of the two processes builds it, the other waits and uses it
    # the progress notes "[  0.0s] building <what> (<kind>/<key>)"
    builds = [line.rsplit("(", 1)[-1].rstrip(")") for output in outputs for line in output.splitlines()
              if re.match(r"\[ *[0-9.]+s\] building ", line)]
    assert len(builds) == len(set(builds)), builds  # no entry was built by both processes
    assert all(b.startswith("rootfs/") for b in builds), builds  # and no kernel at all
    assert not [p for p in (cache / "rootfs").iterdir() if p.name.startswith(".tmp-")]
    assert run_statuses(results) == ["complete", "complete"]
    with sqlite3.connect(results / "crlab.sqlite") as conn:
        rows = conn.execute("SELECT run_id, status FROM jobs").fetchall()
    assert len(rows) == 4 and {status for _, status in rows} == {"pass"}
    assert len({run_id for run_id, _ in rows}) == 2
