"""`harness.py gate`: build and test a base kernel, then base + patches 1..k for every k, on every
chosen target, and name the first patch that introduces each problem.

Every step is an ordinary crlab run (its own run in the store under <results>/gate/) of the same
matrix cells, with the base tree's patches plus the first k patches of the series.  The kernel keeps
its name in every step, so all steps of a target build in the same kept object tree under ccache:
the step after a one-file patch recompiles that file and relinks.  Per step and target the gate
reads what the run left behind:

* build failure: the job failed in its build stage; the compiler's errors from its build log
* new compiler warnings: the build log's warnings (crlab.buildwarnings: no line numbers, paths
  relative to the tree) that no earlier step showed on that target
* boot failure: the job failed while booting (panic, oops, hang, QEMU exit)
* test regressions: crlab.results.compare between this step and the last step that ran on the target
* image-format changes: only for C/R suites (their decoded images are kept in the job directory):
  the set of record fields per image type differs from the last step's

A problem is *introduced* by step k when the step before did not have it; later steps that still
have it are listed as such, not blamed again.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crlab import buildwarnings
from crlab.cache import Cache
from crlab.config import MatrixConfig
from crlab.errors import UserError
from crlab.model import EXIT_FAIL, EXIT_INCOMPLETE, EXIT_PASS, FailureClass, JobResult, JobSpec, Status
from crlab.progress import Progress
from crlab.results import ResultStore, Run
from crlab.results.compare import compare

BOOT_FAILURES = frozenset({FailureClass.BOOT_PANIC, FailureClass.BOOT_OOPS, FailureClass.BOOT_HANG,
                           FailureClass.QEMU_EXIT})
BUILD_FAILURES = frozenset({FailureClass.BUILD, FailureClass.PATCH, FailureClass.CONFIG})


def read_series(path: Path) -> list[Path]:
    """Patches in order: a quilt series file, a directory holding one, or a directory of *.patch."""
    if not path.exists():
        raise UserError(f"patch series {path} not found")
    if path.is_dir():
        series = path / "series"
        if not series.is_file():
            patches = sorted(p for p in path.iterdir() if p.suffix in (".patch", ".diff") and p.is_file())
            if not patches:
                raise UserError(f"{path} has neither a series file nor *.patch files")
            return [p.resolve() for p in patches]
    else:
        series = path
        if series.suffix in (".patch", ".diff"):
            return [series.resolve()]
    patches = []
    for number, line in enumerate(series.read_text().splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        patch = series.parent / words[0]
        if not patch.is_file():
            raise UserError(f"{series}:{number}: patch not found: {words[0]}")
        patches.append(patch.resolve())
    if not patches:
        raise UserError(f"{series} lists no patches")
    return patches


def patch_subject(patch: Path) -> str:
    """The patch's subject without its [PATCH k/n] prefix (the file name when it has none)."""
    for line in patch.read_text(errors="replace").splitlines():
        if line.lower().startswith("subject:"):
            return re.sub(r"^\[[^\]]*\]\s*", "", line.split(":", 1)[1].strip())
        if line.startswith("diff --git") or line.startswith("--- "):
            break
    return patch.name


# ------------------------------------------------------------------------------------ image layout


def image_layout(job_dir: Path) -> set[str]:
    """Record fields per image type of every decoded C/R image a job kept: 'core-N.img:entries[].mtype'."""
    layout: set[str] = set()
    for decoded in sorted(job_dir.glob("images/*/*.decoded.json")):
        try:
            tree = json.loads(decoded.read_text())
        except (OSError, ValueError):
            continue
        for name, content in (tree.get("files") or {}).items():
            _walk(re.sub(r"\d+", "N", name), content, "", layout)
    return layout


