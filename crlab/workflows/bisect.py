"""`harness.py bisect`: `git bisect run` with crlab as the judge, for git-sourced kernels.

The kernel's repository (source `git:` or a `local:` git tree) is cloned into the object-tree
workspace of a kernel named `<kernel>-bisect` on the target, at `<workspace>/src`: the place
crlab's builds keep their source copy.  ccache hashes paths relative to the workspace, so the first
build reuses the objects of earlier builds of the same sources, and every later bisect step is an
incremental build in the same object tree.  The user's tree is never touched.

`git bisect run` calls `harness.py bisect-judge` per commit, which builds the checked-out commit
(source `local:` the clone), boots it and runs the test:

* exit 125 (skip) when the commit does not build: the commit is untestable, not bad
* exit 0 (good) when the test passes, on the first or a later attempt
* exit 1 (bad) when it failed on every one of 1 + N attempts (N = --retries)
* exit 128 (git bisect aborts) when crlab could not finish (infrastructure, interrupted)

Each verdict is appended to judge.jsonl in the bisect's directory, which the report reads back.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from crlab.cache import Cache
from crlab.config import KernelSource, MatrixConfig
from crlab.errors import UserError
from crlab.model import EXIT_FAIL, EXIT_INCOMPLETE, EXIT_PASS, FailureClass, JobSpec, Status
from crlab.paths import REPO_ROOT

JUDGE_GOOD, JUDGE_BAD, JUDGE_SKIP, JUDGE_ABORT = 0, 1, 125, 128
BUILD_FAILURES = frozenset({FailureClass.BUILD, FailureClass.PATCH, FailureClass.CONFIG})


def bisect_kernel_name(kernel: str) -> str:
    return f"{kernel}-bisect"


def clone_dir(cache: Cache, cfg: MatrixConfig, kernel: str, target: str) -> Path:
    from crlab.kernel import workspace_dir

    tree = dataclasses.replace(cfg.kernels[kernel], name=bisect_kernel_name(kernel))
    return workspace_dir(cache, tree, cfg.targets[target]) / "src"


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["git", "-C", str(repo), *args], text=True, capture_output=True)
    if check and proc.returncode != 0:
        raise UserError(f"git {' '.join(args)} failed in {repo}: {proc.stderr.strip().splitlines()[-1:] or ''}")
    return proc


def prepare_clone(cfg: MatrixConfig, kernel: str, target: str, cache: Cache) -> Path:
    """A clone of the kernel's repository where `git bisect` may check out what it likes."""
    source = cfg.kernels[kernel].source
    if source.kind == "git":
        url = source.value
    elif source.kind == "local" and (Path(source.value) / ".git").exists():
        url = source.value
    else:
        raise UserError(f"kernel {kernel} comes from {source.kind}:{source.value}; bisect needs a git source "
                        "(source: {git: {url, ref}} or local: a git checkout)")
    clone = clone_dir(cache, cfg, kernel, target)
    if (clone / ".git").exists():
        _git(clone, "bisect", "reset", check=False)
        _git(clone, "fetch", "-q", url, "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")
    else:
        if clone.exists():
            raise UserError(f"{clone} exists and is not a git clone; remove it")
        clone.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(["git", "clone", "-q", "--no-checkout", url, str(clone)], text=True,
                              capture_output=True)
        if proc.returncode != 0:
            raise UserError(f"git clone {url} failed: {proc.stderr.strip()}")
    return clone


def _resolve(clone: Path, ref: str) -> str:
    for candidate in (ref, f"origin/{ref}"):
        proc = _git(clone, "rev-parse", "--verify", "-q", f"{candidate}^{{commit}}", check=False)
        if proc.returncode == 0:
            return proc.stdout.strip()
    raise UserError(f"{ref!r} is not a commit of the kernel's repository")


# ------------------------------------------------------------------------------------ the judge


