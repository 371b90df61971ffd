"""`harness.py export lava CONFIG`: one LAVA job definition per matrix cell, for a lab that runs
the same matrix on its LAVA infrastructure.

Per cell the export writes ``<dir>/<job dir name>.yaml`` (the job) and, per target,
``<dir>/devices/<target>.yaml`` (a QEMU device dictionary with the target's machine, cpu and
memory, as lava-server would render it from its templates), plus ``dispatcher.yaml``; a LAVA lab
keeps its own device types and only needs the job files.  The kernel and initramfs are crlab's
built artefacts from the content cache (built first when missing), as file:// URLs, or under
``--base-url`` when the lab fetches them over HTTP.  Only ``tap`` suites over the console export:
C/R suites need crlab's host-side image decoding, which LAVA does not do (they are listed as
skipped, with that reason).

What the job does: LAVA unpacks the initramfs, adds its test overlay and repacks it (``format:
cpio.newc``, ``overlays: {lava: true}``), boots it under QEMU (TCG) and waits for crlab's shell
prompt; the inline test definition goes to the suite's directory, sets what crlab sets
(CRLAB_EXPECT_*), runs the suite's command and turns each TAP line into a ``lava-test-case``
(ids made of [A-Za-z0-9._-]: LAVA skips ids with spaces; `case_ids` maps them back to crlab's
test names).  `run_local` runs one exported job with Debian's lava-run (lava-dispatcher) and
returns the per-test results it logged.  ../shared/reference/lava.md has the facts this rests on.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from crlab.cache import Cache
from crlab.config import MatrixConfig
from crlab.model import JobSpec
from crlab.rootfs import GUEST_SUITES_DIR, build_rootfs
from crlab.session import prepare_kernel

LAVA_RUN = "/usr/bin/lava-run"  # Debian's; it runs under /usr/bin/python3 (a venv cannot import lava_common)
PROMPT = "crlab# "


def case_id(name: str) -> str:
    """A LAVA test case id for a crlab test name (what the guest-side loop computes with tr)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


# The guest side: TAP on stdin -> one lava-test-case per test line.  `tr -c` makes the same id as
# case_id() (each other byte becomes '_').
_TAP_TO_LAVA = (
    "while IFS= read -r line; do"
    " case \"$line\" in \"ok \"*) r=pass ;; \"not ok \"*) r=fail ;; *) continue ;; esac;"
    " case \"$line\" in *\"# SKIP\"*|*\"# skip\"*) r=skip ;; esac;"
    " d=${line#*ok }; d=${d#*[0-9] }; d=${d#- }; d=${d%% # *};"
    " id=$(printf '%s' \"$d\" | tr -c 'A-Za-z0-9._-' '_');"
    " lava-test-case \"$id\" --result $r;"
    " done < /tmp/crlab-suite.tap"
)


@dataclass
class ExportedJob:
    spec: JobSpec
    path: Path
    device: Path
    kernel: Path
    initrd: Path


@dataclass
class Export:
    jobs: list[ExportedJob] = field(default_factory=list)
    skipped: list[tuple[JobSpec, str]] = field(default_factory=list)
    dispatcher: Path | None = None


def _url(path: Path, base_url: str | None) -> str:
    if base_url:
        return f"{base_url.rstrip('/')}/{path.name}"
    return path.resolve().as_uri()


def lava_arch(profile: Any) -> str:
    """LAVA's name of the job's architecture: it runs qemu-system-<arch> to check QEMU's version,
    so it is the suffix of the target's QEMU binary (ppc64, not the kernel's ARCH=powerpc)."""
    return str(profile.qemu_binary).removeprefix("qemu-system-")


