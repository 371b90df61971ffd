"""Faults of a running guest, injected into real QEMU processes booted from the cached
configs/targets.yaml kernels: an SSH server that is not the guest, a guest that announced no host
key, a QEMU killed from outside, a QEMU that never exits on shutdown."""

from __future__ import annotations

import dataclasses
import fcntl
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import paramiko
import pytest

from crlab.cache import Cache
from crlab.config import MatrixConfig, load_config
from crlab.guest.lifecycle import classify, open_shell
from crlab.guest.shell import HostKeyRefused
from crlab.model import FailureClass, Status
from crlab.orchestrator import Orchestrator
from crlab.paths import REPO_ROOT
from crlab.progress import PlainProgress
from crlab.results import ResultStore
from crlab.session import boot_cell
from tests.conftest import require_qemu

pytestmark = [pytest.mark.boot, pytest.mark.slow]


def test_ssh_host_key_not_announced_or_not_matching_is_refused(matrix: MatrixConfig, tmp_path: Path) -> None:
    """Two real SSH guests: the shell to A pinned to B's announced key (what a port that reaches the
    wrong server looks like) is refused, as is A with no key announced; A's own key works."""
    require_qemu("qemu-system-x86_64")
    with boot_cell(matrix, "linux-6.1", "x86_64", transport="ssh", job_dir=tmp_path / "a") as (a, _), \
            boot_cell(matrix, "linux-6.1", "x86_64", transport="ssh", job_dir=tmp_path / "b") as (b, _):
        assert a.boot.host_key and b.boot.host_key and a.boot.host_key != b.boot.host_key
        key = paramiko.ECDSAKey.from_private_key_file(str(tmp_path / "a" / "ssh" / "id_ecdsa"))
        port = a.machine.cfg.ssh_port
        assert port is not None

        with pytest.raises(HostKeyRefused) as mismatch:
            open_shell(a.machine, dataclasses.replace(a.boot, host_key=b.boot.host_key), "ssh", "job-a", key, port)
        message = str(mismatch.value)
        assert f"SSH host key refused for 127.0.0.1:{port}" in message
        assert b.boot.host_key.split()[1][:24] in message and a.boot.host_key.split()[1][:24] in message
        failure = classify(mismatch.value, "")
        assert (failure.status, failure.failure) == (Status.INCOMPLETE, FailureClass.INFRA)  # never retried

        with pytest.raises(HostKeyRefused, match="announced no host key on its console"):
            open_shell(a.machine, dataclasses.replace(a.boot, host_key=None), "ssh", "job-a", key, port)

        shell = open_shell(a.machine, a.boot, "ssh", "job-a", key, port)  # the control: its own key
        try:
            assert shell.run("echo pinned").output == "pinned\n"
        finally:
            shell.close()


def _port_free(port: int) -> bool:
    """Whether a server could listen on `port` now (as QEMU's forward does: a connection of the
    killed QEMU may linger in TIME_WAIT, which does not stop a listener)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True


def _qemu_pids(job_dir: Path) -> list[int]:
    """QEMU processes started for `job_dir` (its per-job initrd is on their command line)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline and b"qemu-system" in cmdline[0] and str(job_dir).encode() in b" ".join(cmdline):
                pids.append(int(entry.name))
    return pids


def _fault_suites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/data/faults/suites plus the shipped smoke suite, as the suites directory."""
    from crlab import paths

    suites = tmp_path / "suites"
    suites.mkdir()
    for suite in (REPO_ROOT / "tests" / "data" / "faults" / "suites").iterdir():
        (suites / suite.name).symlink_to(suite)
    (suites / "smoke").symlink_to(paths.SUITES_DIR / "smoke")
    monkeypatch.setattr(paths, "SUITES_DIR", suites)


def test_killed_and_undying_qemu_are_classified_and_the_run_goes_on(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """One run, one guest at a time: QEMU SIGKILLed from outside mid-suite (console, then SSH), a
    guest that ignores the shutdown command, a guest whose SSH server dies under the command, then
    an ordinary job that must still pass."""
    require_qemu("qemu-system-x86_64")
    _fault_suites(tmp_path, monkeypatch)
    config = tmp_path / "faults.yaml"
    config.write_text("""kernels: [linux-6.1]
