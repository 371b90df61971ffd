"""A shell on the guest's serial console, driven with pexpect.

Each command is framed by two markers printed by the guest.  The markers are typed with an empty
quote pair inside ("CRL""AB...") so that the terminal's echo of what we typed never matches them;
only the shell's real output does.  Kernel messages (printk lines, which carry a timestamp with
CONFIG_PRINTK_TIME) can land in the middle of the output: they are cut out and kept separately.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import itertools
import re
import shlex
import time
from pathlib import Path

import pexpect

from crlab.guest.qemu import PANIC, QemuMachine
from crlab.guest.shell import CommandResult, CommandTimeout, GuestError, GuestGone, wrap_command

KERNEL_LINE = re.compile(r"\[ *\d+\.\d{6}\] [^\n]*\n")


def split_kernel_messages(text: str) -> tuple[str, list[str]]:
    """Separate printk lines from a command's output; both without carriage returns."""
    text = text.replace("\r\n", "\n").replace("\r", "")
    messages = [m.group(0).rstrip("\n") for m in KERNEL_LINE.finditer(text)]
    return KERNEL_LINE.sub("", text), messages


# A command's output kept in memory: its first and its last OUTPUT_KEEP characters each (a flood
# in the middle is counted, not kept; the TAP summary at the end survives).  The console log file
# has its own cap (crlab.guest.qemu.CONSOLE_LOG_CAP).
OUTPUT_KEEP = 8 * 1024 * 1024
_SEARCH_TAIL = 512  # longer than a marker line or the start of a panic line
_READ_SIZE = 65536


class _BoundedOutput:
    def __init__(self, keep: int | None = None) -> None:
        self.keep = OUTPUT_KEEP if keep is None else keep
        self.head: list[str] = []
        self.head_len = 0
        self.tail: collections.deque[str] = collections.deque()
        self.tail_len = 0
        self.dropped = 0

    def add(self, text: str) -> None:
        if not text:
            return
        if self.head_len < self.keep:
            part = text[:self.keep - self.head_len]
            self.head.append(part)
            self.head_len += len(part)
            text = text[len(part):]
        if text:
            self.tail.append(text)
            self.tail_len += len(text)
            while self.tail_len - len(self.tail[0]) >= self.keep:  # whole chunks beyond the tail
                self.tail_len -= len(self.tail[0])
                self.dropped += len(self.tail.popleft())

    def text(self) -> str:
        note = (f"\n[crlab: {self.dropped} characters of output not kept here (the first and last "
                f"{self.keep} are)]\n") if self.dropped else ""
        return "".join(self.head) + note + "".join(self.tail)


class ConsoleShell:
    name = "console"

    def __init__(self, machine: QemuMachine) -> None:
        if machine.child is None:
            raise GuestError("the machine is not running")
        self.machine = machine
        self.child: pexpect.spawn = machine.child
        self._serial = itertools.count(1)
        self._nonce = hashlib.sha256(str(id(self)).encode()).hexdigest()[:6]

    def _markers(self) -> tuple[str, str, str, str]:
        n = f"{self._nonce}{next(self._serial)}"
        typed_begin, typed_end = f"CRL''AB-B{n}", f"CRL''AB-E{n}"
        return typed_begin, typed_end, f"CRLAB-B{n}", f"CRLAB-E{n}"

    def _exchange(self, script: str, timeout: float) -> CommandResult:
        typed_begin, typed_end, begin, end = self._markers()
        # one command line, so that no prompt or echo lands between the two markers
        self.child.sendline(f"echo {typed_begin}; {script}; echo {typed_end}:$?")
        deadline = time.monotonic() + timeout
        try:
            self.child.expect(re.escape(begin) + r"\r*\n", timeout=timeout)
        except pexpect.TIMEOUT as exc:
            partial = str(self.child.before or "")
            self._recover()
            raise CommandTimeout(script, timeout, partial) from exc
        except pexpect.EOF as exc:
            raise GuestGone(self._gone_reason()) from exc
        output = _BoundedOutput()
        # read the command's output ourselves rather than with expect(): a guest that prints
        # hundreds of MB must not make crlab search (or hold) all of it; only a short tail that a
        # marker or panic line may straddle is searched again
        pending, self.child.buffer = str(self.child.buffer), ""
        end_line = re.compile(re.escape(end) + r":(\d+)\r*\n")
        while True:
            done, panic = end_line.search(pending), PANIC.search(pending)
            if panic and (done is None or panic.start() < done.start()):
                raise GuestGone(self._gone_reason())
            if done:
                output.add(pending[:done.start()])
                self.child.buffer = pending[done.end():]
                break
            if len(pending) > _SEARCH_TAIL:
                output.add(pending[:-_SEARCH_TAIL])
                pending = pending[-_SEARCH_TAIL:]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                output.add(pending)
                self._recover()
                raise CommandTimeout(script, timeout, output.text())
            try:
                pending += self.child.read_nonblocking(_READ_SIZE, timeout=min(remaining, 1.0))
            except pexpect.TIMEOUT:
                continue
            except pexpect.EOF as exc:
                raise GuestGone(self._gone_reason()) from exc
        text, messages = split_kernel_messages(output.text())
        return CommandResult(output=text, exit_status=int(done.group(1)), kernel_messages=messages)

    def _gone_reason(self) -> str:
        panic = self.machine.find_panic()
        if panic:
            return f"the guest panicked: {panic}"
        return "QEMU exited while a command was running"

    def _recover(self) -> None:
        """After a timeout: interrupt the command and resynchronise, so the next one starts clean."""
        try:
            self.child.sendcontrol("c")
            self.child.sendline("")
            typed_begin, _, begin, _ = self._markers()
            self.child.sendline(f"echo {typed_begin}")
            self.child.expect_exact(begin, timeout=10)
        except (pexpect.TIMEOUT, pexpect.EOF, OSError):
            pass

    def run(self, command: str, timeout: float = 60, env: dict[str, str] | None = None,
            cwd: str | None = None) -> CommandResult:
        # stdin from /dev/null: a command that reads stdin must not eat the console's next lines
        return self._exchange(wrap_command(command, env, cwd) + " </dev/null", timeout)

    def put(self, local: Path, remote: str, mode: int = 0o644) -> None:
        """Copy a file in by typing it as base64 (slow, but needs nothing but busybox)."""
        data = local.read_bytes()
        encoded = base64.encodebytes(data).decode()
        tag = f"CRLAB_EOF_{self._nonce}"
        tmp = shlex.quote(remote + ".crlab-part")
        dest = shlex.quote(remote)
        script = (f"( base64 -d > {tmp} <<'{tag}'\n{encoded}{tag}\n"
                  f"mv {tmp} {dest} && chmod {mode:o} {dest} && sha256sum {dest} )")
        result = self._exchange(script, timeout=60 + len(data) / 2000)
        expected = hashlib.sha256(data).hexdigest()
        if not result.ok or expected not in result.output:
            raise GuestError(f"put {local} -> {remote} failed: {result.output.strip()[-300:]}")

    def get(self, remote: str, local: Path) -> None:
        result = self.run(f"sha256sum {shlex.quote(remote)} && base64 {shlex.quote(remote)}", timeout=300)
        if not result.ok:
            raise GuestError(f"get {remote} failed: {result.output.strip()[-300:]}")
        first, _, body = result.output.partition("\n")
        data = base64.b64decode("".join(body.split()))
        if hashlib.sha256(data).hexdigest() != first.split()[0]:
            raise GuestError(f"get {remote}: checksum mismatch after transfer")
        local.write_bytes(data)

    def close(self) -> None:
        """The console belongs to the machine; nothing to close."""
