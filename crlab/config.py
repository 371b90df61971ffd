"""Load and validate crlab's YAML matrix configuration.

A config names kernel trees, QEMU targets and test suites, optionally narrows their cross product
with include/exclude rules, and sets run options.  Validation walks PyYAML's *node* tree (from
``yaml.compose``) instead of the constructed Python objects, because only nodes remember where
they came from: every problem is reported as ``FILE:LINE: message (hint: ...)``.  Problems are
collected rather than raised one at a time so that a user can fix a config in one pass; at the end
they are raised together in one :class:`ConfigError`.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from crlab import paths
from crlab.model import JobSpec
from crlab.targets import TargetProfile, builtin_profiles, overridable_fields

TOP_KEYS = ("kernels", "targets", "suites", "matrix", "options")
KERNEL_KEYS = ("name", "source", "patches", "config")
SOURCE_KINDS = ("debian", "tarball", "git", "local")
CONFIG_BASES = ("tinyconfig", "allnoconfig", "defconfig")
SUITE_ENTRY_KEYS = ("name", "suite", "transport", "timeout")
SUITE_FILE_KEYS = ("description", "files", "command", "timeout", "transport")
MATRIX_AXES = ("kernel", "target", "suite")
OPTION_KEYS = ("jobs", "retries", "timeouts", "results_dir", "fail_fast", "keep_going")
TRANSPORTS = ("console", "ssh")
DEFAULT_TIMEOUTS = {"build": 3600, "boot": 180, "run": 600}
PATCH_SUFFIXES = (".patch", ".diff")

NAME_RE = re.compile(r"[A-Za-z0-9._-]+")
SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
DEBIAN_SOURCE_RE = re.compile(r"linux-source-\d+\.\d+")
# What `make` writes into a .config: y/m/n, decimal, hex or a double-quoted string.
_FRAGMENT_SET_RE = re.compile(r'CONFIG_[A-Za-z0-9_]+=(?:[ymn]|-?[0-9]+|0[xX][0-9a-fA-F]+|"(?:[^"\\]|\\.)*")')
_FRAGMENT_UNSET_RE = re.compile(r"# CONFIG_[A-Za-z0-9_]+ is not set")

_T = TypeVar("_T")
_TAG_PREFIX = "tag:yaml.org,2002:"
_TAG_NAMES = {
    "str": "a string",
    "int": "an integer",
    "float": "a float",
    "bool": "a boolean",
    "null": "null",
    "timestamp": "a date",
    "binary": "binary data",
}


# --------------------------------------------------------------------------------------------
# Public data


@dataclass(frozen=True)
class ConfigProblem:
    path: str
    line: int  # 1-based
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.path}:{self.line}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text


class ConfigError(Exception):
    """Every problem found in a config (and the files it references), one per line."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


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


@dataclass(frozen=True)
class Options:
    jobs: int = 1
    retries: int = 0
    build_timeout: int = DEFAULT_TIMEOUTS["build"]
    boot_timeout: int = DEFAULT_TIMEOUTS["boot"]
    run_timeout: int = DEFAULT_TIMEOUTS["run"]
    results_dir: Path = paths.DEFAULT_RESULTS_DIR
    fail_fast: bool = False
    keep_going: bool = True


@dataclass
class MatrixConfig:
    path: Path
    kernels: dict[str, KernelTree]
    targets: dict[str, TargetProfile]
    suites: dict[str, SuiteConfig]
    options: Options
    jobs: list[JobSpec]
    digest: str  # sha256 of the config file's bytes


def load_config(path: Path | str) -> MatrixConfig:
    """Load, validate and expand a matrix config; raises ConfigError listing every problem."""
    path = Path(path)
    problems: list[ConfigProblem] = []
    try:
        data = path.read_bytes()
    except OSError as exc:
        problem = ConfigProblem(str(path), 1, f"cannot read the config: {exc.strerror or exc}")
        raise ConfigError([problem]) from exc
    main = _File(path, problems)
    root = main.compose(data)
    config = _Loader(problems).matrix_config(main, root, hashlib.sha256(data).hexdigest())
    if problems or config is None:
        # A file referenced twice (say a built-in kernel) would otherwise report its problems twice.
        raise ConfigError(list(dict.fromkeys(problems)))
    return config


# --------------------------------------------------------------------------------------------
# Node helpers


