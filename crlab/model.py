"""The data that flows between the orchestrator, the results store and the reports."""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from typing import Any


class Status(enum.StrEnum):
    """Outcome of a job or a test.  INCOMPLETE is neither a pass nor a failure."""

    PASS = "pass"
    FAIL = "fail"  # the kernel or the test is at fault (build failure, panic, failed check)
    SKIP = "skip"  # not run, with a reason
    INCOMPLETE = "incomplete"  # the harness could not finish (infrastructure error, timeout, interrupt)
    PENDING = "pending"  # planned, not run yet


class FailureClass(enum.StrEnum):
    """Why a job did not pass; the stage that failed is recorded alongside."""

    NONE = ""
    CONFIG = "config"  # a requested Kconfig symbol did not survive
    PATCH = "patch"  # a patch did not apply
    BUILD = "build"  # the kernel or userland did not build
    BOOT_PANIC = "boot-panic"
    BOOT_OOPS = "boot-oops"  # oops / BUG while booting
    BOOT_HANG = "boot-hang"  # no console output, or no prompt, within the boot timeout
    QEMU_EXIT = "qemu-exited"  # QEMU ended before the guest was usable
    GUEST_PANIC = "guest-panic"  # panic after boot, while a suite ran
    KERNEL_OOPS = "kernel-oops"  # oops / BUG after boot; the suite may even have passed
    TEST = "test"  # a test reported failure
    TIMEOUT = "timeout"  # a suite did not finish in time
    TRANSPORT = "transport"  # console/SSH could not be used (e.g. SSH unreachable)
    INFRA = "infra"  # host problem: missing tool, disk full, crash in crlab
    INTERRUPTED = "interrupted"


STAGES = ("source", "patch", "configure", "build", "rootfs", "boot", "run", "collect")


@dataclass
class TestResult:
    name: str
    status: Status
    message: str = ""  # diagnostics for a failure, or a skip's reason
    number: int | None = None


# The named axes that identify a job's result across runs (nightly comparison, gates, merges of
# stores from several machines).  kernel/target/suite/transport are always set; engine is the C/R
# engine a suite ran on, consumer the kernel that restored what `kernel` checkpointed.
AXES = ("kernel", "target", "suite", "transport", "engine", "consumer")
OPTIONAL_AXES = ("engine", "consumer")


@dataclass(frozen=True)
class JobSpec:
    """One matrix cell, identified by its named axes (see AXES)."""

    kernel: str
    target: str
    suite: str
    transport: str = "console"
    engine: str = ""  # "" when the suite uses no C/R engine
    consumer: str = ""  # "" unless an image made on `kernel` is restored on this other kernel

    @property
    def axes(self) -> dict[str, str]:
        """The key as an ordered mapping; optional axes appear only when set."""
        return {axis: getattr(self, axis) for axis in AXES
                if axis not in OPTIONAL_AXES or getattr(self, axis)}

    @property
    def key(self) -> str:
        """Canonical text of the result key: equal across runs for the same cell."""
        return json.dumps(self.axes, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_axes(cls, axes: dict[str, str]) -> JobSpec:
        return cls(**{axis: axes[axis] for axis in AXES if axis in axes})

    @property
    def job_id(self) -> str:
        """Unique within a run, for people: kernel[>consumer]/target/suite[@engine]."""
        kernel = f"{self.kernel}>{self.consumer}" if self.consumer else self.kernel
        suite = f"{self.suite}@{self.engine}" if self.engine else self.suite
        return f"{kernel}/{self.target}/{suite}"

    @property
    def dir_name(self) -> str:
        parts = [self.kernel, self.target, self.suite]
        if self.engine:
            parts.append(self.engine)
        if self.consumer:
            parts.append(f"to-{self.consumer}")
        return "__".join(parts)


@dataclass
class JobResult:
    spec: JobSpec
    status: Status = Status.PENDING
    failure: FailureClass = FailureClass.NONE
    stage: str = ""  # the stage reached (the failing one, when it failed)
    message: str = ""  # one plain sentence for people
    tests: list[TestResult] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # build_s, boot_s, run_s, total_s ...
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> path relative to the job dir
    info: dict[str, Any] = field(default_factory=dict)  # qemu version, kernel release, cache keys ...
    attempts: int = 1

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["job_id"] = self.spec.job_id
        data["key"] = self.spec.axes
        data["status"] = self.status.value
        data["failure"] = self.failure.value
        for test in data["tests"]:
            test["status"] = test["status"].value if isinstance(test["status"], Status) else test["status"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobResult:
        spec = JobSpec.from_axes(data["spec"])
        tests = [
            TestResult(name=t["name"], status=Status(t["status"]), message=t.get("message", ""),
                       number=t.get("number"))
            for t in data.get("tests", [])
        ]
        return cls(
            spec=spec,
            status=Status(data["status"]),
            failure=FailureClass(data.get("failure", "")),
            stage=data.get("stage", ""),
            message=data.get("message", ""),
            tests=tests,
            timings=dict(data.get("timings", {})),
            artifacts=dict(data.get("artifacts", {})),
            info=dict(data.get("info", {})),
            attempts=int(data.get("attempts", 1)),
        )


# Exit codes of `harness.py run` (documented in the README).
EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_INCOMPLETE = 2
