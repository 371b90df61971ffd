"""Debian's packages for a target: apt look-ups (memoised while apt's state is unchanged), downloads,
and trees of packages plus the shared libraries they need.

Finding versions takes apt-cache calls of about half a second each, so the answers are kept in a
small memo under the cache, valid as long as apt's and dpkg's state files are unchanged: a call whose
result is already cached runs no subprocess at all.

    Apt(cache).candidate / closure / source / toolchain / debs
    packages_with_libraries(profile, ["dropbear-bin"], cache) -> a tree to merge into the guest's root
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from crlab.cache import Cache, hash_inputs
from crlab.targets import TargetProfile
from crlab.userland.common import USERLAND_RECIPE, Job, UserlandError, is_root, run, tail
from crlab.userland.elf import elf_info, elf_needed, expected_elf, is_elf

# What a packages tree drops from the extracted packages: documentation, locales, man pages and
# glibc's iconv modules (8 MB that nothing crlab runs in a guest uses).
DEFAULT_PRUNE = ("usr/share", "usr/lib/*/gconv")

# Directories whose files make a dependency package worth keeping in a tree.
_LIB_DIRS = ("lib/", "lib32/", "lib64/", "libx32/", "usr/lib/", "usr/lib32/", "usr/lib64/", "usr/libx32/")
_BIN_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "usr/libexec")

log = logging.getLogger(__name__)

APT_LISTS = Path("/var/lib/apt/lists")


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


class Apt:
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
        return str(run(["dpkg", "--print-architecture"], what="apt").stdout.strip())

    def ensure_arch(self, arch: str, what: str) -> None:
        """Make apt know packages of `arch` (dpkg --add-architecture + apt-get update when root)."""
        if arch == self.native_arch():
            return
        foreign = run(["dpkg", "--print-foreign-architectures"], what=what).stdout.split()
        has_lists = bool(glob.glob(str(APT_LISTS / f"*_binary-{arch}_Packages*")))
        if arch in foreign and has_lists:
            return
        if not is_root():
            raise UserlandError(
                f"{what}: apt does not know packages for architecture {arch}. As root, run:\n"
                f"  dpkg --add-architecture {arch}\n  apt-get update"
            )
        with self.cache.lock("apt"):
            if arch not in foreign:
                run(["dpkg", "--add-architecture", arch], what=what)
            self.update(what, f"*_binary-{arch}_Packages*")

    def update(self, what: str, need: str) -> None:
        """apt-get update; a failure to fetch some index is only a warning if the lists matching
        the glob `need` (what the caller is after) are there."""
        cmd = ["apt-get", "-q", "-o", "DPkg::Lock::Timeout=600", "update"]
        proc = run(cmd, what=what, check=False)
        if proc.returncode == 0:
            return
        if glob.glob(str(APT_LISTS / need)):
            errors = [line for line in proc.stdout.splitlines() if line.startswith(("E:", "Err:"))]
            log.warning("%s: apt-get update reported errors (going on):\n%s", what, "\n".join(errors))
            return
        raise UserlandError(
            f"{what}: `{' '.join(cmd)}` failed with exit status {proc.returncode}\n"
            f"--- last lines of output ---\n{tail(proc.stdout)}"
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
        if not is_root():
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
        proc = run(["apt-cache", "show", "--no-all-versions", *names], what=what, check=False)
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
        proc = run(
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
        graph = parse_depends(proc.stdout)
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
            proc = run(["apt-get", "source", "--print-uris", "-q", srcpkg], what=what)
            for line in proc.stdout.splitlines():
                m = re.match(r"'(\S+)' (\S+\.dsc) \d+ (?:SHA256:)?([0-9a-f]+)", line)
                if m:
                    dsc = m.group(2)
                    version = dsc[len(srcpkg) + 1 : -len(".dsc")]
                    return {"package": srcpkg, "dsc": dsc, "version": version, "sha256": m.group(3)}
            raise UserlandError(f"{what}: cannot tell which source of {srcpkg} apt would fetch:\n{tail(proc.stdout)}")

        return dict(self.memo(f"source:{srcpkg}", compute))

    def toolchain(self, profile: TargetProfile, what: str) -> dict[str, str]:
        """Versions of the target's cross toolchain packages and of its gcc."""

        def compute() -> dict[str, str]:
            gcc = f"{profile.cross_compile}gcc"
            install = f"apt-get install {' '.join(profile.toolchain_packages)}"
            if shutil.which(gcc) is None:
                raise UserlandError(f"{what}: no cross compiler {gcc}; install it with `{install}`")
            out: dict[str, str] = {}
            proc = run(
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
            out[gcc] = run([gcc, "-dumpfullversion"], what=what).stdout.strip()
            return out

        return dict(self.memo(f"toolchain:{profile.cross_compile}:{','.join(profile.toolchain_packages)}", compute))

    # --- downloads ---

    def debs(self, packages: Sequence[Sequence[str]], what: str) -> dict[str, Path]:
        """{package: .deb path} for [package, version, arch] items, downloaded once into the cache."""
        keys = {pkg: hash_inputs("deb", [pkg, version, arch]) for pkg, version, arch in packages}
        missing = [(pkg, version, arch) for pkg, version, arch in packages if not self.cache.has("deb", keys[pkg])]
        if missing:  # one apt-get call for all of them, then each .deb becomes its own entry
            self.cache.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=self.cache.root, prefix=".download-") as tmp:
                os.chmod(tmp, 0o755)  # lets apt's _apt user write there
                run(["apt-get", "download", "-q", *(f"{p}:{a}={v}" for p, v, a in missing)], what=what, cwd=Path(tmp))
                for pkg, version, arch in missing:
                    found = list(Path(tmp).glob(f"{pkg}_*_{arch}.deb"))
                    if len(found) != 1:
                        raise UserlandError(f"{what}: apt-get download gave no single .deb for {pkg}:{arch}={version}")
                    self.cache.get_or_build("deb", keys[pkg], _mover(found[0]), what=found[0].name)
        return {pkg: _only_deb(self.cache.entry("deb", key)) for pkg, key in keys.items()}


