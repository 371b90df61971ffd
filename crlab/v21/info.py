"""One line per record, the format of `crctl info` (the two are tested to agree record by record)."""

from __future__ import annotations

from crlab.v21.decoder import Image, Record

# record -> the key fields printed after "OFFSET NAME len=LEN", as (label, field, hex)
KEY_FIELDS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "TREE": (("nr_tasks", "nr_tasks", False),),
    "TASK": (("state", "state", False), ("exit_state", "exit_state", False)),
    "TASK_OBJS": (("files", "files_objref", False), ("mm", "mm_objref", False),
                  ("sighand", "sighand_objref", False), ("signal", "signal_objref", False)),
    "RESTART_BLOCK": (("kind", "kind", False),),
    "OBJREF": (("objtype", "objtype", False), ("objref", "objref", False)),
    "FILE_TABLE": (("nfds", "fdt_nfds", False),),
    "FILE_DESC": (("fd", "fd", False), ("objref", "file_objref", False)),
    "FILE": (("f_type", "f_type", False), ("pos", "f_pos", False)),
    "PIPE_BUF": (("nr_bytes", "nr_bytes", False),),
    "MM": (("map_count", "map_count", False),),
    "VMA": (("vma_type", "vma_type", False), ("start", "vm_start", True), ("end", "vm_end", True)),
    "PGARR": (("nr_pages", "nr_pages", False),),
    "SIGHAND": (("nr", "nr_sigactions", False),),
    "SIGNAL_TASK": (("nr_pending", "nr_pending", False),),
    "SIGPENDING": (("signo", "signo", False),),
}


def info_line(image: Image, record: Record) -> str:
    line = f"{record.offset} {record.name} len={record.length}"
    f = record.fields
    if record.name == "HEADER":
        return (line + f" arch={image.arch} kernel={f['major']}.{f['minor']}.{f['patch']} rev={f['rev']}"
                f" page_shift={f['constants']['page_shift']}")
    for label, name, as_hex in KEY_FIELDS.get(record.name, ()):
        line += f" {label}={f[name]:#x}" if as_hex else f" {label}={f[name]}"
    return line


def info_lines(image: Image) -> list[str]:
    return [info_line(image, r) for r in image.records]
