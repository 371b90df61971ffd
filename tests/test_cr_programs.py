"""The C/R test programs of suites/cr, really compiled and really run, without checkpoint/restart.

Natively (host gcc) every program goes through the suite's contract: start it in a fresh working
directory, wait for the launcher to return and the pidfile, check that it detached (own session,
stdin from /dev/null, output to NAME.log), send the trigger, read the one-line verdict.  A probe
program shows that set-up and verification failures come out as failures.  Every program is also
cross-compiled statically with each Debian cross compiler crlab uses, and the catalogue is checked
against the sources.  In-guest runs on every target belong to the orchestrator (crlab/crsuite.py).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from elftools.elf.elffile import ELFFile

from crlab.paths import REPO_ROOT
from tests.conftest import missing_prerequisite

SUITE = REPO_ROOT / "suites" / "cr"
PROBE = REPO_ROOT / "tests" / "data" / "cr" / "contract_probe.c"
PROGRAMS = sorted(p.stem for p in SUITE.glob("*.c") if p.name != "crtest.c")
CFLAGS = ["-static", "-O2", "-Wall", "-Werror", "-pthread"]
ENGINES = ("criu", "linux-cr")
RESULTS = ("pass", "checkpoint-fails", "restore-loses-state", "unsupported")
TARGETS = ("x86_64", "i386", "ppc64", "ppc64le", "armv7")
# cross compiler -> (ELF class, data encoding, e_machine) its static programs must have
CROSS = {
    "x86_64-linux-gnu-gcc": ("ELFCLASS64", "ELFDATA2LSB", "EM_X86_64"),
    "i686-linux-gnu-gcc": ("ELFCLASS32", "ELFDATA2LSB", "EM_386"),
    "powerpc64-linux-gnu-gcc": ("ELFCLASS64", "ELFDATA2MSB", "EM_PPC64"),
    "powerpc64le-linux-gnu-gcc": ("ELFCLASS64", "ELFDATA2LSB", "EM_PPC64"),
    "arm-linux-gnueabihf-gcc": ("ELFCLASS32", "ELFDATA2LSB", "EM_ARM"),
}
# Short sleeps for the restart-block tests: nothing checkpoints them here.
RUN_ENV = {"CRTEST_SLEEP_MS": "300"}
READY_TIMEOUT = 120.0
VERDICT_TIMEOUT = 120.0
PARALLEL = max(2, 2 * (os.cpu_count() or 1))

# One xdist worker builds and runs the programs once for every test here (selftest uses loadgroup);
# the cross builds are a group of their own, so they overlap with the runs.
pytestmark = pytest.mark.xdist_group("cr-programs")


def _catalogue() -> list[dict[str, Any]]:
    data = yaml.safe_load((SUITE / "catalogue.yaml").read_text())
    assert isinstance(data, dict) and isinstance(data.get("tests"), list), "catalogue.yaml: a mapping with 'tests'"
    return data["tests"]


CATALOGUE = {entry["name"]: entry for entry in _catalogue()}
IS_ROOT = os.geteuid() == 0


# --------------------------------------------------------------------------- building


def _compile(cc: str, out: Path, source: Path, helper: Path, static: bool = True) -> str:
    """Build one program; '' on success, else the compiler's complaint."""
    flags = CFLAGS if static else [f for f in CFLAGS if f != "-static"]
    proc = subprocess.run([cc, *flags, f"-I{SUITE}", "-o", str(out), str(source), str(helper)],
                          capture_output=True, text=True, timeout=300)
    return "" if proc.returncode == 0 else f"{source.name}: {proc.stderr.strip()[-2000:]}"


def _static_libc(cc: str, tmp: Path) -> bool:
    src = tmp / "static-probe.c"
    src.write_text("int main(void) { return 0; }\n")
    return subprocess.run([cc, "-static", "-o", str(tmp / "static-probe"), str(src)],
                          capture_output=True).returncode == 0