def _walk(image: str, node: Any, path: str, out: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            sub = f"{path}.{key}" if path else str(key)
            out.add(f"{image}:{sub}")
            _walk(image, value, sub, out)
    elif isinstance(node, list):
        for item in node:
            _walk(image, item, f"{path}[]", out)


# ------------------------------------------------------------------------------------ the steps


@dataclass
class TargetStep:
    """What one step left on one target."""

    target: str
    results: list[JobResult]
    job_dirs: dict[str, Path]  # job id -> directory
    diagnostics: list[buildwarnings.Diagnostic] = field(default_factory=list)
    build_s: float | None = None
    kernel_cached: bool = False

    @property
    def built(self) -> bool:
        return not any(r.failure in BUILD_FAILURES for r in self.results)

    @property
    def booted(self) -> bool:
        return self.built and not any(r.failure in BOOT_FAILURES for r in self.results)

    @property
    def incomplete(self) -> bool:
        return any(r.status in (Status.INCOMPLETE, Status.PENDING) for r in self.results)

    def build_failure(self) -> JobResult | None:
        return next((r for r in self.results if r.failure in BUILD_FAILURES), None)

    def boot_failure(self) -> JobResult | None:
        return next((r for r in self.results if r.failure in BOOT_FAILURES), None)


@dataclass
class Step:
    index: int  # 0: the base
    patch: Path | None
    run_id: str
    targets: dict[str, TargetStep]
    wall_s: float = 0.0

    @property
    def label(self) -> str:
        return "base" if self.patch is None else f"patch {self.index}"


@dataclass(frozen=True)
class Problem:
    step: int
    total: int
    target: str
    kind: str  # build | warning | boot | test | image-format
    detail: str
    subject: str = ""

    def sentence(self) -> str:
        what = {"build": "breaks the build on", "warning": "adds a compiler warning on",
                "boot": "breaks booting on", "test": "breaks a test on",
                "image-format": "changes the C/R image format on"}[self.kind]
        return f"patch {self.step}/{self.total} {what} {self.target}: {self.detail}"


@dataclass
class GateReport:
    base: str
    series: list[Path]
    targets: list[str]
    steps: list[Step]
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # still broken, fixed later, base problems
    incomplete: list[str] = field(default_factory=list)
    checks: dict[str, str] = field(default_factory=dict)  # what was checked, or why not

    @property
    def exit_code(self) -> int:
        if self.problems:
            return EXIT_FAIL
        return EXIT_INCOMPLETE if self.incomplete else EXIT_PASS

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base, "series": [str(p) for p in self.series], "targets": self.targets,
            "exit_code": self.exit_code, "checks": self.checks,
            "problems": [dataclasses.asdict(p) | {"sentence": p.sentence()} for p in self.problems],
            "notes": self.notes, "incomplete": self.incomplete,
            "steps": [{"step": s.index, "patch": str(s.patch) if s.patch else None, "run_id": s.run_id,
                       "wall_s": round(s.wall_s, 1),
                       "targets": {t: {"built": ts.built, "booted": ts.booted, "build_s": ts.build_s,
                                       "kernel_cached": ts.kernel_cached,
                                       "jobs": {r.spec.job_id: r.status.value for r in ts.results},
                                       "warnings": [str(d) for d in buildwarnings.warnings(ts.diagnostics)],
                                       "errors": [str(d) for d in buildwarnings.errors(ts.diagnostics)]}
                                   for t, ts in s.targets.items()}}
                      for s in self.steps],
        }


def _target_step(target: str, run: Run, results: list[JobResult]) -> TargetStep:
    mine = [r for r in results if r.spec.target == target]
    dirs = {r.spec.job_id: run.job_dir(r.spec) for r in mine}
    step = TargetStep(target, mine, dirs)
    for result in mine:  # every job of a target uses the same kernel: one build log says it all
        log = dirs[result.spec.job_id] / "build.log"
        if log.exists():
            step.diagnostics = buildwarnings.parse_file(log)
            build_s = result.timings.get("build_s")
            step.build_s = float(build_s) if build_s is not None else None
            step.kernel_cached = bool(result.info.get("kernel_cached", False))
            break
    return step


