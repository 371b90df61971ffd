"""Pure-logic parts of the kernel stages: patch application and Kconfig symbol checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from crlab import kernel as kstages
from crlab.cache import Cache


def _tree(tmp_path: Path) -> Path:
    tree = tmp_path / "src"
    (tree / "kernel").mkdir(parents=True)
    (tree / "kernel" / "fork.c").write_text("".join(f"line {i}\n" for i in range(1, 41)))
    (tree / "Makefile").write_text("VERSION = 6\n")
    return tree


GOOD = """--- a/kernel/fork.c
+++ b/kernel/fork.c
@@ -3,3 +3,4 @@
 line 3
 line 4
+added by patch 1
 line 5
"""

# the first hunk applies, the second does not: nothing of the patch may stay behind
BAD_SECOND_HUNK = """--- a/kernel/fork.c
+++ b/kernel/fork.c
@@ -10,3 +10,4 @@
 line 10
 line 11
+fine
 line 12
@@ -30,3 +31,4 @@
 line 30
 this line is not in the file
+never
 line 32
"""


def test_patches_apply_in_order(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    patch = tmp_path / "0001-good.patch"
    patch.write_text(GOOD)
    cache = Cache(tmp_path / "cache")
    key, patched = kstages.apply_patches("src", tree, (patch,), cache, tmp_path / "log")
    assert "added by patch 1" in (patched / "kernel/fork.c").read_text()
    assert "added by patch 1" not in (tree / "kernel/fork.c").read_text(), "the pristine tree was modified"
    again_key, again = kstages.apply_patches("src", tree, (patch,), cache, tmp_path / "log")
    assert (again_key, again) == (key, patched)


def test_failing_patch_names_patch_and_hunk_and_leaves_no_tree(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    good, bad = tmp_path / "0001-good.patch", tmp_path / "0002-bad.patch"
    good.write_text(GOOD)
    bad.write_text(BAD_SECOND_HUNK)
    cache = Cache(tmp_path / "cache")
    with pytest.raises(kstages.KernelStageError) as info:
        kstages.apply_patches("src", tree, (good, bad), cache, tmp_path / "log")
    message = str(info.value)
    assert "patch 2 (0002-bad.patch)" in message
    assert "hunk #2" in message and "kernel/fork.c" in message
    assert info.value.stage == "patch"
    trees = cache.root / "trees"
    assert not trees.exists() or not any(p.name[0] != "." for p in trees.iterdir()), "half-patched tree left"
    assert not trees.exists() or not list(trees.iterdir())
    assert "added by patch 1" not in (tree / "kernel/fork.c").read_text()


@pytest.mark.parametrize("header,reason", [
    ("--- a/../../etc/passwd\n+++ b/../../etc/passwd\n", "leaves the kernel tree"),
    ("--- /etc/passwd\n+++ /etc/passwd\n", "leaves the kernel tree"),
    ("diff --git a/x b/x\nnew file mode 120000\n--- /dev/null\n+++ b/x\n", "symlink"),
])
def test_untrusted_patch_paths_are_refused(tmp_path: Path, header: str, reason: str) -> None:
    tree = _tree(tmp_path)
    patch = tmp_path / "evil.patch"
    patch.write_text(header + "@@ -1 +1 @@\n-a\n+b\n")
    with pytest.raises(kstages.KernelStageError, match=reason):
        kstages.apply_patches("src", tree, (patch,), Cache(tmp_path / "cache"), tmp_path / "log")


def test_lost_symbols_are_all_named(tmp_path: Path) -> None:
    fragment = tmp_path / "want.config"
    fragment.write_text("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\nCONFIG_D=\"x\"\nCONFIG_E=y\n")
    final = tmp_path / ".config"
    final.write_text("CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_D=\"y\"\nCONFIG_E=y\n")
    lost = kstages.check_requested_symbols([fragment], final)
    assert [entry.split("=")[0] for entry in lost] == ["CONFIG_B", "CONFIG_C", "CONFIG_D"]
    assert "want.config:3" in lost[1] and "ended up not set" in lost[1]


def test_later_fragment_wins(tmp_path: Path) -> None:
    first, second = tmp_path / "a.config", tmp_path / "b.config"
    first.write_text("CONFIG_SMP=y\n")
    second.write_text("# CONFIG_SMP is not set\n")
    final = tmp_path / ".config"
    final.write_text("# CONFIG_SMP is not set\n")
    assert kstages.check_requested_symbols([first, second], final) == []


def test_a_failed_build_is_named_by_its_first_compiler_error(tmp_path: Path) -> None:
    from crlab.kernel import first_compiler_error

    log = tmp_path / "build.log"
    log.write_text("  CC      /c/objtrees/k-x86_64/obj/kernel/bounds.s\n"
                   "/c/objtrees/k-x86_64/src/kernel/bounds.c: In function 'main':\n"
                   "/c/objtrees/k-x86_64/src/kernel/bounds.c:18:9: error: 'crlab_undeclared' undeclared "
                   "(first use in this function)\n"
                   "../src/kernel/sys.c:7:1: error: a later one\n"
                   "make[1]: *** Waiting for unfinished jobs....\n")
    assert first_compiler_error(log) == ("kernel/bounds.c:18:9: error: 'crlab_undeclared' undeclared "
                                         "(first use in this function)")
    log.write_text("ld: kernel/sys.o: in function `f':\nsys.c:(.text+0x5): undefined reference to `g'\n")
    assert first_compiler_error(log) == "sys.c:(.text+0x5): undefined reference to `g'"
    log.write_text("make: *** No rule to make target 'x'.  Stop.\n")
    assert first_compiler_error(log) is None
