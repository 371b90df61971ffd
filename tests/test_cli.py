"""The command line without guests: config errors, plan, doctor."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from crlab.paths import REPO_ROOT

HARNESS = [sys.executable, str(REPO_ROOT / "harness.py")]


def harness(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRLAB_PLAIN": "1"}
    return subprocess.run([*HARNESS, *args], text=True, capture_output=True, timeout=300, env=env, cwd=REPO_ROOT)


@pytest.mark.parametrize("bad", ["unknown_top_key.yaml", "bad_yaml_syntax.yaml"])
def test_bad_config_exits_2_naming_file_and_line(bad: str) -> None:
    path = REPO_ROOT / "tests" / "data" / "bad" / bad
    expect = path.read_text().splitlines()[0]
    line = expect.split(":")[1].strip()
    proc = harness("run", str(path))
    assert proc.returncode == 2
    assert f"{bad}:{line}:" in proc.stderr, proc.stderr


def test_plan_lists_jobs_and_builds_nothing() -> None:
    proc = harness("plan", "configs/targets.yaml")
    assert proc.returncode == 0, proc.stderr
    assert "10 job(s)" in proc.stdout
    for target in ("x86_64", "i386", "ppc64", "ppc64le", "armv7"):
        assert f"linux-6.1/{target}/smoke-ssh" in proc.stdout


def test_doctor_reports_on_the_targets_matrix() -> None:
    proc = harness("doctor", "configs/targets.yaml")
    assert proc.returncode in (0, 2)
    assert "present:" in proc.stdout
    if proc.returncode == 2:
        assert "apt-get" in proc.stdout and "missing:" in proc.stdout
