"""Record tables of the v21 stream, generated per kernel tree from that tree's own uapi header.

Nothing here lists a record layout by hand: the struct layouts and the numbers come from compiling
the tree's `include/uapi/linux/checkpoint*.h` with a target's cross gcc (`crlab.abicheck`), and the
header's naming convention ties them together (CKPT_REC_<NAME> is laid out as struct ckpt_rec_<name>,
or struct ckpt_rec_<family>_<name> on an architecture family that has its own).  What is written
down here are facts about architectures: which family and word size an arch_id means, and which
crlab target's compiler lays out its records.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from crlab.abicheck import DEFAULT_SERIES, DEFAULT_TARGETS, Layout, Struct, series_layouts
from crlab.errors import UserError
from crlab.paths import REPO_ROOT

ARCH_BLOCK = range(201, 300)  # record numbers private to an architecture family


@dataclass(frozen=True)
class ArchFacts:
    family: str  # x86, ppc, arm, s390: selects ckpt_rec_<family>_* structs and the 201.. block
    word_size: int  # bytes of a user-space long (PGARR addresses are native words)
    targets: dict[str, str]  # byte order -> crlab target whose compiler lays out this arch's records


# keyed by the CKPT_ARCH_<name> a tree's header defines (the numbers differ between versions)
ARCH_FACTS: dict[str, ArchFacts] = {
    "X86_32": ArchFacts("x86", 4, {"little": "i386"}),
    "X86_64": ArchFacts("x86", 8, {"little": "x86_64"}),
    "S390X": ArchFacts("s390", 8, {}),
    "PPC32": ArchFacts("ppc", 4, {}),
    "PPC64": ArchFacts("ppc", 8, {"big": "ppc64", "little": "ppc64le"}),
    "ARM": ArchFacts("arm", 4, {"little": "armv7"}),
}


class TableError(UserError):
    pass


@dataclass(frozen=True)
class RecordTable:
    """One tree's records as one target's compiler lays them out."""

    tree: str
    layout: Layout

    def constant(self, name: str) -> int:
        try:
            return self.layout.constants[name]
        except KeyError:
            raise TableError(f"{self.tree}: the header defines no {name}") from None

    def group(self, prefix: str) -> dict[int, str]:
        """number -> name of every constant PREFIX<name> (e.g. CKPT_OBJ_)."""
        out: dict[int, str] = {}
        for name, value in self.layout.constants.items():
            if name.startswith(prefix):
                out.setdefault(value, name.removeprefix(prefix))
        return out

    def record_names(self, family: str) -> dict[int, str]:
        """Record type -> NAME on an architecture family (arch-block numbers only for that family)."""
        out: dict[int, str] = {}
        prefix = family.upper() + "_"
        for name, value in self.layout.constants.items():
            if not name.startswith("CKPT_REC_"):
                continue
            short = name.removeprefix("CKPT_REC_")
            if value in ARCH_BLOCK:
                if short.startswith(prefix):
                    out[value] = short
            else:
                out[value] = short
        return out

    def record_struct(self, name: str, family: str) -> Struct | None:
        lower = name.lower()
        for candidate in (f"ckpt_rec_{family}_{lower}", f"ckpt_rec_{lower}"):
            if candidate in self.layout.structs:
                return self.layout.structs[candidate]
        return None

    def struct(self, name: str) -> Struct:
        try:
            return self.layout.structs[name]
        except KeyError:
            raise TableError(f"{self.tree}: the header has no struct {name}") from None

    def arch(self, arch_id: int) -> tuple[str, ArchFacts]:
        names = self.group("CKPT_ARCH_")
        if arch_id not in names:
            raise TableError(f"{self.tree}: unknown arch_id {arch_id}")
        name = names[arch_id]
        if name not in ARCH_FACTS:
            raise TableError(f"{self.tree}: no facts for arch {name}")
        return name, ARCH_FACTS[name]


def tree_series(tree: str) -> Path:
    """The patch series of a kernel tree defined in kernels/<tree>.yaml."""
    path = REPO_ROOT / "kernels" / f"{tree}.yaml"
    if not path.is_file():
        raise TableError(f"no kernel tree {tree!r} (kernels/{tree}.yaml)")
    patches = (yaml.safe_load(path.read_text()) or {}).get("patches")
    if not isinstance(patches, str):
        raise TableError(f"kernel tree {tree!r} has no patch series carrying a checkpoint header")
    return REPO_ROOT / patches


# the tree whose series ships in this repository
DEFAULT_TREE = "linux-6.1-cr"


@dataclass(frozen=True)
class TreeTables:
    """Every target's table of one tree."""

    tree: str
    series: Path

    def for_target(self, target: str) -> RecordTable:
        if target not in DEFAULT_TARGETS:
            raise TableError(f"{self.tree}: no layout for target {target}")
        layouts = series_layouts(self.series, (target,))  # only the compiler this image needs
        if target not in layouts:
            raise TableError(f"{self.tree}: no layout for target {target}")
        return RecordTable(self.tree, layouts[target])

    def any_target(self) -> RecordTable:
        """For the arch-neutral prologue, read before the arch is known (abi-check keeps it neutral)."""
        return self.for_target(DEFAULT_TARGETS[0])


@cache
def tables_for_tree(tree: str = DEFAULT_TREE) -> TreeTables:
    return TreeTables(tree, tree_series(tree))


def tables_for_series(series: Path, name: str | None = None) -> TreeTables:
    return TreeTables(name or str(series), series)


__all__ = ["ARCH_FACTS", "DEFAULT_SERIES", "DEFAULT_TREE", "RecordTable", "TableError", "TreeTables",
           "tables_for_series", "tables_for_tree"]
