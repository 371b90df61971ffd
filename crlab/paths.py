"""Where things live: the checkout, the content cache outside it, and the results."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIGS_DIR = REPO_ROOT / "configs"
KERNELS_DIR = REPO_ROOT / "kernels"
FRAGMENTS_DIR = KERNELS_DIR / "fragments"
SUITES_DIR = REPO_ROOT / "suites"
ROOTFS_DIR = REPO_ROOT / "rootfs"
PATCHES_DIR = REPO_ROOT / "patches"
DEFAULT_CONFIG = CONFIGS_DIR / "default.yaml"
DEFAULT_RESULTS_DIR = REPO_ROOT / "results"


def cache_root() -> Path:
    """The content-addressed cache; outside the clone so that every clone shares it."""
    env = os.environ.get("CRLAB_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "crlab"
