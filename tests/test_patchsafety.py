"""Hostile patches are refused before anything is written: each case goes through the real patch
stage (crlab.kernel.apply_patches, which runs git apply) on a small tree, and the test checks that
git apply never ran, no patched tree was published and nothing appeared outside the tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from crlab import kernel as kstages
from crlab.cache import Cache
from crlab.patchsafety import MAX_PATCH_BYTES, check_patch_file, check_patch_text

FORK = "".join(f"line {i}\n" for i in range(1, 11))


def _tree(tmp_path: Path) -> Path:
    tree = tmp_path / "src"
    (tree / "kernel").mkdir(parents=True)
    (tree / "kernel" / "fork.c").write_text(FORK)
    (tree / "Makefile").write_text("VERSION = 6\n")
    (tmp_path / "outside").mkdir()
    return tree


def _apply(tmp_path: Path, tree: Path, text: str | None = None, patch: Path | None = None) -> Path:
    if patch is None:
        patch = tmp_path / "0001-hostile.patch"
        patch.write_text(text or "")
    cache = Cache(tmp_path / "cache")
    key, patched = kstages.apply_patches("src", tree, (patch,), cache, tmp_path / "patch.log")
    return patched


def _assert_refused_and_untouched(tmp_path: Path, tree: Path, text: str | None, reason: str,
                                  patch: Path | None = None) -> None:
    with pytest.raises(kstages.KernelStageError, match=reason) as info:
        _apply(tmp_path, tree, text, patch)
    assert info.value.stage == "patch"
    assert str(info.value).startswith("refusing patch 0001-hostile.patch: 0001-hostile.patch:")
    log = tmp_path / "patch.log"
    assert not log.exists() or "git apply" not in log.read_text(), "git apply ran"
    trees = tmp_path / "cache" / "trees"
    assert not trees.exists() or not list(trees.iterdir()), "a tree was published or left half-made"
    assert list((tmp_path / "outside").iterdir()) == [], "something was written outside the tree"
    assert (tree / "kernel" / "fork.c").read_text() == FORK


RENAME_OUT = """diff --git a/kernel/fork.c b/../outside/fork.c
similarity index 100%
rename from kernel/fork.c
rename to ../outside/fork.c
"""

COPY_OUT = """diff --git a/kernel/fork.c b/../outside/copy.c
similarity index 100%
copy from kernel/fork.c
copy to ../outside/copy.c
"""

RENAME_ABSOLUTE = RENAME_OUT.replace("../outside/fork.c", "/etc/crlab-evil.c")

NEW_SYMLINK = """diff --git a/kernel/link b/kernel/link
new file mode 120000
index 0000000..1c2a4c5
--- /dev/null
+++ b/kernel/link
@@ -0,0 +1 @@
+../../outside
\\ No newline at end of file
"""

CHANGE_SYMLINK = """diff --git a/kernel/link b/kernel/link
index 1c2a4c5..8d1c8b6 120000
--- a/kernel/link
+++ b/kernel/link
@@ -1 +1 @@
-fork.c
+/etc/passwd
"""

MODE_TO_SYMLINK = """diff --git a/kernel/fork.c b/kernel/fork.c
old mode 100644
new mode 120000
"""

QUOTED_ESCAPE = '''--- "a/\\056\\056/outside/x.c"
+++ "b/\\056\\056/outside/x.c"
@@ -0,0 +1 @@
+escaped
'''

INTO_DOT_GIT = """--- /dev/null
+++ b/.git/hooks/post-checkout
@@ -0,0 +1 @@
+#!/bin/sh
"""

HUGE_HUNK = """--- a/kernel/fork.c
+++ b/kernel/fork.c
@@ -1,2000000 +1,2000001 @@
 line 1
+x
"""

HUGE_BINARY = """diff --git a/kernel/blob.bin b/kernel/blob.bin
new file mode 100644
index 0000000..e69de29
GIT binary patch
literal 4000000000
zcmV?d00001

literal 0
HcmV?d00001

