"""JSON Schema export for editors (``# yaml-language-server: $schema=...``).

The pydantic schema of :class:`Spec` describes every section; nodes are replaced by one
variant per registered block, so an editor completes and checks block parameters too.
"""
from __future__ import annotations

from typing import Any

from archspec.spec import Spec


_VAR_REF = {"type": "string", "pattern": r"^\$\{vars\.[A-Za-z_][A-Za-z0-9_]*\}$",
            "description": "a reference to a spec variable"}


def _block_variant(name: str, entry) -> dict[str, Any]:
    ps = entry.params.model_json_schema()
    props = {"block": {"const": name, "description": entry.doc},
             "in": {"type": "array", "items": {"type": "string"},
                    "description": f"inputs: {', '.join(entry.takes) or 'none'}"}}
    # any parameter may be a ${vars.NAME} reference, resolved before validation
    props.update({k: {"anyOf": [v, _VAR_REF]} for k, v in ps.get("properties", {}).items()})
    out: dict[str, Any] = {"type": "object", "properties": props, "required": ["block"],
                           "additionalProperties": False,
                           "description": f"{entry.family}: {entry.doc} -> {entry.gives}"}
    for extra in ("$defs",):
        if extra in ps:
            out[extra] = ps[extra]
    return out


def build_schema() -> dict[str, Any]:
    import blocks

    schema = Spec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "spectral-archsearch spec"
    variants = [_block_variant(n, e) for n, e in blocks.BLOCKS.items()]
    defs = schema.setdefault("$defs", {})
    for v in variants:  # hoist nested $defs so $refs resolve from the root
        defs.update(v.pop("$defs", {}))
    for name in ("Part", "StagePart"):  # unet stage descriptions: a bare name, or a mapping
        if name in defs:
            obj = defs[name]
            obj["properties"] = {k: {"anyOf": [v, _VAR_REF]}
                                 for k, v in obj.get("properties", {}).items()}
            defs[name] = {"anyOf": [{"type": "string", "description": "a block name"}, obj]}
    defs["ModelSpec"]["properties"]["nodes"]["additionalProperties"] = {"anyOf": variants}
    return schema