def _describe(node: Node) -> str:
    """What a node is, in words, for "expected X, got Y" messages."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    tag = node.tag
    if tag.startswith(_TAG_PREFIX):
        tag = tag[len(_TAG_PREFIX):]
        return _TAG_NAMES.get(tag, f"a {tag}")
    return f"a value tagged {tag}"


def _is_null(node: Node | None) -> bool:
    return node is None or (isinstance(node, ScalarNode) and node.tag == _TAG_PREFIX + "null")


def _has_tag(node: Node, name: str) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _TAG_PREFIX + name


def _construct(node: ScalarNode) -> object:
    # A throwaway constructor: SafeConstructor caches by node and is not meant to be shared.
    return SafeConstructor().construct_object(node, deep=True)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    choices = sorted(set(choices))
    close = difflib.get_close_matches(word, choices, n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"expected one of: {', '.join(choices)}" if choices else ""


def _display(path: Path) -> str:
    """A path as people want to read it: relative to the working directory when inside it."""
    if not path.is_absolute():
        return str(path)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@dataclass
class _Map:
    """A validated mapping node: key -> (key node, value node), in file order."""

    node: MappingNode
    items: dict[str, tuple[Node, Node]]

    def get(self, key: str) -> Node | None:
        entry = self.items.get(key)
        return entry[1] if entry else None

    def key(self, key: str) -> Node:
        return self.items[key][0]


class _File:
    """One YAML (or text) file being validated; problems found in it carry its path."""

    def __init__(self, path: Path, problems: list[ConfigProblem]) -> None:
        self.path = path
        self.dir = path.absolute().parent
        self.display = _display(path)
        self.problems = problems

    def error(self, where: Node | int, message: str, hint: str = "") -> None:
        line = where if isinstance(where, int) else where.start_mark.line + 1
        self.problems.append(ConfigProblem(self.display, line, message, hint))

    def compose(self, data: bytes) -> Node | None:
        """Parse without constructing, keeping marks; syntax errors become problems."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.error(data[: exc.start].count(b"\n") + 1, "the file is not UTF-8 text")
            return None
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            message, hint = exc.problem or exc.context or "invalid YAML", ""
            if exc.context and exc.problem:
                if exc.context.startswith("while"):  # "while parsing a flow sequence": where it began
                    if exc.context_mark is not None:
                        what = re.sub(r"^while \w+ ", "in ", exc.context)
                        hint = f"{what} starting at line {exc.context_mark.line + 1}"
                else:  # "expected a single document ..., but found another document" reads as one
                    message = f"{exc.context}, {exc.problem}"
            self.error(mark.line + 1 if mark else 1, f"YAML syntax error: {message}", hint)
            return None
        except yaml.reader.ReaderError as exc:  # e.g. a control character: it has a position, no mark
            self.error(text[: exc.position].count("\n") + 1, f"YAML syntax error: {exc}")
            return None
        except yaml.YAMLError as exc:
            self.error(1, f"YAML syntax error: {exc}")
            return None
        if node is None:
            self.error(1, "the file is empty", "a config is a mapping with keys such as kernels, targets")
        return node

    # --- shapes -----------------------------------------------------------------------------

    def mapping(self, node: Node, what: str) -> _Map | None:
        if not isinstance(node, MappingNode):
            self.error(node, f"{what}: expected a mapping, got {_describe(node)}")
            return None
        items: dict[str, tuple[Node, Node]] = {}
        merged: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _TAG_PREFIX + "merge":
                # `<<: *anchor` supplies defaults; keys written here win over merged ones.
                sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for source in sources:
                    if isinstance(source, MappingNode):
                        for k, v in source.value:
                            if isinstance(k, ScalarNode):
                                merged.setdefault(k.value, (k, v))
                    else:
                        self.error(source, f"{what}: '<<' expects a mapping, got {_describe(source)}")
                continue
            if not isinstance(key_node, ScalarNode):
                self.error(key_node, f"{what}: keys must be plain strings, got {_describe(key_node)}")
                continue
            key = key_node.value
            if key in items:
                first = items[key][0].start_mark.line + 1
                self.error(key_node, f"{what}: duplicate key '{key}'", f"first given at line {first}")
                continue
            items[key] = (key_node, value_node)
        for key, entry in merged.items():
            items.setdefault(key, entry)
        return _Map(node, items)

    def keys(self, m: _Map, what: str, allowed: Sequence[str], required: Sequence[str] = ()) -> None:
        for key, (key_node, _) in m.items.items():
            if key not in allowed:
                self.error(key_node, f"{what}: unknown key '{key}'", _did_you_mean(key, allowed))
        for key in required:
            if key not in m.items:
                self.error(m.node, f"{what}: missing required key '{key}'")

    def sequence(self, node: Node, what: str, nonempty: bool = False) -> list[Node] | None:
        if not isinstance(node, SequenceNode):
            self.error(node, f"{what}: expected a list, got {_describe(node)}")
            return None
        if nonempty and not node.value:
            self.error(node, f"{what}: the list is empty", "give at least one entry")
            return None
        return list(node.value)

    # --- scalars ----------------------------------------------------------------------------

    def string(self, node: Node, what: str, nonempty: bool = True) -> str | None:
        if not _has_tag(node, "str"):
            hint = ""
            if isinstance(node, ScalarNode) and not _is_null(node):
                hint = f'quote it to make it a string: "{node.value}"'
            self.error(node, f"{what}: expected a string, got {_describe(node)}", hint)
            return None
        assert isinstance(node, ScalarNode)
        if nonempty and not node.value.strip():
            self.error(node, f"{what}: must not be empty")
            return None
        return str(node.value)

    def name(self, node: Node, what: str) -> str | None:
        """A name that ends up in job ids and directory names, so keep it to safe characters."""
        value = self.string(node, what)
        if value is not None and not NAME_RE.fullmatch(value):
            self.error(node, f"{what}: invalid name '{value}'", "use only letters, digits, '.', '_' and '-'")
            return None
        return value

    def integer(self, node: Node, what: str, minimum: int | None = None) -> int | None:
        if not _has_tag(node, "int"):
            self.error(node, f"{what}: expected an integer, got {_describe(node)}")
            return None
        assert isinstance(node, ScalarNode)
        value = _construct(node)
        assert isinstance(value, int)
        if minimum is not None and value < minimum:
            self.error(node, f"{what}: must be at least {minimum}, got {value}")
            return None
        return value

    def boolean(self, node: Node, what: str) -> bool | None:
        if not _has_tag(node, "bool"):
            self.error(node, f"{what}: expected a boolean (true or false), got {_describe(node)}")
            return None
        assert isinstance(node, ScalarNode)
        return bool(_construct(node))

    def choice(self, node: Node, what: str, choices: Sequence[str]) -> str | None:
        value = self.string(node, what)
        if value is not None and value not in choices:
            self.error(node, f"{what}: invalid value '{value}'", _did_you_mean(value, choices))
            return None
        return value

    # --- files ------------------------------------------------------------------------------

    def existing(self, node: Node, what: str, kind: str = "file") -> Path | None:
        """A path from the config, looked up in the repository root and then beside the file."""
        written = self.string(node, what)
        if written is None:
            return None
        path = Path(written).expanduser()
        candidates = [path] if path.is_absolute() else [paths.REPO_ROOT / path, self.dir / path]
        for candidate in candidates:
            if candidate.exists():
                found = candidate.resolve()
                if kind == "file" and not found.is_file():
                    self.error(node, f"{what}: '{written}' is not a file")
                    return None
                if kind == "directory" and not found.is_dir():
                    self.error(node, f"{what}: '{written}' is not a directory")
                    return None
                return found
        hint = "" if path.is_absolute() else (
            f"relative paths are looked up in {paths.REPO_ROOT}, then {self.dir}"
        )
        self.error(node, f"{what}: {kind} not found: '{written}'", hint)
        return None

    def read_lines(self, node: Node, what: str, path: Path) -> list[str] | None:
        try:
            return path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            self.error(node, f"{what}: cannot read '{path}': {exc}")
            return None


