"""The v21 decoder and the linux-cr engine's canonical form on images a real kernel wrote.

tests/data/linuxcr/ holds images that linux-6.1-cr (patches 0001-0009; 0001-0010 for the itimers
images further down) wrote on x86_64 in a run of configs/linux-cr.yaml (gzipped as they were):
fifo-x86_64-img1 is the suites/cr `fifo` test as
started, img2 the same test restarted from img1 and checkpointed again (the round trip's C and
C').  They carry the records of the file table: FILE_TABLE, FILE_DESC, GENERIC files with their
FILE_NAME (/dev/null and the test's log, shared by fds 1 and 2), and the two ends of a FIFO that
refer to one pipe object whose PIPE_BUF and BUFFER hold the 3000 unread bytes.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import pytest

from crlab import imagediff
from crlab.crsuite import known_differences
from crlab.engines.linuxcr import IMAGE_FILE, RULES, LinuxCrEngine, comparable
from crlab.paths import REPO_ROOT, SUITES_DIR
from crlab.v21 import decode, tables_for_tree
from crlab.v21.info import info_lines
from tests.conftest import require_cross_compilers

DATA = REPO_ROOT / "tests" / "data" / "linuxcr"


@pytest.fixture(scope="module", autouse=True)
def cross_compilers() -> None:
    require_cross_compilers()


def _golden(name: str) -> bytes:
    return gzip.decompress((DATA / f"{name}.img.gz").read_bytes())


def test_fifo_image_file_table_records() -> None:
    image, tree = decode(_golden("fifo-x86_64-img1"), tables_for_tree())
    assert (image.arch, image.word_size, image.byteorder) == ("X86_64", 8, "little")
    names = [r.name for r in image.records]
    # the file table comes first among the task's objects, each FILE before the first FILE_DESC using it
    table = names.index("FILE_TABLE")
    assert names[table - 1] == "OBJREF" and table < names.index("MM")
    assert names[table + 1:table + 24] == [
        "OBJREF", "FILE", "FILE_NAME", "FILE_DESC",  # fd 0: /dev/null
        "OBJREF", "FILE", "FILE_NAME", "FILE_DESC", "FILE_DESC",  # fds 1 and 2: one open log file
        "OBJREF", "FILE", "FILE_NAME", "PIPE_BUF", "BUFFER", "FILE_DESC",  # the FIFO's reader and its pipe
        "OBJREF", "FILE", "FILE_NAME", "FILE_DESC",  # the writer: the same pipe, no data again
        "OBJREF", "MM", "BUFFER", "OBJREF"]
    lines = [line for line in info_lines(image) if " FILE" in line or " PIPE_BUF" in line]
    assert [line.split(" ", 1)[1] for line in lines] == [
        "FILE_TABLE len=16 nfds=5",
        "FILE len=48 f_type=1 pos=0", "FILE_NAME len=18", "FILE_DESC len=24 fd=0 objref=2",
        "FILE len=48 f_type=1 pos=163", "FILE_NAME len=30", "FILE_DESC len=24 fd=1 objref=3",
        "FILE_DESC len=24 fd=2 objref=3",
        "FILE len=56 f_type=3 pos=0", "FILE_NAME len=31", "PIPE_BUF len=16 nr_bytes=3000",
        "FILE_DESC len=24 fd=3 objref=4",
        "FILE len=56 f_type=3 pos=0", "FILE_NAME len=31", "FILE_DESC len=24 fd=5 objref=6",
        "FILE len=48 f_type=1 pos=0", "FILE_NAME len=38"]  # the binary, met first by its VMA

    objects = tree["objects"]
    assert tree["tasks"][0]["objs"]["files_objref"] == 1
    fdt = objects[1]
    assert fdt["kind"] == "FILE_TABLE" and fdt["fdt_nfds"] == 5
    assert [(d["fd"], d["file_objref"], d["fd_cloexec"]) for d in fdt["fds"]] == [
        (0, 2, 0), (1, 3, 0), (2, 3, 0), (3, 4, 0), (5, 6, 0)]
    null, log, reader, writer = objects[2], objects[3], objects[4], objects[6]
    assert (null["f_type"], null["path"], null["f_flags"] & 0o3) == ("GENERIC", "/dev/null", os.O_RDONLY)
    assert (log["f_type"], log["path"], log["f_pos"]) == ("GENERIC", "/tmp/cr/fifo/fifo.log", 163)
    assert log["f_flags"] & (os.O_ACCMODE | os.O_APPEND) == os.O_WRONLY | os.O_APPEND
    for end in (reader, writer):
        assert (end["f_type"], end["path"], end["pipe_objref"]) == ("FIFO", "/tmp/cr/fifo/fifo.fifo", 5)
    assert reader["f_flags"] & (os.O_ACCMODE | os.O_NONBLOCK) == os.O_RDONLY | os.O_NONBLOCK
    assert writer["f_flags"] & (os.O_ACCMODE | os.O_NONBLOCK) == os.O_WRONLY
    # the pipe object comes with the first end met: its size and the bytes it holds, once
    assert (reader["pipe_bytes"], reader["pipe_size"]) == (3000, 65536)
    assert "pipe_bytes" not in writer and 5 not in objects  # a pipe is no OBJREF object
    assert tree["end"] == "TAIL"


def _engine_tree(tmp_path: Path, name: str) -> dict[str, Any]:
    where = tmp_path / name
    where.mkdir()
    (where / IMAGE_FILE).write_bytes(_golden(name))
    return LinuxCrEngine().decode(where)


def test_fifo_round_trip_is_empty_after_normalisation(tmp_path: Path) -> None:
    """C (the test as started) and C' (restarted from C, checkpointed again) of the real run: what
    restart recreates differently (the log's FMODE_CREATED, the FIFO reader's f_version) is made
    comparable, the rest must be equal."""
    before, after = _engine_tree(tmp_path, "fifo-x86_64-img1"), _engine_tree(tmp_path, "fifo-x86_64-img2")
    raw1 = decode(_golden("fifo-x86_64-img1"), tables_for_tree())[1]["objects"]
    raw2 = decode(_golden("fifo-x86_64-img2"), tables_for_tree())[1]["objects"]
    assert raw1[3]["f_mode"] & 0x100000 and not raw2[3]["f_mode"] & 0x100000  # what the rule is for
    assert (raw1[4]["f_version"], raw2[4]["f_version"]) == (1, 0)
    explained = imagediff.explain(
        imagediff.diff(imagediff.normalise(before, RULES), imagediff.normalise(after, RULES)),
        known_differences(SUITES_DIR / "cr"), "fifo", "linux-cr", "same-kernel")
    assert explained.empty, [str(d) for d in explained.unexplained]
    files = before["files"]
    assert files["file-obj4.img"]["pipe_objref"] == 1 and files["file-obj5.img"]["pipe_objref"] == 1
    assert "f_version" not in files["file-obj4.img"]


def test_fifo_data_change_is_a_difference(tmp_path: Path) -> None:
    """The normalisation keeps what matters: other bytes in the FIFO, or another offset of the
    (non-log) file, show."""
    before = _engine_tree(tmp_path, "fifo-x86_64-img1")
    after = _engine_tree(tmp_path, "fifo-x86_64-img2")
    after["files"]["file-obj4.img"]["pipe_data_sha256"] = "0" * 64
    after["files"]["file-obj2.img"]["f_pos"] = 7
    diffs = [str(d) for d in imagediff.diff(imagediff.normalise(before, RULES), imagediff.normalise(after, RULES))]
    assert any("file-obj4.img/pipe_data_sha256" in d for d in diffs), diffs
    assert any("file-obj2.img/f_pos" in d for d in diffs), diffs


def test_pipe_objects_are_renumbered_in_order() -> None:
    """Pipe objrefs share the objhash with the objects, so they shift like them: two pipes are
    named 1 and 2 in the order the kept FILE objects first name them, both ends keep one name."""
    def end(objref: int, pipe: int) -> dict[str, Any]:
        return {"objref": objref, "kind": "FILE", "f_type": "PIPE", "f_mode": 0x100001, "pipe_objref": pipe}

    data = {"engine": "linux-cr", "files": {
        "file_table-obj1.img": {"objref": 1, "kind": "FILE_TABLE", "fds": [
            {"fd": 3, "file_objref": 2}, {"fd": 4, "file_objref": 4}, {"fd": 5, "file_objref": 5}]},
        "file-obj2.img": end(2, 9), "file-obj4.img": end(4, 9), "file-obj5.img": end(5, 12)}}
    files = comparable(data)["files"]
    assert [files[f"file-obj{i}.img"]["pipe_objref"] for i in (2, 3, 4)] == [1, 1, 2]
    assert [fd["file_objref"] for fd in files["file_table-obj1.img"]["fds"]] == [2, 3, 4]
    assert files["file-obj2.img"]["f_mode"] == 0x1  # FMODE_CREATED is how it was opened


# itimers-x86_64-img1/img2: the suites/cr `itimers` test on x86_64 with patches 0001-0010 (see
# tests/data/linuxcr/README.md), its three timers armed: ITIMER_REAL every 100 ms, ITIMER_VIRTUAL
# every 20 ms, ITIMER_PROF every 30 ms.
ITIMER_INTERVALS = {"it_real_incr": 100_000_000, "it_virt_incr": 20_000_000, "it_prof_incr": 30_000_000}


def test_itimers_image_signal_object() -> None:
    """Patch 0010: an OBJREF of type SIGNAL and its record come after SIGHAND, before TASK_OBJS,
    which refers to it; the itimers are in nanoseconds (time left, interval), the rlimits as
    prlimit64(2) gives them (RLIM64_INFINITY for none)."""
    image, tree = decode(_golden("itimers-x86_64-img1"), tables_for_tree())
    names = [r.name for r in image.records]
    at = names.index("SIGNAL")
    assert names[at - 2:at + 3] == ["SIGHAND", "OBJREF", "SIGNAL", "TASK_OBJS", "THREAD"]
    ref = image.records[at - 1].fields
    assert ref["objtype"] == image.table.constant("CKPT_OBJ_SIGNAL") == 7
    assert tree["tasks"][0]["objs"]["signal_objref"] == ref["objref"]
    lines = [line.split(" ", 1)[1] for line in info_lines(image)]
    assert "SIGNAL len=328" in lines
    signal = tree["objects"][ref["objref"]]
    assert signal["kind"] == "SIGNAL"
    assert {k: signal[k] for k in ITIMER_INTERVALS} == ITIMER_INTERVALS
    for timer in ("real", "virt", "prof"):  # armed, with at most an interval (and a tick) left
        assert 0 < signal[f"it_{timer}_value"] <= signal[f"it_{timer}_incr"] + 10_000_000, timer
    assert (signal["flags"], signal["group_exit_code"], signal["reserved"]) == (0, 0, 0)
    rlim = signal["rlim"]
    assert len(rlim) == 16
    assert rlim[3] == {"rlim_cur": 8 << 20, "rlim_max": 2**64 - 1}  # RLIMIT_STACK: 8 MiB, no hard limit
    assert rlim[7] == {"rlim_cur": 1024, "rlim_max": 4096}  # RLIMIT_NOFILE
    assert all(r["rlim_cur"] <= r["rlim_max"] for r in rlim)


def test_itimers_round_trip_is_empty_after_normalisation(tmp_path: Path) -> None:
    """C and C' of the real run: the time each itimer had left differs (it counts down; the
    engine's RULES drop it), the intervals and rlimits the restart restored are equal."""
    before, after = _engine_tree(tmp_path, "itimers-x86_64-img1"), _engine_tree(tmp_path, "itimers-x86_64-img2")
    one, two = before["files"]["signal-obj6.img"], after["files"]["signal-obj6.img"]
    assert one["it_real_value"] != two["it_real_value"]  # what the rule is for
    assert {k: two[k] for k in ITIMER_INTERVALS} == ITIMER_INTERVALS and two["rlim"] == one["rlim"]
    explained = imagediff.explain(
        imagediff.diff(imagediff.normalise(before, RULES), imagediff.normalise(after, RULES)),
        known_differences(SUITES_DIR / "cr"), "itimers", "linux-cr", "same-kernel")
    assert explained.empty, [str(d) for d in explained.unexplained]
    # a lost interval or a lowered limit would show
    two["it_virt_incr"] = 0
    two["rlim"][7]["rlim_cur"] = 256
    diffs = [str(d) for d in imagediff.diff(imagediff.normalise(before, RULES), imagediff.normalise(after, RULES))]
    assert any("signal-obj6.img/it_virt_incr" in d for d in diffs), diffs
    assert any("signal-obj6.img/rlim/7/rlim_cur" in d for d in diffs), diffs
