"""The linux-cr engine (crlab/engines/linuxcr.py): registration and configs, the targets it has a
port for, decoding and normalising v21 images, and, in a real x86_64 guest of the linux-6.1-cr
kernel that crlab's builder makes from patches/linux-cr/series, what the engine does there.

On linux-6.1 without the series (the kernel CI's CRIU jobs use) the engine must report the kernel
as having no checkpoint(2) (ENOSYS, crctl exit 3), leave the test program running and working, and
make the C/R suite's job a skip saying why.  On linux-6.1-cr the counter-loop round trip
(checkpoint, kill, restart, keeps counting, C -> R -> C image diff empty after normalisation), the
32-bit image refusal (of a real i386 image, tests/data/linuxcr/) and the self-checkpoint (on
x86_64 and in an i386 guest) must work.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crlab import imagediff
from crlab.cache import Cache
from crlab.config import MatrixConfig, load_config
from crlab.crsuite import GUEST_WORK, known_differences, load_catalogue
from crlab.crsuite import TestProcess as GuestProgram
from crlab.engines import engine_names, get_engine
from crlab.engines.base import CheckpointOptions, ImageError, fetch_tree
from crlab.engines.linuxcr import IMAGE_FILE, RULES, LinuxCrEngine
from crlab.guest.lifecycle import Guest
from crlab.model import Status
from crlab.paths import CONFIGS_DIR, REPO_ROOT, SUITES_DIR
from crlab.rootfs import GUEST_SUITES_DIR
from crlab.targets import get_profile
from crlab.userland.elf import check_elf
from crlab.v21 import read_records, tables_for_tree
from crlab.v21.decoder import Image
from crlab.v21.writer import sample_image
from tests.conftest import missing_prerequisite, require_qemu

CONFIG = CONFIGS_DIR / "linux-cr.yaml"
SERIES = REPO_ROOT / "patches" / "linux-cr" / "series"
TABLES = tables_for_tree()
ENGINE: LinuxCrEngine = get_engine("linux-cr")
# one xdist worker runs the module: one build (cached) and one guest for its boot tests
pytestmark = pytest.mark.xdist_group("linuxcr")


def _series_defines(call: str) -> bool:
    """Whether a patch of the series defines the system call (a SYSCALL_DEFINEn(call, ...) line)."""
    pattern = re.compile(rf"^\+\s*(COMPAT_)?SYSCALL_DEFINE\d\({call}\b", re.M)
    patches = [SERIES.parent / line.strip() for line in SERIES.read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    return any(pattern.search(p.read_text(errors="replace")) for p in patches)


HAS_CHECKPOINT = _series_defines("checkpoint")
HAS_RESTART = _series_defines("restart")


# --------------------------------------------------------------------------- no guest


def test_registered_and_configured_for_x86_only() -> None:
    assert "linux-cr" in engine_names() and isinstance(ENGINE, LinuxCrEngine)
    cfg = load_config(CONFIG)
    jobs = {job.job_id for job in cfg.jobs}
    assert {"linux-6.1-cr/x86_64/cr@linux-cr", "linux-6.1-cr/i386/cr@linux-cr"} <= jobs, jobs
    assert cfg.suites["cr"].engines == ("linux-cr",) and cfg.suites["cr"].kind == "cr"
    # the series' Kconfig comes with the kernel tree, not with the target profiles: no profile
    # lists linux-cr, so linux-6.1 and 6.12 kernels stay as they are
    assert not (REPO_ROOT / "kernels" / "fragments" / "engine" / "linux-cr.config").exists()
    for target in ("x86_64", "i386", "ppc64", "ppc64le", "armv7"):
        assert "linux-cr" not in get_profile(target).engines
    for target in ("x86_64", "i386"):
        assert ENGINE.unsupported_reason(get_profile(target)) is None
    for target in ("ppc64", "ppc64le", "armv7"):
        reason = ENGINE.unsupported_reason(get_profile(target))
        assert reason and f"no port for {target} yet" in reason


def test_one_kernel_config_per_target_for_smoke_and_cr(capsys: pytest.CaptureFixture[str]) -> None:
    """`plan` shows the smoke and cr jobs of a target on the same kernel (one build serves both)."""
    from crlab.cli import main

    assert main(["plan", str(CONFIG)]) == 0
    out = capsys.readouterr().out
    keys: dict[str, set[str]] = {}
    for line in out.splitlines():
        match = re.match(r"\s*linux-6\.1-cr/(\w+)/\S+\s.*kernel ([0-9a-f]{24})", line)
        if match:
            keys.setdefault(match.group(1), set()).add(match.group(2))
    assert set(keys) == {"x86_64", "i386"}, out
    assert all(len(k) == 1 for k in keys.values()), keys
    assert keys["x86_64"] != keys["i386"]


def test_every_catalogue_test_declares_linux_cr() -> None:
    for test in load_catalogue(SUITES_DIR / "cr"):
        expectation, reason = test.expectation("linux-cr")
        assert "linux-cr" in test.expect, test.name
        assert expectation in ("pass", "checkpoint-fails", "restore-loses-state", "unsupported"), test.name
        assert expectation == "pass" or reason, test.name


@pytest.mark.parametrize("target", ["x86_64", "i386"])
def test_guest_tree_has_static_crctl(target: str) -> None:
    profile = get_profile(target)
    tree = ENGINE.guest_tree(profile, Cache())
    files = sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
    assert files == ["usr/bin/crctl", "usr/libexec/crlab-linuxcr"]
    elf = check_elf(tree / "usr" / "bin" / "crctl", profile, static=True, what=f"crctl for {target}")
    assert (tree / "usr" / "libexec" / "crlab-linuxcr").read_text().startswith("#!/bin/sh")
    assert (elf.bits, elf.endian) == (profile.elf_bits, profile.elf_endian)
    assert ENGINE.guest_tree(profile, Cache()) == tree  # cached


def _field(image: Image, name: str, index: int = 0) -> tuple[int, Any]:
    """(offset of the record, its struct) of the index-th record called name."""
    rec = [r for r in image.records if r.name == name][index]
    struct = image.table.record_struct(name, image.family)
    assert struct is not None
    return rec.offset, struct


def _patch(data: bytes, name: str, field: str, value: int, index: int = 0) -> bytes:
    """The image with one field of one record changed (as a kernel would have written it)."""
    image = read_records(data, TABLES)
    offset, struct = _field(image, name, index)
    f = struct.field(field)
    size = {"u8": 1, "s8": 1, "u16": 2, "s16": 2, "u32": 4, "s32": 4, "u64": 8, "s64": 8}[f.base]
    out = bytearray(data)
    out[offset + f.offset:offset + f.offset + size] = value.to_bytes(size, image.byteorder, signed=value < 0)
    return bytes(out)


def _decode(tmp: Path, name: str, data: bytes) -> dict[str, Any]:
    image_dir = tmp / name
    image_dir.mkdir()
    (image_dir / IMAGE_FILE).write_bytes(data)
    return ENGINE.decode(image_dir)


def _differences(tmp: Path, before: bytes, after: bytes) -> list[str]:
    a, b = _decode(tmp, "before", before), _decode(tmp, "after", after)
    return [str(d) for d in imagediff.diff(imagediff.normalise(a, RULES), imagediff.normalise(b, RULES))]


@pytest.mark.parametrize("target", ["x86_64", "i386"])
def test_decode_gives_the_canonical_tree(tmp_path: Path, target: str) -> None:
    tree = _decode(tmp_path, "img", sample_image(TABLES, target))
    assert tree["engine"] == "linux-cr"
    files = tree["files"]
    assert files["header.img"]["arch"] == ("X86_64" if target == "x86_64" else "X86_32")
    assert [e["pid"] for e in files["pstree.img"]["entries"]] == [100, 101]
    assert {"task-100.img", "task-101.img", "end.img"} <= set(files)
    # the file table's files stay objects (named by path for the log rule); a file only mappings
    # use is named by path in the mapping
    generic = [c for c in files.values() if c.get("f_type") == "GENERIC"]
    assert [(c["name"], c["path"]) for c in generic] == [("/tmp/counter.log", "/tmp/counter.log")]
    assert [v.get("file") for v in files["mm-obj4.img"]["vmas"]] == ["/bin/counter", None, None]
    assert sorted(n for n in files if "-obj" in n) == ["file-obj2.img", "file-obj3.img", "file_table-obj1.img",
                                                       "mm-obj4.img", "sighand-obj5.img", "signal-obj6.img"]
    assert files["task-100.img"]["objs"] == {"files_objref": 1, "mm_objref": 4, "fs_objref": 0,
                                             "sighand_objref": 5, "signal_objref": 6, "cred_objref": 0}


def test_decode_errors_name_the_file_and_offset(tmp_path: Path) -> None:
    data = sample_image(TABLES, "x86_64")
    image = read_records(data, TABLES)
    record = image.records[5].offset
    with pytest.raises(ImageError, match=rf"{IMAGE_FILE}: offset {record}: truncated record: 3 bytes left"):
        _decode(tmp_path, "cut", data[:record + 3])
    with pytest.raises(ImageError, match=r"offset 0: not a v21 image"):
        _decode(tmp_path, "elf", b"\x7fELF" + bytes(100))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match=rf"no {IMAGE_FILE}"):
        ENGINE.decode(tmp_path / "empty")


@pytest.mark.parametrize("target", ["x86_64", "i386"])
def test_rules_drop_what_running_changes_and_nothing_else(tmp_path: Path, target: str) -> None:
    base = sample_image(TABLES, target)
    # the same state seen later: another time, registers, FPU contents, less sleep and itimer time
    # left, the log file written further, and the restored task under another pid (a rank that
    # stays the same)
    later = base
    for name, field, value in [("HEADER", "time", 1_790_000_099), ("CPU", "ip", 0x4242), ("CPU", "ax", 7),
                               ("CPU", "sp", 0x7000), ("CPU", "flags", 0x246), ("RESTART_BLOCK", "arg1", 3_000),
                               ("RESTART_BLOCK", "kind", 1),
                               ("SIGNAL", "it_real_value", 2), ("FILE", "f_pos", 9999)]:
        later = _patch(later, name, field, value)
    later = _patch(later, "CPU", "r15", 1, index=1)
    # what the kernel decides itself: an anonymous mapping's page offset, accounting and soft-dirty
    # bits, pending exit-to-user work (TIF_NOTIFY_RESUME, TIF_NEED_FPU_LOAD)
    later = _patch(later, "VMA", "vm_pgoff", 77, index=1)
    later = _patch(later, "VMA", "vm_flags", 0x100073 | 0x08000000, index=1)
    later = _patch(later, "THREAD", "thread_info_flags", (1 << 1) | (1 << 14))
    xstate = read_records(later, TABLES).records
    fpu = next(r for r in xstate if r.name == "X86_CPU_FPU")
    end = fpu.offset + fpu.length
    later = later[:end - 1] + b"\x01" + later[end:]  # one xstate byte
    assert later != base
    assert _differences(tmp_path, base, later) == []
    # what must show: a different mapping, blocked mask, file flag, TLS base, selector, the offset
    # of a file that is not a log, an itimer's interval, the kind of restart block
    for name, field, value, where in [
            ("VMA", "vm_flags", 0x73, "/vmas/"), ("VMA", "vm_pgoff", 3, "/vm_pgoff"),
            ("THREAD", "thread_info_flags", 1 << 29, "/thread_info_flags"),
            ("SIGNAL_TASK", "blocked", 1 << 3, "/signal_task/blocked"),
            ("FILE", "f_flags", 0o4002, "/f_flags"), ("CPU", "fs_base", 0x1234, "/cpu/fs_base"),
            ("CPU", "cs", 0x23, "/cpu/cs"), ("FILE", "f_pos", 5, "/f_pos"),
            ("SIGNAL", "it_real_incr", 9, "/it_real_incr")]:
        index = 1 if (name, field) == ("FILE", "f_pos") else 0  # FILE 1 is a pipe, not a log
        changed = _patch(base, name, field, value, index)
        assert changed != base, (name, field)
        work = tmp_path / f"{name}-{field}"
        work.mkdir()
        found = _differences(work, base, changed)
        assert found and all(where in d for d in found), (name, field, found)


@pytest.mark.parametrize("target", ["x86_64", "i386"])
def test_signal_object_compares_limits_and_intervals_not_time_left(tmp_path: Path, target: str) -> None:
    """Patch 0010's SIGNAL object: the time each itimer has left counts down between the two
    checkpoints (volatile), its interval and every rlimit must survive the restart (compared)."""
    base = sample_image(TABLES, target)
    later = base
    for field, value in [("it_real_value", 0), ("it_virt_value", 123_456), ("it_prof_value", 4_000_000)]:
        later = _patch(later, "SIGNAL", field, value)
    assert later != base
    assert _differences(tmp_path, base, later) == []
    image = read_records(base, TABLES)
    offset, struct = _field(image, "SIGNAL", 0)
    rlimit = TABLES.for_target(target).struct("ckpt_rlimit")
    at = offset + struct.field("rlim").offset + 7 * rlimit.size + rlimit.field("rlim_cur").offset
    lowered = bytearray(base)
    lowered[at:at + 8] = (1024).to_bytes(8, image.byteorder)
    work = tmp_path / "rlim"
    work.mkdir()
    found = _differences(work, base, bytes(lowered))
    assert found and all("/rlim/7/rlim_cur" in d for d in found), found
    for field in ("it_virt_incr", "it_prof_incr"):
        work = tmp_path / field
        work.mkdir()
        found = _differences(work, base, _patch(base, "SIGNAL", field, 20_000_000))
        assert found and all(f"/{field}" in d for d in found), (field, found)


def test_known_differences_for_linux_cr_have_reasons() -> None:
    known = [k for k in known_differences(SUITES_DIR / "cr") if "linux-cr" in k.engines]
    for k in known:
        assert k.reason.strip(), k.path


GOLDEN_I386 = REPO_ROOT / "tests" / "data" / "linuxcr" / "counter_loop-i386.img"


def test_golden_i386_image_decodes_with_32_bit_words(tmp_path: Path) -> None:
    """The image an i386 guest of linux-6.1-cr really wrote (tests/data/linuxcr/README.md says how
    it was taken) decodes with 32-bit words: every record, the task's 32-bit user addresses, and the
    canonical tree the round-trip diff uses."""
    data = GOLDEN_I386.read_bytes()
    image = read_records(data, TABLES)
    assert (image.arch, image.word_size, image.byteorder, image.target) == ("X86_32", 4, "little", "i386")
    names = [r.name for r in image.records]
    assert names[0] == "HEADER" and names[-1] == "TAIL" and image.records[-1].offset + 16 == len(data)
    for name in ("HEADER_ARCH", "TREE", "TASK", "MM", "VMA", "PGARR", "MM_CONTEXT", "SIGHAND", "TASK_OBJS",
                 "THREAD", "RESTART_BLOCK", "CPU", "X86_CPU_FPU", "SIGNAL_TASK"):
        assert name in names, name
    header = image.records[0].fields
    assert (header["major"], header["minor"]) == (6, 1)
    vmas = [r.fields for r in image.records if r.name == "VMA"]
    assert vmas and all(0 < v["vm_start"] < v["vm_end"] <= 1 << 32 for v in vmas), vmas
    cpu = next(r.fields for r in image.records if r.name == "CPU")
    assert cpu["ip"] < 1 << 32 and cpu["sp"] < 1 << 32 and cpu["r8"] == 0 and cpu["fs_base"] == 0
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / IMAGE_FILE).write_bytes(data)
    tree = ENGINE.decode(tmp_path / "img")
    files = tree["files"]
    assert files["header.img"]["arch"] == "X86_32"
    tasks = [name for name in files if name.startswith("task-")]
    assert len(tasks) == 1 and files[tasks[0]]["comm"] == "counter_loop", tasks
    assert [e["depth"] for e in files["pstree.img"]["entries"]] == [0]


# --------------------------------------------------------------------------- a real x86_64 guest

BIN_DIR = f"{GUEST_SUITES_DIR}/cr/bin"


@pytest.fixture(scope="module")
def cfg() -> MatrixConfig:
    return load_config(CONFIG)


def _boot_cr_guest(kernels: MatrixConfig, suites: MatrixConfig, kernel: str, target: str,
                   job_dir: Path) -> Iterator[Guest]:
    """A console guest of `kernel` (from `kernels`) on `target`, with the linux-cr cr suite's rootfs
    (its programs and the static crctl)."""
    from crlab.session import boot_cell

    profile = get_profile(target)
    require_qemu(profile.qemu_binary)
    if not shutil.which(f"{profile.cross_compile}gcc"):
        missing_prerequisite(f"{profile.cross_compile}gcc is not installed")
    with boot_cell(kernels, kernel, target, transport="console", suite=suites.suites["cr"],
                   job_dir=job_dir, log=lambda _: None) as (booted, _built):
        yield booted


@pytest.fixture(scope="module")
def guest(cfg: MatrixConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    """linux-6.1-cr on x86_64 as crlab's builder makes it (the cache entry configs/linux-cr.yaml's
    jobs use)."""
    yield from _boot_cr_guest(cfg, cfg, "linux-6.1-cr", "x86_64", tmp_path_factory.mktemp("linuxcr-guest"))


@pytest.fixture(scope="module")
def guest_i386(cfg: MatrixConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    """linux-6.1-cr on i386, booted only for what differs there (the self-checkpoint's return into
    a 32-bit task); configs/linux-cr.yaml's cr job runs the whole suite on it."""
    yield from _boot_cr_guest(cfg, cfg, "linux-6.1-cr", "i386", tmp_path_factory.mktemp("linuxcr-guest-i386"))


