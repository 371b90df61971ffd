"""A parser for KTAP (the kernel's TAP, Documentation/dev-tools/ktap.rst) and TAP 12/13/14.

The text usually comes from a serial console or a shell, so it is noisy: kernel messages are
interleaved, lines end in CRLF, the shell echoes commands.  Lines that are not (K)TAP are ignored
or kept as diagnostics; they never change a result.

Reading rules:

* Headers: ``KTAP version 1``, ``TAP version 13``/``14``; none at all is read as TAP 12.
  A second top-level header after results starts another document (kselftest prints one per
  collection); its tests are added to the same report.
* Prefixes: printk prefixes (``<6>``, ``[    1.234567]`` timestamps, ``[    T123]``/``[  C1]``
  caller ids, ``[123]`` pid markers) and a ``kselftest:`` prefix are stripped.  The first (K)TAP
  line decides whether the stream is printed by the kernel (prefixed) or by user space; lines of
  the other kind are interleaved noise and ignored (they are still checked for a crash).
  Whitespace before the first top-level header (kunit_tool's "prefix") is stripped from every line.
* Nesting: a subtest begins with a version line, a plan or a result that is indented deeper than
  its parent (two spaces, four, a tab: any deeper prefix), optionally named by ``# Subtest: name``;
  it ends at the parent's result line at the parent's indentation.  The kselftest runner's output,
  where a test's own TAP is prefixed with ``# `` (``# TAP version 13``, ``# ok 1 ...``), is read
  the same way, so each check inside a kselftest program is a leaf.  Any depth up to 100 levels
  (deeper lines are read at the 100th, with a problem noted).
* Directives: SKIP (status SKIP, reason as the message), TODO (PASS when ok, else SKIP), XFAIL
  (PASS), TIMEOUT and ERROR (the ok/not ok decides; the directive is kept in the message).
  Anything after an unescaped ``#`` on a result line is directive or diagnostic data, never part
  of the name (``not ok 3 foo # exit=1`` is named ``foo``).
* Diagnostics (``# ...`` lines and, inside KTAP, unknown lines at the test's indentation) stay
  with their test as the message of a failure or skip.  KTAP prints them before the result line, so
  there they go to the next result; lines after a block's last result go to the block's parent.
  TAP 13 producers differ (crlab's suites print them after, kselftest before), so in a TAP <= 13
  document (the top level, or a kselftest program's own TAP) lines between two results go to the
  one that did not pass, to the earlier one if neither passed, and lines before the first result
  to it if it did not pass (they also stay in ``TapReport.diagnostics``).  A TAP 13 YAML block
  (``---`` .. ``...``) belongs to the result before it.  At a TAP <= 13 top level only ``#`` lines
  count (prompts and command echoes land there); kselftest's ``# Totals:`` tallies are dropped.

Results (``TapReport.tests``) are per LEAF test, named by the path of descriptions from the top,
joined with ``/`` (``suite/case/param``).  Names are stable across runs: a description that is empty
falls back to ``test N`` (its number at its level); a path that occurs more than once gets `` #2``,
`` #3`` ... by occurrence of that same path only, so a test's name never depends on the position
of other tests.  A leading ``[pid]`` in a description (kselftest's clone3 tests print their pid
there) is dropped from the name; a ``/`` inside a description is kept as printed.

A parent with subtests is not a leaf, with two exceptions that keep a verdict honest:
a parent that reports ``not ok`` (without SKIP/TODO) while none of its leaves failed is stored as
a failed result under its own path, and a parent whose subtest block reported no results is a leaf
with its own status (a ``1..0 # SKIP why`` inside it gives the reason).

Completeness: the top-level plan must be present and satisfied, every nested plan satisfied, every
parent closed by its result line, and no ``Bail out!`` at the top.  Planned tests that never
reported are listed in ``TapReport.missing`` (kunit_tool counts them as "crashed").  A kernel
panic/oops/BUG printk line while the run is incomplete makes it a crash (``TapReport.crash``).

Verdict (summarize_tap): FAIL when a leaf failed or the kernel crashed mid-run; else INCOMPLETE
when not complete (no plan, missing tests, top-level bail-out); else SKIP for ``1..0`` or when
every leaf was skipped; else PASS.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

from crlab.model import Status, TestResult

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# printk prefixes: optional syslog level, then timestamps / caller ids / pid markers.
_KERNEL_PREFIX_RE = re.compile(r"^(?:<\d{1,3}>)?(?:\[\s*(?:\d+\.\d+|[TC]?\d+)\])+ ?")
_SYSLOG_LEVEL_RE = re.compile(r"^<\d{1,3}>")
_KSELFTEST_PREFIX_RE = re.compile(r"^kselftest: ")
_INDENT_RE = re.compile(r"^[ \t]*")
_VERSION_RE = re.compile(r"^(K?TAP) version (\d+)$", re.IGNORECASE)
_HASH_VERSION_RE = re.compile(r"^# (K?TAP) version (\d+)$", re.IGNORECASE)
_SUBTEST_RE = re.compile(r"^# Subtest:\s*(.*)$")
_PLAN_RE = re.compile(r"^1\.\.(\d+)\s*(?:#(.*))?$")
_TEST_RE = re.compile(r"^(not\s+)?ok\b[ \t]*(\d+)?[ \t]*(.*)$", re.IGNORECASE)
_BAIL_RE = re.compile(r"^Bail out!\s*(.*)$", re.IGNORECASE)
# These apply to right-stripped lines and end in a greedy "(.*)$": a lazy group before "\s*$" is
# quadratic on a long line of spaces, and console garbage has those.
_DIRECTIVE_RE = re.compile(r"^(skip\S*|todo|xfail|timeout|error)\b:?\s*(.*)$", re.IGNORECASE)
_PID_MARKER_RE = re.compile(r"^\[\d+\]\s*")  # kselftest's clone3 tests start descriptions with their pid
_TOTALS_RE = re.compile(r"^Totals: pass:\d+")
_RUNNER_HEADER_RE = re.compile(r"^selftests: [^:]+: \S")  # kselftest's runner: "# selftests: <c>: <prog>"
_UNESCAPED_HASH_RE = re.compile(r"(?<!\\)#")
# A printk line that means the kernel died or is in trouble.  "Kernel panic" is specific enough to
# trust without a printk prefix (a console without timestamps); the rest need the prefix, so that a
# test printing "BUG:" is not mistaken for the kernel.
_PANIC_RE = re.compile(r"Kernel panic - not syncing")
_OOPS_RE = re.compile(r"^\s*(?:BUG:|kernel BUG at|Oops|Unable to handle kernel|general protection fault|"
                      r"Internal error:)")
_MAX_DEPTH = 100  # KTAP has no limit; this one keeps a runaway indentation from exhausting the stack
_MAX_MISSING_LISTED = 1000  # per block; the message still gives every missing range
_MAX_LINE = 4096  # longer lines are cut (garbage on a console must not cost quadratic time)


@dataclass
class _Result:
    """One result line, or a parent whose result line never came (ok is None)."""

    number: int
    description: str
    ok: bool | None
    directive: str | None = None  # SKIP, TODO, XFAIL, TIMEOUT, ERROR
    data: str = ""  # what followed the directive, or the whole comment when there was none
    notes: list[str] = field(default_factory=list)
    block: _Level | None = None  # its subtests


@dataclass
class _Level:
    """The tests at one indentation: a document's top level or the subtests of one parent."""

    prefix: str
    name: str = ""  # from "# Subtest: name"
    has_header: bool = False
    plan: int | None = None
    plan_comment: str = ""
    plan_after_results: bool = False
    results: list[_Result] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # lines since the last result
    numbers: set[int] = field(default_factory=set)
    last_number: int = 0
    bailed: str | None = None
    problems: list[str] = field(default_factory=list)  # reported with the level's path at the end
    beyond_plan: bool = False
    # TAP <= 13 (crlab's suites, kselftest): diagnostics may come after their result or before it
    neighbour_rule: bool = False
    only_hash_lines: bool = False  # TAP <= 13 top level: prompts and echoes are not diagnostics
    # a program's own "# "-prefixed TAP (kselftest): a wrapper script such as futex's run.sh prints
    # one complete document per program it runs; those continue this level, numbered on
    program_stream: bool = False
    number_offset: int = 0  # added to the numbers of a continuing document's plan and results
    continuing: bool = False  # a continuing document started and has not printed its plan yet

    @property
    def has_content(self) -> bool:
        return self.plan is not None or bool(self.results) or self.has_header

    def resolve_pending(self, new: _Result | None) -> list[str]:
        """Give the lines since the last result to the right test; return what nobody took."""
        lines, self.pending = self.pending, []
        if not lines:
            return []
        previous = self.results[-1] if self.results else None
        header = next((i for i, line in enumerate(lines) if _RUNNER_HEADER_RE.match(line)), None)
        if self.neighbour_rule and previous is not None and new is not None and header is not None:
            # the kselftest runner names each program before its output ("# selftests: c: prog"):
            # from there on the lines are the next program's, whatever the previous one did
            previous.notes.extend(lines[:header])
            new.notes.extend(lines[header:])
            return []
        if self.neighbour_rule and previous is not None:
            if new is None:  # trailing lines: after a test that did not pass, they explain it
                if _passed(previous):
                    return lines
                previous.notes.extend(lines)
            elif _passed(previous) and not _passed(new):
                new.notes.extend(lines)
            else:
                previous.notes.extend(lines)
            return []
        if new is not None and self.only_hash_lines:
            # before the first test of a TAP <= 13 run: the run's own diagnostics, and the first
            # test's too if it did not pass (kselftest prints a failing program's output first)
            if not _passed(new):
                new.notes.extend(lines)
            return lines
        if new is not None:
            new.notes.extend(lines)
            return []
        return lines  # the caller decides: the block's parent, or the report's diagnostics


