"""What a job does, behind one small interface.

The orchestrator schedules, retries and records; a job kind is handed a `JobContext` that can
build kernels, pack the rootfs and boot guests (any number, of any of the run's kernels, one
after another) and returns a `KindOutcome`.  The first kind, "tap", boots once, runs the suite's
command and parses the TAP it prints.  Kinds that checkpoint on one kernel and restore on another
boot two guests in sequence and record image artefacts with `ctx.artifact()`.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from crlab.cache import Cache
from crlab.config import MatrixConfig, SuiteConfig
from crlab.guest.lifecycle import Guest
from crlab.guest.shell import GuestError
from crlab.model import FailureClass, JobSpec, Status, TestResult
from crlab.rootfs import GUEST_SUITES_DIR, Rootfs
from crlab.tap import parse_tap, summarize_tap
from crlab.targets import TargetProfile


@dataclass
class KindOutcome:
    status: Status
    failure: FailureClass = FailureClass.NONE
    stage: str = "collect"
    message: str = ""
    tests: list[TestResult] = field(default_factory=list)


class JobContext(Protocol):
    """What a job kind may use; the orchestrator provides it (crlab.orchestrator.Job)."""

    spec: JobSpec  # the job's axes: kernel, target, suite, transport, engine, consumer
    suite: SuiteConfig
    profile: TargetProfile
    job_dir: Path
    timings: dict[str, float]  # the result's, filled in by the kind
    info: dict[str, object]
    suite_dir_in_guest: str
    run_timeout: float

    def stage(self, name: str, detail: str = "") -> None: ...

    cfg: MatrixConfig  # the run's configuration (its kernel trees, targets, suites)
    cache: Cache

    def boot(self, kernel: str | None = None, label: str = "", min_memory_mb: int = 0,
             rootfs: Rootfs | None = None) -> contextlib.AbstractContextManager[Guest]:
        """A booted guest of `kernel` (default: the job's kernel) on the job's target and transport.
        `label` names a second or later guest of the same job; its logs go to job_dir/label/.
        `min_memory_mb` raises the target's memory for kinds that need more.  `rootfs` replaces
        the suite's (a kind that adds its own archive to it)."""
        ...

    def rootfs(self) -> Rootfs:
        """The suite's root filesystem for the job's target (built when missing)."""
        ...

    def guest_env(self, guest: Guest) -> dict[str, str]: ...

    def artifact(self, name: str, path: Path) -> None:
        """Record a file under the job directory as an artefact of the result."""
        ...


class JobKind(Protocol):
    name: str

    def run(self, ctx: JobContext) -> KindOutcome: ...


class TapSuite:
    """Boot once, run the suite's command, parse the TAP it prints."""

    name = "tap"

    def run(self, ctx: JobContext) -> KindOutcome:
        with ctx.boot() as guest:
            ctx.stage("run", guest.spec.transport)
            started = time.monotonic()
            try:
                output = guest.shell.run(ctx.suite.command, timeout=ctx.run_timeout, env=ctx.guest_env(guest),
                                         cwd=ctx.suite_dir_in_guest)
            except GuestError as exc:
                partial = getattr(exc, "partial", "")
                if partial:
                    (ctx.job_dir / "suite.log").write_text(partial)
                raise
            ctx.timings["run_s"] = round(time.monotonic() - started, 2)
            (ctx.job_dir / "suite.log").write_text(output.output)
            ctx.stage("collect")
            with contextlib.suppress(GuestError):
                (ctx.job_dir / "dmesg.log").write_text(guest.shell.run("dmesg", timeout=60).output)
            report = parse_tap(output.output)
            status, message = summarize_tap(report)
            failure = {Status.PASS: FailureClass.NONE, Status.SKIP: FailureClass.NONE,
                       Status.FAIL: FailureClass.TEST}.get(status, FailureClass.INFRA)
            if report.crash is not None:  # the kernel died under a running test
                failure = FailureClass.GUEST_PANIC if "panic" in report.crash.lower() else FailureClass.KERNEL_OOPS
                where = f" in {report.crash_in}" if report.crash_in else ""
                message = f"kernel crashed{where}: {report.crash}; {message}"
            if output.exit_status != 0 and status == Status.PASS:
                status, failure = Status.FAIL, FailureClass.TEST
                message = f"suite command exited {output.exit_status}"
            oops = guest.kernel_oops()
            if oops:
                status, failure = Status.FAIL, FailureClass.KERNEL_OOPS
                message = f"kernel reported {oops!r}; " + message
            return KindOutcome(status, failure, "run" if status != Status.PASS else "collect", message,
                               report.tests)


KINDS: dict[str, JobKind] = {kind.name: kind for kind in (TapSuite(),)}


def _register() -> None:
    # kinds in other modules (they import this one, hence not at the top)
    from crlab import crsuite, kselftest, kunit

    for kind in (*crsuite.KINDS, *kselftest.KINDS, *kunit.KINDS):
        KINDS.setdefault(kind.name, kind)


def kind_names() -> tuple[str, ...]:
    _register()
    return tuple(KINDS)


def get_kind(name: str) -> JobKind:
    _register()
    return KINDS[name]


__all__ = ["JobContext", "JobKind", "KindOutcome", "KINDS", "TapSuite", "get_kind", "kind_names", "GUEST_SUITES_DIR"]
