"""`crctl` (tools/crctl/crctl.c) built statically for a target, against the series' own uapi headers."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from crlab.abicheck import DEFAULT_SERIES, extract_headers, series_patches
from crlab.cache import Cache
from crlab.paths import REPO_ROOT
from crlab.targets import TargetProfile
from crlab.userland.sourcebuild import build_static_programs

CRCTL_SOURCE = REPO_ROOT / "tools" / "crctl" / "crctl.c"


def build_crctl(profile: TargetProfile, cache: Cache, series: Path = DEFAULT_SERIES) -> Path:
    """The static crctl of the target (cached by the content of crctl.c and of the headers)."""
    with tempfile.TemporaryDirectory(prefix="crlab-crctl-") as tmp:
        stage = Path(tmp)
        headers = extract_headers(series_patches(series), stage / "tree")
        src = stage / "src"
        src.mkdir()
        for header in headers:  # flat, beside crctl.c: its includes are "checkpoint_hdr.h", "checkpoint.h"
            shutil.copyfile(header, src / header.name)
        shutil.copyfile(CRCTL_SOURCE, src / CRCTL_SOURCE.name)
        return build_static_programs(profile, [src / CRCTL_SOURCE.name], cache) / "crctl"
