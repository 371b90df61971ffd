"""Made tests/data/store-v1.sqlite with crlab at df51904 (schema version 1, before the result key).

Run from a checkout of that commit:  python make_store_v1.py OUT_DIR
"""

import sys
from pathlib import Path

from crlab.model import FailureClass, JobResult, JobSpec, Status, TestResult
from crlab.results import ResultStore

out = Path(sys.argv[1])
store = ResultStore(out)
host = {"hostname": "lab1", "cpus": 2, "qemu": "7.2.0"}

# run 1: everything passed
passing = [JobSpec("v6.1", "x86_64", "smoke"), JobSpec("v6.1", "i386", "smoke", transport="ssh")]
run = store.create_run(Path("configs/default.yaml"), "a" * 64, passing, host)
for spec in passing:
    run.record(JobResult(
        spec=spec, status=Status.PASS, stage="run", message="2 tests passed",
        tests=[TestResult("kernel release is the one just built", Status.PASS, "", 1),
               TestResult("ns_last_pid exists", Status.PASS, "", 2)],
        timings={"build_s": 250.5, "boot_s": 3.25, "run_s": 0.75, "total_s": 254.5},
        artifacts={"kernel": "../../cache/kernel/0123/bzImage"},
        info={"release": "6.1.112-crlab", "keys": {"kernel": "0123", "rootfs": "4567"}},
    ))
run.finish("complete")

# run 2: a failed test, a boot hang (incomplete), a job never run, a repeated test name
second = [JobSpec("v6.1", "x86_64", "smoke"), JobSpec("v6.1", "armv7", "smoke"),
          JobSpec("v6.1", "ppc64", "smoke"), JobSpec("v6.1", "x86_64", "repeat")]
run = store.create_run(Path("configs/nightly.yaml"), "b" * 64, second, host)
run.record(JobResult(
    spec=second[0], status=Status.FAIL, failure=FailureClass.TEST, stage="run",
    message="1 of 3 tests failed: 2 ns_last_pid exists",
    tests=[TestResult("kernel release is the one just built", Status.PASS, "", 1),
           TestResult("ns_last_pid exists", Status.FAIL, "missing or read-only <ns>", 2),
           TestResult("criu dump", Status.SKIP, "criu not built for this target", 3)],
    timings={"build_s": 12.0, "boot_s": 3.5, "run_s": 1.0},
    info={"release": "6.1.112-crlab"}, attempts=1,
))
run.record(JobResult(
    spec=second[1], status=Status.INCOMPLETE, failure=FailureClass.BOOT_HANG, stage="boot",
    message="no prompt within 300 s", timings={"build_s": 400.0, "boot_s": 300.0},
    artifacts={"console": "console.log"}, info={"qemu_cmd": "qemu-system-arm -M virt"}, attempts=2,
))
run.record(JobResult(
    spec=second[3], status=Status.PASS, stage="run",
    tests=[TestResult("same", Status.PASS, "", 1), TestResult("same", Status.PASS, "", 2)],
))
run.finish("incomplete")
