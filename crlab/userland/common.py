"""What every userland artifact shares: its error, running commands (cancellable, logged per build)."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from crlab import runner

# Bump when a recipe changes in a way its inputs do not show (it is part of every userland key).
USERLAND_RECIPE = "1"

_APT_ENV = {"LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}


class UserlandError(RuntimeError):
    """Getting or building a guest program failed; the message says what, for which target, and why."""


@dataclass
class Job:
    """One artifact being made: what it is (for messages) and its build log, if it has one."""

    what: str  # e.g. "busybox for ppc64"
    log: Path | None = None
    lock_wait: float = 0.0  # seconds spent waiting for the host-wide build lock


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run(cmd: Sequence[str], *, what: str, job: Job | None = None, cwd: Path | None = None,
        env: dict[str, str] | None = None, input: str | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command through crlab.runner (so cancel_all stops it); its output (stdout and stderr
    together) is returned and appended to the job's log."""
    try:
        proc = runner.run(cmd, cwd=cwd, env={**os.environ, **_APT_ENV, **(env or {})}, input=input)
    except FileNotFoundError:
        raise UserlandError(f"{what}: command not found: {cmd[0]}") from None
    if job is not None and job.log is not None:
        with open(job.log, "a") as fh:
            fh.write(f"$ {shlex.join(cmd)}" + (f"   (in {cwd})" if cwd else "") + "\n")
            fh.write(proc.stdout)
            fh.write(f"[exit {proc.returncode}]\n")
    if check and proc.returncode != 0:
        msg = f"{what}: `{shlex.join(cmd)}` failed with exit status {proc.returncode}\n"
        msg += f"--- last lines of output ---\n{tail(proc.stdout)}"
        if job is not None and job.log is not None:
            msg += "\n--- the full log is kept as logs/<kind>-<key>.failed.log in the cache"
        raise UserlandError(msg)
    return proc


def is_root() -> bool:
    return os.geteuid() == 0
