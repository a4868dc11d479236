"""First CUDA check: train, sample and score a spatial and a spectral 32x32 spec on a GPU.

For each spec (default ``tiny_unet_32`` and ``spectral_unet_32``) this goes through the
toolkit's own code only:

- training: :func:`evaluator.pipeline.evaluate.run_spec` (the real loop, bf16 autocast on
  CUDA) for ``--steps`` steps at ``--batch-size``; its ``on_step`` hook times each step
  (CUDA-synchronised) and the median of the steps after ``--warmup`` is reported;
- evaluation: the same ``run_spec`` samples the EMA model with DPM-Solver++ 20 and DDIM 50
  (``--samples`` images, noise seed 0, the spec's clip policy) and scores them with the
  registered metrics, FD-<dataset> with the in-project extractor among them (not FID);
- speed side by side (:mod:`evaluator.measure.profile`, interleaved, synchronised):
  ms per NFE of :func:`evaluator.diffusion.samplers.sample` at batch 64, and the
  profiler's fwd+bwd+AdamW step on the same batch;
- peak GPU memory (allocator peak) of the training phase and of the evaluation phase.

It prints one table (with the spectral/spatial ratios) and writes ``gpu_check.txt`` and
``gpu_check.json`` (device name, torch/CUDA versions, commit, settings, every number) to
``--out`` (default ``$OUT``, else ``./gpu_check_out``). Run it through ``gpu_check.sh``,
which installs the missing dependencies from local wheels first; see docs/gpu.md.

Smoke run on the CPU (a few minutes on 2 cores, most of it the extractor's training)::

    python benchmarks/gpu_check.py --device cpu --steps 5 --samples 8 --repeats 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # run from anywhere

from archspec.errors import UserError  # noqa: E402

SPECS = ("examples/specs/tiny_unet_32.yaml", "examples/specs/spectral_unet_32.yaml")
SAMPLERS = (("dpmsolver++", 20), ("ddim", 50))
NFE_BATCH = 64


# --------------------------------------------------------------------------- arguments
def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("specs", nargs="*", default=list(SPECS),
                   help="spec files; the first is the baseline of the ratios")
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    p.add_argument("--steps", type=int, default=200, help="training steps per spec")
    p.add_argument("--batch-size", type=int, default=64, help="training batch size")
    p.add_argument("--warmup", type=int, default=20,
                   help="training steps left out of the ms/step median")
    p.add_argument("--samples", type=int, default=512, help="N samples per sampler for FD")
    p.add_argument("--repeats", type=int, default=10,
                   help="interleaved repeats of the sampling and profiler timings")
    p.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_out",
                   help="folder for gpu_check.txt/.json (default $OUT or ./gpu_check_out)")
    p.add_argument("--runs", help="run store for the trained runs (default: a fresh temp "
                                  "folder, so every check trains)")
    return p.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """One line per problem, all at once."""
    problems = [f"--{k.replace('_', '-')}: expected an integer >= {lo}, got {v}"
                for k, lo in (("steps", 2), ("batch_size", 1), ("warmup", 0),
                              ("samples", 2), ("repeats", 1))
                if (v := getattr(args, k)) < lo]
    problems += [f"{s}: no such spec file" for s in args.specs if not Path(s).is_file()]
    if len(args.specs) < 1:
        problems.append("give at least one spec")
    if problems:
        raise UserError(problems)


def check_device(name: str) -> Any:
    """The torch device, or one line saying why not (CUDA asked for but absent)."""
    import torch

    if name.startswith("cuda") and not torch.cuda.is_available():
        built = torch.version.cuda or "no CUDA"
        raise UserError(f"--device {name}: CUDA is not available here (torch "
                        f"{torch.__version__}, built with {built}); use --device cpu for a "
                        "smoke run")
    from evaluator.device import resolve_device

    try:
        return resolve_device(name)
    except ValueError as e:
        raise UserError(f"--device: {e}") from None


# --------------------------------------------------------------------------- one spec
def load(path: str, args: argparse.Namespace) -> Any:
    """The spec at ``path`` with this check's training and evaluation settings."""
    from archspec import load_spec

    samplers = [{"name": n, "steps": [s]} for n, s in SAMPLERS]
    return load_spec(path, overrides=[
        f"train.steps={args.steps}", f"train.batch_size={args.batch_size}",
        f"evaluate.num_samples={args.samples}", "evaluate.seeds=[0]",
        f"evaluate.samplers={json.dumps(samplers)}"])


def _peak_mib(dev: Any) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None


