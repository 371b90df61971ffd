"""One way to run build commands: each in its own process group, optionally logged, with a timeout,
and all of them stoppable at once (Ctrl-C or SIGTERM of the harness) by `cancel_all`.

Kernel builds, busybox/dropbear source builds, apt look-ups and downloads all go through `run`, so an
interrupted run never waits for a compile it no longer wants.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

_RUNNING: set[subprocess.Popen[str]] = set()
_LOCK = threading.Lock()


def run(cmd: Sequence[str], *, log: Path | None = None, cwd: Path | None = None,
        env: Mapping[str, str] | None = None, timeout: float | None = None,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `cmd` to completion and return its exit status.

    With `log`, the command line, its output (stdout and stderr interleaved) and its exit status are
    appended to that file and the result's stdout is ''.  Without, stdout and stderr are captured
    together into the result's stdout.  On timeout the whole process group is killed and
    subprocess.TimeoutExpired raised.  FileNotFoundError if the program does not exist.
    """
    args = [str(c) for c in cmd]
    with contextlib.ExitStack() as stack:
        out: int | IO[str] = subprocess.PIPE
        if log is not None:
            fh = stack.enter_context(open(log, "a"))
            fh.write(f"$ {shlex.join(args)}" + (f"   (in {cwd})" if cwd else "") + "\n")
            fh.flush()
            out = fh
        # a session of its own: stopping it stops make's children too, and a Ctrl-C on the terminal
        # reaches the harness, which then decides (cancel_all) instead of every compiler at once
        proc = subprocess.Popen(args, cwd=cwd, env=dict(env) if env is not None else None, text=True,
                                errors="replace", stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        with _LOCK:
            _RUNNING.add(proc)
        try:
            stdout, _ = proc.communicate(input=input, timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.communicate()
            raise
        finally:
            with _LOCK:
                _RUNNING.discard(proc)
        if log is not None:
            fh.write(f"[exit {proc.returncode}]\n")
    return subprocess.CompletedProcess(args, proc.returncode, stdout or "", "")


def running() -> int:
    """How many commands are running now."""
    with _LOCK:
        return len(_RUNNING)


def cancel_all(grace: float = 5.0) -> None:
    """Stop every running command: SIGTERM to its process group, SIGKILL after `grace` seconds."""
    with _LOCK:
        procs = list(_RUNNING)
    for proc in procs:
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        if proc.poll() is None:
            _signal_group(proc, signal.SIGKILL)


def _signal_group(proc: subprocess.Popen[str], sig: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, sig)
