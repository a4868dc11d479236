"""Spec commands: ``validate``, ``schema``, ``show``, ``blocks``."""
from __future__ import annotations

import argparse
import json
import sys


def add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--override", action="append", default=[], metavar="PATH=VALUE",
                   help="set a spec value by dotted path, e.g. vars.width=64 (repeatable)")


def add_validate(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="YAML or JSON spec files")
    add_overrides(p)
    p.add_argument("-q", "--quiet", action="store_true", help="print problems only")


def run_validate(args: argparse.Namespace) -> int:
    from archspec import SpecError, load_spec, spec_hash

    bad = crashed = 0
    for path in args.paths:  # one bad file never stops the others from being checked
        try:
            spec = load_spec(path, overrides=args.override)
        except SpecError as e:
            bad += 1
            for line in (e.lines() if e.source else [f"{path}: {p}" for p in e.problems]):
                print(line, file=sys.stderr)
            continue
        except Exception as e:  # noqa: BLE001 - a bug; report it and check the next file
            from app.cli import internal_error

            crashed += 1
            print(f"{path}: {internal_error(e, 'validate')}", file=sys.stderr)
            continue
        if not args.quiet:
            print(f"{path}: ok ({spec.name}, {spec.validated.total_params:,} parameters, "
                  f"hash {spec_hash(spec)})")
    return 1 if crashed else 2 if bad else 0


def add_schema(p: argparse.ArgumentParser) -> None:
    p.add_argument("--indent", type=int, default=2)


def run_schema(args: argparse.Namespace) -> int:
    from archspec import json_schema

    print(json.dumps(json_schema(), indent=args.indent))
    return 0


def add_show(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="PATH")
    add_overrides(p)
    p.add_argument("--json", action="store_true", help="print the resolved spec as JSON only")


def run_show(args: argparse.Namespace) -> int:
    import yaml

    from archspec import arch_hash, canonical, load_spec, registry_version, spec_hash

    spec = load_spec(args.path, overrides=args.override)
    data = canonical(spec)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(yaml.safe_dump(data, sort_keys=False, default_flow_style=None).rstrip())
    print()
    print(node_table(spec))
    total = spec.validated.total_params
    print(f"\nparameters: {total:,}   spec hash: {spec_hash(spec)}   "
          f"arch hash: {arch_hash(spec)}   registry: {registry_version()}")
    return 0


def node_table(spec) -> str:
    """Fixed-width table: node, block, domain, output shape, parameters."""
    v = spec.validated
    rows = [("node", "block", "domain", "shape", "params")]
    for nid in v.order:
        node = spec.model.nodes[nid]
        ts = v.shapes[nid]
        rows.append((nid, node.block, ts.domain, "x".join(map(str, ts.shape)) or "-",
                     f"{v.param_counts.get(nid, 0):,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) if i < 4 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def add_blocks(p: argparse.ArgumentParser) -> None:
    p.add_argument("--family", help="only this family")
    p.add_argument("--json", action="store_true")


def run_blocks(args: argparse.Namespace) -> int:
    import blocks
    from archspec.errors import UserError

    families = sorted({e.family for _n, e in blocks.BLOCKS.items()})
    if args.family and args.family not in families:
        raise UserError(f"--family: unknown family {args.family[:40]!r}; known: "
                        f"{', '.join(families)}")
    out = []
    for name, e in blocks.BLOCKS.items():
        if args.family and e.family != args.family:
            continue
        params = {k: _describe_field(f) for k, f in e.params.model_fields.items()}
        out.append({"block": name, "family": e.family, "takes": list(e.takes),
                    "gives": e.gives, "params": params, "doc": e.doc, "twin": e.twin,
                    "source": e.source})
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    for b in out:
        ps = ", ".join(f"{k}: {v}" for k, v in b["params"].items()) or "-"
        print(f"{b['block']:<28} {b['family']:<18} ({', '.join(b['takes'])}) -> {b['gives']}")
        print(f"    {b['doc']}")
        print(f"    params: {ps}")
        if b["twin"]:
            print(f"    twin: {b['twin']}")
        if not b["source"].startswith("blocks."):
            print(f"    from: {b['source']}")  # a plugin's block says where it lives
    return 0


def _describe_field(f) -> str:
    ann = getattr(f.annotation, "__name__", None) or str(f.annotation).replace("typing.", "")
    return ann if f.is_required() else f"{ann} = {f.default!r}"
