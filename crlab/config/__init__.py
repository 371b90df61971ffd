"""Load and validate crlab's YAML matrix configuration.

A config names kernel trees, QEMU targets and test suites, optionally narrows their cross product
with include/exclude rules, and sets run options.  It is checked in two passes, and every problem
of both is reported at once as ``FILE:LINE: message (hint: ...)``:

1. the shape, by the pydantic models in ``schema`` (document.py maps each error to its line);
2. what names and paths refer to: built-in kernels, targets and suites, files on disk, duplicate
   names, matrix rules -- done here, part by part, so that a broken entry hides nothing else.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from crlab import engines, paths
from crlab.config import schema
from crlab.config.document import ConfigError, ConfigProblem, Document, Loc, did_you_mean, display
from crlab.config.schema import NO_ENGINE, TRANSPORTS, unknown_name
from crlab.model import AXES, JobSpec
from crlab.targets import TargetProfile, builtin_profiles

__all__ = ["ConfigError", "ConfigProblem", "KernelSource", "KernelTree", "MatrixConfig", "Options", "SuiteConfig",
           "load_config"]

CONFIG_BASES = ("tinyconfig", "allnoconfig", "defconfig")
DEFAULT_TIMEOUTS: dict[str, int] = schema.Timeouts().model_dump()
# What `make` writes into a .config: y/m/n, decimal, hex or a double-quoted string.
_FRAGMENT_SET_RE = re.compile(r'CONFIG_[A-Za-z0-9_]+=(?:[ymn]|-?[0-9]+|0[xX][0-9a-fA-F]+|"(?:[^"\\]|\\.)*")')
_FRAGMENT_UNSET_RE = re.compile(r"# CONFIG_[A-Za-z0-9_]+ is not set")


# --------------------------------------------------------------------------------------------
# Public data


@dataclass(frozen=True)
class KernelSource:
    kind: str  # "debian" | "tarball" | "git" | "local"
    value: str  # package name, URL or absolute path
    sha256: str | None = None  # tarballs only
    ref: str | None = None  # git only


@dataclass(frozen=True)
class KernelTree:
    name: str
    source: KernelSource
    patches: tuple[Path, ...]  # absolute, in application order (a series file is expanded)
    config_base: str  # a make target such as tinyconfig, or the absolute path of a .config
    fragments: tuple[Path, ...]  # absolute


@dataclass(frozen=True)
class SuiteConfig:
    name: str
    suite: str  # the directory under suites/
    suite_dir: Path
    command: str
    files: tuple[str, ...]
    transport: str
    timeout: int
    description: str
    kind: str = "tap"  # the job kind that runs it (crlab.jobkinds)
    engines: tuple[str, ...] = ()  # C/R engines: one job per engine; () for none
    consumers: tuple[str, ...] = ()  # kernels that restore what another kernel checkpointed
    programs: tuple[Path, ...] = ()  # C sources built per target into bin/ (one program each)
    program_common: tuple[Path, ...] = ()  # linked into every program
    program_cflags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Options:
    jobs: int = 1
    retries: int = 0
    build_timeout: int = DEFAULT_TIMEOUTS["build"]
    boot_timeout: int = DEFAULT_TIMEOUTS["boot"]
    run_timeout: int = DEFAULT_TIMEOUTS["run"]
    results_dir: Path = paths.DEFAULT_RESULTS_DIR
    fail_fast: bool = False


@dataclass
class MatrixConfig:
    path: Path
    kernels: dict[str, KernelTree]
    targets: dict[str, TargetProfile]
    suites: dict[str, SuiteConfig]
    options: Options
    jobs: list[JobSpec]
    digest: str  # sha256 of the config file's bytes
    text: str = ""  # the config file as it was read, so a run records exactly what it ran
    # the kernels/*.yaml and suites/*/suite.yaml it used: path (relative to the checkout) -> text
    sources: dict[str, str] = field(default_factory=dict)


def load_config(path: Path | str) -> MatrixConfig:
    """Load, validate and expand a matrix config; raises ConfigError listing every problem."""
    problems: list[ConfigProblem] = []
    main = Document(Path(path), problems)
    config = _Resolver(main).resolve() if main.load() else None
    if problems or config is None:
        # A file referenced twice (say a built-in kernel) would otherwise report its problems twice.
        unique = list(dict.fromkeys(problems))
        unique.sort(key=lambda p: (p.path != main.display, p.path, p.line))
        raise ConfigError(unique)
    return config


# --------------------------------------------------------------------------------------------
# The second pass


def _kind_restores_elsewhere(kind: str) -> bool:
    from crlab.jobkinds import get_kind  # here: job kinds import the rootfs, which imports crlab.config

    return bool(getattr(get_kind(kind), "takes_consumer", False))


@dataclass(frozen=True)
class _SuiteDef:
    """What a suites/<name>/suite.yaml says."""

    suite_dir: Path
    spec: schema.SuiteFile
    programs: dict[str, Any] = dataclasses.field(default_factory=dict)  # SuiteConfig's program fields


def _source_key(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(paths.REPO_ROOT)) if path.is_relative_to(paths.REPO_ROOT) else str(path)


class _Resolver:
    """Resolves names and paths of a schema-checked config into KernelTrees, profiles and jobs."""

    def __init__(self, main: Document) -> None:
        self.main = main
        self.problems = main.problems
        self.builtin_kernels: dict[str, KernelTree | None] = {}
        self.suite_defs: dict[str, _SuiteDef | None] = {}
        self.sources: dict[str, str] = {}

    def resolve(self) -> MatrixConfig | None:
        main = self.main
        for loc, entry in main.entries("kernels"):
            if isinstance(entry, dict) and schema.is_name(entry.get("name")):
                main.labels[loc] = f"kernel '{entry['name']}'"
        main.validate(schema.CONFIG_FILE)
        if not isinstance(main.data, dict):
            return None
        options = self.options()
        kernel_names, kernels = self.kernels()
        target_names, targets = self.targets()
        suite_names, suites = self.suites(options, kernel_names)
        jobs = self.matrix(kernel_names, target_names, suite_names, suites)
        if self.problems:
            return None
        return MatrixConfig(path=main.path.resolve(), kernels=kernels, targets=targets, suites=suites,
                            options=options, jobs=jobs, digest=hashlib.sha256(main.raw).hexdigest(), text=main.text,
                            sources=self.sources)

    def load(self, path: Path, prefix: str, schema_: TypeAdapter[Any]) -> Document | None:
        """A file the config refers to (kernels/*.yaml, suite.yaml), validated with its own lines."""
        doc = Document(path, self.problems, prefix=prefix, root_label=prefix)
        if not doc.load():
            return None
        self.sources[_source_key(path)] = doc.text
        if isinstance(doc.data, dict) and prefix == "kernel" and schema.is_name(doc.data.get("name")):
            doc.labels[()] = f"kernel '{doc.data['name']}'"
        doc.validate(schema_)
        return doc

    def declare(self, seen: dict[str, Loc], name: str | None, loc: Loc, what: str, hint: str = "") -> bool:
        """Record a declared name; False (and a problem for a second declaration) if it cannot be used."""
        if name is None:
            return False
        if name in seen:
            first = self.main.node(seen[name]).start_mark.line + 1
            self.main.fail(loc, f"duplicate {what} name '{name}'", f"first declared at line {first}{hint}")
            return False
        seen[name] = loc
        return True

    # --- options ----------------------------------------------------------------------------

    def options(self) -> Options:
        main = self.main
        given = main.valid(("options",), schema.RUN_OPTIONS) or schema.RunOptions()
        # across two fields, so checked here: whenever both are valid, whatever else is wrong
        retries, fail_fast = main.get(("options", "retries")), main.get(("options", "fail_fast"))
        if fail_fast is True and isinstance(retries, int) and retries > 0 and not main.has_errors(("options",
                                                                                                   "retries")):
            main.error(main.key_node(("options", "retries")), f"options: retries: {retries} conflicts with fail_fast: "
                       "true", "a retried job might still pass, so fail_fast cannot stop at its first failure; "
                       "set retries: 0 or drop fail_fast")
        timeouts = given.timeouts or schema.Timeouts()
        results_dir = Path(given.results_dir).expanduser()
        return Options(jobs=given.jobs, retries=given.retries, build_timeout=timeouts.build,
                       boot_timeout=timeouts.boot, run_timeout=timeouts.run, fail_fast=given.fail_fast,
                       results_dir=results_dir if results_dir.is_absolute() else paths.REPO_ROOT / results_dir)

    # --- kernels ----------------------------------------------------------------------------

    def kernels(self) -> tuple[list[str], dict[str, KernelTree]]:
        names: list[str] = []
        trees: dict[str, KernelTree] = {}
        seen: dict[str, Loc] = {}
        for loc, entry in self.main.entries("kernels"):
            if isinstance(entry, dict):
                name = self.main.valid((*loc, "name"), schema.NAME)
                tree = self.kernel_tree(self.main, loc, name)
            else:
                name = self.main.valid(loc, schema.NAME)
                tree = self.builtin_kernel(name, loc) if name is not None else None
            if self.declare(seen, name, loc, "kernel"):
                names.append(name)  # declared even if invalid, so matrix rules don't report it as unknown
                if tree is not None:
                    trees[name] = tree
        return names, trees

    def builtin_kernel(self, name: str, loc: Loc) -> KernelTree | None:
        """A string entry names kernels/<name>.yaml, validated with its own file and lines."""
        path = paths.KERNELS_DIR / f"{name}.yaml"
        if not path.is_file():
            hint = did_you_mean(name, [p.stem for p in paths.KERNELS_DIR.glob("*.yaml")])
            self.main.fail(loc, f"unknown kernel tree '{name}'",
                           hint or "define it inline (name, source, config) or add kernels/<name>.yaml")
            return None
        if name not in self.builtin_kernels:
            self.builtin_kernels[name] = None
            doc = self.load(path, "kernel", schema.KERNEL)
            own_name = doc.valid(("name",), schema.NAME) if doc else None
            if doc and own_name is not None and own_name != name:
                doc.fail(("name",), f"'{own_name}' does not match the file name {name}.yaml",
                         "configs refer to built-in kernels by file name, so the two must agree")
            self.builtin_kernels[name] = self.kernel_tree(doc, (), own_name) if doc else None
        return self.builtin_kernels[name]

    def kernel_tree(self, doc: Document, loc: Loc, name: str | None) -> KernelTree | None:
        source = self.source(doc, (*loc, "source"))
        patches = self.patches(doc, (*loc, "patches"))
        kconfig = self.kconfig(doc, (*loc, "config"))
        if name is None or source is None or patches is None or kconfig is None:
            return None
        return KernelTree(name=name, source=source, patches=patches, config_base=kconfig[0], fragments=kconfig[1])

    def source(self, doc: Document, loc: Loc) -> KernelSource | None:
        given = doc.valid(loc, schema.SOURCE)
        if isinstance(given, schema.DebianSource):
            return KernelSource("debian", given.debian)
        if isinstance(given, schema.GitSource):
            return KernelSource("git", given.git.url, ref=given.git.ref)
        if isinstance(given, schema.LocalSource):
            tree = self.existing(doc, (*loc, "local"), kind="directory")
            if tree is not None and not (tree / "Makefile").is_file():
                doc.fail((*loc, "local"), f"'{tree}' has no Makefile", "point it at the top of a kernel source tree")
                return None
            return KernelSource("local", str(tree)) if tree else None
        if isinstance(given, schema.TarballSource):
            tarball = given.tarball
            if isinstance(tarball, schema.TarballURL):
                return KernelSource("tarball", tarball.url, sha256=tarball.sha256.lower())
            found = self.existing(doc, (*loc, "tarball", "path"))
            return KernelSource("tarball", str(found), sha256=tarball.sha256.lower()) if found else None
        return None

    def existing(self, doc: Document, loc: Loc, kind: str = "file") -> Path | None:
        """A path from the config, looked up in the repository root and then beside the file."""
        written = doc.get(loc)
        found = _lookup(doc, written, Path.exists)
        if found is None:
            hint = "" if Path(written).is_absolute() else (
                f"relative paths are looked up in {paths.REPO_ROOT}, then {doc.dir}")
            doc.fail(loc, f"{kind} not found: '{written}'", hint)
        elif (kind == "file" and not found.is_file()) or (kind == "directory" and not found.is_dir()):
            doc.fail(loc, f"'{written}' is not a {kind}")
            return None
        return found

    def read_lines(self, doc: Document, loc: Loc, path: Path) -> list[str]:
        try:
            return path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            doc.fail(loc, f"cannot read '{path}': {exc}")
            return ["# unreadable"]  # reported; an empty file would pass

    def patches(self, doc: Document, loc: Loc) -> tuple[Path, ...] | None:
        given = doc.valid(loc, schema.PATCHES)
        if doc.has_errors(loc):
            return None
        if not isinstance(given, str):  # a list of patch files, or none
            found = [self.existing(doc, (*loc, i)) for i in range(len(given or []))]
            return None if None in found else tuple(p for p in found if p is not None)
        # A quilt series file, or a directory holding one.
        path = self.existing(doc, loc, kind="file or directory")
        series = path / "series" if path and path.is_dir() else path
        if path is None or series is None:
            return None
        if path.is_file() and path.name.endswith(schema.PATCH_SUFFIXES):
            doc.fail(loc, f"'{given}' is a patch, not a series file", f"list single patches: patches: [{given}]")
            return None
        if not series.is_file():
            doc.fail(loc, f"'{path}' has no series file",
                     "a patch directory lists its patches in order in a file named 'series'")
            return None
        out: list[Path] = []
        entries = [(n, line.split("#", 1)[0].split()) for n, line in enumerate(self.read_lines(doc, loc, series), 1)]
        for number, words in entries:
            if words:  # quilt allows options such as -p1 after the patch name
                patch = series.parent / words[0]
                if patch.is_file():
                    out.append(patch.resolve())
                else:
                    self.problems.append(ConfigProblem(display(series), number, f"patch not found: '{words[0]}'",
                                                       f"series entries are relative to {series.parent}"))
        return tuple(out) if len(out) == sum(1 for _, words in entries if words) else None

    def kconfig(self, doc: Document, loc: Loc) -> tuple[str, tuple[Path, ...]] | None:
        base = self.config_base(doc, (*loc, "base")) if doc.valid(loc, schema.KCONFIG) else None
        fragments: list[Path | None] = []
        if not doc.has_errors((*loc, "fragments")):
            for i in range(len(doc.get((*loc, "fragments")) or [])):
                fragment = self.existing(doc, (*loc, "fragments", i))
                ok = fragment is not None and self.fragment_ok(doc, (*loc, "fragments", i), fragment)
                fragments.append(fragment if ok else None)
        if base is None or None in fragments:
            return None
        return base, tuple(p for p in fragments if p is not None)

    def config_base(self, doc: Document, loc: Loc) -> str | None:
        base = doc.get(loc)
        if base in CONFIG_BASES or (base.endswith("_defconfig") and "/" not in base):
            return str(base)
        # Anything else must be a saved .config; a near miss of a keyword is most likely a typo.
        found = _lookup(doc, base, Path.is_file)
        if found is None:
            close = difflib.get_close_matches(base, CONFIG_BASES, n=1)
            doc.fail(loc, f"unknown config base '{base}' (not a make target, no such file)",
                     f"did you mean '{close[0]}'?" if close else
                     "use tinyconfig, allnoconfig, defconfig, a <board>_defconfig or the path of a .config file")
        return str(found) if found else None

    def fragment_ok(self, doc: Document, loc: Loc, fragment: Path) -> bool:
        """Kconfig silently ignores lines it can't parse; here they are errors at their own line."""
        ok = True
        for number, raw in enumerate(self.read_lines(doc, loc, fragment), start=1):
            line = raw.strip()
            if not line or _FRAGMENT_SET_RE.fullmatch(line) or _FRAGMENT_UNSET_RE.fullmatch(line):
                continue
            if line.startswith("#") and not line.startswith("# CONFIG_"):
                continue  # an ordinary comment
            if line.startswith("# CONFIG_"):
                hint = "to unset a symbol write '# CONFIG_FOO is not set'"
            elif "=" in line and not line.startswith("CONFIG_"):
                hint = "symbols in a fragment carry the CONFIG_ prefix, e.g. CONFIG_FOO=y"
            else:
                hint = ("fragment lines are CONFIG_FOO=<y|m|n|number|\"string\">, "
                        "'# CONFIG_FOO is not set', comments or blank")
            self.problems.append(ConfigProblem(display(fragment), number,
                                               f"malformed Kconfig fragment line: '{line}'", hint))
            ok = False
        return ok

    # --- targets ----------------------------------------------------------------------------

    def targets(self) -> tuple[list[str], dict[str, TargetProfile]]:
        names: list[str] = []
        profiles: dict[str, TargetProfile] = {}
        seen: dict[str, Loc] = {}
        for loc, entry in self.main.entries("targets"):
            name, profile = self.target_variant(loc) if isinstance(entry, dict) else self.builtin_target(loc)
            if name is not None and self.declare(seen, name, loc, "target", "; give a variant a new name with 'as:'"):
                names.append(name)
                if profile is not None:
                    profiles[name] = profile
        return names, profiles

    def builtin_target(self, loc: Loc) -> tuple[str | None, TargetProfile | None]:
        name = self.main.valid(loc, schema.NAME)
        profile = builtin_profiles().get(name) if name is not None else None
        if name is not None and profile is None:
            self.main.fail(loc, f"unknown target '{name}'", did_you_mean(name, builtin_profiles()))
        return (name, profile) if profile else (None, None)

    def target_variant(self, loc: Loc) -> tuple[str | None, TargetProfile | None]:
        """A built-in profile with some fields overridden, optionally under a new name."""
        _, base = self.builtin_target((*loc, "name"))
        alias = self.main.valid((*loc, "as"), schema.NAME)
        if base is None or (alias is None and self.main.get((*loc, "as")) is not None):
            return alias, None
        name: str = alias or base.name
        variant = self.main.valid(loc, schema.TARGET_OVERRIDE)
        if variant is None:
            return name, None
        overrides = {key: getattr(variant, key) for key in variant.model_fields_set - {"name", "as_"}}
        return name, dataclasses.replace(base.with_overrides(overrides), name=name)

    # --- suites -----------------------------------------------------------------------------

    def suites(self, options: Options, kernel_names: list[str]) -> tuple[list[str], dict[str, SuiteConfig]]:
        main = self.main
        names: list[str] = []
        suites: dict[str, SuiteConfig] = {}
        seen: dict[str, Loc] = {}
        for loc, entry in main.entries("suites"):
            mapping = isinstance(entry, dict)
            name = main.valid((*loc, "name") if mapping else loc, schema.NAME)
            hint = "; give the second one its own 'name:' and point 'suite:' at the directory"
            if not self.declare(seen, name, loc, "suite", hint):
                continue
            names.append(name)
            # the suite directory defaults to the entry's name
            dir_loc = (*loc, "suite") if mapping and "suite" in entry else (*loc, "name") if mapping else loc
            directory = main.valid(dir_loc, schema.NAME)
            definition = self.suite_def(directory, dir_loc) if directory is not None else None
            consumers = self.consumers((*loc, "consumers"), kernel_names)
            given = main.valid(loc, schema.SUITE_ENTRY) if mapping else schema.SuiteEntry(name=name)
            if definition is None or given is None or consumers is None or directory is None:
                continue
            spec = definition.spec
            if consumers and not _kind_restores_elsewhere(spec.kind):
                main.fail((*loc, "consumers"), f"suite '{directory}' is of kind '{spec.kind}', which restores "
                          "nothing on another kernel", "consumers apply to checkpoint/restart suites (kind: cr)")
                continue
            suites[name] = SuiteConfig(
                name=name, suite=directory, suite_dir=definition.suite_dir, command=spec.command,
                files=tuple(spec.files or ()), transport=given.transport or spec.transport or "console",
                timeout=given.timeout or spec.timeout or options.run_timeout, description=spec.description,
                kind=spec.kind, consumers=consumers,
                engines=tuple(given.engines if given.engines is not None else spec.engines or ()),
                **definition.programs)
        return names, suites

    def consumers(self, loc: Loc, kernel_names: list[str]) -> tuple[str, ...] | None:
        given = self.main.valid(loc, schema.NAMES) or []
        unknown = [i for i, name in enumerate(given) if name not in kernel_names]
        for i in unknown:
            self.main.fail((*loc, i), *unknown_name("kernel", given[i], kernel_names))
        if given and not unknown and len(set(kernel_names)) < 2:
            self.main.fail(loc, "no job: every consumer is the producer",
                           "a cross-kernel round trip needs a second kernel under kernels")
            return None
        return None if unknown or self.main.has_errors(loc) else tuple(given)

    def suite_def(self, suite: str, loc: Loc) -> _SuiteDef | None:
        """suites/<suite>/suite.yaml, loaded once however many entries use it."""
        path = paths.SUITES_DIR / suite / "suite.yaml"
        if not path.is_file():
            known = [p.parent.name for p in paths.SUITES_DIR.glob("*/suite.yaml")]
            self.main.error(self.main.node(loc), f"unknown suite '{suite}' (no {display(path)})",
                            did_you_mean(suite, known))
            return None
        if suite not in self.suite_defs:
            self.suite_defs[suite] = None
            doc = self.load(path, "suite", schema.SUITE_FILE)
            suite_dir = path.parent.resolve()
            # The files are copied into the guest from the suite directory and nowhere else.
            missing = [i for i, written in enumerate(doc.valid(("files",), schema.NAMES) or [] if doc else [])
                       if not (suite_dir / written).resolve().is_relative_to(suite_dir)
                       or not (suite_dir / written).resolve().is_file()]
            for i in missing:
                assert doc is not None
                doc.fail(("files", i), f"no file '{doc.get(('files', i))}' in the suite directory",
                         f"files are relative to {display(suite_dir)}")
            spec = doc.valid((), schema.SUITE_FILE) if doc else None
            programs = self.programs(doc, suite_dir, spec) if doc and spec else {}
            if spec is not None and not missing and programs is not None:
                self.suite_defs[suite] = _SuiteDef(suite_dir, spec, programs)
        return self.suite_defs[suite]

    @staticmethod
    def programs(doc: Any, suite_dir: Path, spec: schema.SuiteFile) -> dict[str, Any] | None:
        """The suite's C programs as files: every glob must match, every common file exist."""
        if spec.programs is None:
            return {}
        common = [(suite_dir / name).resolve() for name in spec.programs.common]
        ok = True
        for i, path in enumerate(common):
            if not path.is_relative_to(suite_dir) or not path.is_file():
                doc.fail(("programs", "common", i), f"no file '{spec.programs.common[i]}' in the suite directory")
                ok = False
        sources: list[Path] = []
        for i, pattern in enumerate(spec.programs.sources):
            found = sorted(p.resolve() for p in suite_dir.glob(pattern)
                           if p.is_file() and p.resolve().is_relative_to(suite_dir) and p.resolve() not in common)
            if not found:
                doc.fail(("programs", "sources", i), f"'{pattern}' matches no file in the suite directory")
                ok = False
            sources += [p for p in found if p not in sources]
        if not ok:
            return None
        return {"programs": tuple(sources), "program_common": tuple(common),
                "program_cflags": tuple(spec.programs.cflags)}

    # --- matrix -----------------------------------------------------------------------------

    def matrix(self, kernels: list[str], targets: list[str], suite_names: list[str],
               suites: dict[str, SuiteConfig]) -> list[JobSpec]:
        main = self.main
        jobs = [job for k in kernels for t in targets for s in suite_names for job in _jobs(k, t, s, suites.get(s))]
        declared = {"kernel": kernels, "target": targets, "suite": suite_names, "transport": list(TRANSPORTS),
                    "engine": list(engines.engine_names()), "consumer": kernels}
        include = self.rules(("matrix", "include"), declared)
        exclude = self.rules(("matrix", "exclude"), declared)
        if include is None or exclude is None:
            return jobs  # an unknown name was reported; an "empty matrix" on top would mislead
        if main.get(("matrix", "include")) is not None:  # `include:` left empty means no include rules
            jobs = [job for job in jobs if any(_matches(rule, job) for rule in include)]
            if not jobs and kernels and targets and suite_names:
                main.error(main.key_node(("matrix", "include")), "matrix is empty: no job matches the include rules")
                return jobs
        kept = [job for job in jobs if not any(_matches(rule, job) for rule in exclude)]
        if jobs and not kept:
            main.error(main.key_node(("matrix", "exclude")), "matrix is empty: the exclude rules remove every job",
                       "narrow the exclude rules, or use include to pick jobs")
        return kept

    def rules(self, loc: Loc, declared: dict[str, list[str]]) -> list[dict[str, frozenset[str]]] | None:
        """include/exclude entries as axis -> names; None if any is invalid."""
        rules: list[dict[str, frozenset[str]]] = []
        ok = not self.main.has_errors(loc)
        for i, rule in enumerate(self.main.valid(loc, schema.RULES) or []):
            axes = {axis: getattr(rule, axis) for axis in AXES if getattr(rule, axis) is not None}
            for axis, value in axes.items():
                for j, name in enumerate([value] if isinstance(value, str) else value):
                    if name not in declared[axis]:
                        where = (*loc, i, axis) if isinstance(value, str) else (*loc, i, axis, j)
                        noun = "kernel" if axis == "consumer" else axis
                        self.main.fail(where, *unknown_name(noun, name, declared[axis],
                                                            NO_ENGINE if axis == "engine" else ""))
                        ok = False
            rules.append({axis: frozenset([value] if isinstance(value, str) else value)
                          for axis, value in axes.items()})
        return rules if ok else None


def _lookup(doc: Document, written: str, test: Callable[[Path], bool]) -> Path | None:
    """A path as written in a file: absolute, or relative to the checkout and then to the file."""
    path = Path(written).expanduser()
    for candidate in [path] if path.is_absolute() else [paths.REPO_ROOT / path, doc.dir / path]:
        if test(candidate):
            return candidate.resolve()
    return None


def _jobs(kernel: str, target: str, suite_name: str, suite: SuiteConfig | None) -> list[JobSpec]:
    """A suite's jobs on one kernel and target: one per C/R engine, and per other kernel that restores."""
    if suite is None:  # invalid, reported; still a cell, so that matrix rules are checked against it
        return [JobSpec(kernel=kernel, target=target, suite=suite_name)]
    consumers = [c for c in suite.consumers if c != kernel] if suite.consumers else [""]
    return [JobSpec(kernel=kernel, target=target, suite=suite_name, transport=suite.transport, engine=engine,
                    consumer=consumer)
            for engine in suite.engines or ("",) for consumer in consumers]


def _matches(rule: dict[str, frozenset[str]], job: JobSpec) -> bool:
    return all(getattr(job, axis) in names for axis, names in rule.items())