def train_and_evaluate(spec: Any, runs: Path, dev: Any, warmup: int) -> dict[str, Any]:
    """``run_spec`` with hooks: per-step times, and the memory peak of each phase."""
    import torch

    from evaluator.pipeline.budgets import Budget
    from evaluator.pipeline.evaluate import run_spec
    from evaluator.measure.profile import device_sync

    sync = device_sync(dev) or (lambda: None)
    stamps: list[float] = []
    peaks: dict[str, float | None] = {}

    def on_step(step: int, loss: float) -> None:
        sync()
        stamps.append(time.perf_counter())

    def on_phase(phase: str) -> None:
        if phase == "evaluate":
            peaks["train"] = _peak_mib(dev)
        if dev.type == "cuda":
            sync()
            torch.cuda.reset_peak_memory_stats(dev)

    budget = Budget("gpu_check", reference=False, seeds=1)
    r = run_spec(spec, budget, runs, device=str(dev), on_step=on_step, on_phase=on_phase)
    if r.status != "finished":
        raise UserError(f"{spec.name}: training {r.status}: {r.reason}")
    peaks["evaluate"] = _peak_mib(dev)
    deltas = [(b - a) * 1e3 for a, b in zip(stamps, stamps[1:])]
    warm = deltas[min(warmup, len(deltas) - 1):]
    return {"run": r.run, "train_ms_per_step": statistics.median(warm),
            "train_steps_timed": len(warm), "peak_mib": peaks,
            "train": r.run.metrics().get("train", {}), "evaluation": r.evaluation}


def fd_of(evaluation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"dpmsolver++ 20": {"metric": "FD-patches32", "value": ..., "status": ...}}``."""
    out = {}
    for row in evaluation["results"]:
        fd = next(({"metric": k, "value": m.get("mean"), "status": m.get("status"),
                    "reason": m.get("reason"), "n": m.get("n"),
                    "extractor_sha256": m.get("weights_sha256")}
                   for k, m in row["metrics"].items() if k.startswith("FD-")), None)
        out[f"{row['sampler']} {row['steps']}"] = fd or {"metric": "FD", "value": None,
                                                         "status": "missing"}
    return out


# --------------------------------------------------------------------------- side by side
def time_side_by_side(models: dict[str, Any], specs: dict[str, Any], dev: Any,
                      batch: int, repeats: int) -> dict[str, dict[str, float]]:
    """ms per NFE of each (model, sampler) at ``NFE_BATCH``, and the profiler's train step."""
    from evaluator.diffusion.processes import process_schedule
    from evaluator.diffusion.samplers import sample
    from evaluator.measure.profile import (compare_train_steps, device_sync,
                                           interleaved_median_ms)

    fns, nfe = {}, {}
    for name, model in models.items():
        spec = specs[name]
        schedule = process_schedule(spec)
        shape = (spec.image.channels, spec.image.size, spec.image.size)
        for sampler, steps in SAMPLERS:
            key = (name, f"{sampler} {steps}")

            def call(model=model, schedule=schedule, spec=spec, shape=shape,
                     sampler=sampler, steps=steps, key=key):
                res = sample(model, schedule, sampler=sampler, steps=steps, n=NFE_BATCH,
                             shape=shape, seed=0, clip=spec.evaluate.clip,
                             prediction=spec.diffusion.prediction, device=dev,
                             batch_size=NFE_BATCH)
                nfe[key] = res.nfe
            fns[key] = call
    ms = interleaved_median_ms(fns, repeats, warmup=1, sync=device_sync(dev))
    out: dict[str, dict[str, float]] = {n: {} for n in models}
    for (name, setting), v in ms.items():
        out[name][f"ms_per_nfe {setting}"] = v / nfe[(name, setting)]
    image = next(iter(specs.values())).image
    step = compare_train_steps(models, (image.channels, image.size, image.size),
                               batch_size=batch, repeats=repeats, device=str(dev))
    for name, v in step.items():
        out[name]["profile_step_ms"] = v
    return out


# --------------------------------------------------------------------------- report
def environment(dev: Any) -> dict[str, Any]:
    import torch

    def git(*a: str) -> str | None:
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            return None

    return {"device": (torch.cuda.get_device_name(dev) if dev.type == "cuda"
                       else f"cpu ({torch.get_num_threads()} threads)"),
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if dev.type == "cuda" else None,
            "python": sys.version.split()[0], **_commit(git)}


