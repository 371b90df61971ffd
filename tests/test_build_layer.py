"""The build layer: Cache.get_or_build, the command runner, the kept kernel object tree, engines' Kconfig."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from crlab import kernel as kstages
from crlab import runner
from crlab.cache import Cache
from crlab.config import KernelSource, KernelTree
from crlab.paths import FRAGMENTS_DIR
from crlab.targets import builtin_profiles, get_profile

# --- get_or_build ----------------------------------------------------------------------------------


def _cache(tmp_path: Path, notes: list[str]) -> Cache:
    return Cache(tmp_path / "cache", notify=notes.append)


def test_get_or_build_builds_once_then_hits(tmp_path: Path) -> None:
    notes: list[str] = []
    cache = _cache(tmp_path, notes)
    calls = []

    def build(scratch: Path) -> None:
        calls.append(scratch)
        (scratch / "data").write_text("made\n")

    first = cache.get_or_build("thing", "k1", build, what="a thing")
    assert first.built and (first.path / "data").read_text() == "made\n"
    again = cache.get_or_build("thing", "k1", build, what="a thing")
    assert again == (first.path, False)
    assert len(calls) == 1 and not calls[0].exists(), "the scratch dir was renamed into place"
    assert notes == ["building a thing (thing/k1)"]
    assert [p.name for p in (cache.root / "thing").iterdir()] == ["k1"]


def test_failed_build_publishes_nothing_and_keeps_its_log(tmp_path: Path) -> None:
    cache = _cache(tmp_path, [])

    def broken(scratch: Path) -> None:
        (scratch / "build.log").write_text("cc: error: no such file\n")
        raise RuntimeError("compiler failed")

    with pytest.raises(RuntimeError, match="compiler failed"):
        cache.get_or_build("thing", "k2", broken, what="a thing")
    assert not cache.has("thing", "k2")
    assert [p.name for p in (cache.root / "thing").iterdir()] == [], "scratch left behind"
    kept = cache.root / "logs" / "thing-k2.failed.log"
    assert kept.read_text() == "cc: error: no such file\n"
    cache.get_or_build("thing", "k2", lambda scratch: (scratch / "ok").write_text("1"), what="a thing")
    assert not kept.exists(), "a later success removes the old failure's log"


@pytest.mark.parametrize("damage", ["delete", "truncate", "marker"])
def test_damaged_entry_is_not_a_hit(tmp_path: Path, damage: str) -> None:
    cache = _cache(tmp_path, [])
    entry = cache.get_or_build("thing", "k3", lambda s: (s / "image").write_bytes(b"x" * 100), what="t").path
    if damage == "delete":
        (entry / "image").unlink()
    elif damage == "truncate":
        (entry / "image").write_bytes(b"x" * 10)
    else:
        (entry / ".complete").write_text('{"files": ')  # an interrupted write
    assert not cache.has("thing", "k3")
    rebuilt = cache.get_or_build("thing", "k3", lambda s: (s / "image").write_bytes(b"y" * 100), what="t")
    assert rebuilt.built and (rebuilt.path / "image").read_bytes() == b"y" * 100


def test_concurrent_callers_build_once(tmp_path: Path) -> None:
    cache = _cache(tmp_path, [])
    calls = []

    def slow(scratch: Path) -> None:
        calls.append(1)
        time.sleep(0.3)
        (scratch / "out").write_text("1")

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_build("t", "k", slow, what="t")))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert sorted(r.built for r in results) == [False, False, True]


# --- the runner ------------------------------------------------------------------------------------


def test_runner_logs_command_output_and_status(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    proc = runner.run(["sh", "-c", "echo out; echo err >&2; exit 3"], log=log)
    assert proc.returncode == 3
    assert log.read_text().splitlines() == ["$ sh -c 'echo out; echo err >&2; exit 3'", "out", "err", "[exit 3]"]
    captured = runner.run(["sh", "-c", "echo out; echo err >&2"])
    assert captured.returncode == 0 and captured.stdout.split() == ["out", "err"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split()[2] != "Z"


def test_runner_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    with pytest.raises(subprocess.TimeoutExpired):
        runner.run(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], timeout=1)
    time.sleep(0.2)
    assert not _alive(int(pidfile.read_text())), "the grandchild survived the timeout"


def test_cancel_all_stops_commands_of_every_kind(tmp_path: Path) -> None:
    """A kernel-style (logged) and a userland-style (captured) command, both stopped at once."""
    results: dict[str, int] = {}

    def kernel_like() -> None:
        results["kernel"] = runner.run(["sleep", "60"], log=tmp_path / "k.log").returncode

    def userland_like() -> None:
        results["userland"] = runner.run(["sh", "-c", "sleep 60; echo never"]).returncode

    threads = [threading.Thread(target=kernel_like), threading.Thread(target=userland_like)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while runner.running() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runner.running() == 2
    kstages.terminate_running()  # the orchestrator's name for runner.cancel_all
    for thread in threads:
        thread.join(timeout=30)
    # both commands were stopped by the signal (left alone they would sleep 60 s and exit 0)
    assert not any(thread.is_alive() for thread in threads)
    assert results == {"kernel": -15, "userland": -15}
    assert runner.running() == 0
    assert kstages.terminate_running is runner.cancel_all


# --- the kernel's kept object tree and its build identity ------------------------------------------


def test_sync_tree_replaces_exactly_what_changed(tmp_path: Path) -> None:
    pristine = tmp_path / "pristine"
    (pristine / "kernel").mkdir(parents=True)
    (pristine / "kernel/fork.c").write_text("int fork;\n")
    (pristine / "kernel/sys.c").write_text("int sys;\n")
    (pristine / "Makefile").write_text("all:\n")
    work = tmp_path / "work"
    assert kstages.sync_tree(pristine, work) is None
    assert os.stat(work / "kernel/fork.c").st_ino == os.stat(pristine / "kernel/fork.c").st_ino
    # a "patched tree": hard links, but fork.c replaced and a file added and one removed
    patched = tmp_path / "patched"
    subprocess.run(["cp", "-al", str(pristine), str(patched)], check=True)
    (patched / "kernel/fork.c").unlink()
    (patched / "kernel/fork.c").write_text("int fork2;\n")
    (patched / "kernel/new.c").write_text("int new;\n")
    (patched / "kernel/sys.c").unlink()
    before = time.time()
    assert kstages.sync_tree(patched, work) == 3
    assert (work / "kernel/fork.c").read_text() == "int fork2;\n"
    assert (work / "kernel/new.c").exists() and not (work / "kernel/sys.c").exists()
    assert os.stat(work / "Makefile").st_ino == os.stat(pristine / "Makefile").st_ino, "untouched file replaced"
    # back to the pristine tree: fork.c is older there than the objects built from the patch, so the
    # copy must be fresh or make would keep the patched fork.o
    time.sleep(0.01)
    assert kstages.sync_tree(pristine, work) == 3
    assert (work / "kernel/fork.c").read_text() == "int fork;\n"
    assert os.stat(work / "kernel/fork.c").st_mtime >= before
    assert kstages.sync_tree(pristine, work) == 0


def test_kbuild_identity_comes_from_the_inputs(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "Makefile").write_text("VERSION = 6\n")
    os.utime(tree / "Makefile", (1_700_000_000, 1_700_000_000))
    identity = kstages.kbuild_identity("0123456789abcdef01234567", tree)
    assert identity == {
        "KBUILD_BUILD_TIMESTAMP": "Tue Nov 14 22:13:20 UTC 2023",
        "KBUILD_BUILD_USER": "crlab",
        "KBUILD_BUILD_HOST": "crlab-0123456789ab",
        "KBUILD_BUILD_VERSION": "1",
    }
    # date(1) must be able to read it: kbuild's gen_initramfs.sh passes it to `date -d`
    out = subprocess.run(["date", "-u", "-d", identity["KBUILD_BUILD_TIMESTAMP"], "+%s"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "1700000000"


def test_workspace_is_one_per_tree_and_target(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    tree = KernelTree("linux-6.1", KernelSource("debian", "linux-source-6.1"), (), "tinyconfig", ())
    patched = KernelTree("linux-6.1", tree.source, (tmp_path / "fix.patch",), "tinyconfig", ())
    x86 = get_profile("x86_64")
    assert kstages.workspace_dir(cache, tree, x86) == kstages.workspace_dir(cache, patched, x86)
    assert kstages.workspace_dir(cache, tree, x86) != kstages.workspace_dir(cache, tree, get_profile("i386"))


def test_engine_fragments_join_the_kernel_of_their_targets() -> None:
    tree = KernelTree("k", KernelSource("debian", "linux-source-6.1"), (), "tinyconfig",
                      (FRAGMENTS_DIR / "common.config",))
    criu = FRAGMENTS_DIR / "engine" / "criu.config"
    for profile in builtin_profiles().values():
        paths = kstages.fragment_paths(tree, profile, FRAGMENTS_DIR)
        assert (criu in paths) == ("criu" in profile.engines), profile.name
        for engine in profile.engines:
            assert (FRAGMENTS_DIR / "engine" / f"{engine}.config").is_file()
        # the user's first, the target's own last (it has the last word on arch facts)
        assert paths[0] == FRAGMENTS_DIR / "common.config"
        assert paths[-1] == FRAGMENTS_DIR / profile.kconfig_fragments[-1]
    assert get_profile("x86_64").engines == ("criu",) and get_profile("ppc64le").engines == ("criu",)


def test_missing_engine_fragment_is_a_configure_error(tmp_path: Path) -> None:
    tree = KernelTree("k", KernelSource("debian", "linux-source-6.1"), (), "tinyconfig", ())
    profile = get_profile("i386").with_overrides({"engines": ["linux-cr"]})
    with pytest.raises(kstages.KernelStageError, match=r"engine/linux-cr\.config"):
        kstages.build_key("tree", tree, profile, FRAGMENTS_DIR)


def test_buildbench_one_file_patch_applies(tmp_path: Path) -> None:
    from crlab.buildbench import CHANGED_FILE, one_file_patch

    tree = tmp_path / "src"
    (tree / "kernel").mkdir(parents=True)
    (tree / CHANGED_FILE).write_text("".join(f"line {i}\n" for i in range(10)))
    patch = one_file_patch(tree, tmp_path / "one.patch")
    key, patched = kstages.apply_patches("src", tree, (patch,), Cache(tmp_path / "cache"), tmp_path / "log")
    assert (patched / CHANGED_FILE).read_text().endswith("int crlab_buildbench_marker;\n")


def test_buildbench_rejects_unknown_target() -> None:
    from crlab.buildbench import main

    assert main(["--target", "vax"]) == 2


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))


def test_a_source_that_incbins_a_file_bypasses_ccache(tmp_path: Path) -> None:
    """ccache cannot see a file pulled in with .incbin (ARM's piggy.S and its piggy_data): such a
    source goes to the compiler directly, everything else through ccache."""
    import os

    from crlab.kernel import cc_wrapper

    wrapper = cc_wrapper(Cache(tmp_path / "cache"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    for name in ("ccache", "fake-gcc"):
        (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\n')
        (bin_dir / name).chmod(0o755)
    (tmp_path / "piggy.S").write_text('\t.section .piggydata, "a"\n\t.incbin "arch/arm/boot/compressed/piggy_data"\n')
    (tmp_path / "fork.c").write_text("int x;\n")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    for source in ("piggy.S", "fork.c"):
        subprocess.run([str(wrapper), "fake-gcc", "-c", source, "-o", "out.o"], cwd=tmp_path, env=env, check=True)
    assert calls.read_text().splitlines() == ["fake-gcc -c piggy.S -o out.o", "ccache fake-gcc -c fork.c -o out.o"]
