"""Normalise decoded checkpoint images and diff them field by field.

A decoded image is a canonical tree of plain data (dicts, lists, numbers, strings) as an engine's
`decode()` returns it.  Two images of the same state differ in what is legitimately volatile:
pids (mapped through the process tree to stable names), inode and mount numbers the kernel hands
out afresh (renumbered by first appearance), timestamps and counters that advance, remaining
times of timers.  `normalise()` removes or renames exactly those, by rules an engine supplies;
`diff()` then lists every remaining difference with its path in the tree, and `explain()` sorts
them into known (listed, with a reason, in a known-differences file) and unexplained.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Tree = Any


@dataclass(frozen=True)
class Rules:
    """How one engine's images are normalised."""

    drop_files: tuple[str, ...] = ()  # file-name globs that carry nothing comparable (dump statistics)
    drop_paths: tuple[str, ...] = ()  # path globs (file/entries/0/key...) of volatile values
    renumber_keys: tuple[str, ...] = ()  # keys whose values are kernel-assigned numbers: first-seen order
    pid_keys: tuple[str, ...] = ()  # keys whose values are pids (or lists of pids)
    pid_file: str = ""  # the file that lists the process tree
    pid_file_pattern: str = r"-(\d+)\.img$"  # file names that carry a pid
    # lists compared by an identity key instead of by position: {"vmas": "start"} reports an added
    # or removed mapping once instead of shifting every mapping after it
    keyed_lists: tuple[tuple[str, str], ...] = ()
    # objects whose "name" matches a pattern lose these keys (a log file's offset grows as it is written)
    volatile_by_name: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # files named after an engine-assigned number (CRIU's timens-N.img): (pattern with one group,
    # key); renamed by first appearance among the files of that pattern
    numbered_files: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Difference:
    path: str
    before: Any
    after: Any

    def __str__(self) -> str:
        return f"{self.path}: {_short(self.before)} -> {_short(self.after)}"


@dataclass
class Explained:
    unexplained: list[Difference] = field(default_factory=list)
    known: list[tuple[Difference, str]] = field(default_factory=list)  # with the reason

    @property
    def empty(self) -> bool:
        return not self.unexplained


_MISSING = "<absent>"


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value) if value is not _MISSING else _MISSING
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- normalise


def pid_map(tree: Tree, rules: Rules) -> dict[int, str]:
    """Every pid of the image's process tree -> a name that does not depend on the pid's value.

    Processes are named by the rank of their pid (P0 is the lowest): pids are handed out in
    increasing order, so the rank survives an engine that does not restore the same numbers, and
    it does not depend on the order in which the engine lists the tree.  Threads are named after
    their process."""
    files = tree.get("files", {})
    entries = files.get(rules.pid_file, {}).get("entries", []) if rules.pid_file else []
    pids = sorted(e["pid"] for e in entries if isinstance(e.get("pid"), int))
    mapping = {pid: f"P{rank}" for rank, pid in enumerate(pids)}
    for entry in entries:
        pid = entry.get("pid")
        threads = sorted(t for t in entry.get("threads", []) or [] if isinstance(t, int) and t != pid)
        for rank, tid in enumerate(threads, 1):
            mapping.setdefault(tid, f"{mapping.get(pid, 'P?')}.T{rank}")
    return mapping


def normalise(tree: Tree, rules: Rules) -> Tree:
    """A copy of a decoded image with volatile values dropped, pids named and kernel numbers renumbered."""
    pids = pid_map(tree, rules)
    pattern = re.compile(rules.pid_file_pattern)
    files: dict[str, Any] = {}
    numbering: dict[str, dict[Any, int]] = {}
    for name, content in sorted(tree.get("files", {}).items()):
        if any(fnmatch.fnmatchcase(name, glob) for glob in rules.drop_files):
            continue
        numbered = [(m, key) for regex, key in rules.numbered_files if (m := re.search(regex, name))]
        pid_match = pattern.search(name)
        if numbered:
            found, key = numbered[0]
            # numbered on their own: CRIU names the first dump's timens image timens-0.img while
            # its ids.img says time_ns_id 5, so the file's number is not always the key's value
            seen = numbering.setdefault(f"file:{key}", {})
            number = seen.setdefault(int(found.group(1)), len(seen) + 1)
            name = f"{name[: found.start(1)]}#{number}{name[found.end(1):]}"
        elif pid_match and int(pid_match.group(1)) in pids:
            name = name[: pid_match.start(1)] + pids[int(pid_match.group(1))] + name[pid_match.end(1):]
        files[name] = content
    out = {"engine": tree.get("engine", ""), "files": {}}
    for name, content in files.items():
        out["files"][name] = _walk(content, name, rules, pids, numbering)
    return out


