"""The v21 record list as a typed tree (header, process tree, tasks, shared objects: mm -> vmas ->
pages, file tables -> files, sighand, signal ...) and as the canonical form the round-trip diff of
`crlab.imagediff` compares.

The grammar follows the v21 stream: a prologue (HEADER, three uts BUFFERs, HEADER_ARCH, optional
CONTAINER block, TREE and its pid BUFFER), then objects introduced by OBJREF records and per-task
records, ended by TAIL (or ERROR and its STRING).  Counts read from the image only bound loops that
consume records or bytes that are already there, so a hostile count ends in a DecodeError.
"""

from __future__ import annotations

import hashlib
from typing import Any

from crlab.imagediff import Rules
from crlab.v21.decoder import DecodeError, Image, Record, decode_struct

Tree = dict[str, Any]


class _Cursor:
    def __init__(self, image: Image) -> None:
        self.image = image
        self.records = image.records
        self.index = 0

    def peek(self) -> Record | None:
        return self.records[self.index] if self.index < len(self.records) else None

    def peek_is(self, *names: str) -> bool:
        rec = self.peek()
        return rec is not None and rec.name in names

    def take(self, *names: str) -> Record:
        rec = self.peek()
        if rec is None:
            raise DecodeError(self.image.size, f"the stream ends where {' or '.join(names)} was expected")
        if rec.name not in names:
            raise DecodeError(rec.offset, f"expected {' or '.join(names)}, found {rec.name}")
        self.index += 1
        return rec


def _text(payload: bytes) -> str:
    return payload.split(b"\0", 1)[0].decode("utf-8", "replace")


def _words(image: Image, data: bytes, count: int, size: int) -> list[int]:
    return [int.from_bytes(data[i * size:(i + 1) * size], image.byteorder) for i in range(count)]


def _need(rec: Record, expected: int, what: str) -> None:
    if len(rec.payload) != expected:
        raise DecodeError(rec.offset, f"{rec.name}: {what} needs {expected} bytes, the record carries "
                                      f"{len(rec.payload)}")


