"""A parser for TAP (Test Anything Protocol, versions 12 and 13) as printed by suites in a guest.

The text usually comes from a serial console, so it is noisy: kernel messages are interleaved
with the TAP lines, lines end in CRLF, and the shell may echo the command or print a prompt.
Anything that is not a TAP line is ignored.  What matters for the harness is whether the output
is *complete* (the plan was seen and every planned test reported exactly once, without a
bail-out), so that a truncated run is never mistaken for a passing one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from crlab.model import Status, TestResult

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_VERSION_RE = re.compile(r"^TAP version (\d+)\s*$", re.IGNORECASE)
_PLAN_RE = re.compile(r"^1\.\.(\d+)\s*(?:#\s*(.*?))?\s*$")
_TEST_RE = re.compile(r"^(not\s+)?ok\b[ \t]*(\d+)?[ \t]*(.*?)\s*$", re.IGNORECASE)
_BAIL_RE = re.compile(r"^Bail out!\s*(.*?)\s*$", re.IGNORECASE)
_DIRECTIVE_RE = re.compile(r"^\s*(skip|todo)\S*(?:\s+(.*?))?\s*$", re.IGNORECASE)
_UNESCAPED_HASH_RE = re.compile(r"(?<!\\)#")
_YAML_START_RE = re.compile(r"^\s+---\s*$")
_YAML_END_RE = re.compile(r"^\s+\.\.\.\s*$")
_KERNEL_MSG_RE = re.compile(r"^(<\d+>)?\[\s*\d+\.\d+\]")


@dataclass
class TapReport:
    tests: list[TestResult] = field(default_factory=list)
    plan: int | None = None  # N from "1..N"
    bailed_out: str | None = None  # the reason given after "Bail out!"
    problems: list[str] = field(default_factory=list)  # everything that is not well-formed TAP
    version: int | None = None  # 13 when "TAP version 13" was printed, else None (version 12)
    skip_all: str | None = None  # the reason of a "1..0 # SKIP reason" plan
    diagnostics: list[str] = field(default_factory=list)  # "# ..." lines before the first test

    @property
    def complete(self) -> bool:
        """The plan was seen, there was no bail-out and tests 1..plan each appeared exactly once."""
        if self.plan is None or self.bailed_out is not None:
            return False
        numbers = [t.number for t in self.tests]
        return len(numbers) == self.plan and set(numbers) == set(range(1, self.plan + 1))

    def missing_numbers(self) -> list[int]:
        if self.plan is None:
            return []
        seen = {t.number for t in self.tests}
        return [n for n in range(1, self.plan + 1) if n not in seen]

    def counts(self) -> dict[Status, int]:
        counts = {status: 0 for status in Status}
        for test in self.tests:
            counts[test.status] += 1
        return counts


def _clean(line: str) -> str:
    line = _ANSI_RE.sub("", line)
    return _CONTROL_RE.sub("", line).rstrip()


def _split_directive(rest: str) -> tuple[str, str | None, str]:
    """Split "- description # SKIP reason" into (description, directive, reason)."""
    match = _UNESCAPED_HASH_RE.search(rest)
    directive: str | None = None
    reason = ""
    description = rest
    if match:
        directive_match = _DIRECTIVE_RE.match(rest[match.end():])
        if directive_match:
            description = rest[: match.start()]
            directive = directive_match.group(1).upper()
            reason = (directive_match.group(2) or "").strip()
    description = description.strip()
    if description.startswith("-"):
        description = description[1:].strip()
    return description.replace("\\#", "#"), directive, reason


def _range_text(numbers: list[int]) -> str:
    """[1, 2, 3, 5] -> "1-3, 5" (numbers sorted ascending)."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _is_kernel_message(line: str) -> bool:
    return bool(_KERNEL_MSG_RE.match(line))


