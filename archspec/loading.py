"""Reading spec files safely: size, encoding, YAML/JSON parsing, upgrades, overrides, vars.

Nothing here executes code from a spec: YAML is read with a safe loader that knows no tags
beyond the plain scalar, list and map ones, and aliases are capped so an alias bomb cannot
expand. Every failure is a :class:`SpecError` with a location.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

import yaml

from archspec.errors import Problem, SpecError
from archspec.spec import SPEC_VERSION

MAX_BYTES = 1_000_000      # a spec is a few KB; anything over 1 MB is not a spec
MAX_DEPTH = 64             # nesting of maps/lists after parsing
MAX_NODES = 100_000        # scalars + containers visited, aliases expanded
MAX_ALIASES = 100          # YAML alias uses per document

_VAR = re.compile(r"\$\{vars\.([A-Za-z_][A-Za-z0-9_]*)\}")


# --------------------------------------------------------------------------- reading
def read_text(path: str | Path) -> str:
    """The file's text, refusing missing, huge, binary and non-UTF-8 files."""
    p = Path(path)
    if not p.is_file():
        raise SpecError("no such file" if not p.exists() else "not a regular file", str(path))
    size = p.stat().st_size
    if size > MAX_BYTES:
        raise SpecError(f"file is {size} bytes; specs are limited to {MAX_BYTES} bytes", str(path))
    data = p.read_bytes()
    if b"\x00" in data:
        raise SpecError("binary file (contains NUL bytes), expected YAML or JSON text", str(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"not UTF-8 text (byte {e.start})", str(path)) from None
    if not text.strip():
        raise SpecError("empty file", str(path))
    return text


class _SafeLoader(yaml.SafeLoader):
    """SafeLoader that counts aliases, so a 'billion laughs' document is refused early."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML signature
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_ALIASES} YAML aliases")
        return super().compose_node(parent, index)


def parse_text(text: str, fmt: str) -> Any:
    """Parse YAML (``fmt='yaml'``) or JSON text into plain Python data."""
    try:
        if fmt == "json":
            data = json.loads(text)
        else:
            loader = _SafeLoader(text)
            try:
                data = loader.get_single_data()
            finally:
                loader.dispose()
    except RecursionError:
        raise SpecError(f"nesting too deep (limit {MAX_DEPTH} levels)") from None
    except json.JSONDecodeError as e:
        raise SpecError(f"line {e.lineno} column {e.colno}: invalid JSON: {e.msg}") from None
    except yaml.YAMLError as e:
        raise SpecError(_yaml_message(e)) from None
    _check_size(data)
    return data


def _yaml_message(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
    what = getattr(e, "problem", None) or str(e).splitlines()[0]
    return f"{where}invalid YAML: {what}"


def _check_size(data: Any) -> None:
    """Refuse documents nested deeper than MAX_DEPTH or larger than MAX_NODES (iteratively)."""
    stack, seen = [(data, 1)], 0
    while stack:
        obj, depth = stack.pop()
        seen += 1
        if depth > MAX_DEPTH:
            raise SpecError(f"nesting too deep (limit {MAX_DEPTH} levels)")
        if seen > MAX_NODES:
            raise SpecError(f"document too large (over {MAX_NODES} values)")
        if isinstance(obj, dict):
            stack.extend((v, depth + 1) for v in obj.values())
        elif isinstance(obj, list):
            stack.extend((v, depth + 1) for v in obj)


def read_document(path: str | Path) -> dict[str, Any]:
    """Read and parse a spec file into a dict (no validation yet)."""
    text = read_text(path)
    fmt = "json" if str(path).lower().endswith(".json") else "yaml"
    try:
        data = parse_text(text, fmt)
    except SpecError as e:
        raise SpecError(e.problems, str(path)) from None
    if not isinstance(data, dict):
        raise SpecError(f"top level must be a mapping, got {type(data).__name__}", str(path))
    return data


# --------------------------------------------------------------------------- upgrades
def _v0_to_v1(d: dict[str, Any]) -> dict[str, Any]:
    """v0 (pre-release) kept nodes under ``graph`` and named inputs ``inputs``."""
    d = dict(d)
    graph = d.pop("graph", {}) or {}
    nodes = {}
    for nid, node in (graph.get("nodes") or {}).items():
        node = dict(node) if isinstance(node, dict) else node
        if isinstance(node, dict) and "inputs" in node:
            node["in"] = node.pop("inputs")
        nodes[nid] = node
    d["model"] = {"nodes": nodes, "output": graph.get("output")}
    return d


# spec_version N -> N+1. Each function takes and returns plain data.
UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {0: _v0_to_v1}


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """Apply the upgrade chain from the document's ``spec_version`` to the current one."""
    version = data.get("spec_version", SPEC_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        raise SpecError([Problem("spec_version", f"expected an integer, got {version!r}")])
    if version > SPEC_VERSION:
        raise SpecError([Problem("spec_version", f"version {version} is newer than this "
                                 f"toolkit's {SPEC_VERSION}; upgrade spectral-archsearch")])
    while version < SPEC_VERSION:
        if version not in UPGRADES:
            raise SpecError([Problem("spec_version", f"no upgrade from version {version}")])
        data = UPGRADES[version](data)
        version += 1
        data["spec_version"] = version
    return data


# --------------------------------------------------------------------------- overrides
def parse_override(text: str) -> tuple[list[str], Any]:
    """``"model.nodes.e1.channels=64"`` -> (["model","nodes","e1","channels"], 64)."""
    if "=" not in text:
        raise SpecError([Problem(f"override {text!r}", "expected PATH=VALUE")])
    path, raw = text.split("=", 1)
    keys = path.strip().split(".")
    if not all(keys):
        raise SpecError([Problem(f"override {text!r}", "empty key in path")])
    try:
        value = parse_text(raw, "yaml") if raw.strip() else ""
    except SpecError as e:
        raise SpecError([Problem(f"override {text!r}", p.msg) for p in e.problems]) from None
    return keys, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted paths in ``data``; the parent of each path must exist."""
    problems = []
    for text in overrides:
        keys, value = parse_override(text)
        node: Any = data
        for i, k in enumerate(keys[:-1]):
            nxt = node.get(k) if isinstance(node, dict) else None
            if not isinstance(nxt, dict):
                problems.append(Problem(".".join(keys[: i + 1]),
                                        f"override {text!r}: no such mapping"))
                break
            node = nxt
        else:
            node[keys[-1]] = value
    if problems:
        raise SpecError(problems)
    return data


# --------------------------------------------------------------------------- vars
def resolve_vars(data: dict[str, Any]) -> dict[str, Any]:
    """Replace ``${vars.NAME}`` everywhere outside ``vars`` itself.

    A string that is exactly one reference takes the variable's value with its type
    (``${vars.width}`` -> 32); a reference inside a longer string is interpolated.
    """
    variables = data.get("vars") or {}
    if not isinstance(variables, dict):
        return data  # the schema layer reports it
    problems: list[Problem] = []

    def sub(obj: Any, loc: str) -> Any:
        if isinstance(obj, dict):
            return {k: sub(v, f"{loc}.{k}" if loc else str(k)) for k, v in obj.items()}
        if isinstance(obj, list):
            return [sub(v, f"{loc}[{i}]") for i, v in enumerate(obj)]
        if not isinstance(obj, str) or "${" not in obj:
            return obj
        names = _VAR.findall(obj)
        missing = [n for n in names if n not in variables]
        if missing or not names:
            what = f"unknown variable {missing[0]!r}" if missing else "bad reference"
            problems.append(Problem(loc, f"{what} in {obj!r}; defined: "
                                    f"{', '.join(sorted(variables)) or 'none'}"))
            return obj
        full = _VAR.fullmatch(obj)
        if full:
            return variables[full.group(1)]
        return _VAR.sub(lambda m: str(variables[m.group(1)]), obj)

    out = {k: (v if k == "vars" else sub(v, k)) for k, v in data.items()}
    if problems:
        raise SpecError(problems)
    return out