@pytest.fixture(scope="module")
def guest_without_series(cfg: MatrixConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    """linux-6.1 on x86_64 without the series (the kernel CI's C/R suite under CRIU uses), with the
    linux-cr engine's rootfs: the engine on a kernel that has no checkpoint(2)."""
    plain = load_config(REPO_ROOT / "tests" / "data" / "cr" / "ci.yaml")
    yield from _boot_cr_guest(plain, cfg, "linux-6.1", "x86_64", tmp_path_factory.mktemp("linuxcr-guest-plain"))


def _kernel_version(guest: Guest) -> tuple[int, int, int]:
    release = guest.shell.run("uname -r", timeout=30).output.strip().splitlines()[-1]
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", release)
    assert match, release
    major, minor, patch = (int(x) for x in match.groups())
    return major, minor, patch


def _image_for(guest: Guest, target: str) -> bytes:
    """A writer image of `target` whose header matches the guest's kernel version (so that only
    what the test is about differs)."""
    data = sample_image(TABLES, target, tasks=1)
    for field, value in zip(("major", "minor", "patch"), _kernel_version(guest), strict=True):
        data = _patch(data, "HEADER", field, value)
    return data


def _put_image(guest: Guest, tmp: Path, data: bytes, image_dir: str) -> None:
    local = tmp / IMAGE_FILE
    local.write_bytes(data)
    guest.shell.run(f"mkdir -p {shlex.quote(image_dir)}", timeout=30)
    guest.shell.put(local, f"{image_dir}/{IMAGE_FILE}")


def _state(guest: Guest, pid: int) -> str:
    return guest.shell.run(f"sed 's/.*) //' /proc/{pid}/stat | cut -c1", timeout=30).output.strip()


@pytest.mark.boot
@pytest.mark.slow
def test_kernel_without_checkpoint_is_reported_not_failed(guest_without_series: Guest, tmp_path: Path) -> None:
    """On a kernel without the series the engine must say the kernel has no checkpoint(2), refuse
    cleanly and leave the test program running and correct."""
    guest = guest_without_series
    shell = guest.shell
    reason = ENGINE.guest_unsupported_reason(shell)
    assert reason is not None
    assert "this kernel has no checkpoint(2)" in reason and "CONFIG_CHECKPOINT_V21" in reason, reason
    process = GuestProgram(shell, BIN_DIR, "counter_loop")
    try:
        assert process.start() == ""
        assert process.pid is not None
        result = ENGINE.checkpoint(shell, process.pid, f"{process.work}/img1", CheckpointOptions())
        assert not result.ok
        assert "crctl checkpoint exited 3 (no checkpoint(2) in this kernel (ENOSYS))" in result.message, result
        assert "checkpoint(2) is not available" in result.message
        assert process.alive() and _state(guest, process.pid) != "T"  # continued, not left stopped
        assert shell.run(f"test -e {process.work}/img1/{IMAGE_FILE}", timeout=30).exit_status != 0
        status, message = process.trigger_and_verdict()
        assert status == Status.PASS, message
    finally:
        process.cleanup()
    image_dir = f"{GUEST_WORK}/restart-enosys"
    for target in ("x86_64", "i386"):
        _put_image(guest, tmp_path, _image_for(guest, target), image_dir)
        restored = ENGINE.restore(shell, image_dir, CheckpointOptions())
        assert not restored.ok and restored.pid is None
        assert "crctl: restart(2) is not available: this kernel has no checkpoint/restart" in restored.message
    assert not guest.kernel_oops()


@pytest.mark.boot
@pytest.mark.slow
def test_counter_loop_round_trip(guest: Guest, tmp_path: Path) -> None:
    """Checkpoint the counter loop externally, kill it, restart it: it keeps counting with its
    invariant, and a second checkpoint of the restarted loop equals the first after normalisation."""
    if not (HAS_CHECKPOINT and HAS_RESTART):
        pytest.skip("patches/linux-cr/series defines no checkpoint(2)/restart(2) yet (0001+0002 reserve the "
                    "numbers only); test_kernel_without_checkpoint_is_reported_not_failed covers that kernel")
    shell = guest.shell
    assert ENGINE.guest_unsupported_reason(shell) is None
    test = next(t for t in load_catalogue(SUITES_DIR / "cr") if t.name == "counter_loop")
    process = GuestProgram(shell, BIN_DIR, test.name)
    try:
        assert process.start() == ""
        assert process.pid is not None
        original = process.pid
        first = ENGINE.checkpoint(shell, original, f"{process.work}/img1", CheckpointOptions())
        assert first.ok, first.message
        assert not process.alive(), "the checkpointed task was not killed"
        restored = ENGINE.restore(shell, f"{process.work}/img1", CheckpointOptions())
        assert restored.ok and restored.pid, restored.message
        process.pid = restored.pid
        assert shell.run(f"cat /proc/{restored.pid}/comm", timeout=30).output.strip().endswith("counter_loop")
        second = ENGINE.checkpoint(shell, restored.pid, f"{process.work}/img2", CheckpointOptions(leave_running=True))
        assert second.ok, second.message
        assert process.alive() and _state(guest, restored.pid) != "T"
        status, message = process.trigger_and_verdict()
        assert status == Status.PASS, message
        # one start: the program did not begin again; it was triggered as the restored task (whose
        # pid is the restarting crctl's), after counting on from the restored registers
        log = shell.run(f"cat {process.work}/counter_loop.log", timeout=30).output
        assert log.count("counter_loop: started") == 1 and log.count("ready, pid") == 1, log
        assert re.search(rf"\[[0-9.]+ {restored.pid}\] triggered after [1-9][0-9]* iterations", log), log
        img1 = fetch_tree(shell, f"{process.work}/img1", tmp_path / "img1")
        img2 = fetch_tree(shell, f"{process.work}/img2", tmp_path / "img2")
        before, after = ENGINE.decode(img1), ENGINE.decode(img2)
        assert before["files"]["header.img"]["arch"] == "X86_64"
        explained = imagediff.explain(
            imagediff.diff(imagediff.normalise(before, RULES), imagediff.normalise(after, RULES)),
            known_differences(SUITES_DIR / "cr"), test.name, "linux-cr", "same-kernel")
        assert explained.empty, [str(d) for d in explained.unexplained]
    finally:
        process.cleanup()
    assert not guest.kernel_oops()


def _self_checkpoint_round_trip(guest: Guest, name: str) -> None:
    """crctl checkpoint-self: checkpoint(2) of the caller returns the checkpoint's id (> 0); a
    restart of that image returns into the same call, which now returns 0, with the caller's stack
    and registers (its marker) and its TLS (getpid() through libc) working."""
    if not (HAS_CHECKPOINT and HAS_RESTART):
        pytest.skip("patches/linux-cr/series defines no checkpoint(2)/restart(2) yet")
    work = f"{GUEST_WORK}/{name}"
    first = guest.shell.run(f"rm -rf {work} && mkdir -p {work} && cd {work} && "
                            "/usr/bin/crctl checkpoint-self self.img; echo crctl-exit=$?", timeout=120)
    assert first.output.strip().splitlines()[-1] == "crctl-exit=0", first.output
    taken = re.search(r"checkpoint-self: checkpoint\(2\) returned ([1-9][0-9]*), pid ([0-9]+), marker kept",
                      first.output)
    assert taken, first.output
    again = guest.shell.run(f"cd {work} && /usr/bin/crctl restart self.img; echo crctl-exit=$?", timeout=120)
    assert again.output.strip().splitlines()[-1] == "crctl-exit=0", again.output
    resumed = re.search(r"checkpoint-self: checkpoint\(2\) returned 0 \(restarted\), pid ([0-9]+), marker kept",
                        again.output)
    assert resumed, again.output
    assert resumed.group(1) != taken.group(2)  # the restarted task has its restarter's pid
    assert "segfault" not in guest.shell.run("dmesg | tail -n 20", timeout=30).output
    assert not guest.kernel_oops()


@pytest.mark.boot
@pytest.mark.slow
def test_self_checkpoint_returns_0_after_restart(guest: Guest) -> None:
    _self_checkpoint_round_trip(guest, "self-x86_64")


@pytest.mark.boot
@pytest.mark.slow
def test_self_checkpoint_returns_0_after_restart_on_i386(guest_i386: Guest) -> None:
    """The i386 kernel does not keep the user's gs in pt_regs: restart(2) must load it, or the
    restarted task's first TLS access (getpid() calls through %gs:0x10) faults (0005's fix)."""
    _self_checkpoint_round_trip(guest_i386, "self-i386")


@pytest.mark.boot
@pytest.mark.slow
def test_x86_64_kernel_refuses_a_32_bit_image(guest: Guest, tmp_path: Path) -> None:
    """A real image of a 32-bit task (GOLDEN_I386: counter_loop checkpointed by crctl on the i386
    linux-6.1-cr kernel) on the x86_64 kernel, which has no IA32 emulation in this configuration:
    restart(2) must refuse it before changing anything, with a clear error; the process that asked
    keeps running as crctl and exits 1.  Without restart(2) in the series the refusal is ENOSYS
    (exit 3)."""
    image_dir = f"{GUEST_WORK}/compat"
    _put_image(guest, tmp_path, GOLDEN_I386.read_bytes(), image_dir)
    result = guest.shell.run(f"/usr/bin/crctl restart {image_dir}/{IMAGE_FILE}; echo crctl-exit=$?", timeout=120)
    lines = result.output.strip().splitlines()
    if not HAS_RESTART:
        assert lines[-1] == "crctl-exit=3" and "restart(2) is not available" in result.output, result.output
        return
    assert lines[-1] == "crctl-exit=1", result.output
    assert re.search(r"crctl: restart from \S+ failed: Invalid argument", result.output), result.output
    # the kernel's reason, written to crctl's stderr (the log descriptor): the arch_id of the
    # HEADER record (which ends at offset 72) is refused before anything else is looked at
    assert "[err -22][pos 72] image of arch_id 1 (32-bit words), this kernel restarts arch_id 2 images only" \
        in result.output, result.output
    assert "the image is refused, the caller is unchanged" in result.output
    restored = ENGINE.restore(guest.shell, image_dir, CheckpointOptions())
    assert not restored.ok and "failed" in restored.message
    assert not guest.kernel_oops()


@pytest.mark.boot
@pytest.mark.slow
def test_cr_job_on_a_kernel_without_checkpoint_is_a_skip_saying_why(tmp_path: Path) -> None:
    """The C/R suite's job under linux-cr on a kernel without the series: every program runs (and
    passes) without C/R, each C/R result is a skip with the kernel's reason, and the job is no pass."""
    require_qemu("qemu-system-x86_64")
    config = tmp_path / "linux-cr-x86_64.yaml"
    config.write_text("kernels: [linux-6.1]\ntargets: [x86_64]\nsuites:\n  - name: cr\n    engines: [linux-cr]\n"
                      "options: {jobs: 1, retries: 0}\n")
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "harness.py"), "run", str(config), "--plain", "--results",
                           str(results)], text=True, capture_output=True, timeout=3600, cwd=REPO_ROOT,
                          env={**os.environ, "CRLAB_PLAIN": "1"})
    data = json.loads((results / "latest" / "results.json").read_text())
    [job] = data["jobs"]
    assert job["job_id"] == "linux-6.1/x86_64/cr@linux-cr"
    assert job["status"] == "skip", job["message"]
    assert "C/R not run: linux-cr: this kernel has no checkpoint(2)" in job["message"]
    assert proc.returncode == 2, proc.stdout[-2000:]  # a skip is no pass: the run is incomplete
    tests = {t["name"]: t for t in job["tests"]}
    names = [t.name for t in load_catalogue(SUITES_DIR / "cr")]
    for name in names:
        assert tests[name]["status"] == "pass", (name, tests[name]["message"])
        assert tests[f"{name}/cr"]["status"] == "skip"
        assert "this kernel has no checkpoint(2)" in tests[f"{name}/cr"]["message"]


