"""The CRIU image decoder (Debian's pycriu under Debian's python3): real images decode; corrupt,
truncated or foreign ones give one clear error naming the file and the byte offset, never a
traceback.  The images are encoded by pycriu itself, the same library CRIU's crit uses."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crlab.engines.base import ImageError
from crlab.engines.criu import HOST_PYTHON, CriuEngine

MAKE_IMAGES = r"""
import sys
from pycriu import images
out = sys.argv[1]
def put(name, img):
    with open(out + "/" + name, "wb") as f:
        images.dump(img, f)
put("inventory.img", {"magic": "INVENTORY", "entries": [{"img_version": 2, "fdinfo_per_id": True,
    "ns_per_id": True, "root_cg_set": 1, "lsmtype": "NO_LSM", "dump_uptime": 4242}]})
put("pstree.img", {"magic": "PSTREE", "entries": [
    {"pid": 120, "ppid": 1, "pgid": 120, "sid": 120, "threads": [120]},
    {"pid": 121, "ppid": 120, "pgid": 120, "sid": 120, "threads": [121]}]})
put("pagemap-120.img", {"magic": "PAGEMAP", "entries": [{"pages_id": 1},
    {"vaddr": 4194304, "nr_pages": 2, "flags": 4}, {"vaddr": 8388608, "nr_pages": 1, "flags": 4}]})
with open(out + "/pages-1.img", "wb") as f:
    f.write(bytes(range(256)) * 48)
"""


def _have_pycriu() -> bool:
    return (shutil.which(HOST_PYTHON) is not None
            and subprocess.run([HOST_PYTHON, "-c", "import pycriu"], capture_output=True).returncode == 0)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not _have_pycriu():
        if os.environ.get("CI"):
            pytest.fail("Debian's criu package (pycriu) is missing; `harness.py selftest` installs it")
        pytest.skip("Debian's criu package (pycriu) is not installed; `harness.py selftest` installs it")
    out = tmp_path_factory.mktemp("criu-images")
    subprocess.run([HOST_PYTHON, "-c", MAKE_IMAGES, str(out)], check=True)
    return out


def test_real_images_decode_with_page_runs_hashed(images: Path) -> None:
    tree = CriuEngine().decode(images)
    files = tree["files"]
    assert files["pstree.img"]["entries"][1]["ppid"] == 120
    assert files["inventory.img"]["entries"][0]["dump_uptime"] == 4242
    pages = files["pages-1.img"]
    assert pages["size"] == 3 * 4096 and [r["nr_pages"] for r in pages["runs"]] == [2, 1]


def test_a_foreign_file_is_named_with_its_offset(images: Path, tmp_path: Path) -> None:
    bad = tmp_path / "img"
    shutil.copytree(images, bad)
    (bad / "core-120.img").write_bytes(b"\x7fELF" + bytes(60))
    with pytest.raises(ImageError, match=r"core-120\.img: offset 0: not a CRIU image"):
        CriuEngine().decode(bad)


def test_pages_shorter_than_the_pagemap_says(images: Path, tmp_path: Path) -> None:
    bad = tmp_path / "img"
    shutil.copytree(images, bad)
    (bad / "pages-1.img").write_bytes(bytes(4096 * 2 + 100))
    with pytest.raises(ImageError, match=r"pages-1\.img: offset \d+: the pagemap promises 1 pages"):
        CriuEngine().decode(bad)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(file=st.sampled_from(["inventory.img", "pstree.img", "pagemap-120.img"]),
       cut=st.integers(min_value=0, max_value=200), flips=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)),
                                                                    max_size=4),
       truncate=st.booleans())
def test_damaged_images_give_a_clear_error_or_decode(images: Path, tmp_path: Path, file: str, cut: int,
                                                     flips: list[tuple[int, int]], truncate: bool) -> None:
    work = tmp_path / f"img-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(images, work)
    data = bytearray((work / file).read_bytes())
    if truncate:
        data = data[: cut % (len(data) + 1)]
    for offset, value in flips:
        if data:
            data[offset % len(data)] = value
    (work / file).write_bytes(bytes(data))
    try:
        CriuEngine().decode(work)
    except ImageError as exc:
        message = str(exc)
        assert "Traceback" not in message
        assert ".img" in message and "offset" in message, message
