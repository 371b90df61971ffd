"""`harness.py repro MBOX`: the series in a mailbox, applied to a base kernel, built, booted and tested.

The series comes out of the mail through crlab.mbox (newest complete revision, in order, with the
reviewers' trailers); it is written as `git format-patch` files under the repro's directory and
handed to crlab's own patch stage, which applies all of it or leaves no tree (git am's all-or-nothing).
Then one ordinary crlab job runs: the named suite, or, when the mail carries a C reproducer, that
program cross-compiled statically for the target and run in the guest (exit 0 is a pass).
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from crlab.config import MatrixConfig, SuiteConfig
from crlab.errors import UserError
from crlab.mbox import MailError, Series, load_series
from crlab.model import EXIT_INCOMPLETE, JobResult, JobSpec, Status
from crlab.paths import REPO_ROOT
from crlab.results import ResultStore, exit_code

REPRODUCER_SCRIPT = """#!/bin/sh
# crlab repro: run the reproducer attached to the mail; TAP on stdout
echo "1..1"
./bin/{name}; status=$?
if [ "$status" = 0 ]; then echo "ok 1 - {name} exits 0"; else echo "not ok 1 - {name} exits 0"; \
echo "# exit status $status"; fi
"""


def reproducer_suite(series: Series, work: Path, timeout: int = 300) -> SuiteConfig | None:
    """A suite running the mail's C reproducer (the first attached .c file), or None without one."""
    if not series.reproducers:
        return None
    name, text = series.reproducers[0]
    suite_dir = work / "reproducer"
    suite_dir.mkdir(parents=True, exist_ok=True)
    source = suite_dir / name
    source.write_text(text)
    program = source.stem
    (suite_dir / "run.sh").write_text(REPRODUCER_SCRIPT.format(name=shlex.quote(program)))
    return SuiteConfig(name="reproducer", suite="reproducer", suite_dir=suite_dir, command="sh run.sh",
                       files=("run.sh",), transport="console", timeout=timeout,
                       description=f"the reproducer {name} attached to the mail", programs=(source,))


def repro_config(cfg: MatrixConfig, base: str, target: str, patches: list[Path], suite: SuiteConfig
                 ) -> tuple[MatrixConfig, JobSpec]:
    tree = cfg.kernels[base]
    kernel = dataclasses.replace(tree, patches=tree.patches + tuple(patches))
    spec = JobSpec(kernel=base, target=target, suite=suite.name, transport=suite.transport)
    return dataclasses.replace(cfg, kernels={**cfg.kernels, base: kernel}, suites={**cfg.suites, suite.name: suite},
                               targets={target: cfg.targets[target]}, jobs=[spec]), spec


def describe(series: Series, mail: Path) -> list[str]:
    lines = [f"repro: {mail}: series v{series.version}, {series.total} patch(es)"
             + (f" - {series.cover_subject}" if series.cover_subject else "")]
    for patch in series.patches:
        via = f" (attachment {patch.attachment})" if patch.attachment else ""
        lines.append(f"  {patch.number}/{patch.total} {patch.subject} - {patch.author}{via}")
        lines.extend(f"      {t}" for t in patch.trailers)
    lines.extend(f"  not applied: {s}" for s in series.skipped)
    if series.reproducers:
        lines.append(f"  reproducer: {series.reproducers[0][0]}")
    return lines


def read_series(mail: Path) -> Series:
    """The series of the mail, or a one-line UserError (exit 2) saying why there is none."""
    if not mail.exists():
        raise UserError(f"{mail} not found")
    try:
        return load_series(mail)
    except MailError as exc:
        raise UserError(f"{mail}: {exc}") from exc


