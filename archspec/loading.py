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
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise SpecError(f"file is {size} bytes; specs are limited to {MAX_BYTES} bytes",
                            str(path))
        data = p.read_bytes()
    except OSError as e:  # permissions, a file vanishing, a broken disk
        raise SpecError(f"cannot read the file: {e.strerror or e}", str(path)) from None
    if b"\x00" in data:
        raise SpecError("binary file (contains NUL bytes), expected YAML or JSON text", str(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"not UTF-8 text (byte {e.start})", str(path)) from None
    if not text.strip():
        raise SpecError("empty file", str(path))
    return text


# libyaml's parser when PyYAML has it: ten times faster, so a 1 MB spec parses in well under
# a second. Only the parser is C; construction stays PyYAML's safe constructor.
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _SafeLoader(_BaseLoader):
    """Safe loader that reads every mapping key as the text written (``on:`` is the key
    ``"on"``, not True: spec keys are names, as in JSON). Aliases are counted by
    :func:`_yaml_problems`, so a 'billion laughs' document is refused early."""

    def construct_mapping(self, node, deep=False):  # noqa: ANN001 - PyYAML signature
        self.flatten_mapping(node)
        return {k.value: self.construct_object(v, deep=deep) for k, v in node.value}


# YAML 1.1 reads 1e-3 (no dot) as text; YAML 1.2 and JSON read it as a number, and so
# does every user. With strict types the difference would be an error, not a coercion.
_SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))

# Tags a spec may hold: the JSON types. Anything else (dates, !!binary, !!set, !!omap...)
# is refused with its line rather than turned into a Python object JSON cannot hold.
_TAGS = {f"tag:yaml.org,2002:{t}": t for t in
         ("str", "int", "float", "bool", "null", "seq", "map")}
MAX_INT_DIGITS = 30         # no spec value needs more; int("9" * 5000) would raise


def _mark(node) -> str:  # noqa: ANN001
    return f"line {node.start_mark.line + 1}"


def _yaml_problems(root) -> list[Problem]:  # noqa: ANN001 - a yaml.Node
    """Duplicate keys, non-JSON tags, non-text keys and huge integers, each located.

    Iterative, and each (aliased) node is visited once, so it is linear in the document.
    """
    problems: list[Problem] = []
    stack, seen, aliases = [(root, "")], set(), 0
    while stack:
        node, path = stack.pop()
        if id(node) in seen:  # an alias: the node is shared, walk it once
            aliases += 1
            if aliases > MAX_ALIASES:
                return [Problem(path, f"{_mark(node)}: more than {MAX_ALIASES} YAML aliases")]
            continue
        seen.add(id(node))
        kind = _TAGS.get(node.tag)
        where = f"{path}: " if path else ""
        if kind is None and node.tag != "tag:yaml.org,2002:merge":
            what = node.tag.replace("tag:yaml.org,2002:", "!")
            problems.append(Problem(path, f"{_mark(node)}: YAML type !{short_id(what, 24)} is "
                                    "not a spec value (only text, numbers, true/false, null, "
                                    "lists and mappings); quote it to make it text"))
            continue
        if kind == "int" and len(node.value.lstrip("+-")) > MAX_INT_DIGITS:
            problems.append(Problem(path, f"{_mark(node)}: integer with {len(node.value)} "
                                    f"digits is out of range"))
        elif kind == "seq":
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(node.value))
        elif kind == "map":
            first: dict[str, int] = {}
            for k, v in node.value:
                if not isinstance(k, yaml.ScalarNode):
                    problems.append(Problem(path, f"{_mark(k)}: keys must be plain text"))
                    continue
                if k.tag == "tag:yaml.org,2002:merge":
                    stack.append((v, path))
                    continue
                sub = f"{path}.{short_id(k.value)}" if path else short_id(k.value)
                if k.value in first:
                    problems.append(Problem(sub, f"{_mark(k)}: duplicate key {short(k.value)}"
                                            f" (first at line {first[k.value]})"))
                else:
                    first[k.value] = k.start_mark.line + 1
                stack.append((v, sub))
    return problems


class _DuplicateKey(ValueError):
    pass


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(f"duplicate key {short(k)} in the object with keys "
                                f"{', '.join(short(x) for x in list(out)[:5])}")
        out[k] = v
    return out


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _DuplicateKey(f"integer with {len(text)} digits is out of range")
    return int(text)


def short(text: Any, limit: int = 40) -> str:
    """``repr(text)`` cut to ``limit`` characters, so a 10,000-character id is not echoed."""
    r = repr(text)
    return r if len(r) <= limit else r[: limit - 4] + "...'"


