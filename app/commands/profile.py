"""``archsearch profile``: parameters, FLOPs, step time and memory, or per-block ratios.

The measuring lives in :mod:`evaluator.measure.profile`; this module is the command-line surface.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from app.commands.spec import add_overrides
from evaluator.measure.op_profile import profile_ops
from evaluator.measure.profile import (BATCH, WIDTH, ModelProfile, compare_train_steps,
                                       diffusers_peer, profile_blocks, profile_model)

def add_profile(p: argparse.ArgumentParser) -> None:
    p.add_argument("specs", nargs="*", metavar="SPEC",
                   help="spec files; several are timed side by side, ratios to the first")
    add_overrides(p)
    p.add_argument("--blocks", action="store_true",
                   help="time every block against a same-width real 3x3 conv")
    p.add_argument("--only", action="append", help="with --blocks: only these blocks")
    p.add_argument("--peer", choices=["diffusers"],
                   help="also time diffusers' UNet2DModel with matched parameters")
    p.add_argument("--ops", action="store_true",
                   help="op-by-op self time of the train step and a sampling NFE "
                        "(torch.profiler), side by side, excess over the first spec")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--json", action="store_true", help="print JSON only")


def run_profile(args: argparse.Namespace) -> int:
    from archspec.errors import UserError

    if args.batch_size < 1 or args.repeats < 1:
        raise UserError("--batch-size and --repeats must be >= 1")
    _check_device(args.device)
    if args.only and not args.blocks:
        raise UserError("--only selects blocks for --blocks; add --blocks")
    if args.ops and args.blocks:
        raise UserError("--ops profiles SPEC files; it does not combine with --blocks")
    if args.blocks:
        _check_only(args.only or [])
        rows = profile_blocks(repeats=args.repeats, only=args.only)
        print(json.dumps(rows, indent=2) if args.json else _blocks_table(rows))
        return 0
    if not args.specs:
        raise UserError("give SPEC files to profile, or --blocks")
    if args.ops:
        return _run_ops(args)
    results, compare = _profile_specs(args)
    if args.json:
        out = [asdict(r) for r in results]
        if len(out) == 1:
            print(json.dumps(out[0], indent=2))
        else:
            print(json.dumps({"models": out, "train_step_ms": compare}, indent=2))
        return 0
    print(_models_table(results, compare))
    return 0


def _check_device(name: str) -> None:
    from archspec.errors import UserError
    from evaluator.device import resolve_device

    try:
        dev = resolve_device(name)
    except (ValueError, RuntimeError) as e:
        raise UserError(f"--device: {e}") from None
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"--device: {name!r} is not supported here (cpu, cuda or cuda:N)")
    if dev.type == "cuda" and dev.index is not None:
        import torch

        if dev.index >= torch.cuda.device_count():
            raise UserError(f"--device: {name!r}: there are {torch.cuda.device_count()} "
                            "CUDA devices")


def _check_only(names: list[str]) -> None:
    """Every ``--only`` name is a registered block (one it cannot time is listed as such)."""
    import blocks
    from archspec.errors import Problem, UserError
    from blocks.registry import suggest

    problems = []
    for n in names:
        if n not in blocks.BLOCKS:
            problems.append(Problem(f"--only {n[:40]}", f"unknown block{suggest(n, blocks.names())}"))
    if problems:
        raise UserError(problems)


def _load_models(args):
    """The specs' models (seeded alike) and images, plus the diffusers peer with ``--peer``."""
    import torch

    from archspec import build_model, load_spec

    models, images = {}, {}
    for path in args.specs:
        spec = load_spec(path, overrides=args.override)
        torch.manual_seed(0)
        models[spec.name] = build_model(spec)
        images[spec.name] = (spec.image.channels, spec.image.size, spec.image.size)
    first = next(iter(models))
    if args.peer:
        n = sum(p.numel() for p in models[first].parameters())
        models["diffusers.UNet2DModel"], _cfg = diffusers_peer(images[first], n)
        images["diffusers.UNet2DModel"] = images[first]
    return models, images


