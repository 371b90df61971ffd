"""Content-addressed cache: every artifact lives under a key hashed from all of its inputs.

An entry is built in a temporary directory beside its final place and renamed into place only
when complete, so a crash or Ctrl-C never leaves a half-written entry that looks finished.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crlab.paths import cache_root

# Bump when the way an artifact is produced changes, so old entries are not reused.
RECIPE_VERSION = "1"


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


class Cache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_root()

    def entry(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def has(self, kind: str, key: str) -> bool:
        return (self.entry(kind, key) / ".complete").exists()

    @contextlib.contextmanager
    def building(self, kind: str, key: str) -> Iterator[Path]:
        """Yield a scratch directory; on success it becomes the entry `kind/key` atomically."""
        final = self.entry(kind, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        scratch = final.parent / f".tmp-{key}-{os.getpid()}-{int(time.time() * 1000)}"
        if scratch.exists():
            shutil.rmtree(scratch)
        scratch.mkdir()
        try:
            yield scratch
            (scratch / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")
            if final.exists():  # an unfinished or stale entry; a complete one is never rebuilt
                shutil.rmtree(final, ignore_errors=True)
            os.rename(scratch, final)
        finally:
            if scratch.exists():
                _force_rmtree(scratch)

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """A host-wide lock (flock), e.g. so that two kernel builds never run at once."""
        lock_dir = self.root / "locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_dir / f"{name}.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _force_rmtree(path: Path) -> None:
    """Remove a tree even where crlab made parts of it read-only."""

    def onerror(func: Any, p: str, _exc: Any) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), 0o755)
            os.chmod(p, 0o755)
            func(p)

    shutil.rmtree(path, onerror=onerror)