class _Builder:
    def __init__(self, image: Image) -> None:
        self.image = image
        self.cur = _Cursor(image)
        self.table = image.table
        self.objects: dict[int, Tree] = {}
        self.obj_names = self.table.group("CKPT_OBJ_")
        self.file_types = self.table.group("CKPT_FILE_")
        self.vma_types = self.table.group("CKPT_VMA_")

    def build(self) -> Tree:
        cur = self.cur
        img = self.image
        header = cur.take("HEADER")
        uts = [_text(cur.take("BUFFER").payload) for _ in range(3)]
        h = header.fields
        tree: Tree = {
            "tree": img.tree, "arch": img.arch, "target": img.target, "byteorder": img.byteorder,
            "word_size": img.word_size,
            "header": {**{k: v for k, v in h.items() if k not in ("magic", "reserved")},
                       "kernel": f"{h['major']}.{h['minor']}.{h['patch']}",
                       "uts": dict(zip(("release", "version", "machine"), uts, strict=True))},
            "header_arch": cur.take("HEADER_ARCH").fields,
        }
        if cur.peek_is("CONTAINER"):
            tree["container"] = {**cur.take("CONTAINER").fields, "lsm": _text(cur.take("BUFFER").payload),
                                 "lsm_info": cur.take("LSM_INFO").fields}
        tree_rec = cur.take("TREE")
        entry = self.table.struct("ckpt_pid_entry")
        pids_rec = cur.take("BUFFER")
        nr_tasks = tree_rec.fields["nr_tasks"]
        _need(pids_rec, nr_tasks * entry.size, f"TREE's {nr_tasks} pid entries")
        tree["pids"] = [decode_struct(self.table, entry, pids_rec.payload, i * entry.size, img.byteorder,
                                      skip_header=False) for i in range(nr_tasks)]
        tasks: list[Tree] = []
        while True:
            rec = cur.peek()
            if rec is None:
                raise DecodeError(img.size, "the stream ends inside the body")
            if rec.name == "OBJREF":
                self.object()
            elif rec.name == "TASK":
                if len(tasks) >= nr_tasks:
                    raise DecodeError(rec.offset, f"more TASK records than the TREE's {nr_tasks}")
                tasks.append(self.task(tree["pids"][len(tasks)]))
            elif rec.name == "TAIL":
                cur.take("TAIL")
                tree["end"] = "TAIL"
                break
            elif rec.name == "ERROR":
                cur.take("ERROR")
                message = cur.take("STRING").payload
                tree["end"] = "ERROR"
                tree["error"] = message.lstrip(b"\0").split(b"\0", 1)[0].decode("utf-8", "replace")
                break
            else:
                raise DecodeError(rec.offset, f"unexpected {rec.name} record between tasks and objects")
        tree["tasks"] = tasks
        tree["objects"] = self.objects
        return tree

    # ---------------------------------------------------------------- shared objects

    def object(self) -> None:
        ref = self.cur.take("OBJREF")
        objref = ref.fields["objref"]
        kind = self.obj_names.get(ref.fields["objtype"])
        if objref in self.objects:
            raise DecodeError(ref.offset, f"object {objref} introduced twice")
        obj: Tree = {"objref": objref, "kind": kind}
        self.objects[objref] = obj  # before its body: a VMA may refer to a file introduced inside the mm
        if kind == "FILE_TABLE":
            self.file_table(obj)
        elif kind == "FILE":
            self.file(obj)
        elif kind == "MM":
            self.mm(obj)
        elif kind == "SIGHAND":
            self.sighand(obj)
        elif kind == "SIGNAL":
            obj.update(self.cur.take("SIGNAL").fields)
        elif kind == "CRED":
            obj.update(self.cur.take("CRED").fields)
        else:
            raise DecodeError(ref.offset, f"objects of type {kind or ref.fields['objtype']} are not supported "
                                          "by this decoder")

    def file_table(self, obj: Tree) -> None:
        table = self.cur.take("FILE_TABLE")
        obj.update(table.fields)
        fds = []
        for _ in range(max(0, table.fields["fdt_nfds"])):
            while self.cur.peek_is("OBJREF"):
                self.object()
            fds.append(self.cur.take("FILE_DESC").fields)
        obj["fds"] = fds

    def file(self, obj: Tree) -> None:
        rec = self.cur.take("FILE")
        obj.update(rec.fields)
        ftype = self.file_types.get(rec.fields["f_type"], str(rec.fields["f_type"]))
        obj["f_type"] = ftype
        if ftype in ("PIPE", "FIFO"):
            variant = self.table.struct("ckpt_file_pipe")
            base = rec.length - len(rec.payload)
            if rec.length < variant.size:
                raise DecodeError(rec.offset, f"{ftype} FILE record of {rec.length} bytes is shorter than "
                                              f"ckpt_file_pipe ({variant.size})")
            whole = bytes(base) + rec.payload  # offsets of the variant are from the record's start
            extra = decode_struct(self.table, variant, whole, 0, self.image.byteorder, skip_header=False)
            obj.update({k: v for k, v in extra.items() if k != "common"})
            if ftype == "FIFO":  # a FIFO is also named by its path (before the pipe's data, if new)
                obj["path"] = _text(self.cur.take("FILE_NAME").payload)
            if self.cur.peek_is("PIPE_BUF"):  # the first end met of a pipe brings its bytes
                pipe_buf = self.cur.take("PIPE_BUF")
                data = self.cur.take("BUFFER")
                _need(data, pipe_buf.fields["nr_bytes"], "the pipe's buffered data")
                # the pipe's other fields (pipe_size in trees whose header has it, since 0008)
                obj.update({k: v for k, v in pipe_buf.fields.items() if k not in ("nr_bytes", "reserved")})
                obj["pipe_data_sha256"] = hashlib.sha256(data.payload).hexdigest()
                obj["pipe_bytes"] = len(data.payload)
        elif ftype == "GENERIC":
            obj["path"] = _text(self.cur.take("FILE_NAME").payload)

    def mm(self, obj: Tree) -> None:
        img = self.image
        rec = self.cur.take("MM")
        obj.update(rec.fields)
        auxv = self.cur.take("BUFFER")
        _need(auxv, rec.fields["nr_auxv"] * 8, f"{rec.fields['nr_auxv']} auxv words")
        obj["auxv"] = _words(img, auxv.payload, rec.fields["nr_auxv"], 8)
        vmas = []
        for _ in range(rec.fields["map_count"]):
            while self.cur.peek_is("OBJREF"):
                self.object()
            vmas.append(self.vma())
        obj["vmas"] = vmas
        if self.cur.peek_is("MM_CONTEXT"):
            obj["context"] = self.cur.take("MM_CONTEXT").fields
            if self.cur.peek_is("X86_MM_CONTEXT_LDT"):
                obj["ldt_bytes"] = len(self.cur.take("X86_MM_CONTEXT_LDT").payload)

    def vma(self) -> Tree:
        img = self.image
        rec = self.cur.take("VMA")
        vma: Tree = dict(rec.fields)
        vma["vma_type"] = self.vma_types.get(rec.fields["vma_type"], str(rec.fields["vma_type"]))
        if vma["vma_type"] == "FILE":
            target = self.objects.get(rec.fields["vma_objref"])
            if target is None or target.get("kind") != "FILE":
                raise DecodeError(rec.offset, f"VMA maps object {rec.fields['vma_objref']}, which is not a FILE "
                                              "introduced before it")
        pages: dict[str, str] = {}
        page = img.page_size
        while True:
            pgarr = self.cur.take("PGARR")
            nr = pgarr.fields["nr_pages"]
            if nr == 0:
                break
            data = self.cur.take("BUFFER")
            _need(data, nr * (img.word_size + page), f"{nr} page addresses and pages")
            addrs = _words(img, data.payload, nr, img.word_size)
            base = nr * img.word_size
            for i, addr in enumerate(addrs):
                if not rec.fields["vm_start"] <= addr < rec.fields["vm_end"]:
                    raise DecodeError(data.offset, f"page address {addr:#x} outside its VMA "
                                                   f"{rec.fields['vm_start']:#x}-{rec.fields['vm_end']:#x}")
                content = data.payload[base + i * page:base + (i + 1) * page]
                pages[f"{addr:#x}"] = hashlib.sha256(content).hexdigest()[:16]
        vma["pages"] = pages
        return vma

    def sighand(self, obj: Tree) -> None:
        rec = self.cur.take("SIGHAND")
        action = self.table.struct("ckpt_sigaction")
        n = rec.fields["nr_sigactions"]
        _need(rec, n * action.size, f"{n} sigactions")
        obj["actions"] = [decode_struct(self.table, action, rec.payload, i * action.size, self.image.byteorder,
                                        skip_header=False) for i in range(n)]

    # ---------------------------------------------------------------- tasks

    def task(self, pids: Tree) -> Tree:
        cur = self.cur
        rec = cur.take("TASK")
        task: Tree = {"pids": pids, "task": rec.fields, "comm": _text(cur.take("STRING").payload)}
        if rec.fields["exit_state"]:
            return task  # a zombie: nothing else was saved
        while cur.peek_is("OBJREF"):
            self.object()
        task["objs"] = cur.take("TASK_OBJS").fields
        thread = cur.take("THREAD")
        task["thread"] = dict(thread.fields)
        if self.image.family == "x86":
            _need(thread, thread.fields["ntls"] * thread.fields["tls_entry_size"], "the TLS entries")
            task["thread"]["tls"] = thread.payload.hex()
        task["restart_block"] = cur.take("RESTART_BLOCK").fields
        task["cpu"] = cur.take("CPU").fields
        if cur.peek_is("X86_CPU_FPU"):
            fpu = cur.take("X86_CPU_FPU")
            _need(fpu, fpu.fields["xstate_size"], "the xstate")
            task["fpu"] = {**fpu.fields, "xstate_sha256": hashlib.sha256(fpu.payload).hexdigest()}
        sig = cur.take("SIGNAL_TASK")
        task["signal_task"] = sig.fields
        task["pending"] = [cur.take("SIGPENDING").fields for _ in range(sig.fields["nr_pending"])]
        return task


