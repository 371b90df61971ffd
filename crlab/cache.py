"""Content-addressed cache: every artifact lives under a key hashed from all of its inputs.

Every cached artifact (kernel sources, patched trees, kernels, Debian packages, guest programs, root
filesystems) is made through `Cache.get_or_build`: look the entry up; if it is missing, take a lock
and look again (another process may have made it meanwhile); build it in a scratch directory beside
its final place; rename it into place only when complete.  A crash or Ctrl-C never leaves a
half-written entry that looks finished, and a complete entry is checked cheaply on every lookup.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from crlab.paths import cache_root

# Bump when the way an artifact is produced changes, so old entries are not reused.
RECIPE_VERSION = "1"

# The marker written last into an entry: when it was built and the sizes of its top-level files.
COMPLETE = ".complete"

# One compile at a time on this host, whichever cache root a build writes to: two kernel builds
# on two cores only fight over them.
HOST_BUILD_LOCK = Path(tempfile.gettempdir()) / "crlab-build.lock"

log = logging.getLogger("crlab.cache")


def hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_inputs(kind: str, inputs: Any) -> str:
    """A stable key for an artifact of `kind` made from JSON-serialisable `inputs`."""
    blob = json.dumps({"kind": kind, "recipe": RECIPE_VERSION, "inputs": inputs}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class CacheEntry(NamedTuple):
    path: Path  # the entry's directory
    built: bool  # True when this call built it, False for a cache hit


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


_held = threading.local()


@contextlib.contextmanager
def host_build_lock() -> Iterator[float]:
    """Hold the host-wide compile lock; yields how long it took to get it (seconds).  Re-entrant
    within a thread (a benchmark holds it around builds that take it again)."""
    depth = getattr(_held, "depth", 0)
    started = time.monotonic()
    _held.depth = depth + 1
    try:
        if depth:
            yield 0.0
        else:
            with _flock(HOST_BUILD_LOCK):
                yield time.monotonic() - started
    finally:
        _held.depth = depth


class Cache:
    def __init__(self, root: Path | None = None, *, ccache_dir: Path | None = None,
                 notify: Callable[[str], object] | None = None) -> None:
        self.root = root or cache_root()
        # compiler cache for kernel builds; separate from `root` so that a second cache root (a
        # reproducibility check, a benchmark) can share a warm one
        self.ccache_dir = ccache_dir or self.root / "ccache"
        self.notify: Callable[[str], object] = notify or log.info

    def entry(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def has(self, kind: str, key: str) -> bool:
        """Whether kind/key is complete: its marker is there and so is every file it lists."""
        entry = self.entry(kind, key)
        try:
            marker = json.loads((entry / COMPLETE).read_text())
        except FileNotFoundError:
            return False
        except ValueError:
            return False  # a marker from an interrupted write, or an older crlab
        for name, size in marker.get("files", {}).items():
            try:
                st = (entry / name).lstat()
            except OSError:
                return False
            if size is not None and st.st_size != size:
                return False
        return True

    def get_or_build(self, kind: str, key: str, build: Callable[[Path], object], *, what: str,
                     lock: Callable[[], contextlib.AbstractContextManager[object]] | None = None) -> CacheEntry:
        """The entry kind/key, made by `build(scratch_dir)` if it is not in the cache yet.

        `lock` is what serialises builders (default: a lock on this entry alone; kernel builds pass
        the host-wide compile lock).  If `build` raises, nothing is published and a `build.log` it
        wrote is kept as logs/<kind>-<key>.failed.log.
        """
        entry = self.entry(kind, key)
        if self.has(kind, key):
            return CacheEntry(entry, built=False)
        with (lock or (lambda: self.lock(f"{kind}-{key}")))():
            if self.has(kind, key):
                return CacheEntry(entry, built=False)
            self.notify(f"building {what} ({kind}/{key})")
            failed_log = self.root / "logs" / f"{kind}-{key}.failed.log"
            with self.building(kind, key) as scratch:
                try:
                    build(scratch)
                except BaseException:
                    with contextlib.suppress(OSError):
                        if (scratch / "build.log").exists():
                            failed_log.parent.mkdir(parents=True, exist_ok=True)
                            shutil.copyfile(scratch / "build.log", failed_log)
                    raise
            with contextlib.suppress(OSError):
                failed_log.unlink()  # an earlier failure of the same entry
        return CacheEntry(entry, built=True)

    @contextlib.contextmanager
    def building(self, kind: str, key: str) -> Iterator[Path]:
        """Yield a scratch directory; on success it becomes the entry `kind/key` atomically."""
        final = self.entry(kind, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        scratch = final.parent / f".tmp-{key}-{os.getpid()}-{int(time.time() * 1000)}"
        if scratch.exists():
            force_rmtree(scratch)
        scratch.mkdir()
        try:
            yield scratch
            files = {p.name: (p.lstat().st_size if p.is_file() and not p.is_symlink() else None)
                     for p in scratch.iterdir()}
            marker = {"built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": files}
            (scratch / COMPLETE).write_text(json.dumps(marker, indent=1, sort_keys=True) + "\n")
            if final.exists():  # an unfinished or damaged entry; a complete one is never rebuilt
                force_rmtree(final)
            os.rename(scratch, final)
        finally:
            if scratch.exists():
                force_rmtree(scratch)

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """An exclusive lock (flock) named `name` in this cache."""
        with _flock(self.root / "locks" / f"{name}.lock"):
            yield


def force_rmtree(path: Path) -> None:
    """Remove a tree even where crlab made parts of it read-only."""

    def onerror(func: Any, p: str, _exc: Any) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), 0o755)
            os.chmod(p, 0o755)
            func(p)

    shutil.rmtree(path, onerror=onerror)
