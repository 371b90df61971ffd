"""Schedules jobs, retries the ones the infrastructure let down, and records every result.

source -> patch -> configure -> build -> rootfs -> boot -> run -> collect

Stages up to rootfs are cached functions of their inputs (crlab.kernel, crlab.rootfs); what a
job does once it can boot guests is its job kind's business (crlab.jobkinds), and how a guest
lives and fails is crlab.guest.lifecycle's.  A failure is classified and recorded, and the run
goes on with the next job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

import paramiko

from crlab import kernel as kstages
from crlab import runner
from crlab.cache import Cache, hash_file
from crlab.config import MatrixConfig
from crlab.guest import lifecycle
from crlab.guest.lifecycle import Guest, GuestFailure, GuestSpec
from crlab.guest.ssh import generate_client_key
from crlab.jobkinds import JobKind, KindOutcome, get_kind
from crlab.model import FailureClass, JobResult, JobSpec, Status
from crlab.progress import Progress
from crlab.results import Run
from crlab.rootfs import GUEST_SUITES_DIR, Rootfs, build_rootfs
from crlab.session import prepare_kernel
from crlab.userland import UserlandError

# Failures of the infrastructure, worth another attempt.  A test that reports FAIL is retried only
# when the run asks for it (retry_test_failures), and a pass on a later attempt is always "flaky".
INFRA_RETRYABLE = frozenset({FailureClass.BOOT_HANG, FailureClass.QEMU_EXIT, FailureClass.TIMEOUT,
                             FailureClass.TRANSPORT})
TEST_RETRYABLE = frozenset({FailureClass.TEST})


class Interrupted(Exception):
    pass


class Job:
    """One job as its kind sees it (crlab.jobkinds.JobContext): build, boot, record."""

    def __init__(self, orchestrator: Orchestrator, spec: JobSpec, result: JobResult, job_dir: Path) -> None:
        self._orc = orchestrator
        self.cfg = orchestrator.cfg
        self.result = result
        # what a kind reads (crlab.jobkinds.JobContext)
        self.spec = spec
        self.suite = self.cfg.suites[spec.suite]
        self.profile = self.cfg.targets[spec.target]
        self.job_dir = job_dir
        self.cache = orchestrator.cache
        self.timings = result.timings
        self.info = result.info
        self.suite_dir_in_guest = f"{GUEST_SUITES_DIR}/{self.suite.suite}"
        self.run_timeout = float(min(self.suite.timeout, self.cfg.options.run_timeout))
        self.attempt = 1
        self._kernels: dict[str, kstages.BuiltKernel] = {}
        self._rootfs: Rootfs | None = None

    def stage(self, name: str, detail: str = "") -> None:
        if self._orc.stop.is_set():
            raise Interrupted()
        self.result.stage = name
        self._orc.progress.stage(self.spec.job_id, name, detail)

    def artifact(self, name: str, path: Path) -> None:
        self.result.artifacts[name] = str(path.relative_to(self.job_dir))

    def kernel(self, name: str | None = None) -> kstages.BuiltKernel:
        """The built kernel `name` (default: the job's) for the job's target, built when missing."""
        name = name or self.spec.kernel
        if name in self._kernels:
            return self._kernels[name]
        primary = name == self.spec.kernel
        log_dir = self.job_dir if primary else self.job_dir / name
        log_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        built = prepare_kernel(self.cfg.kernels[name], self.profile, self._orc.cache, log_dir,
                               on_stage=lambda s: self.stage(s, "" if primary else name),
                               build_timeout=self.cfg.options.build_timeout)
        if built.cached:  # the job dir still gets the log of the build it used
            shutil.copy2(built.build_log, log_dir / "build.log")
        shutil.copy2(built.config, log_dir / "kernel.config")
        shutil.copy2(built.dir / "metadata.json", log_dir / "kernel-metadata.json")
        facts = {"kernel_key": built.key, "kernel_cached": built.cached, "kernel_release": built.release,
                 "uts_version": built.uts_version, "toolchain": built.metadata.get("toolchain"),
                 "image_sha256": built.metadata.get("image_sha256"), "config_sha256": hash_file(built.config),
                 "build_warnings": len(built.metadata.get("warnings", []))}  # type: ignore[arg-type]
        if primary:
            self.result.timings["build_s"] = float(built.metadata.get("build_s", 0.0))  # type: ignore[arg-type]
            self.result.timings["kernel_stage_s"] = round(time.monotonic() - t0, 2)
            self.result.info.update(facts)
        else:
            self.result.info.setdefault("kernels", {})[name] = facts
        self._kernels[name] = built
        return built

    def rootfs(self) -> Rootfs:
        if self._rootfs is None:
            self.stage("rootfs")
            self._rootfs = build_rootfs(self.profile, self.suite, self._orc.cache,
                                        with_ssh=self.spec.transport == "ssh")
            self.result.info["rootfs"] = {"key": self._rootfs.key, "cached": self._rootfs.cached}
        return self._rootfs

    @contextlib.contextmanager
    def boot(self, kernel: str | None = None, label: str = "", min_memory_mb: int = 0,
             rootfs: Rootfs | None = None) -> Iterator[Guest]:
        built = self.kernel(kernel)
        rootfs = rootfs or self.rootfs()
        guest_dir = self.job_dir / label if label else self.job_dir
        use_ssh = self.spec.transport == "ssh"
        profile = self.profile
        if profile.memory_mb < min_memory_mb:
            profile = dataclasses.replace(profile, memory_mb=min_memory_mb)
        spec = GuestSpec(
            profile=profile, image=built.image, rootfs=rootfs, job_dir=guest_dir,
            name=self.spec.job_id + (f" ({label})" if label else ""), transport=self.spec.transport,
            boot_timeout=self.profile.effective_boot_timeout(self.cfg.options.boot_timeout),
            ssh_key=self._orc.ssh_key() if use_ssh else None, port_dir=self._orc.cache.root / "ports")
        detail = " ".join(filter(None, [kernel if kernel and kernel != self.spec.kernel else "",
                                        f"attempt {self.attempt}" if self.attempt > 1 else ""]))
        prefix = f"{label}_" if label else ""
        info: dict[str, object] = {}
        try:
            with lifecycle.guest(spec, on_boot=lambda: self.stage("boot", detail), info=info,
                                 attempt=self.attempt) as guest:
                self.result.timings[f"{prefix}boot_s"] = round(guest.boot.seconds_to_prompt, 2)
                yield guest
        finally:
            for key, value in info.items():
                self.result.info[f"{prefix}{key}"] = value

    def guest_env(self, guest: Guest) -> dict[str, str]:
        built = self.kernel(self.spec.kernel)
        return {"CRLAB_EXPECT_RELEASE": built.release, "CRLAB_EXPECT_VERSION": built.uts_version,
                "CRLAB_EXPECT_MACHINE": self.profile.uname_machine, "CRLAB_TARGET": self.profile.name,
                "CRLAB_JOB": self.spec.job_id}


class Orchestrator:
    def __init__(self, cfg: MatrixConfig, run: Run, progress: Progress, cache: Cache | None = None,
                 retry_test_failures: bool = False) -> None:
        self.cfg = cfg
        self.run = run
        self.progress = progress
        self.cache = cache or Cache()
        self.stop = threading.Event()
        self.retryable = INFRA_RETRYABLE | (TEST_RETRYABLE if retry_test_failures else frozenset())
        self._lock = threading.Lock()
        self._ssh_key: paramiko.PKey | None = None

    # ------------------------------------------------------------------ the run

    def ssh_key(self) -> paramiko.PKey:
        """A key pair for this invocation only (a resumed run gets a new one)."""
        with self._lock:
            if self._ssh_key is None:
                path = self.run.dir / "ssh" / f"id_ecdsa-{int(time.time())}"
                self._ssh_key = generate_client_key(path)
            return self._ssh_key

    def execute(self, specs: list[JobSpec]) -> list[JobResult]:
        self.progress.start([s.job_id for s in specs])
        results: list[JobResult] = []
        pool = ThreadPoolExecutor(max_workers=self.cfg.options.jobs, thread_name_prefix="job")
        futures: dict[Future[JobResult], JobSpec] = {}
        pending = list(specs)
        try:
            while pending or futures:
                while pending and len(futures) < self.cfg.options.jobs and not self.stop.is_set():
                    spec = pending.pop(0)
                    futures[pool.submit(self.run_job, spec)] = spec
                if not futures:
                    break
                done, _ = wait(list(futures), return_when=FIRST_COMPLETED, timeout=1.0)
                for future in done:
                    futures.pop(future)
                    result = future.result()
                    results.append(result)
                    if self.cfg.options.fail_fast and result.status == Status.FAIL:
                        self.progress.note("fail_fast: not starting further jobs")
                        pending.clear()
        except KeyboardInterrupt:
            self.interrupt()
            for future, spec in futures.items():
                with contextlib.suppress(Exception):
                    results.append(future.result(timeout=30))
                    continue
                results.append(self._interrupted(spec))
            raise Interrupted() from None
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            self.progress.stop()
        return results

    def interrupt(self) -> None:
        """Stop: kill every guest and build so that the workers return quickly.  A second Ctrl-C
        while this runs, or while the run is being recorded, is ignored: stopping is under way, and
        an exception in the middle of it would lose the record of the run."""
        if threading.current_thread() is threading.main_thread() and not self.stop.is_set():
            # ignored, not handled: Python drops its own handlers while it exits, and a Ctrl-C
            # then would kill the process with the run half-recorded
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            sys.stderr.write("crlab: stopping guests and builds (a further Ctrl-C is ignored)\n")
        self.stop.set()
        lifecycle.kill_all()
        runner.cancel_all()  # kernel, userland and program builds alike

    def _interrupted(self, spec: JobSpec) -> JobResult:
        result = JobResult(spec, Status.INCOMPLETE, FailureClass.INTERRUPTED, message="the run was interrupted")
        self.run.record(result)
        return result

    # ------------------------------------------------------------------ one job

    def run_job(self, spec: JobSpec) -> JobResult:
        started = time.monotonic()
        job_dir = self.run.job_dir(spec)
        result = JobResult(spec)
        suite = self.cfg.suites[spec.suite]
        result.info.update({"transport": spec.transport})
        job = Job(self, spec, result, job_dir)
        try:
            kind = get_kind(suite.kind)
            job.kernel()  # deterministic stages first: a build failure is never retried
            if spec.consumer:  # built before any guest runs, so no build sits between checkpoint and restore
                job.kernel(spec.consumer)
            job.rootfs()
            attempts = self.cfg.options.retries + 1
            for attempt in range(1, attempts + 1):
                job.attempt = result.attempts = attempt
                outcome = self._attempt(kind, job)
                result.status, result.failure, result.stage = outcome.status, outcome.failure, outcome.stage
                result.message, result.tests = outcome.message, outcome.tests
                if (outcome.status == Status.PASS or outcome.failure not in self.retryable or self.stop.is_set()
                        or attempt == attempts):
                    break
                history = result.info.setdefault("earlier_attempts", [])
                assert isinstance(history, list)
                history.append({"attempt": attempt, "status": outcome.status.value,
                                "failure": outcome.failure.value, "message": outcome.message,
                                "tests": {t.name: t.status.value for t in outcome.tests}})
                self.progress.note(f"{spec.job_id}: attempt {attempt} {outcome.status.value} "
                                   f"({outcome.failure.value}); retrying")
            if self.stop.is_set() and result.status != Status.PASS:
                # the interrupt killed the guest (or the build): that is why it did not pass
                result.status, result.failure = Status.INCOMPLETE, FailureClass.INTERRUPTED
                result.message = "the run was interrupted" + (f" ({result.message})" if result.message else "")
            if result.attempts > 1 and result.status == Status.PASS:
                result.info["flaky"] = True
                result.message = (f"passed on attempt {result.attempts} (flaky) " + result.message).strip()
            if any(key.endswith("ignored_shutdown") and value for key, value in result.info.items()):
                # the guest ignored the shutdown command; lifecycle killed QEMU and kept its logs
                result.message = (result.message + " (QEMU did not exit after the shutdown command; killed)").strip()
        except kstages.KernelStageError as exc:
            result.status = Status.FAIL
            result.failure = {"patch": FailureClass.PATCH, "configure": FailureClass.CONFIG}.get(
                exc.stage, FailureClass.BUILD)
            if exc.stage == "source" or _out_of_space(exc.log):  # the host's fault, not the kernel's
                result.status, result.failure = Status.INCOMPLETE, FailureClass.INFRA
            result.stage = exc.stage
            result.message = str(exc)
            if exc.log and exc.log.exists() and exc.log.parent != job_dir:
                shutil.copy2(exc.log, job_dir / exc.log.name)
        except UserlandError as exc:
            result.status, result.failure, result.message = Status.INCOMPLETE, FailureClass.INFRA, str(exc)
        except Interrupted:
            result.status, result.failure = Status.INCOMPLETE, FailureClass.INTERRUPTED
            result.message = "the run was interrupted"
        except Exception as exc:  # a bug or host problem: record it, keep the run going
            result.status, result.failure = Status.INCOMPLETE, FailureClass.INFRA
            result.message = f"{type(exc).__name__}: {exc}"
            (job_dir / "crlab-error.txt").write_text(traceback.format_exc())
        result.timings["total_s"] = round(time.monotonic() - started, 2)
        for path in sorted(job_dir.iterdir()):
            if path.is_file():
                result.artifacts.setdefault(path.name, path.name)
        self.run.record(result)
        self.progress.done(result)
        return result

    @staticmethod
    def _attempt(kind: JobKind, job: Job) -> KindOutcome:
        try:
            return kind.run(job)
        except GuestFailure as failure:
            return KindOutcome(failure.status, failure.failure, failure.stage, failure.message)


def _out_of_space(log: Path | None) -> bool:
    """Whether a failed build's log ends in a full disk (a compiler or cp reporting ENOSPC)."""
    if log is None:
        return False
    try:
        with open(log, "rb") as fh:
            fh.seek(max(0, fh.seek(0, 2) - 65536))
            return b"No space left on device" in fh.read()
    except OSError:
        return False


def host_info() -> dict[str, str]:
    def first_line(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, text=True, capture_output=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        return out.splitlines()[0] if out else "unknown"

    return {"uname": first_line(["uname", "-a"]), "python": first_line(["python3", "--version"])}
