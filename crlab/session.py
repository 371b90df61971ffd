"""One matrix cell, ready to use: its kernel built (or taken from the cache), its rootfs packed,
the guest booted, and a shell on it.  Used by `harness.py shell`, the benchmarks and the tests;
the orchestrator uses the same stage functions for whole runs."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko

from crlab import kernel as kstages
from crlab.cache import Cache
from crlab.config import KernelTree, MatrixConfig, SuiteConfig
from crlab.guest.console import ConsoleShell
from crlab.guest.ports import reserve_port
from crlab.guest.qemu import BootInfo, MachineConfig, QemuMachine
from crlab.guest.shell import Shell, TransportError
from crlab.guest.ssh import SshShell, generate_client_key, public_line
from crlab.paths import FRAGMENTS_DIR
from crlab.rootfs import build_rootfs, job_initrd
from crlab.targets import TargetProfile


def prepare_kernel(kernel: KernelTree, profile: TargetProfile, cache: Cache, log_dir: Path,
                   on_stage: Callable[[str], object], build_timeout: int = 3600) -> kstages.BuiltKernel:
    """source -> patch -> configure -> build, each stage a cache hit when its inputs are unchanged."""
    log = log_dir / "build.log"
    on_stage("source")
    source_key, tree = kstages.prepare_source(kernel.source, cache, log)
    on_stage("patch")
    tree_key, tree = kstages.apply_patches(source_key, tree, kernel.patches, cache, log)
    on_stage("configure")
    return kstages.build_kernel(kernel, profile, tree_key, tree, cache, FRAGMENTS_DIR, log_dir, on_stage,
                                timeout=build_timeout)


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
class Guest:
    machine: QemuMachine
    boot: BootInfo
    shell: Shell
    kernel: kstages.BuiltKernel
    job_dir: Path


@contextlib.contextmanager
def boot_cell(cfg: MatrixConfig, kernel_name: str, target_name: str, transport: str = "console",
              suite: SuiteConfig | None = None, job_dir: Path | None = None, cmdline: str = "",
              network: bool | None = None, log: Callable[[str], object] = print,
              cache: Cache | None = None) -> Iterator[Guest]:
    """Build what is missing, boot the cell and yield a shell on it; the guest is gone afterwards.

    `network=False` with transport "ssh" boots a guest without a network device: the SSH shell
    must then fail with a clear error (used by the tests)."""
    cache = cache or Cache()
    profile = cfg.targets[target_name]
    with contextlib.ExitStack() as stack:
        if job_dir is None:
            job_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="crlab-cell-")))
        job_dir.mkdir(parents=True, exist_ok=True)
        built = prepare_kernel(cfg.kernels[kernel_name], profile, cache, job_dir,
                               on_stage=lambda s: log(f"{kernel_name}/{target_name}: {s}"),
                               build_timeout=cfg.options.build_timeout)
        use_ssh = transport == "ssh"
        rootfs = build_rootfs(profile, suite, cache, with_ssh=use_ssh)
        key = generate_client_key(job_dir / "ssh" / "id_ecdsa") if use_ssh else None
        initrd = job_initrd(rootfs, public_line(key) if key else None, job_dir)
        with_net = use_ssh if network is None else network
        reservation = stack.enter_context(reserve_port(cache.root / "ports")) if use_ssh else None
        machine = stack.enter_context(QemuMachine(machine_config(
            profile, built.image, initrd, job_dir, profile.effective_boot_timeout(cfg.options.boot_timeout),
            ssh_port=reservation.port if (reservation and with_net) else None, cmdline=cmdline)))
        log(f"{kernel_name}/{target_name}: boot")
        machine.start()
        boot = machine.wait_for_boot()
        shell = open_shell(machine, boot, transport, f"{kernel_name}/{target_name}", key,
                           reservation.port if reservation else None, connect_timeout=30 if with_net else 10)
        stack.callback(shell.close)
        stack.callback(machine.shutdown)
        yield Guest(machine, boot, shell, built, job_dir)

