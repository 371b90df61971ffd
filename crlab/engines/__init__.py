"""Checkpoint/restart engines behind one interface (checkpoint, restore, decode).

An engine module registers itself in ENGINES; configs may name only registered engines, so an
`engines:` entry always means something that can run.
"""

from __future__ import annotations

from typing import Any

# name -> engine object; filled by the engine modules as they are added (CRIU, linux-cr)
ENGINES: dict[str, Any] = {}


def _register() -> None:
    # each engine module adds itself to ENGINES when imported
    import crlab.engines.criu  # noqa: F401
    import crlab.engines.linuxcr  # noqa: F401


def engine_names() -> tuple[str, ...]:
    _register()
    return tuple(sorted(ENGINES))


def get_engine(name: str) -> Any:
    _register()
    return ENGINES[name]
