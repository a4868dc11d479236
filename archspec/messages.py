"""Pydantic validation errors said plainly: one located :class:`Problem` per error.

Locations are dotted paths into the spec (``model.nodes.e1.channels``); an unknown key
names the keys allowed there and suggests the closest (``did you mean 'in'?``).
"""
from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from archspec.errors import Problem
from archspec.loading import short, short_id
from blocks.registry import suggest


def _fmt_loc(prefix: str, loc: tuple) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            part = short_id(part)
            out = f"{out}.{part}" if out else part
    return out


def _tagged(ann: Any, tag: Any) -> type[BaseModel] | None:
    """The member of a union discriminated by ``kind`` whose tag is ``tag``, else None."""
    if typing.get_origin(ann) is typing.Annotated:
        ann = typing.get_args(ann)[0]
    for member in typing.get_args(ann):
        kind = getattr(member, "model_fields", {}).get("kind")
        if kind is not None and typing.get_args(kind.annotation) == (tag,):
            return member
    return None


def _fields_at(model: type[BaseModel] | None, loc: tuple) -> list[str]:
    """Field names of the pydantic model found by following ``loc`` from ``model``."""
    ann: Any = model
    for key in loc:
        origin = typing.get_origin(ann)
        if origin in (dict, list):
            ann = typing.get_args(ann)[-1]
            continue
        if isinstance(ann, type) and issubclass(ann, BaseModel) and key in ann.model_fields:
            ann = ann.model_fields[key].annotation
        elif _tagged(ann, key) is not None:     # a discriminated union's member, by tag
            ann = _tagged(ann, key)
        else:
            return []
    while typing.get_origin(ann) in (dict, list):
        ann = typing.get_args(ann)[-1]
    return list(ann.model_fields) if isinstance(ann, type) and issubclass(ann, BaseModel) else []


# Keys written for another one, hinted first (v0 specs said "inputs"; "in" is too short
# for a close match from most misspellings of it).
MEANT = {"inputs": "in", "input": "in", "ins": "in", "from": "in", "type": "block"}


def _unknown_key(key: str, fields: list[str]) -> str:
    """``unknown key (did you mean 'x'?); allowed: ...`` for ``key`` among ``fields``."""
    key = key[:100]
    hint = suggest(key, fields)
    if MEANT.get(key) in fields and f"'{MEANT[key]}'" not in hint:
        hint = f" (did you mean '{MEANT[key]}'?)"
    return f"unknown key{hint}; allowed: {', '.join(fields)}"


def _fmt_error(err: dict, model: type[BaseModel], prefix: str,
               keys: tuple[str, ...] = ()) -> Problem:
    loc = tuple(err["loc"])
    kind, ctx = err["type"], err.get("ctx") or {}
    got = err.get("input")
    shown = short(got)
    if kind == "extra_forbidden":
        fields = [*(keys if len(loc) == 1 else ()), *_fields_at(model, loc[:-1])]
        msg = _unknown_key(str(loc[-1]), fields)
    elif kind == "missing":
        msg = "required"
    elif kind in _TYPE_MESSAGES:
        msg = f"{_TYPE_MESSAGES[kind]}, got {_got(got)}"
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
              "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()))
        msg = f"expected {op} {bound}, got {shown}"
    elif kind == "literal_error":
        msg = f"expected {ctx.get('expected')}, got {shown}"
    elif kind == "string_pattern_mismatch" and loc == ("name",):
        msg = (f"must be usable as a folder name: letters, digits, '_', '.', '-', not "
               f"starting with '.' or '-'; got {shown}")
    else:
        msg = f"{err['msg'][0].lower()}{err['msg'][1:]}, got {shown}"
    return Problem(_fmt_loc(prefix, loc), msg)


# Pydantic's wording for type errors, said plainly (its "valid integer" for 32.5 reads
# "got a number with a fractional part, got 32.5").
_TYPE_MESSAGES = {
    "int_type": "must be an integer", "int_from_float": "must be an integer",
    "int_parsing": "must be an integer", "float_type": "must be a number",
    "float_parsing": "must be a number", "finite_number": "must be a finite number",
    "bool_type": "must be true or false", "bool_parsing": "must be true or false",
    "string_type": "must be text", "list_type": "must be a list",
    "dict_type": "must be a mapping", "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
}


def _got(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f"text {short(v)}"
    if v is None:
        return "null"
    if isinstance(v, (list, dict)):
        return "a list" if isinstance(v, list) else "a mapping"
    return short(v)


def pydantic_problems(e: ValidationError, model: type[BaseModel], prefix: str = "",
                      keys: tuple[str, ...] = ()) -> list:
    """One located problem per error; ``keys`` are also allowed at the top level (a
    node's ``block`` and ``in`` beside its block's parameters)."""
    return [_fmt_error(err, model, prefix, keys) for err in e.errors()]


__all__ = ["MEANT", "pydantic_problems"]
