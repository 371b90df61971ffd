"""A writer for the kernel's initramfs format: cpio "newc" (magic 070701), optionally gzipped.

The archive is deterministic: entries are sorted by path (so a directory always precedes what it
holds), inode numbers are given in that order, and every entry has mtime 0 and uid/gid 0, so the same
inputs give the same bytes.  Device nodes are written straight into the archive, so building an
initramfs never needs mknod (or root) on the host.

    w = CpioWriter()
    w.add_tree(busybox_root)
    w.add_chardev("dev/console", 5, 1)
    w.add_file("init", script.encode(), mode=0o755)
    w.write(out)            # gzip, mtime 0
"""

from __future__ import annotations

import gzip
import os
import stat
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"070701"
TRAILER = "TRAILER!!!"

_DIR, _FILE, _SYMLINK, _CHARDEV, _BLOCKDEV = "dir", "file", "symlink", "chardev", "blockdev"
_TYPE_BITS = {
    _DIR: stat.S_IFDIR,
    _FILE: stat.S_IFREG,
    _SYMLINK: stat.S_IFLNK,
    _CHARDEV: stat.S_IFCHR,
    _BLOCKDEV: stat.S_IFBLK,
}


@dataclass
class _Entry:
    kind: str
    mode: int  # permission bits only (0o7777)
    data: bytes | Path = b""  # regular files: the content, or a host file read at write time
    target: str = ""  # symlinks
    rdev: tuple[int, int] = (0, 0)  # device nodes: (major, minor)


def normalize(path: str | os.PathLike[str]) -> str:
    """An archive path: relative, no '.', '..' or empty components."""
    parts = [p for p in str(path).replace(os.sep, "/").split("/") if p not in ("", ".")]
    if not parts:
        raise ValueError(f"empty archive path: {str(path)!r}")
    if ".." in parts:
        raise ValueError(f"archive path must not contain '..': {str(path)!r}")
    return "/".join(parts)


def _pad4(n: int) -> int:
    return (4 - n % 4) % 4


def _header(ino: int, mode: int, nlink: int, size: int, rdev: tuple[int, int], namesize: int) -> bytes:
    fields = (ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev[0], rdev[1], namesize, 0)
    return MAGIC + b"".join(b"%08X" % f for f in fields)