def _walk(node: Any, path: str, rules: Rules, pids: dict[int, str], numbering: dict[str, dict[Any, int]]) -> Any:
    if isinstance(node, dict):
        result: dict[str, Any] = {}
        dropped: tuple[str, ...] = ()
        name = node.get("name")
        if isinstance(name, str):
            dropped = tuple(k for pattern, keys in rules.volatile_by_name if re.search(pattern, name) for k in keys)
        keyed = dict(rules.keyed_lists)
        for key, value in node.items():
            child = f"{path}/{key}"
            if key in dropped or any(fnmatch.fnmatchcase(child, glob) for glob in rules.drop_paths):
                continue
            if key in keyed and isinstance(value, list) and all(isinstance(v, dict) and keyed[key] in v
                                                                 for v in value):
                ident = keyed[key]
                # walked in key order, so numbers renumbered inside do not depend on the list's order
                ordered = sorted(value, key=lambda v: (type(v[ident]).__name__, v[ident]))
                named = {_ident(_map_pids(v[ident], pids) if ident in rules.pid_keys else v[ident]): v for v in ordered}
                result[key] = {name: _walk(v, f"{child}/{name}", rules, pids, numbering) for name, v in named.items()}
                continue
            if key in rules.pid_keys:
                result[key] = _map_pids(value, pids)
            elif key in rules.renumber_keys and isinstance(value, int | str):
                seen = numbering.setdefault(key, {})
                result[key] = f"#{seen.setdefault(value, len(seen) + 1)}"
            else:
                result[key] = _walk(value, child, rules, pids, numbering)
        return result
    if isinstance(node, list):
        return [_walk(item, f"{path}/{index}", rules, pids, numbering) for index, item in enumerate(node)]
    return node


def _ident(value: Any) -> str:
    return f"{value:#x}" if isinstance(value, int) else str(value)


def _map_pids(value: Any, pids: dict[int, str]) -> Any:
    if isinstance(value, list):
        return [_map_pids(item, pids) for item in value]
    if isinstance(value, int) and value in pids:
        return pids[value]
    return value


# --------------------------------------------------------------------------- diff


def diff(before: Tree, after: Tree, path: str = "") -> list[Difference]:
    return list(_diff(before, after, path))


def _diff(a: Any, b: Any, path: str) -> Iterator[Difference]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            child = f"{path}/{key}" if path else str(key)
            if key not in a:
                yield Difference(child, _MISSING, b[key])
            elif key not in b:
                yield Difference(child, a[key], _MISSING)
            else:
                yield from _diff(a[key], b[key], child)
        return
    if isinstance(a, list) and isinstance(b, list):
        for index in range(max(len(a), len(b))):
            child = f"{path}/{index}"
            if index >= len(a):
                yield Difference(child, _MISSING, b[index])
            elif index >= len(b):
                yield Difference(child, a[index], _MISSING)
            else:
                yield from _diff(a[index], b[index], child)
        return
    if a != b or type(a) is not type(b):
        yield Difference(path, a, b)


# --------------------------------------------------------------------------- known differences


@dataclass(frozen=True)
class KnownDifference:
    path: str  # a glob over difference paths, e.g. files/core-P0.img/entries/0/thread_info/gpregs/*
    reason: str
    tests: tuple[str, ...] = ()  # empty: every test
    engines: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()  # "same-kernel", "cross-kernel"; empty: both


def load_known(path: Path) -> list[KnownDifference]:
    """The known-differences file: a list of {path, reason, tests?, engines?, kinds?}; every entry needs a reason."""
    if not path.exists():
        return []
    data = yaml.safe_load(path.read_text()) or []
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of known differences")
    known = []
    for index, item in enumerate(data):
        if not isinstance(item, dict) or not item.get("path") or not str(item.get("reason", "")).strip():
            raise ValueError(f"{path}: entry {index + 1} needs a path and a reason")
        known.append(KnownDifference(str(item["path"]), str(item["reason"]).strip(),
                                     tuple(item.get("tests", ()) or ()), tuple(item.get("engines", ()) or ()),
                                     tuple(item.get("kinds", ()) or ())))
    return known


def explain(differences: list[Difference], known: list[KnownDifference], test: str, engine: str,
            kind: str) -> Explained:
    out = Explained()
    for difference in differences:
        reason = next((k.reason for k in known
                       if fnmatch.fnmatchcase(difference.path, k.path)
                       and (not k.tests or test in k.tests)
                       and (not k.engines or engine in k.engines)
                       and (not k.kinds or kind in k.kinds)), None)
        if reason is None:
            out.unexplained.append(difference)
        else:
            out.known.append((difference, reason))
    return out


def report_text(explained: Explained) -> str:
    lines = [f"unexplained differences: {len(explained.unexplained)}"]
    lines += [f"  {d}" for d in explained.unexplained]
    lines.append(f"known differences: {len(explained.known)}")
    lines += [f"  {d}    ({reason})" for d, reason in explained.known]
    return "\n".join(lines) + "\n"
