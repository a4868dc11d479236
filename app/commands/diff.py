"""``archsearch diff A B``: nodes and parameters added, removed or changed between two specs.

The comparison lives in :mod:`archspec.diff`; this module is the command-line surface
(it adds forward FLOPs per sample, counted by :func:`evaluator.measure.profile.count_flops`).
"""
from __future__ import annotations

import argparse
import json


def add_diff(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", metavar="A", help="spec file or run folder")
    p.add_argument("b", metavar="B", help="spec file or run folder")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--no-flops", dest="flops", action="store_false",
                   help="skip building the models to count FLOPs")


def spec_flops(spec) -> dict[str, float]:
    """``{"flops": forward FLOPs of one sample}`` or ``{}`` when they cannot be counted."""
    import torch

    from archspec import build_model
    from evaluator.measure.profile import count_flops

    c, s = spec.image.channels, spec.image.size
    try:
        torch.manual_seed(0)
        return {"flops": count_flops(build_model(spec), torch.zeros(1, c, s, s),
                                     torch.zeros(1, dtype=torch.long))}
    except Exception:  # noqa: BLE001 - complex ops may be uncountable; FLOPs are optional
        return {}


def run_diff(args: argparse.Namespace) -> int:
    from archspec.diff import diff_specs, format_diff, is_empty, load_for_diff

    d = diff_specs(load_for_diff(args.a), load_for_diff(args.b),
                   measure=spec_flops if args.flops else None)
    print(json.dumps(d, indent=2, default=str) if args.json else format_diff(d))
    return 0 if is_empty(d) else 1
