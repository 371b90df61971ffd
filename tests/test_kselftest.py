"""The kselftest job kind: its pure logic (why a collection did not build, how leaves are named, the
verdict), and three collections for real: cross-built from linux-6.1 and run in an x86_64 guest by the
kernel's runner through the orchestrator, on the kernel CI already builds (no kernel of its own)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from crlab import model
from crlab.kselftest import (
    Collection,
    collection_results,
    leaf_name,
    listed_collections,
    load_collections,
    outcome,
    skip_reason,
)
from crlab.model import Status
from crlab.paths import REPO_ROOT, SUITES_DIR
from tests.conftest import require_qemu

DATA = Path(__file__).parent / "data" / "ktap"


# -- pure logic ------------------------------------------------------------------------------------


def test_missing_library_is_the_skip_reason() -> None:
    log = ("armv7-linux-gnueabihf-gcc clone3.c -lcap -o clone3\n"
           "/usr/lib/gcc-cross/arm-linux-gnueabihf/12/../../../../arm-linux-gnueabihf/bin/ld: cannot find -lcap:"
           " No such file or directory\ncollect2: error: ld returned 1 exit status\n")
    assert skip_reason(log, "armv7", "arm-linux-gnueabihf-") == (
        "not built: needs libcap for armv7, which the arm-linux-gnueabihf-gcc sysroot does not have")


def test_missing_header_is_the_skip_reason() -> None:
    log = "mount_setattr_test.c:12:10: fatal error: sys/capability.h: No such file or directory\n"
    assert skip_reason(log, "ppc64", "powerpc64-linux-gnu-") == (
        "not built: needs the header sys/capability.h, which the powerpc64-linux-gnu-gcc sysroot does not have")


def test_other_build_failures_quote_the_first_error() -> None:
    log = "x.c:3:1: error: unknown type name 'foo'\nmake[1]: *** [../lib.mk:146: x] Error 1\n"
    assert skip_reason(log, "i386", "i686-linux-gnu-") == "not built: x.c:3:1: error: unknown type name 'foo'"
    assert skip_reason("", "i386", "i686-linux-gnu-").startswith("not built: make failed")


@pytest.mark.parametrize(("given", "expected"), [
    ("selftests: pidfd: pidfd_test/open", "pidfd/pidfd_test/open"),
    ("selftests: vm: soft-dirty", "vm/soft-dirty"),
    ("selftests: futex: run.sh/futex_wait_timeout/test 1", "futex/run.sh/futex_wait_timeout/test 1"),
    ("kcmp_test", "kcmp/kcmp_test"),
    ("kcmp/kcmp_test", "kcmp/kcmp_test"),
])
def test_leaf_names_are_collection_test_subtest(given: str, expected: str) -> None:
    assert leaf_name(given.split(":")[1].strip() if given.startswith("selftests:") else "kcmp", given) == expected


RUNNER_OUTPUT = """TAP version 13
1..2
# selftests: kcmp: kcmp_test
# TAP version 13
# 1..3
# pid1:    45 pid2:    46 FD:     2 FILES:     2 VM:     2 FS:     2 SIGHAND:     2
# ok 1 0 (0) 1 (1)
# ok 2 0 (0) 1 (1)
# not ok 3 kcmp(KCMP_EPOLL_TFD) # SKIP no CONFIG_EPOLL
# # Totals: pass:2 fail:0 xfail:0 xpass:0 skip:1 error:0
ok 1 selftests: kcmp: kcmp_test
# selftests: kcmp: other
# TAP version 13
# 1..1
# not ok 1 broken
not ok 2 selftests: kcmp: other # exit=1
"""


def test_runner_output_becomes_named_leaves() -> None:
    tests, problems = collection_results(Collection("kcmp", 60), RUNNER_OUTPUT)
    assert problems == []
    assert [(t.name, t.status) for t in tests] == [
        ("kcmp/kcmp_test/0 (0) 1 (1)", Status.PASS),
        ("kcmp/kcmp_test/0 (0) 1 (1) #2", Status.PASS),
        ("kcmp/kcmp_test/kcmp(KCMP_EPOLL_TFD)", Status.SKIP),
        ("kcmp/other/broken", Status.FAIL),
    ]
    assert tests[2].message == "no CONFIG_EPOLL"


def test_a_collection_cut_short_is_reported_and_its_missing_tests_fail() -> None:
    cut = RUNNER_OUTPUT.split("# selftests: kcmp: other")[0] + "crlab-kselftest: kcmp timed out after 60 s\n"
    tests, problems = collection_results(Collection("kcmp", 60), cut)
    assert any("stopped after 60 s" in p for p in problems)
    assert any(t.status is Status.FAIL and "never reported" in t.message for t in tests)
    assert outcome(tests, problems).status is Status.FAIL


def test_verdicts() -> None:
    ok = model.TestResult("kcmp/kcmp_test/a", Status.PASS)
    skipped = model.TestResult("clone3", Status.SKIP, "not built: needs libcap for armv7, ...")
    assert outcome([ok, skipped], []).status is Status.PASS
    assert outcome([skipped], []).status is Status.SKIP
    failed = outcome([ok, model.TestResult("kcmp/x/y", Status.FAIL)], [])
    assert failed.status is Status.FAIL and "kcmp/x/y" in failed.message
    assert "1 passed, 0 failed, 1 skipped" in outcome([ok, skipped], []).message


def test_shipped_collections_cover_the_issue() -> None:
    names = [c.name for c in load_collections(SUITES_DIR / "kselftest")]
    assert names == ["clone3", "pidfd", "ptrace", "proc", "timens", "kcmp", "vm", "rseq", "sigaltstack",
                     "pid_namespace", "cgroup", "futex", "membarrier", "mount_setattr"]
    assert all(c.timeout > 0 for c in load_collections(SUITES_DIR / "kselftest"))


def test_bad_collections_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "collections.yaml").write_text("collections: [kcmp, kcmp]\n")
    with pytest.raises(ValueError, match="distinct"):
        load_collections(tmp_path)
    (tmp_path / "collections.yaml").write_text("collections: ['../x']\n")
    with pytest.raises(ValueError, match="not a selftest collection"):
        load_collections(tmp_path)


# -- for real --------------------------------------------------------------------------------------

CI_CONFIG = """\
# CI: one kselftest collection on x86_64, on the linux-6.1 kernel of configs/targets.yaml
kernels: [linux-6.1]
targets: [x86_64]
suites: [kselftest-ci]
options: {jobs: 1, retries: 0, timeouts: {boot: 240, run: 900}}
"""


@pytest.fixture(scope="module")
def kselftest_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    require_qemu("qemu-system-x86_64")
    work = tmp_path_factory.mktemp("kselftest")
    config = work / "kselftest-ci.yaml"
    config.write_text(CI_CONFIG)
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "harness.py"), "run", str(config), "--results",
                           str(work / "results"), "--plain", "--no-install"], text=True, capture_output=True,
                          timeout=3600, env={**os.environ, "CRLAB_PLAIN": "1"}, cwd=REPO_ROOT)
    results = work / "results" / "latest" / "results.json"
    assert results.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    job = json.loads(results.read_text())["jobs"][0]
    job["__exit__"], job["__out__"] = proc.returncode, proc.stdout[-3000:]
    job["__dir__"] = str((work / "results" / "latest").resolve())
    return dict(job)


@pytest.mark.boot
@pytest.mark.slow
def test_collections_run_in_a_guest_and_every_leaf_is_recorded(kselftest_run: dict[str, Any]) -> None:
    job = kselftest_run
    tests = {t["name"]: t for t in job["tests"]}
    assert tests, f"no results; exit {job['__exit__']}: {job['__out__']}"
    assert all(name.split("/")[0] in ("clone3", "kcmp", "sigaltstack") for name in tests), sorted(tests)
    # sas reports each check as a KTAP subtest: a leaf collection/test/subtest; its first check
    # holds on any kernel
    assert tests["sigaltstack/sas/Initial sigaltstack state was SS_DISABLE"]["status"] == "pass", tests
    # kcmp_test prints no per-check results, so the program is the leaf; it needs
    # CHECKPOINT_RESTORE, which the CRIU kernel of x86_64 has
    assert tests["kcmp/kcmp_test"]["status"] == "pass", tests
    built = job["info"]["selftests"]["built"]
    assert built["kcmp"] is True and built["sigaltstack"] is True
    if not built["clone3"]:  # no libcap for the target: one SKIP that says why, never dropped
        assert tests["clone3"]["status"] == "skip" and "libcap" in tests["clone3"]["message"]
    assert job["timings"]["selftests_build_s"] > 0
    assert job["status"] == "pass", job.get("message")


def test_a_collection_the_runner_lists_no_test_for_is_known(tmp_path: Path) -> None:
    # linux-6.1's mount_setattr/Makefile builds its program as TEST_GEN_FILES: built, never listed
    listing = tmp_path / "kselftest-list.txt"
    listing.write_text("kcmp:kcmp_test\nfutex:run.sh\n")
    assert listed_collections(listing) == {"kcmp", "futex"}
    assert listed_collections(tmp_path / "missing.txt") == set()
