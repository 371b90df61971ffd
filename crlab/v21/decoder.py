"""The v21 record stream: bytes -> a list of records, each decoded by its tree's generated table.

Byte order comes from the first record (its type is HEADER in exactly one byte order); the arch
from the HEADER's arch_id (always little-endian); the record layouts from the compiler of the crlab
target of that arch and byte order (`tables.py`).  Every length is checked against the bytes that
remain before anything is sliced, so hostile input can neither crash the decoder with anything
but DecodeError nor make it allocate more than the input's size.
"""

from __future__ import annotations

import struct as pystruct
from dataclasses import dataclass, field
from typing import Any, Literal

from crlab.abicheck import Struct
from crlab.v21.tables import RecordTable, TableError, TreeTables

PREHEADER = 8  # u32 type, u32 len
ByteOrder = Literal["little", "big"]
_SCALAR = {"u8": "B", "s8": "b", "u16": "H", "s16": "h", "u32": "I", "s32": "i", "u64": "Q", "s64": "q"}


class DecodeError(Exception):
    """A corrupt, truncated or foreign image; `offset` is where in the stream it shows."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(f"offset {offset}: {message}")
        self.offset = offset
        self.message = message


@dataclass
class Record:
    offset: int
    type: int
    name: str
    length: int
    fields: dict[str, Any]  # the record's struct, pre-header left out
    payload: bytes  # what follows the struct inside the record (BUFFER data, TLS, xstate ...)


@dataclass
class Image:
    tree: str
    arch: str  # CKPT_ARCH_<arch>
    family: str
    word_size: int
    byteorder: ByteOrder
    target: str  # the crlab target whose compiler laid out the records
    table: RecordTable
    size: int
    records: list[Record] = field(default_factory=list)

    @property
    def page_size(self) -> int:
        header = self.records[0].fields
        return 1 << int(header["constants"]["page_shift"])


def decode_struct(table: RecordTable, struct: Struct, data: bytes, base: int, order: str,
                  skip_header: bool = True) -> dict[str, Any]:
    """The fields of `struct` laid at data[base:]; the caller has checked base + size <= len(data)."""
    out: dict[str, Any] = {}
    prefix = "<" if order == "little" else ">"
    for f in struct.fields:
        if skip_header and f.name == "h" and f.type == "struct ckpt_rec":
            continue
        at = base + f.offset
        if f.base.startswith("struct "):
            inner = table.struct(f.base.removeprefix("struct "))
            if f.count == 1 and "[" not in f.type:
                out[f.name] = decode_struct(table, inner, data, at, order, skip_header=False)
            else:
                out[f.name] = [decode_struct(table, inner, data, at + i * inner.size, order, skip_header=False)
                               for i in range(f.count)]
        elif f.base in _SCALAR:
            code = _SCALAR[f.base]
            if "[" in f.type:
                out[f.name] = list(pystruct.unpack_from(f"{prefix}{f.count}{code}", data, at))
            else:
                out[f.name] = pystruct.unpack_from(prefix + code, data, at)[0]
        else:
            raise TableError(f"struct {struct.name}: field {f.name} has a type the decoder cannot read ({f.type})")
    return out


def detect_byteorder(data: bytes, header_type: int) -> ByteOrder:
    if len(data) < PREHEADER:
        raise DecodeError(0, f"{len(data)} bytes: too short for a record (a record starts with 8 bytes)")
    if int.from_bytes(data[:4], "little") == header_type:
        return "little"
    if int.from_bytes(data[:4], "big") == header_type:
        return "big"
    raise DecodeError(0, f"not a v21 image: the first record's type is {data[:4].hex()} "
                         f"(a HEADER, type {header_type}, in either byte order)")


def read_records(data: bytes, tables: TreeTables) -> Image:
    """Split and decode every record of a whole image."""
    neutral = tables.any_target()
    header_type = neutral.constant("CKPT_REC_HEADER")
    order = detect_byteorder(data, header_type)
    header_struct = neutral.struct("ckpt_rec_header")
    if len(data) < header_struct.size:
        raise DecodeError(len(data), f"truncated HEADER: {len(data)} of {header_struct.size} bytes")
    arch_off = header_struct.field("arch_id").offset
    arch_id = int.from_bytes(data[arch_off:arch_off + 2], "little")
    try:
        arch, facts = neutral.arch(arch_id)
    except TableError as exc:
        raise DecodeError(arch_off, str(exc)) from None
    target = facts.targets.get(order)
    if target is None:
        raise DecodeError(arch_off, f"no crlab target lays out {arch} records in {order}-endian byte order")
    table = tables.for_target(target)
    image = Image(tables.tree, arch, facts.family, facts.word_size, order, target, table, len(data))
    names = table.record_names(facts.family)
    head_magic = table.constant("CKPT_MAGIC_HEAD")
    tail_magic = table.constant("CKPT_MAGIC_TAIL")
    rev = table.constant("CKPT_FORMAT_REV")
    ended = ""
    off = 0
    size = len(data)
    while off < size:
        if ended == "TAIL":
            raise DecodeError(off, f"{size - off} bytes after the TAIL record")
        if size - off < PREHEADER:
            raise DecodeError(off, f"truncated record: {size - off} bytes left, a record needs at least 8")
        rtype = int.from_bytes(data[off:off + 4], order)
        length = int.from_bytes(data[off + 4:off + 8], order)
        if length < PREHEADER:
            raise DecodeError(off, f"record of type {rtype} has length {length} (less than its 8-byte pre-header)")
        if length > size - off:
            raise DecodeError(off, f"record of type {rtype} claims {length} bytes, only {size - off} remain "
                                   "(truncated image?)")
        if rtype not in names:
            raise DecodeError(off, f"unknown record type {rtype} for {arch}")
        name = names[rtype]
        if not image.records and name != "HEADER":
            raise DecodeError(off, "the first record is not a HEADER")
        struct = table.record_struct(name, facts.family)
        fields: dict[str, Any] = {}
        body = PREHEADER
        if struct is not None:
            if length < struct.size:
                raise DecodeError(off, f"{name} record of {length} bytes is shorter than its struct "
                                       f"{struct.name} ({struct.size} bytes)")
            fields = decode_struct(table, struct, data, off, order)
            body = struct.size
        record = Record(off, rtype, name, length, fields, bytes(data[off + body:off + length]))
        if name == "HEADER":
            if image.records:
                raise DecodeError(off, "a second HEADER")
            fields["arch_id"] = arch_id  # little-endian whatever the stream's order
            if fields["magic"] != head_magic:
                raise DecodeError(off + header_struct.field("magic").offset,
                                  f"bad head magic {fields['magic']:#018x} (expected {head_magic:#018x})")
            if fields["rev"] != rev:
                raise DecodeError(off + header_struct.field("rev").offset,
                                  f"format revision {fields['rev']}, the {tables.tree} header defines {rev}")
            if not 1 <= fields["constants"]["page_shift"] <= 24:
                raise DecodeError(off, f"implausible page_shift {fields['constants']['page_shift']}")
        elif name == "TAIL":
            if fields["magic"] != tail_magic:
                raise DecodeError(off, f"bad tail magic {fields['magic']:#018x} (expected {tail_magic:#018x})")
            ended = "TAIL"
        elif name == "ERROR":
            ended = "ERROR"
        image.records.append(record)
        off += length
    if not ended:
        raise DecodeError(size, "the stream ends without a TAIL or ERROR record (truncated image?)")
    return image
