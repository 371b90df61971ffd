"""Kernel-stage failures through `harness.py run`, end to end: a patch that does not apply, a
requested Kconfig symbol that the configuration drops, and a compile error.  Each job must FAIL with
its own class and stage, the run must exit 1 and go on to the next job, the stage's log must be
copied into the job directory, and the message must name the patch and hunk, the symbol, or the
first compiler error line.

The compile error sits in kernel/bounds.c, which kbuild compiles in its prepare step, so the broken
build stops within a minute instead of compiling the kernel first."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crlab.paths import REPO_ROOT
from tests.conftest import require_qemu

pytestmark = [pytest.mark.boot, pytest.mark.slow]

DATA = Path(__file__).parent / "data" / "kernel-faults"


def test_patch_symbol_and_compile_failures_fail_their_jobs_and_the_run_goes_on(tmp_path: Path) -> None:
    require_qemu("qemu-system-x86_64")
    for name in ("does-not-apply.patch", "compile-error.patch"):
        shutil.copy(DATA / name, tmp_path / name)
    # USB_STORAGE depends on USB and SCSI, which a tinyconfig kernel does not have: olddefconfig drops it
    (tmp_path / "dropped.config").write_text("CONFIG_USB_STORAGE=y\n")
    common = REPO_ROOT / "kernels" / "fragments" / "common.config"
    config = tmp_path / "kernel-faults.yaml"
    config.write_text(f"""kernels:
  - name: k-patch
    source: {{debian: linux-source-6.1}}
    patches: [{tmp_path / 'does-not-apply.patch'}]
    config: {{base: tinyconfig, fragments: [{common}]}}
  - name: k-symbol
    source: {{debian: linux-source-6.1}}
    config: {{base: tinyconfig, fragments: [{common}, {tmp_path / 'dropped.config'}]}}
  - name: k-compile
    source: {{debian: linux-source-6.1}}
    patches: [{tmp_path / 'compile-error.patch'}]
    config: {{base: tinyconfig, fragments: [{common}]}}
  - linux-6.1
targets: [x86_64]
suites: [smoke]
options: {{jobs: 1, retries: 1, timeouts: {{boot: 180}}}}
""")
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "harness.py"), "run", str(config), "--results",
                           str(results), "--no-install"], cwd=REPO_ROOT, text=True, capture_output=True,
                          env={**os.environ, "CRLAB_PLAIN": "1"}, timeout=3600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    run_dir = Path(os.path.realpath(results / "latest"))
    jobs = {job["key"]["kernel"]: job for job in json.loads((run_dir / "results.json").read_text())["jobs"]}

    patch = jobs["k-patch"]
    assert (patch["status"], patch["failure"], patch["stage"]) == ("fail", "patch", "patch"), patch
    assert "does-not-apply.patch" in patch["message"] and "init/version.c" in patch["message"], patch["message"]
    assert "hunk" in patch["message"].lower() or ":32" in patch["message"], patch["message"]

    symbol = jobs["k-symbol"]
    assert (symbol["status"], symbol["failure"], symbol["stage"]) == ("fail", "config", "configure"), symbol
    assert "CONFIG_USB_STORAGE=y" in symbol["message"] and "dropped.config" in symbol["message"], symbol["message"]

    compile_ = jobs["k-compile"]
    assert (compile_["status"], compile_["failure"], compile_["stage"]) == ("fail", "build", "build"), compile_
    assert "kernel/bounds.c" in compile_["message"], compile_["message"]
    assert "crlab_undeclared" in compile_["message"] and "undeclared" in compile_["message"], compile_["message"]

    for job in (patch, symbol, compile_):
        assert job["attempts"] == 1, f"a deterministic kernel-stage failure was retried: {job}"
        job_dir = run_dir / job["job_id"].replace("/", "__")
        logs = [p for p in job_dir.iterdir() if p.suffix == ".log" and p.stat().st_size > 0]
        assert logs, f"no stage log copied into {job_dir}: {sorted(p.name for p in job_dir.iterdir())}"
        assert set(p.name for p in logs) <= set(job["artifacts"]), job["artifacts"]
    # the failures did not stop the run: the good kernel's job after them passed
    assert jobs["linux-6.1"]["status"] == "pass", jobs["linux-6.1"]
