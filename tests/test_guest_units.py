"""Guest control logic that needs no guest: QEMU command lines, console parsing, port reservations."""

from __future__ import annotations

import multiprocessing
import socket
from pathlib import Path
from typing import Any

import pytest

from crlab.guest.console import split_kernel_messages
from crlab.guest.ports import reserve_port
from crlab.guest.qemu import CappedLog, MachineConfig, qemu_command
from crlab.guest.shell import wrap_command
from crlab.targets import builtin_profiles, get_profile


@pytest.mark.parametrize("name", sorted(builtin_profiles()))
def test_qemu_command_line_per_target(name: str, tmp_path: Path) -> None:
    profile = get_profile(name)
    port = free_block(1)  # only written into the command line, never bound
    cfg = MachineConfig(profile, tmp_path / "image", tmp_path / "initrd", tmp_path, ssh_port=port)
    cmd = qemu_command(cfg)
    assert cmd[0] == profile.qemu_binary
    assert cmd[cmd.index("-cpu") + 1] == profile.cpu and profile.cpu, "the cpu model must be pinned"
    assert cmd[cmd.index("-M") + 1] == profile.machine
    assert "-no-reboot" in cmd and "-enable-kvm" not in cmd
    append = cmd[cmd.index("-append") + 1]
    assert f"console={profile.console}" in append and "panic=-1" in append
    netdev = cmd[cmd.index("-netdev") + 1]
    assert f"hostfwd=tcp:127.0.0.1:{port}-:22" in netdev, "forwards must listen on loopback only"
    assert cmd[cmd.index("-device") + 1].startswith(profile.nic_device)


def test_no_network_means_no_nic(tmp_path: Path) -> None:
    cfg = MachineConfig(get_profile("x86_64"), tmp_path / "i", tmp_path / "r", tmp_path, ssh_port=None)
    cmd = qemu_command(cfg)
    assert cmd[cmd.index("-nic") + 1] == "none" and "-netdev" not in cmd


def test_every_profile_is_complete() -> None:
    for profile in builtin_profiles().values():
        for field in ("arch", "cross_compile", "make_target", "kernel_image", "qemu_binary", "machine", "cpu",
                      "console", "uname_machine"):
            assert getattr(profile, field), f"{profile.name}: {field} is empty"
        assert profile.busybox_from in ("debian", "source")
        assert profile.debian_arch or profile.busybox_from == "source"


def test_kernel_messages_are_cut_out_of_output() -> None:
    raw = ("first line\r\r\nsecond [   12.345678] virtio_net virtio0 eth0: link up\r\r\n"
           "line\r\r\n[   13.000001] random: crng init done\r\nlast\r\n")
    output, messages = split_kernel_messages(raw)
    assert output == "first line\nsecond line\nlast\n"
    assert messages == ["[   12.345678] virtio_net virtio0 eth0: link up", "[   13.000001] random: crng init done"]


def test_wrap_command_isolates_cwd_and_env() -> None:
    text = wrap_command("sh smoke.sh", {"A": "it's"}, "/opt/x y")
    assert text.startswith("( cd '/opt/x y' && export A='it'\"'\"'s' && sh smoke.sh")
    assert text.endswith(")")


