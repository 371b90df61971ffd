"""crlab.config: loading, validation with FILE:LINE problems, and matrix expansion."""

from __future__ import annotations

import hashlib
import re
import textwrap
from pathlib import Path

import pytest

from crlab import paths
from crlab.config import ConfigError, ConfigProblem, KernelSource, load_config
from crlab.targets import builtin_profiles

DATA = Path(__file__).parent / "data"
BAD = sorted((DATA / "bad").glob("*.yaml"))
# First line of every bad config: "# expect: [OTHER_FILE:]LINE: substring of the message"
EXPECT_RE = re.compile(r"# expect: (?:(?P<file>[^\s:]+):)?(?P<line>\d+): (?P<text>.+)")


def write(tmp_path: Path, text: str, name: str = "matrix.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(path: Path) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


# --- malformed configs --------------------------------------------------------------------------


def test_enough_bad_configs() -> None:
    assert len(BAD) >= 20


@pytest.mark.parametrize("bad", BAD, ids=[p.stem for p in BAD])
def test_bad_config_reports_expected_problem(bad: Path) -> None:
    first = bad.read_text().splitlines()[0]
    expect = EXPECT_RE.fullmatch(first)
    assert expect, f"{bad.name}: first line must be '# expect: [FILE:]LINE: text', got {first!r}"
    where = (DATA / expect["file"]) if expect["file"] else bad
    line = int(expect["line"])

    problems = problems_of(bad)

    matching = [
        p for p in problems
        if Path(p.path).resolve() == where.resolve() and p.line == line and expect["text"] in p.message
    ]
    assert matching, f"expected {where.name}:{line}: ...{expect['text']}... among:\n" + "\n".join(
        str(p) for p in problems
    )


def test_all_independent_problems_reported_at_once() -> None:
    problems = problems_of(DATA / "three_errors.yaml")
    found = {(p.line, p.message) for p in problems}
    assert len(problems) == 3, problems
    assert any(line == 6 and "unknown target 'armv8'" in msg for line, msg in found)
    assert any(line == 10 and "options.jobs: must be at least 1" in msg for line, msg in found)
    assert any(line == 11 and "options.fail_fast: expected a boolean" in msg for line, msg in found)


def test_error_text_is_file_line_message_hint() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(DATA / "bad" / "options_unknown_key.yaml")
    (problem,) = info.value.problems
    assert str(info.value) == f"{problem.path}:9: options: unknown key 'jobz' (hint: did you mean 'jobs'?)"
    assert problem.path.endswith("options_unknown_key.yaml")


def test_unreadable_config_is_a_config_error(tmp_path: Path) -> None:
    problems = problems_of(tmp_path / "absent.yaml")
    assert problems[0].line == 1 and "cannot read" in problems[0].message


# --- the shipped configs ------------------------------------------------------------------------


def test_default_config() -> None:
    config = load_config(paths.DEFAULT_CONFIG)
    assert [job.job_id for job in config.jobs] == ["linux-6.1/x86_64/smoke"]
    kernel = config.kernels["linux-6.1"]
    assert kernel.source == KernelSource("debian", "linux-source-6.1")
    assert kernel.config_base == "tinyconfig"
    assert kernel.patches == ()
    assert kernel.fragments == (paths.FRAGMENTS_DIR / "common.config",)
    suite = config.suites["smoke"]
    assert suite.command == "sh smoke.sh" and suite.files == ("smoke.sh",)
    assert suite.transport == "console" and suite.timeout == 120
    assert suite.suite_dir == paths.SUITES_DIR / "smoke"
    assert config.options.jobs == 1 and config.options.results_dir == paths.REPO_ROOT / "results"
    assert config.digest == hashlib.sha256(paths.DEFAULT_CONFIG.read_bytes()).hexdigest()
    assert config.path == paths.DEFAULT_CONFIG


def test_targets_config() -> None:
    config = load_config(paths.CONFIGS_DIR / "targets.yaml")
    assert len(config.jobs) == 10
    assert list(config.targets) == ["x86_64", "i386", "ppc64", "ppc64le", "armv7"]
    assert config.jobs[0].job_id == "linux-6.1/x86_64/smoke"
    assert config.jobs[1].job_id == "linux-6.1/x86_64/smoke-ssh" and config.jobs[1].transport == "ssh"
    assert config.suites["smoke-ssh"].suite == "smoke"
    opts = config.options
    assert (opts.jobs, opts.build_timeout, opts.boot_timeout, opts.run_timeout) == (2, 3600, 180, 300)


# --- matrix -------------------------------------------------------------------------------------


def test_matrix_include_exclude(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        kernels:
          - linux-6.1
          - name: mainline
            source: {git: {url: "https://example.org/linux.git", ref: master}}
            config: {base: defconfig}
        targets: [x86_64, i386, armv7]
        suites:
          - smoke
          - {name: smoke-ssh, suite: smoke, transport: ssh}
        matrix:
          include:
            - {kernel: linux-6.1}
            - {kernel: mainline, target: [armv7, i386], suite: smoke}
          exclude:
            - {target: i386, suite: smoke-ssh}
            - {kernel: linux-6.1, target: armv7}
        """)
    config = load_config(path)
    assert [job.job_id for job in config.jobs] == [
        "linux-6.1/x86_64/smoke",
        "linux-6.1/x86_64/smoke-ssh",
        "linux-6.1/i386/smoke",
        "mainline/i386/smoke",
        "mainline/armv7/smoke",
    ]
    mainline = KernelSource("git", "https://example.org/linux.git", ref="master")
    assert config.kernels["mainline"].source == mainline


def test_matrix_without_include_is_the_cross_product(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        kernels: [linux-6.1]
        targets: [x86_64, i386]
        suites: [smoke]
        matrix:
          exclude:
            - target: x86_64
        """)
    assert [job.job_id for job in load_config(path).jobs] == ["linux-6.1/i386/smoke"]


# --- targets ------------------------------------------------------------------------------------


def test_target_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        kernels: [linux-6.1]
        targets:
          - x86_64
          - name: x86_64
            as: x86_64-big
            memory_mb: 1024
            smp: 2
            qemu_extra_args: [-no-reboot]
            kernel_cmdline: "loglevel=8"
        suites: [smoke]
        """)
    config = load_config(path)
    plain, big = config.targets["x86_64"], config.targets["x86_64-big"]
    assert big.name == "x86_64-big"
    assert (big.memory_mb, big.smp) == (1024, 2)
    assert big.qemu_extra_args == ("-no-reboot",)
    assert big.kernel_cmdline == "loglevel=8"
    assert big.arch == plain.arch and big.machine == plain.machine  # the rest comes from x86_64
    assert plain.name == "x86_64" and plain.memory_mb != 1024
    assert [job.target for job in config.jobs] == ["x86_64", "x86_64-big"]


def test_merge_keys_share_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        kernels: [linux-6.1]
        targets:
          - &big {name: x86_64, as: big64, memory_mb: 2048}
          - {<<: *big, name: i386, as: big32}
        suites: [smoke]
        """)
    targets = load_config(path).targets
    assert list(targets) == ["big64", "big32"]
    assert targets["big32"].memory_mb == targets["big64"].memory_mb == 2048
    assert targets["big32"].arch == builtin_profiles()["i386"].arch


