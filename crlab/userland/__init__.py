"""Guest programs for a target, cached by content.

    elf          ELF headers (pyelftools), checked against the target profile's elf_* fields
    debian       apt look-ups and downloads; packages_with_libraries(): Debian packages plus their
                 shared-library closure, as a tree to merge into the guest's root
    sourcebuild  static cross builds: static_artifact() is the shape of each; busybox and dropbear
                 from Debian's sources, build_static_programs() for C files of our own
    programs     busybox() and dropbear(), from Debian or from source as the profile says

Adding an artifact of either kind is one function: a recipe for static_artifact(), or a call of
packages_with_libraries() with the package names.
"""

from crlab.userland.common import UserlandError
from crlab.userland.debian import DEFAULT_PRUNE, Apt, check_tree, packages_with_libraries, resolve_in_root
from crlab.userland.elf import ElfInfo, elf_info, elf_needed, expected_elf
from crlab.userland.programs import busybox, describe, dropbear
from crlab.userland.sourcebuild import build_static_programs, static_artifact

__all__ = [
    "DEFAULT_PRUNE",
    "Apt",
    "ElfInfo",
    "UserlandError",
    "build_static_programs",
    "busybox",
    "check_tree",
    "describe",
    "dropbear",
    "elf_info",
    "elf_needed",
    "expected_elf",
    "packages_with_libraries",
    "resolve_in_root",
    "static_artifact",
]
