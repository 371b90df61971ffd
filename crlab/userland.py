"""Guest programs for a target: a static busybox and a dropbear server, cached by content.

Each program comes either from Debian's binary packages for the target's ``debian_arch`` or, where
Debian has no userland (big-endian ppc64), from a static cross build of Debian's source package with
the target's ``cross_compile`` toolchain.  Results live in the content cache (crlab.cache) under a key
made of everything that decides their bytes: package names and versions as apt resolves them, the
architecture, the toolchain's versions and the recipe (configure flags, config edits).

Finding those versions takes apt-cache calls of about half a second each, so the answers are kept in
a small memo under the cache, valid as long as apt's and dpkg's state files are unchanged: a call
whose result is already cached runs no subprocess at all.

    busybox(profile)              -> Path of a static busybox binary
    dropbear(profile)             -> Path of a tree holding usr/sbin/dropbear and usr/bin/dropbearkey
    debian_packages_tree([...], arch) -> Path of a tree of Debian packages plus their library closure
    describe(profile)             -> the versions used, for run metadata
    elf_info(path)                -> ELF class, endianness, machine, PT_INTERP, static or not
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from crlab.cache import Cache, hash_inputs
from crlab.targets import TargetProfile

# Bump when a recipe below changes in a way its inputs do not show (they are part of every key).
USERLAND_RECIPE = "1"

BUSYBOX_DEB = "busybox-static"
DROPBEAR_DEB = "dropbear-bin"

# Config edits after `make defconfig` for a static (cross) build of busybox against glibc.
# None turns an option off.  tc does not build against current kernel headers; the rest need
# libraries or features a static glibc build does not have (PAM, SELinux, Sun RPC).
BUSYBOX_CONFIG: dict[str, str | None] = {
    "CONFIG_STATIC": "y",
    "CONFIG_PIE": None,
    "CONFIG_BUILD_LIBBUSYBOX": None,
    "CONFIG_TC": None,
    "CONFIG_FEATURE_TC_INGRESS": None,
    "CONFIG_PAM": None,
    "CONFIG_SELINUX": None,
    "CONFIG_FEATURE_MOUNT_NFS": None,
    "CONFIG_FEATURE_INETD_RPC": None,
}

DROPBEAR_CONFIGURE = (
    "--enable-static",
    "--enable-bundled-libtom",
    "--disable-zlib",
    "--disable-pam",
    "--disable-lastlog",
    "--disable-utmp",
    "--disable-utmpx",
    "--disable-wtmp",
    "--disable-wtmpx",
)
DROPBEAR_PROGRAMS = "dropbear dropbearkey"
# Debian's cross sysroots have no libcrypt (glibc 2.36 left crypt() to libxcrypt, which has no
# -cross package), and dropbear refuses password authentication without crypt(): a source-built
# dropbear accepts public-key logins only.
DROPBEAR_LOCALOPTIONS = "#define DROPBEAR_SVR_PASSWORD_AUTH 0\n"

# What debian_packages_tree drops from the extracted packages: documentation, locales, man pages
# and glibc's iconv modules (8 MB that nothing crlab runs in a guest uses).
DEFAULT_PRUNE = ("usr/share", "usr/lib/*/gconv")

# Directories whose files make a dependency package worth keeping in a tree.
_LIB_DIRS = ("lib/", "lib32/", "lib64/", "libx32/", "usr/lib/", "usr/lib32/", "usr/lib64/", "usr/libx32/")
_BIN_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "usr/libexec")

log = logging.getLogger(__name__)

APT_LISTS = Path("/var/lib/apt/lists")
_APT_ENV = {"LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}


class UserlandError(RuntimeError):
    """Getting or building a guest program failed; the message says what, for which target, and why."""


# --------------------------------------------------------------------------------------------------
# ELF headers


EM_NAMES = {
    2: "sparc",
    3: "i386",
    8: "mips",
    20: "ppc",
    21: "ppc64",
    22: "s390",
    40: "arm",
    42: "sh",
    43: "sparcv9",
    62: "x86-64",
    183: "aarch64",
    243: "riscv",
    258: "loongarch",
}

PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
DT_NULL, DT_NEEDED, DT_STRTAB = 0, 1, 5


class ElfInfo(NamedTuple):
    bits: int  # 32 or 64
    endian: str  # "little" or "big"
    machine: str  # e.g. "x86-64", "i386", "arm", "ppc64" (EM_<n> when unknown)
    interp: str | None  # the dynamic loader named by PT_INTERP
    is_static: bool  # no loader and no shared-library dependencies (static or static-pie)


@dataclass
class _Elf:
    info: ElfInfo
    needed: list[str]


def _parse_elf(path: Path) -> _Elf:
    data = Path(path).read_bytes()
    if len(data) < 52 or data[:4] != b"\x7fELF":
        raise ValueError(f"not an ELF file: {path}")
    bits = {1: 32, 2: 64}.get(data[4])
    endian = {1: "little", 2: "big"}.get(data[5])
    if bits is None or endian is None:
        raise ValueError(f"bad ELF class or data encoding in {path}")
    e = "<" if endian == "little" else ">"
    (machine,) = struct.unpack_from(e + "H", data, 18)
    if bits == 64:
        phoff, phentsize, phnum = (struct.unpack_from(e + "Q", data, 32)[0], *struct.unpack_from(e + "HH", data, 54))
        ph_fmt, dyn_fmt = e + "IIQQQQQQ", e + "qQ"
    else:
        phoff, phentsize, phnum = (struct.unpack_from(e + "I", data, 28)[0], *struct.unpack_from(e + "HH", data, 42))
        ph_fmt, dyn_fmt = e + "IIIIIIII", e + "iI"
    loads: list[tuple[int, int, int]] = []  # (vaddr, offset, filesz)
    interp: str | None = None
    dynamic: tuple[int, int] | None = None  # (offset, size)
    for i in range(phnum):
        off = phoff + i * phentsize
        if off + struct.calcsize(ph_fmt) > len(data):
            raise ValueError(f"truncated program headers in {path}")
        fields = struct.unpack_from(ph_fmt, data, off)
        if bits == 64:
            p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = fields[:6]
        else:
            p_type, p_offset, p_vaddr, _paddr, p_filesz = fields[:5]
        if p_type == PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == PT_INTERP:
            interp = data[p_offset : p_offset + p_filesz].split(b"\0", 1)[0].decode()
        elif p_type == PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
    needed: list[str] = []
    if dynamic is not None:
        entries: list[tuple[int, int]] = []
        size = struct.calcsize(dyn_fmt)
        for off in range(dynamic[0], min(dynamic[0] + dynamic[1], len(data) - size + 1), size):
            tag, val = struct.unpack_from(dyn_fmt, data, off)
            if tag == DT_NULL:
                break
            entries.append((tag, val))
        strtab = next((v for t, v in entries if t == DT_STRTAB), None)
        strtab_off = None
        if strtab is not None:
            for vaddr, offset, filesz in loads:
                if vaddr <= strtab < vaddr + filesz:
                    strtab_off = strtab - vaddr + offset
        if strtab_off is not None:
            for tag, val in entries:
                if tag == DT_NEEDED:
                    start = strtab_off + val
                    needed.append(data[start : data.index(b"\0", start)].decode())
    info = ElfInfo(bits, endian, EM_NAMES.get(machine, f"EM_{machine}"), interp, interp is None and not needed)
    return _Elf(info, needed)


def elf_info(path: str | os.PathLike[str]) -> ElfInfo:
    """(bits, endian, machine, interp, is_static) of an ELF file; ValueError if it is not one."""
    return _parse_elf(Path(path)).info


def elf_needed(path: str | os.PathLike[str]) -> list[str]:
    """The DT_NEEDED shared libraries of an ELF file, in order."""
    return _parse_elf(Path(path)).needed


def _is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


# ELF identity of each Debian architecture, and of GNU triplets' cpu part (for targets without one).
_DEB_ARCH_ELF = {
    "amd64": (64, "little", "x86-64"),
    "i386": (32, "little", "i386"),
    "armhf": (32, "little", "arm"),
    "armel": (32, "little", "arm"),
    "arm64": (64, "little", "aarch64"),
    "ppc64el": (64, "little", "ppc64"),
    "ppc64": (64, "big", "ppc64"),
    "powerpc": (32, "big", "ppc"),
    "s390x": (64, "big", "s390"),
    "riscv64": (64, "little", "riscv"),
    "mips64el": (64, "little", "mips"),
}
_DEB_ARCH_TRIPLET = {
    "amd64": "x86_64-linux-gnu",
    "i386": "i386-linux-gnu",
    "armhf": "arm-linux-gnueabihf",
    "armel": "arm-linux-gnueabi",
    "arm64": "aarch64-linux-gnu",
    "ppc64el": "powerpc64le-linux-gnu",
    "ppc64": "powerpc64-linux-gnu",
    "powerpc": "powerpc-linux-gnu",
    "s390x": "s390x-linux-gnu",
    "riscv64": "riscv64-linux-gnu",
    "mips64el": "mips64el-linux-gnuabi64",
}


def expected_elf(profile: TargetProfile) -> tuple[int, str, str] | None:
    """(bits, endian, machine) that the target's programs must have, or None if crlab cannot tell."""
    if profile.debian_arch in _DEB_ARCH_ELF:
        return _DEB_ARCH_ELF[profile.debian_arch]
    cpu = profile.cross_compile.split("-", 1)[0]
    if cpu == "x86_64":
        return (64, "little", "x86-64")
    if re.fullmatch(r"i[3-6]86", cpu):
        return (32, "little", "i386")
    if cpu == "aarch64":
        return (64, "little", "aarch64")
    if cpu.startswith("arm"):
        return (32, "big" if cpu.endswith("eb") else "little", "arm")
    if cpu == "powerpc64le":
        return (64, "little", "ppc64")
    if cpu == "powerpc64":
        return (64, "big", "ppc64")
    if cpu == "powerpc":
        return (32, "big", "ppc")
    if cpu == "riscv64":
        return (64, "little", "riscv")
    if cpu == "s390x":
        return (64, "big", "s390")
    return None


