"""crlab.config: loading, validation with FILE:LINE problems, and matrix expansion."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import textwrap
from pathlib import Path

import pytest

import crlab.engines
from crlab import paths
from crlab.config import ConfigError, ConfigProblem, KernelSource, load_config
from crlab.model import AXES
from crlab.targets import TargetProfile, builtin_profiles

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
    assert (opts.jobs, opts.retries, opts.fail_fast) == (1, 0, False)
    assert not hasattr(opts, "keep_going")  # removed: fail_fast is the one switch
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
    assert opts.jobs == 8 and opts.fail_fast
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
            config: {base: tinyconfig, fragments: [kernels/fragments/common.config]}
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
    assert kernels["by-series"].fragments == (paths.FRAGMENTS_DIR / "common.config",)


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


# --- every schema error lands on a line, in crlab's words ---------------------------------------

# pydantic's own phrasing; each error type crlab can meet is put in its words with the key's path
PYDANTIC_WORDS = ("Input should", "Field required", "Extra inputs", "should have at least", "union_tag")


@pytest.mark.parametrize("bad", BAD, ids=[p.stem for p in BAD])
def test_every_problem_is_file_line_message(bad: Path) -> None:
    for problem in problems_of(bad):
        assert re.match(r"[^\s:]+:\d+: \S", str(problem)), problem
        lines = Path(problem.path).read_text().count("\n") + 1
        assert 1 <= problem.line <= lines, problem
        assert not any(words in problem.message for words in PYDANTIC_WORDS), problem


# A config touching every model of the schema, one value per line: replacing any one value with a
# mapping breaks the schema right there, so each mutant must report a problem at that line.
EVERY_MODEL = """\
kernels:
  - linux-6.1
  - name: gitk
    source:
      git:
        url: https://example.org/linux.git
        ref: master
    patches: queue
    config:
      base: tinyconfig
      fragments:
        - kernels/fragments/common.config
  - name: tar
    source:
      tarball:
        path: linux.tar.xz
        sha256: "{sha}"
    patches:
      - queue/a.patch
    config:
      base: defconfig
  - name: web
    source:
      tarball:
        url: https://cdn.example.org/linux.tar.xz
        sha256: "{sha}"
    config:
      base: defconfig
  - name: mine
    source:
      local: tree
    config:
      base: defconfig
targets:
  - x86_64
  - name: ppc64
    as: ppc64-distro
    busybox_from: source
    dropbear_from: debian
    memory_mb: 1024
    debian_arch: ppc64
    boot_timeout: 600
    qemu_extra_args:
      - -no-reboot
suites:
  - smoke
  - name: roundtrip
    suite: cr
    transport: ssh
    timeout: 100
    consumers:
      - linux-6.1
      - gitk
matrix:
  include:
    - kernel: linux-6.1
    - consumer:
        - gitk
      transport: ssh
  exclude:
    - target: ppc64-distro
      suite: smoke
options:
  jobs: 2
  retries: 1
  results_dir: /tmp/crlab-results
  fail_fast: false
  timeouts:
    build: 100
    boot: 100
    run: 100
"""


def every_model(tmp_path: Path) -> str:
    (tmp_path / "queue").mkdir()
    (tmp_path / "queue" / "a.patch").write_text("--- a/x\n+++ b/x\n")
    (tmp_path / "queue" / "series").write_text("a.patch\n")
    (tmp_path / "linux.tar.xz").write_bytes(b"tarball")
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "Makefile").write_text("all:\n")
    return EVERY_MODEL.format(sha="ab" * 32)


def test_every_model_config_is_valid(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, every_model(tmp_path)))
    assert config.kernels["tar"].source.sha256 == "ab" * 32
    assert config.targets["ppc64-distro"].busybox_from == "source"
    assert config.suites["roundtrip"].consumers == ("linux-6.1", "gitk")
    # include: everything of linux-6.1, and round trips restored on gitk over SSH; exclude smoke on ppc64
    assert [job.job_id for job in config.jobs] == [
        "linux-6.1/x86_64/smoke",
        "linux-6.1>gitk/x86_64/roundtrip@criu",
        "linux-6.1>gitk/ppc64-distro/roundtrip@criu",
        *(f"{kernel}>gitk/{target}/roundtrip@criu" for kernel in ("tar", "web", "mine")
          for target in ("x86_64", "ppc64-distro")),
    ]
    assert {job.transport for job in config.jobs if job.suite == "roundtrip"} == {"ssh"}


def test_any_value_made_a_mapping_is_reported_at_its_line(tmp_path: Path) -> None:
    text = every_model(tmp_path)
    value_re = re.compile(r"^(\s*(?:- )?[\w-]+: |\s*- )(.+)$")
    mutated = 0
    for number, line in enumerate(text.splitlines(), start=1):
        match = value_re.match(line)
        if not match or line.endswith(":"):  # a key whose value is on the lines below
            continue
        lines = text.splitlines()
        lines[number - 1] = match[1] + "{bogus: [1]}"
        path = write(tmp_path, "\n".join(lines) + "\n", name=f"mutant{number}.yaml")
        problems = problems_of(path)
        assert any(Path(p.path).resolve() == path.resolve() and p.line == number for p in problems), (
            f"line {number} ({line.strip()}): " + "; ".join(map(str, problems)))
        assert not any(words in p.message for p in problems for words in PYDANTIC_WORDS), problems
        mutated += 1
    assert mutated >= 45


# --- job kinds, C/R engines and consumer kernels ------------------------------------------------


@pytest.fixture
def engines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two registered C/R engines, whatever crlab.engines registers today."""
    monkeypatch.setattr(crlab.engines, "engine_names", lambda: ("criu", "linux-cr"))