def judge(cfg: MatrixConfig, kernel: str, target: str, suite: str, clone: Path, work: Path, retries: int) -> int:
    """Build, boot and test the commit checked out in `clone`; git bisect run's exit code."""
    from crlab.orchestrator import Orchestrator, host_info
    from crlab.progress import make_progress
    from crlab.results import ResultStore

    commit = _git(clone, "rev-parse", "HEAD").stdout.strip()
    subject = _git(clone, "log", "-1", "--format=%s").stdout.strip()
    tree = dataclasses.replace(cfg.kernels[kernel], name=bisect_kernel_name(kernel),
                               source=KernelSource("local", str(clone)))
    name = tree.name
    spec = JobSpec(kernel=name, target=target, suite=suite, transport=cfg.suites[suite].transport)
    # retries: 0 here; this function retries a failing test itself (a flaky pass is a pass)
    run_cfg = dataclasses.replace(cfg, kernels={name: tree}, targets={target: cfg.targets[target]},
                                  suites={suite: cfg.suites[suite]}, jobs=[spec],
                                  options=dataclasses.replace(cfg.options, retries=0, jobs=1))
    store = ResultStore(work / "results")
    attempts: list[dict[str, Any]] = []
    verdict, reason = JUDGE_ABORT, ""
    for attempt in range(1, retries + 2):
        run = store.create_run(cfg.path, cfg.digest, [spec], host_info(),
                               config_text=f"# crlab bisect judge of {commit}\n" + cfg.text)
        run.mark_running()
        Orchestrator(run_cfg, run, make_progress(plain=True)).execute([spec])
        run.finish("complete" if not run.pending_jobs() else "incomplete")
        result = run.result(spec)
        if result is None:
            verdict, reason = JUDGE_ABORT, "no result recorded"
            break
        first = result.message.splitlines()[0] if result.message else ""
        attempts.append({"attempt": attempt, "run_id": run.run_id, "status": result.status.value,
                         "failure": result.failure.value, "message": first,
                         "failed_tests": [t.name for t in result.tests if t.status == Status.FAIL],
                         "build_s": result.timings.get("build_s"), "kernel_cached": result.info.get("kernel_cached")})
        if result.failure in BUILD_FAILURES:
            verdict, reason = JUDGE_SKIP, f"does not build: {first}"
            break
        if result.status == Status.PASS:
            verdict, reason = JUDGE_GOOD, "passed" + (f" on attempt {attempt} (flaky)" if attempt > 1 else "")
            break
        if result.status == Status.FAIL:
            verdict, reason = JUDGE_BAD, f"failed {attempt} time(s): {result.failure.value} {first}".strip()
            continue
        verdict, reason = JUDGE_ABORT, f"incomplete: {first}"
        break
    record = {"commit": commit, "subject": subject, "verdict": {0: "good", 1: "bad", 125: "skip"}.get(verdict, "abort"),
              "reason": reason, "attempts": attempts, "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    with open(work / "judge.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")
    print(f"crlab bisect judge: {commit[:12]} {subject!r}: {record['verdict']} ({reason})", file=sys.stderr)
    return verdict


# ------------------------------------------------------------------------------------ bisect


@dataclasses.dataclass
class BisectOutcome:
    first_bad: str | None
    subject: str
    verdicts: list[dict[str, Any]]
    log: str
    exit_code: int
    reproduce: str = ""


def run_bisect(cfg: MatrixConfig, config_path: str, kernel: str, target: str, suite: str, good: str, bad: str,
               retries: int, work: Path, cache: Cache | None = None) -> BisectOutcome:
    cache = cache or Cache()
    for what, value, known in (("kernel", kernel, cfg.kernels), ("target", target, cfg.targets),
                               ("suite", suite, cfg.suites)):
        if value not in known:
            raise UserError(f"no {what} {value!r} in {cfg.path}: {', '.join(known)}")
    clone = prepare_clone(cfg, kernel, target, cache)
    good_sha, bad_sha = _resolve(clone, good), _resolve(clone, bad)
    if _git(clone, "merge-base", "--is-ancestor", good_sha, bad_sha, check=False).returncode != 0:
        raise UserError(f"--good {good} is not an ancestor of --bad {bad}")
    work.mkdir(parents=True, exist_ok=True)
    judge_cmd = [sys.executable, str(REPO_ROOT / "harness.py"), "bisect-judge", "--config",
                 str(Path(config_path).resolve()),
                 "--kernel", kernel, "--target", target, "--test", suite, "--retries", str(retries),
                 "--work", str(work.resolve())]
    _git(clone, "bisect", "reset", check=False)
    _git(clone, "checkout", "-q", "--detach", bad_sha)
    _git(clone, "bisect", "start", bad_sha, good_sha)
    env = {**os.environ, "CRLAB_PLAIN": "1"}
    proc = subprocess.run(["git", "-C", str(clone), "bisect", "run", *judge_cmd], text=True, capture_output=True,
                          env=env)
    log = proc.stdout + proc.stderr
    (work / "bisect-run.log").write_text(log)
    bisect_log = _git(clone, "bisect", "log", check=False).stdout
    (work / "bisect.log").write_text(bisect_log)
    _git(clone, "bisect", "reset", check=False)
    verdicts = [json.loads(line) for line in (work / "judge.jsonl").read_text().splitlines()] \
        if (work / "judge.jsonl").exists() else []
    match = re.search(r"^([0-9a-f]{40}) is the first bad commit", proc.stdout, re.MULTILINE)
    if not match or proc.returncode != 0:
        return BisectOutcome(None, "", verdicts, log, EXIT_INCOMPLETE)
    sha = match.group(1)
    subject = _git(clone, "log", "-1", "--format=%s", sha).stdout.strip()
    reproduce = (f"git -C {shlex.quote(str(clone))} checkout --detach {sha} && "
                 + shlex.join(judge_cmd[1:]).replace(str(REPO_ROOT / "harness.py"), "./harness.py"))
    return BisectOutcome(sha, subject, verdicts, log, EXIT_FAIL, reproduce)


def cmd_bisect(args: Any) -> int:
    from crlab.cli import _load, ensure_host

    cfg = _load(Path(args.config))
    if cfg is None:
        return EXIT_INCOMPLETE
    if not ensure_host(cfg, install=not args.no_install):
        return EXIT_INCOMPLETE
    work = Path(args.results) if args.results else Path(cfg.options.results_dir) / "bisect" / time.strftime(
        "bisect-%Y%m%d-%H%M%S")
    outcome = run_bisect(cfg, args.config, args.kernel, args.target, args.test, args.good, args.bad,
                         args.retries, work)
    for v in outcome.verdicts:
        print(f"  {v['commit'][:12]} {v['verdict']:5s} {v['subject']} - {v['reason']}")
    if outcome.first_bad is None:
        print(f"bisect did not finish; git bisect run said:\n{outcome.log.strip()[-2000:]}")
        print(f"logs: {work}")
        return EXIT_INCOMPLETE
    print(f"first bad commit: {outcome.first_bad} {outcome.subject}")
    print(f"reproduce: {outcome.reproduce}")
    print(f"logs: {work}")
    return outcome.exit_code


def cmd_judge(args: Any) -> int:
    from crlab.cli import _load

    cfg = _load(Path(args.config))
    if cfg is None:
        return JUDGE_ABORT
    clone = Path(os.getcwd()) if args.clone is None else Path(args.clone)
    try:
        return judge(cfg, args.kernel, args.target, args.test, clone, Path(args.work), args.retries)
    except Exception as exc:  # git bisect must stop, not take a crash for a bad commit
        print(f"crlab bisect judge: {type(exc).__name__}: {exc}", file=sys.stderr)
        return JUDGE_ABORT


def register(sub: Any) -> None:
    bisect = sub.add_parser("bisect", help="git bisect run with crlab as the judge: first bad commit of a "
                            "git-sourced kernel for a test on a target")
    bisect.add_argument("--good", required=True, metavar="REF")
    bisect.add_argument("--bad", required=True, metavar="REF")
    bisect.add_argument("--kernel", required=True, metavar="NAME", help="a git-sourced kernel of the config")
    bisect.add_argument("--target", required=True)
    bisect.add_argument("--test", required=True, metavar="SUITE")
    bisect.add_argument("--retries", type=int, default=2,
                        help="a failing commit is run this many more times before it is called bad (default 2)")
    bisect.add_argument("--config", default=str(REPO_ROOT / "configs" / "targets.yaml"))
    bisect.add_argument("--results", help="directory for this bisect's logs and runs")
    bisect.add_argument("--no-install", action="store_true")
    bisect.set_defaults(func=cmd_bisect)

    judge_parser = sub.add_parser("bisect-judge", help="(run by git bisect run) judge the checked-out commit: "
                                  "exit 0 good, 1 bad, 125 does not build, 128 incomplete")
    judge_parser.add_argument("--kernel", required=True)
    judge_parser.add_argument("--target", required=True)
    judge_parser.add_argument("--test", required=True)
    judge_parser.add_argument("--retries", type=int, default=2)
    judge_parser.add_argument("--config", required=True)
    judge_parser.add_argument("--work", required=True)
    judge_parser.add_argument("--clone", help="the repository (default: the current directory)")
    judge_parser.set_defaults(func=cmd_judge)


__all__ = ["EXIT_PASS", "JUDGE_BAD", "JUDGE_GOOD", "JUDGE_SKIP", "register", "run_bisect"]
