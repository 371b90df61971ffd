"""A run as KCIDB data (checkouts, builds, tests), validated with kcidb-io's own schema.

KCIDB (the kernelci.org common reporting database) takes JSON of one schema version; this export
targets the newest version the installed `kcidb-io` knows (`kcidb_io.schema.LATEST`) and checks
the document against it before writing, so what crlab hands over is exactly what KCIDB accepts.

Mapping: one checkout per kernel tree of the run; one build per (kernel, target) (architecture
= the target's name, compiler = the cross gcc the kernel was built with, duration = its build
time); per job one ``boot`` test and one test per leaf test at ``<suite>.<test>`` (KCIDB paths
are dot-separated [A-Za-z0-9_-] words: other characters become '_', the name as crlab knows it
is kept in ``comment``).  Status: pass -> PASS, fail -> FAIL, skip -> SKIP, incomplete -> ERROR
(crlab could not finish), pending -> MISS (never ran).  Logs are file:// URLs of the run's files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from crlab.model import FailureClass, JobResult, Status
from crlab.results.runinfo import RunInfo

ORIGIN = "crlab"
_STATUS = {Status.PASS: "PASS", Status.FAIL: "FAIL", Status.SKIP: "SKIP", Status.INCOMPLETE: "ERROR",
           Status.PENDING: "MISS"}
_BEFORE_BUILD = {FailureClass.PATCH, FailureClass.CONFIG}
_BOOT_FAIL = {FailureClass.BOOT_PANIC, FailureClass.BOOT_OOPS}
_BOOT_ERROR = {FailureClass.BOOT_HANG, FailureClass.QEMU_EXIT}
_STAGES_AFTER_BUILD = ("rootfs", "boot", "run", "collect")


def _word(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "_"


def _id(*parts: str) -> str:
    return f"{ORIGIN}:" + ":".join(parts)


def _url(run_dir: Path, result: JobResult, filename: str) -> str | None:
    path = run_dir / result.spec.dir_name / filename
    return path.resolve().as_uri() if path.is_file() else None


def _build_status(result: JobResult) -> str:
    failure = FailureClass(result.failure)
    if failure is FailureClass.BUILD:
        return "FAIL"
    if failure in _BEFORE_BUILD:
        return "MISS"  # the tree could not be made: the build never ran
    if "build_s" in result.timings or result.stage in _STAGES_AFTER_BUILD:
        return "PASS"
    return _STATUS[Status(result.status)] if Status(result.status) is not Status.FAIL else "ERROR"


def _boot_status(result: JobResult) -> str:
    failure = FailureClass(result.failure)
    if "boot_s" in result.timings:
        return "PASS"
    if failure in _BOOT_FAIL:
        return "FAIL"
    if failure in _BOOT_ERROR:
        return "ERROR"
    return "MISS"


def kcidb_data(info: RunInfo, results: list[JobResult], run_dir: Path) -> dict[str, Any]:
    """The run as one KCIDB document (not yet validated: see `validate`)."""
    from kcidb_io.schema import LATEST

    checkouts: dict[str, dict[str, Any]] = {}
    builds: dict[tuple[str, str], dict[str, Any]] = {}
    tests: list[dict[str, Any]] = []
    for result in results:
        spec = result.spec
        checkout_id = _id(info.run_id, _word(spec.kernel))
        checkout = checkouts.setdefault(spec.kernel, {
            "id": checkout_id, "origin": ORIGIN, "tree_name": _word(spec.kernel), "start_time": info.started,
            "valid": True, "comment": f"crlab kernel tree {spec.kernel}",
            "misc": {"run_id": info.run_id, "config_path": info.config_path, "config_digest": info.config_digest},
        })
        if FailureClass(result.failure) is FailureClass.PATCH:
            checkout["valid"] = False
        build_key = (spec.kernel, spec.target)
        build_id = _id(info.run_id, _word(spec.kernel), _word(spec.target))
        if build_key not in builds:
            build: dict[str, Any] = {
                "id": build_id, "checkout_id": checkout_id, "origin": ORIGIN,
                "architecture": _word(spec.target).lower(), "start_time": info.started,
                "status": _build_status(result),
                "misc": {"kernel_key": result.info.get("kernel_key"),
                         "kernel_release": result.info.get("kernel_release"),
                         "from_cache": result.info.get("kernel_cached")},
            }
            if result.info.get("toolchain"):
                build["compiler"] = str(result.info["toolchain"])
            if "build_s" in result.timings:
                build["duration"] = float(result.timings["build_s"])
            if log := _url(run_dir, result, "build.log"):
                build["log_url"] = log
            if config := _url(run_dir, result, "kernel.config"):
                build["config_url"] = config
                build["config_name"] = "crlab"
            builds[build_key] = build
        job_word = _word(spec.dir_name)
        environment = {"comment": f"QEMU (TCG) target {spec.target}, transport {spec.transport}"}
        console = _url(run_dir, result, "console.log")
        boot: dict[str, Any] = {
            "id": _id(info.run_id, job_word, "boot"), "build_id": build_id, "origin": ORIGIN, "path": "boot",
            "status": _boot_status(result), "environment": environment, "start_time": info.started,
            "misc": {"job_id": spec.job_id, "failure": FailureClass(result.failure).value},
        }
        if "boot_s" in result.timings:
            boot["duration"] = float(result.timings["boot_s"])
        if console:
            boot["log_url"] = console
        tests.append(boot)
        suite_log = _url(run_dir, result, "suite.log")
        for seq, test in enumerate(result.tests):
            entry: dict[str, Any] = {
                "id": _id(info.run_id, job_word, str(seq)), "build_id": build_id, "origin": ORIGIN,
                "path": f"{_word(spec.suite)}.{_word(test.name)}", "status": _STATUS[Status(test.status)],
                "comment": test.name, "environment": environment, "start_time": info.started,
                # KCIDB's "number" is a measured output, not a TAP test number
                "misc": {"job_id": spec.job_id, "tap_number": test.number, "message": test.message[:1000]},
            }
            if suite_log:
                entry["log_url"] = suite_log
            tests.append(entry)
    return {"version": {"major": LATEST.major, "minor": LATEST.minor},
            "checkouts": list(checkouts.values()), "builds": list(builds.values()), "tests": tests}


def validate(data: dict[str, Any]) -> str:
    """Validate against kcidb-io's schema of the document's version; returns "vMAJOR.MINOR".
    Raises jsonschema.ValidationError when it does not conform."""
    from kcidb_io.schema import LATEST

    LATEST.validate(data)
    return f"v{LATEST.major}.{LATEST.minor}"


__all__ = ["ORIGIN", "kcidb_data", "validate"]