"""


@pytest.mark.parametrize("text,reason", [
    pytest.param(RENAME_OUT, "'../outside/fork.c' leaves the kernel tree", id="rename-outside"),
    pytest.param(COPY_OUT, "'../outside/copy.c' leaves the kernel tree", id="copy-outside"),
    pytest.param(RENAME_ABSOLUTE, "'/etc/crlab-evil.c' is absolute", id="rename-absolute"),
    pytest.param(NEW_SYMLINK, "creates or changes a symlink", id="new-symlink"),
    pytest.param(CHANGE_SYMLINK, "creates or changes a symlink", id="change-symlink"),
    pytest.param(MODE_TO_SYMLINK, "creates or changes a symlink", id="mode-to-symlink"),
    pytest.param(QUOTED_ESCAPE, "'../outside/x.c' leaves the kernel tree", id="quoted-octal-escape"),
    pytest.param(INTO_DOT_GIT, "writes into a .git directory", id="dot-git"),
    pytest.param(HUGE_HUNK, "a hunk of 2000000 lines", id="absurd-hunk"),
    pytest.param(HUGE_BINARY, "a binary file of 4000000000 bytes", id="absurd-binary"),
])
def test_hostile_patch_is_refused_before_anything_is_written(tmp_path: Path, text: str, reason: str) -> None:
    tree = _tree(tmp_path)
    _assert_refused_and_untouched(tmp_path, tree, text, reason)


def test_patch_writing_through_a_symlink_in_the_tree_is_refused(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    (tree / "drivers").symlink_to(tmp_path / "outside")  # e.g. shipped in a tarball source
    text = "--- /dev/null\n+++ b/drivers/evil.c\n@@ -0,0 +1 @@\n+written through the link\n"
    _assert_refused_and_untouched(tmp_path, tree, text, "goes through the symbolic link 'drivers'")


def test_absurdly_large_patch_is_refused_without_reading_it(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    patch = tmp_path / "0001-hostile.patch"
    with open(patch, "wb") as fh:  # sparse: the size is real, the disk use is not
        fh.truncate(MAX_PATCH_BYTES + 1)
    _assert_refused_and_untouched(tmp_path, tree, None, f"{MAX_PATCH_BYTES + 1} bytes, more than", patch=patch)


def test_ordinary_patch_with_rename_inside_the_tree_applies(tmp_path: Path) -> None:
    """The control: what the checks look at is accepted when it stays inside the tree."""
    tree = _tree(tmp_path)
    text = ("diff --git a/kernel/fork.c b/kernel/fork2.c\nsimilarity index 100%\n"
            "rename from kernel/fork.c\nrename to kernel/fork2.c\n"
            "diff --git a/kernel/new.c b/kernel/new.c\nnew file mode 100644\n"
            "--- /dev/null\n+++ b/kernel/new.c\n@@ -0,0 +1 @@\n+int x;\n")
    assert check_patch_text(text, "ok.patch") == []
    patched = _apply(tmp_path, tree, text)
    assert (patched / "kernel" / "fork2.c").read_text() == FORK
    assert not (patched / "kernel" / "fork.c").exists()
    assert (patched / "kernel" / "new.c").read_text() == "int x;\n"
    assert (tree / "kernel" / "fork.c").exists(), "the pristine tree was modified"


def test_every_problem_is_named_with_its_line(tmp_path: Path) -> None:
    problems = check_patch_text(RENAME_OUT + NEW_SYMLINK, "evil.patch")
    assert problems[0].startswith("evil.patch:1: ")
    assert any(p.startswith("evil.patch:4: ") and "leaves the kernel tree" in p for p in problems)
    assert any(p.startswith("evil.patch:6: ") and "symlink" in p for p in problems)
    # deleting a symlink writes nothing through it
    assert check_patch_text("diff --git a/l b/l\ndeleted file mode 120000\n", "rm.patch") == []


def test_file_wrapper_reports_an_unreadable_patch(tmp_path: Path) -> None:
    assert check_patch_file(tmp_path / "missing.patch")[0].startswith("missing.patch: cannot read")
