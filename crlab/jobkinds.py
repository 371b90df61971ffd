"""What a job does, behind one small interface (filled in by the orchestrator work)."""

from __future__ import annotations

KIND_NAMES: tuple[str, ...] = ("tap",)


def kind_names() -> tuple[str, ...]:
    return KIND_NAMES
