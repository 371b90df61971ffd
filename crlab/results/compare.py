"""Compare two runs of a matrix, cell by cell and test by test: what regressed, what got fixed.

`compare(previous, current)` is the one comparison crlab has; `harness.py nightly` and the patch
gate both use it.  It is pure: it reads job results (from the store, or results.json) and returns a
`Comparison`; it runs nothing and writes nothing.

Units compared.  A job is identified by its result key (JobSpec.key), so the same cell matches
across runs whatever order the jobs ran in.  Inside a job every leaf test (its TAP path) is a unit
of its own, keyed by (job key, test name); the job itself is the unit (job key, "") and stands for
what happened before the tests could speak: build, boot, panic, timeout.  A job whose only failure
is that some of its tests failed (FailureClass.TEST with a failing test) counts as *ran* at job
level: its failures are the failing tests, so one broken test is one regression, not two.

Outcomes.  Each unit's current outcome is put in exactly one category (`Category`):

* ``regression``   pass before, fail now (the only category that makes a run "regressed")
* ``fixed``        fail before, pass now
* ``still-failing`` fail before and now
* ``known``        fails now and a known issue (crlab.results.known) covers it; never a regression
* ``flaky``        the job passed, but only on a later attempt (the store records attempts)
* ``new``          no such unit before (a new cell, a new test, or the job did not get that far)
* ``removed``      there before, gone now
* ``incomplete``   the harness could not finish it now (INCOMPLETE/PENDING); never a pass or a
  failure.  When the *previous* outcome was incomplete there is no baseline: a failure now is
  ``new``-like and counted as ``no-baseline``.
* ``unchanged``    everything else (pass->pass, skip->skip, pass->skip ...): counted, not listed

A previous run may be None (the first run of a matrix): every unit is then ``new``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

from crlab.model import EXIT_FAIL, EXIT_INCOMPLETE, EXIT_PASS, FailureClass, JobResult, JobSpec, Status
from crlab.results import verdict


class Category(enum.StrEnum):
    REGRESSION = "regression"
    FIXED = "fixed"
    STILL_FAILING = "still-failing"
    KNOWN = "known"
    FLAKY = "flaky"
    NEW = "new"
    REMOVED = "removed"
    INCOMPLETE = "incomplete"
    NO_BASELINE = "no-baseline"
    UNCHANGED = "unchanged"


# How a unit is listed in reports, in this order (unchanged units are only counted).
LISTED = (Category.REGRESSION, Category.KNOWN, Category.STILL_FAILING, Category.FLAKY, Category.FIXED,
          Category.INCOMPLETE, Category.NO_BASELINE, Category.NEW, Category.REMOVED)

_FAILED = Status.FAIL
_UNFINISHED = (Status.INCOMPLETE, Status.PENDING)


class KnownIssueMatcher(Protocol):
    """What compare needs from a known-issues list (crlab.results.known.KnownIssues has it)."""

    def match(self, spec: JobSpec, test: str, today: date) -> Any | None:
        """The known issue covering a failure of `test` ("" for the job itself) in `spec`, or None."""


@dataclass(frozen=True)
class Change:
    """One unit whose outcome is listed: a job (test == "") or one leaf test of a job."""

    spec: JobSpec
    test: str  # "" for the job itself
    category: Category
    previous: str | None  # Status value before; None when there was no such unit
    current: str | None  # Status value now; None when the unit is gone
    message: str = ""  # the current failure's message (or the job's), for people
    known_reason: str = ""  # the known issue's reason, for Category.KNOWN
    known_expires: str = ""  # its expiry date (ISO), "" when it has none

    @property
    def cell(self) -> str:
        """Job id, with the test after a colon: linux-6.1/armv7/smoke:machine is armv7l."""
        return f"{self.spec.job_id}:{self.test}" if self.test else self.spec.job_id

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.spec.job_id, "key": self.spec.axes, "test": self.test,
                "category": self.category.value, "previous": self.previous, "current": self.current,
                "message": self.message, "known_reason": self.known_reason,
                "known_expires": self.known_expires}


@dataclass
class Comparison:
    """The outcome of `compare`: every listed change, and a count per category."""

    previous_run: str | None  # run ids, for reports ("" / None when not from a store)
    current_run: str | None
    changes: list[Change] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # Category value -> units
    current_complete: bool = True  # no job of the current run is incomplete or pending

    def of(self, category: Category) -> list[Change]:
        return [c for c in self.changes if c.category is category]

    @property
    def regressions(self) -> list[Change]:
        return self.of(Category.REGRESSION)

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)

    def exit_code(self) -> int:
        """1 when anything regressed (even in an incomplete run: the failures it has are real),
        else 2 when the current run is incomplete, else 0."""
        if self.regressed:
            return EXIT_FAIL
        return EXIT_PASS if self.current_complete else EXIT_INCOMPLETE

    def category_of(self, spec: JobSpec) -> Category | None:
        """The most important listed category among a job's units (for colouring a report cell)."""
        found = {c.category for c in self.changes if c.spec == spec}
        return next((category for category in LISTED if category in found), None)

    def summary_line(self) -> str:
        parts = [f"{self.counts.get(c.value, 0)} {c.value}" for c in LISTED if self.counts.get(c.value)]
        against = f"against run {self.previous_run}" if self.previous_run else "no previous run"
        return f"{against}: {', '.join(parts) or 'nothing changed'} -> exit {self.exit_code()}"

    def listed(self) -> list[Change]:
        """The changes people read: a job that is new or gone is one line, not one per test too."""
        whole = {c.spec.key for c in self.changes
                 if not c.test and c.category in (Category.NEW, Category.REMOVED)}
        return [c for c in self.changes if not c.test or c.spec.key not in whole]

    def to_dict(self) -> dict[str, Any]:
        """For comparison.json and reports: the counts cover every unit, `changes` the listed ones."""
        return {"previous_run": self.previous_run, "current_run": self.current_run,
                "counts": dict(self.counts), "current_complete": self.current_complete,
                "exit_code": self.exit_code(), "changes": [c.to_dict() for c in self.listed()]}


