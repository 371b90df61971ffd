"""Cache damage through `harness.py run`, on a hard-linked copy of the warm cache (never the real
one): an entry marked complete whose metadata is corrupt or truncated, or whose image is missing,
is moved aside (kept), rebuilt, and said so in one line; a killed build's scratch directory is
removed by the next run; `cache verify` finds damage; `cache gc` never removes an entry another
process uses.  Damage replaces files (unlink, write) so the real cache's inodes are never written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from crlab.cache import NOT_KINDS, Cache
from crlab.paths import REPO_ROOT, cache_root
from tests.conftest import require_qemu

CONFIG = REPO_ROOT / "tests" / "data" / "faults" / "x86_64-smoke.yaml"
JOB = "linux-6.1/x86_64/smoke"


def harness(*args: str, cache: Path | None = None, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRLAB_PLAIN": "1"}
    if cache is not None:
        # the real ccache: a kernel rebuilt in the copy compiles from it in well under a minute
        env.update(CRLAB_CACHE=str(cache), CRLAB_CCACHE_DIR=str(cache_root() / "ccache"))
    return subprocess.run([sys.executable, str(REPO_ROOT / "harness.py"), *args], text=True,
                          capture_output=True, timeout=timeout, env=env, cwd=REPO_ROOT)


def job_result(results: Path) -> dict[str, Any]:
    jobs = json.loads((results / "latest" / "results.json").read_text())["jobs"]
    return {job["job_id"]: job for job in jobs}[JOB]  # type: ignore[no-any-return]


def warm_copy(dest: Path) -> dict[str, str]:
    """A hard-linked copy of the real cache with the job run once in it; returns the job's kernel and
    rootfs keys.  (A rootfs key names the cache paths of the entries it packs, so it is the copy's.)"""
    require_qemu("qemu-system-x86_64")
    warm = harness("run", str(CONFIG), "--results", str(dest.parent / "warm-on-real"), "--no-install")
    assert warm.returncode == 0, warm.stdout + warm.stderr  # a no-op when the real cache is warm
    linked_copy(dest)
    results = dest.parent / "warm-results"
    proc = harness("run", str(CONFIG), "--results", str(results), "--no-install", cache=dest)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job = job_result(results)
    assert job["info"]["kernel_cached"] is True, "the copy rebuilt the kernel"
    return {"kernels": job["info"]["kernel_key"], "rootfs": job["info"]["rootfs"]["key"]}


def linked_copy(dest: Path) -> Path:
    """The real cache's entries as hard links (no ccache, object trees, locks or ports)."""
    dest.mkdir()
    for kind_dir in cache_root().iterdir():
        if kind_dir.is_dir() and kind_dir.name not in NOT_KINDS:
            subprocess.run(["cp", "-al", str(kind_dir), str(dest / kind_dir.name)], check=True)
    return dest


def replace_file(path: Path, data: bytes | None) -> None:
    """Damage `path` without writing to the inode the real cache shares: unlink, then write anew."""
    path.unlink()
    if data is not None:
        path.write_bytes(data)


DAMAGE = {
    # kind, file, how -> the problem crlab names
    "rootfs-image-missing": ("rootfs", "initramfs.cpio.gz", "missing", "initramfs.cpio.gz is missing"),
    "rootfs-marker-truncated": ("rootfs", ".complete", "truncate", "completion marker is not valid JSON"),
    # one kernel case (a rebuild, from the real ccache): same size, no longer JSON.  Entries written
    # by today's crlab record metadata.json's sha256, which is checked before the JSON is parsed;
    # entries from before that are caught by the parse
    "kernel-metadata-corrupt": ("kernels", "metadata.json", "garble",
                                "metadata.json does not match its recorded sha256|metadata.json is not valid JSON"),
}


@pytest.mark.boot
@pytest.mark.slow
@pytest.mark.xdist_group("cache-faults")
@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_entry_is_moved_aside_rebuilt_and_reported(tmp_path: Path, case: str) -> None:
    kind, name, how, problem = DAMAGE[case]
    cache = tmp_path / "cache"
    warm_keys = warm_copy(cache)
    entry = cache / kind / warm_keys[kind]
    original = (entry / name).read_bytes()
    if how == "missing":
        replace_file(entry / name, None)
    elif how == "truncate":
        replace_file(entry / name, original[: len(original) // 2])
    else:  # same size: the size check passes, reading it does not
        replace_file(entry / name, original[:-2] + b"]\n" if original.endswith(b"}\n") else b"[" + original[1:])
    # a build killed earlier left its scratch directory behind (the pid in its name is gone)
    dead = subprocess.Popen(["true"])
    dead.wait()
    scratch = cache / kind / f".tmp-{warm_keys[kind]}-{dead.pid}-1"
    (scratch / "half").mkdir(parents=True)

    results = tmp_path / "results"
    proc = harness("run", str(CONFIG), "--results", str(results), "--no-install", cache=cache)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    output = proc.stdout + proc.stderr  # progress lines go to stderr
    lines = [ln for ln in output.splitlines() if f"cache entry {kind}/{warm_keys[kind]} is damaged" in ln]
    named = [p for p in problem.split("|") if len(lines) == 1 and p in lines[0]]
    assert len(lines) == 1 and named and "rebuilding" in lines[0], output
    assert not scratch.exists(), "the killed build's scratch directory is still there"
    assert "scratch directory of a build that was killed" in output
    kept = [p for p in (cache / "damaged").iterdir() if p.is_dir()]
    assert len(kept) == 1 and kept[0].name.startswith(f"{kind}-{warm_keys[kind]}-")
    assert (kept[0].parent / f"{kept[0].name}.reason").read_text().startswith(named[0])
    assert Cache(cache).state(kind, warm_keys[kind], deep=True).ok
    job = job_result(results)
    assert job["status"] == "pass"
    assert job["info"]["kernel_cached" if kind == "kernels" else "rootfs"] in (False, {"key": warm_keys["rootfs"],
                                                                                   "cached": False})

    again = harness("run", str(CONFIG), "--results", str(results), "--no-install", cache=cache)
    assert again.returncode == 0 and "damaged" not in again.stderr, again.stdout + again.stderr


# --- cache verify / cache gc (no guest: a small cache made here) ------------------------------------


def small_cache(root: Path) -> Cache:
    cache = Cache(root, notify=lambda _: None)
    for kind, keys in {"kernels": ["k1", "k2", "k3"], "rootfs": ["r1"]}.items():
        for key in keys:
            cache.get_or_build(kind, key, lambda s, key=key: (s / "image").write_text(key * 100), what=key)
    cache.unpin_all()  # this process is done with them
    return cache


def cache_cmd(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return harness("cache", *args, cache=root, timeout=120)


def test_gc_never_removes_an_entry_another_process_uses(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    small_cache(root)
    # another process uses kernels/k2: it looked it up (which pins it) and is still running
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from crlab.cache import Cache; "
         f"assert Cache(Path({str(root)!r})).has('kernels', 'k2'); print('ready', flush=True); sys.stdin.read()"],
        cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        proc = cache_cmd(root, "gc", "--keep", "0")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "kept kernels/k2: in use by another process" in proc.stdout
        assert "removed 3 entries" in proc.stdout and "kept 1 in use" in proc.stdout
        assert sorted(p.name for p in (root / "kernels").iterdir()) == ["k2"]
        assert not (root / "rootfs" / "r1").exists()
    finally:
        holder.communicate("")  # the holder exits: its use-lock goes with it
    proc = cache_cmd(root, "gc", "--keep", "0")
    assert proc.returncode == 0 and "removed 1 entries" in proc.stdout, proc.stdout + proc.stderr
    assert list((root / "kernels").iterdir()) == []


def test_gc_keep_and_older_than_select_by_last_use(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    cache = small_cache(root)
    old = time.time() - 10 * 86400
    for key in ("k1", "k2"):  # last used ten days ago; k3 and r1 just now
        for path in (cache.use_lock_path("kernels", key), cache.entry("kernels", key) / ".complete",
                     cache.entry("kernels", key)):
            os.utime(path, (old, old))
    dry = cache_cmd(root, "gc", "--older-than", "7d", "--dry-run")
    assert dry.returncode == 0 and "would remove 2 entries" in dry.stdout, dry.stdout + dry.stderr
    assert (root / "kernels" / "k1").exists()
    proc = cache_cmd(root, "gc", "--keep", "2", "--older-than", "7d")  # k1 is third most recent and old
    assert proc.returncode == 0 and "removed 1 entries" in proc.stdout, proc.stdout + proc.stderr
    assert sorted(p.name for p in (root / "kernels").iterdir()) == ["k2", "k3"]
    bad = cache_cmd(root, "gc", "--older-than", "soon")
    assert bad.returncode == 2 and "--older-than 'soon'" in bad.stdout + bad.stderr
    none = cache_cmd(root, "gc")
    assert none.returncode == 2 and "--keep N and/or --older-than" in none.stdout + none.stderr


def test_verify_finds_damage_and_repair_moves_it_aside(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    cache = small_cache(root)
    image = cache.entry("kernels", "k1") / "image"
    image.write_text("k9" * 100)  # same size, other bytes: only a hash tells
    ok = cache_cmd(root, "verify")
    assert ok.returncode == 1, ok.stdout + ok.stderr
    assert "damaged kernels/k1: image does not match its recorded sha256" in ok.stdout
    assert "4 entries checked" in ok.stdout and "1 damaged" in ok.stdout
    repaired = cache_cmd(root, "verify", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert not cache.entry("kernels", "k1").exists()
    kept = [p for p in (root / "damaged").iterdir() if p.is_dir()]
    assert len(kept) == 1 and (kept[0] / "image").read_text() == "k9" * 100
    clean = cache_cmd(root, "verify")
    assert clean.returncode == 0 and "3 entries checked" in clean.stdout and "0 damaged" in clean.stdout