def _mover(path: Path) -> Callable[[Path], object]:
    return lambda scratch: shutil.move(path, scratch / path.name)


def _only_deb(entry: Path) -> Path:
    debs = list(entry.glob("*.deb"))
    if len(debs) != 1:
        raise UserlandError(f"cache entry {entry} should hold one .deb, has {len(debs)}")
    return debs[0]


def parse_depends(text: str) -> dict[str, list[list[str]]]:
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


def resolve_in_root(root: Path, guest_path: str) -> Path | None:
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


def check_tree(root: Path, profile: TargetProfile, what: str) -> list[str]:
    """Make each program in the tree loadable inside it: its PT_INTERP loader exists (added as a
    symlink to a loader of that name elsewhere in the tree if not) and every DT_NEEDED library,
    recursively, is found in the target's library directories.  Returns notes on what was fixed;
    raises UserlandError naming what is missing."""
    notes: list[str] = []
    missing: dict[str, set[str]] = {}
    want = expected_elf(profile)

    def find(name: str) -> Path | None:
        return next((p for d in profile.lib_dirs if (p := resolve_in_root(root, f"{d}/{name}")) is not None), None)

    programs = []
    for d in _BIN_DIRS:
        base = root / d
        if base.is_dir() and not base.is_symlink():
            programs += [p for p in sorted(base.rglob("*")) if p.is_file() and not p.is_symlink() and is_elf(p)]
    for prog in programs:
        rel = prog.relative_to(root).as_posix()
        info = elf_info(prog)
        if want is not None and (info.bits, info.endian, info.machine) != want:
            raise UserlandError(f"{what}: {rel} is {info.machine} {info.bits}-bit, not {profile.name}")
        if info.interp and resolve_in_root(root, info.interp) is None:
            loader = find(Path(info.interp).name)
            link = root / info.interp.lstrip("/")
            if loader is None or (link.parent.exists() and not link.parent.is_dir()):
                missing.setdefault(rel, set()).add(f"loader {info.interp}")
            else:
                link.parent.mkdir(parents=True, exist_ok=True)
                target = os.path.relpath("/" + loader.relative_to(root).as_posix(), os.path.dirname(info.interp))
                link.symlink_to(target)
                notes.append(f"added {info.interp} -> {target}")
        # the libraries it needs, and theirs
        todo = elf_needed(prog)
        done: set[str] = set()
        while todo:
            lib = todo.pop()
            if lib in done:
                continue
            done.add(lib)
            found = find(lib)
            if found is None:
                missing.setdefault(rel, set()).add(lib)
            else:
                todo += elf_needed(found)
    if missing:
        detail = "; ".join(f"{prog}: {', '.join(sorted(libs))}" for prog, libs in sorted(missing.items()))
        raise UserlandError(f"{what}: the tree {root} lacks what its programs need to load: {detail}")
    return notes