def _passed(result: _Result) -> bool:
    return bool(result.ok) and result.directive not in ("SKIP", "TODO")


@dataclass
class TapReport:
    tests: list[TestResult] = field(default_factory=list)  # leaves, in output order
    plan: int | None = None  # N from the top-level "1..N" (summed over documents)
    bailed_out: str | None = None  # the reason given after a top-level "Bail out!"
    problems: list[str] = field(default_factory=list)  # everything that is not well-formed (K)TAP
    version: int | None = None  # from the first "TAP version N" / "KTAP version N"
    ktap: bool = False  # the header said KTAP
    skip_all: str | None = None  # the reason of a top-level "1..0 # SKIP reason" plan
    diagnostics: list[str] = field(default_factory=list)  # lines before the first test
    missing: list[str] = field(default_factory=list)  # planned tests that never reported (<= 1000 a block)
    crash: str | None = None  # the kernel panic/oops line seen while the run was incomplete
    crash_in: str = ""  # path of the test that was running when it crashed ("" at top level)
    kernel_errors: list[str] = field(default_factory=list)  # every panic/oops/BUG line seen
    documents: int = 0  # top-level TAP documents seen
    incomplete: list[str] = field(default_factory=list)  # why the run is not complete
    top_numbers: list[int] = field(default_factory=list)  # top-level test numbers seen
    top_missing: list[int] = field(default_factory=list)  # top-level numbers planned, not seen

    @property
    def complete(self) -> bool:
        """The plan was seen, there was no bail-out and every planned test (at any depth) reported."""
        return self.plan is not None and self.bailed_out is None and not self.incomplete

    def missing_numbers(self) -> list[int]:
        """Top-level test numbers that the plan announced but that never reported."""
        return list(self.top_missing)

    def counts(self) -> dict[Status, int]:
        counts = {status: 0 for status in Status}
        for test in self.tests:
            counts[test.status] += 1
        return counts


