"""The newc writer, checked against the host's GNU cpio (Debian's `cpio` package)."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from crlab.cpio import CpioWriter, normalize
from tests.conftest import missing_prerequisite


@pytest.fixture(autouse=True)
def _host_cpio() -> None:
    if shutil.which("cpio") is None:
        missing_prerequisite("needs the host's cpio to read the archives back")


def _sample(tmp_path: Path) -> CpioWriter:
    host = tmp_path / "host.txt"
    host.write_bytes(b"from the host\n")
    w = CpioWriter()
    w.add_dir("etc")
    w.add_file("etc/hostname", b"guest\n")
    w.add_file("init", b"#!/bin/sh\necho hi\n", mode=0o755)
    w.add_file("usr/share/host.txt", host)  # parents added on the fly
    w.add_file("empty", b"")
    w.add_symlink("bin/sh", "busybox")
    w.add_chardev("dev/console", 5, 1)
    w.add_chardev("/dev/null", 1, 3, mode=0o666)
    return w


def _list(archive: Path, verbose: bool = False) -> list[str]:
    flags = "-tv" if verbose else "-t"
    with open(archive, "rb") as fh:
        out = subprocess.run(["cpio", flags, "--quiet"], stdin=fh, capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def _name(long_line: str) -> str:
    """The file name in a `cpio -tv` line (device lines have one column more; symlinks end in -> x)."""
    return long_line.split(" -> ")[0].split()[-1]


def test_listing_names_and_types(tmp_path: Path) -> None:
    archive = _sample(tmp_path).write(tmp_path / "a.cpio", compress=None)
    names = _list(archive)
    assert names == [
        "bin",
        "bin/sh",
        "dev",
        "dev/console",
        "dev/null",
        "empty",
        "etc",
        "etc/hostname",
        "init",
        "usr",
        "usr/share",
        "usr/share/host.txt",
    ]
    long = {_name(line): line for line in _list(archive, True)}
    assert long["dev/console"].startswith("crw-------")
    assert re.search(r" 5,\s+1 ", long["dev/console"])
    assert re.search(r" 1,\s+3 ", long["dev/null"])
    assert long["dev/null"].startswith("crw-rw-rw-")
    assert long["bin/sh"].startswith("lrwxrwxrwx")
    assert long["bin/sh"].endswith("bin/sh -> busybox")
    assert long["init"].startswith("-rwxr-xr-x")
    assert long["etc/hostname"].startswith("-rw-r--r--")
    assert long["etc"].startswith("drwxr-xr-x")
    for line in long.values():
        assert line.split()[2:4] == ["root", "root"]
        assert "Jan  1  1970" in line  # mtime 0


def test_extract_contents(tmp_path: Path) -> None:
    archive = _sample(tmp_path).write(tmp_path / "a.cpio.gz")
    raw = _raw(tmp_path, gzip.decompress(archive.read_bytes()))
    out = tmp_path / "x"
    out.mkdir()
    # everything but the device nodes (those need mknod: see the root-only test below)
    patterns = tmp_path / "patterns"
    patterns.write_text("\n".join(n for n in _list(raw) if not n.startswith("dev/")) + "\n")
    with open(raw, "rb") as fh:
        done = subprocess.run(
            ["cpio", "-idv", "-E", str(patterns)],
            stdin=fh,
            cwd=out,
            check=True,
            capture_output=True,
            text=True,
        )
    assert "usr/share/host.txt" in done.stderr
    assert (out / "etc/hostname").read_bytes() == b"guest\n"
    assert (out / "usr/share/host.txt").read_bytes() == b"from the host\n"
    assert (out / "empty").read_bytes() == b""
    assert os.readlink(out / "bin/sh") == "busybox"
    assert stat.S_IMODE((out / "init").stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "etc/hostname").stat().st_mode) == 0o644


def _raw(tmp_path: Path, raw: bytes) -> Path:
    path = tmp_path / "raw.cpio"
    path.write_bytes(raw)
    return path


def test_extract_device_node_as_root(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        missing_prerequisite("creating device nodes needs root")
    archive = _sample(tmp_path).write(tmp_path / "a.cpio", compress=None)
    out = tmp_path / "x"
    out.mkdir()
    with open(archive, "rb") as fh:
        subprocess.run(["cpio", "-id", "--quiet"], stdin=fh, cwd=out, check=True)
    st = (out / "dev/console").lstat()
    assert stat.S_ISCHR(st.st_mode)
    assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (5, 1)


def test_format_details(tmp_path: Path) -> None:
    w = CpioWriter()
    w.add_file("a", b"xyz", mode=0o640)
    raw = w.to_bytes()
    assert raw.startswith(b"070701")
    # header (110) + "a\0" = 112, already aligned; 3 data bytes + 1 pad; then the trailer
    assert raw[110:112] == b"a\0"
    assert raw[112:116] == b"xyz\0"
    assert raw[116:122] == b"070701"
    assert b"TRAILER!!!\0" in raw[116:]
    assert len(raw) % 4 == 0
    ino, mode, uid, gid, nlink, mtime, size = (int(raw[6 + 8 * i : 14 + 8 * i], 16) for i in range(7))
    assert (ino, mode, uid, gid, nlink, mtime, size) == (1, 0o100640, 0, 0, 1, 0, 3)


def test_deterministic(tmp_path: Path) -> None:
    a = _sample(tmp_path).write(tmp_path / "a.gz")
    b = _sample(tmp_path).write(tmp_path / "b.gz")
    assert a.read_bytes() == b.read_bytes()
    # gzip header carries mtime 0 and no file name
    assert a.read_bytes()[4:8] == b"\0\0\0\0"
    assert a.read_bytes()[3] & 0x08 == 0


def test_add_tree_keeps_modes_and_symlinks(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "usr/bin").mkdir(parents=True)
    (src / "usr/bin/tool").write_bytes(b"\x7fELF")
    (src / "usr/bin/tool").chmod(0o700)
    (src / "usr/lib").mkdir()
    (src / "usr/lib/data").write_text("d")
    (src / "usr/lib/data").chmod(0o600)
    (src / "lib").symlink_to("usr/lib")  # a symlink to a directory stays a symlink
    (src / "usr/lib/libx.so.1").symlink_to("libx.so.1.2")
    w = CpioWriter()
    w.add_tree(src, prefix="root")
    assert w.paths() == [
        "root",
        "root/lib",
        "root/usr",
        "root/usr/bin",
        "root/usr/bin/tool",
        "root/usr/lib",
        "root/usr/lib/data",
        "root/usr/lib/libx.so.1",
    ]
    archive = w.write(tmp_path / "t.cpio", compress=None)
    long = _list(archive, True)
    by_name = {_name(line): line for line in long}
    assert by_name["root/usr/bin/tool"].startswith("-rwxr-xr-x")
    assert by_name["root/usr/lib/data"].startswith("-rw-r--r--")
    assert by_name["root/lib"].startswith("lrwxrwxrwx") and by_name["root/lib"].endswith("-> usr/lib")
    assert by_name["root/usr/lib/libx.so.1"].endswith("-> libx.so.1.2")


def test_later_entries_override_and_conflicts(tmp_path: Path) -> None:
    w = CpioWriter()
    w.add_file("etc/motd", b"one")
    w.add_file("etc/motd", b"two")
    assert b"two" in w.to_bytes() and b"one" not in w.to_bytes()
    with pytest.raises(ValueError):
        w.add_symlink("etc", "/somewhere")  # would orphan etc/motd
    with pytest.raises(ValueError):
        w.add_file("etc/motd/x", b"")  # a file is not a directory
    with pytest.raises(ValueError):
        normalize("../escape")
    assert normalize("/./a//b/") == "a/b"