@dataclass(frozen=True)
class _SuiteDef:
    """What a suites/<name>/suite.yaml says."""

    suite_dir: Path
    command: str
    files: tuple[str, ...]
    description: str
    timeout: int | None
    transport: str | None


@dataclass(frozen=True)
class _Rule:
    """One include/exclude entry; None on an axis means "every name"."""

    kernel: frozenset[str] | None
    target: frozenset[str] | None
    suite: frozenset[str] | None

    def matches(self, kernel: str, target: str, suite: str) -> bool:
        return all(
            allowed is None or name in allowed
            for allowed, name in ((self.kernel, kernel), (self.target, target), (self.suite, suite))
        )


def _optional(m: _Map, key: str, read: Callable[[Node], _T | None]) -> _T | None:
    """Read an optional key; None when it is absent or invalid (the problem is already recorded)."""
    node = m.get(key)
    return None if node is None else read(node)


def _builtin_kernels() -> list[str]:
    return sorted(p.stem for p in paths.KERNELS_DIR.glob("*.yaml"))


def _builtin_suites() -> list[str]:
    return sorted(p.parent.name for p in paths.SUITES_DIR.glob("*/suite.yaml"))


# --------------------------------------------------------------------------------------------
# The schema


class _Loader:
    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        self.suite_defs: dict[str, _SuiteDef | None] = {}

    def matrix_config(self, main: _File, root: Node | None, digest: str) -> MatrixConfig | None:
        if root is None:
            return None
        if not isinstance(root, MappingNode):
            main.error(root, f"expected a mapping at the top level, got {_describe(root)}",
                       "a config is a mapping with the keys kernels, targets, suites, matrix, options")
            return None
        top = main.mapping(root, "top level")
        assert top is not None
        main.keys(top, "top level", TOP_KEYS, required=("kernels", "targets", "suites"))

        options = self.options(main, top.get("options"))
        kernel_names, kernels = self.kernels(main, top.get("kernels"))
        target_names, targets = self.targets(main, top.get("targets"))
        suite_names, suites = self.suites(main, top.get("suites"), options)
        cells = self.matrix(main, top, kernel_names, target_names, suite_names)

        if self.problems:
            return None
        jobs = [JobSpec(kernel=k, target=t, suite=s, transport=suites[s].transport) for k, t, s in cells]
        return MatrixConfig(path=main.path.resolve(), kernels=kernels, targets=targets, suites=suites,
                            options=options, jobs=jobs, digest=digest)

    # --- kernels ----------------------------------------------------------------------------

    def kernels(self, main: _File, node: Node | None) -> tuple[list[str], dict[str, KernelTree]]:
        names: list[str] = []
        trees: dict[str, KernelTree] = {}
        seen: dict[str, Node] = {}
        entries = main.sequence(node, "kernels", nonempty=True) if node is not None else None
        for i, item in enumerate(entries or []):
            where = f"kernels[{i}]"
            if isinstance(item, ScalarNode):
                name, tree = self.builtin_kernel(main, item, where)
            else:
                name, tree = self.kernel_tree(main, item, where)
            if name is None:
                continue
            if name in seen:
                main.error(item, f"{where}: duplicate kernel name '{name}'",
                           f"first declared at line {seen[name].start_mark.line + 1}")
                continue
            seen[name] = item
            names.append(name)  # declared even if invalid, so matrix rules don't report it as unknown
            if tree is not None:
                trees[name] = tree
        return names, trees

    def builtin_kernel(self, main: _File, node: ScalarNode,
                       where: str) -> tuple[str | None, KernelTree | None]:
        """A string entry names kernels/<name>.yaml, validated with its own file and lines."""
        name = main.name(node, where)
        if name is None:
            return None, None
        path = paths.KERNELS_DIR / f"{name}.yaml"
        if not path.is_file():
            hint = _did_you_mean(name, _builtin_kernels())
            main.error(node, f"{where}: unknown kernel tree '{name}'",
                       hint or "define it inline (name, source, config) or add kernels/<name>.yaml")
            return name, None
        file = _File(path, self.problems)
        root = file.compose(path.read_bytes())
        if root is None:
            return name, None
        _, tree = self.kernel_tree(file, root, "kernel", expected_name=name)
        return name, tree

    def kernel_tree(self, file: _File, node: Node, where: str,
                    expected_name: str | None = None) -> tuple[str | None, KernelTree | None]:
        m = file.mapping(node, where)
        if m is None:
            return None, None
        file.keys(m, where, KERNEL_KEYS, required=("name", "source", "config"))
        name_node = m.get("name")
        name = file.name(name_node, f"{where}.name") if name_node is not None else None
        if name is not None and expected_name is not None and name != expected_name:
            assert name_node is not None
            file.error(name_node, f"{where}.name: '{name}' does not match the file name {expected_name}.yaml",
                       "configs refer to built-in kernels by file name, so the two must agree")
        if name is not None:
            where = f"kernel '{name}'"
        source_node, patches_node, config_node = m.get("source"), m.get("patches"), m.get("config")
        source = self.source(file, source_node, f"{where}.source") if source_node is not None else None
        patches = self.patches(file, patches_node, f"{where}.patches")
        kconfig = self.kconfig(file, config_node, f"{where}.config") if config_node is not None else None
        if name is None or source is None or patches is None or kconfig is None:
            return name, None
        return name, KernelTree(name=name, source=source, patches=patches,
                                config_base=kconfig[0], fragments=kconfig[1])

    def source(self, file: _File, node: Node, where: str) -> KernelSource | None:
        m = file.mapping(node, where)
        if m is None:
            return None
        file.keys(m, where, SOURCE_KINDS)
        given = [key for key in m.items if key in SOURCE_KINDS]
        if not given:
            file.error(m.node, f"{where}: no kernel source given",
                       f"give exactly one of: {', '.join(SOURCE_KINDS)}")
            return None
        if len(given) > 1:
            file.error(m.key(given[1]), f"{where}: both '{given[0]}' and '{given[1]}' given",
                       f"give exactly one of: {', '.join(SOURCE_KINDS)}")
            return None
        kind = given[0]
        value = m.get(kind)
        assert value is not None
        where = f"{where}.{kind}"
        if kind == "debian":
            package = file.string(value, where)
            if package is None:
                return None
            if not DEBIAN_SOURCE_RE.fullmatch(package):
                file.error(value, f"{where}: '{package}' is not a Debian kernel source package",
                           "Debian's kernel sources are named linux-source-X.Y, e.g. linux-source-6.1")
                return None
            return KernelSource("debian", package)
        if kind == "local":
            tree = file.existing(value, where, kind="directory")
            if tree is None:
                return None
            if not (tree / "Makefile").is_file():
                file.error(value, f"{where}: '{tree}' has no Makefile",
                           "point it at the top of a kernel source tree")
                return None
            return KernelSource("local", str(tree))
        if kind == "git":
            repo = file.mapping(value, where)
            if repo is None:
                return None
            file.keys(repo, where, ("url", "ref"), required=("url", "ref"))
            url_node, ref_node = repo.get("url"), repo.get("ref")
            url = file.string(url_node, f"{where}.url") if url_node is not None else None
            ref = file.string(ref_node, f"{where}.ref") if ref_node is not None else None
            if url is None or ref is None:
                return None
            return KernelSource("git", url, ref=ref)
        return self.tarball(file, value, where)

    def tarball(self, file: _File, node: Node, where: str) -> KernelSource | None:
        m = file.mapping(node, where)
        if m is None:
            return None
        file.keys(m, where, ("url", "path", "sha256"), required=("sha256",))
        sha_node = m.get("sha256")
        sha = file.string(sha_node, f"{where}.sha256") if sha_node is not None else None
        if sha is not None and not SHA256_RE.fullmatch(sha):
            assert sha_node is not None
            file.error(sha_node, f"{where}.sha256: not a sha256 digest: '{sha}'",
                       "64 hexadecimal digits, as printed by sha256sum")
            sha = None
        url_node, path_node = m.get("url"), m.get("path")
        if url_node is not None and path_node is not None:
            file.error(m.key("path"), f"{where}: both 'url' and 'path' given", "give one of them")
            return None
        if url_node is not None:
            url = file.string(url_node, f"{where}.url")
            if url is not None and "://" not in url:
                file.error(url_node, f"{where}.url: not a URL: '{url}'", "use 'path' for a local tarball")
                url = None
            location = url
        elif path_node is not None:
            found = file.existing(path_node, f"{where}.path")
            location = str(found) if found is not None else None
        else:
            file.error(m.node, f"{where}: missing 'url' or 'path'", "say where the tarball comes from")
            return None
        if location is None or sha is None:
            return None
        return KernelSource("tarball", location, sha256=sha.lower())

    def patches(self, file: _File, node: Node | None, where: str) -> tuple[Path, ...] | None:
        if _is_null(node):
            return ()
        assert node is not None
        if _has_tag(node, "str"):
            # A quilt series file, or a directory holding one.
            found = file.existing(node, where, kind="file or directory")
            if found is None:
                return None
            if found.is_file() and found.name.endswith(PATCH_SUFFIXES):
                file.error(node, f"{where}: '{node.value}' is a patch, not a series file",
                           f"list single patches: patches: [{node.value}]")
                return None
            series = found / "series" if found.is_dir() else found
            if not series.is_file():
                file.error(node, f"{where}: '{found}' has no series file",
                           "a patch directory lists its patches in order in a file named 'series'")
                return None
            return self.series(file, node, where, series)
        items = file.sequence(node, f"{where} (a series file or a list of patch files)")
        if items is None:
            return None
        out: list[Path] = []
        ok = True
        for i, item in enumerate(items):
            written = file.string(item, f"{where}[{i}]")
            if written is not None and not written.endswith(PATCH_SUFFIXES):
                file.error(item, f"{where}[{i}]: '{written}' is not a .patch or .diff file",
                           "to use a quilt series, give the series file (or its directory) instead of a list")
                written = None
            patch = file.existing(item, f"{where}[{i}]") if written is not None else None
            if patch is None:
                ok = False
            else:
                out.append(patch)
        return tuple(out) if ok else None

    def series(self, file: _File, node: Node, where: str, series: Path) -> tuple[Path, ...] | None:
        lines = file.read_lines(node, where, series)
        if lines is None:
            return None
        listing = _File(series, self.problems)
        out: list[Path] = []
        ok = True
        for number, raw in enumerate(lines, start=1):
            entry = raw.split("#", 1)[0].strip()
            if not entry:
                continue
            written = entry.split()[0]  # quilt allows options such as -p1 after the patch name
            patch = series.parent / written
            if not patch.is_file():
                listing.error(number, f"patch not found: '{written}'",
                              f"series entries are relative to {series.parent}")
                ok = False
            else:
                out.append(patch.resolve())
        return tuple(out) if ok else None

    def kconfig(self, file: _File, node: Node, where: str) -> tuple[str, tuple[Path, ...]] | None:
        m = file.mapping(node, where)
        if m is None:
            return None
        file.keys(m, where, ("base", "fragments"), required=("base",))
        base_node, fragments_node = m.get("base"), m.get("fragments")
        base = self.config_base(file, base_node, f"{where}.base") if base_node is not None else None
        fragments: tuple[Path, ...] | None = ()
        if not _is_null(fragments_node):
            assert fragments_node is not None
            fragments = self.fragments(file, fragments_node, f"{where}.fragments")
        if base is None or fragments is None:
            return None
        return base, fragments

    def config_base(self, file: _File, node: Node, where: str) -> str | None:
        base = file.string(node, where)
        if base is None:
            return None
        if base in CONFIG_BASES or (base.endswith("_defconfig") and "/" not in base):
            return base
        # Anything else must be a saved .config; a near miss of a keyword is most likely a typo.
        path = Path(base).expanduser()
        candidates = [path] if path.is_absolute() else [paths.REPO_ROOT / path, file.dir / path]
        for candidate in candidates:
            if candidate.is_file():
                return str(candidate.resolve())
        close = difflib.get_close_matches(base, CONFIG_BASES, n=1)
        hint = (f"did you mean '{close[0]}'?" if close else
                "use tinyconfig, allnoconfig, defconfig, a <board>_defconfig or the path of a .config file")
        file.error(node, f"{where}: unknown config base '{base}' (not a make target, no such file)", hint)
        return None

    def fragments(self, file: _File, node: Node, where: str) -> tuple[Path, ...] | None:
        items = file.sequence(node, where)
        if items is None:
            return None
        out: list[Path] = []
        ok = True
        for i, item in enumerate(items):
            fragment = file.existing(item, f"{where}[{i}]")
            if fragment is not None and self.check_fragment(file, item, f"{where}[{i}]", fragment):
                out.append(fragment)
            else:
                ok = False
        return tuple(out) if ok else None

    def check_fragment(self, file: _File, node: Node, where: str, fragment: Path) -> bool:
        """Kconfig silently ignores lines it can't parse; here they are errors at their own line."""
        lines = file.read_lines(node, where, fragment)
        if lines is None:
            return False
        text = _File(fragment, self.problems)
        ok = True
        for number, raw in enumerate(lines, start=1):
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
            text.error(number, f"malformed Kconfig fragment line: '{line}'", hint)
            ok = False
        return ok

    # --- targets ----------------------------------------------------------------------------

    def targets(self, main: _File, node: Node | None) -> tuple[list[str], dict[str, TargetProfile]]:
        names: list[str] = []
        profiles: dict[str, TargetProfile] = {}
        seen: dict[str, Node] = {}
        builtins = builtin_profiles()
        entries = main.sequence(node, "targets", nonempty=True) if node is not None else None
        for i, item in enumerate(entries or []):
            where = f"targets[{i}]"
            name: str | None
            profile: TargetProfile | None
            if isinstance(item, ScalarNode):
                name = main.string(item, where)
                profile = builtins.get(name) if name is not None else None
                if name is not None and profile is None:
                    main.error(item, f"{where}: unknown target '{name}'", _did_you_mean(name, builtins))
                    name = None
            else:
                name, profile = self.target_variant(main, item, where)
            if name is None:
                continue
            if name in seen:
                main.error(item, f"{where}: duplicate target name '{name}'",
                           f"first declared at line {seen[name].start_mark.line + 1}; "
                           "give a variant a new name with 'as:'")
                continue
            seen[name] = item
            names.append(name)
            if profile is not None:
                profiles[name] = profile
        return names, profiles

    def target_variant(self, main: _File, node: Node, where: str) -> tuple[str | None, TargetProfile | None]:
        """A built-in profile with some fields overridden, optionally under a new name."""
        m = main.mapping(node, where)
        if m is None:
            return None, None
        fields = overridable_fields()
        # Fields typed "X | None" (debian_arch) may be overridden with null.
        nullable = {f.name for f in dataclasses.fields(TargetProfile) if "None" in str(f.type)}
        main.keys(m, where, ("name", "as", *fields), required=("name",))
        name_node, as_node = m.get("name"), m.get("as")
        base: TargetProfile | None = None
        name = main.string(name_node, f"{where}.name") if name_node is not None else None
        if name is not None:
            assert name_node is not None
            base = builtin_profiles().get(name)
            if base is None:
                main.error(name_node, f"{where}.name: unknown target '{name}'",
                           _did_you_mean(name, builtin_profiles()))
        alias = main.name(as_node, f"{where}.as") if as_node is not None else None
        if as_node is not None and alias is None:
            return None, None
        overrides: dict[str, object] = {}
        ok = True
        for key, (_, value_node) in m.items.items():
            if key in ("name", "as") or key not in fields:
                continue
            what = f"{where}.{key}"
            value: object
            if fields[key] is int:
                value = main.integer(value_node, what, minimum=1)
            elif fields[key] is list:
                value = self.string_list(main, value_node, what)
            elif key in nullable and _is_null(value_node):
                overrides[key] = None
                continue
            else:
                value = main.string(value_node, what, nonempty=False)
            if value is None:
                ok = False
            else:
                overrides[key] = value
        final_name = alias or (name if base is not None else None)
        if base is None or not ok:
            return final_name, None
        profile = base.with_overrides(overrides)
        if alias is not None:
            profile = dataclasses.replace(profile, name=alias)
        return final_name, profile

    @staticmethod
    def string_list(file: _File, node: Node, what: str) -> list[str] | None:
        items = file.sequence(node, what)
        if items is None:
            return None
        values = [file.string(item, f"{what}[{i}]") for i, item in enumerate(items)]
        return None if any(v is None for v in values) else [v for v in values if v is not None]

    # --- suites -----------------------------------------------------------------------------

    def suites(self, main: _File, node: Node | None,
               options: Options) -> tuple[list[str], dict[str, SuiteConfig]]:
        names: list[str] = []
        suites: dict[str, SuiteConfig] = {}
        seen: dict[str, Node] = {}
        entries = main.sequence(node, "suites", nonempty=True) if node is not None else None
        for i, item in enumerate(entries or []):
            where = f"suites[{i}]"
            transport: str | None = None
            timeout: int | None = None
            suite_node: Node | None
            ok = True
            if isinstance(item, ScalarNode):
                name = main.name(item, where)
                suite, suite_node = name, item
            else:
                m = main.mapping(item, where)
                if m is None:
                    continue
                main.keys(m, where, SUITE_ENTRY_KEYS, required=("name",))
                name_node = m.get("name")
                name = main.name(name_node, f"{where}.name") if name_node is not None else None
                suite_node = m.get("suite")
                if suite_node is not None:
                    suite = main.name(suite_node, f"{where}.suite")
                else:  # the suite directory defaults to the entry's name
                    suite, suite_node = name, name_node
                transport_node, timeout_node = m.get("transport"), m.get("timeout")
                if transport_node is not None:
                    transport = main.choice(transport_node, f"{where}.transport", TRANSPORTS)
                    ok = ok and transport is not None
                if timeout_node is not None:
                    timeout = main.integer(timeout_node, f"{where}.timeout", minimum=1)
                    ok = ok and timeout is not None
            if name is None:
                continue
            if name in seen:
                main.error(item, f"{where}: duplicate suite name '{name}'",
                           f"first declared at line {seen[name].start_mark.line + 1}; "
                           "give the second one its own 'name:' and point 'suite:' at the directory")
                continue
            seen[name] = item
            names.append(name)
            if suite is None or suite_node is None:
                continue
            definition = self.suite_def(main, suite_node, suite)
            if definition is None or not ok:
                continue
            suites[name] = SuiteConfig(
                name=name,
                suite=suite,
                suite_dir=definition.suite_dir,
                command=definition.command,
                files=definition.files,
                transport=transport or definition.transport or "console",
                timeout=timeout or definition.timeout or options.run_timeout,
                description=definition.description,
            )
        return names, suites

    def suite_def(self, main: _File, ref: Node, suite: str) -> _SuiteDef | None:
        """suites/<suite>/suite.yaml, loaded once however many entries use it."""
        path = paths.SUITES_DIR / suite / "suite.yaml"
        if not path.is_file():
            hint = _did_you_mean(suite, _builtin_suites())
            main.error(ref, f"unknown suite '{suite}' (no {_display(path)})", hint)
            return None
        if suite not in self.suite_defs:
            file = _File(path, self.problems)
            root = file.compose(path.read_bytes())
            self.suite_defs[suite] = self.read_suite(file, root) if root is not None else None
        return self.suite_defs[suite]

    def read_suite(self, file: _File, root: Node) -> _SuiteDef | None:
        m = file.mapping(root, "suite")
        if m is None:
            return None
        file.keys(m, "suite", SUITE_FILE_KEYS, required=("command",))
        ok = True
        suite_dir = file.path.parent.resolve()

        command_node = m.get("command")
        command = file.string(command_node, "suite.command") if command_node is not None else None
        ok = ok and command is not None

        description = ""
        if (node := m.get("description")) is not None:
            value = file.string(node, "suite.description", nonempty=False)
            ok = ok and value is not None
            description = value or ""

        timeout: int | None = None
        if (node := m.get("timeout")) is not None:
            timeout = file.integer(node, "suite.timeout", minimum=1)
            ok = ok and timeout is not None

        transport: str | None = None
        if (node := m.get("transport")) is not None:
            transport = file.choice(node, "suite.transport", TRANSPORTS)
            ok = ok and transport is not None

        files: list[str] = []
        items: list[Node] = []
        if (node := m.get("files")) is not None and not _is_null(node):
            items = file.sequence(node, "suite.files") or []
            ok = ok and isinstance(node, SequenceNode)
        for i, item in enumerate(items):
            written = file.string(item, f"suite.files[{i}]")
            if written is None:
                ok = False
                continue
            # The files are copied into the guest from the suite directory and nowhere else.
            target = (suite_dir / written).resolve()
            if not target.is_relative_to(suite_dir) or not target.is_file():
                file.error(item, f"suite.files[{i}]: no file '{written}' in the suite directory",
                           f"files are relative to {_display(suite_dir)}")
                ok = False
                continue
            files.append(written)
        if not ok or command is None:
            return None
        return _SuiteDef(suite_dir=suite_dir, command=command, files=tuple(files), description=description,
                         timeout=timeout, transport=transport)

    # --- matrix -----------------------------------------------------------------------------

    def matrix(self, main: _File, top: _Map, kernels: list[str], targets: list[str],
               suites: list[str]) -> list[tuple[str, str, str]]:
        cells = [(k, t, s) for k in kernels for t in targets for s in suites]
        node = top.get("matrix")
        if _is_null(node):
            return cells
        assert node is not None
        m = main.mapping(node, "matrix")
        if m is None:
            return cells
        main.keys(m, "matrix", ("include", "exclude"))
        declared = {"kernel": kernels, "target": targets, "suite": suites}
        include = self.rules(main, m.get("include"), "matrix.include", declared)
        exclude = self.rules(main, m.get("exclude"), "matrix.exclude", declared)
        if include is None or exclude is None:
            return cells  # an unknown name was reported; an "empty matrix" on top would mislead
        if not _is_null(m.get("include")):  # `include:` left empty means no include rules
            cells = [c for c in cells if any(rule.matches(*c) for rule in include)]
            if not cells and kernels and targets and suites:
                main.error(m.key("include"), "matrix is empty: no job matches the include rules")
                return cells
        kept = [c for c in cells if not any(rule.matches(*c) for rule in exclude)]
        if cells and not kept:
            main.error(m.key("exclude"), "matrix is empty: the exclude rules remove every job",
                       "narrow the exclude rules, or use include to pick jobs")
        return kept

    def rules(self, main: _File, node: Node | None, where: str,
              declared: dict[str, list[str]]) -> list[_Rule] | None:
        if _is_null(node):
            return []
        assert node is not None
        items = main.sequence(node, where)
        if items is None:
            return None
        rules: list[_Rule] = []
        ok = True
        for i, item in enumerate(items):
            m = main.mapping(item, f"{where}[{i}]")
            if m is None:
                ok = False
                continue
            main.keys(m, f"{where}[{i}]", MATRIX_AXES)
            axes: dict[str, frozenset[str] | None] = {}
            for axis in MATRIX_AXES:
                value_node = m.get(axis)
                if value_node is None:
                    axes[axis] = None
                    continue
                names = self.axis_names(main, value_node, f"{where}[{i}].{axis}", axis, declared[axis])
                ok = ok and names is not None
                axes[axis] = names
            if any(key not in MATRIX_AXES for key in m.items):
                ok = False
            rules.append(_Rule(axes["kernel"], axes["target"], axes["suite"]))
        return rules if ok else None

    @staticmethod
    def axis_names(main: _File, node: Node, what: str, axis: str,
                   declared: list[str]) -> frozenset[str] | None:
        items = [node] if isinstance(node, ScalarNode) else main.sequence(node, f"{what} (a name or a list)")
        if items is None:
            return None
        names: set[str] = set()
        ok = True
        for item in items:
            name = main.string(item, what)
            if name is None:
                ok = False
            elif name not in declared:
                main.error(item, f"{what}: unknown {axis} '{name}'",
                           _did_you_mean(name, declared) or f"declare it under {axis}s first")
                ok = False
            else:
                names.add(name)
        return frozenset(names) if ok else None

    # --- options ----------------------------------------------------------------------------

    def options(self, main: _File, node: Node | None) -> Options:
        if _is_null(node):
            return Options()
        assert node is not None
        m = main.mapping(node, "options")
        if m is None:
            return Options()
        main.keys(m, "options", OPTION_KEYS)
        jobs = _optional(m, "jobs", lambda n: main.integer(n, "options.jobs", minimum=1))
        retries = _optional(m, "retries", lambda n: main.integer(n, "options.retries", minimum=0))
        fail_fast = _optional(m, "fail_fast", lambda n: main.boolean(n, "options.fail_fast"))
        keep_going = _optional(m, "keep_going", lambda n: main.boolean(n, "options.keep_going"))
        results = _optional(m, "results_dir", lambda n: main.string(n, "options.results_dir"))

        timeouts = dict(DEFAULT_TIMEOUTS)
        timeouts_node = m.get("timeouts")
        if not _is_null(timeouts_node):
            assert timeouts_node is not None
            tm = main.mapping(timeouts_node, "options.timeouts")
            if tm is not None:
                main.keys(tm, "options.timeouts", tuple(DEFAULT_TIMEOUTS))
                for key in DEFAULT_TIMEOUTS:
                    value_node = tm.get(key)
                    if value_node is None:
                        continue
                    value = main.integer(value_node, f"options.timeouts.{key}", minimum=1)
                    if value is not None:
                        timeouts[key] = value

        if fail_fast and keep_going:
            main.error(m.key("keep_going"), "options: fail_fast: true conflicts with keep_going: true",
                       "fail_fast stops at the first failure, keep_going runs every job; keep one")
        if fail_fast and retries:
            main.error(m.key("retries"), f"options: retries: {retries} conflicts with fail_fast: true",
                       "a retried job might still pass, so fail_fast cannot stop at its first failure; "
                       "set retries: 0 or drop fail_fast")

        results_dir = Path(results or "results").expanduser()
        return Options(
            jobs=jobs or 1,
            retries=retries or 0,
            build_timeout=timeouts["build"],
            boot_timeout=timeouts["boot"],
            run_timeout=timeouts["run"],
            results_dir=results_dir if results_dir.is_absolute() else paths.REPO_ROOT / results_dir,
            fail_fast=bool(fail_fast),
            # Unless given, keep_going is the opposite of fail_fast: asking to stop early means not going on.
            keep_going=(not fail_fast) if keep_going is None else keep_going,
        )
