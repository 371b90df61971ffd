#!/usr/bin/env python3
"""Soak: run a matrix (default configs/targets.yaml, -j 2) N times in a row and report what an
unattended lab would meet: infrastructure failures (INCOMPLETE jobs, which are bugs to fix, not
retries to add), flaky passes (a pass on a later attempt), test failures, and boot time per target
(median and spread, from every job's recorded boot_s).

    .venv/bin/python benchmarks/soak.py --iterations 20 [--config configs/targets.yaml] [--jobs 2]

Each iteration is a separate `harness.py run` process on the normal cache, with its results in a
directory of its own (default: a temporary one) so the soak never mixes with the user's runs.
Exit status 1 when any iteration had an infrastructure failure or a non-zero exit.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def one_iteration(config: str, jobs: int, results: Path) -> tuple[int, float, list[dict[str, object]]]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(REPO / "harness.py"), "run", config, "-j", str(jobs),
                           "--plain", "--no-install", "--results", str(results)],
                          cwd=REPO, capture_output=True, text=True)
    wall = time.monotonic() - started
    latest = results / "latest" / "results.json"
    # the command's own output, kept beside its run for whatever needs explaining later
    log = (latest.parent.resolve() if latest.exists() else results) / "harness-output.txt"
    log.write_text(f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    if proc.returncode != 0:
        sys.stderr.write(f"exit {proc.returncode}; output in {log}\n" + proc.stderr[-2000:])
    if not latest.exists():
        return proc.returncode, wall, []
    data = json.loads(latest.read_text())
    jobs_data: list[dict[str, object]] = data["jobs"]
    (results / "latest").unlink()  # the next iteration makes a new run; keep this one's files
    return proc.returncode, wall, jobs_data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", "-n", type=int, default=20)
    parser.add_argument("--config", default="configs/targets.yaml")
    parser.add_argument("--jobs", "-j", type=int, default=2)
    parser.add_argument("--results", help="results directory (default: a new temporary one)")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args(argv)
    results = Path(args.results or tempfile.mkdtemp(prefix="crlab-soak-"))

    boot: dict[str, list[float]] = defaultdict(list)
    infra: list[str] = []
    flaky: list[str] = []
    failed: list[str] = []
    exits: list[int] = []
    walls: list[float] = []
    job_count = 0
    for i in range(1, args.iterations + 1):
        code, wall, jobs = one_iteration(args.config, args.jobs, results)
        exits.append(code)
        walls.append(wall)
        job_count += len(jobs)
        for job in jobs:
            job_id = str(job["job_id"])
            status, failure = job["status"], job.get("failure")
            info = job.get("info") or {}
            assert isinstance(info, dict)
            if status == "incomplete":
                infra.append(f"iteration {i}: {job_id}: {failure}: {job.get('message')}")
            elif status == "fail":
                failed.append(f"iteration {i}: {job_id}: {failure}: {job.get('message')}")
            elif info.get("flaky"):
                flaky.append(f"iteration {i}: {job_id}")
            timings = job.get("timings") or {}
            assert isinstance(timings, dict)
            if "boot_s" in timings:
                target = str((job.get("key") or {}).get("target", "?"))  # type: ignore[union-attr]
                boot[target].append(float(timings["boot_s"]))
        print(f"iteration {i}/{args.iterations}: exit {code}, {len(jobs)} jobs, {wall:.1f} s", flush=True)
        if not jobs:
            infra.append(f"iteration {i}: no results.json (exit {code})")

    print(f"\n{args.iterations} iterations, {job_count} jobs, results in {results}")
    print(f"wall per iteration: median {statistics.median(walls):.1f} s, "
          f"min {min(walls):.1f} s, max {max(walls):.1f} s")
    print(f"infrastructure failures: {len(infra)}")
    for line in infra:
        print("  " + line)
    print(f"test failures: {len(failed)}")
    for line in failed:
        print("  " + line)
    print(f"flaky passes: {len(flaky)}")
    for line in flaky:
        print("  " + line)
    figures: dict[str, dict[str, float]] = {}
    print("boot to prompt per target (s): median, min-max, stdev, samples")
    for target in sorted(boot):
        values = boot[target]
        figures[target] = {"median": statistics.median(values), "min": min(values), "max": max(values),
                           "stdev": statistics.pstdev(values), "samples": len(values)}
        print(f"  {target:8} {figures[target]['median']:.2f}  {min(values):.2f}-{max(values):.2f}"
              f"  {figures[target]['stdev']:.3f}  {len(values)}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "iterations": args.iterations, "jobs": job_count, "exit_codes": exits, "infra": infra,
            "failed": failed, "flaky": flaky, "boot": figures, "wall_s": walls}, indent=1) + "\n")
    return 1 if infra or any(exits) else 0


if __name__ == "__main__":
    sys.exit(main())
