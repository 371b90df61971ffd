"""The C/R suites for real: the catalogue's programs in guests under CRIU (x86_64) and without C/R
(i386, ppc64, armv7), a C -> R -> C image round-trip per test, and a checkpoint on linux-6.1
restored on linux-6.12.  Every test must meet the expectation the catalogue declares for it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
import yaml

from crlab.paths import REPO_ROOT, SUITES_DIR
from tests.conftest import require_qemu

# one worker runs them all: the module fixture is one C/R run, not one per xdist worker
pytestmark = [pytest.mark.boot, pytest.mark.slow, pytest.mark.xdist_group("cr-suite")]

CONFIG = REPO_ROOT / "tests" / "data" / "cr" / "ci.yaml"
CATALOGUE = {t["name"]: t for t in yaml.safe_load((SUITES_DIR / "cr" / "catalogue.yaml").read_text())["tests"]}


@pytest.fixture(scope="module")
def cr_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    require_qemu("qemu-system-x86_64")
    results = tmp_path_factory.mktemp("cr-results")
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "harness.py"), "run", str(CONFIG), "--results",
                           str(results)], text=True, capture_output=True, timeout=5400,
                          env={**os.environ, "CRLAB_PLAIN": "1"}, cwd=REPO_ROOT)
    data = json.loads((results / "latest" / "results.json").read_text())
    jobs = {job["job_id"]: job for job in data["jobs"]}
    jobs["__run__"] = {"exit": proc.returncode, "stdout": proc.stdout[-4000:], "compat": data["compat"],
                       "run_dir": str((results / "latest").resolve())}
    return jobs


def _tests(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in job["tests"]}


def test_every_program_meets_its_criu_expectation_and_round_trips(cr_run: dict[str, dict[str, Any]]) -> None:
    job = cr_run["linux-6.1/x86_64/cr@criu"]
    tests = _tests(job)
    assert job["info"]["engine_version"].startswith("3.17"), job["info"]
    for name, entry in CATALOGUE.items():
        expect = entry["expect"]["criu"]["result"]
        result = tests[name]
        if expect == "pass":
            assert result["status"] == "pass", (name, result["message"])
            roundtrip = tests[f"{name}/roundtrip"]
            assert roundtrip["status"] == "pass", (name, roundtrip["message"])
            facts = job["info"]["cr"][name]
            assert facts["checkpoint_s"] > 0 and facts["restore_s"] > 0 and facts["image_bytes"] > 0
        elif expect == "checkpoint-fails":
            assert result["status"] == "pass" and "refused as expected" in result["message"], (name, result)
        elif expect == "restore-loses-state":
            assert result["status"] == "skip" and "expected failure, reproduced" in result["message"], (name, result)
        else:
            assert result["status"] == "pass" and tests[f"{name}/cr"]["status"] == "skip"
    # the 64 MiB test really carried 64 MiB
    assert job["info"]["cr"]["mem_anon_64m"]["image_bytes"] > 64 << 20
    assert job["status"] == "pass", job["message"]


def test_a_linux_6_1_checkpoint_restores_on_linux_6_12(cr_run: dict[str, dict[str, Any]]) -> None:
    job = cr_run["linux-6.1>linux-6.12/x86_64/cr-cross@criu"]
    rows = {row["test"]: row for row in cr_run["__run__"]["compat"]}
    runnable = [n for n, e in CATALOGUE.items() if e["expect"]["criu"]["result"] == "pass"]
    assert set(runnable) <= set(rows)
    for name in runnable:
        row = rows[name]
        assert (row["producer"], row["consumer"], row["target"], row["engine"]) == (
            "linux-6.1", "linux-6.12", "x86_64", "criu")
        assert row["outcome"] in ("compatible", "expected-incompatible"), (name, row)
    assert job["status"] == "pass", job["message"]
    assert "C/R compatibility" in cr_run["__run__"]["stdout"]


@pytest.mark.parametrize("target", ["i386", "ppc64", "armv7"])
def test_every_program_passes_without_cr_where_criu_has_no_port(cr_run: dict[str, dict[str, Any]],
                                                               target: str) -> None:
    job = cr_run[f"linux-6.1/{target}/cr@criu"]
    tests = _tests(job)
    for name, entry in CATALOGUE.items():
        if target not in entry.get("arches", [target]):
            assert tests[name]["status"] == "skip" and f"not {target}" in tests[name]["message"], tests[name]
            continue
        assert tests[name]["status"] == "pass", (target, name, tests[name]["message"])
        skipped = tests[f"{name}/cr"]
        assert skipped["status"] == "skip" and "CRIU has no port" in skipped["message"]
    assert job["status"] == "pass", job["message"]
