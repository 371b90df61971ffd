"""The one interface suites and C/R engines use to talk to a guest, whatever the transport."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass
class CommandResult:
    output: str  # stdout and stderr together, as the guest printed them (kernel messages removed)
    exit_status: int
    kernel_messages: list[str] = field(default_factory=list)  # printk lines seen meanwhile (console only)

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


class GuestError(Exception):
    """The guest could not be used (not a test failure): the job is incomplete."""


class CommandTimeout(GuestError):
    def __init__(self, command: str, timeout: float, partial: str) -> None:
        super().__init__(f"command did not finish within {timeout:.0f} s: {command[:120]}")
        self.partial = partial


class GuestGone(GuestError):
    """QEMU exited (or the guest panicked) while a command ran."""


class TransportError(GuestError):
    """The transport could not be set up, e.g. the SSH server did not answer."""


class HostKeyRefused(TransportError):
    """The SSH server is not the guest: its host key is not the one the guest announced on its console,
    or the guest announced none.  Never retried: another attempt would only trust the same server."""


class Shell(Protocol):
    """Run a command, get its output and exit status; put and get files."""

    name: str

    def run(self, command: str, timeout: float = 60, env: dict[str, str] | None = None,
            cwd: str | None = None) -> CommandResult: ...

    def put(self, local: Path, remote: str, mode: int = 0o644) -> None: ...

    def get(self, remote: str, local: Path) -> None: ...

    def close(self) -> None: ...


def wrap_command(command: str, env: dict[str, str] | None, cwd: str | None) -> str:
    """A sh snippet running `command` in a subshell (so `cd` or `exit` cannot break the session)."""
    import shlex

    prefix = ""
    if cwd:
        prefix += f"cd {shlex.quote(cwd)} && "
    if env:
        prefix += "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + " && "
    return f"( {prefix}{command}\n)"