def analyse(steps: list[Step], total: int) -> GateReport:
    """Name, per target, the first step that introduces each problem (pure: reads the steps only)."""
    targets = list(steps[0].targets) if steps else []
    report = GateReport(base="", series=[s.patch for s in steps if s.patch], targets=targets, steps=steps)
    for target in targets:
        base = steps[0].targets[target]
        if base.incomplete:
            report.incomplete.append(f"base on {target}: the run did not finish")
        if not base.built:
            failed = base.build_failure()
            report.incomplete.append(f"the base does not build on {target}: no baseline "
                                     f"({failed.message.splitlines()[0] if failed else ''})")
            continue
        if not base.booted:
            report.incomplete.append(f"the base does not boot on {target}: no baseline")
        seen_diagnostics = set(base.diagnostics)
        last_ran = base  # the last step whose kernel built (what tests and images compare against)
        previous = base
        for step in steps[1:]:
            now = step.targets[target]
            subject = patch_subject(step.patch) if step.patch else ""
            problem = _problem_factory(report, step.index, total, target, subject)
            if now.incomplete:
                report.incomplete.append(f"{step.label} on {target}: the run did not finish")
            if not now.built:
                failure = now.build_failure()
                errors = buildwarnings.errors(now.diagnostics)
                shown = "; ".join(str(e) for e in errors[:3]) or (failure.message.splitlines()[0] if failure else "")
                if previous.built:
                    problem("build", f"build failed: {shown}")
                else:
                    report.notes.append(f"patch {step.index}/{total}: {target} still does not build")
                previous = now
                continue
            if not previous.built:
                report.notes.append(f"patch {step.index}/{total} makes {target} build again")
            for warning in buildwarnings.new_warnings(now.diagnostics, seen_diagnostics):
                problem("warning", str(warning))
            seen_diagnostics |= set(now.diagnostics)
            if not now.booted:
                failure = now.boot_failure()
                if last_ran.booted:
                    detail = f"{failure.failure.value}: {failure.message.splitlines()[0]}" if failure else ""
                    problem("boot", detail)
                else:
                    report.notes.append(f"patch {step.index}/{total}: {target} still does not boot")
            elif last_ran.booted:
                comparison = compare(last_ran.results, now.results)
                for change in comparison.regressions:
                    detail = change.cell + (f" ({change.message.splitlines()[0]})" if change.message else "")
                    problem("test", detail)
                for change in comparison.changes:
                    if change.category.value == "fixed":
                        report.notes.append(f"patch {step.index}/{total} fixes {change.cell}")
                before_layout = set().union(*(image_layout(d) for d in last_ran.job_dirs.values()))
                now_layout = set().union(*(image_layout(d) for d in now.job_dirs.values()))
                if before_layout and now_layout and before_layout != now_layout:
                    added, removed = sorted(now_layout - before_layout), sorted(before_layout - now_layout)
                    parts = ([f"new fields {', '.join(added[:5])}"] if added else []) + \
                            ([f"fields gone {', '.join(removed[:5])}"] if removed else [])
                    problem("image-format", "; ".join(parts))
            last_ran = now
            previous = now
    return report


def _problem_factory(report: GateReport, step: int, total: int, target: str,
                     subject: str) -> Callable[[str, str], None]:
    def add(kind: str, detail: str) -> None:
        report.problems.append(Problem(step, total, target, kind, detail, subject))
    return add


# ------------------------------------------------------------------------------------ running


def step_config(cfg: MatrixConfig, base: str, patches: Iterable[Path], specs: list[JobSpec]) -> MatrixConfig:
    """The matrix of one step: the base kernel (same name, so the same object tree) plus patches."""
    tree = cfg.kernels[base]
    kernel = dataclasses.replace(tree, patches=tree.patches + tuple(patches))
    return dataclasses.replace(cfg, kernels={**cfg.kernels, base: kernel}, jobs=list(specs))


