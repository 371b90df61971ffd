"""The one way a crlab guest lives: start QEMU, wait for boot, open the shell; on the way out
close the shell, shut the guest down, release its port, remove its per-job initrd, keep its logs.

Every caller (the job kinds through the orchestrator, `harness.py shell`, `bench boot`, the tests)
boots guests through `guest()`, and every way a guest can let a job down is classified here, in
`classify()`, into a status (FAIL: the kernel's fault; INCOMPLETE: the harness could not finish)
and a failure class.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from crlab.guest.console import ConsoleShell
from crlab.guest.ports import reserve_port
from crlab.guest.qemu import PANIC, BootFailure, BootInfo, MachineConfig, QemuMachine, qemu_version
from crlab.guest.shell import CommandTimeout, GuestError, GuestGone, HostKeyRefused, Shell, TransportError
from crlab.guest.ssh import SshShell, generate_client_key, public_line
from crlab.model import FailureClass, Status
from crlab.rootfs import Rootfs, job_initrd
from crlab.targets import TargetProfile

TRANSPORTS = ("console", "ssh")
QEMU_REAP_GRACE = 3.0  # seconds a dropped connection waits to see whether QEMU is exiting
LOGS = ("console.log", "qemu.stderr", "suite.log")  # what a guest leaves in its job directory


class GuestFailure(Exception):
    """A guest let its job down; `status` and `failure` say whose fault and what kind."""

    def __init__(self, status: Status, failure: FailureClass, stage: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.failure = failure
        self.stage = stage
        self.message = message


def classify(exc: BaseException, console_log: str, job: str = "") -> GuestFailure:
    """The single place that decides what a boot or guest error means for a job."""
    if isinstance(exc, GuestFailure):
        return exc
    if isinstance(exc, BootFailure):
        # QEMU that exits before printing anything never ran the kernel: the host's fault
        status = (Status.INCOMPLETE if exc.failure == FailureClass.QEMU_EXIT and not console_log.strip()
                  else Status.FAIL)
        return GuestFailure(status, exc.failure, "boot", str(exc))
    if isinstance(exc, HostKeyRefused):  # not the guest's fault, and not worth another attempt
        return GuestFailure(Status.INCOMPLETE, FailureClass.INFRA, "run", str(exc))
    if isinstance(exc, TransportError):
        return GuestFailure(Status.INCOMPLETE, FailureClass.TRANSPORT, "run", str(exc))
    if isinstance(exc, CommandTimeout):
        return GuestFailure(Status.FAIL, FailureClass.TIMEOUT, "run", f"{job}: {exc}" if job else str(exc))
    if isinstance(exc, GuestGone):
        if PANIC.search(console_log):
            return GuestFailure(Status.FAIL, FailureClass.GUEST_PANIC, "run", str(exc))
        return GuestFailure(Status.INCOMPLETE, FailureClass.QEMU_EXIT, "run", str(exc))
    if isinstance(exc, GuestError):
        return GuestFailure(Status.INCOMPLETE, FailureClass.TRANSPORT, "run", str(exc))
    raise TypeError(f"not a guest error: {exc!r}")


def machine_config(profile: TargetProfile, image: Path, initrd: Path, job_dir: Path, boot_timeout: int,
                   ssh_port: int | None = None, cmdline: str = "") -> MachineConfig:
    """How a crlab guest is started: with networking (and so SSH) exactly when it has a forward port."""
    return MachineConfig(
        profile=profile, kernel=image, initrd=initrd, job_dir=job_dir,
        cmdline=" ".join(filter(None, ["crlab.net=user" if ssh_port is not None else "", cmdline])),
        ssh_port=ssh_port, boot_timeout=boot_timeout, first_output_timeout=min(60.0, boot_timeout))


def open_shell(machine: QemuMachine, boot: BootInfo, transport: str, job: str, key: paramiko.PKey | None = None,
               port: int | None = None, connect_timeout: float = 60) -> Shell:
    """The suite-facing shell on a booted guest: its console, or SSH pinned to its announced host key."""
    if transport != "ssh":
        return ConsoleShell(machine)
    assert key is not None and port is not None
    if machine.cfg.ssh_port is not None and not boot.ssh_server_started:
        raise TransportError(f"job {job}: the guest's SSH server did not start (see {machine.console_log})")
    return SshShell(port, key, boot.host_key, job, connect_timeout=connect_timeout)


@dataclass
class GuestSpec:
    """Everything needed to start one guest."""

    profile: TargetProfile
    image: Path  # the kernel image
    rootfs: Rootfs
    job_dir: Path  # logs land here; the guest gets no other host directory
    name: str  # for messages, e.g. the job id
    transport: str = "console"
    boot_timeout: int = 180
    ssh_key: paramiko.PKey | None = None  # the run's key; a per-guest one is made when None
    port_dir: Path | None = None  # where port reservations are locked (the cache's ports/)
    cmdline: str = ""  # extra kernel arguments
    network: bool | None = None  # None: a network device exactly when the transport is SSH


@dataclass
class Guest:
    machine: QemuMachine
    boot: BootInfo
    shell: Shell
    spec: GuestSpec
    info: dict[str, object] = field(default_factory=dict)  # qemu command, clean shutdown ...

    @property
    def job_dir(self) -> Path:
        return self.spec.job_dir

    def console_text(self) -> str:
        return self.machine.read_console_log()

    def kernel_oops(self) -> str | None:
        """The first oops/BUG the kernel printed so far, if any."""
        return self.machine.find_oops()


# Every machine alive in this process, so that an interrupted run can stop them all at once.
_LIVE: set[QemuMachine] = set()
_LIVE_LOCK = threading.Lock()


def kill_all() -> None:
    with _LIVE_LOCK:
        machines = list(_LIVE)
    for machine in machines:
        machine.kill()


@contextlib.contextmanager
def guest(spec: GuestSpec, on_boot: Callable[[], object] | None = None,
          info: dict[str, object] | None = None, attempt: int = 1) -> Iterator[Guest]:
    """Start a guest and yield it with a shell; any guest error inside becomes a classified GuestFailure.

    `info` (the guest's facts: QEMU command line, whether it shut down cleanly) is filled in even
    when the boot fails.  A later `attempt` keeps the earlier attempt's logs beside the new ones."""
    if spec.transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {spec.transport!r}")
    use_ssh = spec.transport == "ssh"
    with_net = use_ssh if spec.network is None else spec.network
    spec.job_dir.mkdir(parents=True, exist_ok=True)
    if attempt > 1:
        for name in LOGS:
            if (spec.job_dir / name).exists():
                (spec.job_dir / name).rename(spec.job_dir / f"{name}.attempt{attempt - 1}")
    key = spec.ssh_key
    if use_ssh and key is None:
        key = generate_client_key(spec.job_dir / "ssh" / "id_ecdsa")
    initrd = job_initrd(spec.rootfs, public_line(key) if (use_ssh and key) else None, spec.job_dir)
    reservation = None
    machine: QemuMachine | None = None
    shell: Shell | None = None
    info = {} if info is None else info
    info.update({"qemu": qemu_version(spec.profile.qemu_binary), "cpu": spec.profile.cpu,
                 "machine": spec.profile.machine, "smp": spec.profile.smp, "memory_mb": spec.profile.memory_mb})
    try:
        if use_ssh:
            assert spec.port_dir is not None, "an SSH guest needs a port reservation directory"
            reservation = reserve_port(spec.port_dir)
        machine = QemuMachine(machine_config(
            spec.profile, spec.image, initrd, spec.job_dir, spec.boot_timeout,
            ssh_port=reservation.port if (reservation and with_net) else None, cmdline=spec.cmdline))
        with _LIVE_LOCK:
            _LIVE.add(machine)
        if on_boot is not None:
            on_boot()
        machine.start()
        info["qemu_command"] = " ".join(machine.command)
        boot = machine.wait_for_boot()
        shell = open_shell(machine, boot, spec.transport, spec.name, key,
                           reservation.port if reservation else None, connect_timeout=60 if with_net else 10)
        yield Guest(machine, boot, shell, spec, info)
    except (BootFailure, GuestError) as exc:
        # A killed QEMU closes its forwarded socket a moment before it can be reaped: give it that
        # moment, so that a dead guest is not mistaken for a dropped connection.
        if (isinstance(exc, TransportError) and not isinstance(exc, HostKeyRefused) and machine
                and machine.exits_within(QEMU_REAP_GRACE)):
            exc = GuestGone(f"{exc} (QEMU exited)")  # the connection dropped because QEMU is gone
        raise classify(exc, machine.read_console_log() if machine else "", spec.name) from exc
    finally:
        if shell is not None:
            with contextlib.suppress(Exception):
                shell.close()
        if machine is not None:
            info["clean_shutdown"] = machine.shutdown()
            if machine.ignored_shutdown:
                info["ignored_shutdown"] = True
            with _LIVE_LOCK:
                _LIVE.discard(machine)
        if reservation is not None:
            reservation.release()
        with contextlib.suppress(OSError):
            initrd.unlink()  # a copy of the cached rootfs plus the key; the cache has the rest


__all__ = ["Guest", "GuestFailure", "GuestSpec", "classify", "guest", "kill_all", "machine_config", "open_shell",
           "TRANSPORTS"]
