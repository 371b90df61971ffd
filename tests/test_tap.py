from __future__ import annotations

from pathlib import Path

import pytest

from crlab.model import Status
from crlab.tap import parse_tap, summarize_tap

DATA = Path(__file__).parent / "data" / "tap"


def test_golden_smoke_x86_64() -> None:
    with open(DATA / "smoke_x86_64.tap", newline="") as fh:
        text = fh.read()
    assert "\r\n" in text  # the console's line ends are part of what is being tested
    report = parse_tap(text)
    assert report.plan == 8
    assert report.bailed_out is None
    assert report.complete
    assert report.problems == []
    assert [t.number for t in report.tests] == list(range(1, 9))
    assert [t.status for t in report.tests] == [Status.PASS] * 3 + [Status.FAIL] + [Status.PASS] * 4
    failed = report.tests[3]
    assert failed.name == "/proc/sys/kernel/ns_last_pid exists (CONFIG_CHECKPOINT_RESTORE)"
    assert failed.message == "missing or read-only"
    assert report.tests[2].name == "machine is x86_64"
    # the kernel message between tests 5 and 6 is not a diagnostic of test 5
    assert report.tests[4].message == ""
    assert all("\r" not in t.name and "\r" not in t.message for t in report.tests)
    status, message = summarize_tap(report)
    assert status is Status.FAIL
    assert "1 of 8" in message and "ns_last_pid" in message


def test_all_pass_plan_first() -> None:
    report = parse_tap("1..3\nok 1 - a\nok 2 - b\nok 3 - c\n")
    assert report.complete
    assert [t.name for t in report.tests] == ["a", "b", "c"]
    assert summarize_tap(report) == (Status.PASS, "3 passed")


def test_plan_at_end() -> None:
    report = parse_tap("ok 1 - a\nok 2 - b\n1..2\n")
    assert report.plan == 2
    assert report.complete
    assert report.problems == []
    assert summarize_tap(report)[0] is Status.PASS


def test_plan_in_the_middle_is_a_problem() -> None:
    report = parse_tap("ok 1 - a\n1..2\nok 2 - b\n")
    assert any("plan" in p for p in report.problems)


def test_not_ok_without_dash_and_auto_numbering() -> None:
    report = parse_tap("1..3\nok first\nnot ok second one\nok\n")
    assert [(t.number, t.name, t.status) for t in report.tests] == [
        (1, "first", Status.PASS),
        (2, "second one", Status.FAIL),
        (3, "test 3", Status.PASS),
    ]
    assert report.complete


def test_auto_number_continues_after_explicit_number() -> None:
    report = parse_tap("1..3\nok 1 - a\nok - b\nok 3 - c\n")
    assert [t.number for t in report.tests] == [1, 2, 3]
    assert report.problems == []


def test_skip_carries_reason() -> None:
    report = parse_tap("1..2\nok 1 - a # SKIP no criu on ppc64\nok 2 - b # skipped: not built\n")
    assert [t.status for t in report.tests] == [Status.SKIP, Status.SKIP]
    assert report.tests[0].message == "no criu on ppc64"
    assert report.tests[0].name == "a"
    assert report.tests[1].message == "not built"
    # nothing passed: reporting this as a pass would hide that nothing was tested
    assert summarize_tap(report) == (Status.SKIP, "all 2 tests skipped: no criu on ppc64; not built")


def test_skip_without_reason_is_flagged() -> None:
    report = parse_tap("1..1\nok 1 - a # SKIP\n")
    assert report.tests[0].status is Status.SKIP
    assert report.tests[0].message  # never an empty reason
    assert any("without a reason" in p for p in report.problems)


def test_todo() -> None:
    report = parse_tap("1..2\nnot ok 1 - restore of ipc # TODO not implemented\nok 2 - b # TODO fixed?\n")
    first, second = report.tests
    assert first.status is Status.SKIP
    assert first.message == "TODO: not implemented"
    assert second.status is Status.PASS
    assert second.message.startswith("TODO")
    assert summarize_tap(report)[0] is Status.PASS


def test_escaped_hash_is_part_of_the_description() -> None:
    report = parse_tap("1..2\nok 1 - issue \\#42 # SKIP later\nok 2 - colour # not a directive\n")
    assert report.tests[0].name == "issue #42"
    assert report.tests[0].status is Status.SKIP
    # after an unescaped '#' comes diagnostic data, never the name (KTAP): the name stays stable
    # when the data changes from run to run (kselftest's "# exit=1")
    assert report.tests[1].name == "colour"
    assert report.tests[1].message == "not a directive"
    assert report.tests[1].status is Status.PASS


