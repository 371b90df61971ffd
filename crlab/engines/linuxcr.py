"""The linux-cr engine: crlab's own checkpoint(2)/restart(2) series (patches/linux-cr/, v21 image
format) driven by `crctl` in the guest, images decoded on the host by crlab.v21.

Checkpoint is external: the test's process tree is stopped with SIGSTOP, `crctl checkpoint PID FILE`
writes one v21 stream, and the tree is then killed (or continued).  Restart happens into the
calling process: `crctl restart FILE` is started detached in the background and, when restart(2)
succeeds, that process *becomes* the restored task (same pid as the crctl that called it), so
restore returns crctl's pid.  When restart(2) fails, crctl exits and says why.

The series has an x86 port only (x86_64 and i386; the x86_64 kernel refuses 32-bit tasks and
X86_32 images with EINVAL/EOPNOTSUPP); ppc64, ppc64le and armv7 come with a later series.  A
kernel without the series' system calls (or built without CONFIG_CHECKPOINT_V21) answers ENOSYS,
which `crctl` reports with exit code 3: the engine says so through `guest_unsupported_reason`, so a
C/R job on such a kernel reports C/R as not run, not as failures of every test.
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path
from typing import Any

from crlab.cache import Cache, hash_file, hash_inputs
from crlab.engines import ENGINES
from crlab.engines.base import CheckpointOptions, EngineResult, ImageError, timed_run
from crlab.guest.shell import Shell
from crlab.imagediff import Rules
from crlab.targets import TargetProfile

GUEST_CRCTL = "/usr/bin/crctl"
GUEST_SCRIPT = "/usr/libexec/crlab-linuxcr"  # the guest side: stop, checkpoint, restart (linuxcr-guest.sh)
SCRIPT_SOURCE = Path(__file__).with_name("linuxcr-guest.sh")
IMAGE_FILE = "checkpoint.img"  # the one v21 stream in an image directory
TASK_FILE = "task.env"  # beside it: the checkpointed task's cwd and standard descriptors (see checkpoint)
SUPPORTED_TARGETS = ("x86_64", "i386")  # targets the series has a port for (patches/linux-cr/)

# crctl's exit codes (tools/crctl/crctl.c)
EXIT_SYSCALL, EXIT_USAGE, EXIT_NOSYS, EXIT_IMAGE = 1, 2, 3, 4
RESTART_TIMEOUT_S = 120  # how long restart(2) may take before the restored task runs (the script's polls)


def _execution_registers() -> tuple[str, ...]:
    # x86 CPU record fields that change with every instruction the task executes (struct
    # ckpt_rec_x86_cpu); segment selectors, fs/gs bases (the TLS pointer) and used_math are kept,
    # because they must survive a restart unchanged.
    regs = ("r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx", "dx", "si", "di",
            "orig_ax", "ip", "flags", "sp")
    return tuple(f"task-*/cpu/{reg}" for reg in regs)


# What changes between two checkpoints of the same state and means nothing.  The first image is
# taken of the test as started, the second of the restored test still running, so everything the
# task does by running between the two is volatile; nothing else is dropped (decode() has already
# made what restart recreates differently comparable: see comparable()).
RULES = Rules(
    drop_paths=(
        # when each checkpoint was taken
        "header.img/time",
        # the task was stopped at another instruction (and, in a sleeping test, possibly inside
        # restart_syscall instead of the original call: orig_ax); the counter_loop and fpu_regs
        # programs check their own register state after the restart
        *_execution_registers(),
        # the FPU/SSE contents change as the task computes; fpu_regs checks its registers itself
        # (the xstate's size and format flags are kept)
        "task-*/fpu/xstate_sha256",
        # the restart block says which interruptible call the task was stopped in, like the
        # registers: the tests wait for their trigger in a loop of 20 ms nanosleeps (crtest.c), so
        # one checkpoint finds a sleep (HRTIMER_NANOSLEEP, clock, time left) and the next may find
        # none (measured: sysv_msg); nanosleep_restart checks the remaining time itself
        "task-*/restart_block/*",
        # the time left until an itimer fires (SIGNAL object, patch 0010): it counts down while the
        # task runs (or, for ITIMER_REAL, while it sleeps) between the two checkpoints, and an
        # ITIMER_REAL that fired during the stop shows 0 with its SIGALRM pending; like the
        # registers it is the task's progress, not its state.  The intervals (it_*_incr) and the
        # rlimits are state and are compared; the itimers test checks that its timers are still
        # armed with their intervals and keep firing after the restart.
        "*-obj*.img/it_real_value", "*-obj*.img/it_virt_value", "*-obj*.img/it_prof_value",
    ),
    # the restored task has the pid of the crctl that restarted it, not the one in the image:
    # pids are compared by their rank in the process tree (crlab.imagediff.pid_map)
    pid_keys=("pid", "ppid", "tgid", "pgid", "sid"),
    pid_file="pstree.img",
    # mappings by start address: an added or removed mapping shows once
    keyed_lists=(("vmas", "vm_start"),),
    # the tests' own log files are written between the two checkpoints (decode() gives every
    # GENERIC file its path as "name" so that this rule finds them)
    volatile_by_name=((r"\.log$", ("f_pos",)),),
)


def _quote(*args: str) -> str:
    return " ".join(shlex.quote(a) for a in args)


class LinuxCrEngine:
    name = "linux-cr"
    rules = RULES

    def unsupported_reason(self, profile: TargetProfile) -> str | None:
        if profile.name in SUPPORTED_TARGETS:
            return None
        return (f"crlab's linux-cr series has no port for {profile.name} yet (checkpoint(2)/restart(2) exist for "
                f"{' and '.join(SUPPORTED_TARGETS)}; ppc64, ppc64le and armv7 come with a later series)")

    def guest_unsupported_reason(self, shell: Shell) -> str | None:
        """None when the booted kernel has checkpoint(2), else why not (ENOSYS: the kernel lacks the
        series or CONFIG_CHECKPOINT_V21).  Probed by checkpointing a stopped sleeper."""
        result = shell.run(f"sh {GUEST_SCRIPT} probe", timeout=120)
        lines = [line.strip() for line in result.output.strip().splitlines() if line.strip()]
        status = lines[-1].removeprefix("crctl-exit=") if lines and lines[-1].startswith("crctl-exit=") else ""
        if status == str(EXIT_NOSYS):
            said = next((line for line in lines if line.startswith("crctl:")), "ENOSYS")
            return f"this kernel has no checkpoint(2): {said}"
        if not status.isdigit() or int(status) == EXIT_USAGE:
            return f"crctl could not be run in the guest: {result.output.strip()[-300:]}"
        return None  # 0: it works; 1 or 4: the call exists (refusing the probe is no lack of support)

    def guest_tree(self, profile: TargetProfile, cache: Cache) -> Path:
        """The target's static crctl at /usr/bin/crctl."""
        from crlab.v21.crctl import build_crctl

        crctl = build_crctl(profile, cache)
        key = hash_inputs("linux-cr-guest-tree", {"target": profile.name, "crctl": hash_file(crctl),
                                                  "script": hash_file(SCRIPT_SOURCE), "layout": "root/"})

        def build(scratch: Path) -> None:
            root = scratch / "root"  # root/: the entry's own files stay out of the guest
            for source, guest_path in ((crctl, GUEST_CRCTL), (SCRIPT_SOURCE, GUEST_SCRIPT)):
                target = root / guest_path.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
                target.chmod(0o755)

        entry = cache.get_or_build("trees", key, build, what=f"linux-cr guest tree for {profile.name}")
        return entry.path / "root"

    def version(self, shell: Shell) -> str:
        """The kernel's release (the series has no version of its own) and whether checkpoint(2) answers."""
        release = shell.run("uname -r", timeout=30).output.strip().splitlines()
        return f"linux-cr v21 on {release[-1] if release else 'unknown kernel'}"

    def checkpoint(self, shell: Shell, pid: int, image_dir: str, options: CheckpointOptions) -> EngineResult:
        """SIGSTOP the tree rooted at pid (checkpoint(2) wants group stop), checkpoint(2) it, then
        kill it (or SIGCONT it with leave_running; always after a refusal).  Beside the image,
        TASK_FILE keeps the task's cwd and standard descriptors: restart(2) keeps the restarting
        process's cwd, so restore() starts crctl where the task was (the descriptors come from the
        image's FILE_TABLE since patch 0009; crctl's own go where the task's went, for its errors)."""
        after = "cont" if options.leave_running else "kill"
        command = _quote("sh", GUEST_SCRIPT, "checkpoint", str(pid), image_dir, after, *options.extra)
        status, output, seconds = timed_run(shell, command, timeout=600)
        return self._result("checkpoint", status, output, seconds)

    def restore(self, shell: Shell, image_dir: str, options: CheckpointOptions) -> EngineResult:
        """`crctl restart` started detached in the task's cwd, its output appended where the task's
        went; done when that process is no longer crctl (restarted: its pid is the restored task's)
        or has exited (refused: crctl's and the kernel's words are the message)."""
        command = _quote("sh", GUEST_SCRIPT, "restore", image_dir, *options.extra)
        status, output, seconds = timed_run(shell, command, timeout=RESTART_TIMEOUT_S + 60)
        restored = [line for line in output.splitlines() if line.startswith("restored-pid=")]
        if status == 0 and restored:
            pid = restored[-1].removeprefix("restored-pid=").strip()
            return EngineResult(True, seconds, log=output, pid=int(pid) if pid.isdigit() else None)
        lines = [line.strip() for line in output.splitlines()
                 if line.strip() and not line.startswith(("restored-pid=", "restart-gone="))]
        # crctl's own line, and the last lines the kernel wrote to the log descriptor (crctl's stderr)
        said = "; ".join([line for line in lines if line.startswith("crctl")]
                         + [line for line in lines if not line.startswith("crctl")][-3:])
        if not said:
            said = "the restarting process ended without a message (killed? see the guest console)"
        return EngineResult(False, seconds, message=f"crctl restart: {said}", log=output)

    @staticmethod
    def _result(step: str, status: int, output: str, seconds: float) -> EngineResult:
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        code = next((line.removeprefix("crctl-exit=") for line in reversed(lines) if line.startswith("crctl-exit=")),
                    "")
        if status == 0 and code == "0":
            return EngineResult(True, seconds, log=output)
        said = next((line for line in lines if line.startswith("crctl:")), "")
        if not code.isdigit():
            return EngineResult(False, seconds, message=f"crctl {step}: no exit status ({output.strip()[-200:]})",
                                log=output)
        what = {EXIT_SYSCALL: f"{step}(2) failed", EXIT_USAGE: "bad usage or file",
                EXIT_NOSYS: f"no {step}(2) in this kernel (ENOSYS)", EXIT_IMAGE: "bad image"}.get(int(code), "")
        return EngineResult(False, seconds, message=f"crctl {step} exited {code} ({what}): {said or lines[-2:]}",
                            log=output)

    def decode(self, image_dir: Path) -> dict[str, Any]:
        """The image's canonical tree (crlab.v21.canonical) in the form the round-trip compares
        (see `comparable`)."""
        from crlab.v21 import DecodeError, canonical, decode_file
        from crlab.v21.tables import TableError

        path = image_dir / IMAGE_FILE
        if not path.is_file():
            raise ImageError(f"{image_dir}: no {IMAGE_FILE} in the image directory")
        try:
            _, tree = decode_file(path)
        except DecodeError as exc:
            raise ImageError(f"{path}: offset {exc.offset}: {exc.message.removeprefix(f'{path}: ')}") from None
        except TableError as exc:
            raise ImageError(f"{path}: {exc}") from None
        return comparable(canonical(tree))


