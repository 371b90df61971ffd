"""Known issues: failures a team expects, with the reason and an optional expiry date.

A YAML file (default ``configs/known-issues.yaml``; ``--known-issues FILE``) validated like every
crlab config (pydantic, unknown keys rejected, every problem as FILE:LINE)::

    known_issues:
      - cell: linux-6.1/armv7/smoke          # a job id; shell-style wildcards allowed (*/armv7/smoke)
        test: "machine is armv7l"            # optional: one leaf test; absent = any failure of the cell
        reason: "ARM uname regression, fix queued upstream"
        expires: 2026-12-31                  # optional: from this day on the entry covers nothing
        link: https://lore.kernel.org/...     # optional, shown in reports

A failure the file covers is reported as ``known`` by `crlab.results.compare` and never makes a
nightly exit 1.  An entry past its expiry date covers nothing and is reported as expired, so a
workaround does not silently become permanent.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

from crlab.config.document import ConfigError, ConfigProblem, Document
from crlab.model import JobSpec

_Text = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    cell: _Text = Field(description="job id (kernel[>consumer]/target/suite[@engine]); wildcards allowed")
    test: _Text | None = None
    reason: _Text
    expires: date | None = None
    link: _Text | None = None


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    known_issues: list[_Entry]


_SCHEMA = TypeAdapter(_File)


@dataclass(frozen=True)
class KnownIssue:
    cell: str
    reason: str
    test: str | None = None
    expires: date | None = None
    link: str | None = None
    line: int = 0  # where it is in its file

    def covers(self, spec: JobSpec, test: str) -> bool:
        if not fnmatch.fnmatchcase(spec.job_id, self.cell):
            return False
        return self.test is None or self.test == test

    def expired(self, today: date) -> bool:
        return self.expires is not None and today >= self.expires


@dataclass(frozen=True)
class KnownIssues:
    path: str
    issues: tuple[KnownIssue, ...] = ()

    def match(self, spec: JobSpec, test: str, today: date) -> KnownIssue | None:
        """The first unexpired entry covering a failure of `test` ("" = the job) in `spec`.

        An entry without `test` covers the job and every test of it."""
        for issue in self.issues:
            if issue.covers(spec, test) and not issue.expired(today):
                return issue
        return None

    def expired(self, today: date) -> list[KnownIssue]:
        return [issue for issue in self.issues if issue.expired(today)]


def load_known_issues(path: Path | str) -> KnownIssues:
    """Read and validate a known-issues file; raises ConfigError listing every problem."""
    problems: list[ConfigProblem] = []
    doc = Document(Path(path), problems, root_label="known-issues file")
    parsed: _File | None = None
    if doc.load():
        parsed = doc.validate(_SCHEMA)
    if problems or parsed is None:
        raise ConfigError(list(dict.fromkeys(problems)))
    issues = []
    for index, entry in enumerate(parsed.known_issues):
        node = doc.node(("known_issues", index))
        issues.append(KnownIssue(cell=entry.cell, reason=entry.reason, test=entry.test, expires=entry.expires,
                                 link=entry.link, line=node.start_mark.line + 1))
    return KnownIssues(path=doc.display, issues=tuple(issues))


__all__ = ["KnownIssue", "KnownIssues", "load_known_issues"]
