"""Checks on untrusted patches (from a mailing list, a contributor) before anything applies them.

A patch may only change regular files inside the tree it is applied to.  Refused, with the line
that says so: a path that is absolute or climbs out with `..` (in ---/+++ lines, `diff --git`
headers, rename/copy lines); anything that creates or changes a symbolic link (mode 120000); a path
that goes through a symbolic link already in the tree (git apply would write where it points);
absurd sizes (the whole patch, a hunk's line counts, a binary literal).

    check_patch_text(text, name) -> list[str]     # problems; empty means nothing to refuse
    check_patch_file(path, tree=None) -> list[str]  # the same for a file, plus symlinks in `tree`

Used by the kernel patch stage (crlab.kernel.apply_patches) and by anything else that applies
patches it did not write.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

# Bigger than any real series member (the largest patches in the kernel's history are a few MB).
MAX_PATCH_BYTES = 64 * 1024 * 1024
MAX_HUNK_LINES = 1_000_000  # lines a hunk header may claim, either side
MAX_BINARY_BYTES = 64 * 1024 * 1024  # a GIT binary patch's literal/delta size
MAX_PROBLEMS = 20  # a hostile patch can have millions of bad lines; say the first few

_SYMLINK_MODE = "120000"
_FILE_LINE = re.compile(r"^(---|\+\+\+) (.+?)(?:\t.*)?$")
_GIT_HEADER = re.compile(r"^diff --git (\S+) (\S+)$")
_RENAME_COPY = re.compile(r"^(rename|copy) (from|to) (.+)$")
_MODE_LINE = re.compile(r"^(new file mode|new mode|old mode|deleted file mode) (\d+)\s*$")
_INDEX_MODE = re.compile(r"^index [0-9a-f]+\.\.[0-9a-f]+ (\d+)\s*$")
_HUNK = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")
_BINARY = re.compile(r"^(literal|delta) (\d+)\s*$")
_C_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", '"': '"', "\\": "\\"}


def _unquote(path: str) -> str:
    """git writes paths with unusual characters as C strings: "a/sp\\303\\251cial"."""
    if not (len(path) >= 2 and path.startswith('"') and path.endswith('"')):
        return path
    body, out, i = path[1:-1], bytearray(), 0
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            octal = body[i + 1:i + 4]
            if len(octal) == 3 and all(c in "01234567" for c in octal):
                out.append(int(octal, 8) & 0xFF)
                i += 4
                continue
            out += _C_ESCAPES.get(nxt, nxt).encode()
            i += 2
            continue
        out += char.encode()
        i += 1
    return out.decode(errors="replace")


def _tree_path(raw: str, strip_prefix: bool) -> str | None:
    """The path inside the tree that `raw` names once git apply -p1 has removed its first
    component (None for /dev/null)."""
    path = _unquote(raw.strip())
    if path == "/dev/null":
        return None
    if strip_prefix and not path.startswith("/"):  # an absolute path is refused as written
        path = path.split("/", 1)[1] if "/" in path else path
    return path


def _path_problem(path: str) -> str | None:
    if path.startswith("/"):
        return f"path {path!r} is absolute (leaves the kernel tree)"
    parts = PurePosixPath(path).parts
    if ".." in parts:
        return f"path {path!r} leaves the kernel tree"
    if ".git" in parts:
        return f"path {path!r} writes into a .git directory"
    if not parts:
        return f"path {path!r} is empty"
    return None


def patch_paths(text: str) -> list[tuple[int, str]]:
    """Every (line number, path in the tree) the patch touches."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for path in _line_paths(line):
            found.append((number, path))
    return found


def _line_paths(line: str) -> list[str]:
    match = _FILE_LINE.match(line)
    if match:
        path = _tree_path(match.group(2), strip_prefix=True)
        return [path] if path is not None else []
    match = _GIT_HEADER.match(line)
    if match:
        return [p for p in (_tree_path(match.group(1), True), _tree_path(match.group(2), True)) if p is not None]
    match = _RENAME_COPY.match(line)
    if match:  # rename/copy lines carry no a/ b/ prefix
        path = _tree_path(match.group(3), strip_prefix=False)
        return [path] if path is not None else []
    return []


def check_patch_text(text: str, name: str) -> list[str]:
    """Why the patch `text` (called `name` in messages) must not be applied; [] when it may."""
    problems: list[str] = []

    def refuse(number: int, why: str) -> None:
        if len(problems) < MAX_PROBLEMS:
            problems.append(f"{name}:{number}: {why}")

    size = len(text.encode(errors="replace"))
    if size > MAX_PATCH_BYTES:
        return [f"{name}: {size} bytes, more than the {MAX_PATCH_BYTES} a patch may have"]
    in_binary = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("diff --git "):
            in_binary = False
        for path in _line_paths(line):
            why = _path_problem(path)
            if why:
                refuse(number, why)
        mode = _MODE_LINE.match(line) or _INDEX_MODE.match(line)
        if mode and mode.group(mode.lastindex or 1) == _SYMLINK_MODE:
            if not line.startswith("deleted file mode"):  # removing a link writes nothing through it
                refuse(number, "creates or changes a symlink (mode 120000)")
        hunk = _HUNK.match(line)
        if hunk:
            for count in hunk.groups():
                if count is not None and int(count) > MAX_HUNK_LINES:
                    refuse(number, f"a hunk of {int(count)} lines (more than {MAX_HUNK_LINES})")
                    break
        if line.startswith("GIT binary patch"):
            in_binary = True
        elif in_binary:
            binary = _BINARY.match(line)
            if binary and int(binary.group(2)) > MAX_BINARY_BYTES:
                refuse(number, f"a binary file of {int(binary.group(2))} bytes (more than {MAX_BINARY_BYTES})")
    return problems


def symlinks_on_paths(text: str, name: str, tree: Path) -> list[str]:
    """Paths of the patch that go through (or are) a symbolic link existing in `tree`."""
    problems = []
    seen: set[str] = set()
    for number, path in patch_paths(text):
        if path in seen or _path_problem(path):
            continue
        seen.add(path)
        current = tree
        for part in PurePosixPath(path).parts:
            current = current / part
            if current.is_symlink():
                rel = current.relative_to(tree)
                problems.append(f"{name}:{number}: path {path!r} goes through the symbolic link {str(rel)!r} "
                                "in the tree")
                break
    return problems[:MAX_PROBLEMS]


def check_patch_file(patch: Path, tree: Path | None = None) -> list[str]:
    """check_patch_text for a file, refusing an absurdly big one before reading it; with `tree`,
    also refuse paths that go through a symbolic link in it."""
    try:
        size = patch.stat().st_size
    except OSError as exc:
        return [f"{patch.name}: cannot read: {exc.strerror}"]
    if size > MAX_PATCH_BYTES:
        return [f"{patch.name}: {size} bytes, more than the {MAX_PATCH_BYTES} a patch may have"]
    text = patch.read_bytes().decode(errors="replace")
    problems = check_patch_text(text, patch.name)
    if tree is not None and not problems:
        problems = symlinks_on_paths(text, patch.name, tree)
    return problems
