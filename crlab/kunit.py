"""The "kunit" job kind: KUnit tests built into the kernel run while it boots and print KTAP on the
console; crlab boots the job's kernel and reads that KTAP (kernel-log timestamps, interleaved
printk lines and all) as the suite's results, one per test case, named `<kunit suite>/<case>`.

The kernel must be built with CONFIG_KUNIT and the chosen test symbols (configs/kunit.yaml carries
a tree with kernels/fragments/kunit.config).  A kernel without them prints no KTAP: the job is
INCOMPLETE and says so, it never passes empty.
"""

from __future__ import annotations

import re

from crlab.jobkinds import JobContext, KindOutcome
from crlab.model import FailureClass, Status, TestResult
from crlab.tap import parse_tap

# crlab's /init announces itself once the kernel is done booting (rootfs/base/init): KUnit's
# built-in tests ran before that, the shell session comes after
INIT_LINE = re.compile(r"^.*crlab-init: ", re.M)


def boot_ktap(console: str) -> str:
    """The part of a console log that holds the kernel's boot-time KTAP (everything before /init
    speaks; all of it if /init never did)."""
    m = INIT_LINE.search(console)
    return console[: m.start()] if m else console


def read_console(console: str) -> tuple[KindOutcome, int]:
    """The verdict and per-case results of the KUnit KTAP in a console log; and how many leaves."""
    report = parse_tap(boot_ktap(console))
    tests = [TestResult(t.name, t.status, t.message, t.number) for t in report.tests]
    counts = report.counts()
    summary = (f"{counts[Status.PASS]} passed, {counts[Status.FAIL]} failed, {counts[Status.SKIP]} skipped"
               f" in {report.plan or 0} KUnit suites")
    if not report.ktap and not tests:
        return KindOutcome(Status.INCOMPLETE, FailureClass.INFRA, "collect",
                           "no KUnit KTAP on the console (is the kernel built with CONFIG_KUNIT and tests?)"), 0
    if report.crash is not None:
        where = f" in {report.crash_in}" if report.crash_in else ""
        failure = FailureClass.GUEST_PANIC if "panic" in report.crash.lower() else FailureClass.KERNEL_OOPS
        return KindOutcome(Status.FAIL, failure, "run", f"kernel crashed{where}: {report.crash}; {summary}",
                           tests), len(tests)
    if not report.complete:
        for missing in report.missing:
            tests.append(TestResult(missing, Status.FAIL, "never reported"))
        why = "; ".join(report.incomplete) or "incomplete KTAP"
        return KindOutcome(Status.FAIL, FailureClass.TEST, "run", f"{why}; {summary}", tests), len(tests)
    if counts[Status.FAIL]:
        failed = ", ".join(t.name for t in tests if t.status is Status.FAIL)
        return KindOutcome(Status.FAIL, FailureClass.TEST, "run", f"{summary}; failed: {failed}"[:2000],
                           tests), len(tests)
    if not counts[Status.PASS]:
        return KindOutcome(Status.SKIP, FailureClass.NONE, "collect", summary, tests), len(tests)
    return KindOutcome(Status.PASS, FailureClass.NONE, "collect", summary, tests), len(tests)


class KunitConsole:
    """Boot the job's kernel and read the KUnit results it printed on the console."""

    name = "kunit"

    def run(self, ctx: JobContext) -> KindOutcome:
        with ctx.boot() as guest:
            ctx.stage("collect", "console")
            console = guest.console_text()
            (ctx.job_dir / "kunit.log").write_text(boot_ktap(console))
            ctx.artifact("kunit.log", ctx.job_dir / "kunit.log")
            outcome, _ = read_console(console)
            oops = guest.kernel_oops()
            if oops and outcome.status is not Status.FAIL:
                return KindOutcome(Status.FAIL, FailureClass.KERNEL_OOPS, "run", f"kernel reported {oops!r}; "
                                   + outcome.message, outcome.tests)
            return outcome


KINDS = (KunitConsole(),)