def gate_specs(cfg: MatrixConfig, base: str, targets: list[str]) -> list[JobSpec]:
    if base not in cfg.kernels:
        raise UserError(f"no kernel {base!r} in {cfg.path}: kernels {', '.join(cfg.kernels)}")
    unknown = [t for t in targets if t not in cfg.targets]
    if unknown:
        raise UserError(f"unknown target(s) {', '.join(unknown)}; {cfg.path} has {', '.join(cfg.targets)}")
    specs = [s for s in cfg.jobs if s.kernel == base and not s.consumer and (not targets or s.target in targets)]
    if not specs:
        raise UserError(f"{cfg.path} has no job for kernel {base} on {', '.join(targets) or 'any target'}")
    return specs


def checks_made(cfg: MatrixConfig, specs: list[JobSpec]) -> dict[str, str]:
    cr_suites = sorted({s.suite for s in specs if cfg.suites[s.suite].kind == "cr"})
    return {
        "build": "every step, every target",
        "warnings": "build log of every step against every earlier step's (line numbers and paths removed)",
        "boot": "every step whose kernel built",
        "tests": f"suites {', '.join(sorted({s.suite for s in specs}))} against the last step that ran",
        "image-format": (f"decoded images of {', '.join(cr_suites)}" if cr_suites else
                         "not checked: no C/R suite in this gate's matrix"),
    }


def run_gate(cfg: MatrixConfig, base: str, series: list[Path], targets: list[str], whole: bool,
             progress_factory: Callable[[], Progress], cache: Cache | None = None,
             results_dir: Path | None = None, log: Callable[[str], object] = print) -> GateReport:
    from crlab.orchestrator import Interrupted, Orchestrator, host_info

    specs = gate_specs(cfg, base, targets)
    chosen = list(dict.fromkeys(s.target for s in specs))
    store = ResultStore(results_dir or Path(cfg.options.results_dir) / "gate")
    cache = cache or Cache()
    total = len(series)
    indices = [0, total] if whole else list(range(total + 1))
    steps: list[Step] = []
    for k in indices:
        label = "base" if k == 0 else f"patch {k}/{total}: {patch_subject(series[k - 1])}"
        log(f"gate: step {label} on {', '.join(chosen)}")
        step_cfg = step_config(cfg, base, series[:k], specs)
        header = f"# crlab gate step {k}/{total} of {base}: patches {[p.name for p in series[:k]]}\n"
        run = store.create_run(cfg.path, cfg.digest, specs, host_info(), config_text=header + cfg.text,
                               config_sources=cfg.sources)
        run.mark_running()
        started = time.monotonic()
        orchestrator = Orchestrator(step_cfg, run, progress_factory(), cache)
        interrupted = False
        try:
            orchestrator.execute(specs)
        except (Interrupted, KeyboardInterrupt):
            orchestrator.interrupt()
            interrupted = True
        results = run.results()
        run.finish("complete" if not run.pending_jobs() and not interrupted else "incomplete")
        run.write_reports()
        steps.append(Step(k, series[k - 1] if k else None, run.run_id,
                          {t: _target_step(t, run, results) for t in chosen}, time.monotonic() - started))
        if interrupted:
            log("gate: interrupted; the steps so far are reported")
            break
    report = analyse(steps, total)
    if len(steps) < len(indices):
        report.incomplete.append(f"interrupted after {steps[-1].label if steps else 'nothing'}")
    report.base, report.series, report.targets = base, series, chosen
    report.checks = checks_made(cfg, specs)
    return report