def _check_elf(path: Path, want: tuple[int, str, str] | None, static: bool, what: str) -> ElfInfo:
    try:
        info = elf_info(path)
    except (OSError, ValueError) as exc:
        raise UserlandError(f"{what}: {path} is not a usable ELF file ({exc})") from None
    if want is not None and (info.bits, info.endian, info.machine) != want:
        raise UserlandError(
            f"{what}: {path} is {info.bits}-bit {info.endian}-endian {info.machine}, "
            f"expected {want[0]}-bit {want[1]}-endian {want[2]}"
        )
    if static and not info.is_static:
        raise UserlandError(f"{what}: {path} is not static (loader {info.interp})")
    return info


# --------------------------------------------------------------------------------------------------
# running commands, logs


@dataclass
class _Job:
    """One build: its log (in the scratch entry) and where the log is kept if the build fails."""

    what: str  # e.g. "busybox for ppc64"
    log: Path | None = None
    kept_log: Path | None = None
    lock_wait: float = 0.0  # seconds spent waiting for the host-wide build lock


@contextlib.contextmanager
def _build_lock(job: _Job) -> Iterator[None]:
    """The host-wide compile lock (Cache().lock("build")), so that no compile of ours runs beside a
    kernel build; whatever cache the artifact itself goes to."""
    started = time.monotonic()
    with Cache().lock("build"):
        job.lock_wait += time.monotonic() - started
        yield


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _run(
    cmd: Sequence[str],
    *,
    what: str,
    job: _Job | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    input: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command; its output goes to the job's log (if any) and is returned."""
    full_env = {**os.environ, **_APT_ENV, **(env or {})}
    try:
        proc = subprocess.run(
            list(cmd),
            cwd=cwd,
            env=full_env,
            input=input,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            errors="replace",
        )
    except FileNotFoundError:
        raise UserlandError(f"{what}: command not found: {cmd[0]}") from None
    if job is not None and job.log is not None:
        with open(job.log, "a") as fh:
            fh.write(f"$ {' '.join(cmd)}" + (f"   (in {cwd})" if cwd else "") + "\n")
            fh.write(proc.stdout)
            fh.write(f"[exit {proc.returncode}]\n")
    if check and proc.returncode != 0:
        msg = f"{what}: `{' '.join(cmd)}` failed with exit status {proc.returncode}\n"
        msg += f"--- last lines of output ---\n{_tail(proc.stdout)}"
        if job is not None and job.kept_log is not None:
            msg += f"\n--- full log: {job.kept_log}"
        raise UserlandError(msg)
    return proc


@contextlib.contextmanager
def _build_entry(cache: Cache, kind: str, key: str, what: str) -> Iterator[tuple[Path, _Job]]:
    """Cache.building with a per-entry lock, a build log, and the log kept if the build fails."""
    kept = cache.root / "logs" / f"{kind}-{key}.failed.log"
    with cache.building(kind, key) as scratch:
        (scratch / "build.log").touch()
        job = _Job(what, scratch / "build.log", kept)
        try:
            yield scratch, job
        except BaseException:
            with contextlib.suppress(OSError):
                kept.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(scratch / "build.log", kept)
            raise
    with contextlib.suppress(OSError):
        kept.unlink()  # an old failure of the same entry


def _is_root() -> bool:
    return os.geteuid() == 0


# --------------------------------------------------------------------------------------------------
# apt: versions (memoised while apt's state is unchanged), architectures, deb-src, downloads


def _apt_fingerprint() -> str:
    """Changes whenever apt's lists, its sources, dpkg's foreign architectures or installed set do."""
    parts: list[str] = []
    for path in ("/var/lib/dpkg/status", "/var/lib/dpkg/arch", "/etc/apt/sources.list", "/etc/os-release"):
        try:
            st = os.stat(path)
            parts.append(f"{path}:{st.st_mtime_ns}:{st.st_size}")
        except OSError:
            parts.append(f"{path}:-")
    for directory in (str(APT_LISTS), "/etc/apt/sources.list.d"):
        try:
            with os.scandir(directory) as it:
                for entry in sorted(it, key=lambda e: e.name):
                    if entry.is_file():
                        st = entry.stat()
                        parts.append(f"{entry.name}:{st.st_mtime_ns}:{st.st_size}")
        except OSError:
            parts.append(f"{directory}:-")
    return hash_inputs("apt-state", parts)


def _os_codename() -> str:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return "bookworm"
    m = re.search(r"^VERSION_CODENAME=\"?([a-z]+)", text, re.M)
    return m.group(1) if m else "bookworm"


def _source_entries() -> list[dict[str, Any]]:
    """apt's configured sources: dicts with types, uris, suites, components, signed_by."""
    out: list[dict[str, Any]] = []
    one_line = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]
    for path in one_line:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            line = line.split("#", 1)[0].strip()
            m = re.match(r"(deb|deb-src)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)", line)
            if not m:
                continue
            opts = dict(o.split("=", 1) for o in (m.group(2) or "").split() if "=" in o)
            out.append(
                {
                    "types": [m.group(1)],
                    "uris": [m.group(3)],
                    "suites": [m.group(4)],
                    "components": m.group(5).split(),
                    "signed_by": opts.get("signed-by"),
                }
            )
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        try:
            text = path.read_text()
        except OSError:
            continue
        for stanza in re.split(r"\n\s*\n", text):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                name, value = line.split(":", 1)
                fields[name.strip().lower()] = value.strip()
            if not fields.get("types") or fields.get("enabled", "yes").lower() == "no":
                continue
            signed = fields.get("signed-by")
            out.append(
                {
                    "types": fields["types"].split(),
                    "uris": fields.get("uris", "").split(),
                    "suites": fields.get("suites", "").split(),
                    "components": fields.get("components", "").split(),
                    "signed_by": signed if signed and "\n" not in signed else None,
                }
            )
    return out