def _commit(git: Any) -> dict[str, Any]:
    """The checked-out commit; where the tree was copied without .git (the lent GPU
    machine), the caller names it in ``$GPU_CHECK_COMMIT``."""
    head = git("rev-parse", "HEAD")
    if head:
        return {"commit": head, "commit_source": "git",
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    given = os.environ.get("GPU_CHECK_COMMIT")
    return {"commit": given, "commit_source": "GPU_CHECK_COMMIT" if given else None,
            "dirty": None}


COLUMNS = (("train ms/step", "train_ms_per_step"), ("profile ms/step", "profile_step_ms"),
           *((f"ms/NFE {s} {n}", f"ms_per_nfe {s} {n}") for s, n in SAMPLERS),
           ("peak train MiB", "peak_train_mib"), ("peak eval MiB", "peak_eval_mib"),
           *((f"FD {s} {n}", f"fd {s} {n}") for s, n in SAMPLERS))
RATIO_KEYS = ("train_ms_per_step", "profile_step_ms",
              *(f"ms_per_nfe {s} {n}" for s, n in SAMPLERS))


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"
    return str(v)


def table(rows: dict[str, dict[str, Any]], env: dict[str, Any], args: argparse.Namespace,
          fd_name: str) -> str:
    names = list(rows)
    lines = [f"gpu_check on {env['device']} (torch {env['torch']}, CUDA {env['cuda']}, "
             f"commit {(env['commit'] or '?')[:10]}{'+dirty' if env['dirty'] else ''})",
             f"train: {args.steps} steps at batch {args.batch_size} (median of the steps "
             f"after {args.warmup}); ms/NFE and profile at batch {NFE_BATCH}/"
             f"{args.batch_size}, median of {args.repeats} interleaved repeats; "
             f"FD = {fd_name} (in-project extractor, not FID), N={args.samples}, noise seed 0",
             ""]
    head = ["pipeline", *(c for c, _ in COLUMNS)]
    body = [[n, *(_fmt(rows[n].get(k)) for _, k in COLUMNS)] for n in names]
    if len(names) > 1:
        for other in names[1:]:
            body.append([f"{other}/{names[0]}", *(
                _fmt(rows[other][k] / rows[names[0]][k]) if k in RATIO_KEYS
                and rows[names[0]].get(k) else "" for _, k in COLUMNS)])
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    for r in [head, *body]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


# --------------------------------------------------------------------------- main
def run(args: argparse.Namespace) -> dict[str, Any]:
    check_args(args)
    dev = check_device(args.device)
    from evaluator.store.checkpoints import load_trained

    runs = Path(args.runs or tempfile.mkdtemp(prefix="gpu_check_runs-"))
    specs = {s.name: s for s in (load(p, args) for p in args.specs)}
    rows: dict[str, dict[str, Any]] = {}
    models, details = {}, {}
    for name, spec in specs.items():
        print(f"[gpu_check] {name}: train {args.steps} steps, evaluate", flush=True)
        res = train_and_evaluate(spec, runs, dev, args.warmup)
        fds = fd_of(res["evaluation"])
        rows[name] = {"train_ms_per_step": res["train_ms_per_step"],
                      "peak_train_mib": res["peak_mib"].get("train"),
                      "peak_eval_mib": res["peak_mib"].get("evaluate"),
                      **{f"fd {k}": v["value"] for k, v in fds.items()}}
        details[name] = {"fd": fds, "train": res["train"], "run": str(res["run"].path),
                         "train_steps_timed": res["train_steps_timed"]}
        models[name] = load_trained(res["run"], dev, ema=True)[0]
    print("[gpu_check] timing sampling and train steps side by side", flush=True)
    for name, v in time_side_by_side(models, specs, dev, args.batch_size,
                                     args.repeats).items():
        rows[name].update(v)
    env = environment(dev)
    fd_name = next((f["metric"] for d in details.values() for f in d["fd"].values()), "FD")
    text = table(rows, env, args, fd_name)
    return {"text": text, "environment": env, "rows": rows, "details": details,
            "settings": {k: v for k, v in vars(args).items() if k not in ("out", "runs")}
            | {"samplers": [list(s) for s in SAMPLERS], "nfe_batch": NFE_BATCH,
               "noise_seed": 0}}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        result = run(args)
    except UserError as e:
        for line in str(e).splitlines() or ["gpu_check: failed"]:
            print(f"gpu_check: {line}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.txt").write_text(result["text"] + "\n")
    (out / "gpu_check.json").write_text(json.dumps(
        {k: v for k, v in result.items() if k != "text"}, indent=2, default=str) + "\n")
    print(result["text"])
    print(f"[gpu_check] wrote {out / 'gpu_check.txt'} and {out / 'gpu_check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