def short_id(text: str, limit: int = 40) -> str:
    """A key as it appears in a dotted path: non-printable characters escaped (a key may
    hold a newline), cut to ``limit`` characters."""
    text = str(text)
    if not text.isprintable():
        text = repr(text)[1:-1]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _names(keys: Any, limit: int = 10) -> str:
    """Up to ``limit`` names for a message, each as :func:`short_id` shows it."""
    names = sorted(short_id(k) for k in keys)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return (", ".join(names[:limit]) + more) or "none"


def parse_text(text: str, fmt: str) -> Any:
    """Parse YAML (``fmt='yaml'``) or JSON text into plain Python data."""
    try:
        if fmt == "json":
            data = json.loads(text, object_pairs_hook=_json_object, parse_int=_json_int)
        else:
            loader = _SafeLoader(text)
            try:
                node = loader.get_single_node()
                problems = _yaml_problems(node) if node is not None else []
                if problems:
                    raise SpecError(problems)
                data = loader.construct_document(node) if node is not None else None
            finally:
                loader.dispose()
    except RecursionError:
        raise SpecError(f"nesting too deep (limit {MAX_DEPTH} levels)") from None
    except json.JSONDecodeError as e:
        raise SpecError(f"line {e.lineno} column {e.colno}: invalid JSON: {e.msg}") from None
    except _DuplicateKey as e:
        raise SpecError(f"invalid JSON: {e}") from None
    except yaml.YAMLError as e:
        raise SpecError(_yaml_message(e)) from None
    except ValueError as e:  # a YAML scalar its constructor cannot read (e.g. 1:2:99999...)
        raise SpecError(f"invalid YAML value: {short(str(e), 80)}") from None
    _check_size(data)
    return data


