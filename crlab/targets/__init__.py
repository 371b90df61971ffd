"""Per-target facts as data.

Each module in this package defines one ``PROFILE``: everything crlab needs to cross-build a
kernel for the target, give it a userland and boot it under QEMU.  Adding a target means
adding one module here (plus, if it needs one, a Kconfig fragment under kernels/fragments/).
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass, field
from functools import cache


@dataclass(frozen=True)
class TargetProfile:
    name: str
    description: str
    # --- kernel build ---
    arch: str  # the kernel's ARCH=
    cross_compile: str  # CROSS_COMPILE= prefix, e.g. "i686-linux-gnu-"
    toolchain_packages: tuple[str, ...]  # Debian packages giving the cross gcc and its libc headers
    make_target: str  # the image make target: bzImage, zImage, vmlinux
    kernel_image: str  # where the image lands, relative to the build dir
    # Kconfig fragments (paths relative to kernels/fragments/) merged after the kernel's own base
    kconfig_fragments: tuple[str, ...]
    # extra base fragments inside the kernel tree that `make tinyconfig` would add for this arch
    tiny_arch_fragments: tuple[str, ...] = ()
    # --- userland ---
    uname_machine: str = ""  # what `uname -m` prints in the guest
    debian_arch: str | None = None  # None: Debian has no userland for this target; crlab builds it
    # What the target's programs are, checked on every guest program crlab fetches or builds: ELF
    # class, byte order and e_machine (as pyelftools names it, e.g. EM_X86_64)
    elf_bits: int = 0
    elf_endian: str = ""
    elf_machine: str = ""
    # where the target's dynamic loader looks for shared libraries (Debian's multiarch dirs first)
    lib_dirs: tuple[str, ...] = ()
    # `uname -m` of hosts that run the target's programs natively (a fresh build is smoke-run there)
    host_runs_natively: tuple[str, ...] = ()
    # How to get each guest program: "debian" (the distro's binary package) or "source"
    # (cross-built by crlab from Debian's source package, statically).
    busybox_from: str = "debian"
    dropbear_from: str = "debian"
    # --- QEMU ---
    qemu_binary: str = ""
    qemu_package: str = ""
    machine: str = ""
    cpu: str = ""  # always pinned: the default cpu model changes between QEMU versions
    memory_mb: int = 512
    smp: int = 1
    console: str = ""  # the guest's console device, e.g. ttyS0
    nic_device: str = "virtio-net-pci"
    qemu_extra_args: tuple[str, ...] = ()
    kernel_cmdline: str = ""  # extra kernel arguments
    # the command that ends the guest so that QEMU exits (x86 without ACPI halts on poweroff)
    shutdown_command: str = "poweroff -f"
    # seconds to the first shell prompt before the boot counts as hung; None: the run's
    # options.timeouts.boot (a profile or a config override sets it for a slow target)
    boot_timeout: int | None = None
    # C/R engines this target runs; each engine's kernels/fragments/engine/<name>.config is merged into
    # the target's kernel, so one kernel per (tree, target) serves every suite
    engines: tuple[str, ...] = field(default=())

    def field_names(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)]

    def effective_boot_timeout(self, default: int) -> int:
        return self.boot_timeout if self.boot_timeout is not None else default

    def with_overrides(self, overrides: dict[str, object]) -> TargetProfile:
        """A copy with some fields replaced (a config's per-target overrides)."""
        values: dict[str, object] = {}
        for key, value in overrides.items():
            current = getattr(self, key)
            values[key] = tuple(value) if isinstance(current, tuple) and isinstance(value, list) else value
        return dataclasses.replace(self, **values)  # type: ignore[arg-type]


def overridable_fields() -> dict[str, type]:
    """Profile fields a config may override, with the Python type each takes."""
    out: dict[str, type] = {}
    for f in dataclasses.fields(TargetProfile):
        if f.name == "name":
            continue
        annotation = str(f.type)
        if annotation.startswith("tuple"):
            out[f.name] = list
        elif annotation in ("int", "int | None"):
            out[f.name] = int
        else:
            out[f.name] = str
    return out


@cache
def builtin_profiles() -> dict[str, TargetProfile]:
    profiles: dict[str, TargetProfile] = {}
    for module_info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        profile = getattr(module, "PROFILE", None)
        if isinstance(profile, TargetProfile):
            profiles[profile.name] = profile
    return profiles


def get_profile(name: str) -> TargetProfile:
    profiles = builtin_profiles()
    if name not in profiles:
        raise KeyError(f"unknown target {name!r}; built-in targets: {', '.join(sorted(profiles))}")
    return profiles[name]