class CpioWriter:
    """Collects entries, then writes them as one newc archive.

    Adding a path twice replaces the first entry (so a later tree can override a file of an earlier
    one); missing parent directories are added with mode 0755.
    """

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    # --- adding entries ---

    def add_dir(self, path: str | os.PathLike[str], mode: int = 0o755) -> None:
        self._put(normalize(path), _Entry(_DIR, mode & 0o7777))

    def add_file(self, path: str | os.PathLike[str], data: bytes | Path, mode: int = 0o644) -> None:
        if not isinstance(data, bytes | Path):
            raise TypeError(f"file data must be bytes or a Path, not {type(data).__name__}")
        if isinstance(data, Path) and not data.is_file():
            raise FileNotFoundError(f"not a regular file: {data}")
        self._put(normalize(path), _Entry(_FILE, mode & 0o7777, data=data))

    def add_symlink(self, path: str | os.PathLike[str], target: str) -> None:
        if not target:
            raise ValueError("a symlink needs a target")
        self._put(normalize(path), _Entry(_SYMLINK, 0o777, target=target))

    def add_chardev(self, path: str | os.PathLike[str], major: int, minor: int, mode: int = 0o600) -> None:
        self._put(normalize(path), _Entry(_CHARDEV, mode & 0o7777, rdev=(major, minor)))

    def add_blockdev(self, path: str | os.PathLike[str], major: int, minor: int, mode: int = 0o600) -> None:
        self._put(normalize(path), _Entry(_BLOCKDEV, mode & 0o7777, rdev=(major, minor)))

    def add_tree(self, host_dir: str | os.PathLike[str], prefix: str = "") -> None:
        """Add everything under `host_dir` (not the directory itself) below `prefix`.

        Symlinks are kept as symlinks (never followed); a file keeps its execute bits (0755 if the
        owner may execute it, else 0644) and any setuid/setgid bits; directories get 0755 (or their
        sticky bit, as for tmp).  Character and block device nodes are copied with their numbers.
        """
        root = Path(host_dir)
        if not root.is_dir():
            raise NotADirectoryError(f"not a directory: {root}")
        base = normalize(prefix) if prefix.strip("/.") else ""
        if base:
            self._ensure_parents(base + "/x")
            if base not in self._entries:
                self.add_dir(base)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(root)
            for name in sorted(dirnames) + sorted(filenames):
                host = Path(dirpath) / name
                rel = (rel_dir / name).as_posix()
                arc = f"{base}/{rel}" if base else rel
                st = host.lstat()
                if stat.S_ISLNK(st.st_mode):
                    self.add_symlink(arc, os.readlink(host))
                elif stat.S_ISDIR(st.st_mode):
                    self.add_dir(arc, 0o755 | (st.st_mode & stat.S_ISVTX))
                elif stat.S_ISREG(st.st_mode):
                    mode = 0o755 if st.st_mode & stat.S_IXUSR else 0o644
                    self.add_file(arc, host, mode | (st.st_mode & (stat.S_ISUID | stat.S_ISGID)))
                elif stat.S_ISCHR(st.st_mode):
                    self.add_chardev(arc, os.major(st.st_rdev), os.minor(st.st_rdev), st.st_mode)
                elif stat.S_ISBLK(st.st_mode):
                    self.add_blockdev(arc, os.major(st.st_rdev), os.minor(st.st_rdev), st.st_mode)
                else:
                    raise ValueError(f"cannot put {host} in a cpio archive: unsupported file type")
            # symlinks to directories are listed in dirnames but os.walk does not descend into them

    def __contains__(self, path: str) -> bool:
        return normalize(path) in self._entries

    def paths(self) -> list[str]:
        return sorted(self._entries, key=_sort_key)

    # --- writing ---

    def to_bytes(self) -> bytes:
        chunks: list[bytes] = []
        for ino, path in enumerate(self.paths(), start=1):
            entry = self._entries[path]
            data = b""
            if entry.kind == _FILE:
                data = entry.data.read_bytes() if isinstance(entry.data, Path) else entry.data
            elif entry.kind == _SYMLINK:
                data = entry.target.encode()
            nlink = 2 if entry.kind == _DIR else 1
            chunks.append(
                self._record(ino, _TYPE_BITS[entry.kind] | entry.mode, nlink, entry.rdev, path, data)
            )
        chunks.append(self._record(0, 0, 1, (0, 0), TRAILER, b""))
        return b"".join(chunks)

    def write(self, out: str | os.PathLike[str], compress: str | None = "gzip") -> Path:
        """Write the archive to `out` (atomically); compress is "gzip" (mtime 0) or None/"none"."""
        out = Path(out)
        raw = self.to_bytes()
        if compress == "gzip":
            payload = gzip.compress(raw, compresslevel=6, mtime=0)
        elif compress in (None, "none"):
            payload = raw
        else:
            raise ValueError(f"unsupported compression {compress!r}: use 'gzip' or None")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        tmp.write_bytes(payload)
        os.replace(tmp, out)
        return out

    # --- internals ---

    @staticmethod
    def _record(ino: int, mode: int, nlink: int, rdev: tuple[int, int], name: str, data: bytes) -> bytes:
        name_bytes = name.encode() + b"\0"
        head = _header(ino, mode, nlink, len(data), rdev, len(name_bytes)) + name_bytes
        return head + b"\0" * _pad4(len(head)) + data + b"\0" * _pad4(len(data))

    def _ensure_parents(self, path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            existing = self._entries.get(parent)
            if existing is None:
                self._entries[parent] = _Entry(_DIR, 0o755)
            elif existing.kind != _DIR:
                raise ValueError(f"cannot add {path!r}: {parent!r} is a {existing.kind}, not a directory")

    def _put(self, path: str, entry: _Entry) -> None:
        self._ensure_parents(path)
        existing = self._entries.get(path)
        if existing is not None and (existing.kind == _DIR) != (entry.kind == _DIR):
            raise ValueError(f"cannot replace {existing.kind} {path!r} with a {entry.kind}")
        self._entries[path] = entry


def _sort_key(path: str) -> list[str]:
    # by components, so that "a/b" sorts right after "a" and before "a-b"
    return path.split("/")