def format_report(report: GateReport, command: str) -> str:
    """The per-patch, per-target table, the verdict and how to reproduce it."""
    lines = [f"gate: {report.base} + {len(report.series)} patch(es) on {', '.join(report.targets)}"]
    width = max([len(t) for t in report.targets] + [8])
    lines.append("step".ljust(40) + "  " + "  ".join(t.ljust(width) for t in report.targets))
    for step in report.steps:
        name = "base" if step.patch is None else f"{step.index}/{len(report.series)} {patch_subject(step.patch)}"
        cells = []
        for target in report.targets:
            ts = step.targets[target]
            mine = [p for p in report.problems if p.step == step.index and p.target == target]
            if ts.incomplete and not mine:
                cell = "incomplete"
            elif not ts.built:
                cell = "BUILD FAIL" if any(p.kind == "build" for p in mine) else "no build"
            elif mine:
                cell = ",".join(sorted({p.kind.upper() for p in mine}))
            elif not ts.booted:
                cell = "no boot"
            else:
                cell = "ok"
            if ts.build_s is not None and ts.built and not ts.kernel_cached:
                cell += f" {ts.build_s:.0f}s"
            cells.append(cell.ljust(width))
        lines.append(name[:40].ljust(40) + "  " + "  ".join(cells))
    lines.append("")
    for name, how in report.checks.items():
        lines.append(f"checked {name}: {how}")
    lines.append("")
    if report.problems:
        lines.append("verdict: problems introduced")
        lines.extend(f"  {p.sentence()}" for p in report.problems)
    elif report.incomplete:
        lines.append("verdict: incomplete")
    else:
        lines.append("verdict: clean (no patch introduces a build failure, warning, boot failure or regression)")
    lines.extend(f"  note: {n}" for n in report.notes)
    lines.extend(f"  incomplete: {n}" for n in report.incomplete)
    lines.append(f"reproduce: {command}")
    lines.append(f"exit {report.exit_code}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ command line


def cmd_gate(args: Any) -> int:
    import shlex
    import signal
    import sys

    from crlab.cli import _load, _sigterm_as_interrupt, ctrl_c_ignored_note, ensure_host
    from crlab.progress import make_progress

    cfg = _load(Path(args.config))
    if cfg is None:
        return EXIT_INCOMPLETE
    series = read_series(Path(args.series))
    if not ensure_host(cfg, install=not args.no_install):
        return EXIT_INCOMPLETE
    command = shlex.join(["./harness.py", "gate", "--config", args.config, "--base", args.base, "--series",
                          args.series, *(["--targets", *args.targets] if args.targets else []),
                          *(["--whole"] if args.whole else [])])
    if note := ctrl_c_ignored_note():
        print(note, file=sys.stderr, flush=True)
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        report = run_gate(cfg, args.base, series, list(args.targets or []), args.whole,
                          lambda: make_progress(plain=True), results_dir=Path(args.results) if args.results else None,
                          log=lambda m: print(m, file=sys.stderr, flush=True))
    finally:
        signal.signal(signal.SIGTERM, previous)
    text = format_report(report, command)
    print(text)
    out_dir = Path(args.results) if args.results else Path(cfg.options.results_dir) / "gate"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out_dir / f"gate-{stamp}.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    (out_dir / f"gate-{stamp}.txt").write_text(text + "\n")
    print(f"gate report: {out_dir / f'gate-{stamp}.json'}")
    return report.exit_code


def register(sub: Any) -> None:
    from crlab.paths import REPO_ROOT

    gate = sub.add_parser("gate", help="build and test a base kernel and base + patches 1..k on every target; "
                          "name the first patch that breaks something")
    gate.add_argument("--base", required=True, metavar="KERNEL", help="a kernel of the config")
    gate.add_argument("--series", required=True, metavar="PATCHES",
                      help="a quilt series file, a directory holding one, a directory of *.patch, or one patch")
    gate.add_argument("--targets", nargs="+", metavar="TARGET", help="default: every target of the config")
    gate.add_argument("--whole", action="store_true", help="only the base and the whole series")
    gate.add_argument("--config", default=str(REPO_ROOT / "configs" / "gate.yaml"),
                      help="the matrix whose cells each step runs (default: %(default)s)")
    gate.add_argument("--results", help="results directory (default: <options.results_dir>/gate)")
    gate.add_argument("--no-install", action="store_true", help="never run apt-get; fail if packages are missing")
    gate.set_defaults(func=cmd_gate)
