"""`harness.py bench cr`: what the C/R suites cost, measured in one run.

Runs a C/R matrix (default: configs/cr-bench.yaml, the cr suite on x86_64 and ppc64le) with the
images kept, then prints per job the suite's wall time in the guest and the median checkpoint and
restore times per test, and on the host the decode+normalise throughput on the 64 MiB test's
image, against a baseline measured on the same files in the same run: reading and hashing them
(the least any decoder must do).  Timings live here, never in the tests.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from crlab import imagediff
from crlab.engines import get_engine
from crlab.paths import CONFIGS_DIR, REPO_ROOT

BIG_TEST = "mem_anon_64m"


def _read_and_hash(image_dir: Path) -> float:
    started = time.perf_counter()
    for path in sorted(image_dir.iterdir()):
        if path.is_file():
            digest = hashlib.sha256()
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
    return time.perf_counter() - started


def _decode_and_normalise(engine_name: str, image_dir: Path) -> float:
    engine = get_engine(engine_name)
    started = time.perf_counter()
    imagediff.normalise(engine.decode(image_dir), engine.rules)
    return time.perf_counter() - started


def throughput(engine_name: str, image_dir: Path, rounds: int = 3) -> dict[str, float]:
    size = sum(p.stat().st_size for p in image_dir.iterdir() if p.is_file())
    decode = statistics.median(_decode_and_normalise(engine_name, image_dir) for _ in range(rounds))
    baseline = statistics.median(_read_and_hash(image_dir) for _ in range(rounds))
    mb = size / 1e6
    return {"image_mb": round(mb, 1), "decode_mb_s": round(mb / decode, 1), "hash_mb_s": round(mb / baseline, 1),
            "ratio_to_hash": round(decode / baseline, 2)}


def summarise(run_dir: Path) -> list[dict[str, Any]]:
    data = json.loads((run_dir / "results.json").read_text())
    rows = []
    for job in data["jobs"]:
        spec = job["spec"]
        cr = job["info"].get("cr", {})
        if not spec.get("engine") or spec.get("consumer") or not cr:
            continue
        row: dict[str, Any] = {"job": job["job_id"], "target": spec["target"], "kernel": spec["kernel"],
                               "status": job["status"], "suite_s": job["timings"].get("run_s"),
                               "boot_s": job["timings"].get("boot_s")}
        for what in ("checkpoint_s", "restore_s"):
            values = [t[what] for t in cr.values() if isinstance(t, dict) and what in t]
            row[f"median_{what}"] = round(statistics.median(values), 3) if values else None
        image = run_dir / spec_dir(spec) / "images" / BIG_TEST / "img1"
        if image.is_dir() and any(image.glob("pages-*.img")):
            row.update(throughput(spec["engine"], image))
        rows.append(row)
    return rows


def spec_dir(spec: dict[str, str]) -> str:
    parts = [spec["kernel"], spec["target"], spec["suite"]]
    if spec.get("engine"):
        parts.append(spec["engine"])
    if spec.get("consumer"):
        parts.append(f"to-{spec['consumer']}")
    return "__".join(parts)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="harness.py bench cr")
    parser.add_argument("--config", default=str(CONFIGS_DIR / "cr-bench.yaml"))
    parser.add_argument("--run-dir", help="summarise an existing run (made with CRLAB_KEEP_IMAGES=1)")
    args = parser.parse_args(argv)
    if args.run_dir:
        run_dir = Path(args.run_dir).resolve()
    else:
        results = Path(tempfile.mkdtemp(prefix="crlab-bench-cr-"))
        env = {**os.environ, "CRLAB_KEEP_IMAGES": "1", "CRLAB_PLAIN": "1"}
        proc = subprocess.run([sys.executable, str(REPO_ROOT / "harness.py"), "run", args.config, "--results",
                               str(results)], env=env, cwd=REPO_ROOT)
        if not (results / "latest").exists():
            print("the C/R run left no results", file=sys.stderr)
            return 2
        run_dir = (results / "latest").resolve()
        print(f"run exited {proc.returncode}; results in {run_dir}")
    rows = summarise(run_dir)
    header = (f"{'job':34s} {'suite s':>8s} {'ckpt med s':>10s} {'rst med s':>10s} {'image MB':>9s} "
              f"{'decode MB/s':>12s} {'hash MB/s':>10s} {'decode/hash':>11s}")
    print(header)
    for row in rows:
        print(f"{row['job']:34s} {row['suite_s'] or 0:8.1f} {row['median_checkpoint_s'] or 0:10.3f} "
              f"{row['median_restore_s'] or 0:10.3f} {row.get('image_mb', 0):9.1f} {row.get('decode_mb_s', 0):12.1f} "
              f"{row.get('hash_mb_s', 0):10.1f} {row.get('ratio_to_hash', 0):11.2f}")
    out = run_dir / "bench-cr.json"
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"written to {out}")
    return 0
