"""A YAML file as plain data, remembering the node behind every value, so any problem says FILE:LINE.

PyYAML's ``compose`` keeps marks on nodes; the data handed to the pydantic schema is built from
those nodes here, and each pydantic error's ``loc`` is walked back through them to a line.  Problems
are collected, not raised one at a time: a user fixes a config in one pass.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_TAG_PREFIX = "tag:yaml.org,2002:"
_TAG_NAMES = {"str": "a string", "int": "an integer", "float": "a float", "bool": "a boolean",
              "null": "null", "timestamp": "a date", "binary": "binary data"}
# What a pydantic type error expected, in the words crlab's messages use.
_EXPECTED = {"string_type": "a string", "int_type": "an integer", "bool_type": "a boolean (true or false)",
             "list_type": "a list", "tuple_type": "a list", "dict_type": "a mapping", "model_type": "a mapping",
             "model_attributes_type": "a mapping"}

Loc = tuple[str | int, ...]
_ABSENT = object()


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


class Unconstructed:
    """A scalar with a tag crlab does not know (``!foo x``): no schema type accepts it."""

    def __init__(self, tag: str) -> None:
        self.tag = tag


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    choices = sorted(set(choices))
    close = difflib.get_close_matches(word, choices, n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"expected one of: {', '.join(choices)}" if choices else ""


def display(path: Path) -> str:
    """A path as people want to read it: relative to the working directory when inside it."""
    if not path.is_absolute():
        return str(path)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def describe(node: Node) -> str:
    """What a node is, in words, for "expected X, got Y" messages."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag.startswith(_TAG_PREFIX):
        tag = node.tag[len(_TAG_PREFIX):]
        return _TAG_NAMES.get(tag, f"a {tag}")
    return f"a value tagged {node.tag}"


def is_tag(element: str | int) -> bool:
    """Discriminated unions name their branch in an error's loc; crlab's branch tags start with '~'."""
    return isinstance(element, str) and element.startswith("~")


