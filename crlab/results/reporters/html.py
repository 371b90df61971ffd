"""report.html: a self-contained page rendered from templates/report.html.j2 (autoescaped).

The grid has a row per kernel (and consumer kernel, for cross-kernel round-trips), a column per
target; each cell lists that kernel's suites (@engine) on that target, coloured by outcome and
linking to the job's logs and artefacts.  A table of every job follows.
"""

from __future__ import annotations

import functools
import json
import os
import posixpath
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2

from crlab.model import FailureClass, JobResult, Status
from crlab.results import verdict
from crlab.results.compat import cell_text, compat_cells, compat_rows
from crlab.results.files import atomic_write
from crlab.results.reporters.text import clean, seconds
from crlab.results.runinfo import RunInfo

FILENAME = "report.html"
TEMPLATE = "report.html.j2"
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

# The job files linked when they exist, besides the job's own artifacts.
JOB_FILES = ("console.log", "build.log", "suite.log", "result.json")


@dataclass
class JobView:
    """One job as the template shows it; strings as recorded (the template escapes them)."""

    result: JobResult
    anchor: str
    label: str  # suite[@engine], plus the transport when two jobs of a cell share that
    status: str
    failure: str
    stage: str
    flaky: bool
    times: str  # "build 300s · boot 3.5s"
    links: list[tuple[str, str]]  # (label, href)
    tests: str  # "2 pass, 1 skip"
    notable: list[Any] = field(default_factory=list)  # tests that did not pass
    change: str = ""  # the job's most important category against the previous run (comparison.json)


@dataclass
class GridRow:
    kernel: str
    consumer: str
    cells: list[tuple[str, list[JobView]]]  # per target: (css class = worst status, jobs)


def _href(job_dir_name: str, path: str) -> str:
    if os.path.isabs(path):
        return Path(path).as_uri()
    return quote(posixpath.normpath(f"{job_dir_name}/{path}"))


def _job_links(result: JobResult, run_dir: Path) -> list[tuple[str, str]]:
    """(label, href) for the job's artifacts and the standard files present in its directory."""
    name = result.spec.dir_name
    links: list[tuple[str, str]] = []
    seen: set[str] = set()
    for label, path in result.artifacts.items():
        links.append((label, _href(name, str(path))))
        seen.add(os.path.normpath(str(path)))
    for filename in JOB_FILES:
        if filename not in seen and (run_dir / name / filename).is_file():
            links.append((filename.rsplit(".", 1)[0], _href(name, filename)))
    return links


def _view(result: JobResult, run_dir: Path) -> JobView:
    spec = result.spec
    times = [f"{label} {seconds(result.timings[key])}s"
             for label, key in (("build", "build_s"), ("boot", "boot_s")) if key in result.timings]
    tests = verdict.tests_by_status(result)
    return JobView(
        result=result,
        anchor="job-" + re.sub(r"[^A-Za-z0-9_.-]", "-", spec.dir_name),
        label=f"{spec.suite}@{spec.engine}" if spec.engine else spec.suite,
        status=Status(result.status).value,
        failure=FailureClass(result.failure).value,
        stage=result.stage,
        flaky=verdict.is_flaky(result),
        times=" · ".join(times),
        links=_job_links(result, run_dir),
        tests=", ".join(f"{n} {s}" for s, n in tests.items()) or "-",
        notable=[t for t in result.tests if Status(t.status) is not Status.PASS],
    )


def _grid(views: list[JobView]) -> tuple[list[str], list[GridRow]]:
    targets = list(dict.fromkeys(v.result.spec.target for v in views))
    rows = list(dict.fromkeys((v.result.spec.kernel, v.result.spec.consumer) for v in views))
    cells: dict[tuple[str, str, str], list[JobView]] = {}
    for view in views:
        spec = view.result.spec
        cells.setdefault((spec.kernel, spec.consumer, spec.target), []).append(view)
    grid = []
    for kernel, consumer in rows:
        row = GridRow(kernel, consumer, [])
        for target in targets:
            jobs = cells.get((kernel, consumer, target), [])
            labels = [v.label for v in jobs]
            for view in jobs:
                if labels.count(view.label) > 1:
                    view.label += f" ({view.result.spec.transport})"
            worst = verdict.worst(v.result for v in jobs)
            row.cells.append((worst.value if worst else "none", jobs))
        grid.append(row)
    return targets, grid


def _finalize(value: Any) -> Any:
    """Every {{ value }} passes here before autoescaping: no terminal escapes or control characters."""
    return "" if value is None else clean(value)


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        finalize=_finalize,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


# Written by `harness.py nightly` next to the report (crlab.workflows.nightly); shown when present.
COMPARISON_FILE = "comparison.json"
PLOTS = (("build_s", "Kernel build time per target"), ("boot_s", "Boot time per target"))
_CHANGE_ORDER = ("regression", "known", "still-failing", "flaky", "fixed", "incomplete", "no-baseline", "new",
                 "removed")


def _comparison(run_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((run_dir / COMPARISON_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("changes"), list) else None


def _mark_changes(views: list[JobView], comparison: dict[str, Any] | None) -> None:
    if not comparison:
        return
    by_job: dict[str, set[str]] = {}
    for change in comparison["changes"]:
        by_job.setdefault(str(change.get("job_id")), set()).add(str(change.get("category")))
    for view in views:
        found = by_job.get(view.result.spec.job_id, set())
        view.change = next((c for c in _CHANGE_ORDER if c in found and c not in ("new", "removed")), "")


def html_report(info: RunInfo, results: list[JobResult], run_dir: Path) -> str:
    views = [_view(r, run_dir) for r in results]
    comparison = _comparison(run_dir)
    _mark_changes(views, comparison)
    plots = [(title, f"plots/{measure}.svg") for measure, title in PLOTS
             if (run_dir / "plots" / f"{measure}.svg").is_file()]
    counts = verdict.status_counts(results)
    targets, grid = _grid(views)
    host = ", ".join(f"{k}={v}" for k, v in sorted(info.host.items()))
    meta = [
        ("status", info.status), ("started", info.started), ("finished", info.finished or "-"),
        ("config", f"{info.config_path} ({info.config_digest[:12]})"), ("host", host or "-"),
        ("jobs", verdict.verdict_line(results)),
    ]
    return _environment().get_template(TEMPLATE).render(
        info=info, meta=meta, targets=targets, grid=grid, jobs=views, secs=seconds,
        compat=[(key, cell_text(counts), "pass" if set(counts) <= {"compatible", "expected-incompatible"}
                 else "fail") for key, counts in sorted(compat_cells(compat_rows(results)).items())],
        compat_rows=compat_rows(results),
        written=datetime.now().astimezone().isoformat(timespec="seconds"),
        has_config="config.yaml" if (run_dir / "config.yaml").is_file() else "",
        comparison=comparison, change_order=_CHANGE_ORDER, plots=plots,
        counts=[(status, n) for status, n in counts.items() if n],
    )


class HtmlReporter:
    name = "html"

    def write(self, run_dir: Path, info: RunInfo, results: list[JobResult]) -> Path:
        path = run_dir / FILENAME
        atomic_write(path, html_report(info, results, run_dir))
        return path
