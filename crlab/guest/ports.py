"""Host ports for QEMU's forwards, reserved so that parallel jobs never collide.

A port is ours while we hold an flock on `ports/<port>.lock` in the cache (released when the job
ends, or by the kernel if crlab dies), and only if nothing else on the host is bound to it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import socket
from pathlib import Path
from typing import IO

PORT_RANGE = (20000, 40000)


class PortReservation:
    def __init__(self, port: int, handle: IO[str]) -> None:
        self.port = port
        self._handle: IO[str] | None = handle

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> PortReservation:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def _free_on_host(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def reserve_port(lock_dir: Path, attempts: int = 200) -> PortReservation:
    lock_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(os.getpid() ^ int.from_bytes(os.urandom(4), "little"))
    for _ in range(attempts):
        port = rng.randrange(*PORT_RANGE)
        handle = open(lock_dir / f"{port}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        if _free_on_host(port):
            return PortReservation(port, handle)
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
    raise OSError(f"no free port in {PORT_RANGE} after {attempts} attempts")