def suite_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, text: str) -> None:
    suites_dir = tmp_path / "suites"
    write(suites_dir / name, text, name="suite.yaml")
    monkeypatch.setattr(paths, "SUITES_DIR", suites_dir)


def test_suite_kind_defaults_to_tap(tmp_path: Path) -> None:
    suite = load_config(write(tmp_path, "kernels: [linux-6.1]\ntargets: [x86_64]\nsuites: [smoke]\n")).suites["smoke"]
    assert (suite.kind, suite.engines, suite.consumers) == ("tap", (), ())


def test_suite_engines_give_one_job_per_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               engines: None) -> None:
    suite_dir(tmp_path, monkeypatch, "cr", "command: cr-test\nkind: tap\nengines: [criu, linux-cr]\n")
    path = write(tmp_path, """\
        kernels: [linux-6.1]
        targets: [x86_64, {name: i386, engines: [criu]}]
        suites: [cr]
        matrix:
          exclude:
            - {target: i386, engine: linux-cr}
        """)
    config = load_config(path)
    assert config.suites["cr"].engines == ("criu", "linux-cr")
    assert config.targets["i386"].engines == ("criu",)
    assert [job.job_id for job in config.jobs] == [
        "linux-6.1/x86_64/cr@criu", "linux-6.1/x86_64/cr@linux-cr", "linux-6.1/i386/cr@criu"]
    assert {job.engine for job in config.jobs} == {"criu", "linux-cr"}


def test_suite_kind_and_engines_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engines: None) -> None:
    suite_dir(tmp_path, monkeypatch, "cr", "command: cr-test\nkind: tapp\nengines:\n  - cryu\n")
    problems = problems_of(write(tmp_path, "kernels: [linux-6.1]\ntargets: [x86_64]\nsuites: [cr]\n"))
    assert [(Path(p.path).name, p.line, p.message, p.hint) for p in problems] == [
        ("suite.yaml", 2, "suite.kind: unknown job kind 'tapp'", "did you mean 'tap'?"),
        ("suite.yaml", 4, "suite.engines[0]: unknown engine 'cryu'", "did you mean 'criu'?"),
    ]


def test_without_engines_any_engine_is_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crlab.engines, "engine_names", lambda: ())
    suite_dir(tmp_path, monkeypatch, "cr", "command: cr-test\nengines: [criu]\n")
    (problem,) = problems_of(write(tmp_path, "kernels: [linux-6.1]\ntargets: [x86_64]\nsuites: [cr]\n"))
    assert problem.line == 2
    assert problem.message == "suite.engines[0]: unknown engine 'criu' (crlab has no C/R engine yet)"


def test_consumers_give_one_job_per_other_kernel(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        kernels:
          - linux-6.1
          - {name: a, source: {debian: linux-source-6.1}, config: {base: tinyconfig}}
          - {name: b, source: {debian: linux-source-6.1}, config: {base: tinyconfig}}
        targets: [x86_64]
        suites:
          - {name: across, suite: cr, consumers: [a, b]}
        matrix:
          exclude:
            - {kernel: b, consumer: a}
        """)
    config = load_config(path)
    assert [(job.kernel, job.consumer) for job in config.jobs] == [("linux-6.1", "a"), ("linux-6.1", "b"), ("a", "b")]
    assert config.jobs[0].job_id == "linux-6.1>a/x86_64/across@criu"


def test_matrix_rules_on_transport(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        kernels: [linux-6.1]
        targets: [x86_64, i386]
        suites: [smoke, {name: smoke-ssh, suite: smoke, transport: ssh}]
        matrix:
          include:
            - {transport: ssh}
            - {target: i386, transport: [console]}
        """)
    assert [job.job_id for job in load_config(path).jobs] == [
        "linux-6.1/x86_64/smoke-ssh", "linux-6.1/i386/smoke", "linux-6.1/i386/smoke-ssh"]


