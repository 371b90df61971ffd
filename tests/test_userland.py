"""crlab.userland: ELF reading, apt output parsing and tree checks (no downloads), plus slow tests
that fetch real Debian packages, and checks of whatever guest programs the local cache already holds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from crlab import userland
from crlab.cache import Cache
from crlab.targets import TargetProfile, builtin_profiles, get_profile
from crlab.userland import (
    UserlandError,
    check_tree,
    debian,
    elf_info,
    elf_needed,
    expected_elf,
    sourcebuild,
)
from tests.conftest import missing_prerequisite

HOST_X86_64 = os.uname().machine == "x86_64"
C_PROGRAM = '#include <stdio.h>\nint main(void) { puts("crlab"); return 0; }\n'


def _compile(tmp_path: Path, cc: str, *flags: str) -> Path:
    if shutil.which(cc) is None:
        missing_prerequisite(f"{cc} is not installed (crlab's host set-up installs Debian's cross compilers)")
    src = tmp_path / "hello.c"
    src.write_text(C_PROGRAM)
    out = tmp_path / f"hello-{cc}{''.join(flags)}"
    subprocess.run([cc, *flags, "-O1", "-o", str(out), str(src)], check=True, capture_output=True)
    return out


# --- ELF headers ---------------------------------------------------------------------------------


@pytest.mark.skipif(not HOST_X86_64, reason="expects an x86-64 host")
def test_elf_info_host_ls() -> None:
    info = elf_info("/bin/ls")
    assert (info.bits, info.endian, info.machine) == (64, "little", "EM_X86_64")
    assert info.interp == "/lib64/ld-linux-x86-64.so.2"
    assert not info.is_static
    assert "libc.so.6" in elf_needed("/bin/ls")


@pytest.mark.skipif(not HOST_X86_64, reason="expects an x86-64 host")
def test_elf_info_static_and_dynamic_host_gcc(tmp_path: Path) -> None:
    static = elf_info(_compile(tmp_path, "gcc", "-static"))
    assert static == (64, "little", "EM_X86_64", None, True)
    dynamic = _compile(tmp_path, "gcc")
    assert elf_info(dynamic).interp == "/lib64/ld-linux-x86-64.so.2"
    assert not elf_info(dynamic).is_static
    assert elf_needed(dynamic) == ["libc.so.6"]


@pytest.mark.parametrize(
    "cc, want",
    [
        ("i686-linux-gnu-gcc", (32, "little", "EM_386")),
        ("arm-linux-gnueabihf-gcc", (32, "little", "EM_ARM")),
        ("powerpc64le-linux-gnu-gcc", (64, "little", "EM_PPC64")),
        ("powerpc64-linux-gnu-gcc", (64, "big", "EM_PPC64")),
    ],
)
def test_elf_info_cross_compiled(tmp_path: Path, cc: str, want: tuple[int, str, str]) -> None:
    binary = _compile(tmp_path, cc, "-static")
    info = elf_info(binary)
    assert (info.bits, info.endian, info.machine) == want
    assert info.is_static and info.interp is None
    dynamic = elf_info(_compile(tmp_path, cc))
    assert dynamic.interp and not dynamic.is_static


def test_elf_info_rejects_non_elf(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho hi\n" * 10)
    with pytest.raises(ValueError):
        elf_info(script)


def test_expected_elf_of_builtin_targets() -> None:
    assert expected_elf(get_profile("x86_64")) == (64, "little", "EM_X86_64")
    assert expected_elf(get_profile("i386")) == (32, "little", "EM_386")
    assert expected_elf(get_profile("armv7")) == (32, "little", "EM_ARM")
    assert expected_elf(get_profile("ppc64le")) == (64, "little", "EM_PPC64")
    assert expected_elf(get_profile("ppc64")) == (64, "big", "EM_PPC64")


# --- apt output, config edits ----------------------------------------------------------------------

DEPENDS = """\
prog:armhf
  Depends: libc6:armhf
 |Depends: libfoo1:armhf
  Depends: libfoo1-alt:armhf
  PreDepends: <awk>
    mawk
    gawk
libc6:armhf
  Depends: libgcc-s1:armhf
<awk>
mawk
  Depends: libc6