def _clean(line: str) -> str:
    line = _ANSI_RE.sub("", line[:_MAX_LINE])
    return _CONTROL_RE.sub("", line).rstrip()


def _split_directive(rest: str) -> tuple[str, str | None, str]:
    """Split "- description # SKIP reason" into (description, directive, data)."""
    match = _UNESCAPED_HASH_RE.search(rest)
    directive: str | None = None
    data = ""
    description = rest
    if match:
        description = rest[: match.start()]
        comment = rest[match.end():].strip()
        directive_match = _DIRECTIVE_RE.match(comment)
        if directive_match:
            word = directive_match.group(1).upper()
            directive = "SKIP" if word.startswith("SKIP") else word
            data = directive_match.group(2)
        else:
            data = comment
    description = description.strip()
    if description.startswith("-"):
        description = description[1:].strip()
    description = _PID_MARKER_RE.sub("", description)
    return description.replace("\\#", "#"), directive, data


def _gaps(numbers: set[int], plan: int) -> list[tuple[int, int]]:
    """The ranges of 1..plan that are not in `numbers` (without walking a huge plan)."""
    gaps = []
    expected = 1
    for n in sorted(x for x in numbers if 1 <= x <= plan):
        if n > expected:
            gaps.append((expected, n - 1))
        expected = n + 1
    if expected <= plan:
        gaps.append((expected, plan))
    return gaps


