"""Reading a patch series out of mail (crlab.mbox): fast, no kernel.

tests/data/mbox/panic-comments.mbox is lore-style mboxrd: a v1 series (cover letter, 2 patches, a
review without trailers), an unrelated message, then v2 (cover letter, 2/2 as an attachment sent
before 1/2, 1/2 quoted-printable, a Reviewed-by on 1/2 and a Tested-by on the cover letter).  The
patches are `git format-patch` output of real changes to linux-source-6.1's kernel/panic.c."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from crlab import mbox
from crlab.cache import Cache
from crlab.config import KernelSource
from crlab.kernel import prepare_source
from crlab.mbox import MailError

DATA = Path(__file__).parent / "data" / "mbox"


def test_newest_revision_in_order_with_trailers() -> None:
    series = mbox.load_series(DATA / "panic-comments.mbox")
    assert (series.version, series.total) == (2, 2)
    assert series.cover_subject == "panic: two comment fixes"
    first, second = series.patches
    assert first.subject == "panic: fix the spelling of throughout"
    assert second.subject == "panic: fix the grammar of the panic_smp_self_stop() comment"
    # the review of 1/2 goes to 1/2 only, the cover letter's Tested-by to both
    assert first.trailers == ["Reviewed-by: Bob Reviewer <bob@example.org>",
                              "Tested-by: Carol Tester <carol@example.org>"]
    assert second.trailers == ["Tested-by: Carol Tester <carol@example.org>"]
    # a quoted Signed-off-by in the review is not a trailer given by the reviewer
    assert not any("Dan" in t for t in first.trailers)
    # v2's fix, not v1's
    assert "+ * Stop ourselves in panic" in second.diff
    assert "our self" not in second.diff


def test_attachment_and_mboxrd_unescaping() -> None:
    second = mbox.load_series(DATA / "panic-comments.mbox").patches[1]
    assert second.attachment.endswith(".patch")
    # the attached format-patch file's own From:/Date: are the author's
    assert second.author == "Dan Developer <dan@example.org>"
    assert second.date == "Fri, 20 Nov 2026 14:00:00 +0000"
    # '>From the point of view' in the mbox is 'From the point of view' in the commit message
    assert "\nFrom the point of view of the comment" in second.description
    assert ">From" not in second.format_patch()


def test_quoted_printable_decoded() -> None:
    raw = (DATA / "panic-comments.mbox").read_text()
    assert "Content-Transfer-Encoding: quoted-printable" in raw
    first = mbox.load_series(DATA / "panic-comments.mbox").patches[0]
    assert "=3D" not in first.diff and "=\n" not in first.diff
    assert first.diff.startswith("diff --git a/kernel/panic.c b/kernel/panic.c\n")


def test_format_patch_round_trip_applies_with_git_am(tmp_path: Path) -> None:
    """What crlab writes is read by `git am` as the same commits, trailers included."""
    series = mbox.load_series(DATA / "panic-comments.mbox")
    paths = series.write(tmp_path / "series")
    assert (tmp_path / "series" / "series").read_text().split() == [p.name for p in paths]
    repo = tmp_path / "repo"
    (repo / "kernel").mkdir(parents=True)
    _, tree = prepare_source(KernelSource("debian", "linux-source-6.1"), Cache(), tmp_path / "source.log")
    shutil.copy(tree / "kernel" / "panic.c", repo / "kernel" / "panic.c")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "base"], check=True)
    subprocess.run([*git, "am", "-q", *map(str, paths)], check=True)
    log = subprocess.run([*git, "log", "--format=%an|%s|%b", "-2", "--reverse"], check=True, text=True,
                         capture_output=True).stdout
    assert "Dan Developer|panic: fix the spelling of throughout|" in log
    assert "Reviewed-by: Bob Reviewer <bob@example.org>" in log
    assert "ourselves" in (repo / "kernel" / "panic.c").read_text()


def test_single_message_and_maildir(tmp_path: Path) -> None:
    single = mbox.load_series(DATA / "single-patch.eml")
    assert [p.subject for p in single.patches] == ["panic: fix the spelling of throughout"]
    # git keeps no empty directories: the shipped maildir has only new/, so
    # make the real thing (cur/, new/, tmp/) from it as a mail client would.
    box = tmp_path / "maildir"
    shutil.copytree(DATA / "maildir" / "new", box / "new")
    (box / "cur").mkdir()
    (box / "tmp").mkdir()
    maildir = mbox.load_series(box)
    assert maildir.version == 2
    assert [p.number for p in maildir.patches] == [1, 2]


@pytest.mark.parametrize(("name", "expected"), [
    ("hostile-path-outside.eml", "path '../../../etc/cron.d/evil' leaves the kernel tree"),
    ("hostile-symlink.eml", "symlink"),
    ("hostile-absurd-size.eml", "1000000000 lines"),
    ("hostile-undecodable.eml", "undecodable part"),
    ("not-a-patch.eml", "not a patch"),
])
def test_hostile_input_refused(name: str, expected: str) -> None:
    with pytest.raises(MailError) as caught:
        mbox.load_series(DATA / name)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)  # one line for the user


def test_absurd_mailbox_size_refused(tmp_path: Path) -> None:
    big = tmp_path / "huge.mbox"
    with open(big, "wb") as fh:  # sparse: costs no disk
        fh.write(b"From mboxrd@z Thu Jan  1 00:00:00 1970\n")
        fh.truncate(mbox.MAX_INPUT_BYTES + 1)
    with pytest.raises(MailError, match="MiB crlab reads"):
        mbox.load_series(big)


def test_incomplete_newest_revision_refused(tmp_path: Path) -> None:
    text = (DATA / "panic-comments.mbox").read_text()
    # drop v2 1/2: the newest revision is then incomplete, and crlab says which patch is missing
    messages = text.split("From mboxrd@z ")
    kept = [m for m in messages if "Subject: [PATCH v2 1/2]" not in m]
    (tmp_path / "partial.mbox").write_text("From mboxrd@z ".join(kept))
    with pytest.raises(MailError, match=r"series v2 is incomplete: patch\(es\) 1/2"):
        mbox.load_series(tmp_path / "partial.mbox")


def test_not_a_maildir(tmp_path: Path) -> None:
    shutil.copy(DATA / "single-patch.eml", tmp_path / "x.eml")
    with pytest.raises(MailError, match="not a maildir"):
        mbox.load_series(tmp_path)