def run_repro(cfg: MatrixConfig, mail: Path, series: Series, base: str, target: str, test: str | None,
              out_dir: Path, command: str) -> tuple[int, list[str], JobResult | None]:
    from crlab.orchestrator import Orchestrator, host_info
    from crlab.progress import make_progress

    if base not in cfg.kernels:
        raise UserError(f"no kernel {base!r} in {cfg.path}: kernels {', '.join(cfg.kernels)}")
    if target not in cfg.targets:
        raise UserError(f"no target {target!r} in {cfg.path}: targets {', '.join(cfg.targets)}")
    work = out_dir / time.strftime("repro-%Y%m%d-%H%M%S")
    patches = series.write(work / "patches")
    lines = describe(series, mail)
    suite = reproducer_suite(series, work) if test is None else None
    if suite is None:
        name = test or "smoke"
        if name not in cfg.suites:
            raise UserError(f"no suite {name!r} in {cfg.path}: suites {', '.join(cfg.suites)}")
        suite = cfg.suites[name]
    run_cfg, spec = repro_config(cfg, base, target, patches, suite)
    store = ResultStore(out_dir)
    run = store.create_run(cfg.path, cfg.digest, [spec], host_info(),
                           config_text=f"# crlab repro of {mail}\n" + cfg.text, config_sources=cfg.sources)
    run.mark_running()
    Orchestrator(run_cfg, run, make_progress(plain=True)).execute([spec])
    run.finish("complete" if not run.pending_jobs() else "incomplete")
    result = run.result(spec)
    code = exit_code([result]) if result else EXIT_INCOMPLETE
    if result is not None:
        lines.append(f"applied {len(patches)} patch(es) to {base} (patches in {work / 'patches'})"
                     if result.stage not in ("source", "patch") else "")
        built = result.info.get("kernel_cached")
        if "build_s" in result.timings and built is not None:
            how = "cached" if built else f"built in {result.timings['build_s']:.1f} s"
            lines.append(f"kernel for {target}: {how}")
        lines.append(f"{spec.job_id}: {result.status.value.upper()}"
                     + (f" ({result.failure.value})" if result.failure.value else "")
                     + (f" - {result.message.splitlines()[0]}" if result.message else ""))
        for t in result.tests:
            if t.status != Status.PASS:
                lines.append(f"  {t.status.value}: {t.name}" + (f" - {t.message.splitlines()[0]}" if t.message else ""))
        lines.append(f"results: {run.dir / spec.dir_name}")
    lines.append(f"reproduce: {command}")
    (work / "repro.json").write_text(json.dumps({
        "mail": str(mail), "version": series.version, "patches": [str(p) for p in patches],
        "run_id": run.run_id, "job": result.to_dict() if result else None, "command": command,
        "exit_code": code}, indent=2) + "\n")
    return code, [ln for ln in lines if ln], result


def cmd_repro(args: Any) -> int:
    from crlab.cli import _load, ensure_host

    cfg = _load(Path(args.config))
    if cfg is None:
        return EXIT_INCOMPLETE
    mail = Path(args.mbox)
    series = read_series(mail)  # hostile or useless mail is refused before anything is built
    if not ensure_host(cfg, install=not args.no_install):
        return EXIT_INCOMPLETE
    command = shlex.join(["./harness.py", "repro", str(mail), "--config", args.config, "--base", args.base,
                          "--target", args.target, *(["--test", args.test] if args.test else [])])
    out_dir = Path(args.results) if args.results else Path(cfg.options.results_dir) / "repro"
    code, lines, _ = run_repro(cfg, mail, series, args.base, args.target, args.test, out_dir, command)
    print("\n".join(lines))
    sys.stdout.flush()
    return code


def register(sub: Any) -> None:
    repro = sub.add_parser("repro", help="apply the newest patch series of an mbox/message/maildir to a kernel, "
                           "build, boot and run a test (or the mail's C reproducer)")
    repro.add_argument("mbox", metavar="MBOX", help="an mbox file, a single message or a maildir")
    repro.add_argument("--base", default="linux-6.1", metavar="KERNEL",
                       help="kernel of the config (default: %(default)s)")
    repro.add_argument("--target", default="x86_64", help="default: %(default)s")
    repro.add_argument("--test", metavar="SUITE",
                       help="suite to run (default: the mail's attached C reproducer, else smoke)")
    repro.add_argument("--config", default=str(REPO_ROOT / "configs" / "targets.yaml"),
                       help="the matrix that defines kernels, targets and suites (default: %(default)s)")
    repro.add_argument("--results", help="results directory (default: <options.results_dir>/repro)")
    repro.add_argument("--no-install", action="store_true", help="never run apt-get; fail if packages are missing")
    repro.set_defaults(func=cmd_repro)