class _Apt:
    """apt look-ups, memoised in the cache per apt/dpkg state."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.memo_dir = cache.root / "userland-memo"

    # --- memo ---

    def _memo_path(self) -> Path:
        return self.memo_dir / f"{_apt_fingerprint()}.json"

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        path = self._memo_path()
        try:
            memo = json.loads(path.read_text())
        except (OSError, ValueError):
            memo = {}
        if key in memo:
            return memo[key]
        value = compute()
        path = self._memo_path()  # computing may have run apt-get update
        try:
            memo = json.loads(path.read_text())
        except (OSError, ValueError):
            memo = {}
        memo[key] = value
        self.memo_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(memo, indent=1, sort_keys=True))
        os.replace(tmp, path)
        for old in self.memo_dir.glob("*.json"):  # memos of earlier apt states are dead
            with contextlib.suppress(OSError):
                if old != path and time.time() - old.stat().st_mtime > 3600:
                    old.unlink()
        return value

    # --- host state ---

    def native_arch(self) -> str:
        return str(_run(["dpkg", "--print-architecture"], what="apt").stdout.strip())

    def ensure_arch(self, arch: str, what: str) -> None:
        """Make apt know packages of `arch` (dpkg --add-architecture + apt-get update when root)."""
        if arch == self.native_arch():
            return
        foreign = _run(["dpkg", "--print-foreign-architectures"], what=what).stdout.split()
        has_lists = bool(glob.glob(str(APT_LISTS / f"*_binary-{arch}_Packages*")))
        if arch in foreign and has_lists:
            return
        if not _is_root():
            raise UserlandError(
                f"{what}: apt does not know packages for architecture {arch}. As root, run:\n"
                f"  dpkg --add-architecture {arch}\n  apt-get update"
            )
        with self.cache.lock("apt"):
            if arch not in foreign:
                _run(["dpkg", "--add-architecture", arch], what=what)
            self.update(what, f"*_binary-{arch}_Packages*")

    def update(self, what: str, need: str) -> None:
        """apt-get update; a failure to fetch some index is only a warning if the lists matching
        the glob `need` (what the caller is after) are there."""
        cmd = ["apt-get", "-q", "-o", "DPkg::Lock::Timeout=600", "update"]
        proc = _run(cmd, what=what, check=False)
        if proc.returncode == 0:
            return
        if glob.glob(str(APT_LISTS / need)):
            errors = [line for line in proc.stdout.splitlines() if line.startswith(("E:", "Err:"))]
            log.warning("%s: apt-get update reported errors (going on):\n%s", what, "\n".join(errors))
            return
        raise UserlandError(
            f"{what}: `{' '.join(cmd)}` failed with exit status {proc.returncode}\n"
            f"--- last lines of output ---\n{_tail(proc.stdout)}"
        )

    def ensure_deb_src(self, what: str) -> None:
        """Make `apt-get source` work: a deb-src entry for this release, and its Sources lists."""
        codename = _os_codename()
        entries = _source_entries()
        has_src = any("deb-src" in e["types"] and codename in e["suites"] for e in entries)
        has_lists = bool(glob.glob(str(APT_LISTS / "*_source_Sources*")))
        if has_src and has_lists:
            return
        main = next((e for e in entries if "deb" in e["types"] and codename in e["suites"] and e["uris"]), None)
        uri = main["uris"][0] if main else "http://deb.debian.org/debian"
        signed = f"[signed-by={main['signed_by']}] " if main and main["signed_by"] else ""
        line = f"deb-src {signed}{uri} {codename} main"
        src_list = Path("/etc/apt/sources.list.d/crlab-src.list")
        if not _is_root():
            step = "" if has_src else f"  echo '{line}' > {src_list}\n"
            raise UserlandError(
                f"{what}: `apt-get source` needs a deb-src entry for {codename} and its lists. As root, run:\n"
                f"{step}  apt-get update"
            )
        with self.cache.lock("apt"):
            if not has_src:
                src_list.write_text(f"# added by crlab (crlab/userland.py) for `apt-get source`\n{line}\n")
            self.update(what, "*_source_Sources*")

    # --- look-ups ---

    def candidate(self, package: str, arch: str, what: str) -> str:
        """The version apt would install of package:arch."""

        def compute() -> str:
            self.ensure_arch(arch, what)
            found = self._show([f"{package}:{arch}"], what)
            version = found.get((package, arch))
            if not version:
                raise UserlandError(f"{what}: apt has no candidate for {package}:{arch}")
            return version

        return str(self.memo(f"candidate:{package}:{arch}", compute))

    def _show(self, names: Sequence[str], what: str) -> dict[tuple[str, str], str]:
        """{(package, architecture): candidate version} for package names (virtual ones are skipped)."""
        if not names:
            return {}
        proc = _run(["apt-cache", "show", "--no-all-versions", *names], what=what, check=False)
        found: dict[tuple[str, str], str] = {}
        for stanza in re.split(r"\n\n+", proc.stdout):
            fields = dict(re.findall(r"^(Package|Architecture|Version): (\S+)", stanza, re.M))
            if {"Package", "Architecture", "Version"} <= fields.keys():
                found.setdefault((fields["Package"], fields["Architecture"]), fields["Version"])
        return found

    def closure(self, roots: Sequence[str], arch: str, exclude: Sequence[str], what: str) -> list[list[str]]:
        """[[package, version, arch], ...]: roots and the packages of `arch` they depend on, sorted."""

        def compute() -> list[list[str]]:
            self.ensure_arch(arch, what)
            return self._closure(roots, arch, set(exclude), what)

        key = f"closure:{arch}:{','.join(sorted(roots))}:-{','.join(sorted(exclude))}"
        return [list(x) for x in self.memo(key, compute)]

    def _closure(self, roots: Sequence[str], arch: str, exclude: set[str], what: str) -> list[list[str]]:
        native = self.native_arch()
        qualified = [f"{r}:{arch}" for r in roots]
        proc = _run(
            [
                "apt-cache",
                "depends",
                "--recurse",
                "--no-recommends",
                "--no-suggests",
                "--no-conflicts",
                "--no-breaks",
                "--no-replaces",
                "--no-enhances",
                *qualified,
            ],
            what=what,
        )
        graph = _parse_depends(proc.stdout)
        versions = self._show(sorted(set(graph) | set(qualified)), what)

        def identify(name: str) -> tuple[str, str, str] | None:
            """(package, arch, version) of a node as apt-cache names it: pkg:arch, or pkg (native/all)."""
            pkg, _, qual = name.partition(":")
            for a in [qual] if qual else [native, "all"]:
                if (pkg, a) in versions:
                    return pkg, a, versions[(pkg, a)]
            return None

        order: list[str] = []
        seen: set[str] = set()
        todo = list(qualified)
        # apt-cache prints native packages unqualified: the roots may appear either way
        if arch == native:
            todo = list(roots)
        result: dict[tuple[str, str], str] = {}
        while todo:
            name = todo.pop(0)
            if name in seen:
                continue
            seen.add(name)
            ident = identify(name)
            if ident is None:
                raise UserlandError(f"{what}: apt-cache knows no version of {name}")
            pkg, pkg_arch, version = ident
            if pkg in exclude:
                continue
            is_root = name in qualified or (arch == native and name in roots)
            if pkg_arch != arch and not is_root:
                # Arch: all packages (debconf, ...) and other architectures' tools carry no libraries
                # for this target: do not follow their dependencies either.
                continue
            result[(pkg, pkg_arch)] = version
            order.append(name)
            for group in graph.get(name, []):
                choice = next((alt for alt in group if alt in seen or alt in todo), group[0])
                todo.append(choice)
        return [[p, v, a] for (p, a), v in sorted(result.items())]

    def source(self, srcpkg: str, what: str) -> dict[str, str]:
        """The source package apt-get source would fetch: {"package", "dsc", "version", "sha256"}."""

        def compute() -> dict[str, str]:
            self.ensure_deb_src(what)
            proc = _run(["apt-get", "source", "--print-uris", "-q", srcpkg], what=what)
            for line in proc.stdout.splitlines():
                m = re.match(r"'(\S+)' (\S+\.dsc) \d+ (?:SHA256:)?([0-9a-f]+)", line)
                if m:
                    dsc = m.group(2)
                    version = dsc[len(srcpkg) + 1 : -len(".dsc")]
                    return {"package": srcpkg, "dsc": dsc, "version": version, "sha256": m.group(3)}
            raise UserlandError(f"{what}: cannot tell which source of {srcpkg} apt would fetch:\n{_tail(proc.stdout)}")

        return dict(self.memo(f"source:{srcpkg}", compute))

    def toolchain(self, profile: TargetProfile, what: str) -> dict[str, str]:
        """Versions of the target's cross toolchain packages and of its gcc."""

        def compute() -> dict[str, str]:
            gcc = f"{profile.cross_compile}gcc"
            install = f"apt-get install {' '.join(profile.toolchain_packages)}"
            if shutil.which(gcc) is None:
                raise UserlandError(f"{what}: no cross compiler {gcc}; install it with `{install}`")
            out: dict[str, str] = {}
            proc = _run(
                [
                    "dpkg-query",
                    "-W",
                    "-f",
                    "${Package}\t${Version}\t${db:Status-Status}\n",
                    *profile.toolchain_packages,
                ],
                what=what,
                check=False,
            )
            for line in proc.stdout.splitlines():
                parts = line.split("\t")
                if len(parts) == 3 and parts[2] == "installed":
                    out[parts[0]] = parts[1]
            missing = [p for p in profile.toolchain_packages if p not in out]
            if missing:
                raise UserlandError(f"{what}: toolchain packages not installed: {', '.join(missing)}; run `{install}`")
            out[gcc] = _run([gcc, "-dumpfullversion"], what=what).stdout.strip()
            return out

        return dict(self.memo(f"toolchain:{profile.cross_compile}:{','.join(profile.toolchain_packages)}", compute))

    # --- downloads ---

    def debs(self, packages: Sequence[Sequence[str]], what: str) -> dict[str, Path]:
        """{package: .deb path} for [package, version, arch] items, downloaded once into the cache."""
        out: dict[str, Path] = {}
        missing: list[tuple[str, str, str, str]] = []
        for pkg, version, arch in packages:
            key = hash_inputs("deb", [pkg, version, arch])
            if self.cache.has("deb", key):
                out[pkg] = _only_deb(self.cache.entry("deb", key))
            else:
                missing.append((pkg, version, arch, key))
        if missing:
            self.cache.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=self.cache.root, prefix=".download-") as tmp:
                os.chmod(tmp, 0o755)  # lets apt's _apt user write there
                specs = [f"{p}:{a}={v}" for p, v, a, _ in missing]
                _run(["apt-get", "download", "-q", *specs], what=what, cwd=Path(tmp))
                for pkg, version, arch, key in missing:
                    found = [f for f in Path(tmp).glob(f"{pkg}_*_{arch}.deb")]
                    if len(found) != 1:
                        raise UserlandError(f"{what}: apt-get download gave no single .deb for {pkg}:{arch}={version}")
                    with self.cache.building("deb", key) as scratch:
                        shutil.move(str(found[0]), scratch / found[0].name)
                    out[pkg] = _only_deb(self.cache.entry("deb", key))
        return out


