"""Shared fixtures.  Boot tests use the real kernels of configs/targets.yaml (built once into the
content cache, then reused by every test and by `harness.py run`)."""

from __future__ import annotations

import os
import shutil

import pytest

from crlab.config import MatrixConfig, load_config
from crlab.paths import CONFIGS_DIR

TARGETS = ["x86_64", "i386", "ppc64", "ppc64le", "armv7"]


@pytest.fixture(scope="session")
def matrix() -> MatrixConfig:
    return load_config(CONFIGS_DIR / "targets.yaml")


def require_qemu(binary: str) -> None:
    """Boot tests need QEMU; `harness.py selftest` installs it, so its absence is a set-up error."""
    if shutil.which(binary) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{binary} is not installed; run the tests through `harness.py selftest`")
        pytest.skip(f"{binary} is not installed (run `harness.py selftest`, which installs it)")


def missing_prerequisite(why: str) -> None:
    """A host prerequisite (a tool, a cross compiler, root) is absent: under CI, where `harness.py
    selftest` installs everything and runs as root, that is a failure; elsewhere a skip saying why."""
    if os.environ.get("CI"):
        pytest.fail(f"{why} (CI must have it: `harness.py selftest` installs it, as root)")
    pytest.skip(why)


def require_cross_compilers() -> None:
    """The v21 tables, crctl and abi-check need every target's cross compiler."""
    from crlab.abicheck import DEFAULT_TARGETS
    from crlab.targets import get_profile

    missing = [f"{get_profile(t).cross_compile}gcc" for t in DEFAULT_TARGETS
               if shutil.which(f"{get_profile(t).cross_compile}gcc") is None]
    if missing:
        missing_prerequisite(f"cross compilers missing: {', '.join(missing)} (`harness.py selftest` installs them)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Fast tests first, boots last: a broken parser shows up in seconds, not after the builds."""
    items.sort(key=lambda item: item.get_closest_marker("boot") is not None)
