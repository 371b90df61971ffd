"""Kernel build speed: crlab's builds against plain `make`, in one run, with one .config.

Four builds of the same kernel for one target, under the host-wide build lock:

  plain make      `make -jN <image>` in a fresh object dir, no ccache (the baseline)
  crlab cold      crlab's build with an empty ccache and no object tree
  crlab warm      crlab's build with the ccache the cold one filled, again no object tree
  crlab one-file  after a patch changing one .c file, in the object tree the warm build left

The cold and warm builds are two clean builds of the same inputs into separate cache roots, so
their images must be byte-identical: the benchmark reports that as well.  Everything it builds
goes to a scratch directory in the cache, removed at the end; only the kernel source is shared.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from crlab import kernel as kstages
from crlab import runner
from crlab.cache import Cache, force_rmtree, host_build_lock
from crlab.config import load_config
from crlab.paths import CONFIGS_DIR, FRAGMENTS_DIR

CHANGED_FILE = "kernel/fork.c"


def one_file_patch(tree: Path, out: Path) -> Path:
    """A patch adding a variable at the end of CHANGED_FILE (a real code change: fork.o differs)."""
    old = (tree / CHANGED_FILE).read_text().splitlines(keepends=True)
    new = [*old, "\n", "/* crlab buildbench: a one-file change */\n", "int crlab_buildbench_marker;\n"]
    out.write_text("".join(difflib.unified_diff(old, new, f"a/{CHANGED_FILE}", f"b/{CHANGED_FILE}")))
    return out


def _quiet(_stage: str) -> None:
    pass


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="harness.py bench build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=CONFIGS_DIR / "targets.yaml", help="matrix config")
    parser.add_argument("--kernel", default="linux-6.1", help="kernel tree of the config")
    parser.add_argument("--target", default="x86_64")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)

    cfg = load_config(args.config)
    if args.kernel not in cfg.kernels or args.target not in cfg.targets:
        print(f"bench build: {args.config} has no kernel {args.kernel!r} or target {args.target!r}", file=sys.stderr)
        return 2
    kernel, profile = cfg.kernels[args.kernel], cfg.targets[args.target]
    main_cache = Cache()
    main_cache.root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="buildbench-", dir=main_cache.root))  # same fs: hard links work
    ccache_dir = work / "ccache"
    jobs = os.cpu_count() or 1
    figures: dict[str, Any] = {"kernel": kernel.name, "target": profile.name, "jobs": jobs}
    try:
        with host_build_lock() as waited:
            if waited > 1:
                print(f"waited {waited:.0f} s for another build to finish")
            log = work / "prepare.log"
            source_key, tree = kstages.prepare_source(kernel.source, main_cache, log)
            tree_key, tree = kstages.apply_patches(source_key, tree, kernel.patches, main_cache, log)

            def crlab_build(name: str, cache: Cache, kernel_tree: Any, key: str, src: Path) -> kstages.BuiltKernel:
                log_dir = work / f"{name}-logs"
                log_dir.mkdir()
                print(f"{name}: building ...", flush=True)
                started, cpu = time.monotonic(), _children_cpu()
                built = kstages.build_kernel(kernel_tree, profile, key, src, cache, FRAGMENTS_DIR, log_dir, _quiet)
                seconds = time.monotonic() - started
                meta = built.metadata
                figures[name] = {"seconds": round(seconds, 1), "cpu_s": round(_children_cpu() - cpu, 1),
                                 "load": round(os.getloadavg()[0], 1), "make_s": meta["build_s"],
                                 "configure_s": meta["configure_s"], "ccache": meta.get("ccache"),
                                 "image_sha256": meta["image_sha256"]}
                print(f"{name}: {seconds:.1f} s", flush=True)
                return built

            cold = crlab_build("crlab_cold", Cache(work / "cold", ccache_dir=ccache_dir), kernel, tree_key, tree)
            figures["plain_make"] = _plain_make(tree, cold.config, profile, work / "plain", jobs)
            warm_cache = Cache(work / "warm", ccache_dir=ccache_dir)
            warm = crlab_build("crlab_warm", warm_cache, kernel, tree_key, tree)
            patch = one_file_patch(tree, work / "one-file.patch")
            started = time.monotonic()
            one_key, one_tree = kstages.apply_patches(source_key, tree, (*kernel.patches, patch), warm_cache, log)
            figures["patch_s"] = round(time.monotonic() - started, 1)
            changed = dataclasses.replace(kernel, patches=(*kernel.patches, patch))
            one = crlab_build("crlab_one_file", warm_cache, changed, one_key, one_tree)
            figures["one_file_incremental"] = one.metadata["object_tree"]
    finally:
        if not args.keep:
            force_rmtree(work)
    figures["reproducible"] = cold.metadata["image_sha256"] == warm.metadata["image_sha256"]
    _print(figures, profile.make_target)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def _plain_make(tree: Path, config: Path, profile: Any, objdir: Path, jobs: int) -> dict[str, Any]:
    """The baseline: the kernel's own make with the same .config, no ccache, nothing else."""
    objdir.mkdir()
    shutil.copyfile(config, objdir / ".config")
    env = {**os.environ, "CCACHE_DISABLE": "1"}
    make = ["make", "-C", str(tree), f"O={objdir}", f"ARCH={profile.arch}", f"CROSS_COMPILE={profile.cross_compile}"]
    log = objdir.parent / "plain-make.log"
    _must(runner.run([*make, "olddefconfig"], log=log, env=env), log)
    print("plain_make: building ...", flush=True)
    started, cpu = time.monotonic(), _children_cpu()
    _must(runner.run([*make, f"-j{jobs}", profile.make_target], log=log, env=env), log)
    seconds = time.monotonic() - started
    print(f"plain_make: {seconds:.1f} s", flush=True)
    same = (objdir / ".config").read_bytes() == config.read_bytes()
    return {"seconds": round(seconds, 1), "cpu_s": round(_children_cpu() - cpu, 1),
            "load": round(os.getloadavg()[0], 1), "same_config": same}


