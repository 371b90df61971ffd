from __future__ import annotations

import os
from pathlib import Path

import pytest

from crlab import kernel as kstages
from crlab.cache import Cache
from crlab.config import MatrixConfig
from crlab.model import Status
from crlab.tap import parse_tap, summarize_tap

try:  # the property test needs it (the 'test' extra); the other tests here do not
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - reported by test_parsing_never_raises
    given = None  # type: ignore[assignment]

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
    # the first test did not pass: what came before it may explain it (kselftest prints it first)
    assert report.tests[0].message == "before any test\ngot 1\nexpected 2"
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


# -- KTAP: nesting, prefixes, directives, crashes, names ----------------------------------------

KTAP_SPEC_EXAMPLE = """\
KTAP version 1
1..1
  KTAP version 1
  1..3
    KTAP version 1
    1..1
    # test_1: initializing test_1
    ok 1 test_1
  ok 1 example_test_1
    KTAP version 1
    1..2
    ok 1 test_1 # SKIP test_1 skipped
    ok 2 test_2
  ok 2 example_test_2
    KTAP version 1
    1..3
    ok 1 test_1
    # test_2: FAIL
    not ok 2 test_2
    ok 3 test_3 # SKIP test_3 skipped
  not ok 3 example_test_3
not ok 1 main_test
"""


def test_ktap_spec_example_is_read_to_the_leaf() -> None:
    report = parse_tap(KTAP_SPEC_EXAMPLE)
    assert report.ktap and report.version == 1
    assert [(t.name, t.status) for t in report.tests] == [
        ("main_test/example_test_1/test_1", Status.PASS),
        ("main_test/example_test_2/test_1", Status.SKIP),
        ("main_test/example_test_2/test_2", Status.PASS),
        ("main_test/example_test_3/test_1", Status.PASS),
        ("main_test/example_test_3/test_2", Status.FAIL),
        ("main_test/example_test_3/test_3", Status.SKIP),
    ]
    assert report.complete and report.problems == []
    # KTAP diagnostics come before their result line
    assert report.tests[4].message == "test_2: FAIL"
    assert report.tests[1].message == "test_1 skipped"
    assert report.tests[0].message == ""  # a pass carries no diagnostics
    status, message = summarize_tap(report)
    assert status is Status.FAIL and "main_test/example_test_3/test_2" in message


def test_depth_four_with_tabs_and_subtest_headers() -> None:
    text = (
        "TAP version 14\n1..1\n"
        "\t# Subtest: a\n\t1..1\n"
        "\t\t# Subtest: b\n\t\t1..1\n"
        "\t\t\t# Subtest: c\n\t\t\t1..2\n"
        "\t\t\tok 1 - d1\n\t\t\tnot ok 2 - d2 # TIMEOUT 30 seconds\n"
        "\t\tnot ok 1 - c\n"
        "\tnot ok 1 - b\n"
        "not ok 1 - a\n"
    )
    report = parse_tap(text)
    assert [(t.name, t.status, t.message) for t in report.tests] == [
        ("a/b/c/d1", Status.PASS, ""),
        ("a/b/c/d2", Status.FAIL, "TIMEOUT: 30 seconds"),
    ]
    assert report.complete


def test_subtest_name_from_header_when_the_result_has_none() -> None:
    report = parse_tap("KTAP version 1\n1..1\n  KTAP version 1\n  # Subtest: suite\n  1..1\n  ok 1 t\nok 1\n")
    assert [t.name for t in report.tests] == ["suite/t"]


def test_parent_not_ok_while_every_leaf_passed_still_fails() -> None:
    report = parse_tap("KTAP version 1\n1..1\n  KTAP version 1\n  1..1\n  ok 1 t\n# teardown leaked\nnot ok 1 s\n")
    assert [(t.name, t.status) for t in report.tests] == [("s/t", Status.PASS), ("s", Status.FAIL)]
    assert "none of its 1 subtests failed" in report.tests[1].message
    assert "teardown leaked" in report.tests[1].message
    assert summarize_tap(report)[0] is Status.FAIL


