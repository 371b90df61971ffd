"""Checkpoint/restart engines behind one interface (checkpoint, restore, decode).

An engine module registers itself in ENGINES; configs may name only registered engines, so an
`engines:` entry always means something that can run.
"""

from __future__ import annotations

from typing import Any

# name -> engine object; filled by the engine modules as they are added (CRIU, linux-cr)
ENGINES: dict[str, Any] = {}


def engine_names() -> tuple[str, ...]:
    return tuple(sorted(ENGINES))
