"""A full disk, for real: the results directory, and separately the content cache, on a small tmpfs
mounted for the test (root required; under CI=true its absence fails).  The run ends with one line
naming the path and "no space left", nothing half-written is published, earlier results stay
intact, and the next run on a freed disk passes."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from crlab.cache import NOT_KINDS
from crlab.paths import REPO_ROOT, cache_root
from tests.conftest import require_qemu

pytestmark = [pytest.mark.boot, pytest.mark.slow]

CONFIG = REPO_ROOT / "tests" / "data" / "faults" / "x86_64-smoke.yaml"


def require_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the disk-full tests mount a tmpfs and need root (CI runs as root)")
        pytest.skip("mounting a size-limited tmpfs needs root")


@contextlib.contextmanager
def small_fs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(fs: Path, leave: int = 0) -> Path:
    """Fill the filesystem under `fs` with one file, leaving about `leave` bytes."""
    filler = fs / "filler"
    st = os.statvfs(fs)
    size = st.f_bavail * st.f_frsize - leave
    with open(filler, "wb") as fh, contextlib.suppress(OSError):
        chunk = b"\0" * (1 << 20)
        while size > 0:
            size -= fh.write(chunk[:size])
    return filler


def harness(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO_ROOT / "harness.py"), *args], text=True, capture_output=True,
                          timeout=900, env={**os.environ, "CRLAB_PLAIN": "1", **(env or {})}, cwd=REPO_ROOT)


def store_runs(results: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(results / "crlab.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return list(conn.execute("SELECT run_id, status FROM runs ORDER BY started"))


@pytest.mark.xdist_group("disk-full")
def test_full_results_directory(tmp_path: Path) -> None:
    require_root()
    require_qemu("qemu-system-x86_64")
    with small_fs(tmp_path / "results", "4m") as results:
        first = harness("run", str(CONFIG), "--results", str(results), "--no-install")
        assert first.returncode == 0, first.stdout + first.stderr
        first_json = (results / "latest" / "results.json").read_text()
        filler = fill(results)

        full = harness("run", str(CONFIG), "--results", str(results), "--no-install")
        output = full.stdout + full.stderr
        assert full.returncode == 2, output
        assert "Traceback" not in output
        assert f"results directory {results}: no space left on device" in output

        # the earlier run is intact: its reports, and the store
        assert (results / "latest" / "results.json").read_text() == first_json
        assert json.loads(first_json)["summary"]["pass"] == 1
        filler.unlink()
        assert [status for _, status in store_runs(results)][0] == "complete"

        again = harness("run", str(CONFIG), "--results", str(results), "--no-install")
        assert again.returncode == 0, again.stdout + again.stderr
        assert store_runs(results)[-1][1] == "complete"


@pytest.mark.xdist_group("disk-full")
def test_full_cache(tmp_path: Path) -> None:
    """A cache whose entries come from the real one (symlinked kinds, read only) but whose rootfs
    entries must be written to a small full tmpfs."""
    require_root()
    require_qemu("qemu-system-x86_64")
    warm = harness("run", str(CONFIG), "--results", str(tmp_path / "warm"), "--no-install")
    assert warm.returncode == 0, warm.stdout + warm.stderr  # the real cache has the kernel and packages
    with small_fs(tmp_path / "cache", "8m") as cache:
        for kind in cache_root().iterdir():
            if kind.is_dir() and kind.name not in NOT_KINDS and kind.name != "rootfs":
                (cache / kind.name).symlink_to(kind)
        filler = fill(cache, leave=512 * 1024)  # less than one packed rootfs
        env = {"CRLAB_CACHE": str(cache)}
        results = tmp_path / "results"
        full = harness("run", str(CONFIG), "--results", str(results), "--no-install", env=env)
        output = full.stdout + full.stderr
        assert full.returncode == 2, output
        job = json.loads((results / "latest" / "results.json").read_text())["jobs"][0]
        assert (job["status"], job["failure"]) == ("incomplete", "infra"), job
        assert f"no space left on device in the cache {cache}" in job["message"]
        assert "nothing was published" in job["message"]
        assert [p.name for p in (cache / "rootfs").iterdir()] == [], "a half-written rootfs entry was left"

        filler.unlink()
        again = harness("run", str(CONFIG), "--results", str(results), "--no-install", env=env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert len([p for p in (cache / "rootfs").iterdir() if not p.name.startswith(".")]) == 1
