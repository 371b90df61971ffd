"""crctl: cross-built statically for all five targets; `crctl info` run on the host (x86_64 and i386
builds) agrees with the Python decoder record by record on every target's image; checkpoint and
restart on the host kernel (which has no linux-cr series) give the documented ENOSYS exit.

The images come from crlab.v21.writer, and one from a real kernel (tests/data/linuxcr/)."""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path

import pytest

from crlab.abicheck import DEFAULT_TARGETS
from crlab.cache import Cache
from crlab.paths import REPO_ROOT
from crlab.targets import get_profile
from crlab.userland.elf import check_elf, runs_on_this_host
from crlab.v21 import DecodeError, read_records, tables_for_tree
from crlab.v21.crctl import build_crctl
from crlab.v21.info import info_lines
from crlab.v21.writer import sample_image
from tests.conftest import require_cross_compilers

pytestmark = pytest.mark.xdist_group("crctl")


@pytest.fixture(scope="module", autouse=True)
def cross_compilers() -> None:
    require_cross_compilers()


@pytest.fixture(scope="module")
def crctl_builds() -> dict[str, Path]:
    cache = Cache()
    return {t: build_crctl(get_profile(t), cache) for t in DEFAULT_TARGETS}


@pytest.fixture(scope="module")
def host_crctl(crctl_builds: dict[str, Path]) -> Path:
    if not runs_on_this_host(get_profile("x86_64")):
        pytest.skip(f"the host ({os.uname().machine}) does not run x86_64 programs")
    return crctl_builds["x86_64"]


TABLES = tables_for_tree()


def test_cross_built_static_for_every_target(crctl_builds: dict[str, Path]) -> None:
    assert list(crctl_builds) == list(DEFAULT_TARGETS)
    for target, binary in crctl_builds.items():
        profile = get_profile(target)
        elf = check_elf(binary, profile, static=True, what=f"crctl for {target}")
        assert (elf.bits, elf.endian) == (profile.elf_bits, profile.elf_endian)


def _info(binary: Path, image: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), "info", str(image)], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("builder", ["x86_64", "i386"])
@pytest.mark.parametrize("target", DEFAULT_TARGETS)
def test_info_agrees_with_python_decoder(crctl_builds: dict[str, Path], host_crctl: Path, tmp_path: Path,
                                         target: str, builder: str) -> None:
    if not runs_on_this_host(get_profile(builder)):
        pytest.skip(f"the host does not run {builder} programs")
    for error in (False, True):
        data = sample_image(TABLES, target, error=error)
        path = tmp_path / f"{target}.img"
        path.write_bytes(data)
        proc = _info(crctl_builds[builder], path)
        assert proc.returncode == 0, proc.stderr
        expected = info_lines(read_records(data, TABLES))
        assert proc.stdout.splitlines() == expected
        assert len(expected) > 40


def test_info_reports_the_same_offsets_on_bad_images(host_crctl: Path, tmp_path: Path) -> None:
    data = sample_image(TABLES, "ppc64")  # big-endian, read by an x86_64 crctl
    image = read_records(data, TABLES)
    cases: dict[str, bytes] = {"empty": b"", "garbage": b"\x7fELF" + bytes(80)}
    for rec in image.records[1::3]:
        cases[f"cut-{rec.offset}+3"] = data[:rec.offset + 3]
        cases[f"cut-{rec.offset}+9"] = data[:rec.offset + 9]
        bad_len = bytearray(data)
        bad_len[rec.offset + 4:rec.offset + 8] = (2**32 - 1).to_bytes(4, "big")
        cases[f"len-{rec.offset}"] = bytes(bad_len)
        bad_type = bytearray(data)
        bad_type[rec.offset:rec.offset + 4] = (4242).to_bytes(4, "big")
        cases[f"type-{rec.offset}"] = bytes(bad_type)
    cases["trailing"] = data + bytes(8)
    cases["no-tail"] = data[:image.records[-1].offset]
    for name, bad in cases.items():
        with pytest.raises(DecodeError) as info:
            read_records(bad, TABLES)
        path = tmp_path / f"{name}.img"
        path.write_bytes(bad)
        proc = _info(host_crctl, path)
        assert proc.returncode == 4, (name, proc.stderr)
        assert proc.stderr.startswith(f"crctl: offset {info.value.offset}: "), (name, proc.stderr, str(info.value))
    assert len(cases) > 70


def test_checkpoint_and_restart_without_the_series(host_crctl: Path, tmp_path: Path) -> None:
    """The host kernel has no linux-cr series: ENOSYS, exit 3, a clear message, no file left behind."""
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        image = tmp_path / "sleep.img"
        proc = subprocess.run([str(host_crctl), "checkpoint", str(sleeper.pid), str(image)], capture_output=True,
                              text=True, timeout=30)
        assert proc.returncode == 3, proc.stderr
        assert "checkpoint(2) is not available: this kernel has no checkpoint/restart" in proc.stderr
        assert not image.exists()
        existing = tmp_path / "keep.img"
        existing.write_bytes(b"precious")
        proc = subprocess.run([str(host_crctl), "checkpoint", str(sleeper.pid), str(existing)], capture_output=True,
                              text=True, timeout=30)
        assert proc.returncode == 2 and "cannot create" in proc.stderr and existing.read_bytes() == b"precious"
    finally:
        sleeper.kill()
        sleeper.wait()
    sample = tmp_path / "sample.img"
    sample.write_bytes(sample_image(TABLES, "x86_64"))
    proc = subprocess.run([str(host_crctl), "restart", str(sample)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 3 and "restart(2) is not available" in proc.stderr
    for args in ([], ["info"], ["checkpoint", "x1", "f"], ["frobnicate", "f"]):
        proc = subprocess.run([str(host_crctl), *args], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2, args


def test_info_agrees_with_python_decoder_on_a_real_image(host_crctl: Path, tmp_path: Path) -> None:
    """An image linux-6.1-cr (patches 0001-0009) wrote on x86_64 (tests/test_v21_golden.py): the
    file table's records too."""
    data = gzip.decompress((REPO_ROOT / "tests" / "data" / "linuxcr" / "fifo-x86_64-img1.img.gz").read_bytes())
    path = tmp_path / "fifo.img"
    path.write_bytes(data)
    proc = _info(host_crctl, path)
    assert proc.returncode == 0, proc.stderr
    expected = info_lines(read_records(data, TABLES))
    assert proc.stdout.splitlines() == expected
    assert any(" FILE_DESC " in line for line in expected) and any(" PIPE_BUF " in line for line in expected)