libgcc-s1:armhf
"""


def test_parse_depends() -> None:
    graph = debian.parse_depends(DEPENDS)
    assert graph["prog:armhf"] == [["libc6:armhf"], ["libfoo1:armhf", "libfoo1-alt:armhf"], ["mawk", "gawk"]]
    assert graph["libc6:armhf"] == [["libgcc-s1:armhf"]]
    assert graph["libgcc-s1:armhf"] == []
    assert "<awk>" not in graph


def test_set_kconfig(tmp_path: Path) -> None:
    config = tmp_path / ".config"
    config.write_text("CONFIG_A=y\n# CONFIG_STATIC is not set\nCONFIG_TC=y\nCONFIG_KEEP=m\n")
    sourcebuild.set_kconfig(config, {"CONFIG_STATIC": "y", "CONFIG_TC": None, "CONFIG_NEW": None})
    assert config.read_text().splitlines() == [
        "CONFIG_A=y",
        "CONFIG_STATIC=y",
        "# CONFIG_TC is not set",
        "CONFIG_KEEP=m",
        "# CONFIG_NEW is not set",
    ]


def test_debian_userland_needs_a_debian_arch() -> None:
    profile = get_profile("ppc64").with_overrides({"busybox_from": "debian"})
    with pytest.raises(UserlandError, match="busybox for ppc64: .*no debian_arch"):
        userland.busybox(profile, Cache(Path("/nonexistent-crlab-cache")))


def test_apt_memo_reuses_answers(tmp_path: Path) -> None:
    apt = userland.Apt(Cache(tmp_path))
    assert apt.memo("question", lambda: {"answer": 42}) == {"answer": 42}

    def fail() -> None:
        raise AssertionError("the memo should have answered")

    assert apt.memo("question", fail) == {"answer": 42}
    assert len(list((tmp_path / "userland-memo").glob("*.json"))) == 1


def test_not_root_errors_name_the_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(debian, "is_root", lambda: False)
    monkeypatch.setattr(debian, "APT_LISTS", tmp_path / "lists")  # no lists at all
    apt = userland.Apt(Cache(tmp_path / "cache"))
    with pytest.raises(UserlandError) as err:
        apt.ensure_arch("s390x", "busybox for zz")
    assert "busybox for zz" in str(err.value)
    assert "dpkg --add-architecture s390x\n  apt-get update" in str(err.value)
    deb = {"types": ["deb"], "uris": ["http://mirror/debian"], "suites": ["bookworm"], "signed_by": "/k.gpg"}
    monkeypatch.setattr(debian, "_source_entries", lambda: [deb])
    monkeypatch.setattr(debian, "_os_codename", lambda: "bookworm")
    with pytest.raises(UserlandError) as err:
        apt.ensure_deb_src("busybox for ppc64")
    assert "deb-src [signed-by=/k.gpg] http://mirror/debian bookworm main" in str(err.value)
    assert "/etc/apt/sources.list.d/crlab-src.list" in str(err.value)
    assert "apt-get update" in str(err.value)


# --- trees -----------------------------------------------------------------------------------------


def test_resolve_in_root(tmp_path: Path) -> None:
    (tmp_path / "usr/lib/x").mkdir(parents=True)
    (tmp_path / "usr/lib/x/ld.so").write_text("")
    (tmp_path / "lib").symlink_to("usr/lib")
    (tmp_path / "lib64").mkdir()
    (tmp_path / "lib64/ld.so").symlink_to("/lib/x/ld.so")  # absolute: resolved inside the tree
    (tmp_path / "loop").symlink_to("loop")
    assert userland.resolve_in_root(tmp_path, "/lib64/ld.so") == tmp_path / "usr/lib/x/ld.so"
    assert userland.resolve_in_root(tmp_path, "/lib/x/../x/ld.so") == tmp_path / "usr/lib/x/ld.so"
    assert userland.resolve_in_root(tmp_path, "/lib/x/missing") is None
    assert userland.resolve_in_root(tmp_path, "/loop") is None


@pytest.mark.skipif(not HOST_X86_64, reason="uses the host's x86-64 glibc")
def test_check_tree_adds_loader_link_and_finds_missing_libraries(tmp_path: Path) -> None:
    prog = _compile(tmp_path, "gcc")
    root = tmp_path / "root"
    libdir = root / "lib/x86_64-linux-gnu"
    libdir.mkdir(parents=True)
    for lib in ("libc.so.6", "ld-linux-x86-64.so.2"):
        shutil.copyfile(Path("/lib/x86_64-linux-gnu") / lib, libdir / lib)
    (root / "usr/bin").mkdir(parents=True)
    shutil.copyfile(prog, root / "usr/bin/hello")
    notes = check_tree(root, get_profile("x86_64"), "test")
    assert notes == ["added /lib64/ld-linux-x86-64.so.2 -> ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"]
    assert os.readlink(root / "lib64/ld-linux-x86-64.so.2") == "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    assert check_tree(root, get_profile("x86_64"), "test") == []  # nothing left to fix
    (libdir / "libc.so.6").unlink()
    with pytest.raises(UserlandError, match=r"usr/bin/hello: libc\.so\.6"):
        check_tree(root, get_profile("x86_64"), "test")
    with pytest.raises(UserlandError, match="not i386"):
        check_tree(root, get_profile("i386"), "test")


# --- every target's guest programs, fetched or built (cache hits after the first run) -------------


def _profile_for(info: dict[str, object]) -> TargetProfile | None:
    for profile in builtin_profiles().values():
        if info.get("from") == "debian" and info.get("arch") == profile.debian_arch:
            return profile
        if info.get("from") == "source" and info.get("cross_compile") == profile.cross_compile:
            return profile
    return None


@pytest.mark.boot
@pytest.mark.slow
def test_guest_programs_of_every_target_have_the_right_elf_headers() -> None:
    root = Cache().root
    for target in builtin_profiles().values():  # what the boot tests use; built here if missing
        userland.busybox(target)
        userland.dropbear(target)
    checked = 0
    for kind, rels in (
        ("userland-busybox", ["busybox"]),
        ("userland-dropbear", ["root/usr/sbin/dropbear", "root/usr/bin/dropbearkey"]),
    ):
        for entry in sorted((root / kind).glob("*/.complete")):
            info = json.loads((entry.parent / "info.json").read_text())
            profile = _profile_for(info)
            if profile is None:
                continue
            for rel in rels:
                got = elf_info(entry.parent / rel)
                assert (got.bits, got.endian, got.machine) == expected_elf(profile), entry.parent
                assert got.is_static, entry.parent / rel
                checked += 1
    by_arch = {p.debian_arch: p for p in builtin_profiles().values() if p.debian_arch}
    for entry in sorted((root / "deb-tree").glob("*/.complete")):
        manifest = json.loads((entry.parent / "manifest.json").read_text())
        dropbear = entry.parent / "root/usr/sbin/dropbear"
        if "dropbear-bin" not in manifest["roots"] or manifest["arch"] not in by_arch:
            continue
        got = elf_info(dropbear)
        assert (got.bits, got.endian, got.machine) == expected_elf(by_arch[manifest["arch"]])
        assert got.interp and userland.resolve_in_root(entry.parent / "root", got.interp) is not None
        checked += 1
    assert checked >= 2 * len(builtin_profiles()), f"only {checked} programs checked"


# --- real downloads --------------------------------------------------------------------------------


def _no_subprocess(*args: object, **kwargs: object) -> None:
    raise AssertionError(f"a cache hit ran a command: {args}")


@pytest.mark.slow
@pytest.mark.skipif(not HOST_X86_64, reason="runs the fetched busybox")
def test_busybox_x86_64_from_debian(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = Cache(tmp_path / "cache")
    profile = get_profile("x86_64")
    binary = userland.busybox(profile, cache)
    info = elf_info(binary)
    assert (info.bits, info.endian, info.machine, info.is_static) == (64, "little", "EM_X86_64", True)
    out = subprocess.run([str(binary), "echo", "hello"], capture_output=True, text=True, check=True)
    assert out.stdout == "hello\n"
    meta = json.loads((binary.parent / "info.json").read_text())
    assert meta["package"] == "busybox-static" and meta["arch"] == "amd64"
    # a second call is a cache hit: no apt, no subprocess at all
    monkeypatch.setattr(subprocess, "run", _no_subprocess)
    monkeypatch.setattr(subprocess, "Popen", _no_subprocess)
    assert userland.busybox(profile, cache) == binary
    monkeypatch.undo()
    desc = userland.describe(profile, cache)  # also looks up dropbear's closure (apt, no download)
    assert desc["busybox"] == {
        "from": "debian",
        "package": "busybox-static",
        "version": meta["version"],
        "arch": "amd64",
    }


@pytest.mark.slow
@pytest.mark.skipif(not HOST_X86_64, reason="runs the fetched dropbear")
def test_dropbear_x86_64_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = Cache(tmp_path / "cache")
    root = userland.dropbear(get_profile("x86_64"), cache)
    manifest = json.loads((root.parent / "manifest.json").read_text())
    assert {"dropbear-bin", "libc6", "libtomcrypt1", "zlib1g"} <= set(manifest["kept"])
    assert not (root / "usr/share").exists()
    info = elf_info(root / "usr/sbin/dropbear")
    assert info.interp and userland.resolve_in_root(root, info.interp) is not None
    if os.geteuid() == 0:  # the tree alone is enough to run it
        chroot = tmp_path / "chroot"
        shutil.copytree(root, chroot, symlinks=True)
        out = subprocess.run(["chroot", str(chroot), "/usr/sbin/dropbear", "-V"], capture_output=True, text=True)
        assert "Dropbear v" in out.stdout + out.stderr
    # a second call is a cache hit: no apt, no subprocess at all
    monkeypatch.setattr(subprocess, "run", _no_subprocess)
    monkeypatch.setattr(subprocess, "Popen", _no_subprocess)
    assert userland.dropbear(get_profile("x86_64"), cache) == root


# --- static C programs of our own, for every target with a cross gcc ------------------------------

HEADER = '#define GREETING "crlab static"\n'
WITH_HEADER = '#include <stdio.h>\n#include "greeting.h"\nint main(void) { puts(GREETING); return 0; }\n'


def test_build_static_programs_for_every_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "suite"
    src.mkdir()
    (src / "greeting.h").write_text(HEADER)
    (src / "hello.c").write_text(WITH_HEADER)
    (src / "true.c").write_text("int main(void) { return 0; }\n")
    sources = [src / "hello.c", src / "true.c"]
    cache = Cache(tmp_path / "cache")
    built = {}
    for profile in builtin_profiles().values():
        if shutil.which(f"{profile.cross_compile}gcc") is None:
            pytest.fail(f"{profile.cross_compile}gcc is missing (run `harness.py doctor --install`)")
        out = userland.build_static_programs(profile, sources, cache, extra_cflags=("-DUNUSED=1",))
        assert sorted(p.name for p in out.iterdir()) == ["hello", "true"]
        for program in out.iterdir():
            info = elf_info(program)
            assert (info.bits, info.endian, info.machine) == expected_elf(profile), program
            assert info.is_static
        built[profile.name] = out
    assert len(set(built.values())) == len(built), "targets share an entry"
    if HOST_X86_64:
        run = subprocess.run([str(built["x86_64"] / "hello")], capture_output=True, text=True, check=True)
        assert run.stdout == "crlab static\n"
    # unchanged inputs: a cache hit without any command; a changed header: a new entry
    monkeypatch.setattr(subprocess, "Popen", _no_subprocess)
    monkeypatch.setattr(subprocess, "run", _no_subprocess)
    x86 = get_profile("x86_64")
    assert userland.build_static_programs(x86, sources, cache, extra_cflags=("-DUNUSED=1",)) == built["x86_64"]
    monkeypatch.undo()
    (src / "greeting.h").write_text('#define GREETING "changed"\n')
    assert userland.build_static_programs(x86, sources, cache, extra_cflags=("-DUNUSED=1",)) != built["x86_64"]


def test_build_static_programs_names_the_failing_source(tmp_path: Path) -> None:
    bad = tmp_path / "broken.c"
    bad.write_text("int main(void) { return undefined_symbol; }\n")
    expected = r"(?s)static programs \(broken\.c\) for i386: .*src/broken\.c:1:25: error: .undefined_symbol"
    with pytest.raises(UserlandError, match=expected):
        userland.build_static_programs(get_profile("i386"), [bad], Cache(tmp_path / "cache"))
    assert (tmp_path / "cache/logs").is_dir(), "the failed build's log is kept"