def _only_deb(entry: Path) -> Path:
    debs = list(entry.glob("*.deb"))
    if len(debs) != 1:
        raise UserlandError(f"cache entry {entry} should hold one .deb, has {len(debs)}")
    return debs[0]


def _parse_depends(text: str) -> dict[str, list[list[str]]]:
    """`apt-cache depends --recurse` output as {package: [[alternative, ...], ...]}.

    An or-group ("|Depends: a" then "Depends: b") becomes one list; a virtual package (<name>)
    is replaced by the providers apt lists under it.
    """
    graph: dict[str, list[list[str]]] = {}
    current: list[list[str]] | None = None
    group: list[str] = []
    continues = False
    last_virtual = False
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            name = line.strip()
            current = None if name.startswith("<") else graph.setdefault(name, [])
            group, continues, last_virtual = [], False, False
            continue
        if current is None:
            continue
        m = re.match(r"^ ([ |])(PreDepends|Depends): (\S+)", line)
        if m:
            if not continues:
                group = []
                current.append(group)
            target = m.group(3)
            last_virtual = target.startswith("<")
            if not last_virtual:
                group.append(target)
            continues = m.group(1) == "|"
            continue
        if line.startswith("    ") and last_virtual:  # a provider of the virtual package above
            group.append(line.strip())
            continue
        last_virtual = False  # another relation type (should be none with the --no-* flags)
    for name in graph:
        graph[name] = [g for g in graph[name] if g]
    return graph


