"""The shape of crlab's YAML files as pydantic models: what keys exist, what each value may be.

Everything here is checked on data alone; names that refer to other things (kernels/<name>.yaml,
target profiles, suite directories, files on disk) are the second pass's, in ``crlab.config``.
Every model forbids unknown keys and is strict: YAML already typed each value, so "2" is not 2.
Branches of a union are tagged "~..." so that document.py can skip them in an error's loc.
"""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Callable, Iterable
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    ClassVar,
    Literal,
    TypeAlias,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationInfo,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from crlab import engines
from crlab.config.document import did_you_mean
from crlab.model import AXES
from crlab.targets import TargetProfile

SOURCE_KINDS = ("debian", "tarball", "git", "local")
PATCH_SUFFIXES = (".patch", ".diff")

_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")
_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
_DEBIAN_SOURCE_RE = re.compile(r"linux-source-\d+\.\d+")


# --- constrained strings ----------------------------------------------------------------------


def _check(test: Callable[[str], object], message: str, hint: str = "") -> AfterValidator:
    """A check of a string, failing in crlab's words; '{value}' in the message is the value."""

    def check(value: str) -> str:
        if not test(value):
            raise PydanticCustomError("crlab", message, {"hint": hint, "value": value})
        return value

    return AfterValidator(check)


def unknown_name(what: str, name: str, known: Iterable[str], if_none: str = "") -> tuple[str, str]:
    """(message, hint) for a name that is not among the known ones; if_none says why none exist."""
    known = list(known)
    if not known and if_none:
        return f"unknown {what} '{name}' ({if_none})", "remove it until one is registered"
    return f"unknown {what} '{name}'", did_you_mean(name, known) or f"declare it under {what}s first"


def _registered(what: str, names: Callable[[], Iterable[str]], if_none: str = "") -> AfterValidator:
    """A name from one of crlab's registries (job kinds, C/R engines), looked up when validating."""

    def check(value: str) -> str:
        known = list(names())
        if value not in known:
            message, hint = unknown_name(what, value, known, if_none)
            raise PydanticCustomError("crlab", message, {"hint": hint})
        return value

    return AfterValidator(check)


def _kind_names() -> tuple[str, ...]:
    from crlab.jobkinds import kind_names  # here: job kinds import the rootfs, which imports crlab.config

    return kind_names()


NO_ENGINE = "crlab has no C/R engine yet"
NonEmptyStr: TypeAlias = Annotated[str, _check(str.strip, "must not be empty")]
# Names end up in job ids and directory names, so keep them to safe characters.
Name: TypeAlias = Annotated[NonEmptyStr, _check(_NAME_RE.fullmatch, "invalid name '{value}'",
                                                "use only letters, digits, '.', '_' and '-'")]
Sha256: TypeAlias = Annotated[str, _check(_SHA256_RE.fullmatch, "not a sha256 digest: '{value}'",
                                          "64 hexadecimal digits, as printed by sha256sum")]
URL: TypeAlias = Annotated[NonEmptyStr, _check(lambda value: "://" in value, "not a URL: '{value}'",
                                               "use 'path' for a local tarball")]
DebianPackage: TypeAlias = Annotated[NonEmptyStr, _check(
    _DEBIAN_SOURCE_RE.fullmatch, "'{value}' is not a Debian kernel source package",
    "Debian's kernel sources are named linux-source-X.Y, e.g. linux-source-6.1")]
PatchFile: TypeAlias = Annotated[NonEmptyStr, _check(
    lambda value: value.endswith(PATCH_SUFFIXES), "'{value}' is not a .patch or .diff file",
    "to use a quilt series, give the series file (or its directory) instead of a list")]
PositiveInt: TypeAlias = Annotated[int, Field(ge=1)]
Transport: TypeAlias = Literal["console", "ssh"]
TRANSPORTS: tuple[str, ...] = get_args(Transport)
EngineName: TypeAlias = Annotated[NonEmptyStr, _registered("engine", lambda: engines.engine_names(), NO_ENGINE)]
JobKind: TypeAlias = Annotated[NonEmptyStr, _registered("job kind", _kind_names)]
# How a target gets a guest program: the distribution's binary package, or crlab's static build.
ProgramFrom: TypeAlias = Literal["debian", "source"]


# --- unions -----------------------------------------------------------------------------------


def _by_shape(value: Any) -> str:
    """A list entry is a bare name, or a mapping that says more (a list here is a mistaken mapping)."""
    return "~mapping" if isinstance(value, dict | list) else "~name"


