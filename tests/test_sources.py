"""Kernel source kinds other than Debian's package: tarball (checked by sha256), git, local tree."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from crlab import kernel as kstages
from crlab.cache import Cache
from crlab.config import KernelSource


def _make_tree(root: Path) -> Path:
    (root / "kernel").mkdir(parents=True)
    (root / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 1\n")
    (root / "kernel" / "fork.c").write_text("int fork;\n")
    return root


def test_tarball_is_checked_unpacked_once_and_read_only(tmp_path: Path) -> None:
    tree = _make_tree(tmp_path / "linux-6.1.0")
    archive = tmp_path / "linux.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="linux-6.1.0")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    cache = Cache(tmp_path / "cache")
    source = KernelSource("tarball", str(archive), sha256=digest)
    key, unpacked = kstages.prepare_source(source, cache, tmp_path / "log")
    assert (unpacked / "kernel" / "fork.c").read_text() == "int fork;\n"
    assert not os.access(unpacked / "Makefile", os.W_OK) or os.geteuid() == 0
    assert not (os.stat(unpacked / "Makefile").st_mode & 0o222), "the pristine tree must be read-only"
    again = kstages.prepare_source(source, cache, tmp_path / "log")
    assert again == (key, unpacked)


def test_tarball_with_wrong_sha256_is_refused_and_nothing_cached(tmp_path: Path) -> None:
    tree = _make_tree(tmp_path / "linux")
    archive = tmp_path / "linux.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="linux")
    cache = Cache(tmp_path / "cache")
    with pytest.raises(kstages.KernelStageError, match="sha256 mismatch"):
        kstages.prepare_source(KernelSource("tarball", str(archive), sha256="0" * 64), cache, tmp_path / "log")
    assert not any(p.name[0] != "." for p in (cache.root / "sources").iterdir())


def _git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, text=True, capture_output=True).stdout


def test_git_source_is_fetched_at_the_ref(tmp_path: Path) -> None:
    repo = _make_tree(tmp_path / "repo")
    _git("init", "-q", "-b", "main", cwd=repo)
    _git("add", ".", cwd=repo)
    _git("commit", "-qm", "one", cwd=repo)
    (repo / "kernel" / "fork.c").write_text("int fork2;\n")
    _git("commit", "-qam", "two", cwd=repo)
    cache = Cache(tmp_path / "cache")
    key, tree = kstages.prepare_source(KernelSource("git", f"file://{repo}", ref="main"), cache, tmp_path / "log")
    assert (tree / "kernel" / "fork.c").read_text() == "int fork2;\n"
    first = _git("rev-parse", "HEAD~1", cwd=repo).strip()
    key1, tree1 = kstages.prepare_source(KernelSource("git", f"file://{repo}", ref=first), cache, tmp_path / "log")
    assert key1 != key and (tree1 / "kernel" / "fork.c").read_text() == "int fork;\n"


def test_local_tree_key_follows_its_content(tmp_path: Path) -> None:
    tree = _make_tree(tmp_path / "local")
    source = KernelSource("local", str(tree))
    key, used = kstages.prepare_source(source, Cache(tmp_path / "cache"), tmp_path / "log")
    assert used == tree
    assert kstages.source_key(source) == key
    (tree / "kernel" / "fork.c").write_text("changed, and longer than before\n")
    assert kstages.source_key(source) != key