def _deb_has_libs(deb: Path, what: str) -> bool:
    contents = run(["dpkg-deb", "-c", str(deb)], what=what).stdout
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


def need_debian_arch(profile: TargetProfile, program: str) -> str:
    if not profile.debian_arch:
        raise UserlandError(
            f"{program} for {profile.name}: {program}_from is 'debian' but the target has no debian_arch "
            f"(Debian has no userland for it): set {program}_from to 'source'"
        )
    return profile.debian_arch


def packages_with_libraries(
    profile: TargetProfile,
    packages: Sequence[str],
    cache: Cache | None = None,
    *,
    exclude: Sequence[str] = (),
    prune: Sequence[str] = DEFAULT_PRUNE,
) -> Path:
    """A directory tree (to merge into the guest's root) with Debian's `packages` for the target and
    the shared libraries they need.

    The closure is apt's (Depends and Pre-Depends, no Recommends), restricted to packages of the
    target's architecture; of the dependencies only packages that ship files under lib/ or usr/lib are
    kept.  `exclude` names packages neither taken nor followed.  Each .deb is extracted with dpkg-deb
    -x; `prune` globs (relative to the tree) are removed.  Every program in the tree is then checked to
    find its loader and libraries inside the tree (see check_tree).  The .debs are cached too.
    """
    if not packages:
        raise ValueError("packages_with_libraries needs at least one package")
    cache = cache or Cache()
    arch = need_debian_arch(profile, packages[0])
    what = f"Debian packages {', '.join(packages)} for {profile.name}"
    apt = Apt(cache)
    closure = apt.closure(list(packages), arch, list(exclude), what)
    inputs = {
        "roots": sorted(packages),
        "arch": arch,
        "lib_dirs": list(profile.lib_dirs),
        "elf": expected_elf(profile),
        "packages": closure,
        "exclude": sorted(exclude),
        "prune": list(prune),
        "symlinks": "relative",
        "recipe": USERLAND_RECIPE,
    }

    def build(scratch: Path) -> None:
        debs = apt.debs(closure, what)
        job = Job(what, scratch / "build.log")
        tree = scratch / "root"
        tree.mkdir()
        kept: dict[str, str] = {}
        skipped: dict[str, str] = {}
        for pkg, version, _arch in closure:
            deb = debs[pkg]
            if pkg not in packages and not _deb_has_libs(deb, what):
                skipped[pkg] = version
                continue
            run(["dpkg-deb", "-x", str(deb), str(tree)], what=what, job=job)
            kept[pkg] = version
        _prune(tree, prune)
        os.chmod(tree, 0o755)
        relinked = _relative_symlinks(tree)
        notes = check_tree(tree, profile, what)
        manifest = {**inputs, "kept": kept, "skipped_no_libraries": skipped,
                    "absolute_symlinks_made_relative": relinked, "fixes": notes}
        (scratch / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")

    key = hash_inputs("deb-tree", inputs)
    return cache.get_or_build("deb-tree", key, build, what=what).path / "root"
