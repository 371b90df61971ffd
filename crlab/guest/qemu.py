"""A QEMU machine: its command line, start, boot to a shell prompt, shut down, classify failures."""

from __future__ import annotations

import contextlib
import re
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pexpect

from crlab.model import FailureClass
from crlab.targets import TargetProfile

# what /init prints once the guest is usable, and the prompt it gives the shell
READY_BANNER = "crlab-init: ready"
PROMPT = "crlab# "
HOSTKEY_LINE = re.compile(r"crlab-hostkey: (\S+ \S+)")

# console patterns that tell a broken kernel from a slow one
PANIC = re.compile(r"Kernel panic - not syncing[^\r\n]*")
OOPS = re.compile(r"(?:Oops[:\s][^\r\n]*|BUG: [^\r\n]*|kernel BUG at [^\r\n]*|Unable to handle kernel[^\r\n]*)")


_PRINTK_LINE = re.compile(r"\[ *\d+\.\d{6}\] [^\r\n]*")


_SCAN_CHUNK = 1 << 20
_SCAN_OVERLAP = 8192  # longer than any line a search needs whole (printk lines are at most 1 KiB)
_TAIL_BYTES = 65536


def search_file(path: Path, search: Callable[[str], str | None]) -> str | None:
    """Apply `search` to a text file chunk by chunk, each chunk beginning with the last
    _SCAN_OVERLAP bytes of the one before, so a line cut by a chunk boundary is seen whole once."""
    try:
        fh = open(path, "rb")  # noqa: SIM115
    except OSError:
        return None
    with fh:
        carry = b""
        while chunk := fh.read(_SCAN_CHUNK):
            window = carry + chunk
            hit = search(window.decode(errors="replace"))
            if hit is not None:
                return hit
            carry = window[-_SCAN_OVERLAP:]
    return None


def find_oops(console_log: str) -> str | None:
    """The first oops/BUG the kernel printed.  Only printk lines count (they carry a timestamp with
    PRINTK_TIME), so a test that prints "BUG:" on the console is not mistaken for the kernel."""
    for line in _PRINTK_LINE.findall(console_log):
        match = OOPS.search(line)
        if match:
            return match.group(0).strip()
    return None


class BootFailure(Exception):
    def __init__(self, failure: FailureClass, message: str) -> None:
        super().__init__(message)
        self.failure = failure


@dataclass
class MachineConfig:
    profile: TargetProfile
    kernel: Path
    initrd: Path
    job_dir: Path  # the only host directory the guest's files end up in (logs)
    cmdline: str = ""  # extra kernel arguments (e.g. init= for fault tests)
    ssh_port: int | None = None  # forward 127.0.0.1:ssh_port -> guest:22; None = no network at all
    first_output_timeout: float = 60.0  # no console output at all by then: hang
    boot_timeout: float = 180.0  # no prompt by then: hang


@cache
def qemu_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], text=True, capture_output=True, timeout=30).stdout
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return "missing"
    return out.splitlines()[0] if out else "unknown"


def qemu_command(cfg: MachineConfig) -> list[str]:
    profile = cfg.profile
    append = " ".join(f"console={profile.console} panic=-1 {profile.kernel_cmdline} {cfg.cmdline}".split())
    cmd = [
        profile.qemu_binary,
        "-accel", "tcg",
        "-M", profile.machine,
        "-cpu", profile.cpu,
        "-m", str(profile.memory_mb),
        "-smp", str(profile.smp),
        "-nographic",
        "-no-reboot",  # with panic=-1 a panic ends QEMU instead of looping
        "-monitor", "none",
        # stdio with signal=off: a Ctrl-C sent to stop a stuck command must reach the guest, not QEMU
        "-chardev", "stdio,id=console,signal=off",
        "-serial", "chardev:console",
        "-kernel", str(cfg.kernel),
        "-initrd", str(cfg.initrd),
        "-append", append,
        *profile.qemu_extra_args,
    ]
    if cfg.ssh_port is None:
        cmd += ["-nic", "none"]
    else:
        # user-mode networking: no host privileges; the one forward listens on loopback only
        cmd += ["-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{cfg.ssh_port}-:22",
                "-device", f"{profile.nic_device},netdev=n0"]
    return cmd


