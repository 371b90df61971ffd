"""The v21 checkpoint image stream (crlab's linux-cr series): tables generated per kernel tree from
its uapi header, a decoder to a record list and a typed tree, and the canonical form the round-trip
diff compares."""

from __future__ import annotations

from pathlib import Path

from crlab.v21.decoder import DecodeError, Image, Record, read_records
from crlab.v21.tables import DEFAULT_TREE, TreeTables, tables_for_series, tables_for_tree
from crlab.v21.tree import RULES, Tree, build_tree, canonical


def decode(data: bytes, tables: TreeTables | None = None) -> tuple[Image, Tree]:
    """Records and typed tree of a whole image (default: the tree whose series ships with crlab)."""
    image = read_records(data, tables or tables_for_tree(DEFAULT_TREE))
    return image, build_tree(image)


def decode_file(path: Path, tables: TreeTables | None = None) -> tuple[Image, Tree]:
    try:
        return decode(path.read_bytes(), tables)
    except DecodeError as exc:
        raise DecodeError(exc.offset, f"{path}: {exc.message}") from None


__all__ = ["RULES", "DecodeError", "Image", "Record", "Tree", "build_tree", "canonical", "decode", "decode_file",
           "read_records", "tables_for_series", "tables_for_tree"]
