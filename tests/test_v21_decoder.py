"""The v21 stream decoder on images of every target's byte order and word size.

No kernel writes v21 images yet (the series defines the format and reserves the system calls; the
checkpoint code is a later part of the issue), so the images come from crlab.v21.writer, which
packs records with the same compiler-generated tables: these tests show the decoder reads what
the tables say in each target's byte order and word size, and that bad input fails cleanly.
"""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crlab.abicheck import DEFAULT_TARGETS
from crlab.imagediff import diff, normalise
from crlab.v21 import RULES, DecodeError, canonical, decode, tables_for_tree
from crlab.v21.writer import sample_image
from tests.conftest import require_cross_compilers


@pytest.fixture(scope="module", autouse=True)
def cross_compilers() -> None:
    require_cross_compilers()


TABLES = tables_for_tree()


@pytest.mark.parametrize("target", DEFAULT_TARGETS)
def test_sample_image_decodes_per_target(target: str) -> None:
    data = sample_image(TABLES, target)
    image, tree = decode(data, TABLES)
    expected = {"x86_64": ("X86_64", 8, "little"), "i386": ("X86_32", 4, "little"), "ppc64": ("PPC64", 8, "big"),
                "ppc64le": ("PPC64", 8, "little"), "armv7": ("ARM", 4, "little")}[target]
    assert (image.arch, image.word_size, image.byteorder) == expected
    assert image.target == target
    assert image.records[0].name == "HEADER" and image.records[-1].name == "TAIL"
    assert sum(r.length for r in image.records) == len(data)
    assert tree["header"]["kernel"] == "6.1.192" and tree["header"]["uts"]["release"] == "6.1.192"
    assert [t["comm"] for t in tree["tasks"]] == ["task0", "task1"]
    assert [p["vpid"] for p in tree["pids"]] == [100, 101]
    objects = tree["objects"]
    assert {o["kind"] for o in objects.values()} == {"FILE_TABLE", "FILE", "MM", "SIGHAND", "SIGNAL"}
    assert objects[2]["path"] == "/tmp/counter.log" and objects[2]["f_pos"] == 1234
    assert objects[3]["f_type"] == "PIPE" and objects[3]["pipe_objref"] == 4 and objects[3]["pipe_bytes"] == 5
    assert [fd["fd"] for fd in objects[1]["fds"]] == [0, 1, 2]
    mm = objects[5]
    assert [v["vma_type"] for v in mm["vmas"]] == ["FILE", "ANON", "VDSO"]
    assert len(mm["vmas"][1]["pages"]) == 2 and mm["auxv"] == [6, 4096, 0, 0]
    low = 0x10000 if image.word_size == 4 else 0x555555554000
    assert list(mm["vmas"][1]["pages"]) == [f"{low + 0x4000:#x}", f"{low + 0x5000:#x}"]
    assert objects[8]["rlim"][3]["rlim_max"] == 2**64 - 1
    assert len(objects[7]["actions"]) == 2
    task = tree["tasks"][0]
    assert task["restart_block"]["arg1"] == 7_000_000_000
    assert task["pending"][0]["signo"] == 10
    if target in ("x86_64", "i386"):
        assert task["cpu"]["ax"] == 2**64 - 4 and task["cpu"]["cs"] == 0x33
        assert task["fpu"]["xstate_size"] == 512 and task["thread"]["tls"] == bytes(range(8)).hex()
        assert mm["context"]["vdso"] == low + 0x7000
    if target == "armv7":
        assert task["cpu"]["uregs"] == list(range(18)) and task["thread"]["tp_value"] == 0x7F000000


def test_error_image_keeps_the_message() -> None:
    _image, tree = decode(sample_image(TABLES, "ppc64", error=True), TABLES)
    assert tree["end"] == "ERROR"
    assert tree["error"] == "[err -16][pos 4242]checkpoint: a file lock is held"
    assert len(tree["tasks"]) == 1


def test_round_trip_diff_ignores_volatile_fields_only() -> None:
    first = canonical(decode(sample_image(TABLES, "x86_64"), TABLES)[1])
    second_tree = decode(sample_image(TABLES, "x86_64"), TABLES)[1]
    second_tree["header"]["time"] += 60  # taken a minute later
    second_tree["tasks"][0]["cpu"]["ip"] += 4  # stopped at another instruction
    second_tree["tasks"][0]["restart_block"]["arg1"] -= 10**9  # a second less left to sleep
    second = canonical(second_tree)
    assert diff(normalise(first, RULES), normalise(second, RULES)) == []
    vma = second_tree["objects"][5]["vmas"][1]
    vma["pages"][next(iter(vma["pages"]))] = "0" * 16
    changed = diff(normalise(first, RULES), normalise(canonical(second_tree), RULES))
    first_page = next(iter(vma["pages"]))
    assert [d.path for d in changed] == [f"files/mm-obj5.img/vmas/{vma['vm_start']:#x}/pages/{first_page}"]
    assert normalise(first, RULES)["files"]["pstree.img"]["entries"][1]["ppid"] == "P0"


# ------------------------------------------------------------------------------ bad input

SAMPLE = sample_image(TABLES, "x86_64")
BIG = sample_image(TABLES, "ppc64")
IMAGES = {"x86_64": SAMPLE, "ppc64": BIG}


def _error(data: bytes) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode(data, TABLES)
    return info.value


def _put(data: bytes, offset: int, value: int, size: int, order: str = "little") -> bytes:
    out = bytearray(data)
    out[offset:offset + size] = value.to_bytes(size, order)
    return bytes(out)


