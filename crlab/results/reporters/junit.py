"""junit.xml for CI front ends: one <testsuite> per job, one <testcase> per test.

The testsuite name and every testcase's classname are the job id (kernel[>consumer]/target/
suite[@engine], made from the job's axes), the testcase name is the test's name: both stay the same
across runs, so CI can follow a test's history.  Every axis is also a <property>.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from crlab.model import FailureClass, JobResult, Status
from crlab.results.files import atomic_write
from crlab.results.reporters.text import first_line
from crlab.results.runinfo import RunInfo

FILENAME = "junit.xml"

# characters that XML 1.0 cannot carry at all (console output has plenty of them)
_XML_BAD = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_UNFINISHED = {Status.INCOMPLETE, Status.PENDING}


def _x(text: Any) -> str:
    return _XML_BAD.sub("\ufffd", str(text))


def _job_seconds(result: JobResult) -> float:
    if "total_s" in result.timings:
        return float(result.timings["total_s"])
    return float(sum(v for k, v in result.timings.items() if k in ("build_s", "boot_s", "run_s")))


class _Counts:
    def __init__(self) -> None:
        self.n = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}

    def add(self, other: _Counts) -> None:
        for key, count in other.n.items():
            self.n[key] += count

    def set_on(self, element: ET.Element) -> None:
        for key, count in self.n.items():
            element.set(key, str(count))


def _case(suite: ET.Element, counts: _Counts, name: str, status: Status, message: str,
          kind: str = "", seconds: float | None = None) -> None:
    element = ET.SubElement(suite, "testcase", classname=suite.get("name", ""), name=_x(name))
    if seconds is not None:
        element.set("time", f"{seconds:.3f}")
    counts.n["tests"] += 1
    if status is Status.FAIL:
        child = ET.SubElement(element, "failure", message=_x(first_line(message) or "failed"))
        child.set("type", _x(kind or "failure"))
        child.text = _x(message)
        counts.n["failures"] += 1
    elif status is Status.SKIP:
        ET.SubElement(element, "skipped", message=_x(message))
        counts.n["skipped"] += 1
    elif status in _UNFINISHED:
        child = ET.SubElement(element, "error", message=_x(first_line(message) or status.value))
        child.set("type", _x(kind or status.value))
        child.text = _x(message)
        counts.n["errors"] += 1


def _job_suite(root: ET.Element, result: JobResult) -> tuple[_Counts, float]:
    suite = ET.SubElement(root, "testsuite", name=_x(result.spec.job_id))
    props = ET.SubElement(suite, "properties")
    status = Status(result.status)
    failure = FailureClass(result.failure).value
    for key, text in (*result.spec.axes.items(), ("status", status.value), ("failure", failure),
                      ("stage", result.stage), ("attempts", str(result.attempts))):
        ET.SubElement(props, "property", name=key, value=_x(text))
    counts = _Counts()
    for test in result.tests:
        _case(suite, counts, test.name, Status(test.status), test.message, kind="test")

    # When no test carries the job's own verdict (a build or boot failure before any test ran, a
    # panic or timeout after the tests, an incomplete job) it becomes one more testcase named
    # after the stage reached, with a <failure> or an <error>.
    statuses = {Status(t.status) for t in result.tests}
    seconds = _job_seconds(result)
    job_message = result.message or failure or status.value
    job_case = result.stage or "job"
    if status is Status.FAIL and Status.FAIL not in statuses:
        _case(suite, counts, job_case, Status.FAIL, job_message, failure, seconds)
    elif status in _UNFINISHED and not statuses & _UNFINISHED:
        _case(suite, counts, job_case, status, job_message, failure or status.value, seconds)
    elif status is Status.SKIP and not result.tests:
        _case(suite, counts, job_case, Status.SKIP, result.message or "skipped")
    elif not result.tests:
        _case(suite, counts, job_case, status, result.message, seconds=seconds)
    counts.set_on(suite)
    suite.set("time", f"{seconds:.3f}")
    return counts, seconds


def junit_xml(run_id: str, results: list[JobResult]) -> str:
    root = ET.Element("testsuites", name=_x(f"crlab {run_id}"))
    totals = _Counts()
    total_time = 0.0
    for result in results:
        counts, seconds = _job_suite(root, result)
        totals.add(counts)
        total_time += seconds
    totals.set_on(root)
    root.set("time", f"{total_time:.3f}")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


class JunitReporter:
    name = "junit"

    def write(self, run_dir: Path, info: RunInfo, results: list[JobResult]) -> Path:
        path = run_dir / FILENAME
        atomic_write(path, junit_xml(info.run_id, results))
        return path
