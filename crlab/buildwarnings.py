"""Compiler diagnostics of a kernel build log, normalised so that two builds can be compared.

A diagnostic is kept as (file relative to the tree, severity, message): line and column numbers
are dropped (a patch above a warning moves it without changing it), and so are the absolute paths
of the source copy and object tree (they differ between workspaces and machines).  gcc's caret
and context lines are ignored; the warning flag ([-Wunused-variable]) stays part of the message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# gcc: FILE:LINE[:COL]: (warning|error|fatal error): MESSAGE; ld: FILE:(.section+0x..): undefined reference ...
_DIAGNOSTIC = re.compile(r"^(?P<file>[^\s:][^:]*?):(?P<line>\d+)(?::\d+)?: (?P<sev>warning|error|fatal error): "
                         r"(?P<msg>.*)$")
_LINKER = re.compile(r"^(?P<file>[^\s:][^:]*?):\((?P<section>[^)]*)\): (?P<msg>undefined reference to .*)$")
_MAKE_LINE = re.compile(r"^\$ make -C (?P<src>\S+) O=(?P<obj>\S+)")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'"})  # gcc's typographic quotes in a UTF-8 locale


@dataclass(frozen=True, order=True)
class Diagnostic:
    file: str  # relative to the kernel tree
    severity: str  # "warning" | "error"
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.severity}: {self.message}"


def _roots(log_text: str) -> list[str]:
    """The source and object directories the build ran with (from crlab's `$ make -C SRC O=OBJ` lines)."""
    roots: set[str] = set()
    for line in log_text.splitlines():
        match = _MAKE_LINE.match(line)
        if match:
            roots.update({match.group("src").rstrip("/") + "/", match.group("obj").rstrip("/") + "/"})
    return sorted(roots, key=len, reverse=True)


def normalise_path(path: str, roots: Iterable[str] = ()) -> str:
    for root in roots:
        if path.startswith(root):
            return path[len(root):]
    while path.startswith(("../", "./")):
        path = path.split("/", 1)[1]
    # a workspace path from another machine: .../objtrees/<tree>-<target>/(src|obj)/FILE
    match = re.match(r"^/.*?/objtrees/[^/]+/(?:src|obj)/(.*)$", path)
    return match.group(1) if match else path


def parse(log_text: str) -> list[Diagnostic]:
    """Every distinct diagnostic of a build log, sorted."""
    roots = _roots(log_text)
    found: set[Diagnostic] = set()
    for raw in log_text.splitlines():
        line = raw.translate(_QUOTES).rstrip()
        match = _DIAGNOSTIC.match(line)
        if match:
            severity = "error" if match.group("sev") != "warning" else "warning"
            found.add(Diagnostic(normalise_path(match.group("file"), roots), severity, match.group("msg").strip()))
            continue
        match = _LINKER.match(line)
        if match:
            found.add(Diagnostic(normalise_path(match.group("file"), roots), "error", match.group("msg").strip()))
    return sorted(found)


def first_error(log_text: str) -> str | None:
    """The first compiler or linker error of a build log as gcc/ld printed it (line numbers kept),
    its path made relative to the tree: what a failed build is named by."""
    roots = _roots(log_text)
    for raw in log_text.splitlines():
        line = raw.translate(_QUOTES).rstrip()
        match = _DIAGNOSTIC.match(line)
        if not (match and match.group("sev") != "warning"):
            match = _LINKER.match(line)
        if match:
            return normalise_path(match.group("file"), roots) + line[match.end("file"):]
    return None


def parse_file(path: Path) -> list[Diagnostic]:
    try:
        return parse(path.read_text(errors="replace"))
    except OSError:
        return []


def warnings(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    return [d for d in diagnostics if d.severity == "warning"]


def errors(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    return [d for d in diagnostics if d.severity == "error"]


def new_warnings(current: Iterable[Diagnostic], seen_before: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Warnings of this build that no earlier build showed.  An incremental build prints only the
    warnings of what it recompiled, so `seen_before` is every earlier step's, not just the last's:
    a file recompiled now must not make its old warnings look new."""
    before = set(seen_before)
    return sorted(d for d in warnings(current) if d not in before)