def _ranges_text(ranges: list[tuple[int, int]]) -> str:
    """[(1, 3), (5, 5)] -> "1-3, 5"."""
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def _strip_kernel_prefix(line: str) -> tuple[bool, str]:
    match = _KERNEL_PREFIX_RE.match(line)
    if match:
        line = line[match.end():]
    else:
        level = _SYSLOG_LEVEL_RE.match(line)
        if level:
            line = line[level.end():]
        match = level
    line = _KSELFTEST_PREFIX_RE.sub("", line)
    return match is not None, line


class _Parser:
    def __init__(self) -> None:
        self.report = TapReport()
        self.documents: list[_Level] = []
        self.levels: list[_Level] = []  # the open levels, outermost first
        self.kernel_stream: bool | None = None  # decided by the first (K)TAP line
        self.yaml: tuple[_Result, str] | None = None  # the result a YAML block belongs to, its indent
        self.stopped = False
        self.too_deep = False

    # -- levels ------------------------------------------------------------------------------

    def start_document(self, prefix: str, version: int | None, ktap: bool) -> None:
        if self.levels:
            self.finish_document()
        old_tap = not ktap and (version is None or version <= 13)
        root = _Level(prefix=prefix, neighbour_rule=old_tap, only_hash_lines=old_tap)
        self.levels = [root]
        self.documents.append(root)
        report = self.report
        report.documents += 1
        if version is not None and report.version is None:
            report.version, report.ktap = version, ktap

    def finish_document(self) -> None:
        while len(self.levels) > 1:
            self.close_unterminated()
        root = self.levels[0]
        trailing = root.resolve_pending(None)
        if not root.results:  # what came after the last test is not a diagnostic of the run
            self.report.diagnostics.extend(trailing)
        self.levels = []

    def open_level(self, prefix: str, name: str = "", header: bool = False) -> _Level:
        level = _Level(prefix=prefix, name=name, has_header=header)
        self.levels.append(level)
        return level

    def close_unterminated(self) -> None:
        """The innermost level ended without its parent's result line (stream ended, or moved on)."""
        level = self.levels.pop()
        parent = self.levels[-1]
        orphans = level.resolve_pending(None)
        result = _Result(number=parent.last_number + 1, description="", ok=None, block=level, notes=orphans)
        self.add_result(parent, result)

    def close_deeper_than(self, depth: int) -> _Level | None:
        """Close levels below `depth`; return the one directly below it (its subtests), if any."""
        while len(self.levels) > depth + 2:
            self.close_unterminated()
        if len(self.levels) == depth + 2:
            block = self.levels.pop()
            return block
        return None

    def add_result(self, level: _Level, result: _Result) -> None:
        problems = level.problems
        if level.plan_after_results and level.plan is not None:
            problems.append("tests after a plan printed at the end; the plan must come first or last")
            level.plan_after_results = False
        number = result.number
        expected = level.last_number + 1
        if number in level.numbers:
            problems.append(f"test {number} reported more than once")
        elif number != expected:
            problems.append(f"test {number} out of order (expected {expected})")
        if level.plan is not None and not 1 <= number <= level.plan:
            problems.append(f"test {number} is outside the plan 1..{level.plan}")
            level.beyond_plan = True
        level.numbers.add(number)
        level.last_number = number
        leftover = level.resolve_pending(result)
        if leftover:
            self.report.diagnostics.extend(leftover)
        level.results.append(result)

    # -- lines -------------------------------------------------------------------------------

    def feed(self, raw: str) -> None:
        line = _clean(raw)
        kernel, body = _strip_kernel_prefix(line)
        if (kernel and _OOPS_RE.match(body)) or _PANIC_RE.search(body):
            self.kernel_error(body.strip())
        if not body.strip():
            return
        if self.kernel_stream is not None and kernel != self.kernel_stream:
            return  # interleaved output of the other side (printk vs user space)
        if self.yaml is not None and self.feed_yaml(body):
            return
        if not self.levels:
            self.feed_outside(kernel, body)
            return
        depth, rest = self.locate(body)
        self.feed_level(depth, rest)

    def feed_outside(self, kernel: bool, body: str) -> None:
        """Before the first (K)TAP line: wait for a header, a plan or a result."""
        content = body.strip()
        if match := _VERSION_RE.match(content):
            self.kernel_stream = kernel
            self.start_document(_INDENT_RE.match(body).group(0), int(match.group(2)),  # type: ignore[union-attr]
                                match.group(1).upper() == "KTAP")
            return
        if _PLAN_RE.match(body) or _TEST_RE.match(body):
            self.kernel_stream = kernel
            self.start_document("", None, False)
            self.feed_level(0, body)
            return
        if content.startswith("#"):
            text = content[1:].strip()
            if text:
                self.report.diagnostics.append(text)

    def locate(self, body: str) -> tuple[int, str]:
        for depth in range(len(self.levels) - 1, -1, -1):
            prefix = self.levels[depth].prefix
            if body.startswith(prefix):
                return depth, body[len(prefix):]
        return 0, body.lstrip()

    def feed_yaml(self, body: str) -> bool:
        assert self.yaml is not None
        result, indent = self.yaml
        if body.startswith(indent):
            text = body.strip()
            if text == "...":
                self.yaml = None
            elif text:
                result.notes.append(text)
            return True
        self.report.problems.append("a YAML block was not closed with '...'")
        self.yaml = None
        return False

    def feed_level(self, depth: int, rest: str) -> None:
        level = self.levels[depth]
        indent = _INDENT_RE.match(rest).group(0)  # type: ignore[union-attr]
        content = rest[len(indent):]
        report = self.report
        if len(self.levels) >= _MAX_DEPTH and (indent or _HASH_VERSION_RE.match(content)):
            if not self.too_deep:
                self.too_deep = True
                report.problems.append(f"subtests nested deeper than {_MAX_DEPTH} levels are read as one level")
            indent = ""
            if _VERSION_RE.match(content) or _HASH_VERSION_RE.match(content) or _SUBTEST_RE.match(content):
                return

        if match := _VERSION_RE.match(content):
            self.version_line(depth, indent, int(match.group(2)), match.group(1).upper() == "KTAP")
            return
        if match := _HASH_VERSION_RE.match(content):
            self.drop_deeper(depth)
            nested = self.open_level(level.prefix + indent + "# ", header=True)
            nested.neighbour_rule = match.group(1).upper() == "TAP" and int(match.group(2)) <= 13
            nested.program_stream = True
            return
        if (match := _SUBTEST_RE.match(content)) and indent:
            self.drop_deeper(depth)
            self.open_level(level.prefix + indent, name=match.group(1).strip(), header=True)
            return
        if (match := _SUBTEST_RE.match(content)) and depth > 0 and not level.plan and not level.results \
                and not level.name:
            level.name = match.group(1).strip()
            return
        if match := _PLAN_RE.match(content):
            if indent:
                self.drop_deeper(depth)
                level = self.open_level(level.prefix + indent)
                depth += 1
            self.plan_line(level, int(match.group(1)), match.group(2) or "")
            return
        if match := _TEST_RE.match(content):
            if indent:
                self.drop_deeper(depth)
                level = self.open_level(level.prefix + indent)
                depth += 1
            block = self.close_deeper_than(depth)
            self.result_line(level, block, match.group(1) is None, match.group(2), match.group(3))
            return
        if match := _BAIL_RE.match(content):
            if depth == 0 and not indent:
                report.bailed_out = match.group(1).strip()
                self.stopped = True
            else:
                level.bailed = match.group(1).strip() or "no reason given"
                level.pending.append(content)
            return
        if indent and content == "---" and level.results and not level.pending:
            self.yaml = (level.results[-1], level.prefix + indent)
            return
        # A diagnostic or an unknown line.  At a TAP <= 13 top level only "#" lines count (that is
        # where prompts and command echoes land); inside KTAP every line may explain a failure.
        if content.startswith("#"):
            text = content[1:].strip()
            if _TOTALS_RE.match(text):
                return  # kselftest's per-program tally: the results themselves are counted
        elif level.only_hash_lines:
            return
        else:
            text = rest.strip()
        if text:
            level.pending.append(text)

    def drop_deeper(self, depth: int) -> None:
        """A new block starts at `depth`: blocks below it that are still open ended without a result."""
        while len(self.levels) > depth + 1:
            self.close_unterminated()

    def version_line(self, depth: int, indent: str, version: int, ktap: bool) -> None:
        level = self.levels[depth]
        if indent:
            self.drop_deeper(depth)
            self.open_level(level.prefix + indent, header=True)
            return
        if depth == 0:
            if level.has_content or level.results:
                self.start_document(level.prefix, version, ktap)
            return
        if not level.plan and not level.results:
            level.has_header = True  # "# Subtest:" came first, then the version line
            return
        if level.program_stream and level.plan is not None and level.plan == len(level.results) \
                and level.last_number == level.plan:
            # the previous document of this program stream is complete: the next one continues it
            level.number_offset, level.continuing = level.plan, True
            return
        # a new subtest at the same indentation: the previous one never printed its result line
        self.drop_deeper(depth - 1)
        self.open_level(level.prefix, header=True)

    def plan_line(self, level: _Level, count: int, comment: str) -> None:
        report = self.report
        if level.continuing:
            level.continuing = False
            level.plan = level.number_offset + count
            return
        if level.plan is not None:
            report.problems.append(f"a second plan 1..{count} after 1..{level.plan}; ignored")
            return
        level.plan = count
        level.plan_comment = comment.strip()
        if level.results:
            level.plan_after_results = True
        if count == 0 and level.results:
            report.problems.append(f"plan 1..0 but {len(level.results)} tests were reported")

    def result_line(self, level: _Level, block: _Level | None, ok: bool, number_text: str | None,
                    rest: str) -> None:
        number = level.last_number + 1 if number_text is None else int(number_text) + level.number_offset
        description, directive, data = _split_directive(rest)
        result = _Result(number=number, description=description, ok=ok, directive=directive, data=data.strip(),
                         block=block)
        if block is not None:
            result.notes.extend(block.resolve_pending(None))
        self.add_result(level, result)

    def kernel_error(self, text: str) -> None:
        report = self.report
        report.kernel_errors.append(text)
        root = self.levels[0] if self.levels else None
        # It cut the run short only if a test was still open: a subtest block, or a top-level plan
        # not yet satisfied.  After the last planned test (or with no plan to go by) it did not.
        running = root is not None and (len(self.levels) > 1 or (root.plan is not None
                                                                  and len(root.results) < root.plan))
        if report.crash is None and running and not self.stopped:
            report.crash = text
            names = [child.name or f"test {parent.last_number + 1}"
                     for parent, child in itertools.pairwise(self.levels)]
            report.crash_in = "/".join(names)

    # -- the end ------------------------------------------------------------------------------

    def finish(self) -> TapReport:
        report = self.report
        if self.yaml is not None:
            report.problems.append("a YAML block was not closed with '...'")
        if self.levels:
            self.finish_document()
        taken: dict[str, int] = {}
        plans: list[int | None] = []
        for root in self.documents:
            plans.append(root.plan)
            for result in root.results:
                report.top_numbers.append(result.number)
                self.emit(result, "", taken)
            self.check_level(root, "")
        if plans and all(p is not None for p in plans):
            report.plan = sum(p for p in plans if p is not None)
        if len(self.documents) == 1 and self.documents[0].plan == 0:
            root = self.documents[0]
            directive = _DIRECTIVE_RE.match(root.plan_comment)
            if directive and directive.group(1).upper().startswith("SKIP"):
                report.skip_all = directive.group(2).strip()
            else:
                report.skip_all = root.plan_comment
            if not report.skip_all:
                report.problems.append("plan 1..0 without a reason")
        if report.bailed_out is None:
            if not self.documents:
                report.problems.append("no plan (1..N) was printed")
            elif report.plan is None:
                report.problems.append("no plan (1..N) was printed")
                report.incomplete.append(f"no plan after {len(report.top_numbers)} tests (output cut short?)")
        if report.crash is not None and report.complete:
            report.crash = None  # the tests were all done; the orchestrator judges the kernel itself
            report.crash_in = ""
        return report

    def check_level(self, level: _Level, path: str) -> None:
        """Record what is missing at one level (its plan against its results)."""
        report = self.report
        where = f"{path}: " if path else ""
        count = len(level.results)
        if level.plan is not None and level.bailed is None:
            gaps = _gaps(level.numbers, level.plan)
            for n in itertools.islice(itertools.chain.from_iterable(range(a, b + 1) for a, b in gaps),
                                      _MAX_MISSING_LISTED):
                report.missing.append(f"{path}/test {n}" if path else f"test {n}")
                if not path:
                    report.top_missing.append(n)
            if gaps:
                report.incomplete.append(f"{where}tests {_ranges_text(gaps)} of {level.plan} did not report")
            elif level.beyond_plan:
                # more results than planned: the plan and the output disagree, so neither is trusted
                report.incomplete.append(f"{where}test numbers do not match the plan 1..{level.plan}")
            if count != level.plan and report.bailed_out is None:
                level.problems.append(f"planned {level.plan} tests but {count} were reported")
        # a number printed twice with everything planned present (a forked child flushing a copy of
        # its parent's buffer, as kselftest's clone3_set_tid does) is noted, not held against the run
        report.problems.extend(f"{where}{problem}" for problem in level.problems)
        level.problems = []

    def emit(self, result: _Result, parent: str, taken: dict[str, int]) -> bool:
        """Store the leaves under `result`; True if any of them failed."""
        report = self.report
        block = result.block
        part = result.description or (block.name if block is not None else "") or f"test {result.number}"
        path = f"{parent}/{part}" if parent else part
        children = block.results if block is not None else []
        if result.ok is None:
            if block is not None:
                if not children:
                    report.missing.append(path)
                report.incomplete.append(f"{path}: no result line after its subtests")
            report.problems.append(f"{path}: no result line")
        if children and block is not None:
            failed = False
            for child in children:
                failed |= self.emit(child, path, taken)
            self.check_level(block, path)
            if result.ok is False and result.directive not in ("SKIP", "TODO") and not failed:
                message = f"reported not ok, but none of its {len(children)} subtests failed"
                self.store(path, Status.FAIL, "\n".join([message, *result.notes]), result.number, taken)
                failed = True
            return failed
        if result.ok is None:
            return False
        if block is not None and block.has_content and block.plan != 0:
            report.problems.append(f"{path}: announced subtests but reported none")
        status, message = self.leaf_status(result, path)
        if block is not None and block.plan == 0 and block.plan_comment and status is not Status.FAIL:
            reason = _DIRECTIVE_RE.match(block.plan_comment)
            message = reason.group(2) if reason and reason.group(2) else block.plan_comment
        if status is not Status.PASS and result.notes:
            message = "\n".join(x for x in [message, *result.notes] if x)
        if block is not None and block.bailed is not None and status is Status.FAIL:
            message = "\n".join(x for x in [message, f"Bail out! {block.bailed}"] if x)
        self.store(path, status, message, result.number, taken)
        return status is Status.FAIL

    def leaf_status(self, result: _Result, path: str) -> tuple[Status, str]:
        ok, directive, data = result.ok, result.directive, result.data
        if directive == "SKIP":
            if data:
                return Status.SKIP, data
            if result.block is not None and result.block.plan == 0 and result.block.plan_comment:
                return Status.SKIP, result.block.plan_comment
            # a kselftest program that skips entirely prints "1..0 # SKIP reason" with no version line:
            # the runner's "ok N ... # SKIP" has no reason, the program's plan has it
            for note in result.notes:
                if (plan := _PLAN_RE.match(note)) and plan.group(1) == "0" and plan.group(2):
                    reason = _DIRECTIVE_RE.match(plan.group(2).strip())
                    return Status.SKIP, reason.group(2) if reason and reason.group(2) else plan.group(2).strip()
            self.report.problems.append(f"{path} is skipped without a reason")
            return Status.SKIP, "skipped (no reason given)"
        if directive == "TODO":
            return (Status.PASS if ok else Status.SKIP), (f"TODO: {data}" if data else "TODO")
        if directive == "XFAIL":
            return Status.PASS, (f"XFAIL: {data}" if data else "XFAIL")
        status = Status.PASS if ok else Status.FAIL
        if directive is not None:
            return status, f"{directive}: {data}" if data else directive
        return status, data

    def store(self, path: str, status: Status, message: str, number: int, taken: dict[str, int]) -> None:
        name = path
        seen = taken.get(path, 0)
        taken[path] = seen + 1
        if seen:
            name = f"{path} #{seen + 1}"
            while name in taken:  # a real test happens to be called "x #2"
                seen += 1
                name = f"{path} #{seen + 1}"
            taken[name] = 1
        self.report.tests.append(TestResult(name=name, status=status, message=message, number=number))


