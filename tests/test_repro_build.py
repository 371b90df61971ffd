"""Reproducible kernel builds: the same inputs give the same image bytes.

The first build is the one the boot tests use (usually a cache hit by now; possibly built
incrementally in the kept object tree after another tree: it must match all the same).  The second
is a clean build of the same inputs into a fresh cache root, sharing only the kernel source and the
ccache, so it costs a warm-ccache build (about a minute for i386 on 2 cores) instead of a cold one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crlab import kernel as kstages
from crlab.cache import Cache, hash_file
from crlab.config import MatrixConfig
from crlab.paths import FRAGMENTS_DIR

TARGET = "i386"  # the smallest kernel of the boot tests' matrix (no C/R engine fragment)


def _build(matrix: MatrixConfig, cache: Cache, source_cache: Cache, log_dir: Path) -> kstages.BuiltKernel:
    kernel, profile = matrix.kernels["linux-6.1"], matrix.targets[TARGET]
    log_dir.mkdir()
    source_key, tree = kstages.prepare_source(kernel.source, source_cache, log_dir / "source.log")
    tree_key, tree = kstages.apply_patches(source_key, tree, kernel.patches, source_cache, log_dir / "patch.log")
    return kstages.build_kernel(kernel, profile, tree_key, tree, cache, FRAGMENTS_DIR, log_dir, lambda _stage: None)


@pytest.mark.boot
@pytest.mark.slow
def test_two_clean_builds_of_the_same_inputs_give_the_same_image(matrix: MatrixConfig, tmp_path: Path) -> None:
    shared = Cache()
    first = _build(matrix, shared, shared, tmp_path / "first")
    second_cache = Cache(tmp_path / "second-cache", ccache_dir=shared.ccache_dir)
    second = _build(matrix, second_cache, shared, tmp_path / "second")
    assert not second.cached, "the second build must really build"
    assert second.metadata["object_tree"] == {
        "path": str(kstages.workspace_dir(second_cache, matrix.kernels["linux-6.1"], matrix.targets[TARGET])),
        "incremental": False,
        "source_files_changed": None,
    }
    assert first.key == second.key
    for built in (first, second):
        assert hash_file(built.image) == built.metadata["image_sha256"]
        assert built.metadata["kbuild"]["KBUILD_BUILD_HOST"] == f"crlab-{built.key[:12]}"  # type: ignore[index]
    assert second.metadata["image_sha256"] == first.metadata["image_sha256"], (
        f"{first.image} and {second.image} differ although built from the same inputs")
    assert (second.uts_version, second.release) == (first.uts_version, first.release)
    assert second.config.read_bytes() == first.config.read_bytes()
