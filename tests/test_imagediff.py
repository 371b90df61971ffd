"""Normalising and diffing decoded checkpoint images (pure logic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crlab import imagediff
from crlab.engines.criu import RULES


def _image(pids: tuple[int, int], ino: int, counter: int, uptime: int) -> dict[str, object]:
    root, child = pids
    return {"engine": "criu", "files": {
        "inventory.img": {"magic": "INVENTORY", "entries": [{"img_version": 2, "dump_uptime": uptime}]},
        "pstree.img": {"magic": "PSTREE", "entries": [
            {"pid": root, "ppid": 1, "pgid": root, "sid": root, "threads": [root]},
            {"pid": child, "ppid": root, "pgid": root, "sid": root, "threads": [child]}]},
        f"core-{root}.img": {"magic": "CORE", "entries": [{"tc": {"comm": "counter"},
                                                          "thread_info": {"gpregs": {"ip": counter}}}]},
        f"core-{child}.img": {"magic": "CORE", "entries": [{"tc": {"comm": "counter"}}]},
        "pipes.img": {"magic": "PIPES", "entries": [{"id": 1, "pipe_id": ino, "flags": 0}]},
        "stats-dump.img": {"magic": "STATS", "entries": [{"dump": {"freezing_time": counter}}]},
    }}


def test_the_same_state_with_other_pids_inodes_and_times_is_equal() -> None:
    before = imagediff.normalise(_image((120, 121), 9001, 5, 100), RULES)
    after = imagediff.normalise(_image((340, 377), 12345, 9, 999), RULES)
    assert imagediff.diff(before, after) == []
    assert "core-P0.img" in before["files"] and "core-P1.img" in before["files"]
    assert "stats-dump.img" not in before["files"]


def test_a_real_change_is_reported_with_its_path() -> None:
    a = _image((120, 121), 9001, 5, 100)
    b = _image((120, 121), 9001, 5, 100)
    b["files"]["pipes.img"]["entries"][0]["flags"] = 2048  # type: ignore[index]
    del b["files"]["core-121.img"]  # type: ignore[attr-defined]
    differences = imagediff.diff(imagediff.normalise(a, RULES), imagediff.normalise(b, RULES))
    paths = [d.path for d in differences]
    assert paths == ["files/core-P1.img", "files/pipes.img/entries/0/flags"]
    assert "0 -> 2048" in str(differences[1])


def test_known_differences_need_a_reason_and_match_by_glob(tmp_path: Path) -> None:
    known_file = tmp_path / "known.yaml"
    known_file.write_text("- path: files/pipes.img/entries/*/flags\n  reason: O_NONBLOCK is set by the restorer\n"
                          "  tests: [pipe]\n")
    known = imagediff.load_known(known_file)
    differences = [imagediff.Difference("files/pipes.img/entries/0/flags", 0, 2048),
                   imagediff.Difference("files/core-P0.img/entries/0/tc/comm", "a", "b")]
    explained = imagediff.explain(differences, known, "pipe", "criu", "same-kernel")
    assert [d.path for d in explained.unexplained] == ["files/core-P0.img/entries/0/tc/comm"]
    assert explained.known[0][1] == "O_NONBLOCK is set by the restorer"
    other_test = imagediff.explain(differences, known, "fifo", "criu", "same-kernel")
    assert len(other_test.unexplained) == 2
    known_file.write_text("- path: files/*\n")
    with pytest.raises(ValueError, match="needs a path and a reason"):
        imagediff.load_known(known_file)


def test_a_time_namespace_criu_numbered_otherwise_is_the_same_and_a_second_one_shows() -> None:
    """After a restore the task sits in a time namespace CRIU created, which the next dump numbers
    differently (timens-0.img with time_ns_id 5, then timens-9.img with 9, as seen on linux-6.1 with
    CONFIG_TIME_NS): the same state.  A different namespace layout still shows."""
    def image(ns_id: int, extra: bool = False) -> dict[str, object]:
        files: dict[str, object] = {
            "pstree.img": {"magic": "PSTREE", "entries": [{"pid": 50, "ppid": 1, "threads": [50]}]},
            "ids-50.img": {"magic": "IDS", "entries": [{"time_ns_id": ns_id, "uts_ns_id": 3}]},
            # as seen: the first dump names its file timens-0.img although ids.img says 5
            f"timens-{0 if ns_id == 5 else ns_id}.img": {"magic": "TIMENS",
                                                         "entries": [{"monotonic": {"tv_sec": ns_id}}]},
        }
        if extra:
            files[f"timens-{ns_id + 1}.img"] = {"magic": "TIMENS", "entries": [{}]}
        return {"engine": "criu", "files": files}

    first = imagediff.normalise(image(5), RULES)
    assert "timens-#1.img" in first["files"] and "ids-P0.img" in first["files"]
    assert imagediff.diff(first, imagediff.normalise(image(9), RULES)) == []
    changed = [d.path for d in imagediff.diff(first, imagediff.normalise(image(9, extra=True), RULES))]
    assert "files/timens-#2.img" in changed, changed
