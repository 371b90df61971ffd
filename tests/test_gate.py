"""The patch gate (crlab.workflows.gate) and build-log diagnostics (crlab.buildwarnings).

Fast tests read what real gate runs left behind (tests/data/gate/recorded/: each step's job result
and build log, copied from `harness.py gate --config configs/gate-compat.yaml ...` on linux-6.1);
the boot test runs a one-patch gate on x86_64 with the kernel CI already builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crlab import buildwarnings
from crlab.buildwarnings import Diagnostic
from crlab.config import load_config
from crlab.model import JobResult
from crlab.paths import REPO_ROOT
from crlab.workflows import gate
from tests.conftest import require_qemu

DATA = Path(__file__).parent / "data" / "gate"
RECORDED = DATA / "recorded"
COMPAT_SERIES = REPO_ROOT / "patches" / "examples" / "compat-typo" / "series"


def test_series_and_subjects() -> None:
    patches = gate.read_series(COMPAT_SERIES)
    assert len(patches) == 5
    assert gate.read_series(COMPAT_SERIES.parent) == patches  # the directory holding the series file
    assert gate.patch_subject(patches[1]) == "sys: call the compat sysinfo scaling a shift as well"


def test_series_errors(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="not found"):
        gate.read_series(tmp_path / "nope")
    (tmp_path / "series").write_text("0001-missing.patch\n")
    with pytest.raises(Exception, match="series:1: patch not found: 0001-missing.patch"):
        gate.read_series(tmp_path / "series")


def test_error_of_a_real_failed_build_is_normalised() -> None:
    """x86_64 with IA32 emulation, patch 2 of compat-typo: the compiler's error, without line
    numbers or the workspace's absolute paths."""
    diagnostics = buildwarnings.parse_file(RECORDED / "step2" / "x86_64" / "build.log")
    errors = buildwarnings.errors(diagnostics)
    assert Diagnostic("kernel/sys.c", "error", "'shfit' undeclared (first use in this function); "
                      "did you mean 'shift'?") in errors
    assert all(not d.file.startswith("/") and ":" not in d.file for d in diagnostics)


def test_warning_of_a_real_build() -> None:
    diagnostics = buildwarnings.parse_file(DATA / "unused-variable.build.log")
    assert buildwarnings.warnings(diagnostics) == [
        Diagnostic("kernel/exit.c", "warning", "unused variable 'status' [-Wunused-variable]")]


def test_same_warning_elsewhere_in_the_file_is_not_new() -> None:
    before = [Diagnostic("kernel/exit.c", "warning", "unused variable 'status' [-Wunused-variable]")]
    moved = buildwarnings.parse("/root/.cache/crlab/objtrees/x-x86_64/src/kernel/exit.c:999:6: warning: "
                                "unused variable \u2018status\u2019 [-Wunused-variable]\n")
    assert moved == before
    assert buildwarnings.new_warnings(moved, before) == []
    other = buildwarnings.parse("../kernel/fork.c:12:1: warning: unused variable 'x' [-Wunused-variable]\n")
    assert buildwarnings.new_warnings(other, before) == other


def _recorded_steps() -> list[gate.Step]:
    """The demonstration's steps as the gate reads them, from the recorded job results and logs."""
    steps = []
    for index in range(6):
        step_dir = RECORDED / f"step{index}"
        if not step_dir.is_dir():
            assert index >= 2, f"{step_dir} is missing: the recording needs the base and at least 2 steps"
            break
        targets = {}
        for target_dir in sorted(p for p in step_dir.iterdir() if p.is_dir()):
            result = JobResult.from_dict(json.loads((target_dir / "result.json").read_text()))
            ts = gate.TargetStep(target_dir.name, [result], {result.spec.job_id: target_dir})
            ts.diagnostics = buildwarnings.parse_file(target_dir / "build.log")
            targets[target_dir.name] = ts
        patch = gate.read_series(COMPAT_SERIES)[index - 1] if index else None
        steps.append(gate.Step(index, patch, f"recorded-{index}", targets))
    return steps


def test_recorded_demo_names_patch_2_on_x86_64_only() -> None:
    report = gate.analyse(_recorded_steps(), total=5)
    assert [(p.step, p.target, p.kind) for p in report.problems] == [(2, "x86_64", "build")]
    sentence = report.problems[0].sentence()
    assert sentence.startswith("patch 2/5 breaks the build on x86_64: build failed: kernel/sys.c: error: 'shfit'")
    # later steps still fail on x86_64, and are not blamed for it
    assert "patch 3/5: x86_64 still does not build" in report.notes
    assert report.exit_code == 1
    assert not report.incomplete


def test_a_clean_series_exits_0() -> None:
    steps = _recorded_steps()[:2]  # base and patch 1: both fine everywhere
    report = gate.analyse(steps, total=1)
    assert report.problems == [] and report.exit_code == 0


def test_image_layout_changes(tmp_path: Path) -> None:
    def job(name: str, files: dict[str, object]) -> Path:
        img = tmp_path / name / "images" / "fifo"
        img.mkdir(parents=True)
        (img / "img1.decoded.json").write_text(json.dumps({"engine": "criu", "files": files}))
        return tmp_path / name

    before = gate.image_layout(job("a", {"core-120.img": {"entries": [{"mtype": "X86_64", "tc": {"comm": "x"}}]}}))
    same = gate.image_layout(job("b", {"core-77.img": {"entries": [{"mtype": "X86_64", "tc": {"comm": "y"}}]}}))
    grown = gate.image_layout(job("c", {"core-1.img": {"entries": [{"mtype": "X86_64",
                                                                     "tc": {"comm": "y", "new_field": 1}}]}}))
    assert before == same  # pids in names and values do not matter: the fields do
    assert grown - before == {"core-N.img:entries[].tc.new_field"}


@pytest.mark.boot
@pytest.mark.slow
def test_gate_names_the_patch_that_adds_a_warning(tmp_path: Path) -> None:
    """Base linux-6.1 (cached) and one patch adding an unused variable in kernel/exit.c, on x86_64:
    the step builds incrementally in the kept object tree, boots, passes smoke, and the gate names
    the warning and exits 1."""
    require_qemu("qemu-system-x86_64")
    from crlab.progress import make_progress

    cfg = load_config(DATA / "x86_64.yaml")
    series = gate.read_series(DATA / "unused-variable" / "series")
    report = gate.run_gate(cfg, "linux-6.1", series, ["x86_64"], whole=False,
                           progress_factory=lambda: make_progress(plain=True), results_dir=tmp_path / "results")
    text = gate.format_report(report, "gate-test")
    print(text)
    assert [(p.step, p.target, p.kind) for p in report.problems] == [(1, "x86_64", "warning")], text
    assert report.problems[0].detail == "kernel/exit.c: warning: unused variable 'status' [-Wunused-variable]"
    assert report.exit_code == 1
    step = report.steps[1].targets["x86_64"]
    assert step.booted and all(r.status.value == "pass" for r in step.results)
    meta = json.loads(next(iter(step.job_dirs.values())).joinpath("kernel-metadata.json").read_text())
    if not step.kernel_cached:  # built now, in the kept object tree: kernel/exit.c recompiled, relinked
        assert meta["object_tree"]["incremental"] is True
        # the files this patch changes, plus those an earlier build in the same tree had changed
        assert meta["object_tree"]["source_files_changed"] >= 1
        log = next(iter(step.job_dirs.values())).joinpath("build.log").read_text()
        assert "kernel/exit.o" in log
    assert "verdict: problems introduced" in text and "reproduce: gate-test" in text
