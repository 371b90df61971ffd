"""`harness.py bisect` (crlab.workflows.bisect) on a real git history of linux-source-6.1.

The end-to-end test makes a git repository of the 6.1 tree with five real commits on top
(patches/examples/: two harmless ones, then proc-status-rename, which renames /proc/PID/status's
"Pid:" field and so breaks the smoke suite's /proc test, then two more harmless ones) and lets
`git bisect run` with crlab as the judge find the breaking commit on x86_64.  It copies a 1.3 GB
tree and builds three or four kernels (the first ccache-carried, the rest incremental): more than
the CI budget allows, so it runs only when asked: CRLAB_LONG_TESTS=1 (by hand, for the report).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from crlab.cache import Cache
from crlab.config import KernelSource
from crlab.errors import UserError
from crlab.kernel import prepare_source
from crlab.paths import REPO_ROOT
from crlab.workflows import bisect
from tests.conftest import require_qemu

EXAMPLES = REPO_ROOT / "patches" / "examples"
HISTORY = [EXAMPLES / "compat-typo" / "0001-sys-call-the-memory-unit-scaling-in-do_sysinfo-a-shi.patch",
           EXAMPLES / "compat-typo" / "0003-time-say-what-sys_tz-is-still-used-for.patch",
           EXAMPLES / "proc-status-rename" / "0001-proc-spell-the-PID-field-of-proc-PID-status-in-capit.patch",
           EXAMPLES / "compat-typo" / "0004-pid-replace-the-stale-PID-map-comment-above-init_pid.patch",
           EXAMPLES / "compat-typo" / "0005-exit-spell-out-which-bits-of-the-exit-code-the-paren.patch"]
GIT_ENV = {"GIT_AUTHOR_NAME": "crlab", "GIT_AUTHOR_EMAIL": "crlab@example.org", "GIT_COMMITTER_NAME": "crlab",
           "GIT_COMMITTER_EMAIL": "crlab@example.org", "GIT_AUTHOR_DATE": "2026-11-21T10:00:00Z",
           "GIT_COMMITTER_DATE": "2026-11-21T10:00:00Z"}


def test_non_git_kernel_is_refused(tmp_path: Path) -> None:
    from crlab.config import load_config
    from crlab.paths import CONFIGS_DIR

    cfg = load_config(CONFIGS_DIR / "targets.yaml")  # linux-6.1 is Debian's tarball
    with pytest.raises(UserError, match="bisect needs a git source"):
        bisect.run_bisect(cfg, str(CONFIGS_DIR / "targets.yaml"), "linux-6.1", "x86_64", "smoke", "a", "b",
                          retries=0, work=tmp_path, cache=Cache(tmp_path / "cache"))


def make_history(repo: Path, log: Path) -> None:
    _, tree = prepare_source(KernelSource("debian", "linux-source-6.1"), Cache(), log)
    shutil.copytree(tree, repo, symlinks=True)
    subprocess.run(["chmod", "-R", "u+w", str(repo)], check=True)
    env = {**os.environ, **GIT_ENV}

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=env, capture_output=True)

    git("init", "-q", "-b", "master")
    git("add", "-A", "-f", ".")  # Debian's tree ignores everything in its .gitignore
    git("commit", "-q", "-m", "Linux 6.1 (Debian linux-source-6.1)")
    git("tag", "base")
    git("am", "-q", *map(str, HISTORY))


@pytest.mark.boot
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("CRLAB_LONG_TESTS"),
                    reason="builds 3-4 kernels from a 1.3 GB git history: run by hand with CRLAB_LONG_TESTS=1")
def test_bisect_finds_the_commit_that_breaks_smoke(tmp_path: Path) -> None:
    require_qemu("qemu-system-x86_64")
    from crlab.config import load_config

    repo = tmp_path / "linux"
    make_history(repo, tmp_path / "source.log")
    config = tmp_path / "bisect.yaml"
    config.write_text(f"""kernels:
  - name: linux-6.1-git
    source: {{local: {repo}}}
    config: {{base: tinyconfig, fragments: [{REPO_ROOT}/kernels/fragments/common.config]}}
targets: [x86_64]
suites: [smoke]
""")
    cfg = load_config(config)
    outcome = bisect.run_bisect(cfg, str(config), "linux-6.1-git", "x86_64", "smoke", "base", "master",
                                retries=1, work=tmp_path / "work")
    print(outcome.log[-3000:])
    for verdict in outcome.verdicts:
        print(verdict["commit"][:12], verdict["verdict"], verdict["subject"], verdict["reason"])
    assert outcome.subject == "proc: spell the PID field of /proc/PID/status in capitals", outcome.log
    assert outcome.exit_code == 1
    bad = [v for v in outcome.verdicts if v["verdict"] == "bad"]
    assert bad and all(len(v["attempts"]) == 2 for v in bad)  # retried once before being called bad
    assert outcome.reproduce.startswith("git -C ") and "bisect-judge" in outcome.reproduce
    # the user's repository is untouched: bisect ran in its own clone
    head = subprocess.run(["git", "-C", str(repo), "status", "--porcelain"], text=True, capture_output=True)
    assert head.stdout == ""
