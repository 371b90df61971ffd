"""Content-addressed cache: every artifact lives under a key hashed from all of its inputs.

Every cached artifact (kernel sources, patched trees, kernels, Debian packages, guest programs, root
filesystems) is made through `Cache.get_or_build`: look the entry up; if it is missing, take a lock
and look again (another process may have made it meanwhile); build it in a scratch directory beside
its final place; rename it into place only when complete.  A crash or Ctrl-C never leaves a
half-written entry that looks finished, and a complete entry is checked cheaply on every lookup.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import resource
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

# The marker written last into an entry: when it was built, the sizes and sha256 of its top-level
# files.
COMPLETE = ".complete"

# Top-level directories of a cache root that are not entry kinds.
NOT_KINDS = frozenset({"ccache", "locks", "ports", "logs", "damaged", "objtrees", "bin"})  # bin: crlab-cc

# Files up to this size are hashed on every lookup (metadata, configs, logs); bigger ones only by
# `cache verify` (their size is still checked on every lookup).
QUICK_HASH_LIMIT = 256 * 1024

# Prefix of a build's scratch directory: .tmp-<key>-<pid>-<ms>
SCRATCH_PREFIX = ".tmp-"

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


class EntryState(NamedTuple):
    kind: str
    key: str
    path: Path
    problem: str | None  # None: complete and sound; else why it cannot be used
    absent: bool = False

    @property
    def ok(self) -> bool:
        return self.problem is None


def inspect_entry(path: Path, *, deep: bool = False) -> str | None:
    """Why the entry directory `path` cannot be used, or None when it is complete and sound.

    Checked: the completion marker reads, every file it lists is there with its size, JSON files
    parse, and files with a recorded sha256 match it (small ones always, all of them when `deep`).
    A kernel's metadata.json names its image and the image's sha256, checked when `deep`.
    """
    try:
        marker = json.loads((path / COMPLETE).read_text())
    except FileNotFoundError:
        return "no completion marker"
    except (ValueError, UnicodeDecodeError):
        return "completion marker is not valid JSON"
    except OSError as exc:
        return f"completion marker unreadable: {exc.strerror}"
    if not isinstance(marker, dict) or not isinstance(marker.get("files", {}), dict):
        return "completion marker has no file list"
    hashes = marker.get("sha256", {})
    for name, size in marker.get("files", {}).items():
        file = path / name
        try:
            st = file.lstat()
        except OSError:
            return f"{name} is missing"
        if size is not None and st.st_size != size:
            return f"{name} has {st.st_size} bytes, the marker says {size}"
        expected = hashes.get(name) if isinstance(hashes, dict) else None
        if expected and (deep or st.st_size <= QUICK_HASH_LIMIT) and hash_file(file) != expected:
            return f"{name} does not match its recorded sha256"
        if name.endswith(".json") and st.st_size <= QUICK_HASH_LIMIT:
            try:
                json.loads(file.read_text())
            except (ValueError, UnicodeDecodeError):
                return f"{name} is not valid JSON"
    if deep and (path / "metadata.json").is_file():
        meta = json.loads((path / "metadata.json").read_text())
        if isinstance(meta, dict) and meta.get("image") and meta.get("image_sha256"):
            image = path / str(meta["image"])
            if not image.is_file():
                return f"{meta['image']} (the kernel image) is missing"
            if hash_file(image) != meta["image_sha256"]:
                return f"{meta['image']} does not match the sha256 in metadata.json"
    return None


def _scratch_owner(name: str) -> int | None:
    """The pid in a scratch directory's name (.tmp-<key>-<pid>-<ms>), None if it is not one."""
    parts = name[len(SCRATCH_PREFIX):].rsplit("-", 2) if name.startswith(SCRATCH_PREFIX) else []
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


# Use-locks one process holds at most: an open file each, well under the usual limit of 1024.
_MAX_PINS = max(16, min(512, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 4))


