"""Validate spec *text* (an editor's buffer) and find each problem's line.

:func:`check_text` runs the same layers as :func:`archspec.load_spec` on text instead of a
file and gives every problem its dotted path and, where the path can be found in the
text, its 1-based line (:func:`line_of`, by walking the YAML node tree that PyYAML's safe
composer builds; JSON is YAML here). Parse errors carry the line the parser reports.
"""
from __future__ import annotations

import re
from typing import Any

import yaml

from archspec.errors import Problem, SpecError

_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_LINE = re.compile(r"line (\d+)")
_LINE_PREFIX = re.compile(r"^line \d+ (column \d+: )")
_VAR_REF = re.compile(r"\$\{vars\.([A-Za-z0-9_]+)\}")


def _raw_at(data: Any, loc: str) -> Any:
    """The value at ``loc`` in the parsed (not yet resolved) data, or None."""
    for part in path_parts(loc):
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _refs(obj: Any) -> list[str]:
    if isinstance(obj, str):
        return _VAR_REF.findall(obj)
    items = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list) else []
    return [r for v in items for r in _refs(v)]


def _from_var(data: Any, loc: str, msg: str, node: yaml.Node | None
              ) -> tuple[str, int | None] | None:
    """(variable name, its line) when the faulty value at ``loc`` came from
    ``${vars.NAME}`` (the whole value, or inside it a variable whose value the message
    quotes): the typo was made at the variable, not where it is used."""
    variables = data.get("vars") if isinstance(data.get("vars"), dict) else {}
    raw = _raw_at(data, loc) if loc else None
    names = [n for n in _refs(raw) if n in variables]
    if not isinstance(raw, str):
        names = [n for n in names if repr(variables[n]) in msg or f"{variables[n]}" == msg]
    if not names:
        return None
    return names[0], line_of(node, f"vars.{names[0]}")


def path_parts(loc: str) -> list[str | int]:
    """``"model.nodes.e1.in[0]"`` -> ``["model", "nodes", "e1", "in", 0]``."""
    return [int(i) if i else k for k, i in _PART.findall(loc)]


def _compose(text: str) -> yaml.Node | None:
    try:
        loader = yaml.SafeLoader(text)
        try:
            return loader.get_single_node()
        finally:
            loader.dispose()
    except (yaml.YAMLError, RecursionError):
        return None


def line_of(text_or_node: str | yaml.Node | None, loc: str) -> int | None:
    """1-based line of the deepest part of ``loc`` present in the text, or None."""
    node = _compose(text_or_node) if isinstance(text_or_node, str) else text_or_node
    if node is None:
        return None
    line = None
    for part in path_parts(loc):
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            hit = next(((k, v) for k, v in node.value
                        if isinstance(k, yaml.ScalarNode) and k.value == part), None)
            if hit is None:
                break
            line, node = hit[0].start_mark.line + 1, hit[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def check_text(text: str, fmt: str = "yaml", overrides: list[str] | None = None
               ) -> tuple[Any, list[dict[str, Any]]]:
    """Validate spec text; returns ``(spec or None, problems)``.

    Each problem is ``{"loc": dotted path, "msg": message, "line": int | None}``.
    """
    from archspec import spec_from_dict
    from archspec.loading import MAX_BYTES, parse_text

    if len(text.encode("utf-8", "replace")) > MAX_BYTES:
        return None, [{"loc": "", "msg": f"text is over {MAX_BYTES} bytes", "line": None}]
    if not text.strip():
        return None, [{"loc": "", "msg": "empty spec", "line": None}]
    data = None
    try:
        data = parse_text(text, fmt)
        if not isinstance(data, dict):
            raise SpecError([Problem("", "top level must be a mapping, got "
                                     f"{type(data).__name__}")])
        spec = spec_from_dict(data, overrides)
    except SpecError as e:
        node = _compose(text) if fmt == "yaml" or text.lstrip().startswith("{") else None
        out = []
        for p in e.problems:
            m = _LINE.search(p.msg) if not p.loc else None
            line = int(m.group(1)) if m else line_of(node, p.loc) if p.loc else None
            msg = _LINE_PREFIX.sub(r"\1", p.msg) if m else p.msg  # the line is said once
            var = _from_var(data, p.loc, p.msg, node) if isinstance(data, dict) else None
            if var and var[1]:
                msg, line = f"{msg} (the value comes from vars.{var[0]})", var[1]
            out.append({"loc": p.loc, "msg": msg, "line": line})
        return None, out
    return spec, []


def format_problems(problems: list[dict[str, Any]], source: str = "") -> list[str]:
    """``SOURCE:LINE: PATH: message`` lines (``line N: PATH: message`` without a source;
    line and path left out when unknown)."""
    out = []
    for p in problems:
        line = p.get("line")
        where = (source + (f":{line}" if line else "")) if source else (
            f"line {line}" if line else "")
        body = f"{p['loc']}: {p['msg']}" if p.get("loc") else p["msg"]
        out.append(f"{where}: {body}" if where else body)
    return out