def test_clear_errors_with_offsets() -> None:
    image, _tree = decode(SAMPLE, TABLES)
    by_name = {}
    for r in image.records:
        by_name.setdefault(r.name, r)
    assert str(_error(b"")) == "offset 0: 0 bytes: too short for a record (a record starts with 8 bytes)"
    assert "not a v21 image" in str(_error(b"\x7fELF" + bytes(100)))
    assert str(_error(_put(SAMPLE, 8, 0xDEAD, 8))).startswith("offset 8: bad head magic 0x000000000000dead")
    tree_rec = by_name["TREE"]
    cut = tree_rec.offset + 5
    assert str(_error(SAMPLE[:cut])) == f"offset {tree_rec.offset}: truncated record: 5 bytes left, a record " \
                                         "needs at least 8"
    cut = tree_rec.offset + 12
    assert str(_error(SAMPLE[:cut])) == f"offset {tree_rec.offset}: record of type 101 claims 16 bytes, only 12 " \
                                         "remain (truncated image?)"
    tail = image.records[-1]
    assert str(_error(SAMPLE[:tail.offset])) == \
        f"offset {tail.offset}: the stream ends without a TAIL or ERROR record (truncated image?)"
    assert str(_error(SAMPLE + b"\0" * 8)) == f"offset {len(SAMPLE)}: 8 bytes after the TAIL record"
    assert str(_error(_put(SAMPLE, tree_rec.offset, 4242, 4))) == f"offset {tree_rec.offset}: unknown record type " \
                                                                  "4242 for X86_64"
    assert str(_error(_put(SAMPLE, tree_rec.offset + 4, 3, 4))).startswith(
        f"offset {tree_rec.offset}: record of type 101 has length 3")
    # hostile counts: bounded by the bytes that are there, never allocated
    assert str(_error(_put(SAMPLE, tree_rec.offset + 8, 2**32 - 1, 4))) == (
        f"offset {tree_rec.offset + tree_rec.length}: BUFFER: TREE's 4294967295 pid entries needs "
        f"{(2**32 - 1) * 24} bytes, the record carries 48")
    pgarr = next(r for r in image.records if r.name == "PGARR" and r.fields["nr_pages"] == 2)
    assert "needs" in str(_error(_put(SAMPLE, pgarr.offset + 8, 2**63, 8)))
    # big-endian: the arch_id stays little-endian, the rest is big
    big = decode(BIG, TABLES)[0]
    assert big.byteorder == "big" and big.records[0].fields["arch_id"] == 5
    assert "no crlab target lays out" in str(_error(_put(BIG, 16, 3, 2)))  # S390X


def _decode_bounded(data: bytes) -> None:
    """Decode; only DecodeError may come out, and the peak allocation stays linear in the input."""
    tracemalloc.start()
    try:
        decode(data, TABLES)
    except DecodeError as exc:
        assert 0 <= exc.offset <= len(data)
    finally:
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak <= 16 * len(data) + (64 << 10), f"{peak} bytes allocated decoding {len(data)} bytes"


# no example database: nothing written into the tree, every run explores afresh
FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_only_raise_decode_error(data: bytes) -> None:
    _decode_bounded(data)


@FUZZ
@given(st.sampled_from(["x86_64", "ppc64"]), st.data())
def test_mutated_images_only_raise_decode_error(which: str, data: st.DataObject) -> None:
    out = bytearray(IMAGES[which])
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["word", "byte", "cut", "splice"]))
        at = data.draw(st.integers(0, max(0, len(out) - 1)))
        if kind == "word" and len(out) >= 8:
            at -= at % 4
            size = data.draw(st.sampled_from([4, 8]))
            value = data.draw(st.sampled_from([0, 1, 7, 8, 0xFF, 2**31 - 1, 2**31, 2**32 - 1, 2**63, 2**64 - 1])
                              | st.integers(0, 2**64 - 1))
            out[at:at + size] = (value % (1 << (8 * size))).to_bytes(size, "little")[: len(out) - at]
        elif kind == "byte" and out:
            out[at] ^= data.draw(st.integers(1, 255))
        elif kind == "cut":
            del out[at:]
        else:
            length = data.draw(st.integers(1, 64))
            out[at:at] = out[max(0, at - length):at]
    _decode_bounded(bytes(out))


def _field_slots(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of every scalar field of every record of a valid image: where a hostile writer
    would put a bad count, length, type or reference."""
    image = decode(data, TABLES)[0]
    slots = []
    for rec in image.records:
        struct = image.table.record_struct(rec.name, image.family)
        slots += [(rec.offset, 4), (rec.offset + 4, 4)]  # type and len
        for f in struct.fields if struct else ():
            if f.base in ("u16", "s16", "u32", "s32", "u64", "s64") and "[" not in f.type:
                slots.append((rec.offset + f.offset, f.size))
    return slots


SLOTS = {name: _field_slots(image) for name, image in IMAGES.items()}
HOSTILE = [0, 1, 2, 3, 7, 8, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 2**31 - 1, 2**31, 2**32 - 1, 2**63 - 1, 2**63, 2**64 - 1]


@FUZZ
@given(st.sampled_from(["x86_64", "ppc64"]), st.data())
def test_hostile_field_values_only_raise_decode_error(which: str, data: st.DataObject) -> None:
    """Structure-aware: every count, length, type and reference field set to hostile values (this is
    the test that fails when one of the decoder's bounds checks is removed)."""
    order = "big" if which == "ppc64" else "little"
    out = bytearray(IMAGES[which])
    slots = SLOTS[which]
    for _ in range(data.draw(st.integers(1, 3))):
        at, size = data.draw(st.sampled_from(slots))
        value = data.draw(st.sampled_from(HOSTILE) | st.integers(0, 2**64 - 1)) % (1 << (8 * size))
        out[at:at + size] = value.to_bytes(size, order)
    _decode_bounded(bytes(out))
