"""`harness.py bench boot`: seconds from QEMU start to the first shell prompt, through crlab's
machine layer versus a bare qemu-system-* command with the same kernel and initramfs and a minimal
pexpect loop, measured alternately in one run.  Timings live here, never in the tests."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import pexpect

from crlab.cache import Cache
from crlab.config import MatrixConfig
from crlab.guest import lifecycle
from crlab.guest.lifecycle import GuestSpec
from crlab.guest.qemu import PROMPT, qemu_version
from crlab.paths import DEFAULT_RESULTS_DIR
from crlab.rootfs import build_rootfs, job_initrd
from crlab.session import prepare_kernel


def bare_boot(binary: str, machine: str, cpu: str, console: str, kernel: Path, initrd: Path,
              extra: tuple[str, ...], timeout: float = 300, memory_mb: int = 512) -> float:
    """The baseline: QEMU started by hand, wait for the prompt, kill it."""
    args = ["-M", machine, "-cpu", cpu, "-m", str(memory_mb), "-nographic", "-no-reboot", "-nic", "none",
            "-kernel", str(kernel), "-initrd", str(initrd), "-append", f"console={console} panic=-1", *extra]
    start = time.monotonic()
    child = pexpect.spawn(binary, args, encoding="utf-8", codec_errors="replace", timeout=timeout)
    try:
        child.expect_exact(PROMPT)
        return time.monotonic() - start
    finally:
        child.terminate(force=True)
        child.close(force=True)


def crlab_boot(spec: GuestSpec) -> float:
    """Boot through crlab's guest lifecycle (the same path a job takes), to the console shell."""
    with lifecycle.guest(spec) as guest:
        return guest.boot.seconds_to_prompt


def bench_boot(matrix: MatrixConfig, targets: list[str], rounds: int = 3) -> int:
    cache = Cache()
    kernel_name = next(iter(matrix.kernels))
    report: dict[str, dict[str, object]] = {}
    print(f"{'target':10s} {'crlab median s':>15s} {'bare median s':>14s} {'ratio':>7s}  build s  (rounds={rounds})")
    for target in targets:
        profile = matrix.targets[target]
        with tempfile.TemporaryDirectory(prefix=f"crlab-bench-{target}-") as tmp:
            workdir = Path(tmp)
            built = prepare_kernel(matrix.kernels[kernel_name], profile, cache, workdir, on_stage=lambda s: None)
            rootfs = build_rootfs(profile, None, cache, with_ssh=False)
            initrd = job_initrd(rootfs, None, workdir)  # the bare side's copy; crlab makes its own per boot
            boot_timeout = profile.effective_boot_timeout(matrix.options.boot_timeout)
            ours: list[float] = []
            bare: list[float] = []
            for index in range(rounds):
                spec = GuestSpec(profile=profile, image=built.image, rootfs=rootfs, job_dir=workdir / f"round{index}",
                                 name=f"bench/{target}", boot_timeout=boot_timeout)
                # alternate the order so that neither side always runs on a warmer machine
                for side in ("crlab", "bare") if index % 2 == 0 else ("bare", "crlab"):
                    if side == "crlab":
                        ours.append(crlab_boot(spec))
                    else:
                        bare.append(bare_boot(profile.qemu_binary, profile.machine, profile.cpu, profile.console,
                                              built.image, initrd, profile.qemu_extra_args,
                                              timeout=boot_timeout, memory_mb=profile.memory_mb))
        ours_median, bare_median = statistics.median(ours), statistics.median(bare)
        ratio = ours_median / bare_median
        build_s = built.metadata.get("build_s", "?")
        print(f"{target:10s} {ours_median:15.2f} {bare_median:14.2f} {ratio:7.2f}  {build_s}")
        report[target] = {"crlab_s": ours, "bare_s": bare, "crlab_median_s": ours_median,
                          "bare_median_s": bare_median, "ratio": ratio, "build_s": build_s,
                          "qemu": qemu_version(profile.qemu_binary), "cpu": profile.cpu}
    out = DEFAULT_RESULTS_DIR / f"bench-boot-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out}")
    return 0