def test_mappings_compare_as_maximal_ones() -> None:
    """Two neighbours that differ only in where they split are one mapping; a gap, another file
    offset, other flags or another type keep them apart (as measured on i386: restart merges two
    mappings of the binary that exec left apart)."""
    from crlab.engines.linuxcr import comparable

    def vma(start: int, end: int, pgoff: int, flags: int = 0x71, kind: str = "FILE") -> dict[str, Any]:
        return {"vma_type": kind, "vm_start": start, "vm_end": end, "vm_pgoff": pgoff, "vm_flags": flags,
                "vm_page_prot": 0x25, "pages": {f"{start:#x}": "aa"}}

    def maps(*vmas: dict[str, Any]) -> list[tuple[int, int]]:
        data = {"engine": "linux-cr", "files": {"header.img": {"constants": {"page_shift": 12}},
                                                "mm-obj1.img": {"objref": 1, "kind": "MM", "vmas": list(vmas)}}}
        mm = comparable(data)["files"]["mm-obj1.img"]
        assert mm["map_count"] == len(mm["vmas"])
        return [(v["vm_start"], v["vm_end"]) for v in mm["vmas"]]

    assert maps(vma(0x1000, 0x3000, 1), vma(0x3000, 0x4000, 3)) == [(0x1000, 0x4000)]
    assert maps(vma(0x1000, 0x3000, 1), vma(0x3000, 0x4000, 4)) == [(0x1000, 0x3000), (0x3000, 0x4000)]
    assert maps(vma(0x1000, 0x3000, 1), vma(0x4000, 0x5000, 4)) == [(0x1000, 0x3000), (0x4000, 0x5000)]
    assert maps(vma(0x1000, 0x3000, 1), vma(0x3000, 0x4000, 3, flags=0x73)) == [(0x1000, 0x3000), (0x3000, 0x4000)]
    assert maps(vma(0x1000, 0x3000, 1, kind="ANON"), vma(0x3000, 0x4000, 9, kind="ANON")) == [(0x1000, 0x4000)]
    # accounting and soft-dirty bits do not keep neighbours apart
    assert maps(vma(0x1000, 0x3000, 1, flags=0x100071), vma(0x3000, 0x4000, 3, flags=0x8000071)) == [(0x1000, 0x4000)]
