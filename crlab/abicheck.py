"""`harness.py abi-check`: does every record struct of a C/R series' uapi header have the same layout
on every target?

The header is taken from the patch series itself (its patches applied, restricted to the uapi
headers, in an empty directory), compiled (compile only, never run) by each target's cross gcc with
full debug information, and the layout each compiler chose is read back from the DWARF of the object:
every struct's size and every field's offset, size and type, and the value of every constant the
header defines.  Structs are then compared across targets; a struct that differs anywhere, or that
relies on padding the compiler inserts, fails naming the struct, the field and the targets.

The same layouts are the decoder's record tables (`crlab.v21.tables`), so the decoder reads exactly
what each target's compiler lays out, per kernel tree.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from elftools.dwarf.die import DIE
from elftools.elf.elffile import ELFFile

from crlab.errors import UserError
from crlab.paths import REPO_ROOT
from crlab.targets import TargetProfile, builtin_profiles, get_profile

DEFAULT_SERIES = REPO_ROOT / "patches" / "linux-cr" / "series"
DEFAULT_TARGETS = ("x86_64", "i386", "ppc64", "ppc64le", "armv7")
# the series' uapi headers (what user space and the decoder see of it)
HEADER_GLOB = "include/uapi/linux/checkpoint*.h"
CONSTANT_PREFIXES = ("CKPT_", "CHECKPOINT_", "RESTART_")
_DEFINE = re.compile(r"^#\s*define\s+(" + "|".join(CONSTANT_PREFIXES) + r")(\w+)\s+\S", re.MULTILINE)


class AbiError(UserError):
    """The header cannot be probed (no compiler, does not compile, bad series)."""


@dataclass(frozen=True)
class Field:
    name: str
    offset: int
    size: int
    type: str  # "u32", "s16", "u8[65]", "struct ckpt_rlimit[16]"

    @property
    def base(self) -> str:
        return self.type.split("[", 1)[0]

    @property
    def count(self) -> int:
        """Elements of an array field (1 for a scalar or a struct)."""
        n = 1
        for dim in re.findall(r"\[(\d+)\]", self.type):
            n *= int(dim)
        return n


@dataclass(frozen=True)
class Struct:
    name: str
    size: int
    fields: tuple[Field, ...]

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"struct {self.name} has no field {name!r}")


@dataclass
class Layout:
    """What one target's compiler made of the headers."""

    target: str
    structs: dict[str, Struct] = field(default_factory=dict)
    constants: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Disagreement:
    struct: str
    field: str  # "" for the struct's size
    what: str  # "offset", "size", "type", "missing", "implicit padding"
    values: dict[str, str]  # value -> targets having it, as text

    def __str__(self) -> str:
        where = f"struct {self.struct}" + (f", field {self.field}" if self.field else "")
        groups = "; ".join(f"{value} on {targets}" for value, targets in self.values.items())
        if self.what in ("implicit padding", "missing"):
            return f"{where}: {groups}"
        return f"{where}: {self.what} differs: {groups}"


# --------------------------------------------------------------------------------------------------
# headers of a series


def series_patches(series: Path) -> list[Path]:
    """The patches of a quilt series (its `series` file, or the directory holding it), in order."""
    series_file = series / "series" if series.is_dir() else series
    if not series_file.is_file():
        raise AbiError(f"no quilt series at {series} (expected a `series` file)")
    patches = []
    for line in series_file.read_text().splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            patch = series_file.parent / name.split()[0]
            if not patch.is_file():
                raise AbiError(f"{series_file}: patch {name} not found")
            patches.append(patch)
    if not patches:
        raise AbiError(f"{series_file}: the series lists no patch")
    return patches


