"""KUnit results read from a kernel's boot console (crlab/kunit.py), on console logs captured from
real boots: linux-6.1-kunit of configs/kunit.yaml on x86_64 (12 KUnit suites, clocksource
messages interleaved with the time test's KTAP), and the same kernel before it ran its tests
(tinyconfig had turned KUNIT_DEFAULT_ENABLED off: "kunit: disabled")."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from crlab.kunit import boot_ktap, read_console
from crlab.model import FailureClass, Status

DATA = Path(__file__).parent / "data" / "ktap"
CONSOLE = (DATA / "kunit-x86_64.console.log").read_text()
DISABLED = (DATA / "kunit-disabled-x86_64.console.log").read_text()


def test_every_case_of_the_boot_is_a_result() -> None:
    outcome, leaves = read_console(CONSOLE)
    assert outcome.status is Status.PASS, outcome.message
    assert leaves == 88
    assert Counter(t.status for t in outcome.tests) == {Status.PASS: 86, Status.SKIP: 2}
    assert outcome.message == "86 passed, 0 failed, 2 skipped in 12 KUnit suites"
    suites = list(dict.fromkeys(t.name.split("/")[0] for t in outcome.tests))
    assert suites == ["time_test_cases", "kunit_executor_test", "kunit-try-catch-test", "kunit-resource-test",
                      "kunit-log-test", "kunit_status", "string-stream-test", "example", "bitfields",
                      "list-kunit-test", "hlist", "cmdline"]


def test_cases_are_named_suite_slash_case() -> None:
    outcome, _ = read_console(CONSOLE)
    names = {t.name: t for t in outcome.tests}
    assert names["list-kunit-test/list_test_list_init"].status is Status.PASS
    assert names["time_test_cases/time64_to_tm_test_date_range"].status is Status.PASS
    skipped = names["example/example_skip_test"]
    assert skipped.status is Status.SKIP and skipped.message.startswith("this test should be skipped")


def test_printk_lines_inside_a_suite_do_not_break_it() -> None:
    # the clocksource watchdog speaks between time_test_cases' plan and its result
    assert "clocksource: Switched to clocksource" in boot_ktap(CONSOLE)
    outcome, _ = read_console(CONSOLE)
    assert outcome.tests[0].name == "time_test_cases/time64_to_tm_test_date_range"


def test_the_shell_session_is_not_read() -> None:
    ktap = boot_ktap(CONSOLE)
    assert "crlab-init" not in ktap and "crlab#" not in ktap
    assert "ok 12 cmdline" in ktap and ktap.rstrip().endswith("Run /init as init process")


def test_lone_carriage_returns_read_the_same() -> None:
    assert [(t.name, t.status) for t in read_console(CONSOLE.replace("\r", ""))[0].tests] == \
        [(t.name, t.status) for t in read_console(CONSOLE)[0].tests]


def test_a_kernel_that_ran_no_kunit_is_incomplete_never_an_empty_pass() -> None:
    assert "kunit: disabled" in DISABLED
    outcome, leaves = read_console(DISABLED)
    assert (outcome.status, outcome.failure, leaves) == (Status.INCOMPLETE, FailureClass.INFRA, 0)
    assert "no KUnit KTAP" in outcome.message


def test_a_boot_cut_short_names_the_cases_that_never_reported() -> None:
    cut = CONSOLE[: CONSOLE.index("ok 1 list_test_list_init")]
    outcome, _ = read_console(cut)
    assert outcome.status is Status.FAIL
    assert "list-kunit-test" not in {t.name.split("/")[0] for t in outcome.tests if t.status is Status.PASS}
