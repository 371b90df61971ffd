"""Parsers and classifiers against output captured from real guests (tests/data/golden/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crlab.guest.qemu import PANIC, READY_BANNER, find_oops
from crlab.model import Status
from crlab.tap import parse_tap, summarize_tap

GOLDEN = Path(__file__).parent / "data" / "golden"


@pytest.mark.parametrize("name", ["smoke-x86_64.suite.log", "smoke-ppc64.suite.log"])
def test_real_smoke_output_parses_as_eight_passes(name: str) -> None:
    report = parse_tap((GOLDEN / name).read_text())
    assert report.plan == 8 and report.complete
    assert [t.status for t in report.tests] == [Status.PASS] * 8
    assert summarize_tap(report)[0] == Status.PASS


def test_a_failed_check_in_real_output_fails_the_suite() -> None:
    text = (GOLDEN / "smoke-x86_64.suite.log").read_text().replace("ok 4 -", "not ok 4 -")
    status, _ = summarize_tap(parse_tap(text))
    assert status == Status.FAIL


def test_truncated_real_output_is_incomplete_not_passed() -> None:
    lines = (GOLDEN / "smoke-x86_64.suite.log").read_text().splitlines()[:5]
    status, message = summarize_tap(parse_tap("\n".join(lines)))
    assert status == Status.INCOMPLETE
    assert "5-8" in message or "5" in message


def test_panic_console_is_classified_as_panic() -> None:
    log = (GOLDEN / "panic-x86_64.console.log").read_text()
    match = PANIC.search(log)
    assert match and "Requested init /nonexistent failed" in match.group(0)
    assert READY_BANNER not in log


def test_clean_boot_console_has_no_panic_or_oops() -> None:
    log = (GOLDEN / "boot-ppc64.console.log").read_text()
    assert READY_BANNER in log
    assert PANIC.search(log) is None and find_oops(log) is None


def test_only_kernel_lines_count_as_an_oops() -> None:
    log = (GOLDEN / "boot-ppc64.console.log").read_text()
    assert find_oops(log + "crlab# echo 'BUG: in my test'\nBUG: in my test\n") is None
    oopsed = log + "[   42.123456] BUG: kernel NULL pointer dereference, address: 0000000000000000\n"
    assert find_oops(oopsed) == "BUG: kernel NULL pointer dereference, address: 0000000000000000"