def parse_tap(text: str) -> TapReport:
    """Parse (K)TAP from `text`; see the module docstring for the rules.  Never raises on bad input."""
    parser = _Parser()
    for raw in text.splitlines():
        parser.feed(raw)
        if parser.stopped:
            break
    return parser.finish()


def summarize_tap(report: TapReport) -> tuple[Status, str]:
    """The overall status of a suite run and one sentence saying why.

    FAIL if any leaf failed, or the kernel crashed before the run was complete; otherwise
    INCOMPLETE when the plan is missing, tests are missing or the suite bailed out; SKIP when the
    plan is "1..0" or every test was skipped; otherwise PASS.
    """
    counts = report.counts()
    failed = [t for t in report.tests if t.status is Status.FAIL]
    if failed:
        names = ", ".join(f"{t.number} {t.name}" for t in failed[:3])
        more = f" and {len(failed) - 3} more" if len(failed) > 3 else ""
        total = len(report.tests) + len(report.missing)
        text = f"{len(failed)} of {total} tests failed: {names}{more}"
        if report.crash is not None:
            text += f" (then the kernel crashed: {report.crash})"
        elif not report.complete:
            text += f" (also incomplete: {_incomplete_reason(report)})"
        return Status.FAIL, text
    if report.crash is not None:
        where = f" during {report.crash_in}" if report.crash_in else ""
        return Status.FAIL, f"kernel crashed{where}: {report.crash}; {_incomplete_reason(report)}"
    if not report.complete:
        return Status.INCOMPLETE, _incomplete_reason(report)
    if report.plan == 0:
        return Status.SKIP, f"all tests skipped: {report.skip_all or 'no reason given'}"
    if not counts[Status.PASS] and counts[Status.SKIP]:
        reasons = sorted({t.message.splitlines()[0] for t in report.tests if t.status is Status.SKIP})
        return Status.SKIP, f"all {counts[Status.SKIP]} tests skipped: " + "; ".join(reasons[:3])
    text = f"{counts[Status.PASS]} passed"
    if counts[Status.SKIP]:
        text += f", {counts[Status.SKIP]} skipped"
    return Status.PASS, text


def _incomplete_reason(report: TapReport) -> str:
    if report.bailed_out is not None:
        return f"bailed out: {report.bailed_out}" if report.bailed_out else "bailed out"
    if report.plan is None and not report.tests and not report.documents:
        return "no TAP output"
    if report.incomplete:
        return "; ".join(report.incomplete[:3]) + (" ..." if len(report.incomplete) > 3 else "")
    return "test numbers do not match the plan: " + "; ".join(report.problems)
