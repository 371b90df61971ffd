"""ELF headers of guest programs (read with pyelftools) checked against the target's profile."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.segments import InterpSegment

from crlab.targets import TargetProfile
from crlab.userland.common import UserlandError


class ElfInfo(NamedTuple):
    bits: int  # 32 or 64
    endian: str  # "little" or "big"
    machine: str  # e_machine as pyelftools names it: "EM_X86_64", "EM_386", "EM_ARM", "EM_PPC64"
    interp: str | None  # the dynamic loader named by PT_INTERP
    is_static: bool  # no loader and no shared-library dependencies (static or static-pie)


def _read(path: str | os.PathLike[str]) -> tuple[ElfInfo, list[str]]:
    try:
        with open(path, "rb") as fh:
            elf = ELFFile(fh)
            interp: str | None = None
            needed: list[str] = []
            for segment in elf.iter_segments():
                if isinstance(segment, InterpSegment):
                    interp = segment.get_interp_name()
                elif isinstance(segment, DynamicSegment):
                    needed = [tag.needed for tag in segment.iter_tags()  # type: ignore[attr-defined]
                              if tag.entry.d_tag == "DT_NEEDED"]
            info = ElfInfo(elf.elfclass, "little" if elf.little_endian else "big", str(elf["e_machine"]), interp,
                           interp is None and not needed)
    except ELFError as exc:
        raise ValueError(f"not a readable ELF file: {path} ({exc})") from None
    return info, needed


def elf_info(path: str | os.PathLike[str]) -> ElfInfo:
    """(bits, endian, machine, interp, is_static) of an ELF file; ValueError if it is not one."""
    return _read(path)[0]


def elf_needed(path: str | os.PathLike[str]) -> list[str]:
    """The DT_NEEDED shared libraries of an ELF file, in order."""
    return _read(path)[1]


def is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


def expected_elf(profile: TargetProfile) -> tuple[int, str, str] | None:
    """(bits, endian, machine) that the target's programs must have; None if the profile does not say."""
    if not profile.elf_machine:
        return None
    return profile.elf_bits, profile.elf_endian, profile.elf_machine


def check_elf(path: Path, profile: TargetProfile, static: bool, what: str) -> ElfInfo:
    """The ELF header of `path`, which must fit the target (and be static if asked)."""
    try:
        info = elf_info(path)
    except (OSError, ValueError) as exc:
        raise UserlandError(f"{what}: {path} is not a usable ELF file ({exc})") from None
    want = expected_elf(profile)
    if want is not None and (info.bits, info.endian, info.machine) != want:
        raise UserlandError(f"{what}: {path} is {info.bits}-bit {info.endian}-endian {info.machine}, "
                            f"expected {want[0]}-bit {want[1]}-endian {want[2]}")
    if static and not info.is_static:
        raise UserlandError(f"{what}: {path} is not static (loader {info.interp})")
    return info


def runs_on_this_host(profile: TargetProfile) -> bool:
    return os.uname().machine in profile.host_runs_natively