class _Parser:
    def __init__(self) -> None:
        self.report = TapReport()
        self.last_number = 0
        self.seen_numbers: set[int] = set()
        self.names: set[str] = set()
        self.plan_after_tests = False
        self.in_yaml = False

    def attach(self, text: str) -> None:
        test = self.report.tests[-1]
        test.message = f"{test.message}\n{text}" if test.message else text

    def feed(self, raw: str) -> bool:
        """Handle one line; False once the output is over (bail-out)."""
        line = _clean(raw)
        report = self.report
        if self.in_yaml:
            if _YAML_END_RE.match(line):
                self.in_yaml = False
            elif line.strip() and not _is_kernel_message(line.strip()):
                self.attach(line.strip())
            return True
        if not line.strip():
            return True
        if _YAML_START_RE.match(line) and report.tests:
            self.in_yaml = True
            return True
        if line[0].isspace():  # indented: a subtest or noise; only top-level lines count
            return True
        if match := _VERSION_RE.match(line):
            report.version = int(match.group(1))
            return True
        if match := _BAIL_RE.match(line):
            report.bailed_out = match.group(1)
            return False
        if match := _PLAN_RE.match(line):
            self.plan(int(match.group(1)), match.group(2))
            return True
        if match := _TEST_RE.match(line):
            self.test(match.group(1) is None, match.group(2), match.group(3))
            return True
        if line.startswith("#"):
            text = line[1:].strip()
            if text:
                if report.tests:
                    self.attach(text)
                else:
                    report.diagnostics.append(text)
        return True

    def plan(self, count: int, comment: str | None) -> None:
        report = self.report
        if report.plan is not None:
            report.problems.append(f"a second plan 1..{count} after 1..{report.plan}; ignored")
            return
        report.plan = count
        if report.tests:
            self.plan_after_tests = True
        if count == 0:
            directive = _DIRECTIVE_RE.match(comment or "")
            if directive and directive.group(1).upper() == "SKIP":
                report.skip_all = (directive.group(2) or "").strip()
            else:
                report.skip_all = (comment or "").strip()
            if not report.skip_all:
                report.problems.append("plan 1..0 without a reason")
            if report.tests:
                report.problems.append(f"plan 1..0 but {len(report.tests)} tests were reported")

    def test(self, ok: bool, number_text: str | None, rest: str) -> None:
        report = self.report
        if self.plan_after_tests:
            report.problems.append("tests after a plan printed at the end; the plan must come first or last")
            self.plan_after_tests = False  # report it once
        expected = self.last_number + 1
        if number_text is None:
            number = expected
        else:
            number = int(number_text)
            if number in self.seen_numbers:
                report.problems.append(f"test {number} reported more than once")
            elif number != expected:
                report.problems.append(f"test {number} out of order (expected {expected})")
        if report.plan is not None and not 1 <= number <= report.plan:
            report.problems.append(f"test {number} is outside the plan 1..{report.plan}")
        self.seen_numbers.add(number)
        self.last_number = number

        description, directive, reason = _split_directive(rest)
        status = Status.PASS if ok else Status.FAIL
        message = ""
        if directive == "SKIP":
            status = Status.SKIP
            if reason:
                message = reason
            else:
                message = "skipped (no reason given)"
                report.problems.append(f"test {number} is skipped without a reason")
        elif directive == "TODO":
            message = f"TODO: {reason}" if reason else "TODO"
            status = Status.PASS if ok else Status.SKIP

        name = description or f"test {number}"
        if name in self.names:
            name = f"{name} [#{number}]"
        self.names.add(name)
        report.tests.append(TestResult(name=name, status=status, message=message, number=number))



def parse_tap(text: str) -> TapReport:
    """Parse TAP from `text`, ignoring anything that is not TAP (kernel messages, prompts, blanks)."""
    parser = _Parser()
    for raw in text.splitlines():
        if not parser.feed(raw):
            break
    if parser.in_yaml:
        parser.report.problems.append("a YAML block was not closed with '...'")
    report = parser.report
    if report.plan is None and report.bailed_out is None:
        report.problems.append("no plan (1..N) was printed")
    elif report.plan is not None and report.bailed_out is None and report.plan != len(report.tests):
        report.problems.append(f"planned {report.plan} tests but {len(report.tests)} were reported")
    return report


def summarize_tap(report: TapReport) -> tuple[Status, str]:
    """The overall status of a suite run and one sentence saying why.

    FAIL if any test failed (whatever else happened); otherwise INCOMPLETE when the plan is
    missing, tests are missing or the suite bailed out; SKIP when the plan is "1..0 # SKIP";
    otherwise PASS.
    """
    counts = report.counts()
    failed = [t for t in report.tests if t.status is Status.FAIL]
    if failed:
        names = ", ".join(f"{t.number} {t.name}" for t in failed[:3])
        more = f" and {len(failed) - 3} more" if len(failed) > 3 else ""
        text = f"{len(failed)} of {report.plan or len(report.tests)} tests failed: {names}{more}"
        if not report.complete:
            text += f" (also incomplete: {_incomplete_reason(report)})"
        return Status.FAIL, text
    if not report.complete:
        return Status.INCOMPLETE, _incomplete_reason(report)
    if report.plan == 0:
        return Status.SKIP, f"all tests skipped: {report.skip_all or 'no reason given'}"
    text = f"{counts[Status.PASS]} passed"
    if counts[Status.SKIP]:
        text += f", {counts[Status.SKIP]} skipped"
    return Status.PASS, text


def _incomplete_reason(report: TapReport) -> str:
    if report.bailed_out is not None:
        return f"bailed out: {report.bailed_out}" if report.bailed_out else "bailed out"
    if report.plan is None:
        if not report.tests:
            return "no TAP output"
        return f"no plan after {len(report.tests)} tests (output cut short?)"
    missing = report.missing_numbers()
    if missing:
        return f"tests {_range_text(missing)} of {report.plan} did not report"
    return f"test numbers do not match the plan 1..{report.plan}: " + "; ".join(report.problems)
