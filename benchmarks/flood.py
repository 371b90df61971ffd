#!/usr/bin/env python3
"""Console flood: does crlab's memory stay bounded when a guest prints hundreds of megabytes?

Runs the test-only `flood` suite (tests/data/faults/suites/flood: `yes | head -c N MB` on the
serial console of a real x86_64 guest, then one passing TAP line) once per size, each in a fresh
Python process with crlab's default caps (a command's output: first and last OUTPUT_KEEP characters;
console.log: CONSOLE_LOG_CAP bytes), and reports per size the wall time, the harness process's peak
RSS, QEMU's peak RSS, and the sizes of the kept logs.  Bounded means the peak RSS of the largest
flood is about that of the smallest one: the ratio is printed.

    .venv/bin/python benchmarks/flood.py [--sizes 10 200]

A TCG serial console moves roughly 0.25 MB/s, so 200 MB takes about a quarter of an hour.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from crlab import paths
import crlab.orchestrator as orchestrator
from crlab.config import load_config
from crlab.guest.lifecycle import Guest
from crlab.orchestrator import Orchestrator
from crlab.progress import PlainProgress
from crlab.results import ResultStore

size_mb, work = int(sys.argv[2]), Path(sys.argv[3])
suites = work / "suites"
suites.mkdir()
(suites / "flood").symlink_to(Path(sys.argv[1]) / "tests" / "data" / "faults" / "suites" / "flood")
paths.SUITES_DIR = suites

class FloodJob(orchestrator.Job):
    def guest_env(self, guest: Guest) -> dict[str, str]:
        return {**super().guest_env(guest), "CRLAB_FLOOD_MB": str(size_mb)}

orchestrator.Job = FloodJob
config = work / "flood.yaml"
config.write_text("kernels: [linux-6.1]\ntargets: [x86_64]\nsuites: [flood]\n"
                  "options: {jobs: 1, retries: 0, timeouts: {run: 7200}}\n")
cfg = load_config(config)
run = ResultStore(work / "results").create_run(config, cfg.digest, cfg.jobs, {})
started = time.monotonic()
[result] = Orchestrator(cfg, run, PlainProgress()).execute(cfg.jobs)
job_dir = run.job_dir(cfg.jobs[0])
print(json.dumps({
    "size_mb": size_mb, "status": result.status.value, "message": result.message,
    "wall_s": round(time.monotonic() - started, 1),
    "harness_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    "qemu_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    "suite_log_mb": round((job_dir / "suite.log").stat().st_size / 1e6, 2),
    "console_log_mb": round((job_dir / "console.log").stat().st_size / 1e6, 2),
    "tests": [(t.name, t.status.value) for t in result.tests],
}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 200], help="flood sizes in MB")
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="crlab-flood-") as work:
            proc = subprocess.run([sys.executable, "-c", CHILD, str(REPO), str(size), work],
                                  cwd=REPO, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
                return 1
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"{'MB':>5} {'status':>7} {'wall s':>8} {'crlab RSS MB':>13} {'QEMU RSS MB':>12} "
          f"{'suite.log MB':>13} {'console.log MB':>15}")
    for row in rows:
        print(f"{row['size_mb']:>5} {row['status']:>7} {row['wall_s']:>8} {row['harness_peak_rss_mb']:>13} "
              f"{row['qemu_peak_rss_mb']:>12} {row['suite_log_mb']:>13} {row['console_log_mb']:>15}")
    if len(rows) > 1:
        ratio = rows[-1]["harness_peak_rss_mb"] / rows[0]["harness_peak_rss_mb"]
        print(f"crlab peak RSS, {rows[-1]['size_mb']} MB flood / {rows[0]['size_mb']} MB flood: {ratio:.2f}")
    return 0 if all(row["status"] == "pass" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