def device_dictionary(cfg: MatrixConfig, target: str) -> dict[str, Any]:
    profile = cfg.targets[target]
    options = ["-accel tcg", f"-machine {profile.machine}", f"-cpu {profile.cpu}", f"-m {profile.memory_mb}",
               f"-smp {profile.smp}", "-nographic", "-nic none", "-no-reboot", "-monitor none",
               *(shlex.join(profile.qemu_extra_args[i:i + 2]) for i in range(0, len(profile.qemu_extra_args), 2))]
    return {
        "constants": {
            "posix": {"lava_test_sh_cmd": "/bin/sh", "lava_test_results_dir": "/lava-%s",
                      "lava_test_shell_file": "~/.bashrc"},
            "default-shell-prompt": PROMPT.strip(),
            "kernel-start-message": "Linux version [0-9]",
            "shutdown-message": "reboot: Restarting system",
            "spawn_maxread": 4092,
            "failure_retry": 1,
            "boot_retry": 0,
        },
        "commands": {"connect": ""},
        "available_architectures": [lava_arch(profile)],
        "actions": {
            "deploy": {"methods": {"image": {"parameters": {"guest": {"size": 512, "interface": "virtio"}}}}},
            "boot": {"methods": {"qemu": {"parameters": {"command": profile.qemu_binary, "options": options}}}},
        },
        "timeouts": {"actions": {"apply-overlay-image": {"minutes": 2}, "lava-test-shell": {"minutes": 5}},
                     "connections": {"lava-test-shell": {"minutes": 5}}},
    }