def test_diagnostics_attach_to_the_previous_test() -> None:
    text = "1..2\n# before any test\nnot ok 1 - a\n# got 1\n#   expected 2\nok 2 - b\n#\n"
    report = parse_tap(text)
    assert report.diagnostics == ["before any test"]
    assert report.tests[0].message == "got 1\nexpected 2"
    assert report.tests[1].message == ""


def test_yaml_block_attaches_to_the_test() -> None:
    text = (
        "TAP version 13\n1..1\nnot ok 1 - a\n  ---\n  message: boom\n"
        "[   1.000000] kernel says hi\n  severity: fail\n  ...\n"
    )
    report = parse_tap(text)
    assert report.version == 13
    assert report.tests[0].message == "message: boom\nseverity: fail"
    assert report.complete


def test_skip_all_plan() -> None:
    report = parse_tap("1..0 # SKIP no network in this guest\n")
    assert report.plan == 0
    assert report.complete
    assert report.skip_all == "no network in this guest"
    status, message = summarize_tap(report)
    assert status is Status.SKIP
    assert "no network in this guest" in message


def test_bail_out_stops_parsing() -> None:
    report = parse_tap("1..3\nok 1 - a\nBail out! rootfs is read-only\nok 2 - b\n")
    assert report.bailed_out == "rootfs is read-only"
    assert len(report.tests) == 1
    assert not report.complete
    status, message = summarize_tap(report)
    assert status is Status.INCOMPLETE
    assert "rootfs is read-only" in message


def test_fail_wins_over_bail_out() -> None:
    report = parse_tap("1..3\nnot ok 1 - a\nBail out!\n")
    assert summarize_tap(report)[0] is Status.FAIL


def test_missing_plan_is_incomplete() -> None:
    report = parse_tap("ok 1 - a\nok 2 - b\n")
    assert report.plan is None
    assert not report.complete
    status, message = summarize_tap(report)
    assert status is Status.INCOMPLETE
    assert "plan" in message


def test_no_output_is_incomplete() -> None:
    status, message = summarize_tap(parse_tap("[    0.000000] Linux version 6.6.0\n\n"))
    assert status is Status.INCOMPLETE
    assert message == "no TAP output"


def test_truncated_output_names_missing_tests() -> None:
    report = parse_tap("1..8\nok 1 - a\nok 2 - b\nok 3 - c\nok 5 - e\n")
    assert report.missing_numbers() == [4, 6, 7, 8]
    status, message = summarize_tap(report)
    assert status is Status.INCOMPLETE
    assert "4, 6-8" in message


def test_duplicate_and_out_of_range_numbers() -> None:
    report = parse_tap("1..2\nok 1 - a\nok 1 - a\nok 3 - c\n")
    assert not report.complete
    assert any("more than once" in p for p in report.problems)
    assert any("outside the plan" in p for p in report.problems)
    # names stay unique so that they can key the results store
    assert len({t.name for t in report.tests}) == 3
    assert summarize_tap(report)[0] is Status.INCOMPLETE


def test_second_plan_ignored() -> None:
    report = parse_tap("1..1\nok 1 - a\n1..5\n")
    assert report.plan == 1
    assert report.complete
    assert any("second plan" in p for p in report.problems)


@pytest.mark.parametrize(
    "noise",
    [
        "[   12.345678] foo",
        "<6>[    1.000000] virtio_net virtio0 eth0: renamed",
        "random text",
        "okay then",
        "\x1b[32mcoloured\x1b[0m",
        "~ # ",
        "",
    ],
)
def test_noise_is_ignored(noise: str) -> None:
    report = parse_tap(f"1..2\nok 1 - a\n{noise}\nok 2 - b\n")
    assert [t.number for t in report.tests] == [1, 2]
    assert report.complete
    assert report.tests[0].message == ""


def test_crlf_and_lone_cr() -> None:
    report = parse_tap("1..2\r\nnot ok 1 - a\r\n# why\r\r\nok 2 - b\r\n")
    assert report.tests[0].name == "a"
    assert report.tests[0].message == "why"
    assert report.complete
