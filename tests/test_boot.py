"""Real kernels, really booted: every target is cross-built (or taken from the cache), booted under
QEMU (TCG) and driven over the serial console and over SSH through the same shell interface."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from crlab.config import MatrixConfig
from crlab.guest.lifecycle import GuestFailure
from crlab.guest.shell import CommandTimeout, GuestGone, TransportError
from crlab.model import FailureClass, Status
from crlab.session import boot_cell
from tests.conftest import TARGETS, require_qemu

pytestmark = [pytest.mark.boot, pytest.mark.slow]


def _roundtrip_file(guest_shell: object, tmp_path: Path) -> None:
    """put a binary file in, checksum it in the guest, get it back: the same bytes."""
    data = os.urandom(3000) + bytes(range(256))
    local = tmp_path / "payload.bin"
    local.write_bytes(data)
    guest_shell.put(local, "/tmp/payload.bin", mode=0o600)  # type: ignore[attr-defined]
    result = guest_shell.run("sha256sum /tmp/payload.bin && stat -c %a /tmp/payload.bin")  # type: ignore[attr-defined]
    assert result.exit_status == 0
    assert hashlib.sha256(data).hexdigest() in result.output
    assert result.output.split()[-1] == "600"
    back = tmp_path / "back.bin"
    guest_shell.get("/tmp/payload.bin", back)  # type: ignore[attr-defined]
    assert back.read_bytes() == data


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("transport", ["console", "ssh"])
def test_boot_and_run_a_command(matrix: MatrixConfig, target: str, transport: str, tmp_path: Path) -> None:
    profile = matrix.targets[target]
    require_qemu(profile.qemu_binary)
    with boot_cell(matrix, "linux-6.1", target, transport=transport, job_dir=tmp_path / "job") as (guest, built):
        assert guest.boot.seconds_to_prompt > 0
        uname = guest.shell.run("uname -r; uname -m")
        assert uname.exit_status == 0
        assert uname.output.split() == [built.release, profile.uname_machine]
        failing = guest.shell.run("echo to-stdout; echo to-stderr >&2; exit 3")
        assert failing.exit_status == 3
        assert "to-stdout" in failing.output and "to-stderr" in failing.output
        _roundtrip_file(guest.shell, tmp_path)
    assert "crlab-init: ready" in (tmp_path / "job" / "console.log").read_text()


def test_ssh_without_guest_network_is_a_clear_error(matrix: MatrixConfig, tmp_path: Path) -> None:
    require_qemu("qemu-system-x86_64")
    with pytest.raises(GuestFailure) as info:
        with boot_cell(matrix, "linux-6.1", "x86_64", transport="ssh", network=False, job_dir=tmp_path / "job"):
            pass
    message = str(info.value)
    assert "linux-6.1/x86_64" in message and "did not answer" in message
    assert (info.value.status, info.value.failure) == (Status.INCOMPLETE, FailureClass.TRANSPORT)
    assert isinstance(info.value.__cause__, TransportError)


@pytest.mark.parametrize("transport", ["console", "ssh"])
def test_a_stuck_command_times_out_and_the_shell_still_works(matrix: MatrixConfig, transport: str,
                                                              tmp_path: Path) -> None:
    require_qemu("qemu-system-x86_64")
    with boot_cell(matrix, "linux-6.1", "x86_64", transport=transport, job_dir=tmp_path / "job") as (guest, _):
        with pytest.raises(CommandTimeout):
            guest.shell.run("echo started; sleep 600", timeout=3)
        after = guest.shell.run("echo still-here")
        assert (after.exit_status, after.output) == (0, "still-here\n")


def test_init_exiting_panics_the_guest_and_the_shell_says_so(matrix: MatrixConfig, tmp_path: Path) -> None:
    require_qemu("qemu-system-x86_64")
    with boot_cell(matrix, "linux-6.1", "x86_64", job_dir=tmp_path / "job") as (guest, _):
        assert guest.machine.child is not None
        guest.machine.child.sendline("exit")  # the console shell is PID 1: the kernel panics
        with pytest.raises(GuestGone, match="panicked"):
            guest.shell.run("true", timeout=30)
    assert "Attempted to kill init" in (tmp_path / "job" / "console.log").read_text()