def _profile_specs(args):
    models, images = _load_models(args)
    first, results = next(iter(models)), []
    for name, m in models.items():
        results.append(profile_model(name, m, images[name], batch_size=args.batch_size,
                                     repeats=args.repeats, device=args.device))
    compare = {}
    same = {k: m for k, m in models.items() if images[k] == images[first]}
    if len(same) > 1:
        compare = compare_train_steps(same, images[first], batch_size=args.batch_size,
                                      repeats=args.repeats, device=args.device)
    return results, compare


def _models_table(results: list[ModelProfile], compare: dict[str, float]) -> str:
    head = (f"{'model':<28}{'params':>11}{'MFLOPs':>10}{'fwd ms':>9}{'fwd+bwd ms':>12}"
            f"{'step ms':>9}{'peak MB':>9}")
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(f"{r.name:<28}{r.params:>11,}{r.flops / 1e6:>10.1f}{r.fwd_ms:>9.1f}"
                     f"{r.fwd_bwd_ms:>12.1f}{r.train_step_ms:>9.1f}{r.peak_mem_mb:>9.1f}")
    r0 = results[0]
    lines.append(f"batch {r0.batch_size}, image {r0.image}, {r0.device}, {r0.threads} threads, "
                 f"median of {r0.repeats}; memory: {r0.peak_mem_source}")
    if compare:
        base = next(iter(compare.values()))
        lines.append("\ntrain step (fwd+bwd+AdamW), interleaved in one run:")
        for k, v in compare.items():
            lines.append(f"  {k:<28}{v:>9.1f} ms  {v / base:>5.2f}x")
    return "\n".join(lines)


def _blocks_table(rows: list[dict]) -> str:
    lines = [f"{'block':<36}{'fwd+bwd ms':>11}{'conv ms':>9}{'ratio':>7}", "-" * 63]
    for r in rows:
        if "untimed" in r:
            lines.append(f"{r['block']:<36}  not timed: {r['untimed']}")
        else:
            lines.append(f"{r['block']:<36}{r['fwd_bwd_ms']:>11.2f}{r['real_conv_ms']:>9.2f}"
                         f"{r['ratio_to_real_conv']:>7.2f}")
    lines.append(f"width {WIDTH}, grid of the block's input, batch {BATCH}; ratio = median "
                 "block time / median same-width real 3x3 conv time, interleaved")
    return "\n".join(lines)


def _run_ops(args) -> int:
    models, images = _load_models(args)
    out = profile_ops(models, images, batch_size=args.batch_size, rounds=args.repeats,
                      device=args.device)
    print(json.dumps({"ops": out}, indent=2) if args.json else _ops_report(out))
    return 0


PHASES = {"train_step": "train step (fwd+bwd+AdamW)", "nfe": "sampling NFE (eval forward)"}


def _ops_report(out: dict) -> str:
    parts = []
    for phase, res in out.items():
        for metric, tabs in res["tables"].items():
            title = f"{PHASES[phase]}: {metric} self ms"
            parts.append(_side_table(tabs["ops"], f"op, {title}"))
            parts.append(_side_table(tabs["families"], f"family, {title}"))
        parts.append(_ops_footer(res))
    return "\n\n".join(parts)


def _side_table(rows: list[dict], title: str) -> str:
    specs = list(rows[-1]["ms"])
    head = f"{title[:48]:<48}" + "".join(f"{s[:15]:>16}" for s in specs) \
        + "".join(f"{'+' + s[:14]:>16}" for s in specs[1:])
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['name'][:48]:<48}" + "".join(f"{r['ms'][s]:>16.2f}" for s in specs)
                     + "".join(f"{r['excess'][s]:>+16.2f}" for s in specs[1:]))
    return "\n".join(lines)


def _ops_footer(res: dict) -> str:
    lines = [f"{'':<48}" + "".join(f"{s[:15]:>16}" for s in res["plain_ms"])]
    for label, key in (("wall ms, profiled", "profiled_wall_ms"),
                       ("wall ms, no profiler (median)", "plain_ms")):
        lines.append(f"{label:<48}" + "".join(f"{v:>16.2f}" for v in res[key].values()))
    first = next(iter(res["plain_ms"]))
    lines.append(f"batch {res['batch_size']}, {res['device']}, ms per call, mean of "
                 f"{res['rounds']} profiled rounds, interleaved; +SPEC columns: SPEC minus "
                 f"{first}; 'total' is the ops' summed self time (the profiled wall less the "
                 "Python between ops)")
    return "\n".join(lines)
