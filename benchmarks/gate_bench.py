#!/usr/bin/env python3
"""The patch gate's incremental builds against one cold build of the same target, in one run.

    .venv/bin/python benchmarks/gate_bench.py [--targets x86_64 armv7] [--series DIR] [--json FILE]

1. `harness.py gate` over a 5-patch series (patches/examples/compat-typo/: one file per patch) on
   configs/gate.yaml's linux-6.1, whose base build is warm (the kernel configs/targets.yaml builds):
   per patch and target, the step's kernel build time (configure + make, from its metadata), and
   whether the kept object tree made it incremental.
2. Per target, one cold build of the base kernel: an empty cache root and an empty ccache dir in a
   scratch directory (the warm cache is not touched; only the unpacked source is shared).
3. Ratio: per-patch build time / cold build time.  Wall-clock seconds, on a shared host: the load
   average at each build is printed with it.

A step whose kernel is already in the cache (the same series built before) is shown as cached with
the figures of the build that made it: run on a cache without those steps for fresh figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from crlab import kernel as kstages  # noqa: E402
from crlab.cache import Cache  # noqa: E402
from crlab.config import load_config  # noqa: E402
from crlab.paths import FRAGMENTS_DIR  # noqa: E402
from crlab.progress import make_progress  # noqa: E402
from crlab.workflows.gate import read_series, run_gate  # noqa: E402


def cold_build(cfg: Any, kernel_name: str, target: str) -> dict[str, Any]:
    main_cache = Cache()
    kernel, profile = cfg.kernels[kernel_name], cfg.targets[target]
    work = Path(tempfile.mkdtemp(prefix="gate-bench-cold-", dir=main_cache.root))  # same fs as the source
    try:
        log = work / "prepare.log"
        source_key, tree = kstages.prepare_source(kernel.source, main_cache, log)
        tree_key, tree = kstages.apply_patches(source_key, tree, kernel.patches, main_cache, log)
        cold_cache = Cache(work / "cache", ccache_dir=work / "ccache")
        (work / "logs").mkdir()
        started = time.monotonic()
        built = kstages.build_kernel(kernel, profile, tree_key, tree, cold_cache, FRAGMENTS_DIR, work / "logs",
                                     lambda _stage: None)
        wall = time.monotonic() - started
        meta = built.metadata
        return {"configure_s": meta["configure_s"], "make_s": meta["build_s"],
                "build_s": round(float(meta["configure_s"]) + float(meta["build_s"]), 1),  # type: ignore[arg-type]
                "wall_s": round(wall, 1), "ccache": meta.get("ccache"), "load": round(os.getloadavg()[0], 1)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", nargs="+", default=["x86_64", "armv7"])
    parser.add_argument("--series", default=str(REPO / "patches/examples/compat-typo/series"))
    parser.add_argument("--config", default=str(REPO / "configs/gate.yaml"))
    parser.add_argument("--kernel", default="linux-6.1")
    parser.add_argument("--results", default=None, help="results directory of the gate's steps")
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    series = read_series(Path(args.series))
    results = Path(args.results or tempfile.mkdtemp(prefix="gate-bench-results-"))

    report = run_gate(cfg, args.kernel, series, args.targets, whole=False,
                      progress_factory=lambda: make_progress(plain=True), results_dir=results,
                      log=lambda m: print(m, flush=True))
    figures: dict[str, Any] = {"series": str(args.series), "kernel": args.kernel, "targets": {},
                               "gate_exit": report.exit_code}
    for target in report.targets:
        steps = []
        for step in report.steps:
            ts = step.targets[target]
            meta_path = next((d / "kernel-metadata.json" for d in ts.job_dirs.values()
                              if (d / "kernel-metadata.json").exists()), None)
            meta = json.loads(meta_path.read_text()) if meta_path else {}
            object_tree = meta.get("object_tree") or {}
            steps.append({"step": step.index, "patch": step.patch.name if step.patch else None,
                          "cached": ts.kernel_cached, "built": ts.built,
                          "build_s": round(float(meta.get("configure_s", 0)) + float(meta.get("build_s", 0)), 1)
                          if meta else None,
                          "incremental": object_tree.get("incremental"),
                          "source_files_changed": object_tree.get("source_files_changed"),
                          "ccache": meta.get("ccache")})
        figures["targets"][target] = {"steps": steps}
    for target in report.targets:
        print(f"cold build of {args.kernel} for {target} (empty cache root and ccache) ...", flush=True)
        cold = cold_build(cfg, args.kernel, target)
        entry = figures["targets"][target]
        entry["cold"] = cold
        patch_steps = [s for s in entry["steps"] if s["step"] > 0 and s["build_s"]]
        for s in patch_steps:
            s["ratio"] = round(s["build_s"] / cold["build_s"], 3)
        entry["median_ratio"] = statistics.median(s["ratio"] for s in patch_steps) if patch_steps else None

    print()
    print(f"gate over {len(series)} patches of {args.series}, base {args.kernel} (warm)")
    for target, entry in figures["targets"].items():
        cold = entry["cold"]
        print(f"{target}: cold build {cold['build_s']:.1f} s (configure {cold['configure_s']:.1f} s, "
              f"load {cold['load']})")
        for s in entry["steps"]:
            if s["step"] == 0:
                print(f"  base      {'cached' if s['cached'] else 'built'}")
                continue
            how = "cached (built earlier)" if s["cached"] else "built now"
            inc = "incremental" if s["incremental"] else "full"
            print(f"  patch {s['step']}/{len(series)} {s['build_s']:6.1f} s  ratio {s.get('ratio', 0):.3f}  "
                  f"{inc}, {s['source_files_changed']} file(s) changed, {how}")
        if entry["median_ratio"] is not None:
            print(f"  median per-patch / cold: {entry['median_ratio']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
