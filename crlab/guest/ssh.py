"""A shell over SSH (paramiko) to the dropbear server in the guest.

The client key is made per run; the server's host key is the one the guest printed on its
console at boot, so the connection is pinned to that guest and nothing else.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import shlex
import time
from pathlib import Path

import paramiko

from crlab.guest.shell import CommandResult, CommandTimeout, GuestError, HostKeyRefused, TransportError, wrap_command

# paramiko logs a traceback for every refused attempt while the guest is still starting its server;
# crlab reports the final outcome itself
logging.getLogger("paramiko").setLevel(logging.CRITICAL)


def generate_client_key(path: Path) -> paramiko.PKey:
    """A fresh ECDSA key pair for one run; the private half is written 0600."""
    key = paramiko.ECDSAKey.generate(bits=256)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    key.write_private_key_file(str(path))
    path.with_suffix(".pub").write_text(f"{key.get_name()} {key.get_base64()} crlab\n")
    return key


def public_line(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()} crlab"


class _HostKeyMismatch(paramiko.SSHException):
    pass


class _PinnedHostKey(paramiko.MissingHostKeyPolicy):
    def __init__(self, expected: str | None) -> None:
        self.expected = expected

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        # decided only once a server answers: with nothing listening the error says that instead
        if not self.expected or len(self.expected.split()) < 2:
            raise _HostKeyMismatch(f"the guest announced no host key on its console (no 'crlab-hostkey:' "
                                   f"line); not trusting the {key.get_name()} key the server offered")
        kind, blob = self.expected.split()[:2]
        if key.get_name() != kind or key.get_base64() != blob:
            raise _HostKeyMismatch(f"the guest announced {kind} {blob[:24]}... on its console, the server "
                                   f"offered {key.get_name()} {key.get_base64()[:24]}...")


def _gone(transport: paramiko.Transport, wait: float = 3.0) -> bool:
    """Whether the SSH connection is down (within `wait` s: paramiko notices a closed socket in its
    own thread)."""
    deadline = time.monotonic() + wait
    while transport.is_active():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


class SshShell:
    name = "ssh"

    def __init__(self, port: int, key: paramiko.PKey, host_key: str | None, job: str,
                 connect_timeout: float = 60) -> None:
        self.port = port
        self.job = job
        self.client = paramiko.SSHClient()
        self.client.set_missing_host_key_policy(_PinnedHostKey(host_key))
        deadline = time.monotonic() + connect_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                self.client.connect("127.0.0.1", port=port, username="root", pkey=key, timeout=10,
                                    banner_timeout=20, auth_timeout=20, allow_agent=False,
                                    look_for_keys=False)
                return
            except _HostKeyMismatch as exc:
                self.client.close()
                raise HostKeyRefused(f"job {job}: SSH host key refused for 127.0.0.1:{port}: {exc}") from None
            except (OSError, paramiko.SSHException, EOFError) as exc:
                last_error = exc
                time.sleep(1)
        raise TransportError(f"job {job}: the SSH server at 127.0.0.1:{port} did not answer within "
                             f"{connect_timeout:.0f} s (does the guest have networking and dropbear?): "
                             f"{type(last_error).__name__}: {last_error}")

    def _exec(self, command: str, timeout: float, stdin_data: bytes | None = None) -> tuple[bytes, int]:
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise GuestError(f"job {self.job}: the SSH connection is gone")
        channel = transport.open_session(timeout=30)
        channel.set_combine_stderr(True)  # same semantics as the console: one output stream
        channel.settimeout(timeout)
        channel.exec_command(command)
        try:
            if stdin_data is not None:
                try:
                    channel.sendall(stdin_data)
                    channel.shutdown_write()
                except OSError:
                    pass  # the command ended without reading all of it: its output and status say why
            chunks = []
            deadline = time.monotonic() + timeout
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError()
                data = channel.recv(65536)
                if not data:
                    break
                chunks.append(data)
            status = channel.recv_exit_status()
        except TimeoutError as exc:
            channel.close()
            raise CommandTimeout(command, timeout, b"".join(chunks).decode(errors="replace")) from exc
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise TransportError(f"job {self.job}: the SSH connection dropped while a command ran: "
                                 f"{type(exc).__name__}: {exc}") from exc
        if status == -1 and _gone(transport):
            # no exit status: the connection closed under the command (a command killed by a signal
            # also has none, but leaves the connection up)
            raise TransportError(f"job {self.job}: the SSH connection dropped while a command ran "
                                 f"({len(b''.join(chunks))} bytes of output received)")
        channel.close()
        return b"".join(chunks), status

    def run(self, command: str, timeout: float = 60, env: dict[str, str] | None = None,
            cwd: str | None = None) -> CommandResult:
        output, status = self._exec(wrap_command(command, env, cwd) + " </dev/null", timeout)
        return CommandResult(output=output.decode(errors="replace").replace("\r\n", "\n"), exit_status=status)

    def put(self, local: Path, remote: str, mode: int = 0o644) -> None:
        tmp = shlex.quote(remote + ".crlab-part")
        dest = shlex.quote(remote)
        output, status = self._exec(f"cat > {tmp} && mv {tmp} {dest} && chmod {mode:o} {dest}", 300,
                                    stdin_data=local.read_bytes())
        if status != 0:
            raise GuestError(f"put {local} -> {remote} failed: {output.decode(errors='replace')[-300:]}")

    def get(self, remote: str, local: Path) -> None:
        # base64 keeps the stream clean of anything a pty could do to binary data
        output, status = self._exec(f"base64 {shlex.quote(remote)}", 300)
        if status != 0:
            raise GuestError(f"get {remote} failed: {output.decode(errors='replace')[-300:]}")
        local.write_bytes(base64.b64decode(b"".join(output.split())))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
