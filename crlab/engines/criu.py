"""The CRIU engine: Debian's criu in the guest, Debian's pycriu (crit) on the host.

CRIU 3.17 (Debian 12) runs on amd64 and ppc64el; it has no i386 or big-endian ppc64 port, so a
target carries "criu" in its profile's `engines` only where it runs.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

from crlab.cache import Cache
from crlab.engines import ENGINES
from crlab.engines.base import CheckpointOptions, EngineResult, ImageError, timed_run
from crlab.guest.shell import Shell
from crlab.imagediff import Rules
from crlab.targets import TargetProfile

GUEST_CRIU = "/usr/sbin/criu"
HOST_PYTHON = "/usr/bin/python3"  # Debian's python3, where the criu package puts pycriu
DECODER = Path(__file__).with_name("crit_decode.py")
# the Debian packages that give the guest its criu (their library closure comes with them)
GUEST_PACKAGES = ("criu",)
# criu depends on python3-protobuf for crit, which the guest does not run: the closure stops there
GUEST_EXCLUDE = ("python3", "python3:any", "python3-protobuf")

_ERROR_LINE = re.compile(r"^\(?[0-9. ]*\)?\s*Error \([^)]*\): .*$", re.M)

# What changes between two checkpoints of the same state and means nothing.
RULES = Rules(
    drop_files=("stats-*.img", "irmap-cache.img"),
    drop_paths=(
        "inventory.img/entries/*/dump_uptime",  # when the dump was taken
        # the registers of a task stopped at another instruction (x86: thread_info; others: ti_<arch>);
        # the fpu_regs and counter_loop programs check their own register state after the restore
        "*/thread_info/gpregs/*", "*/thread_info/fpregs/*",
        "*/ti_*/gpregs/*", "*/ti_*/fpstate/*", "*/ti_*/vrstate/*", "*/ti_*/vsxstate/*",
        "*/tc/timers/*/vsec", "*/tc/timers/*/vusec",  # the time left on an itimer (intervals are kept)
        "*/posix_timers/*/vsec", "*/posix_timers/*/vnsec", "*/posix_timers/*/overrun",
        "timens-*.img/entries/*/monotonic", "timens-*.img/entries/*/boottime",  # clock offsets taken at dump
        "*/restart_block*",
    ),
    renumber_keys=("ino", "inode", "pipe_id", "mnt_id", "s_dev", "dev", "rdev", "root_cg_set", "cg_set", "peer",
                   "fifo_id", "shmid", "key_id", "cwd_id", "root_id", "files_id", "fs_id", "sighand_id", "vm_id",
                   "pages_id",
                   # CRIU numbers namespaces as it meets them; a restored task sits in a time namespace
                   # CRIU made, met at another point of the second dump (5 -> 9 seen with CONFIG_TIME_NS)
                   "time_ns_id"),
    numbered_files=((r"^timens-(\d+)\.img$", "time_ns_id"),),
    pid_keys=("pid", "ppid", "pgid", "sid", "threads", "tid", "real_pid"),
    pid_file="pstree.img",
    # mappings by address; the process tree by (mapped) pid, since CRIU lists it in no fixed order
    keyed_lists=(("vmas", "start"), ("entries", "pid"), ("tfd", "tfd")),
    # the tests' own log files are written between the two checkpoints
    volatile_by_name=((r"\.log$", ("pos", "size")),),
)


class CriuEngine:
    name = "criu"
    rules = RULES

    def unsupported_reason(self, profile: TargetProfile) -> str | None:
        if "criu" in profile.engines:
            return None
        return f"CRIU has no port for {profile.name} (CRIU runs on x86_64 and ppc64le here)"

    def guest_unsupported_reason(self, shell: Shell) -> str | None:
        return None  # the kernel parts CRIU needs come from the engine's Kconfig fragment

    def guest_tree(self, profile: TargetProfile, cache: Cache) -> Path:
        """Debian's criu for the target with its shared-library closure (crit's Python stays out)."""
        from crlab.userland import DEFAULT_PRUNE, packages_with_libraries

        return packages_with_libraries(profile, list(GUEST_PACKAGES), cache, exclude=GUEST_EXCLUDE,
                                       prune=(*DEFAULT_PRUNE, "usr/lib/python3*", "usr/bin/crit", "usr/bin/compel",
                                              "usr/lib/*/compel", "usr/include"))

    def version(self, shell: Shell) -> str:
        result = shell.run(f"{GUEST_CRIU} --version", timeout=60)
        match = re.search(r"Version:\s*(\S+)", result.output)
        return match.group(1) if match else result.output.strip()[:80]

    def checkpoint(self, shell: Shell, pid: int, image_dir: str, options: CheckpointOptions) -> EngineResult:
        args = ["dump", "-t", str(pid), "-D", image_dir, "-o", "dump.log", "-v4"]
        if options.leave_running:
            args.append("--leave-running")
        args += list(options.extra)
        return self._run(shell, image_dir, args, "dump.log")

    def restore(self, shell: Shell, image_dir: str, options: CheckpointOptions) -> EngineResult:
        pidfile = f"{image_dir}/restored.pid"
        args = ["restore", "-D", image_dir, "-o", "restore.log", "-v4", "-d", "--pidfile", pidfile,
                *options.extra]
        result = self._run(shell, image_dir, args, "restore.log")
        if result.ok:
            out = shell.run(f"cat {shlex.quote(pidfile)}", timeout=30).output.strip()
            result.pid = int(out) if out.isdigit() else None
        return result

    def _run(self, shell: Shell, image_dir: str, args: list[str], log_name: str) -> EngineResult:
        command = (f"mkdir -p {shlex.quote(image_dir)} && "
                   f"{GUEST_CRIU} {' '.join(shlex.quote(a) for a in args)}")
        status, output, seconds = timed_run(shell, command, timeout=600)
        log = shell.run(f"cat {shlex.quote(image_dir)}/{log_name} 2>/dev/null", timeout=120).output
        if status == 0:
            return EngineResult(True, seconds, log=log)
        errors = _ERROR_LINE.findall(log) or [line for line in output.splitlines() if line.strip()]
        first = errors[0].strip() if errors else f"criu exited {status}"
        return EngineResult(False, seconds, message=f"criu {args[0]} exited {status}: {first}", log=log)

    def decode(self, image_dir: Path) -> dict[str, Any]:
        try:
            proc = subprocess.run([HOST_PYTHON, str(DECODER), str(image_dir)], text=True, capture_output=True,
                                  timeout=600)
        except FileNotFoundError as exc:
            raise ImageError(f"{HOST_PYTHON} not found: install Debian's python3 and criu packages") from exc
        try:
            data = json.loads(proc.stdout) if proc.stdout.strip() else {}
        except json.JSONDecodeError:
            data = {}
        if proc.returncode != 0 or "error" in data or "files" not in data:
            message = data.get("error") or (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise ImageError(f"{image_dir}: {message}")
        return data


ENGINES["criu"] = CriuEngine()