def _build_all(cc: str, outdir: Path, static: bool = True) -> dict[str, Path]:
    """Every program (and the probe) with cc, in parallel; fails the test with every compiler error."""
    outdir.mkdir(parents=True, exist_ok=True)
    # the runtime is compiled once per compiler, as an object every program links with
    helper = outdir / "crtest.o"
    proc = subprocess.run([cc, *[f for f in CFLAGS if f != "-static"], "-c", "-o", str(helper),
                           str(SUITE / "crtest.c")], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"{cc}: crtest.c does not build:\n{proc.stderr}")
    sources = {name: SUITE / f"{name}.c" for name in PROGRAMS} | {"contract_probe": PROBE}
    with ThreadPoolExecutor(PARALLEL) as pool:
        errors = list(pool.map(lambda item: _compile(cc, outdir / item[0], item[1], helper, static),
                               sources.items()))
    problems = [e for e in errors if e]
    if problems:
        pytest.fail(f"{cc}: {len(problems)} program(s) do not build:\n" + "\n".join(problems))
    return {name: outdir / name for name in sources}


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is not installed (crlab's host set-up installs it)")
    tmp = tmp_path_factory.mktemp("cr-native")
    # -static needs glibc's static libc (libc6-dev); without it the host run is dynamic, same code
    return _build_all("gcc", tmp / "bin", static=_static_libc("gcc", tmp))


# --------------------------------------------------------------------------- running


@dataclass
class Run:
    """What one program did under the contract, without C/R."""

    launcher_status: int | None = None
    launcher_stderr: str = ""
    pid: int | None = None
    verdict: str | None = None  # the outfile's content, None when there is none
    problems: list[str] = field(default_factory=list)  # contract violations
    log_tail: str = ""


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (its reaper may not be us)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _detached_problems(pid: int, name: str, work: Path) -> list[str]:
    problems = []
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        if int(fields[3]) != pid:  # fields after comm: state ppid pgrp session ...
            problems.append(f"not a session leader (session {fields[3]}, pid {pid})")
        if os.readlink(f"/proc/{pid}/fd/0") != "/dev/null":
            problems.append(f"stdin is {os.readlink(f'/proc/{pid}/fd/0')}, not /dev/null")
        log = str(work / f"{name}.log")
        for fd in (1, 2):
            if os.readlink(f"/proc/{pid}/fd/{fd}") != log:
                problems.append(f"fd {fd} is {os.readlink(f'/proc/{pid}/fd/{fd}')}, not {log}")
    except OSError as exc:
        problems.append(f"cannot inspect pid {pid}: {exc}")
    return problems


def run_contract(binary: Path, work: Path, env: dict[str, str] | None = None,
                 before_trigger: Callable[[int, Path], None] | None = None) -> Run:
    """Start, wait until ready, check detachment, (meddle,) trigger, and collect the verdict."""
    run = Run()
    work.mkdir(parents=True)
    name = binary.name
    try:
        proc = subprocess.run([str(binary), "--outfile", "out", "--pidfile", "pid"], cwd=work,
                              env={**os.environ, **RUN_ENV, **(env or {})}, capture_output=True, text=True,
                              timeout=READY_TIMEOUT)
        run.launcher_status, run.launcher_stderr = proc.returncode, proc.stderr.strip()
    except subprocess.TimeoutExpired:
        run.problems.append(f"launcher did not return within {READY_TIMEOUT:.0f} s")
    pidfile, outfile = work / "pid", work / "out"
    if run.launcher_status == 0:
        text = pidfile.read_text() if pidfile.exists() else ""
        if not re.fullmatch(r"\d+\n", text):
            run.problems.append(f"pidfile holds {text!r}, not a pid line")
        else:
            run.pid = int(text)
            try:
                run.problems += _detached_problems(run.pid, name, work)
                if before_trigger:
                    before_trigger(run.pid, work)
                os.kill(run.pid, signal.SIGTERM)
                deadline = time.monotonic() + VERDICT_TIMEOUT
                while not outfile.exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
                # the verdict comes last: the process ends right after writing it
                while _alive(run.pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if _alive(run.pid):
                    run.problems.append("still running after its verdict")
            finally:  # never leave a test program behind, whatever went wrong above
                if _alive(run.pid):
                    os.kill(run.pid, signal.SIGKILL)
    if outfile.exists():
        run.verdict = outfile.read_text()
    if leftovers := [p.name for p in work.glob("*.tmp.*")]:
        run.problems.append(f"temporary files left behind: {leftovers}")
    log = work / f"{name}.log"
    if log.exists():
        run.log_tail = " | ".join(log.read_text(errors="replace").splitlines()[-5:])
    return run


@pytest.fixture(scope="module")
def native_runs(native: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Every program that can run here, in parallel (bounded): a few seconds in all."""
    work = tmp_path_factory.mktemp("cr-work")
    runnable = [n for n in PROGRAMS if IS_ROOT or not CATALOGUE.get(n, {}).get("needs_root")]
    with ThreadPoolExecutor(PARALLEL) as pool:
        runs = pool.map(lambda n: run_contract(native[n], work / n), runnable)
        return dict(zip(runnable, runs, strict=True))


@pytest.mark.parametrize("name", PROGRAMS)
def test_program_passes_without_cr(name: str, native_runs: dict[str, Run]) -> None:
    if name not in native_runs:
        missing_prerequisite(f"{name} needs root (it creates namespaces) and this run is uid {os.geteuid()}")
    run = native_runs[name]
    context = f"launcher: {run.launcher_stderr!r}; log: {run.log_tail}"
    assert run.launcher_status == 0, (
        f"not ready (launcher exit {run.launcher_status}, verdict {run.verdict!r}); {context}")
    assert not run.problems, f"contract broken: {run.problems}; {context}"
    assert run.verdict == "PASS\n", f"verdict {run.verdict!r}; {context}"


# --------------------------------------------------------------------------- the runtime's failure paths


def test_probe_passes_and_keeps_its_outfile_after_chdir(native: dict[str, Path], tmp_path: Path) -> None:
    run = run_contract(native["contract_probe"], tmp_path / "w", {"CRTEST_PROBE": "chdir"})
    assert (run.launcher_status, run.problems, run.verdict) == (0, [], "PASS\n"), run.log_tail


def test_setup_failure_fails_the_launcher_with_a_reason(native: dict[str, Path], tmp_path: Path) -> None:
    run = run_contract(native["contract_probe"], tmp_path / "w", {"CRTEST_PROBE": "fail-setup"})
    assert run.launcher_status == 1
    assert "not ready" in run.launcher_stderr
    assert run.verdict == "FAIL: deliberate set-up failure\n"
    assert not (tmp_path / "w" / "pid").exists(), "a pidfile although the test never got ready"


def test_death_before_ready_fails_the_launcher(native: dict[str, Path], tmp_path: Path) -> None:
    run = run_contract(native["contract_probe"], tmp_path / "w", {"CRTEST_PROBE": "die-setup"})
    assert run.launcher_status == 1
    assert run.verdict is None
    assert not (tmp_path / "w" / "pid").exists()


def test_verification_failure_is_the_verdict(native: dict[str, Path], tmp_path: Path) -> None:
    run = run_contract(native["contract_probe"], tmp_path / "w", {"CRTEST_PROBE": "fail-verify"})
    assert run.launcher_status == 0 and not run.problems
    assert run.verdict == "FAIL: deliberate verification failure\n"


def test_missing_arguments_are_a_usage_error(native: dict[str, Path], tmp_path: Path) -> None:
    proc = subprocess.run([str(native["counter_loop"]), "--outfile", "out"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "usage:" in proc.stderr
    assert not list(tmp_path.iterdir()), "a usage error must not start anything"


# --------------------------------------------------------------------------- the programs can fail
# Damage a program's state from outside between ready and trigger: its own check must say FAIL.
# (Without this a program that always passes would look the same as one that verifies.)


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _corrupt_big_mapping(pid: int, work: Path) -> None:
    # the test logs where its 64 MiB are (the kernel may merge them with a neighbouring mapping)
    found = re.search(r"64 MiB at (0x[0-9a-f]+)", (work / "mem_anon_64m.log").read_text())
    assert found, "the test did not log its address"
    with open(f"/proc/{pid}/mem", "r+b", buffering=0) as mem:
        mem.seek(int(found.group(1), 16) + 12345)
        byte = mem.read(1)
        mem.seek(int(found.group(1), 16) + 12345)
        mem.write(bytes([byte[0] ^ 0xFF]))


def _steal_from_fifo(pid: int, work: Path) -> None:
    fd = os.open(work / "fifo.fifo", os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert os.read(fd, 1)
    finally:
        os.close(fd)


def _grow_data_file(pid: int, work: Path) -> None:
    with open(work / "file_offset_flags.data", "ab") as f:
        f.write(b"x")


def _kill_a_grandchild(pid: int, work: Path) -> None:
    grandchildren = [g for c in _children(pid) for g in _children(c)]
    assert len(grandchildren) == 3, grandchildren
    os.kill(grandchildren[0], signal.SIGKILL)


def _send_unsent_signal(pid: int, work: Path) -> None:
    os.kill(pid, signal.SIGRTMIN + 3)


@pytest.mark.parametrize(("name", "damage", "reason"), [
    ("mem_anon_64m", _corrupt_big_mapping, "64 MiB checksum"),
    ("fifo", _steal_from_fifo, "queued data"),
    ("file_offset_flags", _grow_data_file, "changed (size"),
    ("pstree", _kill_a_grandchild, "shape or ids changed"),
    ("signals_pending", _send_unsent_signal, "SIGRTMIN+3 pending"),
])
def test_damaged_state_is_reported(name: str, damage: Callable[[int, Path], None], reason: str,
                                   native: dict[str, Path], tmp_path: Path) -> None:
    run = run_contract(native[name], tmp_path / "w", before_trigger=damage)
    assert run.launcher_status == 0 and not run.problems, (run.problems, run.log_tail)
    assert run.verdict is not None and run.verdict.startswith("FAIL: "), run.verdict
    assert reason in run.verdict


# --------------------------------------------------------------------------- cross compilers


@pytest.fixture(params=sorted(CROSS))
def cross_cc(request: pytest.FixtureRequest) -> Iterator[str]:
    cc = str(request.param)
    if shutil.which(cc) is None:
        missing_prerequisite(f"{cc} is not installed (crlab's host set-up installs Debian's cross compilers)")
    yield cc


@pytest.mark.xdist_group("cr-cross-builds")
def test_programs_cross_compile_statically(cross_cc: str, tmp_path: Path) -> None:
    elf_class, data, machine = CROSS[cross_cc]
    built = _build_all(cross_cc, tmp_path)
    for name, path in built.items():
        with path.open("rb") as f:
            elf = ELFFile(f)
            found = (f"ELFCLASS{elf.elfclass}", elf["e_ident"]["EI_DATA"], elf["e_machine"])
            assert found == (elf_class, data, machine), f"{name}: {found}"
            assert not any(seg["p_type"] == "PT_INTERP" for seg in elf.iter_segments()), f"{name} is not static"


# --------------------------------------------------------------------------- the catalogue


def test_catalogue_lists_exactly_the_programs() -> None:
    names = [str(entry.get("name")) for entry in _catalogue()]
    assert len(names) == len(set(names)), f"duplicate names: {sorted(n for n in names if names.count(n) > 1)}"
    assert sorted(names) == PROGRAMS, (f"in the catalogue only: {sorted(set(names) - set(PROGRAMS))}; "
                                       f"sources only: {sorted(set(PROGRAMS) - set(names))}")
    assert len(PROGRAMS) >= 25


@pytest.mark.parametrize("name", PROGRAMS)
def test_catalogue_entry_is_complete(name: str) -> None:
    entry = CATALOGUE.get(name)
    assert entry is not None, f"{name} is not in the catalogue"
    allowed = {"name", "description", "covers", "same_pids", "needs_root", "checkpoint_during_sleep",
               "engine_notes", "expect", "arches", "volatile"}
    assert set(entry) <= allowed, f"unknown keys: {sorted(set(entry) - allowed)}"
    assert isinstance(entry.get("description"), str) and entry["description"].strip()
    assert isinstance(entry.get("covers"), list) and entry["covers"], "covers: a non-empty list"
    for flag in ("same_pids", "needs_root"):
        assert isinstance(entry.get(flag), bool), f"{flag}: true or false"
    assert set(entry.get("arches") or ()) <= set(TARGETS), f"arches: unknown targets {entry.get('arches')}"
    expect = entry.get("expect")
    assert isinstance(expect, dict) and set(expect) == set(ENGINES), f"expect: one entry per engine {ENGINES}"
    for engine, value in expect.items():
        assert isinstance(value, dict), f"expect.{engine}: a mapping with result (and reason)"
        assert value.get("result") in RESULTS, f"expect.{engine}.result: one of {RESULTS}"
        if value["result"] != "pass":
            reason = value.get("reason")
            assert isinstance(reason, str) and reason.strip(), f"expect.{engine}: '{value['result']}' needs a reason"


def test_catalogue_flags_match_the_sources() -> None:
    """needs_root and checkpoint_during_sleep follow from what a program does."""
    for name in PROGRAMS:
        source = (SUITE / f"{name}.c").read_text()
        entry = CATALOGUE[name]
        creates_namespace = bool(re.search(r"\bunshare\s*\(|CLONE_NEWPID", source))
        assert entry["needs_root"] == creates_namespace, f"{name}: needs_root should be {creates_namespace}"
        sleeps = "CRTEST_SLEEP_MS" in source
        assert bool(entry.get("checkpoint_during_sleep")) == sleeps, (
            f"{name}: checkpoint_during_sleep should be {sleeps}")


def test_catalogue_has_must_fail_cases_for_criu() -> None:
    must_fail = [n for n, e in CATALOGUE.items() if e["expect"]["criu"]["result"] == "checkpoint-fails"]
    assert len(must_fail) >= 3, must_fail
    assert all(n.startswith("mustfail_") for n in must_fail), "must-fail programs are named mustfail_*"
