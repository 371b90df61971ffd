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


BAD_INPUTS = {
    "run-missing-config": ["run", "no/such/config.yaml"],
    "run-resume-unknown-run": ["run", "--resume", "20990101-000000-none", "--results", "{tmp}"],
    "plan-missing-config": ["plan", "no/such/config.yaml"],
    "doctor-missing-config": ["doctor", "no/such/config.yaml"],
    "shell-unknown-kernel": ["shell", "linux-0.01", "x86_64"],
    "shell-unknown-target": ["shell", "linux-6.1", "vax"],
    "shell-missing-config": ["shell", "linux-6.1", "x86_64", "--config", "no/such/config.yaml"],
    "bench-unknown-target": ["bench", "boot", "--targets", "vax"],
    "bench-unknown-benchmark": ["bench", "everything"],
    "report-unknown-run": ["report", "20990101-000000-none", "--results", "{tmp}"],
    "report-no-runs": ["report", "--results", "{tmp}"],
    "selftest-bad-pytest-option": ["selftest", "--no-such-pytest-option"],
    "unknown-subcommand": ["frobnicate"],
    "run-bad-transport": ["run", "--transport", "carrier-pigeon"],
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_with_a_message_and_no_traceback(case: str, tmp_path: object) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in BAD_INPUTS[case]]
    proc = harness(*args)
    assert proc.returncode == 2, (case, proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    said = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("crlab:")]
    assert said, f"{case}: nothing on stderr says what is wrong"
    assert len(said) <= 3, f"{case}: a message, not a dump: {said}"