targets:
  - x86_64
  # a guest that ignores crlab's shutdown command: its QEMU never exits by itself
  - {name: x86_64, as: x86_64-deaf, shutdown_command: "echo crlab-shutdown-ignored"}
suites:
  - {name: killed-console, suite: sleeper, transport: console}
  - {name: killed-ssh, suite: sleeper, transport: ssh}
  - dropssh
  - smoke
matrix:
  exclude: [{target: x86_64-deaf, suite: [killed-console, killed-ssh, dropssh]}]
options: {jobs: 1, retries: 0}
""")
    cfg = load_config(config)
    run = ResultStore(tmp_path / "results").create_run(config, cfg.digest, cfg.jobs, {})
    job_dirs = {spec.suite if spec.target == "x86_64" else "deaf": run.job_dir(spec) for spec in cfg.jobs}
    killed: dict[str, int] = {}
    running = {suite: threading.Event() for suite in ("killed-console", "killed-ssh")}

    class Watch(PlainProgress):
        def stage(self, job: str, stage: str, detail: str = "") -> None:
            super().stage(job, stage, detail)
            suite = job.split("/")[2]
            if stage == "run" and suite in running and "/x86_64/" in job:
                running[suite].set()

    def killer() -> None:
        for suite in ("killed-console", "killed-ssh"):
            running[suite].wait()
            # the console shows the suite's marker (over SSH nobody reads the console: wait a bit)
            console = job_dirs[suite] / "console.log"
            for _ in range(100):
                if suite == "killed-console" and "crlab-fault-sleeping" in console.read_text(errors="replace"):
                    break
                time.sleep(0.1)
            [pid] = _qemu_pids(job_dirs[suite])
            os.kill(pid, signal.SIGKILL)
            killed[suite] = pid

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    results = {r.spec.suite if r.spec.target == "x86_64" else "deaf": r
               for r in Orchestrator(cfg, run, Watch()).execute(cfg.jobs)}
    thread.join(timeout=1)
    assert set(killed) == {"killed-console", "killed-ssh"}

    for suite in ("killed-console", "killed-ssh"):
        result, job_dir = results[suite], job_dirs[suite]
        assert (result.status, result.failure) == (Status.INCOMPLETE, FailureClass.QEMU_EXIT), result.message
        assert result.stage == "run" and "QEMU exited" in result.message
        assert "did not exit after the shutdown command" not in result.message
        assert (job_dir / "console.log").exists() and (job_dir / "qemu.cmdline").exists()  # logs kept
        assert _qemu_pids(job_dir) == []
    assert "crlab-fault-sleeping" in (job_dirs["killed-console"] / "console.log").read_text(errors="replace")
    assert "SSH connection dropped while a command ran" in results["killed-ssh"].message
    # the SSH job's forward port is free again and its reservation released
    match = re.search(r"hostfwd=tcp:127.0.0.1:(\d+)", (job_dirs["killed-ssh"] / "qemu.cmdline").read_text())
    assert match is not None
    port = int(match.group(1))
    assert _port_free(port)
    with open(Cache().root / "ports" / f"{port}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if still held

    deaf = results["deaf"]
    assert deaf.status == Status.PASS, deaf.message
    assert deaf.info["clean_shutdown"] is False and deaf.info["ignored_shutdown"] is True
    assert "did not exit after the shutdown command" in deaf.message
    assert _qemu_pids(job_dirs["deaf"]) == []
    assert "crlab-shutdown-ignored" in (job_dirs["deaf"] / "console.log").read_text(errors="replace")

    dropped = results["dropssh"]
    assert (dropped.status, dropped.failure) == (Status.INCOMPLETE, FailureClass.TRANSPORT), dropped.message
    assert "the SSH connection dropped while a command ran" in dropped.message
    assert "never seen" not in dropped.message

    assert results["smoke"].status == Status.PASS, results["smoke"].message