# --- options ------------------------------------------------------------------------------------


def test_option_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "kernels: [linux-6.1]\ntargets: [x86_64]\nsuites: [smoke]\n")
    opts = load_config(path).options
    assert (opts.jobs, opts.retries, opts.fail_fast, opts.keep_going) == (1, 0, False, True)
    assert (opts.build_timeout, opts.boot_timeout, opts.run_timeout) == (3600, 180, 600)
    assert opts.results_dir == paths.REPO_ROOT / "results"


def test_options_given(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        kernels: [linux-6.1]
        targets: [x86_64]
        suites: [smoke]
        options:
          jobs: 8
          fail_fast: true
          results_dir: /tmp/crlab-results
          timeouts: {build: 60, boot: 30, run: 20}
        """)
    opts = load_config(path).options
    assert opts.jobs == 8 and opts.fail_fast and not opts.keep_going  # fail_fast implies stopping
    assert opts.results_dir == Path("/tmp/crlab-results")
    assert (opts.build_timeout, opts.boot_timeout, opts.run_timeout) == (60, 30, 20)


# --- kernel sources, patches, configs -----------------------------------------------------------


def test_tarball_and_local_sources(tmp_path: Path) -> None:
    (tmp_path / "linux-6.1.tar.xz").write_bytes(b"not really")
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "Makefile").write_text("all:\n")
    sha = "AB" * 32
    path = write(tmp_path, f"""\
        kernels:
          - name: tar
            source: {{tarball: {{path: linux-6.1.tar.xz, sha256: "{sha}"}}}}
            config: {{base: x86_64_defconfig}}
          - name: web
            source: {{tarball: {{url: "https://cdn.kernel.org/linux-6.1.tar.xz", sha256: "{sha}"}}}}
            config: {{base: allnoconfig}}
          - name: mine
            source: {{local: tree}}
            config: {{base: defconfig}}
        targets: [x86_64]
        suites: [smoke]
        """)
    kernels = load_config(path).kernels
    tarball = KernelSource("tarball", str(tmp_path / "linux-6.1.tar.xz"), sha256="ab" * 32)
    assert kernels["tar"].source == tarball
    assert kernels["tar"].config_base == "x86_64_defconfig"
    assert kernels["web"].source.value == "https://cdn.kernel.org/linux-6.1.tar.xz"
    assert kernels["mine"].source == KernelSource("local", str(tmp_path / "tree"))


def test_patches_series_and_list(tmp_path: Path) -> None:
    queue = tmp_path / "queue"
    queue.mkdir()
    for name in ("b.patch", "a.patch", "c.diff"):
        (queue / name).write_text("--- a/x\n+++ b/x\n")
    (queue / "series").write_text("# applied in this order\nb.patch -p1\n\na.patch # trailing comment\n")
    (tmp_path / "base.config").write_text("CONFIG_FOO=y\n")
    path = write(tmp_path, """\
        kernels:
          - name: by-dir
            source: {debian: linux-source-6.1}
            patches: queue
            config: {base: base.config}
          - name: by-series
            source: {debian: linux-source-6.1}
            patches: queue/series
            config: {base: tinyconfig, fragments: [kernels/fragments/criu.config]}
          - name: by-list
            source: {debian: linux-source-6.1}
            patches: [queue/c.diff, queue/a.patch]
            config: {base: tinyconfig}
        targets: [x86_64]
        suites: [smoke]
        """)
    kernels = load_config(path).kernels
    assert kernels["by-dir"].patches == (queue / "b.patch", queue / "a.patch")
    assert kernels["by-series"].patches == kernels["by-dir"].patches
    assert kernels["by-list"].patches == (queue / "c.diff", queue / "a.patch")
    assert kernels["by-dir"].config_base == str(tmp_path / "base.config")
    assert kernels["by-series"].fragments == (paths.FRAGMENTS_DIR / "criu.config",)


def test_fragment_line_forms(tmp_path: Path) -> None:
    (tmp_path / "ok.config").write_text(
        '# comment\n\nCONFIG_A=y\nCONFIG_B=m\nCONFIG_C=n\nCONFIG_D=42\nCONFIG_E=0x1f\n'
        'CONFIG_F="a \\"quoted\\" string"\n# CONFIG_G is not set\n'
    )
    (tmp_path / "bad.config").write_text("CONFIG_A=y\nFOO=y\n# CONFIG_B is unset\nCONFIG_C=yes\n")
    path = write(tmp_path, """\
        kernels:
          - name: k
            source: {debian: linux-source-6.1}
            config: {base: tinyconfig, fragments: [ok.config, bad.config]}
        targets: [x86_64]
        suites: [smoke]
        """)
    problems = problems_of(path)
    assert [(Path(p.path).name, p.line) for p in problems] == [("bad.config", 2), ("bad.config", 3),
                                                               ("bad.config", 4)]
    assert "CONFIG_ prefix" in problems[0].hint


# --- built-in kernel files and suite files, validated with their own file:line -----------------


def test_builtin_kernel_file_reports_its_own_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kernels_dir = tmp_path / "kernels"
    write(kernels_dir, """\
        name: broken
        source:
          debian: linux-source-6.1
        config:
          base: tinyconfig
          fragmnts: []
        """, name="broken.yaml")
    write(kernels_dir, "name: other-name\nsource: {debian: linux-source-6.1}\nconfig: {base: tinyconfig}\n",
          name="renamed.yaml")
    monkeypatch.setattr(paths, "KERNELS_DIR", kernels_dir)
    path = write(tmp_path, "kernels: [broken, renamed]\ntargets: [x86_64]\nsuites: [smoke]\n")
    problems = problems_of(path)
    where = sorted((Path(p.path).name, p.line) for p in problems)
    assert where == [("broken.yaml", 6), ("renamed.yaml", 1)]
    assert any("did you mean 'fragments'?" in p.hint for p in problems)
    assert any("does not match the file name" in p.message for p in problems)


def test_suite_file_is_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    suites_dir = tmp_path / "suites"
    write(suites_dir / "good", "command: sh run.sh\nfiles: [run.sh]\ntransport: ssh\n", name="suite.yaml")
    (suites_dir / "good" / "run.sh").write_text("echo ok\n")
    write(suites_dir / "bad", """\
        description: broken
        files:
          - run.sh
          - ../good/run.sh
        transport: serial
        timeout: soon
        """, name="suite.yaml")
    monkeypatch.setattr(paths, "SUITES_DIR", suites_dir)
    good = write(tmp_path, """\
        kernels: [linux-6.1]
        targets: [x86_64]
        suites: [good]
        options: {timeouts: {run: 77}}
        """, name="good.yaml")
    suite = load_config(good).suites["good"]
    assert (suite.transport, suite.timeout, suite.files) == ("ssh", 77, ("run.sh",))
    assert load_config(good).jobs[0].transport == "ssh"

    bad = write(tmp_path, "kernels: [linux-6.1]\ntargets: [x86_64]\nsuites: [bad]\n", name="bad.yaml")
    problems = problems_of(bad)
    assert all(Path(p.path).name == "suite.yaml" for p in problems), problems
    assert sorted(p.line for p in problems) == [1, 3, 4, 5, 6]
    assert any("missing required key 'command'" in p.message for p in problems)


def test_paths_resolve_against_the_config_directory_too(tmp_path: Path) -> None:
    (tmp_path / "sub" / "frags").mkdir(parents=True)
    (tmp_path / "sub" / "frags" / "mine.config").write_text("CONFIG_X=y\n")
    path = write(tmp_path, """\
        kernels:
          - name: k
            source: {debian: linux-source-6.1}
            config:
              base: tinyconfig
              fragments: [kernels/fragments/common.config, frags/mine.config]
        targets: [x86_64]
        suites: [smoke]
        """, name="sub/matrix.yaml")
    fragments = load_config(path).kernels["k"].fragments
    assert fragments == (paths.FRAGMENTS_DIR / "common.config", tmp_path / "sub" / "frags" / "mine.config")


def test_single_patch_string_is_not_a_series(tmp_path: Path) -> None:
    (tmp_path / "fix.patch").write_text("--- a/x\n+++ b/x\n")
    path = write(tmp_path, """\
        kernels:
          - name: k
            source: {debian: linux-source-6.1}
            patches: fix.patch
            config: {base: tinyconfig}
        targets: [x86_64]
        suites: [smoke]
        """)
    (problem,) = problems_of(path)
    assert problem.line == 4 and "is a patch, not a series file" in problem.message