def test_parent_whose_block_is_empty_counts_itself() -> None:
    text = "KTAP version 1\n1..2\n  KTAP version 1\n  1..0 # SKIP no such device\nok 1 s # SKIP\nok 2 t\n"
    report = parse_tap(text)
    assert [(t.name, t.status, t.message) for t in report.tests] == [
        ("s", Status.SKIP, "no such device"), ("t", Status.PASS, "")]
    assert report.complete


def test_kselftest_runner_output_nests_under_hash_prefix() -> None:
    text = (
        "TAP version 13\n1..2\n"
        "# timeout set to 45\n"
        "# selftests: pidfd: pidfd_test\n# TAP version 13\n# 1..3\n# ok 1 open\n"
        "# not ok 2 poll\n# # poll: expected 1, got 0\n# ok 3 # SKIP no CONFIG_X\n"
        "# # Totals: pass:1 fail:1 xfail:0 xpass:0 skip:1 error:0\n"
        "not ok 1 selftests: pidfd: pidfd_test # exit=1\n"
        "# selftests: kcmp: kcmp_test\n# TAP version 13\n# 1..1\n# ok 1 # XFAIL no kcmp here\n"
        "ok 2 selftests: kcmp: kcmp_test\n"
    )
    report = parse_tap(text)
    assert [(t.name, t.status) for t in report.tests] == [
        ("selftests: pidfd: pidfd_test/open", Status.PASS),
        ("selftests: pidfd: pidfd_test/poll", Status.FAIL),
        ("selftests: pidfd: pidfd_test/test 3", Status.SKIP),
        ("selftests: kcmp: kcmp_test/test 1", Status.PASS),
    ]
    assert report.tests[1].message == "poll: expected 1, got 0"
    assert report.tests[2].message == "no CONFIG_X"
    assert report.tests[3].message == "XFAIL: no kcmp here"
    assert report.complete


def test_kselftest_exit_status_is_data_not_name() -> None:
    first = parse_tap("TAP version 13\n1..1\nnot ok 1 selftests: vm: soft-dirty # exit=1\n")
    second = parse_tap("TAP version 13\n1..1\nnot ok 1 selftests: vm: soft-dirty # exit=139\n")
    assert first.tests[0].name == second.tests[0].name == "selftests: vm: soft-dirty"
    assert first.tests[0].message == "exit=1"


def test_directives() -> None:
    report = parse_tap(
        "KTAP version 1\n1..6\nok 1 a # SKIP why\nnot ok 2 b # SKIP broken\nnot ok 3 c # TODO later\n"
        "ok 4 d # XFAIL known\nnot ok 5 e # ERROR no memory\nnot ok 6 f # TIMEOUT 45 seconds\n")
    assert [(t.status, t.message) for t in report.tests] == [
        (Status.SKIP, "why"), (Status.SKIP, "broken"), (Status.SKIP, "TODO: later"),
        (Status.PASS, "XFAIL: known"), (Status.FAIL, "ERROR: no memory"), (Status.FAIL, "TIMEOUT: 45 seconds")]


def test_missing_nested_tests_are_named() -> None:
    text = "KTAP version 1\n1..2\n  KTAP version 1\n  # Subtest: s\n  1..3\n  ok 1 a\nok 1 s\nok 2 t\n"
    report = parse_tap(text)
    assert report.missing == ["s/test 2", "s/test 3"]
    assert not report.complete
    status, message = summarize_tap(report)
    assert status is Status.INCOMPLETE
    assert "s: tests 2-3 of 3 did not report" in message


def test_nested_plan_may_be_omitted() -> None:
    report = parse_tap("KTAP version 1\n1..1\n  KTAP version 1\n  ok 1 a\n  ok 2 b\nok 1 s\n")
    assert [t.name for t in report.tests] == ["s/a", "s/b"]
    assert report.complete


