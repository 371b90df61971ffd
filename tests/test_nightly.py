"""`harness.py nightly` and `harness.py history`: the comparison of real runs (golden results of
three real nightly runs), the command line, and the demonstration run for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

from crlab.paths import CONFIGS_DIR, REPO_ROOT
from crlab.results.compare import Category
from crlab.results.history import cell_history, matrix_id, previous_run
from crlab.results.known import load_known_issues
from crlab.workflows.nightly import COMPARISON_FILE, compare_with_previous
from tests.test_compare import golden_store

HARNESS = [sys.executable, str(REPO_ROOT / "harness.py")]
KNOWN_EXAMPLE = CONFIGS_DIR / "known-issues-example.yaml"
ARMV7 = "linux-6.1/armv7/smoke"


def harness(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRLAB_PLAIN": "1"}
    return subprocess.run([*HARNESS, *args], text=True, capture_output=True, timeout=timeout, env=env, cwd=REPO_ROOT)


def test_two_real_runs_are_one_matrix_and_compare_unchanged(tmp_path: Path) -> None:
    store, (run1, run2) = golden_store(tmp_path)
    assert matrix_id(run1.specs()) == matrix_id(run2.specs())
    assert previous_run(store, run1) is None
    assert previous_run(store, run2).run_id == run1.run_id  # type: ignore[union-attr]
    outcome = compare_with_previous(store, run2, known=load_known_issues(KNOWN_EXAMPLE), today=date(2026, 11, 23))
    assert outcome.comparison.changes == [] and outcome.comparison.exit_code() == 0
    assert outcome.comparison.counts["unchanged"] == 45
    saved = json.loads((run2.dir / COMPARISON_FILE).read_text())
    assert saved["previous_run"] == run1.run_id and saved["exit_code"] == 0
    assert Category.REGRESSION.value in saved["counts"]


def test_history_shows_a_cells_outcomes_and_times_across_runs(tmp_path: Path) -> None:
    store, runs = golden_store(tmp_path)
    rows = cell_history(store, ARMV7)
    assert [r.run_id for r in rows] == [r.run_id for r in runs]
    assert [r.status for r in rows] == ["pass", "pass"]
    assert all(r.boot_s and r.build_s for r in rows)
    proc = harness("history", ARMV7, "--results", str(store.results_dir))
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 2 + 2
    as_json = json.loads(harness("history", ARMV7, "--results", str(store.results_dir), "--json").stdout)
    assert [r["status"] for r in as_json] == ["pass", "pass"]


def test_history_of_an_unknown_cell_is_a_one_line_error(tmp_path: Path) -> None:
    store, _runs = golden_store(tmp_path, ("run1",))
    proc = harness("history", "linux-6.1/armv7/smok", "--results", str(store.results_dir))
    assert proc.returncode == 2
    assert "no cell 'linux-6.1/armv7/smok'" in proc.stderr and "did you mean 'linux-6.1/armv7/smoke'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_nightly_rejects_a_bad_known_issues_file_before_running(tmp_path: Path) -> None:
    bad = tmp_path / "known.yaml"
    bad.write_text("known_issues:\n  - cell: linux-6.1/armv7/smoke\n    reson: typo\n")
    proc = harness("nightly", str(CONFIGS_DIR / "nightly.yaml"), "--known-issues", str(bad),
                   "--results", str(tmp_path / "results"), "--no-install")
    assert proc.returncode == 2
    assert f"{bad}:3:" in proc.stderr and "reson" in proc.stderr
    assert not (tmp_path / "results").exists()  # nothing ran