@dataclass
class BootInfo:
    seconds_to_prompt: float
    host_key: str | None = None  # the guest's SSH host key, as printed on the console
    boot_log: str = field(default="", repr=False)

    @property
    def ssh_server_started(self) -> bool:
        return "crlab-init: dropbear started" in self.boot_log


# How much of a guest's console crlab keeps on disk (console.log); past it, one line says how much
# more there was.  A flooding guest costs disk up to this, and crlab's memory not at all.
CONSOLE_LOG_CAP = 64 * 1024 * 1024


class CappedLog:
    """A text file that keeps the first `cap` bytes written to it, then counts the rest."""

    def __init__(self, path: Path, cap: int) -> None:
        self._fh = open(path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
        self.cap = cap
        self.written = self._fh.tell()  # bytes, as the cap is
        self.dropped = 0  # characters
        self._capped_note_written = False

    def write(self, text: str) -> int:
        length = len(text)
        if self.written < self.cap:
            # characters, then bytes: a multi-byte character may take the file a few bytes past the cap
            part = text[:self.cap - self.written]
            self._fh.write(part)
            self.written += len(part.encode("utf-8", errors="replace"))
            text = text[len(part):]
        if text:
            # said once, by whichever write is the first to lose output (one that filled the file
            # exactly to the cap lost nothing)
            if not self._capped_note_written:
                self._fh.write(f"\n[crlab: console log capped at {self.cap} bytes; later output not kept]\n")
                self._capped_note_written = True
            self.dropped += len(text)
        return length

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        if self.dropped:
            self._fh.write(f"[crlab: {self.dropped} characters of console output were not kept]\n")
        self._fh.close()

    @property
    def closed(self) -> bool:
        return self._fh.closed


class QemuMachine:
    """One running guest. The serial console is QEMU's stdio, a pty that pexpect reads."""

    def __init__(self, cfg: MachineConfig) -> None:
        self.cfg = cfg
        self.child: pexpect.spawn | None = None
        self.console_log = cfg.job_dir / "console.log"
        self.stderr_log = cfg.job_dir / "qemu.stderr"
        self.started_at = 0.0
        self.ignored_shutdown = False  # running, and still running `timeout` s after the shutdown command

    @property
    def command(self) -> list[str]:
        return qemu_command(self.cfg)

    def start(self) -> None:
        self.cfg.job_dir.mkdir(parents=True, exist_ok=True)
        (self.cfg.job_dir / "qemu.cmdline").write_text(shlex.join(self.command) + "\n")
        # QEMU's own warnings go to a file so that they never mix with the guest's console
        shell_cmd = f"exec {shlex.join(self.command)} 2>>{shlex.quote(str(self.stderr_log))}"
        self.started_at = time.monotonic()
        self.child = pexpect.spawn("/bin/sh", ["-c", shell_cmd], encoding="utf-8", codec_errors="replace",
                                   timeout=30, maxread=65536, dimensions=(500, 500), echo=False)
        self.child.logfile_read = CappedLog(self.console_log, CONSOLE_LOG_CAP)

    def wait_for_boot(self) -> BootInfo:
        """Wait for /init's ready banner and the first prompt; classify anything else."""
        assert self.child is not None
        child = self.child
        patterns = [READY_BANNER, PANIC.pattern, pexpect.EOF, pexpect.TIMEOUT]
        deadline = self.started_at + self.cfg.boot_timeout
        first_deadline = self.started_at + self.cfg.first_output_timeout
        seen_output = False
        while True:
            now = time.monotonic()
            limit = (first_deadline if not seen_output else deadline) - now
            # a bounded search window: rescanning the whole boot log on every read costs real time
            index = child.expect(patterns, timeout=max(limit, 0.1), searchwindowsize=4096) if limit > 0 else 3
            if not seen_output and (child.before or child.after not in (pexpect.TIMEOUT, pexpect.EOF)):
                seen_output = True
            if index == 0:
                child.expect_exact(PROMPT, timeout=max(deadline - time.monotonic(), 5))
                seconds = time.monotonic() - self.started_at
                log = self.read_console_log()
                match = HOSTKEY_LINE.search(log)
                return BootInfo(seconds, match.group(1) if match else None, log)
            if index == 1:
                self._wait_exit(10)
                raise BootFailure(FailureClass.BOOT_PANIC, self._panic_message())
            if index == 2:
                if self.find_panic():
                    raise BootFailure(FailureClass.BOOT_PANIC, self._panic_message())
                raise BootFailure(FailureClass.QEMU_EXIT, "QEMU exited before the guest reached a shell"
                                  + self._stderr_summary() + self._last_lines())
            # a timeout: either nothing ever came, or the boot stalled
            if time.monotonic() >= first_deadline and not seen_output and not self.read_console_log().strip():
                raise BootFailure(FailureClass.BOOT_HANG,
                                  f"no console output within {self.cfg.first_output_timeout:.0f} s")
            seen_output = True
            if time.monotonic() >= deadline:
                oops = self.find_oops()
                detail = f" after {oops!r}" if oops else ""
                raise BootFailure(FailureClass.BOOT_HANG, f"no shell prompt within {self.cfg.boot_timeout:.0f} s"
                                  + detail + self._last_lines())

    def _flush_console_log(self) -> None:
        if self.child is not None and self.child.logfile_read:
            self.child.logfile_read.flush()

    def read_console_log(self) -> str:
        self._flush_console_log()
        try:
            return self.console_log.read_text(errors="replace")
        except OSError:
            return ""

    def search_console_log(self, search: Callable[[str], str | None]) -> str | None:
        """The first hit of `search` in console.log, read in chunks: a flooded log (up to
        CONSOLE_LOG_CAP) is never held in memory whole."""
        self._flush_console_log()
        return search_file(self.console_log, search)

    def find_oops(self) -> str | None:
        return self.search_console_log(find_oops)

    def find_panic(self) -> str | None:
        return self.search_console_log(lambda text: m.group(0).strip() if (m := PANIC.search(text)) else None)

    def _panic_message(self) -> str:
        return (self.find_panic() or "kernel panic") + self._last_lines()

    def _last_lines(self, count: int = 6) -> str:
        self._flush_console_log()
        try:
            with open(self.console_log, "rb") as fh:
                fh.seek(max(fh.seek(0, 2) - _TAIL_BYTES, 0))
                tail = fh.read().decode(errors="replace")
        except OSError:
            return ""
        lines = [ln.rstrip() for ln in tail.splitlines() if ln.strip()]
        return ("\n" + "\n".join(lines[-count:])) if lines else ""

    def _stderr_summary(self) -> str:
        try:
            text = self.stderr_log.read_text(errors="replace").strip()
        except OSError:
            return ""
        return f" (qemu: {text.splitlines()[-1]})" if text else ""

    def stderr_text(self) -> str:
        try:
            return self.stderr_log.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def alive(self) -> bool:
        return self.child is not None and self.child.isalive()

    def exits_within(self, timeout: float) -> bool:
        """True if QEMU has exited or exits within `timeout` seconds."""
        return self.child is None or self._wait_exit(timeout)

    def _wait_exit(self, timeout: float) -> bool:
        assert self.child is not None
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not self.child.isalive():
                return True
            with contextlib.suppress(pexpect.TIMEOUT, pexpect.EOF, OSError):
                self.child.expect(pexpect.EOF, timeout=0.5)
        return not self.child.isalive()

    def shutdown(self, timeout: float = 20) -> bool:
        """Ask the guest to power off; kill QEMU if it does not exit. True if it exited by itself."""
        if self.child is None:
            return True
        clean = False
        if self.child.isalive():
            with contextlib.suppress(OSError):
                self.child.sendline(self.cfg.profile.shutdown_command)
            clean = self._wait_exit(timeout)
            self.ignored_shutdown = not clean
        self.kill()
        return clean

    def kill(self) -> None:
        if self.child is None:
            return
        if self.child.isalive():
            self.child.terminate(force=True)
        with contextlib.suppress(Exception):
            self.child.close(force=True)
        if self.child.logfile_read:
            self.child.logfile_read.close()
            self.child.logfile_read = None

    def __enter__(self) -> QemuMachine:
        return self

    def __exit__(self, *_: object) -> None:
        self.kill()