def _job_ran(result: JobResult) -> bool:
    """The job failed only because tests failed: at job level it ran (see the module doc)."""
    return (result.status is Status.FAIL and FailureClass(result.failure) is FailureClass.TEST
            and any(t.status is Status.FAIL for t in result.tests))


def _units(results: Iterable[JobResult]) -> dict[tuple[str, str], tuple[JobSpec, Status, str, JobResult]]:
    """(job key, test) -> (spec, status, message, job) for every job and every leaf test."""
    units: dict[tuple[str, str], tuple[JobSpec, Status, str, JobResult]] = {}
    for result in results:
        status = Status(result.status)
        job_status = Status.PASS if _job_ran(result) else status
        units[(result.spec.key, "")] = (result.spec, job_status, result.message, result)
        if status in _UNFINISHED:
            continue  # tests of an unfinished job are not outcomes (they may be partial)
        for test in result.tests:
            units[(result.spec.key, test.name)] = (result.spec, Status(test.status), test.message, result)
    return units


def _classify(before: Status | None, now: Status, flaky: bool) -> Category:
    if now in _UNFINISHED:
        return Category.INCOMPLETE
    if now is _FAILED:
        if before is None:
            return Category.NEW
        if before in _UNFINISHED:
            return Category.NO_BASELINE
        return Category.STILL_FAILING if before is _FAILED else Category.REGRESSION if before is Status.PASS \
            else Category.NEW  # skip -> fail: it never passed
    if flaky:
        return Category.FLAKY
    if before is None:
        return Category.NEW
    if before is _FAILED and now is Status.PASS:
        return Category.FIXED
    return Category.UNCHANGED


def compare(previous: Sequence[JobResult] | None, current: Sequence[JobResult],
            known: KnownIssueMatcher | None = None, today: date | None = None,
            previous_run: str | None = None, current_run: str | None = None) -> Comparison:
    """Compare `current` with `previous` (None: no earlier run) unit by unit; see the module doc.

    `known` (crlab.results.known.KnownIssues) turns a current failure it covers into ``known``
    instead of regression/still-failing/new; an expired entry covers nothing.  `today` decides
    expiry (default: date.today()).  The run ids are only carried into the result for reports."""
    today = today or date.today()
    before = _units(previous or [])
    now = _units(current)
    comparison = Comparison(previous_run=previous_run, current_run=current_run,
                            current_complete=all(Status(r.status) not in _UNFINISHED for r in current))
    counts = {c.value: 0 for c in Category}
    for unit, (spec, status, message, job) in now.items():
        old = before.get(unit)
        old_status = old[1] if old else None
        category = _classify(old_status, status, flaky=not unit[1] and verdict.is_flaky(job))
        issue = None
        if status is _FAILED and known is not None:
            issue = known.match(spec, unit[1], today)
            if issue is not None:
                category = Category.KNOWN
        counts[category.value] += 1
        if category is not Category.UNCHANGED:
            comparison.changes.append(Change(
                spec=spec, test=unit[1], category=category, previous=old_status.value if old_status else None,
                current=status.value, message=message or (job.message if status is _FAILED else ""),
                known_reason=getattr(issue, "reason", "") if issue else "",
                known_expires=str(getattr(issue, "expires", "") or "") if issue else "",
            ))
    for unit, (spec, status, _message, _job) in before.items():
        job_now = now.get((unit[0], ""))
        # a test is gone only from a job that ran its tests now; a job that is gone is listed once,
        # and one that failed before its tests (build, boot) already says so at job level
        if unit[1] and (job_now is None or job_now[1] is not Status.PASS):
            continue
        if unit not in now:
            counts[Category.REMOVED.value] += 1
            comparison.changes.append(Change(spec=spec, test=unit[1], category=Category.REMOVED,
                                             previous=status.value, current=None))
    order = {c: i for i, c in enumerate(LISTED)}
    comparison.changes.sort(key=lambda c: (order[c.category], c.spec.job_id, c.test))
    comparison.counts = counts
    return comparison


__all__ = ["Category", "Change", "Comparison", "KnownIssueMatcher", "LISTED", "compare"]
