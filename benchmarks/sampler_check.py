"""FD-digits per sampler x steps x clip policy, one table per command.

Trains each spec (or reuses a finished run with the same spec hash), then samples its EMA
model with every (sampler, steps, clip policy) and scores the samples with the in-project
digits feature distance (FD-digits, not FID) against the whole test split. Every table is
printed with its budget, N, seeds and sampler settings.

Examples (from the repository root)::

    # the clip-policy table the examples' default was chosen from (small budget)
    python benchmarks/sampler_check.py examples/specs/tiny_unet_8.yaml \\
        --train-steps 800 --batch-size 64 --n 360 --seeds 0 \\
        --samplers ddim,dpmsolver++,unipc,heun-k --steps 10,20,50 --clips none,clip,dynamic

    # the issue's full budget (the spec's own 2000 steps at batch 128), two noise seeds
    python benchmarks/sampler_check.py examples/specs/tiny_unet_8.yaml \\
        --n 360 --seeds 0,1 --json results/ablations/sampler_check.json

Use ``OMP_NUM_THREADS=1`` on a shared machine. ``--device cuda`` where there is one.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from anywhere

from archspec.errors import UserError  # noqa: E402


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("specs", nargs="+", help="spec files (YAML/JSON)")
    p.add_argument("--train-steps", type=int, help="override train.steps")
    p.add_argument("--batch-size", type=int, help="override train.batch_size")
    p.add_argument("--train-seed", type=int, help="override train.seed")
    p.add_argument("--samplers", default="ddim,dpmsolver++",
                   help="comma-separated registered sampler names")
    p.add_argument("--steps", default="10,20,50", help="comma-separated step counts")
    p.add_argument("--clips", default="none,clip,dynamic", help="comma-separated policies")
    p.add_argument("--n", type=int, default=360, help="samples per cell (digits test: 360)")
    p.add_argument("--seeds", default="0", help="comma-separated noise seeds")
    p.add_argument("--out", default="results/ablations", help="run store root")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="also write every cell to this JSON file")
    return p.parse_args(argv)


def _ints(text: str, what: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--{what}: expected comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < (0 if what == "seeds" else 1):
        raise UserError(f"--{what}: expected positive integers, got {text!r}")
    return vals


def load(path: str, args: argparse.Namespace) -> Any:
    from archspec import load_spec

    over = [f"train.{k}={v}" for k, v in (("steps", args.train_steps),
                                          ("batch_size", args.batch_size),
                                          ("seed", args.train_seed)) if v is not None]
    return load_spec(path, overrides=over)


def fd_table(model: Any, spec: Any, samplers: list[str], steps: list[int], clips: list[str],
             n: int, seeds: list[int], device: str = "cpu") -> list[dict[str, Any]]:
    """One cell per (sampler, steps, clip): FD-digits per seed, mean and 95% CI, NFE."""
    from evaluator.data.datasets import load_dataset
    from evaluator.diffusion.schedules import NoiseSchedule
    from evaluator.measure.quality import feature_extractor
    from evaluator.measure.stats import mean_ci
    from evaluator.measure.features import fd_kd
    from evaluator.diffusion.samplers import sample

    reference = load_dataset(spec.train.dataset, split="test")
    extractor = feature_extractor(spec.train.dataset)
    if isinstance(extractor, Exception):
        raise UserError(f"feature extractor unavailable: {extractor}")
    schedule = NoiseSchedule.from_spec(spec.diffusion)
    shape = (spec.image.channels, spec.image.size, spec.image.size)
    cells = []
    for name in samplers:
        for k in steps:
            for clip in clips:
                fds, nfe = [], None
                for seed in seeds:
                    res = sample(model, schedule, sampler=name, steps=k, n=n, shape=shape,
                                 seed=seed, clip=clip, prediction=spec.diffusion.prediction,
                                 device=device)
                    nfe = res.nfe
                    fd = next(r for r in fd_kd(res.images, reference, extractor=extractor)
                              if r["metric"].startswith("FD-"))
                    fds.append(fd["value"])
                cells.append({"sampler": name, "steps": k, "nfe": nfe, "clip": clip,
                              "fd": fds, **mean_ci(fds)})
    return cells


def format_cells(cells: list[dict[str, Any]], clips: list[str]) -> str:
    """Markdown: a row per (sampler, steps), a column per clip policy."""
    head = "| sampler | steps | NFE | " + " | ".join(clips) + " |"
    lines = [head, "|" + "---|" * (3 + len(clips))]
    rows: dict[tuple[str, int], dict[str, dict]] = {}
    for c in cells:
        rows.setdefault((c["sampler"], c["steps"]), {})[c["clip"]] = c
    for (name, k), by_clip in rows.items():
        vals = []
        for clip in clips:
            c = by_clip[clip]
            vals.append(f"{c['mean']:.1f}" + (f" ± {c['ci95']:.1f}" if c["ci95"] else ""))
        nfe = next(iter(by_clip.values()))["nfe"]
        lines.append(f"| {name} | {k} | {nfe} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        return _main(args)
    except UserError as e:
        for line in e.lines():
            print(line, file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    from evaluator.pipeline.evaluate import ensure_trained
    from evaluator.diffusion.samplers import CLIP_POLICIES, check_sampler
    from evaluator.store.checkpoints import load_trained

    samplers = [s for s in args.samplers.split(",") if s]
    clips = [c for c in args.clips.split(",") if c]
    steps, seeds = _ints(args.steps, "steps"), _ints(args.seeds, "seeds")
    if args.n < 2:
        raise UserError("--n: FD needs at least 2 samples")
    bad = [c for c in clips if c not in CLIP_POLICIES]
    if bad:
        raise UserError(f"--clips: unknown policy {bad[0]!r} (choose from {CLIP_POLICIES})")
    all_cells = []
    for path in args.specs:
        if not Path(path).is_file():
            raise UserError(f"{path}: no such spec file")
        spec = load(path, args)
        for s in samplers:
            for c in clips:
                check_sampler(s, c, spec.diffusion.prediction, source="--samplers")
        run = ensure_trained(spec, args.out, args.device, progress=False)
        if run.status().get("status") != "finished":
            raise UserError(f"{path}: training {run.status().get('status')}: "
                            f"{run.status().get('reason')}")
        model, spec = load_trained(run, args.device, ema=True)
        tm = run.metrics().get("train", {})
        loss = (f"loss first/last {tm['loss_first']:.3f}/{tm['loss_last']:.3f}"
                if "loss_last" in tm else "loss not recorded")
        cells = fd_table(model, spec, samplers, steps, clips, args.n, seeds, args.device)
        t = spec.train
        print(f"\n## {spec.name}: FD-digits (lower is better), N={args.n} samples per cell "
              f"against the {spec.train.dataset} test split, noise seeds {seeds}")
        print(f"training: {t.steps} steps, batch {t.batch_size}, lr {t.lr}, seed {t.seed}, "
              f"EMA {t.ema}, {loss} (run {run.path})")
        print(f"sampling: {spec.diffusion.schedule} T={spec.diffusion.timesteps}, "
              f"prediction {spec.diffusion.prediction}, trailing spacing; mean ± 95% CI "
              "over seeds where there are several\n")
        print(format_cells(cells, clips))
        all_cells += [{"spec": path, "pipeline": spec.name, "run": str(run.path),
                       "train": {"steps": t.steps, "batch_size": t.batch_size, "lr": t.lr,
                                 "seed": t.seed}, "n": args.n, "seeds": seeds, **c}
                      for c in cells]
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(all_cells, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
