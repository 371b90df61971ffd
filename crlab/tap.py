"""TAP/KTAP results of a suite run: the parser lives in crlab.ktap; this is the stable entry point.

The orchestrator calls parse_tap(text) -> TapReport and summarize_tap(report) -> (Status, message).
"""

from __future__ import annotations

from crlab.ktap import TapReport, parse_tap, summarize_tap

__all__ = ["TapReport", "parse_tap", "summarize_tap"]