def extract_headers(patches: Sequence[Path], dest: Path) -> list[Path]:
    """Apply the patches' changes to the uapi checkpoint headers (and nothing else) under `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for patch in patches:
        proc = subprocess.run(["git", "apply", f"--include={HEADER_GLOB}", str(patch.resolve())],
                              cwd=dest, capture_output=True, text=True)
        if proc.returncode != 0:
            raise AbiError(f"{patch.name}: its uapi header changes do not apply: {proc.stderr.strip()}")
    headers = sorted(dest.glob(HEADER_GLOB))
    if not headers:
        raise AbiError(f"the series ({len(patches)} patches) adds no {HEADER_GLOB}")
    return headers


# --------------------------------------------------------------------------------------------------
# probing one compiler


def _compiler(profile: TargetProfile) -> str:
    gcc = f"{profile.cross_compile}gcc"
    if shutil.which(gcc) is None:
        raise AbiError(f"{profile.name}: {gcc} not found (install it: harness.py doctor --install)")
    return gcc


def probe_source(headers: Sequence[Path], include_root: Path) -> str:
    """A C file that includes the headers and turns each integer constant into an enumerator, so
    that DWARF carries every value as this compiler evaluates it (an #if'd-out one is skipped)."""
    lines = [f'#include "{h.relative_to(include_root)}"' for h in headers]
    names = dict.fromkeys(prefix + rest for header in headers for prefix, rest in _DEFINE.findall(header.read_text()))
    for name in names:
        if not name.endswith(("_H", "_H_")):
            lines += [f"#ifdef {name}", f"enum crlab_probe_{name} {{ crlab_probe_{name} = {name} }};", "#endif"]
    return "\n".join(lines) + "\n"


def probe(profile: TargetProfile, headers: Sequence[Path], include_root: Path, workdir: Path) -> Layout:
    """Compile the headers with the target's gcc (no linking, nothing run) and read the layouts back."""
    gcc = _compiler(profile)
    src = workdir / f"probe-{profile.name}.c"
    obj = workdir / f"probe-{profile.name}.o"
    src.write_text(probe_source(headers, include_root))
    cmd = [gcc, "-c", "-g", "-gdwarf-4", "-O0", "-fno-eliminate-unused-debug-types", "-Wall", "-Werror",
           "-I", str(include_root), "-o", str(obj), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        first = next((ln for ln in proc.stderr.splitlines() if "error" in ln), proc.stderr.strip())
        raise AbiError(f"{profile.name}: the header does not compile with {gcc}: {first}")
    return read_layout(profile.name, obj)


def _type_of(die: DIE) -> DIE:
    return die.get_DIE_from_attribute("DW_AT_type")


def _describe(die: DIE) -> tuple[str, int]:
    """(type text, byte size) of a type DIE, through typedefs and qualifiers."""
    tag = die.tag
    if tag in ("DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type"):
        return _describe(_type_of(die))
    if tag == "DW_TAG_base_type":
        size = die.attributes["DW_AT_byte_size"].value
        encoding = die.attributes["DW_AT_encoding"].value
        signed = encoding in (0x5, 0x6)  # DW_ATE_signed, DW_ATE_signed_char
        return f"{'s' if signed else 'u'}{size * 8}", size
    if tag in ("DW_TAG_structure_type", "DW_TAG_union_type"):
        kind = "struct" if tag == "DW_TAG_structure_type" else "union"
        name = die.attributes["DW_AT_name"].value.decode() if "DW_AT_name" in die.attributes else "<anonymous>"
        return f"{kind} {name}", die.attributes["DW_AT_byte_size"].value
    if tag == "DW_TAG_enumeration_type":
        size = die.attributes["DW_AT_byte_size"].value
        return f"u{size * 8}", size
    if tag == "DW_TAG_pointer_type":
        size = die.attributes["DW_AT_byte_size"].value
        return f"ptr{size * 8}", size
    if tag == "DW_TAG_array_type":
        elem, elem_size = _describe(_type_of(die))
        dims = []
        for sub in die.iter_children():
            if sub.tag != "DW_TAG_subrange_type":
                continue
            if "DW_AT_count" in sub.attributes:
                dims.append(sub.attributes["DW_AT_count"].value)
            elif "DW_AT_upper_bound" in sub.attributes:
                dims.append(sub.attributes["DW_AT_upper_bound"].value + 1)
            else:
                dims.append(0)  # a flexible array member
        total = elem_size
        for d in dims:
            total *= d
        return elem + "".join(f"[{d}]" for d in dims), total
    raise AbiError(f"unsupported type {tag} in a checkpoint header")


def read_layout(target: str, obj: Path) -> Layout:
    layout = Layout(target)
    with obj.open("rb") as fh:
        elf = ELFFile(fh)
        if not elf.has_dwarf_info():
            raise AbiError(f"{target}: {obj} has no debug information")
        for cu in elf.get_dwarf_info().iter_CUs():
            for die in cu.get_top_DIE().iter_children():
                if die.tag == "DW_TAG_structure_type" and "DW_AT_name" in die.attributes \
                        and "DW_AT_declaration" not in die.attributes:
                    struct = _struct(die)
                    layout.structs[struct.name] = struct
                elif die.tag == "DW_TAG_enumeration_type":
                    for enumerator in die.iter_children():
                        name = enumerator.attributes["DW_AT_name"].value.decode()
                        if name.startswith("crlab_probe_"):
                            layout.constants[name.removeprefix("crlab_probe_")] = \
                                enumerator.attributes["DW_AT_const_value"].value
    return layout


def _struct(die: DIE) -> Struct:
    name = die.attributes["DW_AT_name"].value.decode()
    fields = []
    for member in die.iter_children():
        if member.tag != "DW_TAG_member":
            continue
        fname = member.attributes["DW_AT_name"].value.decode() if "DW_AT_name" in member.attributes else "<anon>"
        if "DW_AT_bit_size" in member.attributes:
            raise AbiError(f"struct {name}: field {fname} is a bit-field (no fixed layout across compilers)")
        type_text, size = _describe(_type_of(member))
        offset = member.attributes["DW_AT_data_member_location"].value
        fields.append(Field(fname, int(offset), size, type_text))
    return Struct(name, die.attributes["DW_AT_byte_size"].value, tuple(fields))


# --------------------------------------------------------------------------------------------------
# comparing


def implicit_padding(struct: Struct) -> list[tuple[str, int, int]]:
    """(field, where, bytes) of every gap the compiler left: before a field, or at the end ("")."""
    gaps = []
    end = 0
    for f in struct.fields:
        if f.offset > end:
            gaps.append((f.name, end, f.offset - end))
        end = max(end, f.offset + f.size)
    if struct.size > end:
        gaps.append(("", end, struct.size - end))
    return gaps


def _group(values: dict[str, str]) -> dict[str, str]:
    """target -> value into value -> "t1, t2", in the order targets were given."""
    out: dict[str, list[str]] = {}
    for target, value in values.items():
        out.setdefault(value, []).append(target)
    return {value: ", ".join(targets) for value, targets in out.items()}


def compare(layouts: Sequence[Layout], prefix: str = "ckpt_") -> list[Disagreement]:
    """Every way the targets' layouts of the header's structs (names starting with `prefix`) differ,
    and every struct that relies on compiler-inserted padding on some target."""
    problems: list[Disagreement] = []
    names = sorted({n for lay in layouts for n in lay.structs if n.startswith(prefix)})
    for name in names:
        present = {lay.target: lay.structs.get(name) for lay in layouts}
        missing = [t for t, s in present.items() if s is None]
        structs = {t: s for t, s in present.items() if s is not None}
        if missing:
            problems.append(Disagreement(name, "", "missing", {"absent": ", ".join(missing),
                                                               "present": ", ".join(structs)}))
            continue
        field_names: list[str] = []
        for s in structs.values():
            field_names += [f.name for f in s.fields if f.name not in field_names]
        for fname in field_names:
            per_target = {t: next((f for f in s.fields if f.name == fname), None) for t, s in structs.items()}
            if any(f is None for f in per_target.values()):
                problems.append(Disagreement(name, fname, "presence", _group(
                    {t: "present" if f else "absent" for t, f in per_target.items()})))
                continue
            for attr in ("offset", "size", "type"):
                values = {t: str(getattr(f, attr)) for t, f in per_target.items()}
                if len(set(values.values())) > 1:
                    problems.append(Disagreement(name, fname, attr, _group(values)))
        sizes = {t: str(s.size) for t, s in structs.items()}
        if len(set(sizes.values())) > 1:
            problems.append(Disagreement(name, "", "size", _group(sizes)))
        for t, s in structs.items():
            for fname, where, nbytes in implicit_padding(s):
                text = (f"{nbytes} byte(s) of implicit padding at offset {where}"
                        + (f" before {fname}" if fname else " at the end"))
                problems.append(Disagreement(name, fname, "implicit padding", {text: t}))
    return _merge_padding(problems)


def _merge_padding(problems: list[Disagreement]) -> list[Disagreement]:
    """One implicit-padding line per (struct, field, text), naming all its targets."""
    out: list[Disagreement] = []
    index: dict[tuple[str, str, str], int] = {}
    for p in problems:
        if p.what != "implicit padding":
            out.append(p)
            continue
        (text, target), = p.values.items()
        key = (p.struct, p.field, text)
        if key in index:
            prev = out[index[key]]
            out[index[key]] = Disagreement(p.struct, p.field, p.what, {text: prev.values[text] + ", " + target})
        else:
            index[key] = len(out)
            out.append(p)
    return out


# --------------------------------------------------------------------------------------------------
# the whole check


@dataclass
class Report:
    headers: list[str]
    layouts: list[Layout]
    problems: list[Disagreement]

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        lines = [f"headers: {', '.join(self.headers)}"]
        for lay in self.layouts:
            n = sum(1 for s in lay.structs if s.startswith("ckpt_"))
            lines.append(f"  {lay.target:8} {n} structs, {len(lay.constants)} constants")
        if self.ok:
            first = self.layouts[0]
            structs = [s for name, s in sorted(first.structs.items()) if name.startswith("ckpt_")]
            for s in structs:
                lines.append(f"  {s.name:34} {s.size:4} bytes, {len(s.fields)} fields")
            lines.append(f"OK: {len(structs)} structs have the same size and field offsets on "
                         f"{', '.join(lay.target for lay in self.layouts)}, with no implicit padding")
        else:
            lines += [f"FAIL: {p}" for p in self.problems]
            lines.append(f"abi-check failed: {len(self.problems)} problem(s)")
        return "\n".join(lines)


def layouts_for_headers(headers: Sequence[Path], include_root: Path, targets: Iterable[str]) -> list[Layout]:
    profiles = [_profile(t) for t in targets]
    with tempfile.TemporaryDirectory(prefix="crlab-abi-") as tmp:
        return [probe(p, headers, include_root, Path(tmp)) for p in profiles]


def _profile(name: str) -> TargetProfile:
    try:
        return get_profile(name)
    except KeyError as exc:
        raise AbiError(str(exc.args[0])) from exc


def check_series(series: Path, targets: Sequence[str] = DEFAULT_TARGETS) -> Report:
    with tempfile.TemporaryDirectory(prefix="crlab-abi-series-") as tmp:
        root = Path(tmp)
        headers = extract_headers(series_patches(series), root)
        include_root = root / "include" / "uapi"
        layouts = layouts_for_headers(headers, include_root, targets)
        return Report([str(h.relative_to(root)) for h in headers], layouts, compare(layouts))


def check_header(header: Path, targets: Sequence[str] = DEFAULT_TARGETS) -> Report:
    """A single header file (for trying a change before it is a patch)."""
    if not header.is_file():
        raise AbiError(f"no header at {header}")
    layouts = layouts_for_headers([header.resolve()], header.resolve().parent, targets)
    return Report([str(header)], layouts, compare(layouts))


@cache
def series_layouts(series: Path, targets: tuple[str, ...]) -> dict[str, Layout]:
    """target -> layout of the series' headers (memoised: the decoder asks for the same tree often)."""
    report = check_series(series, targets)
    return {lay.target: lay for lay in report.layouts}


# --------------------------------------------------------------------------------------------------
# command line


def cmd_abi_check(args: argparse.Namespace) -> int:
    targets = args.targets or list(DEFAULT_TARGETS)
    unknown = [t for t in targets if t not in builtin_profiles()]
    if unknown:
        raise UserError(f"unknown target(s): {', '.join(unknown)}; built-in: {', '.join(sorted(builtin_profiles()))}")
    if args.header:
        report = check_header(Path(args.header), targets)
    else:
        report = check_series(Path(args.series), targets)
    print(report.text())
    return 0 if report.ok else 1


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("abi-check", help="compare the C/R series' uapi record layouts across the targets' "
                            "compilers (exit 1 naming struct, field and targets when they differ)")
    parser.add_argument("--series", default=str(DEFAULT_SERIES), help="quilt series (default: %(default)s)")
    parser.add_argument("--header", help="check this header file instead of a series")
    parser.add_argument("--targets", nargs="+", metavar="TARGET", help=f"default: {' '.join(DEFAULT_TARGETS)}")
    parser.set_defaults(func=cmd_abi_check)