def _one_of(*keys: str, missing: str, hint: str) -> Discriminator:
    """A mapping holding exactly one of `keys`, each with its own model, tagged "~<key>"."""

    def pick(value: Any) -> str | None:
        given = [key for key in keys if key in value] if isinstance(value, dict) else []
        return f"~{given[0]}" if len(given) == 1 else None

    return Discriminator(pick, custom_error_type="one_of", custom_error_message=missing,
                         custom_error_context={"choices": " ".join(keys), "missing": missing, "hint": hint})


# --- models -----------------------------------------------------------------------------------


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    # keys that once existed: key -> what to do instead (reported instead of "unknown key")
    removed_keys: ClassVar[dict[str, str]] = {}
    # keys to suggest for a misspelt one, when not this model's own fields
    known_keys: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _note_model(cls, data: Any, info: ValidationInfo) -> Any:
        """Remember which model read which mapping: an unknown key's hint lists that model's keys."""
        if isinstance(info.context, dict) and "models" in info.context:
            info.context["models"][id(data)] = cls
        return data


class GitRepo(Strict):
    url: NonEmptyStr
    ref: NonEmptyStr


class TarballURL(Strict):
    url: URL
    sha256: Sha256


class TarballPath(Strict):
    path: NonEmptyStr
    sha256: Sha256


Tarball: TypeAlias = Annotated[
    Annotated[TarballURL, Tag("~url")] | Annotated[TarballPath, Tag("~path")],
    _one_of("url", "path", missing="missing 'url' or 'path'",
            hint="give one of them: url to download the tarball, path for a local file"),
]


class _SourceKind(Strict):
    known_keys = SOURCE_KINDS


class DebianSource(_SourceKind):
    debian: DebianPackage


class TarballSource(_SourceKind):
    tarball: Tarball


class GitSource(_SourceKind):
    git: GitRepo


class LocalSource(_SourceKind):
    local: NonEmptyStr


Source: TypeAlias = Annotated[
    Annotated[DebianSource, Tag("~debian")] | Annotated[TarballSource, Tag("~tarball")]
    | Annotated[GitSource, Tag("~git")] | Annotated[LocalSource, Tag("~local")],
    _one_of(*SOURCE_KINDS, missing="no kernel source given", hint=f"give exactly one of: {', '.join(SOURCE_KINDS)}"),
]

# A quilt series file (or its directory), or a list of patch files.
Patches: TypeAlias = Annotated[
    Annotated[NonEmptyStr, Tag("~series")] | Annotated[list[PatchFile], Tag("~list")],
    Discriminator(lambda value: "~series" if isinstance(value, str) else "~list"),
]


class Kconfig(Strict):
    base: NonEmptyStr  # a make target (tinyconfig, x86_64_defconfig ...) or the path of a .config
    fragments: list[NonEmptyStr] | None = None


class Kernel(Strict):
    """A kernel tree: inline in a config, or a kernels/<name>.yaml file."""

    name: Name
    source: Source
    patches: Patches | None = None
    config: Kconfig


KernelEntry: TypeAlias = Annotated[Annotated[Name, Tag("~name")] | Annotated[Kernel, Tag("~mapping")],
                                   Discriminator(_by_shape)]


def _override_type(hint: Any) -> Any:
    """The type a config gives for a TargetProfile field: lists for tuples, and sizes and counts >= 1."""
    origin = get_origin(hint)
    if origin is tuple:
        item = get_args(hint)[0]
        return list[NonEmptyStr] if item is str else list[item]  # type: ignore[valid-type]
    if origin in (Union, types.UnionType):
        return Union[tuple(_override_type(arg) for arg in get_args(hint))]  # noqa: UP007
    return PositiveInt if hint is int else hint


# Target fields whose values are narrower than their Python type says.
_OVERRIDE_TYPES: dict[str, Any] = {
    "busybox_from": ProgramFrom,
    "dropbear_from": ProgramFrom,
    "engines": list[EngineName],
}


def _target_override_model() -> type[Strict]:
    """A built-in target with fields overridden: every TargetProfile field, so new ones need no edit here."""
    hints = get_type_hints(TargetProfile)
    fields: dict[str, Any] = {
        f.name: (_OVERRIDE_TYPES.get(f.name, _override_type(hints[f.name])), None)
        for f in dataclasses.fields(TargetProfile) if f.name != "name"
    }
    return create_model("TargetOverride", __base__=Strict, name=(NonEmptyStr, ...),
                        as_=(Name | None, Field(None, alias="as")), **fields)