def _yaml_message(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
    what = getattr(e, "problem", None) or str(e).splitlines()[0]
    if "nesting depth" in what:  # libyaml's own limit (1000), far above ours
        return f"nesting too deep (limit {MAX_DEPTH} levels)"
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


# --------------------------------------------------------------------------- plain data
def plain(data: Any) -> dict[str, Any]:
    """A deep copy of ``data`` holding JSON types only (str keys; str, int, float, bool,
    None, list, dict values); anything else is a located :class:`SpecError`.

    Used for data that did not come through :func:`parse_text` (``spec_from_dict``).
    """
    if not isinstance(data, dict):
        raise SpecError(f"top level must be a mapping, got {type(data).__name__}")
    _check_size(data)
    problems: list[Problem] = []
    out = _plain(data, "", problems)
    if problems:
        raise SpecError(problems[:20])
    return out


def _plain(obj: Any, loc: str, problems: list[Problem]) -> Any:
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                problems.append(Problem(loc, f"keys must be text, got {short(k)}"))
                continue
            out[k] = _plain(v, f"{loc}.{short_id(k)}" if loc else short_id(k), problems)
        return out
    if isinstance(obj, (list, tuple)):
        return [_plain(v, f"{loc}[{i}]", problems) for i, v in enumerate(obj)]
    if isinstance(obj, int) and not isinstance(obj, bool) and \
            obj.bit_length() > MAX_INT_DIGITS * 3.33:
        problems.append(Problem(loc, "integer out of range"))
        return 0
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    problems.append(Problem(loc, f"{type(obj).__name__} is not a spec value (only text, "
                            "numbers, true/false, null, lists and mappings)"))
    return None


# --------------------------------------------------------------------------- upgrades
def _v0_to_v1(d: dict[str, Any]) -> dict[str, Any]:
    """v0 (pre-release) kept nodes under ``graph`` and named inputs ``inputs``."""
    d = dict(d)
    if "model" in d:
        raise SpecError([Problem("model", "a version-0 spec keeps its nodes under 'graph'; "
                                 "this looks like a version-1 body: set spec_version: 1")])
    graph = d.pop("graph", None)
    if graph is None:
        graph = {}
    if not isinstance(graph, dict):
        raise SpecError([Problem("graph", f"version 0: expected a mapping with 'nodes' and "
                                 f"'output', got {_kind(graph)}")])
    raw = graph.get("nodes") or {}
    if not isinstance(raw, dict):
        raise SpecError([Problem("graph.nodes", f"version 0: expected a mapping of node id "
                                 f"-> node, got {_kind(raw)}")])
    nodes = {}
    for nid, node in raw.items():
        node = dict(node) if isinstance(node, dict) else node
        if isinstance(node, dict) and "inputs" in node:
            node["in"] = node.pop("inputs")
        nodes[nid] = node
    d["model"] = {"nodes": nodes, "output": graph.get("output")}
    return d


def _v1_to_v2(d: dict[str, Any]) -> dict[str, Any]:
    """v1's ``unet`` routed its parts with per-role flags (``attention``,
    ``encoder_attention``, ``decoder_attention``, ``attention_params``, ``stage_params``,
    ``decoder_params``, ``head_params``); v2 describes each half as a stage
    ``{block, params, attention: {block, params}, resample}`` and the head as
    ``{block, params}``. The rewrite keeps the model: same blocks, same parameters."""
    d = dict(d)
    model = d.get("model")
    nodes = model.get("nodes") if isinstance(model, dict) else None
    if not isinstance(nodes, dict):
        return d
    d["model"] = dict(model, nodes={nid: _unet_v1_to_v2(nid, n) for nid, n in nodes.items()})
    return d


def _unet_v1_to_v2(nid: str, node: Any) -> Any:
    if not isinstance(node, dict) or node.get("block") != "unet":
        return node
    n = dict(node)
    att = n.pop("attention", "self_attention")
    att_params = n.pop("attention_params", None)
    enc_att, dec_att = n.pop("encoder_attention", None), n.pop("decoder_attention", None)
    stage_params, dec_params = n.pop("stage_params", None), n.pop("decoder_params", None)
    head_params = n.pop("head_params", None)

    def half(block: Any, params: Any, attention: Any) -> dict[str, Any]:
        a = {"block": attention} | ({"params": att_params} if att_params else {})
        return {"block": block} | ({"params": params} if params else {}) | {"attention": a}

    enc = half(n.get("encoder", "resblock"), stage_params, enc_att or att)
    dec = half(n.get("decoder") or enc["block"],
               stage_params if dec_params is None else dec_params, dec_att or att)
    n["encoder"] = enc
    n["decoder"] = None if dec == enc else dec
    n.setdefault("mid_attention", True)  # v1's default
    if n.get("head") is not None:
        n["head"] = {"block": n["head"]} | ({"params": head_params} if head_params else {})
    elif head_params:
        raise SpecError([Problem(f"model.nodes.{short_id(nid)}.head_params",
                                 "needs a head block (head: spectral_head, ...)")])
    return n


def _kind(v: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", bool: "true/false",
            type(None): "nothing"}.get(type(v), "a number")


# spec_version N -> N+1. Each function takes and returns plain data.
UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {0: _v0_to_v1,
                                                                  1: _v1_to_v2}


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """Apply the upgrade chain from the document's ``spec_version`` to the current one."""
    version = data.get("spec_version", SPEC_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        raise SpecError([Problem("spec_version", f"must be an integer, got {short(version)}")])
    if version < 0:
        raise SpecError([Problem("spec_version", f"must be >= 0, got {version}")])
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
                problems.append(Problem(".".join(map(short_id, keys[: i + 1])),
                                        f"override {text!r}: no such mapping"))
                break
            node = nxt
        else:
            if keys[0] == "vars" and len(keys) == 2 and keys[1] not in node:
                from blocks.registry import suggest

                problems.append(Problem(f"vars.{short_id(keys[1])}", f"override {short(text)}: "
                                        f"no such variable{suggest(keys[1], list(node))}; "
                                        f"defined: {_names(node)}"))
                continue
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
    for name, value in variables.items():
        if "${" in json.dumps(value):
            problems.append(Problem(f"vars.{short_id(name)}", "a variable cannot reference "
                                    "another variable (${vars...}); write its value"))
    if problems:
        raise SpecError(problems)

    def sub(obj: Any, loc: str) -> Any:
        if isinstance(obj, dict):
            return {k: sub(v, f"{loc}.{short_id(k)}" if loc else short_id(k))
                    for k, v in obj.items()}
        if isinstance(obj, list):
            return [sub(v, f"{loc}[{i}]") for i, v in enumerate(obj)]
        if not isinstance(obj, str) or "${" not in obj:
            return obj
        names = _VAR.findall(obj)
        missing = [n for n in names if n not in variables]
        if missing or not names:
            what = f"unknown variable {short(missing[0])}" if missing else \
                "bad reference (write ${vars.NAME})"
            problems.append(Problem(loc, f"{what} in {short(obj)}; defined: "
                                    f"{_names(variables)}"))
            return obj
        full = _VAR.fullmatch(obj)
        if full:
            return variables[full.group(1)]
        return _VAR.sub(lambda m: str(variables[m.group(1)]), obj)

    out = {k: (v if k == "vars" else sub(v, k)) for k, v in data.items()}
    if problems:
        raise SpecError(problems)
    return out