def free_block(size: int) -> int:
    """The first port of `size` consecutive ports that nothing on the host listens on now (chosen
    by the kernel's ephemeral allocator, so no fixed port numbers)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + size < 65536 and all(_bindable(port) for port in range(base, base + size)):
            return base
    raise AssertionError(f"no {size} consecutive free ports on this host")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


_BARRIER: Any = None


def _init_worker(barrier: Any, port_range: tuple[int, int]) -> None:
    global _BARRIER
    import crlab.guest.ports as ports

    _BARRIER = barrier
    ports.PORT_RANGE = port_range


def _reserve_many(args: tuple[str, int]) -> list[int]:
    lock_dir, count = args
    held = [reserve_port(Path(lock_dir), attempts=2000) for _ in range(count)]
    _BARRIER.wait(timeout=120)  # every process holds its share at the same time before any releases
    for r in held:
        r.release()
    return [r.port for r in held]


def test_parallel_jobs_never_get_the_same_port(tmp_path: Path) -> None:
    """Eight processes each hold 25 ports at the same moment, drawn from a range of only 300: with
    the lock they are 200 distinct ports; without it (drawing 200 of 300 at random) a repeat is
    all but certain (the chance of none is below 1e-25), so the test fails whenever the lock is gone."""
    base = free_block(300)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Manager().Barrier(8)
    with ctx.Pool(8, initializer=_init_worker, initargs=(barrier, (base, base + 300))) as pool:
        batches = pool.map(_reserve_many, [(str(tmp_path), 25)] * 8)
    ports = [p for batch in batches for p in batch]
    assert len(ports) == 200
    assert len(set(ports)) == 200, f"{200 - len(set(ports))} ports handed out twice"


def test_a_port_in_use_on_the_host_is_never_handed_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import crlab.guest.ports as ports

    busy = free_block(2)
    listener = socket.socket()
    listener.bind(("127.0.0.1", busy))
    listener.listen()

    monkeypatch.setattr(ports, "PORT_RANGE", (busy, busy + 2))  # two candidates, one taken
    try:
        for _ in range(20):
            with reserve_port(tmp_path) as reservation:
                assert reservation.port == busy + 1
    finally:
        listener.close()


def test_a_reserved_port_is_not_handed_out_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import crlab.guest.ports as ports

    base = free_block(2)
    monkeypatch.setattr(ports, "PORT_RANGE", (base, base + 2))
    first = reserve_port(tmp_path)
    second = reserve_port(tmp_path)
    assert first.port != second.port
    with pytest.raises(OSError, match="no free port"):
        reserve_port(tmp_path, attempts=30)
    first.release()
    third = reserve_port(tmp_path)
    assert third.port == first.port


def test_console_log_is_searched_in_chunks_and_a_line_across_a_boundary_is_found(tmp_path: Path) -> None:
    from crlab.guest import qemu

    log = tmp_path / "console.log"
    oops = "[   12.345678] BUG: kernel NULL pointer dereference, address: 0000000000000000\n"
    flood = "crlab-flood-0123456789\n" * 100
    # the oops line straddles the first chunk boundary; a panic comes much later
    prefix = flood * (qemu._SCAN_CHUNK // len(flood))
    prefix += "x" * (qemu._SCAN_CHUNK - len(prefix) - 20) + "\n"
    log.write_text(prefix + oops + flood * 50 + "Kernel panic - not syncing: Out of memory\n" + flood)
    assert qemu.search_file(log, qemu.find_oops) == "BUG: kernel NULL pointer dereference, address: 0000000000000000"
    searched: list[int] = []

    def panic(text: str) -> str | None:
        searched.append(len(text))
        match = qemu.PANIC.search(text)
        return match.group(0) if match else None

    assert qemu.search_file(log, panic) == "Kernel panic - not syncing: Out of memory"
    assert max(searched) <= qemu._SCAN_CHUNK + qemu._SCAN_OVERLAP  # never the whole file at once
    assert qemu.search_file(tmp_path / "missing.log", qemu.find_oops) is None


@pytest.mark.parametrize("writes", [["abcd", "efgh", "ij"], ["abcdefgh", "ij"], ["abcdefghij"], ["abcdefg", "hij"]],
                         ids=["exact-fill-then-more", "exact-fill-in-one-write", "crossing-write", "crossing-later"])
def test_capped_console_log_notes_the_cap_once_whatever_the_write_boundaries(tmp_path: Path,
                                                                             writes: list[str]) -> None:
    """The note that the cap was reached is written by the first write that loses output, also when
    an earlier write filled the file exactly to the cap (the case a CI run met once)."""
    path = tmp_path / "console.log"
    log = CappedLog(path, cap=8)
    for text in writes:
        assert log.write(text) == len(text)
    log.close()
    assert path.read_text() == ("abcdefgh\n[crlab: console log capped at 8 bytes; later output not kept]\n"
                                "[crlab: 2 characters of console output were not kept]\n")


def test_capped_console_log_without_overflow_has_no_note(tmp_path: Path) -> None:
    path = tmp_path / "console.log"
    log = CappedLog(path, cap=8)
    log.write("abcd")
    log.write("efgh")
    log.close()
    assert path.read_text() == "abcdefgh"