def _matrix_rule_model() -> type[Strict]:
    """An include/exclude entry: a name or a list of names on any axis of the result key."""
    names = Annotated[Annotated[NonEmptyStr, Tag("~one")] | Annotated[list[NonEmptyStr], Tag("~list")],
                      Discriminator(lambda value: "~list" if isinstance(value, list | dict) else "~one")]
    fields: dict[str, Any] = {axis: (names, None) for axis in AXES}
    return create_model("MatrixRule", __base__=Strict, **fields)


if TYPE_CHECKING:
    TargetOverride = Strict
    MatrixRule = Strict
else:
    TargetOverride = _target_override_model()
    MatrixRule = _matrix_rule_model()

TargetEntry: TypeAlias = Annotated[Annotated[Name, Tag("~name")] | Annotated[TargetOverride, Tag("~mapping")],
                                   Discriminator(_by_shape)]


class SuiteEntry(Strict):
    name: Name
    suite: Name | None = None  # the directory under suites/; defaults to the name
    transport: Transport | None = None
    timeout: PositiveInt | None = None
    consumers: list[NonEmptyStr] | None = None  # kernels that restore what each kernel checkpointed
    # the engines to run this entry on, instead of the suite's own; [] runs C/R programs without C/R
    engines: list[EngineName] | None = None


SuiteItem: TypeAlias = Annotated[Annotated[Name, Tag("~name")] | Annotated[SuiteEntry, Tag("~mapping")],
                                 Discriminator(_by_shape)]


class SuitePrograms(Strict):
    """C programs the build layer cross-compiles statically per target into the suite's bin/."""

    sources: list[NonEmptyStr]  # globs relative to the suite directory; one program per file
    common: list[NonEmptyStr] = []  # linked into every program (and not a program itself)
    cflags: list[NonEmptyStr] = []


class SuiteFile(Strict):
    """suites/<name>/suite.yaml"""

    description: str = ""
    files: list[NonEmptyStr] | None = None
    command: NonEmptyStr
    timeout: PositiveInt | None = None
    transport: Transport | None = None
    kind: JobKind = "tap"
    engines: list[EngineName] | None = None
    programs: SuitePrograms | None = None


class Matrix(Strict):
    include: list[MatrixRule] | None = None
    exclude: list[MatrixRule] | None = None


class Timeouts(Strict):
    build: PositiveInt = 3600
    boot: PositiveInt = 180
    run: PositiveInt = 600


class RunOptions(Strict):
    removed_keys = {"keep_going": "every job runs unless fail_fast: true stops the run at the first failure; "
                                  "fail_fast is the one switch, so remove keep_going"}

    jobs: PositiveInt = 1
    retries: Annotated[int, Field(ge=0)] = 0
    timeouts: Timeouts | None = None
    results_dir: NonEmptyStr = "results"
    fail_fast: bool = False


class ConfigFile(Strict):
    """A matrix config (configs/*.yaml)."""

    kernels: Annotated[list[KernelEntry], Field(min_length=1)]
    targets: Annotated[list[TargetEntry], Field(min_length=1)]
    suites: Annotated[list[SuiteItem], Field(min_length=1)]
    matrix: Matrix | None = None
    options: RunOptions | None = None


def is_name(value: object) -> bool:
    return isinstance(value, str) and bool(_NAME_RE.fullmatch(value))


# Whole files, and the parts the second pass reads one at a time.
CONFIG_FILE = TypeAdapter(ConfigFile)
KERNEL = TypeAdapter(Kernel)
SUITE_FILE = TypeAdapter(SuiteFile)
NAME: TypeAdapter[str] = TypeAdapter(Name)
NAMES: TypeAdapter[list[str] | None] = TypeAdapter(list[NonEmptyStr] | None)
SOURCE: TypeAdapter[Any] = TypeAdapter(Source)
PATCHES: TypeAdapter[Any] = TypeAdapter(Patches | None)
KCONFIG = TypeAdapter(Kconfig)
TARGET_OVERRIDE = TypeAdapter(TargetOverride)
SUITE_ENTRY = TypeAdapter(SuiteEntry)
RULES = TypeAdapter(list[MatrixRule])
RUN_OPTIONS = TypeAdapter(RunOptions)
