"""The interface every checkpoint/restart engine implements, and what engines share.

A C/R suite talks to an engine only through `Engine`: checkpoint a process tree into an image
directory in the guest, restore from one, and decode an image (brought to the host) into a
canonical tree of plain data that crlab.imagediff can normalise and compare.  The guest is
reached through the transport-neutral shell (run/put/get), so an engine works over the serial
console and over SSH alike.
"""

from __future__ import annotations

import os
import re
import shlex
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from crlab.cache import Cache
from crlab.guest.shell import Shell
from crlab.imagediff import Rules
from crlab.targets import TargetProfile


class ImageError(Exception):
    """An image that cannot be decoded: the message names the file and the byte offset."""


@dataclass
class EngineResult:
    """What one checkpoint or restore did."""

    ok: bool
    seconds: float
    message: str = ""  # why it failed, in one line (the engine's own error when it printed one)
    log: str = ""  # the engine's log, kept as an artefact
    pid: int | None = None  # the restored root task


@dataclass
class CheckpointOptions:
    leave_running: bool = False  # keep the tree running after the checkpoint (else it is killed)
    extra: tuple[str, ...] = field(default_factory=tuple)  # engine-specific arguments


class Engine(Protocol):
    name: str
    rules: Rules  # how two decoded images of the same state are made comparable

    def unsupported_reason(self, profile: TargetProfile) -> str | None:
        """None when the engine runs on this target, else why not (e.g. CRIU has no i386 port)."""
        ...

    def guest_unsupported_reason(self, shell: Shell) -> str | None:
        """None when the booted guest can run the engine, else why not (linux-cr: the kernel has no
        checkpoint(2)); asked once per guest before any test."""
        ...

    def guest_tree(self, profile: TargetProfile, cache: Cache) -> Path:
        """A directory tree merged into the guest's root: the engine's programs and libraries."""
        ...

    def version(self, shell: Shell) -> str: ...

    def checkpoint(self, shell: Shell, pid: int, image_dir: str, options: CheckpointOptions) -> EngineResult: ...

    def restore(self, shell: Shell, image_dir: str, options: CheckpointOptions) -> EngineResult: ...

    def decode(self, image_dir: Path) -> dict[str, Any]:
        """A canonical tree: {"engine": name, "files": {file name: decoded content}}; raises ImageError."""
        ...


def timed_run(shell: Shell, command: str, timeout: float) -> tuple[int, str, float]:
    started = time.monotonic()
    result = shell.run(command, timeout=timeout)
    return result.exit_status, result.output, time.monotonic() - started


_SAFE_GUEST_PATH = re.compile(r"^/[A-Za-z0-9._/-]+$")


def _guest_path(path: str) -> str:
    if not _SAFE_GUEST_PATH.match(path) or ".." in PurePosixPath(path).parts:
        raise ValueError(f"refusing guest path {path!r}")
    return path


def fetch_tree(shell: Shell, guest_dir: str, local_dir: Path, timeout: float = 600) -> Path:
    """Bring a guest directory to the host as a tar through the transport, and unpack it safely."""
    guest_dir = _guest_path(guest_dir)
    tar_guest = f"{guest_dir.rstrip('/')}.crlab.tar"
    parent, name = str(PurePosixPath(guest_dir).parent), PurePosixPath(guest_dir).name
    result = shell.run(f"tar -cf {shlex.quote(tar_guest)} -C {shlex.quote(parent)} {shlex.quote(name)}",
                       timeout=timeout)
    if result.exit_status != 0:
        raise ImageError(f"packing {guest_dir} in the guest failed: {result.output.strip()[:300]}")
    local_dir.mkdir(parents=True, exist_ok=True)
    local_tar = local_dir.parent / f"{local_dir.name}.tar"
    try:
        shell.get(tar_guest, local_tar)
    finally:
        shell.run(f"rm -f {shlex.quote(tar_guest)}", timeout=60)
    unpack_tar(local_tar, local_dir, strip=name)
    local_tar.unlink()
    return local_dir


def push_tree(shell: Shell, local_dir: Path, guest_dir: str, timeout: float = 600) -> None:
    """Put a host directory into the guest at `guest_dir` (replacing what was there)."""
    guest_dir = _guest_path(guest_dir)
    local_tar = local_dir.parent / f"{local_dir.name}.push.tar"
    with tarfile.open(local_tar, "w") as tar:
        tar.add(local_dir, arcname=PurePosixPath(guest_dir).name)
    tar_guest = f"{guest_dir.rstrip('/')}.crlab.tar"
    parent = str(PurePosixPath(guest_dir).parent)
    shell.run(f"mkdir -p {shlex.quote(parent)}", timeout=60)
    try:
        shell.put(local_tar, tar_guest)
    finally:
        local_tar.unlink()
    result = shell.run(f"rm -rf {shlex.quote(guest_dir)} && mkdir -p {shlex.quote(parent)} && "
                       f"tar -xf {shlex.quote(tar_guest)} -C {shlex.quote(parent)} && rm -f {shlex.quote(tar_guest)}",
                       timeout=timeout)
    if result.exit_status != 0:
        raise ImageError(f"unpacking into {guest_dir} in the guest failed: {result.output.strip()[:300]}")


def unpack_tar(archive: Path, dest: Path, strip: str) -> None:
    """Unpack members under `strip/` into dest; anything else (absolute paths, .., links out) is refused."""
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            parts = PurePosixPath(member.name).parts
            if not parts or parts[0] != strip or ".." in parts or member.name.startswith("/"):
                raise ImageError(f"{archive.name}: unexpected member {member.name!r}")
            if not (member.isfile() or member.isdir() or member.isfifo()):
                continue  # images and test files are plain files, directories and FIFOs; no links or devices
            target = dest.joinpath(*parts[1:]) if len(parts) > 1 else dest
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            if member.isfifo():  # a test's FIFO must exist where the image says (CRIU reopens it)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.mkfifo(target, member.mode & 0o777)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            with open(target, "wb") as out:
                while chunk := source.read(1 << 20):
                    out.write(chunk)
