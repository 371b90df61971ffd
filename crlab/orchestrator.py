"""Walks each job through its stages and records what happened.

source -> patch -> configure -> build -> rootfs -> boot -> run -> collect

Every stage before boot is a cached function of its inputs (crlab.kernel, crlab.rootfs); boot, run
and collect happen per job, in the job's own directory.  A failure is classified and recorded, and
the run goes on with the next job.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import paramiko

from crlab import kernel as kstages
from crlab.cache import Cache
from crlab.config import KernelTree, MatrixConfig, SuiteConfig
from crlab.guest.ports import reserve_port
from crlab.guest.qemu import PANIC, BootFailure, QemuMachine, find_oops, qemu_version
from crlab.guest.shell import CommandTimeout, GuestError, GuestGone, Shell, TransportError
from crlab.guest.ssh import generate_client_key, public_line
from crlab.model import FailureClass, JobResult, JobSpec, Status, TestResult
from crlab.progress import Progress
from crlab.results import Run
from crlab.rootfs import GUEST_SUITES_DIR, Rootfs, build_rootfs, job_initrd
from crlab.session import machine_config, open_shell, prepare_kernel
from crlab.tap import parse_tap, summarize_tap
from crlab.targets import TargetProfile
from crlab.userland import UserlandError

# failures worth another attempt (flakes); a build or config failure is deterministic
RETRYABLE = {FailureClass.BOOT_HANG, FailureClass.QEMU_EXIT, FailureClass.TIMEOUT, FailureClass.TRANSPORT,
             FailureClass.TEST, FailureClass.INFRA}


StageFn = Callable[..., None]  # stage(name, detail="") marks a job's progress


class Interrupted(Exception):
    pass


@dataclass
class GuestOutcome:
    status: Status
    failure: FailureClass
    stage: str
    message: str
    tests: list[TestResult]
    timings: dict[str, float]
    info: dict[str, object]


class Orchestrator:
    def __init__(self, cfg: MatrixConfig, run: Run, progress: Progress, cache: Cache | None = None) -> None:
        self.cfg = cfg
        self.run = run
        self.progress = progress
        self.cache = cache or Cache()
        self.stop = threading.Event()
        self._machines: set[QemuMachine] = set()
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
        """Stop: kill every guest and build so that the workers return quickly."""
        self.stop.set()
        with self._lock:
            machines = list(self._machines)
        for machine in machines:
            machine.kill()
        kstages.terminate_running()

    def _interrupted(self, spec: JobSpec) -> JobResult:
        result = JobResult(spec, Status.INCOMPLETE, FailureClass.INTERRUPTED, message="the run was interrupted")
        self.run.record(result)
        return result

    # ------------------------------------------------------------------ one job

    def run_job(self, spec: JobSpec) -> JobResult:
        started = time.monotonic()
        job_dir = self.run.job_dir(spec)
        result = JobResult(spec)
        kernel = self.cfg.kernels[spec.kernel]
        profile = self.cfg.targets[spec.target]
        suite = self.cfg.suites[spec.suite]
        result.info.update({"transport": spec.transport, "cpu": profile.cpu, "machine": profile.machine,
                            "qemu": qemu_version(profile.qemu_binary)})

        def stage(name: str, detail: str = "") -> None:
            if self.stop.is_set():
                raise Interrupted()
            result.stage = name
            self.progress.stage(spec.job_id, name, detail)

        try:
            built = self._kernel_stages(kernel, profile, job_dir, result, stage)
            stage("rootfs")
            rootfs = build_rootfs(profile, suite, self.cache, with_ssh=spec.transport == "ssh")
            result.info["rootfs"] = {"key": rootfs.key, "cached": rootfs.cached}
            for attempt in range(1, self.cfg.options.retries + 2):
                result.attempts = attempt
                outcome = self._boot_and_run(spec, profile, suite, built, rootfs, job_dir, stage, attempt)
                result.status, result.failure, result.stage = outcome.status, outcome.failure, outcome.stage
                result.message, result.tests = outcome.message, outcome.tests
                result.timings.update(outcome.timings)
                result.info.update(outcome.info)
                if outcome.status == Status.PASS or outcome.failure not in RETRYABLE or self.stop.is_set():
                    break
                history = result.info.setdefault("earlier_attempts", [])
                assert isinstance(history, list)
                history.append({"attempt": attempt, "status": outcome.status.value,
                                "failure": outcome.failure.value, "message": outcome.message})
                self.progress.note(f"{spec.job_id}: attempt {attempt} {outcome.status.value} "
                                   f"({outcome.failure.value}); retrying")
            if result.attempts > 1 and result.status == Status.PASS:
                result.info["flaky"] = True
                result.message = (f"passed on attempt {result.attempts} (flaky) " + result.message).strip()
        except kstages.KernelStageError as exc:
            result.status = Status.FAIL
            result.failure = {"patch": FailureClass.PATCH, "configure": FailureClass.CONFIG}.get(
                exc.stage, FailureClass.BUILD)
            if exc.stage == "source":
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
        result.artifacts = {p.name: p.name for p in sorted(job_dir.iterdir()) if p.is_file()}
        self.run.record(result)
        self.progress.done(result)
        return result

    def _kernel_stages(self, kernel: KernelTree, profile: TargetProfile, job_dir: Path, result: JobResult,
                       stage: StageFn) -> kstages.BuiltKernel:
        t0 = time.monotonic()
        built = prepare_kernel(kernel, profile, self.cache, job_dir, on_stage=lambda s: stage(s),
                               build_timeout=self.cfg.options.build_timeout)
        result.timings["build_s"] = float(built.metadata.get("build_s", 0.0))  # type: ignore[arg-type]
        result.timings["kernel_stage_s"] = round(time.monotonic() - t0, 2)
        result.info.update({"kernel_key": built.key, "kernel_cached": built.cached,
                            "kernel_release": built.release, "uts_version": built.uts_version,
                            "toolchain": built.metadata.get("toolchain"),
                            "build_warnings": len(built.metadata.get("warnings", []))})  # type: ignore[arg-type]
        if built.cached:  # the job dir still gets the logs of the build it used
            shutil.copy2(built.build_log, job_dir / "build.log")
        shutil.copy2(built.config, job_dir / "kernel.config")
        shutil.copy2(built.dir / "metadata.json", job_dir / "kernel-metadata.json")
        return built

    def _boot_and_run(self, spec: JobSpec, profile: TargetProfile, suite: SuiteConfig,
                      built: kstages.BuiltKernel, rootfs: Rootfs, job_dir: Path, stage: StageFn,
                      attempt: int) -> GuestOutcome:
        use_ssh = spec.transport == "ssh"
        timings: dict[str, float] = {}
        info: dict[str, object] = {}
        if attempt > 1:  # keep the earlier attempt's console
            for name in ("console.log", "qemu.stderr"):
                if (job_dir / name).exists():
                    (job_dir / name).rename(job_dir / f"{name}.attempt{attempt - 1}")
        key = self.ssh_key() if use_ssh else None
        initrd = job_initrd(rootfs, public_line(key) if key else None, job_dir)
        reservation = reserve_port(self.cache.root / "ports") if use_ssh else None
        boot_timeout = profile.effective_boot_timeout(self.cfg.options.boot_timeout)
        machine = QemuMachine(machine_config(profile, built.image, initrd, job_dir, boot_timeout,
                                             ssh_port=reservation.port if reservation else None))
        with self._lock:
            self._machines.add(machine)
        shell: Shell | None = None
        try:
            stage("boot", f"attempt {attempt}" if attempt > 1 else "")
            machine.start()
            info["qemu_command"] = " ".join(machine.command)
            try:
                boot = machine.wait_for_boot()
            except BootFailure as exc:
                empty = not machine.read_console_log().strip()
                status = Status.INCOMPLETE if exc.failure == FailureClass.QEMU_EXIT and empty else Status.FAIL
                return GuestOutcome(status, exc.failure, "boot", str(exc), [], timings, info)
            timings["boot_s"] = round(boot.seconds_to_prompt, 2)
            stage("run", spec.transport)
            shell = open_shell(machine, boot, spec.transport, spec.job_id, key,
                               reservation.port if reservation else None)
            env = {"CRLAB_EXPECT_RELEASE": built.release, "CRLAB_EXPECT_VERSION": built.uts_version,
                   "CRLAB_EXPECT_MACHINE": profile.uname_machine, "CRLAB_TARGET": profile.name,
                   "CRLAB_JOB": spec.job_id}
            t0 = time.monotonic()
            timeout = min(suite.timeout, self.cfg.options.run_timeout)
            output = shell.run(suite.command, timeout=timeout, env=env, cwd=f"{GUEST_SUITES_DIR}/{suite.suite}")
            timings["run_s"] = round(time.monotonic() - t0, 2)
            (job_dir / "suite.log").write_text(output.output)
            stage("collect")
            with contextlib.suppress(GuestError):
                (job_dir / "dmesg.log").write_text(shell.run("dmesg", timeout=60).output)
            report = parse_tap(output.output)
            status, message = summarize_tap(report)
            failure = {Status.PASS: FailureClass.NONE, Status.SKIP: FailureClass.NONE,
                       Status.FAIL: FailureClass.TEST}.get(status, FailureClass.INFRA)
            if output.exit_status != 0 and status == Status.PASS:
                status, failure = Status.FAIL, FailureClass.TEST
                message = f"suite command exited {output.exit_status}"
            oops = find_oops(machine.read_console_log())
            if oops:
                status, failure = Status.FAIL, FailureClass.KERNEL_OOPS
                message = f"kernel reported {oops!r}; " + message
            return GuestOutcome(status, failure, "run" if status != Status.PASS else "collect", message,
                                report.tests, timings, info)
        except TransportError as exc:
            return GuestOutcome(Status.INCOMPLETE, FailureClass.TRANSPORT, "run", str(exc), [], timings, info)
        except CommandTimeout as exc:
            (job_dir / "suite.log").write_text(exc.partial)
            return GuestOutcome(Status.FAIL, FailureClass.TIMEOUT, "run", f"{spec.job_id}: {exc}", [], timings,
                                info)
        except GuestGone as exc:
            panicked = PANIC.search(machine.read_console_log()) is not None
            return GuestOutcome(Status.FAIL if panicked else Status.INCOMPLETE,
                                FailureClass.GUEST_PANIC if panicked else FailureClass.QEMU_EXIT, "run",
                                str(exc), [], timings, info)
        finally:
            if shell is not None:
                shell.close()
            info["clean_shutdown"] = machine.shutdown()
            with self._lock:
                self._machines.discard(machine)
            if reservation is not None:
                reservation.release()
            with contextlib.suppress(OSError):
                initrd.unlink()  # a copy of the cached rootfs plus the key; the cache has the rest


def host_info() -> dict[str, str]:
    def first_line(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, text=True, capture_output=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        return out.splitlines()[0] if out else "unknown"

    return {"uname": first_line(["uname", "-a"]), "python": first_line(["python3", "--version"])}