def test_truncated_inside_a_subtest_is_incomplete() -> None:
    text = "KTAP version 1\n1..2\n  KTAP version 1\n  # Subtest: s\n  1..3\n  ok 1 a\n  ok 2 b\n"
    report = parse_tap(text)
    assert report.missing == ["s/test 3", "test 2"]
    assert report.crash is None
    status, message = summarize_tap(report)
    assert status is Status.INCOMPLETE
    assert "did not report" in message and "no result line" in message


def test_panic_in_the_stream_is_a_crash() -> None:
    text = (
        "[    1.000000] KTAP version 1\n[    1.000001] 1..2\n"
        "[    1.000002]     KTAP version 1\n[    1.000003]     # Subtest: cr_image\n"
        "[    1.000004]     1..2\n[    1.000005]     ok 1 header\n"
        "[    1.000006] BUG: kernel NULL pointer dereference, address: 0000000000000008\n"
        "[    1.000007] Kernel panic - not syncing: Fatal exception\n"
    )
    report = parse_tap(text)
    assert report.crash == "BUG: kernel NULL pointer dereference, address: 0000000000000008"
    assert report.crash_in == "cr_image"
    assert report.missing == ["cr_image/test 2", "test 2"]
    assert [t.name for t in report.tests] == ["cr_image/header"]
    status, message = summarize_tap(report)
    assert status is Status.FAIL
    assert message.startswith("kernel crashed during cr_image: BUG: kernel NULL pointer")


def test_panic_after_the_last_test_does_not_change_the_verdict() -> None:
    text = "[ 1.0] KTAP version 1\n[ 1.0] 1..1\n[ 1.0] ok 1 a\n[ 2.0] Kernel panic - not syncing: VFS: no root\n"
    report = parse_tap(text)
    assert report.crash is None and report.kernel_errors == ["Kernel panic - not syncing: VFS: no root"]
    assert summarize_tap(report) == (Status.PASS, "1 passed")


def test_a_test_printing_bug_is_not_the_kernel() -> None:
    report = parse_tap("1..2\nok 1 - a\nBUG: this is my test's output\n")
    assert report.crash is None
    assert summarize_tap(report)[0] is Status.INCOMPLETE


@pytest.mark.parametrize("prefix", [
    "[    1.234567] ",
    "[    0.060000][    T1] ",
    "<6>[   12.000001] ",
    "[  C0] ",
    "[1234] ",
    "kselftest: ",
    "[    5.000000] kselftest: ",
])
def test_kernel_log_prefixes_are_stripped(prefix: str) -> None:
    lines = ["KTAP version 1", "1..1", "    KTAP version 1", "    # Subtest: s", "    1..1",
             "    # why: it broke", "    not ok 1 t", "not ok 1 s"]
    report = parse_tap("".join(f"{prefix}{line}\n" for line in lines))
    assert [(t.name, t.status, t.message) for t in report.tests] == [("s/t", Status.FAIL, "why: it broke")]
    assert report.complete


def test_printk_lines_interleaved_with_user_space_tap_are_ignored() -> None:
    text = "1..2\nnot ok 1 - a\n[   3.1] eth0: link up\n# really\nok 2 - b\n"
    report = parse_tap(text)
    assert report.tests[0].message == "really"


def test_unknown_lines_in_ktap_explain_a_failure() -> None:
    text = ("KTAP version 1\n1..1\n  KTAP version 1\n  1..1\n  # t: EXPECTATION FAILED at x.c:30\n"
            "  Expected 1 + 1 == 3, but\n      1 + 1 == 2\n  not ok 1 t\nnot ok 1 s\n")
    report = parse_tap(text)
    assert report.tests[0].message == "t: EXPECTATION FAILED at x.c:30\nExpected 1 + 1 == 3, but\n1 + 1 == 2"


def test_kselftest_first_program_failing_keeps_its_output() -> None:
    report = parse_tap("TAP version 13\n1..1\n# selftests: vm: soft-dirty\n# no soft-dirty bit\n"
                       "not ok 1 selftests: vm: soft-dirty # exit=1\n")
    assert report.tests[0].message == "exit=1\nselftests: vm: soft-dirty\nno soft-dirty bit"


