"""Making console output fit for a report: no terminal escapes, no control characters."""

from __future__ import annotations

import re
from typing import Any

TERMINAL_JUNK = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|[\x00-\x08\x0b-\x1f\x7f]")


def clean(text: Any) -> str:
    return TERMINAL_JUNK.sub("", str(text).replace("\r\n", "\n"))


def first_line(text: str, limit: int = 200) -> str:
    """The first line of `text`, without escape sequences or control characters, shortened."""
    text = TERMINAL_JUNK.sub("", text).strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[: limit - 1] + "\u2026"


def seconds(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "-"
    return f"{number:.1f}" if number < 100 else f"{number:.0f}"