def _children_cpu() -> float:
    """CPU seconds (user + system) of every finished child so far: unlike wall time, barely moved by
    other work on the host."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _must(proc: subprocess.CompletedProcess[str], log: Path) -> None:
    if proc.returncode != 0:
        raise SystemExit(f"bench build: {proc.args[-1]} failed (exit {proc.returncode}); see {log}")


def _print(figures: dict[str, Any], make_target: str) -> None:
    base, base_cpu = figures["plain_make"]["seconds"], figures["plain_make"]["cpu_s"]
    print(f"\nbuild benchmark: {figures['kernel']} for {figures['target']}, make -j{figures['jobs']} {make_target}, "
          f"one .config (plain make saw the same: {figures['plain_make']['same_config']})")
    rows = [("plain make, no ccache", "plain_make"), ("crlab cold (empty ccache, no objects)", "crlab_cold"),
            ("crlab warm ccache (no objects)", "crlab_warm"),
            (f"crlab after changing {CHANGED_FILE}", "crlab_one_file")]
    for label, name in rows:
        row = figures[name]
        extra = ""
        if "make_s" in row:
            stats = row.get("ccache") or {}
            hits = stats.get("direct_cache_hit", 0) + stats.get("preprocessed_cache_hit", 0)
            extra = f"  (make {row['make_s']} s; ccache {hits} hits, {stats.get('cache_miss', 0)} misses)"
        print(f"  {label:40} {row['seconds']:7.1f} s  {row['seconds'] / base:5.2f} x plain   "
              f"cpu {row['cpu_s']:7.1f} s  {row['cpu_s'] / base_cpu:5.2f} x   load {row['load']:4.1f}{extra}")
    print("  (cpu: user+system seconds of the build's processes; load: 1-min load average at the end; other\n"
          "   work on the host inflates wall times, much less cpu times)")
    print(f"  patching the tree for the one-file change took {figures['patch_s']} s (not counted above)")
    print(f"  two clean builds of the same inputs (cold, warm) give the same image: {figures['reproducible']}")