def test_matrix_rules_accept_every_axis_of_the_result_key(tmp_path: Path, engines: None) -> None:
    axes = "\n".join(f"            - {{{axis}: linux-6.1}}" for axis in AXES if axis in ("kernel", "consumer"))
    others = {"target": "x86_64", "suite": "smoke", "transport": "console", "engine": "criu"}
    rules = "\n".join(f"            - {{{axis}: {name}}}" for axis, name in others.items())
    assert set(others) | {"kernel", "consumer"} == set(AXES)
    path = write(tmp_path, f"""\
        kernels: [linux-6.1]
        targets: [x86_64]
        suites: [smoke]
        matrix:
          include:
{axes}
{rules}
        """)
    assert [job.job_id for job in load_config(path).jobs] == ["linux-6.1/x86_64/smoke"]


# --- targets follow TargetProfile -----------------------------------------------------------------


def test_every_profile_field_can_be_overridden(tmp_path: Path, engines: None) -> None:
    examples = {"busybox_from": "source", "dropbear_from": "source", "engines": ["criu"], "debian_arch": None}
    base = builtin_profiles()["x86_64"]
    lines = []
    for field in dataclasses.fields(TargetProfile):
        if field.name == "name":
            continue
        current = getattr(base, field.name)
        value = examples.get(field.name, list(current) if isinstance(current, tuple) else
                             (current or 1) if isinstance(current, int) else current)
        lines.append(f"    {field.name}: {json.dumps(value)}")
    path = write(tmp_path, "kernels: [linux-6.1]\ntargets:\n  - name: x86_64\n    as: copy\n" + "\n".join(lines)
                 + "\nsuites: [smoke]\n")
    copy = load_config(path).targets["copy"]
    assert (copy.busybox_from, copy.engines, copy.debian_arch) == ("source", ("criu",), None)
    assert copy.qemu_extra_args == base.qemu_extra_args and copy.machine == base.machine


# --- what was read is kept ------------------------------------------------------------------------


def test_config_text_and_included_files_are_kept(tmp_path: Path) -> None:
    text = "kernels: [linux-6.1]\ntargets: [x86_64]\nsuites:\n  - smoke\n  - {name: again, suite: smoke}\n"
    config = load_config(write(tmp_path, text))
    assert config.text == text
    assert config.digest == hashlib.sha256(text.encode()).hexdigest()
    assert config.sources == {
        "kernels/linux-6.1.yaml": (paths.KERNELS_DIR / "linux-6.1.yaml").read_text(),
        "suites/smoke/suite.yaml": (paths.SUITES_DIR / "smoke" / "suite.yaml").read_text(),
    }


def test_suite_programs_are_expanded_and_a_glob_matching_nothing_is_reported(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from crlab import paths

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("kernels: [linux-6.1]\ntargets: [x86_64]\nsuites: [cr]\n")
    cr = load_config(cfg_file).suites["cr"]
    assert cr.kind == "cr" and cr.engines == ("criu",)
    assert {p.name for p in cr.program_common} == {"crtest.c"}
    assert "crtest.c" not in {p.name for p in cr.programs} and len(cr.programs) >= 25

    suites = tmp_path / "suites"
    (suites / "mine").mkdir(parents=True)
    (suites / "mine" / "suite.yaml").write_text("command: 'true'\nprograms:\n  sources: ['*.c']\n  common: [lib.c]\n")
    monkeypatch.setattr(paths, "SUITES_DIR", suites)
    cfg_file.write_text("kernels: [linux-6.1]\ntargets: [x86_64]\nsuites: [mine]\n")
    with pytest.raises(ConfigError) as info:
        load_config(cfg_file)
    text = str(info.value)
    assert "suite.yaml:3:" in text and "'*.c' matches no file" in text
    assert "suite.yaml:4:" in text and "no file 'lib.c'" in text


def test_a_suite_entry_can_run_cr_programs_without_an_engine(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        kernels: [linux-6.1]
        targets: [ppc64le]
        suites:
          - cr
          - {name: cr-plain, suite: cr, engines: []}
        """)
    config = load_config(path)
    assert [job.job_id for job in config.jobs] == ["linux-6.1/ppc64le/cr@criu", "linux-6.1/ppc64le/cr-plain"]
