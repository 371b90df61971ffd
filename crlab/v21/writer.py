"""A small v21 stream writer, from the same generated tables as the decoder.

No kernel writes v21 images yet (the series so far defines the format and reserves the system
calls), so the decoder and `crctl info` are tested on images this writer makes: one per target, in
that target's byte order and word size, with every record the x86 part of the series will write.
"""

from __future__ import annotations

import struct as pystruct
from typing import Any

from crlab.abicheck import Struct
from crlab.v21.decoder import PREHEADER, ByteOrder
from crlab.v21.tables import ARCH_FACTS, RecordTable, TreeTables

_SCALAR = {"u8": "B", "s8": "b", "u16": "H", "s16": "h", "u32": "I", "s32": "i", "u64": "Q", "s64": "q"}


def encode_struct(table: RecordTable, struct: Struct, values: dict[str, Any], order: str) -> bytearray:
    """The struct's bytes, fields taken from `values` (missing ones zero; a field named h is skipped)."""
    out = bytearray(struct.size)
    prefix = "<" if order == "little" else ">"
    for f in struct.fields:
        if f.name not in values:
            continue
        value = values[f.name]
        if f.base.startswith("struct "):
            inner = table.struct(f.base.removeprefix("struct "))
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                at = f.offset + i * inner.size
                out[at:at + inner.size] = encode_struct(table, inner, item, order)
        elif "[" in f.type:
            pystruct.pack_into(f"{prefix}{f.count}{_SCALAR[f.base]}", out, f.offset, *value)
        else:
            pystruct.pack_into(prefix + _SCALAR[f.base], out, f.offset, value)
    return out


class StreamWriter:
    def __init__(self, tables: TreeTables, target: str) -> None:
        self.table = tables.for_target(target)
        self.target = target
        self.arch, facts = next((name, facts) for name, facts in ARCH_FACTS.items() if target in facts.targets.values())
        self.order: ByteOrder = "big" if facts.targets.get("big") == target else "little"
        self.family = facts.family
        self.word_size = facts.word_size
        self.arch_id = self.table.constant(f"CKPT_ARCH_{self.arch}")
        self.out = bytearray()

    def record(self, name: str, fields: dict[str, Any] | None = None, payload: bytes = b"") -> None:
        rtype = self.table.constant(f"CKPT_REC_{name}")
        struct = self.table.record_struct(name, self.family)
        body = encode_struct(self.table, struct, fields or {}, self.order) if struct else bytearray(PREHEADER)
        if name == "HEADER":
            at = struct.field("arch_id").offset if struct else 0
            body[at:at + 2] = self.arch_id.to_bytes(2, "little")  # little-endian in every stream
        body += payload
        body[0:4] = rtype.to_bytes(4, self.order)
        body[4:8] = len(body).to_bytes(4, self.order)
        self.out += body

    def objref(self, kind: str, objref: int) -> None:
        self.record("OBJREF", {"objtype": self.table.constant(f"CKPT_OBJ_{kind}"), "objref": objref})

    def words(self, values: list[int], size: int) -> bytes:
        return b"".join(v.to_bytes(size, self.order) for v in values)

    def struct_bytes(self, name: str, values: dict[str, Any]) -> bytes:
        return bytes(encode_struct(self.table, self.table.struct(name), values, self.order))


PAGE_SHIFT = 12