def test_kselftest_diagnostics_before_a_failure_attach_to_it() -> None:
    # TAP 13 at the top level: the lines go to whichever neighbour did not pass
    report = parse_tap("TAP version 13\n1..2\nok 1 a\n# RUN b\n# b.c:12: expected 0\nnot ok 2 b\n")
    assert report.tests[0].message == ""
    assert report.tests[1].message == "RUN b\nb.c:12: expected 0"


def test_indented_results_without_a_header_are_subtests() -> None:
    report = parse_tap("1..2\nok 1 - a\n    ok 1 - x\n    ok 2 - y\nok 2 - b\n")
    assert [t.name for t in report.tests] == ["a", "b/x", "b/y"]
    assert report.complete


def test_several_documents_in_one_output() -> None:
    text = "TAP version 13\n1..1\nok 1 selftests: a: t\nTAP version 13\n1..2\nok 1 selftests: b: t\nok 2 x\n"
    report = parse_tap(text)
    assert report.documents == 2 and report.plan == 3
    assert [t.name for t in report.tests] == ["selftests: a: t", "selftests: b: t", "x"]
    assert report.complete


# -- stable names ---------------------------------------------------------------------------------

def test_empty_description_falls_back_to_the_number() -> None:
    report = parse_tap("KTAP version 1\n1..2\n  KTAP version 1\n  1..2\n  ok 1\n  ok 2 # SKIP n/a\nok 1 s\nok 2\n")
    assert [t.name for t in report.tests] == ["s/test 1", "s/test 2", "test 2"]


def test_duplicates_are_numbered_by_occurrence_of_the_same_path() -> None:
    report = parse_tap("1..4\nok 1 - a\nok 2 - b\nok 3 - a\nok 4 - a\n")
    assert [t.name for t in report.tests] == ["a", "b", "a #2", "a #3"]


def test_names_do_not_depend_on_the_position_of_other_tests() -> None:
    before = parse_tap("1..3\nok 1 - x\nok 2 - dup\nok 3 - dup\n")
    after = parse_tap("1..5\nok 1 - new\nok 2 - x\nok 3 - other\nok 4 - dup\nok 5 - dup\n")
    assert {t.name for t in before.tests} <= {t.name for t in after.tests}
    same_leaf_in_two_suites = parse_tap(
        "KTAP version 1\n1..2\n  KTAP version 1\n  1..1\n  ok 1 init\nok 1 a\n"
        "  KTAP version 1\n  1..1\n  ok 1 init\nok 2 b\n")
    assert [t.name for t in same_leaf_in_two_suites.tests] == ["a/init", "b/init"]


def test_a_real_name_that_looks_like_a_duplicate_suffix_stays_unique() -> None:
    report = parse_tap("1..3\nok 1 - a\nok 2 - a \\#2\nok 3 - a\n")
    names = [t.name for t in report.tests]
    assert len(set(names)) == 3 and names[:2] == ["a", "a #2"]


# -- garbage ---------------------------------------------------------------------------------

def test_unicode_and_garbage_lines() -> None:
    text = ("\ufeffKTAP version 1\n1..2\n\x00\x01\xff\ufffd garbage \u2603\nok 1 caf\u00e9 \u2713\n"
            "not ok 2 \u65e5\u672c # SKIP \u7406\u7531\n" + "x" * 100_000 + "\n")
    report = parse_tap(text)
    assert [t.name for t in report.tests] == ["caf\u00e9 \u2713", "\u65e5\u672c"]
    assert report.tests[1].message == "\u7406\u7531"


# -- fidelity with the kernel's kunit_tool ---------------------------------------------------------