# --------------------------------------------------------------------------------------------------
# trees of Debian packages


def _resolve_in_root(root: Path, guest_path: str) -> Path | None:
    """The host path that `guest_path` names inside the tree `root` (symlinks resolved within it)."""
    todo = [p for p in guest_path.split("/") if p and p != "."]
    cur: list[str] = []
    hops = 0
    while todo:
        name = todo.pop(0)
        if name == "..":
            if cur:
                cur.pop()
            continue
        host = root.joinpath(*cur, name)
        if host.is_symlink():
            hops += 1
            if hops > 40:
                return None
            target = os.readlink(host)
            if target.startswith("/"):
                cur = []
            todo = [p for p in target.split("/") if p and p != "."] + todo
            continue
        if not host.exists():
            return None
        cur.append(name)
    return root.joinpath(*cur)


def _lib_dirs(arch: str, bits: int) -> list[str]:
    triplet = _DEB_ARCH_TRIPLET.get(arch, "")
    dirs = [f"/lib/{triplet}", f"/usr/lib/{triplet}"] if triplet else []
    dirs += ["/lib", "/usr/lib"]
    if bits == 64:
        dirs += ["/lib64", "/usr/lib64"]
    return dirs


def check_tree(root: Path, arch: str, what: str) -> list[str]:
    """Make each program in the tree loadable inside it: its PT_INTERP loader exists (added as a
    symlink to a loader of that name elsewhere in the tree if not) and every DT_NEEDED library,
    recursively, is found in the loader's default directories.  Returns notes on what was fixed;
    raises UserlandError naming what is missing."""
    notes: list[str] = []
    missing: dict[str, set[str]] = {}
    want = _DEB_ARCH_ELF.get(arch)
    programs = []
    for d in _BIN_DIRS:
        base = root / d
        if base.is_dir() and not base.is_symlink():
            programs += [p for p in sorted(base.rglob("*")) if p.is_file() and not p.is_symlink() and _is_elf(p)]
    for prog in programs:
        rel = prog.relative_to(root).as_posix()
        elf = _parse_elf(prog)
        if want is not None and (elf.info.bits, elf.info.endian, elf.info.machine) != want:
            raise UserlandError(f"{what}: {rel} is {elf.info.machine} {elf.info.bits}-bit, not {arch}")
        if elf.info.interp and _resolve_in_root(root, elf.info.interp) is None:
            name = Path(elf.info.interp).name
            candidates = [
                p for d in _lib_dirs(arch, elf.info.bits) if (p := _resolve_in_root(root, f"{d}/{name}")) is not None
            ]
            if not candidates:
                missing.setdefault(rel, set()).add(f"loader {elf.info.interp}")
            else:
                link = root / elf.info.interp.lstrip("/")
                if link.parent.exists() and not link.parent.is_dir():
                    missing.setdefault(rel, set()).add(f"loader {elf.info.interp}")
                else:
                    link.parent.mkdir(parents=True, exist_ok=True)
                    guest_target = "/" + candidates[0].relative_to(root).as_posix()
                    target = os.path.relpath(guest_target, os.path.dirname(elf.info.interp))
                    link.symlink_to(target)
                    notes.append(f"added {elf.info.interp} -> {target}")
        # the libraries it needs, and theirs
        todo = list(elf.needed)
        done: set[str] = set()
        while todo:
            lib = todo.pop()
            if lib in done:
                continue
            done.add(lib)
            found = next(
                (p for d in _lib_dirs(arch, elf.info.bits) if (p := _resolve_in_root(root, f"{d}/{lib}")) is not None),
                None,
            )
            if found is None:
                missing.setdefault(rel, set()).add(lib)
            else:
                todo += _parse_elf(found).needed
    if missing:
        detail = "; ".join(f"{prog}: {', '.join(sorted(libs))}" for prog, libs in sorted(missing.items()))
        raise UserlandError(f"{what}: the tree {root} lacks what its programs need to load: {detail}")
    return notes


