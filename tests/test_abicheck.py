"""abi-check with the real cross compilers of all five targets (compile only; about a second)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from crlab.abicheck import (
    DEFAULT_SERIES,
    DEFAULT_TARGETS,
    AbiError,
    Field,
    Layout,
    Struct,
    check_header,
    check_series,
    compare,
    series_patches,
)
from crlab.paths import REPO_ROOT
from tests.conftest import require_cross_compilers


@pytest.fixture(scope="module", autouse=True)
def cross_compilers() -> None:
    require_cross_compilers()


UNPADDED = """\
#ifndef _UAPI_LINUX_CHECKPOINT_HDR_H
#define _UAPI_LINUX_CHECKPOINT_HDR_H
#include <linux/types.h>
struct ckpt_rec { __u32 type; __u32 len; };
struct ckpt_rec_bad {
\tstruct ckpt_rec h;
\t__u32 count;
\t__u64 address;
};
#endif
"""


def new_file_patch(path: str, text: str, subject: str) -> str:
    lines = text.splitlines()
    body = "".join(f"+{line}\n" for line in lines)
    return (f"From: test <test@localhost>\nSubject: [PATCH] {subject}\n\n---\n"
            f"diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n"
            f"@@ -0,0 +1,{len(lines)} @@\n{body}")


def test_shipped_series_agrees_on_all_five_targets() -> None:
    report = check_series(DEFAULT_SERIES)
    assert [lay.target for lay in report.layouts] == list(DEFAULT_TARGETS)
    assert report.ok, report.text()
    x86_64 = report.layouts[0]
    # the sizes the v21 format documents, as every compiler laid them out
    documented = {"ckpt_rec_header": 72, "ckpt_rec_tail": 16, "ckpt_rec_objref": 16, "ckpt_rec_task": 64,
                  "ckpt_rec_task_objs": 32, "ckpt_rec_restart_block": 56, "ckpt_rec_mm": 120, "ckpt_rec_vma": 72,
                  "ckpt_rec_pgarr": 16, "ckpt_rec_file": 48, "ckpt_rec_file_desc": 24, "ckpt_rec_signal": 328,
                  "ckpt_rec_cred": 96, "ckpt_rec_x86_cpu": 192}
    for lay in report.layouts:
        assert {name: lay.structs[name].size for name in documented} == documented, lay.target
    assert x86_64.structs["ckpt_rec_header"].field("time").offset == 56
    assert x86_64.constants["CKPT_REC_TAIL"] == 9001
    assert x86_64.constants["CKPT_MAGIC_HEAD"] == 0x00FEED0CC0A2D200
    # the syscall numbers exist where the series wires them, and nowhere else yet
    numbers = {lay.target: lay.constants.get("CKPT_NR_CHECKPOINT") for lay in report.layouts}
    assert numbers == {"x86_64": 500, "i386": 500, "ppc64": None, "ppc64le": None, "armv7": None}


def test_unpadded_field_fails_naming_struct_field_and_targets(tmp_path: Path) -> None:
    series = tmp_path / "series-dir"
    series.mkdir()
    (series / "0001-bad.patch").write_text(
        new_file_patch("include/uapi/linux/checkpoint_hdr.h", UNPADDED, "a record without padding"))
    (series / "series").write_text("0001-bad.patch\n")
    report = check_series(series)
    assert not report.ok
    text = report.text()
    offset = next(p for p in report.problems if p.field == "address" and p.what == "offset")
    assert offset.struct == "ckpt_rec_bad"
    assert offset.values == {"16": "x86_64, ppc64, ppc64le, armv7", "12": "i386"}
    size = next(p for p in report.problems if p.field == "" and p.what == "size")
    assert size.values == {"24": "x86_64, ppc64, ppc64le, armv7", "20": "i386"}
    assert ("struct ckpt_rec_bad, field address: offset differs: 16 on x86_64, ppc64, ppc64le, armv7; 12 on i386"
            in text)
    assert ("struct ckpt_rec_bad, field address: 4 byte(s) of implicit padding at offset 12 before address "
            "on x86_64, ppc64, ppc64le, armv7") in text
    # the well-padded pre-header is not blamed
    assert not any(p.struct == "ckpt_rec" for p in report.problems)


def test_cli_exit_codes(tmp_path: Path) -> None:
    bad = tmp_path / "checkpoint_hdr.h"
    bad.write_text(UNPADDED)
    harness = [sys.executable, str(REPO_ROOT / "harness.py"), "abi-check"]
    failing = subprocess.run([*harness, "--header", str(bad), "--targets", "x86_64", "i386"],
                             capture_output=True, text=True)
    assert failing.returncode == 1, failing.stderr
    assert "FAIL: struct ckpt_rec_bad, field address: offset differs: 16 on x86_64; 12 on i386" in failing.stdout
    passing = subprocess.run(harness, capture_output=True, text=True)
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert passing.stdout.rstrip().endswith("on x86_64, i386, ppc64, ppc64le, armv7, with no implicit padding")
    unknown = subprocess.run([*harness, "--targets", "vax"], capture_output=True, text=True)
    assert unknown.returncode == 2 and "unknown target(s): vax" in unknown.stderr
    missing = subprocess.run([*harness, "--series", str(tmp_path / "none")], capture_output=True, text=True)
    assert missing.returncode == 2 and "no quilt series" in missing.stderr


def test_header_that_does_not_compile_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "checkpoint_hdr.h"
    broken.write_text("struct ckpt_rec { __u32 type; };\n")  # no <linux/types.h>
    with pytest.raises(AbiError, match=r"x86_64: the header does not compile with x86_64-linux-gnu-gcc: .*__u32"):
        check_header(broken, ["x86_64"])


def test_compare_names_missing_structs_and_fields() -> None:
    a = Layout("t1", {"ckpt_x": Struct("ckpt_x", 8, (Field("a", 0, 8, "u64"),)),
                      "ckpt_y": Struct("ckpt_y", 8, (Field("a", 0, 8, "u64"),))})
    b = Layout("t2", {"ckpt_x": Struct("ckpt_x", 8, (Field("a", 0, 4, "u32"), Field("b", 4, 4, "u32")))})
    problems = {str(p) for p in compare([a, b])}
    assert problems == {
        "struct ckpt_x, field a: size differs: 8 on t1; 4 on t2",
        "struct ckpt_x, field a: type differs: u64 on t1; u32 on t2",
        "struct ckpt_x, field b: presence differs: absent on t1; present on t2",
        "struct ckpt_y: absent on t2; present on t1",
    }


def test_syscall_numbers_in_the_header_match_the_tables_the_series_patches() -> None:
    """checkpoint.h gives programs built against older headers the numbers; they must be the ones the
    series wires into the x86 tables (64-bit table for x86_64, 32-bit table for i386 and compat)."""
    wired: dict[str, dict[str, int]] = {}
    for patch in series_patches(DEFAULT_SERIES):
        table = None
        for line in patch.read_text().splitlines():
            if line.startswith("+++ b/arch/x86/entry/syscalls/"):
                table = "x86_64" if line.endswith("syscall_64.tbl") else "i386"
            elif line.startswith("+++ "):
                table = None
            elif table and line.startswith("+") and not line.startswith("+#"):
                number, _abi, name, *_entry = line[1:].split()
                wired.setdefault(table, {})[name] = int(number)
    assert wired == {"x86_64": {"checkpoint": 500, "restart": 501}, "i386": {"checkpoint": 500, "restart": 501}}
    layouts = {lay.target: lay for lay in check_series(DEFAULT_SERIES, ["x86_64", "i386"]).layouts}
    for target, calls in wired.items():
        assert layouts[target].constants["CKPT_NR_CHECKPOINT"] == calls["checkpoint"]
        assert layouts[target].constants["CKPT_NR_RESTART"] == calls["restart"]


def test_kernel_size_checks_agree_with_every_compiler() -> None:
    """kernel/checkpoint/format.c (patch 1) pins record sizes in the kernel build; every target's
    compiler must lay the structs out at exactly those sizes."""
    import re

    text = "\n".join(line[1:] for patch in series_patches(DEFAULT_SERIES)
                     for line in patch.read_text().splitlines() if line.startswith("+"))
    checks = re.findall(r"static_assert\(sizeof\(struct (\w+)\) == (\d+)\);", text)
    pinned = {name: int(size) for name, size in checks}
    report = check_series(DEFAULT_SERIES)
    for lay in report.layouts:
        assert {name: lay.structs[name].size for name in pinned} == pinned, lay.target
    assert len(pinned) >= 35