@pytest.fixture(scope="module")
def kunit_logs(matrix: MatrixConfig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tools/testing/kunit/test_data/ of linux-6.1's tree as crlab's source stage unpacks it (a
    cache hit once any 6.1 kernel was built)."""
    log = tmp_path_factory.mktemp("source") / "source.log"
    try:
        _key, tree = kstages.prepare_source(matrix.kernels["linux-6.1"].source, Cache(), log)
    except kstages.KernelStageError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"no linux-6.1 source tree for the fidelity test: {exc}")
        pytest.skip(f"no linux-6.1 source tree (run `harness.py selftest`, which installs it): {exc}")
    return tree / "tools" / "testing" / "kunit" / "test_data"

# kunit_tool's verdict, mapped to crlab's Status: SUCCESS -> PASS, FAILURE -> FAIL, SKIPPED -> SKIP,
# TEST_CRASHED -> FAIL (the kernel died under test), NO_TESTS -> SKIP ("1..0": nothing ran),
# FAILURE_TO_PARSE_TESTS -> INCOMPLETE (no KTAP at all).
_KUNIT_VERDICT = {"SUCCESS": Status.PASS, "FAILURE": Status.FAIL, "SKIPPED": Status.SKIP,
                  "TEST_CRASHED": Status.FAIL, "NO_TESTS": Status.SKIP,
                  "FAILURE_TO_PARSE_TESTS": Status.INCOMPLETE}

# Per log of linux-6.1 tools/testing/kunit/test_data/: kunit_tool's status and its counts
# (passed, failed, skipped, crashed).  Statuses are those kunit_tool_test.py asserts (its
# KUnitParserTest), counts those it asserts where it does (failure: 9 passed/1 failed via the JSON
# test; missing_plan: 10 in total, no errors; parse_ktap_output: passed=3; kernel_panic_interrupt:
# crashed, via the JSON test).  Everything else is what kunit_parser.parse_run_tests of the same
# tree returns when run by hand (not here): all counts, and the status of the logs the self-test
# does not judge (insufficient_memory and no_tests_no_plan at the top, parse_subtest_header,
# output_isolated_correctly, output_with_prefix_isolated_correctly, parse_ktap_output).
KUNIT_TOOL = {
    "test_config_printk_time.log": ("SUCCESS", 10, 0, 0, 0),
    "test_insufficient_memory.log": ("FAILURE_TO_PARSE_TESTS", 0, 0, 0, 0),
    "test_interrupted_tap_output.log": ("SUCCESS", 10, 0, 0, 0),
    "test_is_test_passed-all_passed.log": ("SUCCESS", 10, 0, 0, 0),
    "test_is_test_passed-all_passed_nested.log": ("SUCCESS", 7, 0, 0, 0),
    "test_is_test_passed-failure.log": ("FAILURE", 9, 1, 0, 0),
    "test_is_test_passed-kselftest.log": ("SUCCESS", 2, 0, 0, 0),
    "test_is_test_passed-missing_plan.log": ("SUCCESS", 10, 0, 0, 0),
    "test_is_test_passed-no_tests_no_plan.log": ("SUCCESS", 1, 0, 0, 0),
    "test_is_test_passed-no_tests_run_no_header.log": ("FAILURE_TO_PARSE_TESTS", 0, 0, 0, 0),
    "test_is_test_passed-no_tests_run_with_header.log": ("NO_TESTS", 0, 0, 0, 0),
    "test_kernel_panic_interrupt.log": ("TEST_CRASHED", 8, 0, 0, 2),
    "test_multiple_prefixes.log": ("SUCCESS", 10, 0, 0, 0),
    "test_output_isolated_correctly.log": ("SUCCESS", 2, 0, 0, 0),
    "test_output_with_prefix_isolated_correctly.log": ("SUCCESS", 10, 0, 0, 0),
    "test_parse_ktap_output.log": ("SUCCESS", 3, 0, 0, 0),
    "test_parse_subtest_header.log": ("SUCCESS", 1, 0, 0, 0),
    "test_pound_no_prefix.log": ("SUCCESS", 10, 0, 0, 0),
    "test_pound_sign.log": ("SUCCESS", 10, 0, 0, 0),
    "test_skip_all_tests.log": ("SKIPPED", 0, 0, 5, 0),
    "test_skip_tests.log": ("SUCCESS", 4, 0, 1, 0),
    "test_strip_hyphen.log": ("SUCCESS", 2, 0, 0, 0),
}

_NO_TOP_PLAN = ("crlab: without a top-level plan a run cut short between two suites looks complete,"
                " so it is INCOMPLETE (kunit_tool: a missing plan is not an error)")
# Where crlab deliberately reads a log differently: (verdict, counts) crlab gives instead, and why.
DELIBERATE = {
    "test_is_test_passed-missing_plan.log": (Status.INCOMPLETE, None, _NO_TOP_PLAN),
    "test_output_isolated_correctly.log": (Status.INCOMPLETE, None, _NO_TOP_PLAN),
    "test_output_with_prefix_isolated_correctly.log": (Status.INCOMPLETE, None, _NO_TOP_PLAN),
    "test_is_test_passed-kselftest.log": (
        None, (4, 0, 0, 0),
        "crlab reads the '# '-prefixed TAP that the kselftest runner prints for each program as its"
        " subtests, so each check is a leaf (2 programs x 2 checks); kunit_tool takes those lines for"
        " diagnostics and counts the 2 programs"),
}


def _crlab_reading(logs: Path, name: str) -> tuple[Status, tuple[int, int, int, int]]:
    text = (logs / name).read_text(encoding="utf-8", errors="replace")
    report = parse_tap(text)
    counts = report.counts()
    return summarize_tap(report)[0], (counts[Status.PASS], counts[Status.FAIL], counts[Status.SKIP],
                                      len(report.missing))


def test_every_kunit_log_is_in_the_table(kunit_logs: Path) -> None:
    assert sorted(p.name for p in kunit_logs.glob("*.log")) == sorted(KUNIT_TOOL)
    assert len(KUNIT_TOOL) == 22


@pytest.mark.parametrize("name", sorted(KUNIT_TOOL))
def test_kunit_tool_fidelity(kunit_logs: Path, name: str) -> None:
    kunit_status, *kunit_counts = KUNIT_TOOL[name]
    expected_status, expected_counts = _KUNIT_VERDICT[kunit_status], tuple(kunit_counts)
    if name in DELIBERATE:
        other_status, other_counts, reason = DELIBERATE[name]
        assert reason
        if other_status is not None:
            assert other_status != expected_status
            expected_status = other_status
        if other_counts is not None:
            assert other_counts != expected_counts
            expected_counts = other_counts
    status, counts = _crlab_reading(kunit_logs, name)
    assert (status, counts) == (expected_status, expected_counts)


def test_kunit_panic_log_names_the_crash(kunit_logs: Path) -> None:
    report = parse_tap((kunit_logs / "test_kernel_panic_interrupt.log").read_text())
    assert report.crash is not None and report.crash.startswith("Kernel panic - not syncing: VFS")
    assert report.crash_in == "string-stream-test"
    assert report.missing == ["string-stream-test/test 2", "string-stream-test/test 3"]


def test_kunit_failure_log_keeps_the_expectation_with_the_test(kunit_logs: Path) -> None:
    report = parse_tap((kunit_logs / "test_is_test_passed-failure.log").read_text())
    failed = [t for t in report.tests if t.status is Status.FAIL]
    assert [t.name for t in failed] == ["example/example_simple_test"]
    assert "EXPECTATION FAILED at lib/kunit/example-test.c:30" in failed[0].message
    assert "Expected 1 + 1 == 3, but" in failed[0].message


# -- property: any text parses ---------------------------------------------------------------------

_FRAGMENTS = ["KTAP version 1", "TAP version 13", "TAP version 14", "# TAP version 13", "1..0", "1..1",
              "1..3", "1..0 # SKIP x", "ok", "ok 1", "not ok 2 - a # SKIP", "ok 3 b # TODO", "not ok 1 c",
              "ok 99 d # XFAIL", "# Subtest: s", "# diag", "Bail out!", "# Bail out! nested", "  ---",
              "  ...", "Kernel panic - not syncing: x", "BUG: y", "ok 1 a \\# b #", "ok -1", "1..-1",
              "ok 1 " + "z" * 50]
_PREFIXES = ["", "  ", "    ", "\t", "# ", "#   ", "[    1.000000] ", "[ 0.1][  T1] ", "<6>", "kselftest: "]

if given is None:
    def test_parsing_never_raises() -> None:
        pytest.fail("the property test needs hypothesis: .venv/bin/pip install hypothesis "
                    "(it is in pyproject's 'test' extra)")
else:
    _tap_like_line = st.builds(lambda prefixes, body: "".join(prefixes) + body,
                               st.lists(st.sampled_from(_PREFIXES), max_size=4),
                               st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=30)))
    _tap_like_text = st.lists(_tap_like_line, max_size=60).map("\n".join)

    @settings(max_examples=400, deadline=None)
    @given(st.one_of(st.text(), _tap_like_text))
    def test_parsing_never_raises(text: str) -> None:
        report = parse_tap(text)
        status, message = summarize_tap(report)
        assert status in (Status.PASS, Status.FAIL, Status.SKIP, Status.INCOMPLETE)
        assert message
        names = [t.name for t in report.tests]
        assert len(names) == len(set(names))  # the store keys results by name
        if report.complete:
            assert not report.missing and report.crash is None
        if status is Status.PASS:
            assert report.complete and not any(t.status is Status.FAIL for t in report.tests)


def test_real_kselftest_runner_output() -> None:
    report = parse_tap((DATA / "kselftest-host-x86_64.tap").read_text())
    assert report.documents == 3 and report.plan == 7
    assert report.complete and report.missing == []
    counts = report.counts()
    assert (counts[Status.PASS], counts[Status.FAIL], counts[Status.SKIP]) == (76, 1, 0)
    per_program: dict[str, int] = {}
    for test in report.tests:
        program = test.name.split("/")[0]
        per_program[program] = per_program.get(program, 0) + 1
    assert per_program == {
        "selftests: membarrier: membarrier_test_single_thread": 13,
        "selftests: membarrier: membarrier_test_multi_thread": 13,
        "selftests: kcmp: kcmp_test": 1,  # announced 1..3 but printed no results: the program is the leaf
        "selftests: clone3: clone3": 17,
        "selftests: clone3: clone3_clear_sighand": 1,
        "selftests: clone3: clone3_set_tid": 31,  # 29 planned, 18 and 22 printed twice
        "selftests: clone3: clone3_cap_checkpoint_restore": 1,
    }
    names = [t.name for t in report.tests]
    assert "selftests: clone3: clone3/Result (0) matches expectation (0)" in names  # no pid in the name
    assert "selftests: clone3: clone3/Result (0) matches expectation (0) #2" in names
    assert not any("[" in name for name in names)
    assert any("reported more than once" in p for p in report.problems)
    failed = [t for t in report.tests if t.status is Status.FAIL]
    assert [t.name for t in failed] == ["selftests: clone3: clone3_cap_checkpoint_restore"]
    assert "file clone3_cap_checkpoint_restore is missing" in failed[0].message
    status, message = summarize_tap(report)
    assert status is Status.FAIL and message.startswith("1 of 77 tests failed")


def test_a_number_printed_twice_is_noted_but_nothing_is_missing() -> None:
    report = parse_tap("1..2\nok 1 - a\nok 1 - a\nok 2 - b\n")
    assert report.complete and any("more than once" in p for p in report.problems)
    assert [t.name for t in report.tests] == ["a", "a #2", "b"]
    beyond = parse_tap("1..2\nok 1 - a\nok 2 - b\nok 3 - c\n")
    assert not beyond.complete and summarize_tap(beyond)[0] is Status.INCOMPLETE


def test_pid_marker_is_not_part_of_the_name() -> None:
    report = parse_tap("1..1\nok 1 [30176] Result (0) matches expectation (0)\n")
    assert report.tests[0].name == "Result (0) matches expectation (0)"


def test_huge_plan_and_long_lines_stay_cheap() -> None:
    report = parse_tap("1..30000000000\nok 1 a\nok 7 b\n" + ("ok 3 a #" + " " * 4000 + "x\n") * 20)
    assert len(report.missing) == 1000  # listed up to 1000 per block; the message has every range
    status, message = summarize_tap(report)
    assert status is Status.INCOMPLETE and "2, 4-6, 8-30000000000 of 30000000000" in message


def test_bail_out_inside_a_kselftest_program_ends_only_that_program() -> None:
    text = ("TAP version 13\n1..2\n# selftests: pidfd: pidfd_open_test\n# TAP version 13\n# 1..5\n"
            "# ok 1 open\n# Bail out! pidfd_open(2) not supported\n"
            "not ok 1 selftests: pidfd: pidfd_open_test # exit=1\nok 2 selftests: pidfd: pidfd_poll_test\n")
    report = parse_tap(text)
    assert report.bailed_out is None and report.complete
    assert [(t.name, t.status) for t in report.tests] == [
        ("selftests: pidfd: pidfd_open_test/open", Status.PASS),
        ("selftests: pidfd: pidfd_open_test", Status.FAIL),
        ("selftests: pidfd: pidfd_poll_test", Status.PASS),
    ]
    assert "Bail out! pidfd_open(2) not supported" in report.tests[1].message


def test_a_wrapper_script_printing_one_document_per_program_continues_its_block() -> None:
    # linux-6.1 futex/run.sh: every functional test prints its own complete TAP document
    doc = "# TAP version 13\n# 1..1\n# # {arg}\n# ok 1 futex-requeue-pi\n# # Totals: pass:1 fail:0\n"
    text = ("TAP version 13\n1..1\n# selftests: futex: run.sh\n" + doc.format(arg="broadcast=0")
            + doc.format(arg="broadcast=1") + "# TAP version 13\n# 1..2\n# ok 1 futex-wait\n# not ok 2 futex-wake\n"
            + "not ok 1 selftests: futex: run.sh # exit=1\n")
    report = parse_tap(text)
    assert [(t.name, t.status) for t in report.tests] == [
        ("selftests: futex: run.sh/futex-requeue-pi", Status.PASS),
        ("selftests: futex: run.sh/futex-requeue-pi #2", Status.PASS),
        ("selftests: futex: run.sh/futex-wait", Status.PASS),
        ("selftests: futex: run.sh/futex-wake", Status.FAIL),
    ]
    assert report.complete and report.problems == []


def test_a_second_document_after_an_incomplete_one_still_reports_the_gap() -> None:
    text = ("TAP version 13\n1..1\n# TAP version 13\n# 1..2\n# ok 1 a\n"
            "# TAP version 13\n# 1..1\n# ok 1 b\nok 1 prog\n")
    report = parse_tap(text)
    assert not report.complete


def test_kselftest_program_header_starts_the_next_programs_notes_and_its_skip_plan_is_the_reason() -> None:
    # linux-6.1 timens on a kernel without CONFIG_TIME_NS: ksft_exit_skip prints only "1..0 # SKIP"
    text = ("TAP version 13\n1..2\n# selftests: timens: timens\n# 1..0 # SKIP Time namespaces are not supported\n"
            "ok 1 selftests: timens: timens # SKIP\n# selftests: timens: timerfd\n# 1..0 # SKIP no timerfd here\n"
            "ok 2 selftests: timens: timerfd # SKIP\n")
    report = parse_tap(text)
    assert [(t.name, t.status, t.message.splitlines()[0]) for t in report.tests] == [
        ("selftests: timens: timens", Status.SKIP, "Time namespaces are not supported"),
        ("selftests: timens: timerfd", Status.SKIP, "no timerfd here"),
    ]
    assert "selftests: timens: timerfd" not in report.tests[0].message
