"""Checkpoint/restart job kinds: the C/R test programs of suites/cr run under an engine, and their
images are compared after a round-trip.

"cr", same kernel: one guest.  Per test: start it, wait until it is ready, checkpoint (the tree is
            killed), restore, checkpoint again leaving it running, trigger it, read its verdict;
            then decode both images on the host, normalise and diff them (C -> R -> C).
"cr", a job with a consumer kernel: two guests, two kernels.  On the producer kernel each test is checkpointed and its
            image (with the test's working directory) carried to the host; on the consumer kernel
            it is restored, checkpointed again and triggered, and the two images are compared.
            Every pair lands in the compatibility matrix.

A target without the job's engine still runs every program without C/R (set up, trigger,
verify), so each program is proven on every arch; its C/R results say why they did not run.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from crlab import imagediff
from crlab.engines import get_engine
from crlab.engines.base import CheckpointOptions, Engine, ImageError, fetch_tree, push_tree
from crlab.guest.lifecycle import Guest
from crlab.guest.shell import CommandTimeout, GuestError, Shell
from crlab.jobkinds import JobContext, KindOutcome
from crlab.model import FailureClass, Status, TestResult

GUEST_WORK = "/tmp/cr"  # per-test working directories in the guest (tmpfs)
READY_TIMEOUT = 120.0
# how long the sleeping tests wait after ready: the checkpoint must fall inside it (a CRIU dump
# takes well under a second here), and it is paid once per sleeping test
SLEEP_MS = 5000
VERDICT_TIMEOUT = 300.0
KEEP_PAGES_UP_TO = 4 << 20  # larger page dumps are kept as their hashes only (in the decoded tree)
CONSUMER_FIRST_PID = 20000  # pids the consumer guest hands out from then on (the producer's were low)

EXPECT_PASS = "pass"
EXPECT_CHECKPOINT_FAILS = "checkpoint-fails"
EXPECT_UNSUPPORTED = "unsupported"
EXPECT_LOSES_STATE = "restore-loses-state"  # a known engine limitation: the program's check fails

COMPATIBLE = "compatible"
DIFFERS = "differs"
RESTORE_FAILED = "restore-failed"
CHECKPOINT_FAILED = "checkpoint-failed"
EXPECTED_INCOMPATIBLE = "expected-incompatible"
NOT_RUN = "not-run"


@dataclass(frozen=True)
class CrTest:
    name: str
    description: str
    expect: dict[str, tuple[str, str]]  # engine -> (expectation, reason)
    arches: tuple[str, ...] = ()  # empty: every target
    volatile: tuple[str, ...] = ()  # known-difference globs this test declares itself

    def expectation(self, engine: str) -> tuple[str, str]:
        return self.expect.get(engine, (EXPECT_UNSUPPORTED, f"the catalogue says nothing about {engine}"))


def load_catalogue(suite_dir: Path) -> list[CrTest]:
    """suites/cr/catalogue.yaml: the tests and what each engine is expected to do with them."""
    path = suite_dir / "catalogue.yaml"
    data = yaml.safe_load(path.read_text())
    entries = data.get("tests", data) if isinstance(data, dict) else data
    tests = []
    for entry in entries:
        expect: dict[str, tuple[str, str]] = {}
        for engine, value in (entry.get("expect") or {}).items():
            if isinstance(value, dict):
                expect[engine] = (str(value.get("result", value.get("expect", EXPECT_PASS))),
                                  str(value.get("reason", "")))
            else:
                expect[engine] = (str(value), str(entry.get("reasons", {}).get(engine, entry.get("reason", ""))))
        tests.append(CrTest(str(entry["name"]), str(entry.get("description", "")), expect,
                            tuple(entry.get("arches", ()) or ()), tuple(entry.get("volatile", ()) or ())))
    return tests


def known_differences(suite_dir: Path) -> list[imagediff.KnownDifference]:
    return imagediff.load_known(suite_dir / "known-differences.yaml")


def known_incompatible(suite_dir: Path, test: str, producer: str, consumer: str, target: str,
                       engine: str) -> str | None:
    """The reason a (producer -> consumer) restore of `test` is expected to fail, from
    known-incompatible.yaml (entries: test, reason, and optionally producer, consumer, target, engine)."""
    path = suite_dir / "known-incompatible.yaml"
    if not path.exists():
        return None
    for entry in yaml.safe_load(path.read_text()) or []:
        wanted = {"test": test, "producer": producer, "consumer": consumer, "target": target, "engine": engine}
        if all(entry.get(k) in (None, v) for k, v in wanted.items()):
            reason = str(entry.get("reason", "")).strip()
            if not reason:
                raise ValueError(f"{path}: the entry for {entry.get('test')} has no reason")
            return reason
    return None


# --------------------------------------------------------------------------- guest-side steps


class TestProcess:
    """One C/R test program in a guest, driven through the shell."""

    def __init__(self, shell: Shell, bin_dir: str, name: str) -> None:
        self.shell = shell
        self.name = name
        self.binary = f"{bin_dir}/{name}"
        self.work = f"{GUEST_WORK}/{name}"
        self.pid: int | None = None

    def start(self) -> str:
        """Start and wait until ready; '' on success, else why it did not get ready."""
        w = shlex.quote(self.work)
        result = self.shell.run(f"rm -rf {w} && mkdir -p {w} && cd {w} && "
                                f"CRTEST_SLEEP_MS={SLEEP_MS} {shlex.quote(self.binary)} --outfile out --pidfile pid",
                                timeout=READY_TIMEOUT)
        if result.exit_status != 0:
            return f"not ready (exit {result.exit_status}): {self.tail()}"
        pid = self.shell.run(f"cat {w}/pid", timeout=30).output.strip()
        if not pid.isdigit():
            return f"no pid in the pidfile ({pid!r})"
        self.pid = int(pid)
        return ""

    def alive(self) -> bool:
        return self.pid is not None and self.shell.run(f"kill -0 {self.pid}", timeout=30).exit_status == 0

    def trigger_and_verdict(self, pid: int | None = None) -> tuple[Status, str]:
        """Send the trigger and wait for the one-line verdict."""
        pid = pid or self.pid
        w = shlex.quote(self.work)
        polls = int(VERDICT_TIMEOUT / 0.2)
        result = self.shell.run(
            f"kill -TERM {pid}; i=0; while [ ! -e {w}/out ] && [ $i -lt {polls} ]; do sleep 0.2; i=$((i+1)); done; "
            f"cat {w}/out", timeout=VERDICT_TIMEOUT + 30)
        line = result.output.strip().splitlines()[-1] if result.output.strip() else ""
        if line == "PASS":
            return Status.PASS, ""
        if line.startswith("FAIL"):
            return Status.FAIL, line.partition(":")[2].strip() or line
        return Status.FAIL, f"no verdict within {VERDICT_TIMEOUT:.0f} s after the trigger; log: {self.tail()}"

    def tail(self) -> str:
        out = self.shell.run(f"tail -n 5 {shlex.quote(self.work)}/{self.name}.log 2>/dev/null", timeout=30).output
        return " | ".join(line.strip() for line in out.splitlines() if line.strip())[-400:]

    def cleanup(self) -> None:
        if self.pid is not None:
            self.shell.run(f"kill -KILL {self.pid} 2>/dev/null", timeout=30)
        self.shell.run(f"rm -rf {shlex.quote(self.work)}", timeout=60)


# --------------------------------------------------------------------------- host-side comparison


def decode_and_keep(engine: Engine, image_dir: Path) -> dict[str, Any]:
    """Decode an image fetched to the host, keep the decoded tree beside it, drop big page dumps
    (unless CRLAB_KEEP_IMAGES is set, as the C/R benchmark does)."""
    tree = engine.decode(image_dir)
    (image_dir.parent / f"{image_dir.name}.decoded.json").write_text(json.dumps(tree, indent=1, sort_keys=True))
    if os.environ.get("CRLAB_KEEP_IMAGES"):
        return tree
    for pages in image_dir.glob("pages-*.img"):
        if pages.stat().st_size > KEEP_PAGES_UP_TO:
            pages.unlink()  # its per-run sha256 is in the decoded tree
    return tree


def image_bytes(image_dir: Path) -> int:
    return sum(p.stat().st_size for p in image_dir.rglob("*") if p.is_file())


def compare(engine: Engine, before: dict[str, Any], after: dict[str, Any], test: CrTest,
            known: list[imagediff.KnownDifference], kind: str) -> imagediff.Explained:
    differences = imagediff.diff(imagediff.normalise(before, engine.rules), imagediff.normalise(after, engine.rules))
    own = [imagediff.KnownDifference(glob, f"{test.name} declares it volatile", (test.name,)) for glob in test.volatile]
    return imagediff.explain(differences, known + own, test.name, engine.name, kind)


def diff_images(ctx: JobContext, engine: Engine, test: CrTest, img1: Path, img2: Path,
                known: list[imagediff.KnownDifference], kind: str, report: Path) -> imagediff.Explained:
    """Decode both images, compare them and keep the report as an artefact of the job."""
    explained = compare(engine, decode_and_keep(engine, img1), decode_and_keep(engine, img2), test, known, kind)
    report.write_text(imagediff.report_text(explained))
    ctx.artifact(f"{test.name}.{report.name}", report)
    return explained


# --------------------------------------------------------------------------- the kinds


class _CrBase:
    min_memory_mb = 1024  # a 64 MiB test, its image twice and the tar that carries it

    def _setup(self, ctx: JobContext) -> tuple[list[CrTest], list[imagediff.KnownDifference], Engine | None, str]:
        suite_dir = ctx.suite.suite_dir
        tests = [t for t in load_catalogue(suite_dir) if not t.arches or ctx.spec.target in t.arches]
        engine_name = ctx.spec.engine
        engine: Engine | None = get_engine(engine_name) if engine_name else None
        why_not = "the job names no C/R engine" if engine is None else (engine.unsupported_reason(ctx.profile) or "")
        return tests, known_differences(suite_dir), engine if not why_not else None, why_not

    @staticmethod
    def _not_for_this_target(ctx: JobContext) -> list[TestResult]:
        """Tests written for other targets only (regs_all is x86 assembly): skipped, saying so."""
        return [TestResult(t.name, Status.SKIP, f"written for {', '.join(t.arches)} only, not {ctx.spec.target}")
                for t in load_catalogue(ctx.suite.suite_dir) if t.arches and ctx.spec.target not in t.arches]

    @staticmethod
    def _record(ctx: JobContext, test: str, facts: dict[str, Any]) -> None:
        cr = ctx.info.setdefault("cr", {})
        assert isinstance(cr, dict)
        cr.setdefault(test, {}).update(facts)

    @staticmethod
    def _verdict(tests: list[TestResult], why_not: str) -> KindOutcome:
        failed = [t for t in tests if t.status == Status.FAIL]
        passed = [t for t in tests if t.status == Status.PASS]
        skipped = [t for t in tests if t.status == Status.SKIP]
        summary = f"{len(passed)} passed, {len(failed)} failed, {len(skipped)} skipped"
        if why_not:
            summary += f"; C/R not run: {why_not}"
        if failed:
            names = ", ".join(t.name for t in failed[:6]) + (" ..." if len(failed) > 6 else "")
            return KindOutcome(Status.FAIL, FailureClass.TEST, "run", f"{summary}: {names}", tests)
        if not passed:
            return KindOutcome(Status.SKIP, FailureClass.NONE, "run", summary, tests)
        return KindOutcome(Status.PASS, FailureClass.NONE, "collect", summary, tests)

    def _without_cr(self, shell: Shell, bin_dir: str, test: CrTest, reason: str) -> list[TestResult]:
        process = TestProcess(shell, bin_dir, test.name)
        try:
            problem = process.start()
            if problem:
                return [TestResult(test.name, Status.FAIL, problem), TestResult(f"{test.name}/cr", Status.SKIP, reason)]
            status, message = process.trigger_and_verdict()
            return [TestResult(test.name, status, message or "passed without C/R"),
                    TestResult(f"{test.name}/cr", Status.SKIP, reason)]
        finally:
            process.cleanup()


class CrSuite(_CrBase):
    """C -> R -> C on one kernel; with a consumer kernel, across two (CrossKernel)."""

    name = "cr"
    takes_consumer = True  # a job with a consumer kernel restores there

    def run(self, ctx: JobContext) -> KindOutcome:
        if ctx.spec.consumer:
            return CrossKernel().run(ctx)
        tests, known, engine, why_not = self._setup(ctx)
        results: list[TestResult] = self._not_for_this_target(ctx)
        with ctx.boot(min_memory_mb=self.min_memory_mb) as guest:
            started = time.monotonic()
            ctx.stage("run", f"{len(tests)} C/R tests")
            bin_dir = ctx.suite_dir_in_guest + "/bin"
            unavailable = False
            if engine is not None:
                ctx.info["engine_version"] = engine.version(guest.shell)
                ctx.info["aslr"] = guest.shell.run("cat /proc/sys/kernel/randomize_va_space", timeout=30).output.strip()
                # an engine that depends on the booted kernel (linux-cr: checkpoint(2)) says so here
                missing = engine.guest_unsupported_reason(guest.shell)
                if missing:
                    why_not, unavailable = f"{engine.name}: {missing}", True
                    engine = None
            for index, test in enumerate(tests, 1):
                ctx.stage("run", f"{test.name} ({index}/{len(tests)})")
                if engine is None:
                    results += self._without_cr(guest.shell, bin_dir, test, why_not)
                    continue
                expectation, reason = test.expectation(engine.name)
                if expectation == EXPECT_UNSUPPORTED:
                    results += self._without_cr(guest.shell, bin_dir, test, f"{engine.name}: unsupported: {reason}")
                    continue
                results += self._one(ctx, guest, engine, bin_dir, test, expectation, reason, known)
            oops = guest.kernel_oops()
            ctx.timings["run_s"] = round(time.monotonic() - started, 2)
        outcome = self._verdict(results, why_not)
        if unavailable and outcome.status == Status.PASS:  # the programs ran, the C/R asked for did not
            outcome.status, outcome.stage = Status.SKIP, "run"
        if oops:
            outcome.status, outcome.failure = Status.FAIL, FailureClass.KERNEL_OOPS
            outcome.message = f"kernel reported {oops!r}; {outcome.message}"
        return outcome

    def _one(self, ctx: JobContext, guest: Guest, engine: Engine, bin_dir: str, test: CrTest, expectation: str,
             reason: str, known: list[imagediff.KnownDifference]) -> list[TestResult]:
        shell = guest.shell
        process = TestProcess(shell, bin_dir, test.name)
        name = test.name
        try:
            problem = process.start()
            if problem:
                return [TestResult(name, Status.FAIL, problem)]
            assert process.pid is not None
            first = engine.checkpoint(shell, process.pid, f"{process.work}/img1", CheckpointOptions())
            self._record(ctx, name, {"checkpoint_s": round(first.seconds, 3)})
            self._keep_log(ctx, name, "dump1.log", first.log)
            if expectation == EXPECT_CHECKPOINT_FAILS:
                if first.ok:
                    return [TestResult(name, Status.FAIL, f"checkpoint was expected to fail ({reason}) but succeeded")]
                if not process.alive():
                    return [TestResult(name, Status.FAIL, f"the refused checkpoint killed the test: {first.message}")]
                status, message = process.trigger_and_verdict()
                note = f"checkpoint refused as expected ({first.message})"
                return [TestResult(name, status, f"{note}; after it: {message}" if message else note)]
            if not first.ok:
                return [TestResult(name, Status.FAIL, f"checkpoint failed: {first.message}")]
            restored = engine.restore(shell, f"{process.work}/img1", CheckpointOptions())
            self._record(ctx, name, {"restore_s": round(restored.seconds, 3)})
            self._keep_log(ctx, name, "restore.log", restored.log)
            if not restored.ok:
                return [TestResult(name, Status.FAIL, f"restore failed: {restored.message}")]
            process.pid = restored.pid or process.pid
            second = engine.checkpoint(shell, process.pid, f"{process.work}/img2",
                                       CheckpointOptions(leave_running=True))
            self._keep_log(ctx, name, "dump2.log", second.log)
            status, message = process.trigger_and_verdict()
            results = [self._expected(name, status, message, expectation, reason)]
            if not second.ok:
                results.append(TestResult(f"{name}/roundtrip", Status.FAIL,
                                          f"checkpoint after restore failed: {second.message}"))
                return results
            results.append(self._roundtrip(ctx, shell, engine, process, test, known))
            return results
        except ImageError as exc:
            return [TestResult(f"{name}/roundtrip", Status.FAIL, f"image: {exc}")]
        except CommandTimeout as exc:  # one stuck test fails alone; the shell recovers for the next
            return [TestResult(name, Status.FAIL, f"timed out: {exc}")]
        finally:
            process.cleanup()

    def _roundtrip(self, ctx: JobContext, shell: Shell, engine: Engine, process: TestProcess, test: CrTest,
                   known: list[imagediff.KnownDifference]) -> TestResult:
        host = ctx.job_dir / "images" / test.name
        shutil.rmtree(host, ignore_errors=True)
        ctx.stage("collect", f"{test.name} images")
        img1 = fetch_tree(shell, f"{process.work}/img1", host / "img1")
        img2 = fetch_tree(shell, f"{process.work}/img2", host / "img2")
        self._record(ctx, test.name, {"image_bytes": image_bytes(img1)})
        explained = diff_images(ctx, engine, test, img1, img2, known, "same-kernel", host / "roundtrip.diff")
        self._record(ctx, test.name, {"unexplained_differences": len(explained.unexplained),
                                      "known_differences": len(explained.known)})
        if explained.empty:
            return TestResult(f"{test.name}/roundtrip", Status.PASS,
                              f"images equal after normalisation ({len(explained.known)} known differences)")
        shown = "; ".join(str(d) for d in explained.unexplained[:5])
        return TestResult(f"{test.name}/roundtrip", Status.FAIL,
                          f"{len(explained.unexplained)} unexplained differences: {shown}")

    @staticmethod
    def _expected(name: str, status: Status, message: str, expectation: str, reason: str) -> TestResult:
        if expectation != EXPECT_LOSES_STATE:
            return TestResult(name, status, message)
        if status == Status.PASS:
            return TestResult(name, Status.FAIL, f"expected to lose state ({reason}) but passed: "
                              "update the catalogue")
        # an expected failure is neither a pass nor a new failure
        return TestResult(name, Status.SKIP, f"expected failure, reproduced: {message} (known: {reason})")

    @staticmethod
    def _keep_log(ctx: JobContext, test: str, name: str, text: str) -> None:
        if not text:
            return
        path = ctx.job_dir / "engine-logs" / test / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


class CrossKernel(_CrBase):
    """Checkpoint on the producer kernel, restore on the consumer kernel, compare the images."""

    def run(self, ctx: JobContext) -> KindOutcome:
        tests, known, engine, why_not = self._setup(ctx)
        consumer = ctx.spec.consumer
        if engine is None or not consumer:
            reason = why_not or "the job names no consumer kernel"
            skipped = [TestResult(t.name, Status.SKIP, reason) for t in tests]
            self._matrix(ctx, [{"test": t.name, "outcome": NOT_RUN, "detail": reason} for t in tests])
            return KindOutcome(Status.SKIP, FailureClass.NONE, "run", f"not run: {reason}", skipped)
        carried: dict[str, Path] = {}
        outcomes: dict[str, dict[str, Any]] = {}
        results: list[TestResult] = []
        bin_dir = ctx.suite_dir_in_guest + "/bin"
        runnable = []
        for test in tests:
            expectation, reason = test.expectation(engine.name)
            if expectation != EXPECT_PASS:
                outcomes[test.name] = {"outcome": NOT_RUN, "detail": f"{expectation}: {reason}"}
                results.append(TestResult(test.name, Status.SKIP, f"{engine.name}: {expectation}: {reason}"))
            else:
                runnable.append(test)
        with ctx.boot(min_memory_mb=self.min_memory_mb) as producer:
            ctx.info["producer_engine_version"] = engine.version(producer.shell)
            for test in runnable:
                ctx.stage("run", f"{test.name}: checkpoint on {ctx.spec.kernel}")
                carried_dir, problem = self._produce(ctx, producer.shell, engine, bin_dir, test)
                if problem:
                    outcomes[test.name] = {"outcome": CHECKPOINT_FAILED, "detail": problem}
                    results.append(TestResult(test.name, Status.FAIL, problem))
                else:
                    carried[test.name] = carried_dir
        with ctx.boot(kernel=consumer, label="consumer", min_memory_mb=self.min_memory_mb) as target:
            ctx.info["consumer_engine_version"] = engine.version(target.shell)
            # the restores need the producer's pids: move this guest's own new processes far above them
            target.shell.run(f"echo {CONSUMER_FIRST_PID} > /proc/sys/kernel/ns_last_pid", timeout=30)
            for test in runnable:
                if test.name not in carried:
                    continue
                ctx.stage("run", f"{test.name}: restore on {consumer}")
                outcome, result = self._consume(ctx, target.shell, engine, test, carried[test.name], known)
                incompatible = known_incompatible(ctx.suite.suite_dir, test.name, ctx.spec.kernel, consumer,
                                                  ctx.spec.target, engine.name)
                if incompatible and outcome["outcome"] != COMPATIBLE:
                    outcome = {"outcome": EXPECTED_INCOMPATIBLE,
                               "detail": f"{incompatible} (seen: {outcome['detail']})"}
                    result = TestResult(test.name, Status.SKIP, f"expected incompatible: {incompatible}")
                elif incompatible:
                    result = TestResult(test.name, Status.FAIL, f"listed as incompatible ({incompatible}) but "
                                        "compatible: update known-incompatible.yaml")
                outcomes[test.name] = outcome
                results.append(result)
        self._matrix(ctx, [{"test": name, **facts} for name, facts in sorted(outcomes.items())])
        return self._verdict(results, "")

    def _produce(self, ctx: JobContext, shell: Shell, engine: Engine, bin_dir: str,
                 test: CrTest) -> tuple[Path, str]:
        process = TestProcess(shell, bin_dir, test.name)
        host = ctx.job_dir / "images" / test.name
        shutil.rmtree(host, ignore_errors=True)
        try:
            problem = process.start()
            if problem:
                return host, problem
            assert process.pid is not None
            first = engine.checkpoint(shell, process.pid, f"{process.work}/img1", CheckpointOptions())
            self._record(ctx, test.name, {"checkpoint_s": round(first.seconds, 3)})
            if not first.ok:
                return host, f"checkpoint on {ctx.spec.kernel} failed: {first.message}"
            process.pid = None  # the checkpoint ended it; nothing to kill
            # the whole working directory travels: the test's files must exist where the image says
            fetch_tree(shell, process.work, host / "work")
            return host, ""
        except (ImageError, GuestError) as exc:
            return host, f"carrying the image failed: {exc}"
        finally:
            process.cleanup()

    def _consume(self, ctx: JobContext, shell: Shell, engine: Engine, test: CrTest, host: Path,
                 known: list[imagediff.KnownDifference]) -> tuple[dict[str, Any], TestResult]:
        process = TestProcess(shell, ctx.suite_dir_in_guest + "/bin", test.name)
        try:
            push_tree(shell, host / "work", process.work)
            restored = engine.restore(shell, f"{process.work}/img1", CheckpointOptions())
            self._record(ctx, test.name, {"restore_s": round(restored.seconds, 3)})
            if not restored.ok:
                return ({"outcome": RESTORE_FAILED, "detail": restored.message},
                        TestResult(test.name, Status.FAIL,
                                   f"restore on {ctx.spec.consumer} failed: {restored.message}"))
            process.pid = restored.pid
            second = engine.checkpoint(shell, process.pid or 0, f"{process.work}/img2",
                                       CheckpointOptions(leave_running=True))
            status, message = process.trigger_and_verdict()
            if not second.ok:
                return ({"outcome": CHECKPOINT_FAILED, "detail": second.message},
                        TestResult(test.name, Status.FAIL, f"checkpoint after restore failed: {second.message}"))
            img2 = fetch_tree(shell, f"{process.work}/img2", host / "img2")
            img1 = host / "work" / "img1"
            explained = diff_images(ctx, engine, test, img1, img2, known, "cross-kernel", host / "cross.diff")
            if status != Status.PASS:
                return ({"outcome": RESTORE_FAILED, "detail": f"restored test failed: {message}"},
                        TestResult(test.name, Status.FAIL, f"after restore on {ctx.spec.consumer}: {message}"))
            if explained.empty:
                return ({"outcome": COMPATIBLE, "detail": f"{len(explained.known)} known differences"},
                        TestResult(test.name, Status.PASS, "restored, verified, images equal after normalisation"))
            shown = "; ".join(str(d) for d in explained.unexplained[:5])
            return ({"outcome": DIFFERS, "detail": shown, "differences": len(explained.unexplained)},
                    TestResult(test.name, Status.FAIL, f"images differ: {shown}"))
        except (ImageError, GuestError) as exc:
            return ({"outcome": RESTORE_FAILED, "detail": str(exc)}, TestResult(test.name, Status.FAIL, str(exc)))
        finally:
            process.cleanup()

    @staticmethod
    def _matrix(ctx: JobContext, rows: list[dict[str, Any]]) -> None:
        """The compatibility matrix rows of this job: (producer, consumer, target, engine, test) -> outcome."""
        ctx.info["compat"] = [{"producer": ctx.spec.kernel, "consumer": ctx.spec.consumer, "target": ctx.spec.target,
                               "engine": ctx.spec.engine, **row} for row in rows]


KINDS = (CrSuite(),)