class Cache:
    def __init__(self, root: Path | None = None, *, ccache_dir: Path | None = None,
                 notify: Callable[[str], object] | None = None) -> None:
        self.root = root or cache_root()
        # compiler cache for kernel builds; separate from `root` so that a second cache root (a
        # reproducibility check, a benchmark, a test; $CRLAB_CCACHE_DIR) can share a warm one
        self.ccache_dir = ccache_dir or Path(os.environ.get("CRLAB_CCACHE_DIR") or self.root / "ccache")
        self.notify: Callable[[str], object] = notify or log.info
        # entries this process uses, each with a shared lock held until the process ends, so
        # that `cache gc` in another process leaves them alone
        self._pins: dict[str, int] = {}
        self._pins_lock = threading.Lock()

    def entry(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def state(self, kind: str, key: str, *, deep: bool = False) -> EntryState:
        path = self.entry(kind, key)
        if not path.exists():
            return EntryState(kind, key, path, "absent", absent=True)
        return EntryState(kind, key, path, inspect_entry(path, deep=deep))

    def has(self, kind: str, key: str) -> bool:
        """Whether kind/key is complete and sound (see inspect_entry).  Asking marks the entry as in
        use by this process (see `pin`)."""
        self.pin(kind, key)
        return self.state(kind, key).ok

    def use_lock_path(self, kind: str, key: str) -> Path:
        return self.root / "locks" / "use" / f"{kind}-{key}.lock"

    def pin(self, kind: str, key: str) -> None:
        """Hold a shared lock on kind/key until this process exits: `cache gc` (which takes it
        exclusively before removing an entry) never removes what a running harness uses."""
        name = f"{kind}/{key}"
        with self._pins_lock:
            if name in self._pins or len(self._pins) >= _MAX_PINS:
                return  # past the cap (a huge matrix) an entry is used unpinned rather than run out of fds
            path = self.use_lock_path(kind, key)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError:
                return  # a read-only or full cache: nothing can remove entries there either
            fcntl.flock(fd, fcntl.LOCK_SH)
            with contextlib.suppress(OSError):
                os.utime(fd)  # when it was last used, for `cache gc --older-than`
            self._pins[name] = fd

    def unpin_all(self) -> None:
        with self._pins_lock:
            for fd in self._pins.values():
                os.close(fd)
            self._pins.clear()

    def quarantine(self, state: EntryState) -> Path:
        """Move a damaged entry out of the way (to damaged/), kept for inspection."""
        dest = self.root / "damaged" / f"{state.kind}-{state.key}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(state.path, dest)
        (dest.parent / f"{dest.name}.reason").write_text(f"{state.problem}\n")
        return dest

    def clean_scratch(self, kind: str) -> list[Path]:
        """Remove scratch directories of `kind` left by builds whose process is gone (killed)."""
        removed: list[Path] = []
        kind_dir = self.root / kind
        if not kind_dir.is_dir():
            return removed
        for path in kind_dir.iterdir():
            pid = _scratch_owner(path.name)
            if pid is not None and pid != os.getpid() and not _pid_alive(pid):
                force_rmtree(path)
                removed.append(path)
        return removed

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
            state = self.state(kind, key)
            if state.ok:
                return CacheEntry(entry, built=False)
            for stale in self.clean_scratch(kind):
                self.notify(f"removed {stale.name}, the scratch directory of a build that was killed")
            if not state.absent:
                kept = self.quarantine(state)
                self.notify(f"cache entry {kind}/{key} is damaged ({state.problem}): moved to {kept}; rebuilding")
            self.notify(f"building {what} ({kind}/{key})")
            failed_log = self.root / "logs" / f"{kind}-{key}.failed.log"
            try:
                with self.building(kind, key) as scratch:
                    try:
                        build(scratch)
                    except BaseException:
                        with contextlib.suppress(OSError):
                            if (scratch / "build.log").exists():
                                failed_log.parent.mkdir(parents=True, exist_ok=True)
                                shutil.copyfile(scratch / "build.log", failed_log)
                        raise
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                # a write error carries no file name: say where, and that nothing was published
                raise OSError(errno.ENOSPC, f"no space left on device in the cache {self.root} while building "
                              f"{what} ({kind}/{key}); nothing was published") from exc
            with contextlib.suppress(OSError):
                failed_log.unlink()  # an earlier failure of the same entry
        return CacheEntry(entry, built=True)

    @contextlib.contextmanager
    def building(self, kind: str, key: str) -> Iterator[Path]:
        """Yield a scratch directory; on success it becomes the entry `kind/key` atomically."""
        final = self.entry(kind, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        scratch = final.parent / f"{SCRATCH_PREFIX}{key}-{os.getpid()}-{int(time.time() * 1000)}"
        if scratch.exists():
            force_rmtree(scratch)
        scratch.mkdir()
        try:
            yield scratch
            regular = {p.name: p for p in scratch.iterdir() if p.is_file() and not p.is_symlink()}
            files = {p.name: (p.lstat().st_size if p.name in regular else None) for p in scratch.iterdir()}
            marker = {"built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": files,
                      "sha256": {name: hash_file(p) for name, p in regular.items()}}
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
