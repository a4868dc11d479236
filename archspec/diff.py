"""What changed between two specs: nodes and parameters added, removed or changed.

Specs are compared in their canonical, fully resolved form (:func:`archspec.canonical`:
``${vars.*}`` substituted, every default filled), so ``vars.width: 32 -> 64`` shows up
where it acts, as the ``channels`` of the nodes that use it. Parameter counts come from
validation (``spec.validated.param_counts``); other measures (FLOPs) can be passed in by a caller
that has them (``measure``), so this module needs nothing beyond the spec language.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from archspec.errors import UserError


def load_for_diff(path: str | Path):
    """A spec file, or a run folder (its stored ``spec.resolved.yaml``)."""
    from archspec import load_spec

    p = Path(path)
    if p.is_dir():
        if not (p / "spec.resolved.yaml").is_file():
            raise UserError(f"{p}: neither a spec file nor a run folder (no spec.resolved.yaml)")
        p = p / "spec.resolved.yaml"
    return load_spec(p)


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted paths of every leaf; lists are leaves (compared whole)."""
    if isinstance(obj, dict) and obj:
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


def _changes(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    fa, fb = flatten(a), flatten(b)
    out = []
    for path in [*fa, *(k for k in fb if k not in fa)]:
        va, vb = fa.get(path, _MISSING), fb.get(path, _MISSING)
        if va != vb and not (_blank(va) and _blank(vb)):
            out.append({"loc": path, "a": None if va is _MISSING else va,
                        "b": None if vb is _MISSING else vb,
                        "kind": "added" if va is _MISSING else
                        "removed" if vb is _MISSING else "changed"})
    return out


_MISSING = object()


def _blank(v: Any) -> bool:
    """Absent, null and empty mean the same for an optional field (no ``null -> null``)."""
    return v is _MISSING or v is None or (isinstance(v, dict) and not v)


def diff_specs(a, b, measure: Callable[[Any], dict[str, float]] | None = None
               ) -> dict[str, Any]:
    """Compare two validated specs.

    Args:
        a, b: :class:`archspec.spec.Spec` objects.
        measure: optional ``spec -> {name: number}`` (e.g. ``{"flops": ...}``) whose
            values are reported for both specs with their delta.

    Returns:
        A JSON-able dict: ``nodes.added`` / ``nodes.removed`` (id -> block),
        ``nodes.changed`` (id -> list of {loc, a, b, kind}), ``settings`` (changes outside
        the node map), ``params`` (totals, delta, per-node deltas) and ``measures``.
    """
    from archspec import arch_hash, canonical, spec_hash

    ca, cb = canonical(a), canonical(b)
    na, nb = ca["model"].pop("nodes"), cb["model"].pop("nodes")
    changed = {nid: _changes(na[nid], nb[nid]) for nid in na if nid in nb}
    pa, pb = dict(a.validated.param_counts), dict(b.validated.param_counts)
    per_node = {nid: pb.get(nid, 0) - pa.get(nid, 0) for nid in sorted(set(pa) | set(pb))
                if pb.get(nid, 0) != pa.get(nid, 0)}
    out: dict[str, Any] = {
        "a": {"name": a.name, "hash": spec_hash(a), "source": a.validated.source},
        "b": {"name": b.name, "hash": spec_hash(b), "source": b.validated.source},
        "same_architecture": arch_hash(a) == arch_hash(b),
        "nodes": {"added": {n: nb[n]["block"] for n in nb if n not in na},
                  "removed": {n: na[n]["block"] for n in na if n not in nb},
                  "changed": {n: c for n, c in changed.items() if c}},
        "settings": [c for c in _changes(ca, cb) if c["loc"] not in ("name",)],
        "params": {"a": sum(pa.values()), "b": sum(pb.values()),
                   "delta": sum(pb.values()) - sum(pa.values()), "per_node": per_node},
        "measures": {},
    }
    if measure is not None:
        ma, mb = measure(a), measure(b)
        out["measures"] = {k: {"a": ma.get(k), "b": mb.get(k),
                               "delta": (mb[k] - ma[k]) if ma.get(k) is not None
                               and mb.get(k) is not None else None}
                           for k in sorted(set(ma) | set(mb))}
    return out


def is_empty(d: dict[str, Any]) -> bool:
    """True when the two specs are the same (labels aside)."""
    n = d["nodes"]
    return not (n["added"] or n["removed"] or n["changed"] or d["settings"])


def _v(x: Any) -> str:
    return json.dumps(x) if not isinstance(x, str) else x


def format_diff(d: dict[str, Any]) -> str:
    """Plain text, one change per line (``+`` added, ``-`` removed, ``~`` changed)."""
    lines = [f"--- {d['a']['name']} ({d['a']['source'] or d['a']['hash']})",
             f"+++ {d['b']['name']} ({d['b']['source'] or d['b']['hash']})"]
    if is_empty(d):
        lines.append("no differences")
    for nid, block in d["nodes"]["removed"].items():
        lines.append(f"- model.nodes.{nid} ({block})")
    for nid, block in d["nodes"]["added"].items():
        lines.append(f"+ model.nodes.{nid} ({block})")
    for nid, changes in d["nodes"]["changed"].items():
        for c in changes:
            lines.append(f"~ model.nodes.{nid}.{c['loc']}: {_v(c['a'])} -> {_v(c['b'])}")
    for c in d["settings"]:
        mark = {"added": "+", "removed": "-", "changed": "~"}[c["kind"]]
        lines.append(f"{mark} {c['loc']}: {_v(c['a'])} -> {_v(c['b'])}")
    p = d["params"]
    lines.append(f"parameters: {p['a']:,} -> {p['b']:,} ({p['delta']:+,})")
    for k, m in d["measures"].items():
        if m["delta"] is not None:
            lines.append(f"{k}: {m['a']:,} -> {m['b']:,} ({m['delta']:+,})")
        else:
            lines.append(f"{k}: {m['a']} -> {m['b']}")
    lines.append("same architecture" if d["same_architecture"] else "architecture differs")
    return "\n".join(lines)
