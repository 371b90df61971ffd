"""One matrix cell, ready to use: its kernel built (or taken from the cache), its rootfs packed,
the guest booted through the one guest lifecycle, and a shell on it.  Used by `harness.py shell`,
the benchmarks and the tests; the orchestrator's jobs use the same functions."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from crlab import kernel as kstages
from crlab.cache import Cache
from crlab.config import KernelTree, MatrixConfig, SuiteConfig
from crlab.guest import lifecycle
from crlab.guest.lifecycle import Guest, GuestSpec
from crlab.paths import FRAGMENTS_DIR
from crlab.rootfs import build_rootfs
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


@contextlib.contextmanager
def boot_cell(cfg: MatrixConfig, kernel_name: str, target_name: str, transport: str = "console",
              suite: SuiteConfig | None = None, job_dir: Path | None = None, cmdline: str = "",
              network: bool | None = None, log: Callable[[str], object] = print,
              cache: Cache | None = None) -> Iterator[tuple[Guest, kstages.BuiltKernel]]:
    """Build what is missing, boot the cell and yield (guest, kernel); the guest is gone afterwards.

    `network=False` with transport "ssh" boots a guest without a network device: opening the SSH
    shell must then fail with a clear error (used by the tests)."""
    cache = cache or Cache()
    profile = cfg.targets[target_name]
    with contextlib.ExitStack() as stack:
        if job_dir is None:
            job_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="crlab-cell-")))
        job_dir.mkdir(parents=True, exist_ok=True)
        name = f"{kernel_name}/{target_name}"
        built = prepare_kernel(cfg.kernels[kernel_name], profile, cache, job_dir,
                               on_stage=lambda s: log(f"{name}: {s}"), build_timeout=cfg.options.build_timeout)
        rootfs = build_rootfs(profile, suite, cache, with_ssh=transport == "ssh")
        spec = GuestSpec(profile=profile, image=built.image, rootfs=rootfs, job_dir=job_dir, name=name,
                         transport=transport, boot_timeout=profile.effective_boot_timeout(cfg.options.boot_timeout),
                         port_dir=cache.root / "ports", cmdline=cmdline, network=network)
        with lifecycle.guest(spec, on_boot=lambda: log(f"{name}: boot")) as guest:
            yield guest, built
