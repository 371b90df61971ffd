"""Decode a CRIU image directory into one JSON document, with Debian's pycriu (package criu).

Run by crlab under Debian's own python3 (where pycriu and its protobuf live), not in crlab's
virtualenv:  python3 crit_decode.py IMAGE_DIR  ->  JSON on stdout, exit 0;  exit 3 with
{"error": "FILE: offset N: what"} when an image is corrupt, truncated or not a CRIU image.

Page contents (pages-*.img) are raw memory: they are summarised by size and sha256 per page run
(matched to the pagemap), which is what a comparison needs and what keeps decoding fast.
"""

import hashlib
import json
import os
import struct
import sys


class Truncated(Exception):
    pass


class _Reader:
    """A file wrapper that notices short reads (truncation) and knows where it is."""

    def __init__(self, fh, size):
        self.fh = fh
        self.size = size

    def read(self, n=-1):
        start = self.fh.tell()
        data = self.fh.read(n)
        if n is not None and n > 0 and len(data) < n and not (len(data) == 0 and n == 4):
            raise Truncated(f"wanted {n} bytes at offset {start}, the file ends at {self.size}")
        return data

    def tell(self):
        return self.fh.tell()

    def seek(self, *args):
        return self.fh.seek(*args)


def _load_ipc_shm(reader, images):
    """IPCNS_SHM entries, as CRIU 3.17 writes them: the segment's bytes follow an entry inline unless
    it says in_pagemaps (then they are in a pagemap-shm/pages pair), which pycriu 3.17 does not know."""
    from pycriu.images import pb, pb2dict

    entries = []
    while True:
        head = reader.read(4)
        if not head:
            return entries
        (length,) = struct.unpack("<I" if sys.byteorder == "little" else ">I", head)
        entry = pb.ipc_shm_entry()
        entry.ParseFromString(reader.read(length))
        decoded = pb2dict.pb2dict(entry)
        if not entry.in_pagemaps and entry.size:
            data = reader.read((entry.size + 3) & ~3)
            decoded["data_sha256"] = hashlib.sha256(data[: entry.size]).hexdigest()
        entries.append(decoded)


def _load(path, images):
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        reader = _Reader(fh, size)
        try:
            if os.path.basename(path).startswith("ipcns-shm-"):
                magic = reader.read(8)
                if len(magic) != 8:
                    raise Truncated(f"wanted 8 bytes of magic at offset 0, the file ends at {size}")
                image = {"magic": "IPCNS_SHM", "entries": _load_ipc_shm(reader, images)}
            else:
                image = images.load(reader, pretty=False)
        except images.MagicException as exc:
            raise ValueError(f"offset 0: not a CRIU image (unknown magic 0x{exc.magic & 0xFFFFFFFF:08x})") from None
        except Truncated as exc:
            raise ValueError(f"truncated: {exc}") from None
        except Exception as exc:  # protobuf DecodeError, struct.error, bad extras
            raise ValueError(f"offset {reader.tell()}: {type(exc).__name__}: {exc}") from None
        if reader.tell() != size:
            raise ValueError(f"offset {reader.tell()}: {size - reader.tell()} trailing bytes after the last entry")
    return image


PE_PRESENT = 1 << 2  # pagemap flag: the run's data is in the pages image


def _present(entry):
    if "flags" in entry:
        return bool(entry["flags"] & PE_PRESENT)
    return not entry.get("in_parent", False)  # images from before the flags field


def _pages(path, runs):
    """sha256 per page run (from the pagemap) plus the whole file's size and digest."""
    out = {"size": os.path.getsize(path), "runs": []}
    whole = hashlib.sha256()
    page = 4096
    with open(path, "rb") as fh:
        for vaddr, nr_pages in runs:
            data = fh.read(nr_pages * page)
            if len(data) != nr_pages * page:
                raise ValueError(f"offset {fh.tell()}: the pagemap promises {nr_pages} pages at 0x{vaddr:x}, "
                                 "the file ends first")
            whole.update(data)
            out["runs"].append({"vaddr": vaddr, "nr_pages": nr_pages, "sha256": hashlib.sha256(data).hexdigest()})
        rest = fh.read()
        if rest:
            whole.update(rest)
            out["trailing_bytes"] = len(rest)
    out["sha256"] = whole.hexdigest()
    return out


def main(argv):
    try:
        from pycriu import images
    except ImportError as exc:
        print(json.dumps({"error": f"pycriu is not importable here ({exc}): install Debian's criu package"}))
        return 4
    image_dir = argv[1]
    decoded = {}
    pagemaps = {}
    try:
        names = sorted(os.listdir(image_dir))
        for name in names:
            path = os.path.join(image_dir, name)
            if not name.endswith(".img") or name.startswith("pages-") or not os.path.isfile(path):
                continue
            try:
                decoded[name] = _load(path, images)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
            if name.startswith("pagemap-"):
                entries = decoded[name]["entries"]
                pages_id = entries[0].get("pages_id", 0) if entries else 0
                runs = [(e["vaddr"], e["nr_pages"]) for e in entries[1:] if "vaddr" in e and _present(e)
                        ] if entries else []
                # runs with PE_PRESENT have their data in pages-N.img, in pagemap order
                pagemaps[f"pages-{pages_id}.img"] = runs
        for name in names:
            if name.startswith("pages-") and name.endswith(".img"):
                try:
                    decoded[name] = _pages(os.path.join(image_dir, name), pagemaps.get(name, []))
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
    except (ValueError, OSError) as exc:
        print(json.dumps({"error": str(exc)}))
        return 3
    json.dump({"engine": "criu", "files": decoded}, sys.stdout, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