def _deb_has_libs(deb: Path, what: str) -> bool:
    contents = _run(["dpkg-deb", "-c", str(deb)], what=what).stdout
    for line in contents.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 6 or parts[0].startswith("d"):
            continue
        path = parts[5].split(" -> ")[0].removeprefix("./")
        if path.startswith(_LIB_DIRS):
            return True
    return False


def _relative_symlinks(root: Path) -> int:
    """Rewrite absolute symlinks in the tree as relative ones (the same target inside the guest), so
    that the tree also works where it is not the root: `qemu-*-static -L`, host-side checks."""
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            link = Path(dirpath) / name
            if not link.is_symlink():
                continue
            target = os.readlink(link)
            if target.startswith("/"):
                guest_dir = "/" + link.parent.relative_to(root).as_posix()
                link.unlink()
                link.symlink_to(os.path.relpath(target, guest_dir))
                count += 1
    return count


def _prune(root: Path, patterns: Iterable[str]) -> None:
    for pattern in patterns:
        for path in sorted(root.glob(pattern)):
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.is_dir():
                shutil.rmtree(path)


def debian_packages_tree(
    packages: Sequence[str],
    debian_arch: str,
    cache: Cache | None = None,
    *,
    exclude: Sequence[str] = (),
    prune: Sequence[str] = DEFAULT_PRUNE,
) -> Path:
    """A directory tree with Debian's `packages` for `debian_arch` and the shared libraries they need.

    The closure is apt's (Depends and Pre-Depends, no Recommends), restricted to packages of that
    architecture; of the dependencies only packages that ship files under lib/ or usr/lib are kept.
    `exclude` names packages neither taken nor followed.  Each .deb is extracted with dpkg-deb -x;
    `prune` globs (relative to the tree) are removed.  Every program in the tree is then checked to
    find its loader and libraries inside the tree (see check_tree).  The .debs are cached too.
    """
    cache = cache or Cache()
    what = f"Debian packages {', '.join(packages)} for {debian_arch}"
    if not packages:
        raise ValueError("debian_packages_tree needs at least one package")
    apt = _Apt(cache)
    closure = apt.closure(list(packages), debian_arch, list(exclude), what)
    inputs = {
        "roots": sorted(packages),
        "arch": debian_arch,
        "packages": closure,
        "exclude": sorted(exclude),
        "prune": list(prune),
        "symlinks": "relative",
        "recipe": USERLAND_RECIPE,
    }
    key = hash_inputs("deb-tree", inputs)
    root = cache.entry("deb-tree", key) / "root"
    if cache.has("deb-tree", key):
        return root
    with cache.lock(f"deb-tree-{key}"):
        if cache.has("deb-tree", key):
            return root
        debs = apt.debs(closure, what)
        with _build_entry(cache, "deb-tree", key, what) as (scratch, job):
            tree = scratch / "root"
            tree.mkdir()
            kept: dict[str, str] = {}
            skipped: dict[str, str] = {}
            roots = set(packages)
            for pkg, version, _arch in closure:
                deb = debs[pkg]
                if pkg not in roots and not _deb_has_libs(deb, what):
                    skipped[pkg] = version
                    continue
                _run(["dpkg-deb", "-x", str(deb), str(tree)], what=what, job=job)
                kept[pkg] = version
            _prune(tree, prune)
            os.chmod(tree, 0o755)
            relinked = _relative_symlinks(tree)
            notes = check_tree(tree, debian_arch, what)
            manifest = {
                **inputs,
                "kept": kept,
                "skipped_no_libraries": skipped,
                "absolute_symlinks_made_relative": relinked,
                "fixes": notes,
            }
            (scratch / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return root


# --------------------------------------------------------------------------------------------------
# source packages and static cross builds


def _source_tree(apt: _Apt, srcpkg: str, what: str) -> tuple[Path, dict[str, str]]:
    """Debian's source package unpacked (with Debian's patches) in the cache: (src dir, info)."""
    info = apt.source(srcpkg, what)
    key = hash_inputs("deb-source", info)
    cache = apt.cache
    entry = cache.entry("deb-source", key)
    if not cache.has("deb-source", key):
        with cache.lock(f"deb-source-{key}"):
            if not cache.has("deb-source", key):
                with _build_entry(cache, "deb-source", key, what) as (scratch, job):
                    dl = scratch / "download"
                    dl.mkdir()
                    os.chmod(dl, 0o755)
                    _run(["apt-get", "source", "-q", srcpkg], what=what, job=job, cwd=dl)
                    if not (dl / info["dsc"]).exists():
                        raise UserlandError(f"{what}: apt-get source did not fetch {info['dsc']} (apt changed?)")
                    unpacked = [p for p in dl.iterdir() if p.is_dir()]
                    if len(unpacked) != 1:
                        raise UserlandError(f"{what}: apt-get source unpacked {len(unpacked)} trees, expected one")
                    unpacked[0].rename(scratch / "src")
                    changelog = _run(
                        ["dpkg-parsechangelog", "-l", str(scratch / "src/debian/changelog"), "-S", "Version"],
                        what=what,
                        job=job,
                    )
                    full = {**info, "full_version": changelog.stdout.strip()}
                    (scratch / "info.json").write_text(json.dumps(full, indent=1) + "\n")
    full_info = json.loads((entry / "info.json").read_text())
    return entry / "src", full_info


def _set_kconfig(config: Path, settings: dict[str, str | None]) -> None:
    lines = config.read_text().splitlines()
    seen: set[str] = set()
    out: list[str] = []
    for line in lines:
        m = re.match(r"^(?:# )?(CONFIG_[A-Za-z0-9_]+)(?:=| is not set)", line)
        if m and m.group(1) in settings:
            name = m.group(1)
            seen.add(name)
            value = settings[name]
            out.append(f"{name}={value}" if value is not None else f"# {name} is not set")
        else:
            out.append(line)
    for name, value in settings.items():
        if name not in seen:
            out.append(f"{name}={value}" if value is not None else f"# {name} is not set")
    config.write_text("\n".join(out) + "\n")


def _busybox_source_inputs(profile: TargetProfile, apt: _Apt, what: str) -> dict[str, Any]:
    return {
        "from": "source",
        "source": apt.source("busybox", what),
        "cross_compile": profile.cross_compile,
        "toolchain": apt.toolchain(profile, what),
        "config": BUSYBOX_CONFIG,
        "recipe": USERLAND_RECIPE,
    }


def _dropbear_source_inputs(profile: TargetProfile, apt: _Apt, what: str) -> dict[str, Any]:
    return {
        "from": "source",
        "source": apt.source("dropbear", what),
        "cross_compile": profile.cross_compile,
        "toolchain": apt.toolchain(profile, what),
        "configure": list(DROPBEAR_CONFIGURE),
        "localoptions": DROPBEAR_LOCALOPTIONS,
        "programs": DROPBEAR_PROGRAMS,
        "recipe": USERLAND_RECIPE,
    }


def _smoke_run(binary: Path, args: Sequence[str], want: tuple[int, str, str] | None) -> str:
    """Run a freshly built program if this host can execute it natively; '' if it cannot."""
    host = os.uname().machine
    runnable = {"x86_64": {"x86-64", "i386"}, "i686": {"i386"}, "aarch64": {"aarch64"}}.get(host, set())
    if want is None or want[2] not in runnable:
        return ""
    try:
        proc = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=30)
    except OSError:  # e.g. a 64-bit kernel without 32-bit support
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else f"FAILED ({proc.returncode}): {proc.stderr.strip()}"


