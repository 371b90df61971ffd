"""`harness.py cache verify` and `harness.py cache gc`: check the content cache, and trim it.

A lab's cache grows by a kernel per commit.  `gc` removes entries beyond the N most recently used
of each kind and/or those unused for longer than a duration; an entry that another process uses
(it holds the entry's shared use-lock, see Cache.pin) is never removed.  Stale scratch directories
of killed builds go too.  `verify` checks every entry fully (sizes, sha256 of every file, the
kernel image against its metadata) and with `--repair` moves damaged ones to damaged/.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

from crlab.cache import COMPLETE, NOT_KINDS, Cache, EntryState, force_rmtree
from crlab.errors import UserError

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    match = _DURATION.match(text.strip())
    if not match:
        raise UserError(f"--older-than {text!r}: expected a number and a unit s, m, h, d or w (e.g. 30d)")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def entries(cache: Cache) -> Iterator[tuple[str, str]]:
    if not cache.root.is_dir():
        return
    for kind_dir in sorted(cache.root.iterdir()):
        if not kind_dir.is_dir() or kind_dir.name in NOT_KINDS or kind_dir.name.startswith("."):
            continue
        for entry in sorted(kind_dir.iterdir()):
            if entry.is_dir() and not entry.name.startswith("."):
                yield kind_dir.name, entry.name


def last_used(cache: Cache, kind: str, key: str) -> float:
    """When kind/key was last used: its use-lock is touched on every use, its marker when built."""
    times = []
    for path in (cache.use_lock_path(kind, key), cache.entry(kind, key) / COMPLETE, cache.entry(kind, key)):
        with contextlib.suppress(OSError):
            times.append(path.stat().st_mtime)
    return max(times, default=0.0)


def _size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


@contextlib.contextmanager
def unused(cache: Cache, kind: str, key: str) -> Iterator[bool]:
    """Yield True while holding kind/key's use-lock exclusively (nobody uses it), else False."""
    path = cache.use_lock_path(kind, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def gc(cache: Cache, *, keep: int | None, older_than: float | None, dry_run: bool = False,
       out: list[str] | None = None) -> tuple[int, int, int]:
    """Remove what --keep/--older-than select; returns (removed, kept because in use, bytes freed)."""
    lines = out if out is not None else []
    by_kind: dict[str, list[tuple[float, str]]] = {}
    for kind, key in entries(cache):
        by_kind.setdefault(kind, []).append((last_used(cache, kind, key), key))
    now = time.time()
    removed = in_use = freed = 0
    for kind, items in sorted(by_kind.items()):
        items.sort(reverse=True)  # most recently used first
        for rank, (used, key) in enumerate(items):
            beyond_keep = keep is None or rank >= keep
            too_old = older_than is None or now - used > older_than
            if not (beyond_keep and too_old):
                continue
            with unused(cache, kind, key) as free:
                if not free:
                    in_use += 1
                    lines.append(f"kept {kind}/{key}: in use by another process")
                    continue
                path = cache.entry(kind, key)
                size = _size(path)
                if not dry_run:
                    doomed = path.parent / f".gc-{key}-{os.getpid()}"
                    os.rename(path, doomed)  # gone from lookups at once, however long the removal takes
                    force_rmtree(doomed)
                removed += 1
                freed += size
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(used))
                lines.append(f"{'would remove' if dry_run else 'removed'} {kind}/{key} "
                             f"({size / 1e6:.1f} MB, last used {when})")
        if not dry_run:
            for stale in cache.clean_scratch(kind):
                lines.append(f"removed {kind}/{stale.name}: scratch directory of a killed build")
    return removed, in_use, freed


def verify(cache: Cache, *, repair: bool = False, out: list[str] | None = None) -> list[EntryState]:
    lines = out if out is not None else []
    damaged = []
    for kind, key in entries(cache):
        state = cache.state(kind, key, deep=True)
        if state.ok:
            continue
        damaged.append(state)
        if repair:
            kept = cache.quarantine(state)
            lines.append(f"damaged {kind}/{key}: {state.problem}; moved to {kept}")
        else:
            lines.append(f"damaged {kind}/{key}: {state.problem}")
    return damaged


def cmd_cache(args: argparse.Namespace) -> int:
    cache = Cache()
    lines: list[str] = []
    if args.action == "verify":
        count = sum(1 for _ in entries(cache))
        damaged = verify(cache, repair=args.repair, out=lines)
        print("\n".join(lines + [f"{count} entries checked in {cache.root}, {len(damaged)} damaged"
                                 + (" (moved aside; the next run rebuilds them)" if args.repair and damaged else
                                    " (`cache verify --repair` moves them aside)" if damaged else "")]))
        return 1 if damaged and not args.repair else 0
    if args.keep is None and args.older_than is None:
        raise UserError("cache gc: say what to remove: --keep N and/or --older-than DURATION (e.g. 30d)")
    if args.keep is not None and args.keep < 0:
        raise UserError("cache gc: --keep must be 0 or more")
    older = parse_duration(args.older_than) if args.older_than is not None else None
    removed, in_use, freed = gc(cache, keep=args.keep, older_than=older, dry_run=args.dry_run, out=lines)
    lines.append(f"{'would remove' if args.dry_run else 'removed'} {removed} entries ({freed / 1e6:.1f} MB)"
                 + (f", kept {in_use} in use by another process" if in_use else ""))
    print("\n".join(lines))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("cache", help="check (`cache verify`) or trim (`cache gc`) the content cache")
    actions = parser.add_subparsers(dest="action", required=True)
    ver = actions.add_parser("verify", help="check every entry fully (sizes, sha256, kernel image)")
    ver.add_argument("--repair", action="store_true", help="move damaged entries to damaged/ (the next run rebuilds)")
    ver.set_defaults(func=cmd_cache)
    gcp = actions.add_parser("gc", help="remove old entries; never one another process uses")
    gcp.add_argument("--keep", type=int, metavar="N", help="keep the N most recently used entries of each kind")
    gcp.add_argument("--older-than", metavar="DURATION", help="remove entries unused for longer (30d, 12h, 90m)")
    gcp.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")
    gcp.set_defaults(func=cmd_cache)
