"""What the host needs for a matrix, what it lacks, and installing it (apt-get, as root)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from crlab.targets import TargetProfile

# always needed to configure and build a kernel and to pack an initramfs (rsync: the kselftest
# install step copies with it)
BASE_PACKAGES = ("make", "gcc", "bc", "bison", "flex", "libelf-dev", "libssl-dev", "cpio", "ccache",
                 "xz-utils", "git", "dpkg-dev", "file", "rsync")


@dataclass
class HostReport:
    missing_packages: list[str]
    present_packages: list[str]
    notes: list[str]

    @property
    def ok(self) -> bool:
        return not self.missing_packages


HOST_ENGINE_PACKAGES = {"criu": ("criu", "python3")}


def required_packages(targets: list[TargetProfile], debian_sources: list[str]) -> list[str]:
    wanted: list[str] = list(BASE_PACKAGES)
    for profile in targets:
        wanted += [*profile.toolchain_packages, profile.qemu_package]
        # C/R images are decoded on the host with the engine's own tools (criu: pycriu, run by
        # Debian's python3)
        for engine in profile.engines:
            wanted += HOST_ENGINE_PACKAGES.get(engine, ())
        if profile.busybox_from == "source" or profile.dropbear_from == "source":
            wanted += ["gcc", "make"]
    wanted += debian_sources
    return list(dict.fromkeys(wanted))


def installed(packages: list[str]) -> set[str]:
    if not packages:
        return set()
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev}\n", *packages], text=True,
                          capture_output=True)
    have = set()
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].startswith("ii"):
            have.add(parts[0].split(":")[0])
    return have


def check(targets: list[TargetProfile], debian_sources: list[str]) -> HostReport:
    wanted = required_packages(targets, debian_sources)
    have = installed(wanted)
    notes = []
    if not os.path.exists("/dev/kvm"):
        notes.append("no /dev/kvm: guests run under TCG (slower, but the same results)")
    if not shutil.which("apt-get"):
        notes.append("apt-get not found: crlab expects a Debian 12 (bookworm) host")
    return HostReport([p for p in wanted if p not in have], [p for p in wanted if p in have], notes)


# Debian packages that only crlab's own tests use (no matrix needs them): `harness.py selftest`
# installs them with the matrices' packages.  Package -> what needs it.
TEST_PACKAGES: dict[str, str] = {
    "chromium": "tests/test_html_browser.py opens report.html in headless Chromium",
    "chromium-driver": "tests/test_html_browser.py drives Chromium through selenium (WebDriver)",
    "lava-dispatcher": "tests/test_exports.py runs an exported LAVA job with lava-run",
}


def missing_test_packages() -> list[str]:
    return [p for p in TEST_PACKAGES if p not in installed(list(TEST_PACKAGES))]


def install_command(packages: list[str]) -> str:
    return ("apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
            + " ".join(packages))


def install(packages: list[str], log: object = print) -> bool:
    """Install with apt-get (root only). Returns False when not root (the caller prints the command)."""
    if not packages:
        return True
    if os.geteuid() != 0:
        return False
    assert callable(log)
    log(f"installing Debian packages: {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # a third-party source that cannot be reached makes `update` fail without harming Debian's
    # lists; the install below says plainly if something we need is really missing
    update = subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL)
    if update.returncode != 0:
        log(f"apt-get update exited {update.returncode}; trying the install anyway")
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return True