def _build_busybox_source(profile: TargetProfile, apt: _Apt, scratch: Path, job: _Job) -> None:
    src, _info = _source_tree(apt, "busybox", job.what)
    build = scratch / "build"
    shutil.copytree(src, build, symlinks=True)
    cross = profile.cross_compile
    make = ["make", f"CROSS_COMPILE={cross}"]
    with _build_lock(job):
        _run([*make, "defconfig"], what=job.what, job=job, cwd=build)
        _set_kconfig(build / ".config", BUSYBOX_CONFIG)
        _run([*make, "oldconfig"], what=job.what, job=job, cwd=build, input="\n" * 2000)
        _run([*make, "-j2", "busybox"], what=job.what, job=job, cwd=build)
    shutil.copyfile(build / "busybox", scratch / "busybox")
    os.chmod(scratch / "busybox", 0o755)
    shutil.copyfile(build / ".config", scratch / "busybox.config")
    shutil.rmtree(build)


def _build_dropbear_source(profile: TargetProfile, apt: _Apt, scratch: Path, job: _Job) -> None:
    src, _info = _source_tree(apt, "dropbear", job.what)
    build = scratch / "build"
    shutil.copytree(src, build, symlinks=True)
    cross = profile.cross_compile
    host = cross.rstrip("-")
    (build / "localoptions.h").write_text(DROPBEAR_LOCALOPTIONS)
    with _build_lock(job):
        _run(["./configure", f"--host={host}", *DROPBEAR_CONFIGURE], what=job.what, job=job, cwd=build)
        _run(
            ["make", "-j2", f"PROGRAMS={DROPBEAR_PROGRAMS}", "STATIC=1"],
            what=job.what,
            job=job,
            cwd=build,
        )
        _run([f"{cross}strip", "dropbear", "dropbearkey"], what=job.what, job=job, cwd=build)
    tree = scratch / "root"
    for name, dest in (("dropbear", "usr/sbin/dropbear"), ("dropbearkey", "usr/bin/dropbearkey")):
        (tree / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(build / name, tree / dest)
        os.chmod(tree / dest, 0o755)
    shutil.rmtree(build)


# --------------------------------------------------------------------------------------------------
# the public API


def _busybox_inputs(profile: TargetProfile, apt: _Apt, what: str) -> dict[str, Any]:
    if profile.busybox_from == "debian":
        arch = _need_debian_arch(profile, "busybox")
        return {
            "from": "debian",
            "package": BUSYBOX_DEB,
            "version": apt.candidate(BUSYBOX_DEB, arch, what),
            "arch": arch,
            "recipe": USERLAND_RECIPE,
        }
    if profile.busybox_from == "source":
        return _busybox_source_inputs(profile, apt, what)
    raise UserlandError(f"{what}: busybox_from must be 'debian' or 'source', not {profile.busybox_from!r}")


def _need_debian_arch(profile: TargetProfile, program: str) -> str:
    if not profile.debian_arch:
        raise UserlandError(
            f"{program} for {profile.name}: {program}_from is 'debian' but the target has no debian_arch "
            f"(Debian has no userland for it): set {program}_from to 'source'"
        )
    return profile.debian_arch


def busybox(profile: TargetProfile, cache: Cache | None = None) -> Path:
    """Host path of a static busybox binary for the target (fetched or built once, then cached)."""
    cache = cache or Cache()
    apt = _Apt(cache)
    what = f"busybox for {profile.name}"
    inputs = _busybox_inputs(profile, apt, what)
    key = hash_inputs("userland-busybox", inputs)
    binary = cache.entry("userland-busybox", key) / "busybox"
    if cache.has("userland-busybox", key):
        return binary
    want = expected_elf(profile)
    with cache.lock(f"userland-busybox-{key}"):
        if cache.has("userland-busybox", key):
            return binary
        started = time.monotonic()
        deb = None
        if inputs["from"] == "debian":
            deb = apt.debs([[BUSYBOX_DEB, inputs["version"], inputs["arch"]]], what)[BUSYBOX_DEB]
        with _build_entry(cache, "userland-busybox", key, what) as (scratch, job):
            if deb is not None:
                unpacked = scratch / "unpacked"
                _run(["dpkg-deb", "-x", str(deb), str(unpacked)], what=what, job=job)
                shutil.copyfile(unpacked / "bin/busybox", scratch / "busybox")
                os.chmod(scratch / "busybox", 0o755)
                shutil.rmtree(unpacked)
            else:
                _build_busybox_source(profile, apt, scratch, job)
            info = _check_elf(scratch / "busybox", want, static=True, what=what)
            smoke = _smoke_run(scratch / "busybox", ["echo", "crlab-ok"], want)
            if smoke and smoke != "crlab-ok":
                raise UserlandError(f"{what}: the binary does not run on this host: {smoke}")
            meta = {
                **inputs,
                "elf": info._asdict(),
                "host_run": smoke,
                "seconds": round(time.monotonic() - started, 1),
                "build_lock_wait_seconds": round(job.lock_wait, 1),
            }
            (scratch / "info.json").write_text(json.dumps(meta, indent=1) + "\n")
    return binary


def _dropbear_inputs(profile: TargetProfile, apt: _Apt, what: str) -> dict[str, Any]:
    if profile.dropbear_from == "debian":
        arch = _need_debian_arch(profile, "dropbear")
        return {"from": "debian", "arch": arch, "packages": apt.closure([DROPBEAR_DEB], arch, [], what)}
    if profile.dropbear_from == "source":
        return _dropbear_source_inputs(profile, apt, what)
    raise UserlandError(f"{what}: dropbear_from must be 'debian' or 'source', not {profile.dropbear_from!r}")


def dropbear(profile: TargetProfile, cache: Cache | None = None) -> Path:
    """Host path of a tree to merge into the guest's root: usr/sbin/dropbear, usr/bin/dropbearkey and,
    for Debian's build, the shared libraries and loader they need."""
    cache = cache or Cache()
    what = f"dropbear for {profile.name}"
    if profile.dropbear_from == "debian":
        root = debian_packages_tree([DROPBEAR_DEB], _need_debian_arch(profile, "dropbear"), cache)
    else:
        apt = _Apt(cache)
        inputs = _dropbear_inputs(profile, apt, what)
        key = hash_inputs("userland-dropbear", inputs)
        root = cache.entry("userland-dropbear", key) / "root"
        if not cache.has("userland-dropbear", key):
            want = expected_elf(profile)
            with cache.lock(f"userland-dropbear-{key}"):
                if not cache.has("userland-dropbear", key):
                    started = time.monotonic()
                    with _build_entry(cache, "userland-dropbear", key, what) as (scratch, job):
                        _build_dropbear_source(profile, apt, scratch, job)
                        elf = {}
                        for rel in ("usr/sbin/dropbear", "usr/bin/dropbearkey"):
                            elf[rel] = _check_elf(scratch / "root" / rel, want, static=True, what=what)._asdict()
                        smoke = _smoke_run(scratch / "root/usr/sbin/dropbear", ["-V"], want)
                        if smoke.startswith("FAILED"):
                            raise UserlandError(f"{what}: dropbear does not run on this host: {smoke}")
                        meta = {
                            **inputs,
                            "elf": elf,
                            "seconds": round(time.monotonic() - started, 1),
                            "build_lock_wait_seconds": round(job.lock_wait, 1),
                        }
                        (scratch / "info.json").write_text(json.dumps(meta, indent=1) + "\n")
    for rel in ("usr/sbin/dropbear", "usr/bin/dropbearkey"):
        if not (root / rel).is_file():
            raise UserlandError(f"{what}: {rel} is missing from {root}")
    return root


def describe(profile: TargetProfile, cache: Cache | None = None) -> dict[str, Any]:
    """The versions behind the target's guest programs (for a run's metadata); downloads nothing."""
    cache = cache or Cache()
    apt = _Apt(cache)
    out: dict[str, Any] = {"target": profile.name, "debian_arch": profile.debian_arch}
    busybox_inputs = _busybox_inputs(profile, apt, f"busybox for {profile.name}")
    dropbear_inputs = _dropbear_inputs(profile, apt, f"dropbear for {profile.name}")
    for name, inputs in (("busybox", busybox_inputs), ("dropbear", dropbear_inputs)):
        entry: dict[str, Any] = {"from": inputs["from"]}
        if inputs["from"] == "debian" and "package" in inputs:
            entry.update(package=inputs["package"], version=inputs["version"], arch=inputs["arch"])
        elif inputs["from"] == "debian":
            entry.update(arch=inputs["arch"], packages={p: v for p, v, _a in inputs["packages"]})
        else:
            src = inputs["source"]
            entry.update(source=src["package"], version=src["version"], toolchain=inputs["toolchain"])
        out[name] = entry
    return out