def job_definition(cfg: MatrixConfig, spec: JobSpec, kernel: Path, initrd: Path, env: dict[str, str],
                   base_url: str | None = None) -> dict[str, Any]:
    profile = cfg.targets[spec.target]
    suite = cfg.suites[spec.suite]
    append = " ".join(f"console={profile.console} panic=-1 {profile.kernel_cmdline}".split())
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    steps = [
        f"cd {GUEST_SUITES_DIR}/{suite.suite}",
        f"export {exports}",
        f"({suite.command}) > /tmp/crlab-suite.tap 2>&1; echo \"crlab: suite exited $?\"",
        "cat /tmp/crlab-suite.tap",
        _TAP_TO_LAVA,
    ]
    timeouts = cfg.options
    return {
        "job_name": f"crlab {spec.job_id}",
        "device_type": "qemu",
        "visibility": "public",
        "priority": "medium",
        "context": {"arch": lava_arch(profile)},
        "timeouts": {"job": {"minutes": max(5, (timeouts.boot_timeout + timeouts.run_timeout) // 60 + 2)},
                     "action": {"minutes": 5}, "connection": {"minutes": 2}},
        "actions": [
            {"deploy": {
                "to": "tmpfs", "os": "oe", "timeout": {"minutes": 2},
                "images": {
                    "kernel": {"url": _url(kernel, base_url), "image_arg": f"-kernel {{kernel}} -append \"{append}\""},
                    "ramdisk": {"url": _url(initrd, base_url), "image_arg": "-initrd {ramdisk}",
                                "compression": "gz", "format": "cpio.newc", "overlays": {"lava": True}},
                },
            }},
            {"boot": {"method": "qemu", "media": "tmpfs", "prompts": [PROMPT.strip()],
                      "timeout": {"seconds": int(timeouts.boot_timeout)}}},
            {"test": {
                "timeout": {"seconds": int(min(suite.timeout, timeouts.run_timeout)) + 60},
                "definitions": [{
                    "from": "inline", "name": case_id(spec.suite), "path": "inline/crlab.yaml",
                    "repository": {
                        "metadata": {"format": "Lava-Test Test Definition 1.0", "name": case_id(spec.suite),
                                     "description": f"crlab suite {spec.suite} on {spec.target}"},
                        "run": {"steps": steps},
                    },
                }],
            }},
        ],
    }


def dispatcher_config() -> dict[str, Any]:
    # without a default route lava-run cannot guess its address (LAVABug KeyError): say it
    return {"dispatcher_ip": "127.0.0.1"}


def export_lava(cfg: MatrixConfig, out_dir: Path, base_url: str | None = None, cache: Cache | None = None,
                log: Any = print) -> Export:
    """Write the job definitions (building kernels/rootfs that are not cached yet)."""
    cache = cache or Cache()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "devices").mkdir(exist_ok=True)
    dispatcher = out_dir / "dispatcher.yaml"
    dispatcher.write_text(yaml.safe_dump(dispatcher_config(), sort_keys=False))
    export = Export(dispatcher=dispatcher)
    logs = out_dir / "build-logs"
    written: set[Path] = set()
    for spec in cfg.jobs:
        suite = cfg.suites[spec.suite]
        if suite.kind != "tap" or spec.consumer or spec.engine:
            export.skipped.append((spec, f"suite kind {suite.kind!r}: C/R images are decoded by crlab on the host, "
                                         "which a LAVA job cannot do"))
            continue
        if spec.transport != "console":
            export.skipped.append((spec, "LAVA drives the serial console; the SSH transport is crlab's own"))
            continue
        profile = cfg.targets[spec.target]
        log_dir = logs / f"{spec.kernel}__{spec.target}"
        log_dir.mkdir(parents=True, exist_ok=True)
        built = prepare_kernel(cfg.kernels[spec.kernel], profile, cache, log_dir, on_stage=lambda _s: None,
                               build_timeout=cfg.options.build_timeout)
        rootfs = build_rootfs(profile, suite, cache, with_ssh=False)
        env = {"CRLAB_EXPECT_RELEASE": built.release, "CRLAB_EXPECT_VERSION": built.uts_version,
               "CRLAB_EXPECT_MACHINE": profile.uname_machine, "CRLAB_TARGET": profile.name, "CRLAB_JOB": spec.job_id}
        device = out_dir / "devices" / f"{spec.target}.yaml"
        if device not in written:
            written.add(device)
            device.write_text(yaml.safe_dump(device_dictionary(cfg, spec.target), sort_keys=False))
        path = out_dir / f"{spec.dir_name}.yaml"
        path.write_text(f"# LAVA job for crlab cell {spec.job_id} (harness.py export lava {cfg.path.name})\n"
                        + yaml.safe_dump(job_definition(cfg, spec, built.image, rootfs.path, env, base_url),
                                         sort_keys=False, width=10_000))
        export.jobs.append(ExportedJob(spec, path, device, built.image, rootfs.path))
        log(f"  {spec.job_id}: {path}")
    return export


@dataclass
class LavaRun:
    exit_code: int
    job_result: str  # "pass"/"fail" from the job verdict, "" when none was logged
    cases: dict[str, str]  # lava test case id -> pass/fail/skip (the suite's definition only)
    log: str  # lava-run's log (its stderr)


_RESULTS_LINE = re.compile(r"""["']?lvl["']?:\s*["']?results\b""")


def parse_results(log_text: str, definition: str) -> tuple[dict[str, str], str]:
    """Per-test results from lava-run's log: the lines at level `results`, one YAML mapping each."""
    cases: dict[str, str] = {}
    job = ""
    for line in log_text.splitlines():
        if not _RESULTS_LINE.search(line):
            continue
        try:
            entry = yaml.safe_load(line)
        except yaml.YAMLError:
            continue
        if isinstance(entry, list):
            entry = entry[0] if entry else None
        if not isinstance(entry, dict) or not isinstance(entry.get("msg"), dict):
            continue
        msg = entry["msg"]
        # LAVA names an inline definition "<index>_<name>"
        if re.fullmatch(rf"(\d+_)?{re.escape(definition)}", str(msg.get("definition"))):
            cases[str(msg.get("case"))] = str(msg.get("result"))
        elif msg.get("definition") == "lava" and msg.get("case") == "job":
            job = str(msg.get("result"))
    return cases, job


def run_local(job: ExportedJob, job_id: int, dispatcher: Path, output_dir: Path | None = None,
              timeout: float = 600) -> LavaRun:
    """Run an exported job with Debian's lava-run (root only) and collect the suite's results."""
    output_dir = output_dir or Path(tempfile.mkdtemp(prefix="crlab-lava-"))
    output_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [LAVA_RUN, "--dispatcher", str(dispatcher), "--device", str(job.device), "--job-id", str(job_id),
         "--output-dir", str(output_dir), str(job.path)],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": ""},
    )
    log = proc.stderr + proc.stdout
    (output_dir / "lava-run.log").write_text(log)
    cases, verdict = parse_results(log, case_id(job.spec.suite))
    return LavaRun(proc.returncode, verdict, cases, log)


__all__ = ["Export", "ExportedJob", "LavaRun", "case_id", "export_lava", "job_definition", "parse_results",
           "run_local"]