def build_tree(image: Image) -> Tree:
    """The typed tree of a decoded record list."""
    return _Builder(image).build()


# ------------------------------------------------------------------------------ canonical form

# What changes between two checkpoints of the same state and means nothing (see crlab.imagediff).
RULES = Rules(
    drop_paths=(
        "header.img/time",  # when the checkpoint was taken
        "task-*/cpu/*", "task-*/fpu/*",  # a task stopped at another instruction; the tests check their registers
        "task-*/restart_block/arg1",  # the time left of a sleep
        "*-obj*.img/it_*_value",  # the time left on an itimer (intervals are kept)
    ),
    pid_keys=("pid", "ppid", "tgid", "pgid", "sid"),
    pid_file="pstree.img",
    keyed_lists=(("vmas", "vm_start"),),
)


def canonical(tree: Tree) -> Tree:
    """The form `crlab.imagediff.normalise` takes: {"engine", "files": {name: content}}, one "file"
    per part of the image, pids where imagediff's rules find them, page contents as hashes."""
    files: dict[str, Any] = {
        "header.img": {**tree["header"], "arch": tree["arch"], "byteorder": tree["byteorder"],
                       "header_arch": tree["header_arch"]},
        "pstree.img": {"entries": [{"pid": p["vpid"], "ppid": p["vppid"], "tgid": p["vtgid"], "pgid": p["vpgid"],
                                    "sid": p["vsid"], "depth": p["depth"]} for p in tree["pids"]]},
        "end.img": {"end": tree["end"], "error": tree.get("error", "")},
    }
    for task in tree["tasks"]:
        body = {k: v for k, v in task.items() if k != "pids"}
        files[f"task-{task['pids']['vpid']}.img"] = body
    for objref, obj in sorted(tree["objects"].items()):
        files[f"{str(obj['kind']).lower()}-obj{objref}.img"] = obj
    return {"engine": "linux-cr", "files": files}
