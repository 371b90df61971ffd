"""What a set of job results adds up to: the exit code, counts, flaky jobs, the worst outcome.

INCOMPLETE (and PENDING, and SKIP at job level) is neither a pass nor a failure: a run that did
not finish every job exits 2 unless something failed outright.
"""

from __future__ import annotations

from collections.abc import Iterable

from crlab.model import EXIT_FAIL, EXIT_INCOMPLETE, EXIT_PASS, JobResult, Status

EXIT_MEANING = {EXIT_PASS: "all passed", EXIT_FAIL: "failures", EXIT_INCOMPLETE: "incomplete"}

# worst last: the colour of a report cell holding several jobs
SEVERITY = {Status.PASS: 0, Status.SKIP: 1, Status.PENDING: 2, Status.INCOMPLETE: 3, Status.FAIL: 4}


def failed(result: JobResult) -> bool:
    return result.status is Status.FAIL or any(t.status is Status.FAIL for t in result.tests)


def exit_code(results: Iterable[JobResult]) -> int:
    """0 when every job passed (skipped tests inside a passing job are fine), 1 when anything
    failed, else 2 (something is incomplete, pending or skipped, or there were no jobs)."""
    results = list(results)
    if any(failed(r) for r in results):
        return EXIT_FAIL
    if not results or any(r.status is not Status.PASS for r in results):
        return EXIT_INCOMPLETE
    return EXIT_PASS


def status_counts(results: Iterable[JobResult]) -> dict[str, int]:
    """Job status value -> number of jobs, every status present (in Status order)."""
    counts = {status.value: 0 for status in Status}
    for result in results:
        counts[Status(result.status).value] += 1
    return counts


def tests_by_status(result: JobResult) -> dict[str, int]:
    """Test status value -> number of the job's tests, only the statuses that occur."""
    counts = {status.value: 0 for status in Status}
    for test in result.tests:
        counts[Status(test.status).value] += 1
    return {status: n for status, n in counts.items() if n}


def is_flaky(result: JobResult) -> bool:
    """Passed, but only on a later attempt: never shown as a plain pass."""
    return result.status is Status.PASS and (bool(result.info.get("flaky")) or result.attempts > 1)


def worst(results: Iterable[JobResult]) -> Status | None:
    statuses = [Status(r.status) for r in results]
    return max(statuses, key=SEVERITY.__getitem__) if statuses else None


def summary(results: Iterable[JobResult]) -> dict[str, int]:
    """The numbers results.json carries: jobs, a count per status, flaky passes, the exit code."""
    results = list(results)
    return {"jobs": len(results), **status_counts(results), "flaky": sum(map(is_flaky, results)),
            "exit_code": exit_code(results)}


def verdict_line(results: Iterable[JobResult]) -> str:
    """E.g. "3 jobs: 2 pass (1 flaky), 1 incomplete -> exit 2 (incomplete)"."""
    results = list(results)
    parts = []
    for status, n in status_counts(results).items():
        if not n:
            continue
        flaky = sum(map(is_flaky, results)) if status == Status.PASS.value else 0
        parts.append(f"{n} {status}" + (f" ({flaky} flaky)" if flaky else ""))
    code = exit_code(results)
    return f"{len(results)} jobs: {', '.join(parts) or 'none'} -> exit {code} ({EXIT_MEANING[code]})"
