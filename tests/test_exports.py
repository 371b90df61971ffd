"""Machine-readable exports: results.json against its JSON Schema, KCIDB against kcidb-io's schema,
and an exported LAVA job run by Debian's lava-run booting crlab's real x86_64 kernel."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml

from crlab.config import load_config
from crlab.exports.kcidb import kcidb_data
from crlab.exports.kcidb import validate as validate_kcidb
from crlab.exports.lava import LAVA_RUN, case_id, export_lava, parse_results, run_local
from crlab.results.reporters.json import SCHEMA_FILE, SCHEMA_VERSION
from tests.test_compare import GOLDEN, golden_store


def _schema() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_results_json_of_real_runs_matches_its_schema(tmp_path: Path) -> None:
    store, runs = golden_store(tmp_path)
    validator = _schema()
    for run in runs:
        run.write_reports()
        data = json.loads((run.dir / "results.json").read_text())
        assert data["schema_version"] == SCHEMA_VERSION
        validator.validate(data)
    # the schema is not a rubber stamp: a wrong status, a missing key, an unknown axis are refused
    bad_status = copy.deepcopy(data)
    bad_status["jobs"][0]["tests"][0]["status"] = "passed"
    missing = copy.deepcopy(data)
    del missing["jobs"][0]["key"]
    odd_axis = copy.deepcopy(data)
    odd_axis["jobs"][0]["key"]["board"] = "x"
    for broken in (bad_status, missing, odd_axis):
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(broken)


def test_kcidb_export_validates_against_kcidb_io(tmp_path: Path) -> None:
    store, runs = golden_store(tmp_path)
    run = runs[1]
    data = kcidb_data(run.info(), run.results(), run.dir)
    assert validate_kcidb(data).startswith("v")
    assert len(data["checkouts"]) == 1 and len(data["builds"]) == 5
    assert sum(t["path"] == "boot" and t["status"] == "PASS" for t in data["tests"]) == 5
    assert sum(t["path"].startswith("smoke.") and t["status"] == "PASS" for t in data["tests"]) == 40
    broken = copy.deepcopy(data)
    broken["tests"][0]["status"] = "BROKEN"
    with pytest.raises(jsonschema.ValidationError):
        validate_kcidb(broken)


def test_lava_results_parsing_of_a_captured_log() -> None:
    """lava-run's log from a real run (tests/data/nightly/lava-run.log): results lines only."""
    cases, job = parse_results((GOLDEN / "lava-run.log").read_text(), "smoke")
    assert job == "pass"
    assert len(cases) == 8 and set(cases.values()) == {"pass"}
    assert "machine_is_x86_64" in cases


@pytest.mark.boot
def test_exported_lava_job_runs_in_lava_run(tmp_path: Path) -> None:
    """One exported cell (linux-6.1/x86_64/smoke) through Debian's lava-run: LAVA boots crlab's
    kernel and initramfs under QEMU, runs the suite, and its per-test results come back."""
    if not (Path(LAVA_RUN).is_file() and shutil.which("qemu-system-x86_64")) or os.geteuid() != 0:
        why = "lava-run needs root and Debian's lava-dispatcher (harness.py selftest installs it)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    config = tmp_path / "one-cell.yaml"
    config.write_text("kernels: [linux-6.1]\ntargets: [x86_64]\nsuites: [smoke]\n")
    cfg = load_config(config)
    export = export_lava(cfg, tmp_path / "lava", log=lambda _m: None)
    assert [job.spec.job_id for job in export.jobs] == ["linux-6.1/x86_64/smoke"]
    job = export.jobs[0]
    definition = yaml.safe_load(job.path.read_text())
    assert definition["device_type"] == "qemu"
    assert definition["actions"][0]["deploy"]["images"]["kernel"]["url"] == job.kernel.resolve().as_uri()
    assert export.dispatcher is not None
    result = run_local(job, job_id=os.getpid() % 100000 + 700000, dispatcher=export.dispatcher,
                       output_dir=tmp_path / "out")
    assert result.exit_code == 0, result.log[-3000:]
    assert result.job_result == "pass"
    names = [case_id(line) for line in _smoke_test_names()]
    assert sorted(result.cases) == sorted(names), result.cases
    assert set(result.cases.values()) == {"pass"}


def _smoke_test_names() -> list[str]:
    """The smoke suite's test names as crlab recorded them in a real run (golden data)."""
    data = json.loads((GOLDEN / "run1.results.json").read_text())
    job = next(j for j in data["jobs"] if j["job_id"] == "linux-6.1/x86_64/smoke")
    return [t["name"] for t in job["tests"]]