# vm_flags bits that record how the kernel made a mapping, not what the task has: commit
# accounting (VM_ACCOUNT: a private writable file mapping later made read-only keeps it, one
# mapped read-only by restart has none) and soft-dirty tracking (VM_SOFTDIRTY: set on every new
# mapping).  Their values are the same on x86_64 and i386 in 6.1.
VM_KERNEL_BOOKKEEPING = 0x00100000 | 0x08000000
# x86 thread_info flags that are requests to the kernel's own exit-to-user path (work pending
# when the task was stopped), not the task's state: TIF_NOTIFY_RESUME 1, TIF_SIGPENDING 2,
# TIF_NEED_RESCHED 3, TIF_NEED_FPU_LOAD 14, TIF_NOTIFY_SIGNAL 17, TIF_POLLING_NRFLAG 21 (6.1).
TIF_TRANSIENT = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 14) | (1 << 17) | (1 << 21)
# f_mode bits that record how a file was opened, not what the task has: FMODE_CREATED (the open
# created the file; restart opens it again by path, 6.1's value on every arch).
FMODE_HISTORY = 0x100000


_SPLIT_KEYS = ("vm_start", "vm_end", "vm_pgoff", "pages")


def _maximal_mappings(vmas: list[dict[str, Any]], page_shift: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for vma in sorted(vmas, key=lambda v: v.get("vm_start", 0)):
        prev = out[-1] if out else None
        if prev is not None and prev.get("vm_end") == vma.get("vm_start") \
                and {k: v for k, v in prev.items() if k not in _SPLIT_KEYS} \
                == {k: v for k, v in vma.items() if k not in _SPLIT_KEYS} \
                and ("vm_pgoff" not in vma or vma["vm_pgoff"] == prev.get("vm_pgoff", 0)
                     + ((prev["vm_end"] - prev["vm_start"]) >> page_shift)):
            prev["vm_end"] = vma["vm_end"]
            prev["pages"] = {**prev.get("pages", {}), **vma.get("pages", {})}
            continue
        out.append(dict(vma))
    return out


def comparable(data: dict[str, Any]) -> dict[str, Any]:
    """The canonical tree made comparable across a restart, changing only what the kernel decides
    by itself when it recreates a task (each step says why):

    - a file-backed VMA (and the mm's exe_objref) names its file by path instead of by objref, and
      FILE objects only mappings use are dropped: the exec'd binary's mappings share one open file,
      restart opens the file per mapping; which `struct file` backs a private mapping is invisible
      to the task (and __FMODE_EXEC marks only exec's own open).  Files in the file table stay
      objects.
    - objects are named by kind and order of first appearance (mm-obj1.img ...) and objrefs are
      renumbered in the same order, since the extra files above shift the numbers;
    - vm_flags lose VM_KERNEL_BOOKKEEPING; an anonymous mapping loses vm_pgoff (its page offset is
      where the kernel first placed it, e.g. the stack before it was moved at exec);
    - an address space is compared as its maximal mappings: adjacent VMAs that differ only in where
      they split (same type, file, flags and protection, and for a file the next page offset) are
      one.  The kernel keeps such neighbours apart or merges them by its own history (i386: two
      mappings of the binary's data, apart after exec, one after restart maps them again); the
      memory and its protection are the same;
    - thread_info_flags lose TIF_TRANSIENT;
    - an open file's f_mode loses FMODE_HISTORY, and a FIFO's f_version is dropped: fifo_open()
      sets it to the FIFO's count of writers so far when a reader opens it with no writer, and
      restart opens each end while it holds the FIFO open for writing itself;
    - the pipe objects that ends of pipes and FIFOs refer to (pipe_objref, numbered in the same
      objhash as the objects but introduced by no OBJREF) are renumbered 1, 2 ... in the order the
      kept FILE objects first name them, for the same reason as the objects.
    A GENERIC file gets its path as "name" too, so that Rules.volatile_by_name finds the tests'
    logs.
    """
    files: dict[str, Any] = data["files"]
    page_shift = int(files.get("header.img", {}).get("constants", {}).get("page_shift", 12))
    objects = {name: obj for name, obj in files.items() if isinstance(obj, dict) and "objref" in obj
               and "kind" in obj and "-obj" in name}
    by_ref = {obj["objref"]: obj for obj in objects.values()}
    vma_files: set[int] = set()
    other_refs: set[int] = set()
    for obj in objects.values():
        if obj["kind"] == "FILE_TABLE":
            other_refs.update(fd["file_objref"] for fd in obj.get("fds", []))
        for vma in obj.get("vmas", []):
            ref = vma.pop("vma_objref", 0)
            target = by_ref.get(ref)
            if target is not None and target.get("kind") == "FILE":
                vma["file"] = target.get("path", f"objref {ref}")
                vma_files.add(ref)
            vma["vm_flags"] = vma.get("vm_flags", 0) & ~VM_KERNEL_BOOKKEEPING
            if vma.get("vma_type") == "ANON":
                vma.pop("vm_pgoff", None)
        if obj["kind"] == "MM" and obj.get("vmas"):
            obj["vmas"] = _maximal_mappings(obj["vmas"], page_shift)
            obj["map_count"] = len(obj["vmas"])
        exe = by_ref.get(obj.get("exe_objref", 0)) if obj["kind"] == "MM" else None
        if exe is not None and exe.get("kind") == "FILE":
            obj["exe_objref"] = exe.get("path", "?")
            vma_files.add(exe["objref"])
    for task_name, task in files.items():
        if task_name.startswith("task-") and isinstance(task.get("thread"), dict) \
                and "thread_info_flags" in task["thread"]:
            task["thread"]["thread_info_flags"] &= ~TIF_TRANSIENT
    dropped = vma_files - other_refs
    kept = sorted((obj for obj in objects.values() if obj["objref"] not in dropped), key=lambda o: o["objref"])
    renumber = {obj["objref"]: rank for rank, obj in enumerate(kept, 1)}
    out: dict[str, Any] = {name: content for name, content in files.items() if name not in objects}
    pipes: dict[int, int] = {}
    for obj in kept:
        if "pipe_objref" in obj:
            obj["pipe_objref"] = pipes.setdefault(obj["pipe_objref"], len(pipes) + 1)
        if obj["kind"] == "FILE" and "f_mode" in obj:
            obj["f_mode"] &= ~FMODE_HISTORY
        if obj.get("f_type") == "FIFO":
            obj.pop("f_version", None)
    for obj in kept:
        obj["objref"] = renumber[obj["objref"]]
        for fd in obj.get("fds", []):
            fd["file_objref"] = renumber.get(fd["file_objref"], fd["file_objref"])
        if obj.get("f_type") == "GENERIC" and "path" in obj:
            obj["name"] = obj["path"]
        out[f"{str(obj['kind']).lower()}-obj{obj['objref']}.img"] = obj
    for name, task in out.items():
        if name.startswith("task-") and isinstance(task.get("objs"), dict):
            task["objs"] = {key: renumber.get(ref, ref) if key.endswith("_objref") else ref
                            for key, ref in task["objs"].items()}
    return {**data, "files": out}


ENGINES["linux-cr"] = LinuxCrEngine()
