"""The guest programs every rootfs has: a static busybox and a dropbear SSH server.

Each comes either from Debian's binary packages for the target's ``debian_arch`` or, where Debian has
no userland (big-endian ppc64), from a static cross build of Debian's source package (the profile's
``busybox_from`` / ``dropbear_from``).  Keys hold everything that decides the bytes: package names
and versions as apt resolves them, the architecture, the toolchain's versions and the recipe.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from crlab.cache import Cache
from crlab.targets import TargetProfile
from crlab.userland.common import USERLAND_RECIPE, Job, UserlandError, run
from crlab.userland.debian import Apt, need_debian_arch, packages_with_libraries
from crlab.userland.sourcebuild import (
    Smoke,
    busybox_recipe,
    busybox_source_inputs,
    dropbear_recipe,
    dropbear_source_inputs,
    static_artifact,
)

BUSYBOX_DEB = "busybox-static"
DROPBEAR_DEB = "dropbear-bin"
DROPBEAR_FILES = ("usr/sbin/dropbear", "usr/bin/dropbearkey")


def _check_from(profile: TargetProfile, program: str, value: str) -> None:
    if value not in ("debian", "source"):
        raise UserlandError(f"{program} for {profile.name}: {program}_from must be 'debian' or 'source', "
                            f"not {value!r}")


def _busybox_inputs(profile: TargetProfile, apt: Apt, what: str) -> dict[str, Any]:
    _check_from(profile, "busybox", profile.busybox_from)
    if profile.busybox_from == "source":
        return busybox_source_inputs(profile, apt, what)
    arch = need_debian_arch(profile, "busybox")
    return {"from": "debian", "package": BUSYBOX_DEB, "version": apt.candidate(BUSYBOX_DEB, arch, what),
            "arch": arch, "recipe": USERLAND_RECIPE}


def busybox(profile: TargetProfile, cache: Cache | None = None) -> Path:
    """Host path of a static busybox binary for the target (fetched or built once, then cached)."""
    cache = cache or Cache()
    apt = Apt(cache)
    what = f"busybox for {profile.name}"
    inputs = _busybox_inputs(profile, apt, what)

    def from_debian(scratch: Path, job: Job) -> None:
        deb = apt.debs([[BUSYBOX_DEB, inputs["version"], inputs["arch"]]], what)[BUSYBOX_DEB]
        unpacked = scratch / "unpacked"
        run(["dpkg-deb", "-x", str(deb), str(unpacked)], what=what, job=job)
        shutil.copyfile(unpacked / "bin/busybox", scratch / "busybox")
        os.chmod(scratch / "busybox", 0o755)
        shutil.rmtree(unpacked)

    recipe = from_debian if inputs["from"] == "debian" else busybox_recipe(profile, apt)
    smoke = Smoke("busybox", ["echo", "crlab-ok"], expect_stdout="crlab-ok")
    return static_artifact(profile, "userland-busybox", inputs, recipe, ["busybox"], cache, what, smoke) / "busybox"


def _dropbear_inputs(profile: TargetProfile, apt: Apt, what: str) -> dict[str, Any]:
    _check_from(profile, "dropbear", profile.dropbear_from)
    if profile.dropbear_from == "source":
        return dropbear_source_inputs(profile, apt, what)
    arch = need_debian_arch(profile, "dropbear")
    return {"from": "debian", "arch": arch, "packages": apt.closure([DROPBEAR_DEB], arch, [], what)}


def dropbear(profile: TargetProfile, cache: Cache | None = None) -> Path:
    """Host path of a tree to merge into the guest's root: usr/sbin/dropbear, usr/bin/dropbearkey and,
    for Debian's build, the shared libraries and loader they need."""
    cache = cache or Cache()
    what = f"dropbear for {profile.name}"
    _check_from(profile, "dropbear", profile.dropbear_from)
    if profile.dropbear_from == "debian":
        root = packages_with_libraries(profile, [DROPBEAR_DEB], cache)
    else:
        apt = Apt(cache)
        inputs = _dropbear_inputs(profile, apt, what)
        smoke = Smoke(DROPBEAR_FILES[0], ["-V"])
        root = static_artifact(profile, "userland-dropbear", inputs, dropbear_recipe(profile, apt),
                               [f"root/{rel}" for rel in DROPBEAR_FILES], cache, what, smoke) / "root"
    for rel in DROPBEAR_FILES:
        if not (root / rel).is_file():
            raise UserlandError(f"{what}: {rel} is missing from {root}")
    return root


def describe(profile: TargetProfile, cache: Cache | None = None) -> dict[str, Any]:
    """The versions behind the target's guest programs (for a run's metadata); downloads nothing."""
    apt = Apt(cache or Cache())
    out: dict[str, Any] = {"target": profile.name, "debian_arch": profile.debian_arch}
    busybox_inputs = _busybox_inputs(profile, apt, f"busybox for {profile.name}")
    dropbear_inputs = _dropbear_inputs(profile, apt, f"dropbear for {profile.name}")
    for name, inputs in (("busybox", busybox_inputs), ("dropbear", dropbear_inputs)):
        entry: dict[str, Any] = {"from": inputs["from"]}
        if inputs["from"] == "debian" and "package" in inputs:
            entry.update(package=inputs["package"], version=inputs["version"], arch=inputs["arch"])
        elif inputs["from"] == "debian":
            entry.update(arch=inputs["arch"], packages={p: v for p, v, _a in inputs["packages"]})
        else:
            src = inputs["source"]
            entry.update(source=src["package"], version=src["version"], toolchain=inputs["toolchain"])
        out[name] = entry
    return out