class Document:
    """One file under validation: its text, the data built from it, and the node behind each value.

    ``prefix`` starts every label of a value in it ("kernel.name" in a kernels/*.yaml file; empty in
    the main config), ``root_label`` names the file's top mapping ("top level", "kernel", "suite").
    """

    def __init__(self, path: Path, problems: list[ConfigProblem], prefix: str = "",
                 root_label: str = "top level") -> None:
        self.path = path
        self.dir = path.absolute().parent
        self.display = display(path)
        self.problems = problems
        self.prefix = prefix
        self.root_label = root_label
        self.raw = b""
        self.text = ""
        self.root: Node | None = None
        self.data: Any = None
        self.labels: dict[Loc, str] = {}  # loc -> a friendlier name for what lies below it
        self.error_locs: list[Loc] = []  # where the schema found problems (branch tags removed)
        self._items: dict[int, dict[str, tuple[Node, Node]]] = {}  # id(mapping node) -> key -> nodes
        self._building: set[int] = set()

    def error(self, where: Node | int, message: str, hint: str = "") -> None:
        line = where if isinstance(where, int) else where.start_mark.line + 1
        self.problems.append(ConfigProblem(self.display, line, message, hint))

    def fail(self, loc: Loc, message: str, hint: str = "") -> None:
        """A problem with the value at loc, at its line, named by its label."""
        self.error(self.node(loc), f"{self.label(loc)}: {message}", hint)

    # --- loading ----------------------------------------------------------------------------

    def load(self) -> bool:
        """Read, parse and build the data; False (with problems recorded) if there is nothing to check."""
        try:
            self.raw = self.path.read_bytes()
        except OSError as exc:
            self.error(1, f"cannot read the config: {exc.strerror or exc}")
            return False
        self.root = self._compose(self.raw)
        if self.root is None:
            return False
        self.data = self._build(self.root, ())
        return True

    def _compose(self, raw: bytes) -> Node | None:
        """Parse without constructing, keeping marks; syntax errors become problems."""
        try:
            self.text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.error(raw[: exc.start].count(b"\n") + 1, "the file is not UTF-8 text")
            return None
        try:
            node = yaml.compose(self.text, Loader=yaml.SafeLoader)
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
            self.error(self.text[: exc.position].count("\n") + 1, f"YAML syntax error: {exc}")
            return None
        except yaml.YAMLError as exc:
            self.error(1, f"YAML syntax error: {exc}")
            return None
        if node is None:
            self.error(1, "the file is empty", "a config is a mapping with keys such as kernels, targets")
        return node

    def _build(self, node: Node, loc: Loc) -> Any:
        if id(node) in self._building:  # an alias to an enclosing node would never end
            self.error(node, f"{self.label(loc)}: a recursive alias", "YAML aliases here must not contain themselves")
            return None
        if isinstance(node, ScalarNode):
            if node.tag.startswith(_TAG_PREFIX):
                # A throwaway constructor: SafeConstructor caches by node and is not meant to be shared.
                return SafeConstructor().construct_object(node)
            return Unconstructed(node.tag)
        self._building.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [self._build(item, (*loc, i)) for i, item in enumerate(node.value)]
            assert isinstance(node, MappingNode)
            items = self._mapping_items(node, loc)
            self._items[id(node)] = items
            return {key: self._build(value, (*loc, key)) for key, (_, value) in items.items()}
        finally:
            self._building.discard(id(node))

    def _mapping_items(self, node: MappingNode, loc: Loc) -> dict[str, tuple[Node, Node]]:
        """key -> (key node, value node) in file order; duplicate and non-string keys are problems."""
        what = self.label(loc)
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
                        self.error(source, f"{what}: '<<' expects a mapping, got {describe(source)}")
                continue
            if not isinstance(key_node, ScalarNode):
                self.error(key_node, f"{what}: keys must be plain strings, got {describe(key_node)}")
                continue
            key = key_node.value
            if key in items:
                first = items[key][0].start_mark.line + 1
                self.error(key_node, f"{what}: duplicate key '{key}'", f"first given at line {first}")
                continue
            items[key] = (key_node, value_node)
        for key, entry in merged.items():
            items.setdefault(key, entry)
        return items

    # --- locations --------------------------------------------------------------------------

    def locate(self, loc: Loc) -> tuple[Loc, Node, Node | None, Loc]:
        """Follow a loc through the nodes: (the loc followed, its node, that node's key, what is left)."""
        assert self.root is not None
        node, key_node = self.root, None
        followed: list[str | int] = []
        for i, element in enumerate(loc):
            items = self._items.get(id(node)) if isinstance(node, MappingNode) else None
            if items is not None and isinstance(element, str) and element in items:
                key_node, node = items[element]
            elif isinstance(node, SequenceNode) and isinstance(element, int) and element < len(node.value):
                key_node, node = None, node.value[element]
            elif is_tag(element):
                continue
            else:
                return tuple(followed), node, key_node, tuple(e for e in loc[i:] if not is_tag(e))
            followed.append(element)
        return tuple(followed), node, key_node, ()

    def node(self, loc: Loc) -> Node:
        return self.locate(loc)[1]

    def key_node(self, loc: Loc) -> Node:
        """The key's node of a mapping entry (a problem about a key points at its line)."""
        _, node, key_node, _ = self.locate(loc)
        return key_node or node

    def get(self, loc: Loc, default: Any = None) -> Any:
        """The data at a loc of plain keys and indices, or default when it is not there."""
        value = self.data
        for element in loc:
            if isinstance(value, dict) and isinstance(element, str) and element in value:
                value = value[element]
            elif isinstance(value, list) and isinstance(element, int) and element < len(value):
                value = value[element]
            else:
                return default
        return value

    def entries(self, key: str) -> list[tuple[Loc, Any]]:
        """(loc, entry) for each entry of a top-level list (none if it is not a list)."""
        value = self.get((key,))
        return [((key, i), entry) for i, entry in enumerate(value)] if isinstance(value, list) else []

    def label(self, loc: Loc) -> str:
        """How a message names the value at loc: options.timeouts.boot, kernel 'x'.source ..."""
        text, start = self.prefix, 0
        for known in sorted(self.labels, key=len, reverse=True):
            # "kernel 'x'" names what is inside kernels[i], but not its own name or keys
            if loc[:len(known)] == known and len(loc) > len(known) and loc[len(known)] != "name":
                text, start = self.labels[known], len(known)
                break
        for element in loc[start:]:
            text += f"[{element}]" if isinstance(element, int) else (f".{element}" if text else element)
        return text or self.root_label

    # --- validation -------------------------------------------------------------------------

    def validate(self, schema: TypeAdapter[Any]) -> Any:
        """Check the whole file against the schema; every error becomes a problem at its line."""
        models: dict[int, type[BaseModel]] = {}
        try:
            return schema.validate_python(self.data, context={"models": models})
        except ValidationError as exc:
            for error in exc.errors():
                self._report(error, models)
            return None

    def has_errors(self, loc: Loc) -> bool:
        return any(where[:len(loc)] == loc for where in self.error_locs)

    def valid(self, loc: Loc, schema: TypeAdapter[Any]) -> Any:
        """A part of the file the schema passed, as its type (None where it had errors or is absent).

        The second pass (names, files) works part by part, so a broken entry does not hide the
        problems of its neighbours.
        """
        value = self.get(loc, _ABSENT)
        if value is _ABSENT or self.has_errors(loc):
            return None
        return schema.validate_python(value)

    def _report(self, error: ErrorDetails, models: dict[int, type[BaseModel]]) -> None:
        followed, node, key_node, rest = self.locate(tuple(error["loc"]))
        self.error_locs.append(followed + rest)
        kind, ctx = error["type"], error.get("ctx") or {}
        what = self.label(followed)
        if kind == "missing":
            self.error(node, f"{what}: missing required key '{(rest or followed)[-1]}'")
        elif kind == "extra_forbidden":
            parent, key = followed[:-1], str(followed[-1])
            model = models.get(id(self.get(parent)))
            removed = getattr(model, "removed_keys", {})
            if key in removed:
                self.error(key_node or node, f"{self.label(parent)}: '{key}' is no longer an option", removed[key])
            else:
                known = getattr(model, "known_keys", ()) or [f.alias or name for name, f in
                                                             (model.model_fields.items() if model else ())]
                self.error(key_node or node, f"{self.label(parent)}: unknown key '{key}'", did_you_mean(key, known))
        elif kind in _EXPECTED:
            hint = ""
            if kind == "string_type" and isinstance(node, ScalarNode) and node.tag != _TAG_PREFIX + "null":
                hint = f'quote it to make it a string: "{node.value}"'
            if followed or self.root_label != "top level":
                self.error(node, f"{what}: expected {_EXPECTED[kind]}, got {describe(node)}", hint)
            else:
                self.error(node, f"expected a mapping at the top level, got {describe(node)}",
                           "a config is a mapping with the keys kernels, targets, suites, matrix, options")
        elif kind == "greater_than_equal":
            self.error(node, f"{what}: must be at least {ctx['ge']}, got {error['input']}")
        elif kind == "too_short":
            self.error(node, f"{what}: the list is empty", "give at least one entry")
        elif kind == "literal_error":
            choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
            self.error(node, f"{what}: invalid value '{error['input']}'", did_you_mean(str(error["input"]), choices))
        elif kind == "one_of":
            self._report_one_of(node, what, ctx)
        else:  # crlab's own checks (PydanticCustomError) carry their message and hint
            self.error(node, f"{what}: {error['msg']}", str(ctx.get("hint", "")))

    def _report_one_of(self, node: Node, what: str, ctx: dict[str, Any]) -> None:
        """A mapping that must hold exactly one of some keys (see schema.one_of)."""
        if not isinstance(node, MappingNode):
            self.error(node, f"{what}: expected a mapping, got {describe(node)}")
            return
        items, choices = self._items.get(id(node), {}), str(ctx["choices"]).split()
        for key, (key_node, _) in items.items():  # no branch was chosen, so no model reported these
            if key not in choices:
                self.error(key_node, f"{what}: unknown key '{key}'", did_you_mean(key, choices))
        given = [key for key in items if key in choices]
        if len(given) > 1:
            second_key = self._items[id(node)][given[1]][0]
            self.error(second_key, f"{what}: both '{given[0]}' and '{given[1]}' given", ctx["hint"])
        else:
            self.error(node, f"{what}: {ctx['missing']}", ctx["hint"])
