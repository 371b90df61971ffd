"""`harness.py repro` (crlab.workflows.repro): hostile mail is refused before anything is built; a
real series from tests/data/mbox/ is applied to linux-6.1, rebuilt (one file, ccache-carried) and
booted on x86_64, with the named suite and with the C reproducer the mail carries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from crlab.config import load_config
from crlab.mbox import load_series
from crlab.model import Status
from crlab.paths import CONFIGS_DIR, REPO_ROOT
from crlab.workflows import repro
from tests.conftest import require_qemu

MAIL = Path(__file__).parent / "data" / "mbox"


@pytest.mark.parametrize(("name", "expected"), [
    ("hostile-path-outside.eml", "leaves the kernel tree"),
    ("hostile-symlink.eml", "symlink"),
    ("hostile-absurd-size.eml", "a hunk of 1000000000 lines"),
    ("hostile-undecodable.eml", "undecodable part"),
    ("not-a-patch.eml", "not a patch"),
])
def test_hostile_mail_refused_by_the_command(name: str, expected: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "harness.py"), "repro", str(MAIL / name),
                           "--results", str(tmp_path), "--no-install"], text=True, capture_output=True,
                          cwd=REPO_ROOT)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())  # nothing was run, nothing recorded


def test_reproducer_becomes_a_suite(tmp_path: Path) -> None:
    series = load_series(MAIL / "with-reproducer.mbox")
    suite = repro.reproducer_suite(series, tmp_path)
    assert suite is not None
    assert [p.name for p in suite.programs] == ["pid_status.c"]
    assert "./bin/pid_status" in (suite.suite_dir / "run.sh").read_text()
    assert repro.reproducer_suite(load_series(MAIL / "panic-comments.mbox"), tmp_path / "none") is None


def test_report_lists_series_and_skipped_mail() -> None:
    lines = repro.describe(load_series(MAIL / "panic-comments.mbox"), MAIL / "panic-comments.mbox")
    text = "\n".join(lines)
    assert "series v2, 2 patch(es) - panic: two comment fixes" in text
    assert "(attachment 0002-panic-fix-the-grammar-of-the-panic_smp_self_stop-.patch)" in text
    assert "Reviewed-by: Bob Reviewer <bob@example.org>" in text
    assert "cover letter v1" in text and "older revision" in text


@pytest.mark.boot
@pytest.mark.slow
def test_repro_applies_builds_boots_and_tests(tmp_path: Path) -> None:
    require_qemu("qemu-system-x86_64")
    cfg = load_config(CONFIGS_DIR / "targets.yaml")
    mail = MAIL / "panic-comments.mbox"
    code, lines, result = repro.run_repro(cfg, mail, repro.read_series(mail), "linux-6.1", "x86_64", "smoke",
                                          tmp_path, "the-command")
    text = "\n".join(lines)
    print(text)
    assert code == 0, text
    assert result is not None and result.status == Status.PASS
    assert len(result.tests) == 8
    assert "applied 2 patch(es) to linux-6.1" in text and "reproduce: the-command" in text
    patches = sorted((tmp_path).glob("repro-*/patches/*.patch"))
    assert [p.name[:4] for p in patches] == ["0001", "0002"]
    assert "Reviewed-by: Bob Reviewer <bob@example.org>" in patches[0].read_text()
    # the kernel is the patched one: kernel/panic.c was compiled for it (or it is the cached build of it)
    job_dir = next(tmp_path.glob("*/linux-6.1__x86_64__smoke"))
    assert "kernel/panic.o" in (job_dir / "build.log").read_text()

    # the same series with a C reproducer attached: built statically for x86_64, run in the guest
    mail = MAIL / "with-reproducer.mbox"
    code, lines, result = repro.run_repro(cfg, mail, repro.read_series(mail), "linux-6.1", "x86_64", None,
                                          tmp_path / "with-reproducer", "the-command")
    text = "\n".join(lines)
    print(text)
    assert code == 0, text
    assert result is not None and [t.name for t in result.tests] == ["pid_status exits 0"]
    assert result.info.get("kernel_cached") is True  # the same patches, trailers included: the same kernel