def sample_image(tables: TreeTables, target: str, *, error: bool = False, tasks: int = 2) -> bytes:
    """A complete image of `tasks` tasks sharing a file table, an mm and signal handling; with
    `error`, a checkpoint that failed after the first task."""
    w = StreamWriter(tables, target)
    c = w.table.constant
    ws = w.word_size
    low = 0x10000 if ws == 4 else 0x555555554000
    w.record("HEADER", {"magic": c("CKPT_MAGIC_HEAD"), "major": 6, "minor": 1, "patch": 192,
                        "rev": c("CKPT_FORMAT_REV"), "time": 1_790_000_000, "uflags": 0,
                        "constants": {"task_comm_len": 16, "uts_len": 65, "nsig": 64, "rlim_nlimits": 16,
                                      "page_shift": PAGE_SHIFT, "word_size": ws, "tty_ncc": 19}})
    for text in ("6.1.192", "#1 SMP PREEMPT_DYNAMIC crlab", {"i386": "i686", "armv7": "armv7l"}.get(target, target)):
        w.record("BUFFER", payload=text.encode().ljust(65, b"\0"))
    arch_fields: dict[str, Any] = {"x86": {"has_fxsr": 1, "has_xsave": 0, "xstate_size": 512, "xfeatures": 3},
                                   "arm": {"cpu_architecture": 7, "mmu": 1, "aeabi": 1},
                                   "ppc": {"what": 0}}[w.family]
    w.record("HEADER_ARCH", arch_fields)
    w.record("TREE", {"nr_tasks": tasks})
    pid_entries = [{"vpid": 100 + i, "vppid": 1 if i == 0 else 100, "vtgid": 100 + i, "vpgid": 100, "vsid": 100,
                    "depth": 0} for i in range(tasks)]
    w.record("BUFFER", payload=b"".join(w.struct_bytes("ckpt_pid_entry", p) for p in pid_entries))
    for i in range(tasks):
        w.record("TASK", {"state": 4, "exit_signal": 17, "personality": 0,
                          "set_child_tid": 0, "clear_child_tid": low + 0x2000})
        w.record("STRING", payload=f"task{i}\0".encode())
        if i == 0:
            # the shared objects, introduced where the first task refers to them
            w.objref("FILE_TABLE", 1)
            w.record("FILE_TABLE", {"fdt_nfds": 3})
            w.objref("FILE", 2)
            w.record("FILE", {"f_type": c("CKPT_FILE_GENERIC"), "f_mode": 0x1d, "f_flags": 0o2, "f_pos": 1234})
            w.record("FILE_NAME", payload=b"/tmp/counter.log\0")
            w.record("FILE_DESC", {"fd": 0, "file_objref": 2})
            w.objref("FILE", 3)
            pipe_end = w.struct_bytes("ckpt_file_pipe", {"pipe_objref": 4})
            w.record("FILE", {"f_type": c("CKPT_FILE_PIPE"), "f_mode": 0x1d},
                     payload=pipe_end[w.table.struct("ckpt_rec_file").size:])
            w.record("PIPE_BUF", {"nr_bytes": 5})
            w.record("BUFFER", payload=b"hello")
            w.record("FILE_DESC", {"fd": 1, "file_objref": 3})
            w.record("FILE_DESC", {"fd": 2, "file_objref": 2, "fd_cloexec": 1})
            w.objref("MM", 5)
            w.record("MM", {"map_count": 3, "start_code": low, "end_code": low + 0x1000, "start_stack": low + 0x8000,
                            "brk": low + 0x5000, "start_brk": low + 0x5000, "nr_auxv": 4})
            w.record("BUFFER", payload=w.words([6, 4096, 0, 0], 8))
            w.objref("FILE", 6)
            w.record("FILE", {"f_type": c("CKPT_FILE_GENERIC"), "f_mode": 0x1d})
            w.record("FILE_NAME", payload=b"/bin/counter\0")
            w.record("VMA", {"vma_type": c("CKPT_VMA_FILE"), "vma_objref": 6, "vm_start": low,
                             "vm_end": low + 0x1000, "vm_flags": 0x875, "vm_page_prot": 0x25})
            w.record("PGARR", {"nr_pages": 0})
            w.record("VMA", {"vma_type": c("CKPT_VMA_ANON"), "vm_start": low + 0x4000, "vm_end": low + 0x6000,
                             "vm_flags": 0x100073})
            page = 1 << PAGE_SHIFT
            w.record("PGARR", {"nr_pages": 2})
            w.record("BUFFER", payload=w.words([low + 0x4000, low + 0x5000], ws) + b"\x01" * page + b"\x02" * page)
            w.record("PGARR", {"nr_pages": 0})
            w.record("VMA", {"vma_type": c("CKPT_VMA_VDSO"), "vm_start": low + 0x7000, "vm_end": low + 0x8000})
            w.record("PGARR", {"nr_pages": 0})
            if w.family in ("x86", "arm"):
                w.record("MM_CONTEXT", {"vdso": low + 0x7000} if w.family == "x86" else {"end_brk": low + 0x5000})
            w.objref("SIGHAND", 7)
            w.record("SIGHAND", {"nr_sigactions": 2},
                     payload=w.struct_bytes("ckpt_sigaction", {"sa_handler": low + 0x100, "sa_mask": 1 << 9})
                     + w.struct_bytes("ckpt_sigaction", {"sa_handler": 1}))
            w.objref("SIGNAL", 8)
            w.record("SIGNAL", {"rlim": [{"rlim_cur": 8 << 20, "rlim_max": 2**64 - 1}] * 16, "it_real_value": 7})
        w.record("TASK_OBJS", {"files_objref": 1, "mm_objref": 5, "sighand_objref": 7, "signal_objref": 8})
        if w.family == "x86":
            w.record("THREAD", {"ntls": 1, "tls_entry_size": 8}, payload=bytes(range(8)))
        else:
            w.record("THREAD", {"tp_value": 0x7F000000} if w.family == "arm" else {}, payload=b"" if w.family ==
                     "arm" else bytes(16))
        w.record("RESTART_BLOCK", {"kind": c("CKPT_RESTART_BLOCK_HRTIMER_NANOSLEEP"), "arg0": 1,
                                   "arg1": 7_000_000_000})
        if w.family == "x86":
            w.record("CPU", {"ax": 2**64 - 4, "ip": low + 0x123, "sp": low + 0x7ff0, "cs": 0x33, "used_math": 1})
            w.record("X86_CPU_FPU", {"xstate_size": 512}, payload=bytes(512))
        elif w.family == "arm":
            w.record("CPU", {"uregs": list(range(18))})
        else:
            w.record("CPU", payload=bytes(64))
        w.record("SIGNAL_TASK", {"blocked": 1 << 1, "nr_pending": 1})
        w.record("SIGPENDING", {"signo": 10, "code": 0, "pid": 1, "uid": 0})
        if error and i == 0:
            w.record("ERROR")
            w.record("STRING", payload=b"\0[err -16][pos 4242]checkpoint: a file lock is held\0")
            return bytes(w.out)
    w.record("TAIL", {"magic": c("CKPT_MAGIC_TAIL")})
    return bytes(w.out)
