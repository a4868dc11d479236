"""Evaluation orchestration: train (or reuse) each spec's run, sample, measure, compare.

Fair comparison rules: every sampler of every pipeline draws the same number of samples
from the same initial noise seeds with the same clip policy (the spec's
``evaluate.clip``); DDPM at the full number of training timesteps is always added as the
reference sampler. Every reported number carries its N, seeds and sampler settings; with
several seeds a metric is reported as mean +- 95% CI (Student t).

Budgets (``quick`` must keep ``make demo``, three 8x8 digit pipelines, under ten minutes
on two CPU cores, training included):

=========  ======================  ===========  ===============================  =======
budget     training                samples N    sampler steps                    seeds
=========  ======================  ===========  ===============================  =======
quick      steps min(spec, 600),   min(spec,    per sampler the 2 smallest       first 1
           batch min(spec, 64)     128)         counts <= 20, + DDPM at T
full       as in the spec          as in spec   as in the spec, + DDPM at T      all
=========  ======================  ===========  ===============================  =======

Why these numbers: on two idle CPU cores the 0.7M-parameter ``tiny_unet_8`` trains at
about 11 steps/s at batch 64 (the spectral and hybrid UNets at 7-8), and the DDPM
reference costs T (1000) model calls per batch of N samples, about 45 s at N=128. The
three demo pipelines then take about 7 minutes in all (measured: 7m11s). FD at N=128 is
biased upwards: compare quick numbers with each other (same N everywhere), never with
full-budget or published values.

The quick budget changes ``train.steps``, so its run has its own hash and folder; a full
evaluation never reuses a quick run's weights. Evaluation settings are not part of the
training run: results are stored under ``metrics.json["eval"][<budget>]``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archspec.errors import UserError
from evaluator.runs import RunDir, write_json

REFERENCE_SAMPLER = "ddpm"
GRID_IMAGES = 64


@dataclass(frozen=True)
class Budget:
    """How much of a spec's declared training/evaluation a budget runs (None = all)."""

    name: str
    train_steps: int | None = None
    batch_size: int | None = None
    num_samples: int | None = None
    steps_per_sampler: int | None = None
    max_sampler_steps: int | None = None
    seeds: int | None = None
    reference: bool = True  # add DDPM at the full T (the fair-comparison reference)


BUDGETS = {
    "quick": Budget("quick", train_steps=600, batch_size=64, num_samples=128,
                    steps_per_sampler=2, max_sampler_steps=20, seeds=1),
    "full": Budget("full"),
}


def get_budget(name: str) -> Budget:
    try:
        return BUDGETS[name]
    except KeyError:
        raise UserError(f"unknown budget {name!r} (choose from {', '.join(BUDGETS)})") from None


def apply_budget(spec: Any, budget: Budget) -> Any:
    """The spec a budget trains: steps and batch size capped (a new hash when changed)."""
    overrides = []
    if budget.train_steps is not None and spec.train.steps > budget.train_steps:
        overrides.append(f"train.steps={budget.train_steps}")
    if budget.batch_size is not None and spec.train.batch_size > budget.batch_size:
        overrides.append(f"train.batch_size={budget.batch_size}")
    if not overrides:
        return spec
    from archspec import canonical, spec_from_dict

    return spec_from_dict(canonical(spec), overrides, source=spec.validated.source)


def sampler_plan(spec: Any, budget: Budget) -> list[tuple[str, int]]:
    """(sampler, steps) pairs to evaluate; the DDPM full-T reference comes last (a
    screening budget may leave it out with ``reference=False``)."""
    plan: list[tuple[str, int]] = []
    for s in spec.evaluate.samplers:
        steps = sorted(set(s.steps))
        if budget.max_sampler_steps is not None:
            steps = [n for n in steps if n <= budget.max_sampler_steps] or steps[:1]
        if budget.steps_per_sampler is not None:
            steps = steps[: budget.steps_per_sampler]
        plan += [(s.name, n) for n in steps if (s.name, n) not in plan]
    ref = (REFERENCE_SAMPLER, spec.diffusion.timesteps)
    return [p for p in plan if p != ref] + ([ref] if budget.reference else [])


def eval_settings(spec: Any, budget: Budget) -> dict[str, Any]:
    e = spec.evaluate
    n = min(e.num_samples, budget.num_samples or e.num_samples)
    seeds = list(e.seeds)[: budget.seeds or len(e.seeds)]
    return {"budget": budget.name, "num_samples": n, "seeds": seeds, "clip": e.clip,
            "plan": [list(p) for p in sampler_plan(spec, budget)]}


def check_samplers(spec: Any, budget: Budget) -> None:
    """Raise :class:`UserError` for unknown samplers before anything is trained."""
    from evaluator.samplers import SAMPLERS

    bad = [name for name, _ in sampler_plan(spec, budget) if name not in SAMPLERS]
    if bad:
        from blocks.registry import suggest
        raise UserError([f"evaluate.samplers: unknown sampler {b!r}"
                         f"{suggest(b, SAMPLERS.names())}" for b in bad], spec.validated.source)


# ---- statistics -----------------------------------------------------------------------------
def mean_ci(values: list[float], level: float = 0.95) -> dict[str, Any]:
    """Mean and the half-width of its Student-t confidence interval (None for one value)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return {"mean": None, "ci95": None, "n_seeds": 0}
    n = len(vals)
    mean = sum(vals) / n
    if n < 2:
        return {"mean": mean, "ci95": None, "n_seeds": 1}
    from scipy.stats import t as student_t

    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
    half = float(student_t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "ci95": half, "n_seeds": n}


# ---- metrics --------------------------------------------------------------------------------
def _call_metric(metric: Any, given: dict[str, Any]) -> list[dict[str, Any]]:
    """Run a registered metric on the inputs it declares; a crash becomes an ``error``
    result, not a lost evaluation."""
    args = [given[i] for i in metric.inputs if i != "extractor"]
    kwargs = {"extractor": given["extractor"]} if "extractor" in metric.inputs else {}
    try:
        out = metric.factory(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - one broken metric must not hide the others
        return [{"metric": metric.name, "value": None, "status": "error",
                 "reason": f"{type(e).__name__}: {e}"}]
    return out if isinstance(out, list) else [out]


def quality_metrics(samples: Any, reference: Any, extractor: Any = None
                    ) -> list[dict[str, Any]]:
    """Every registered metric with ``evaluate=True``, in registry order, on the inputs it
    declares (see :class:`evaluator.metrics.Metric`).

    Args:
        samples: (N, C, H, W) in [-1, 1].
        reference: held-out data (``ImageData`` or tensor) the samples are compared with.
        extractor: the in-project feature extractor (trained on the training split), or
            the exception that prevented it.
    """
    from evaluator.metrics import METRICS

    given = {"samples": samples, "reference": getattr(reference, "images", reference),
             "reference_data": reference, "extractor": extractor}
    results = []
    for _, metric in METRICS.items():
        if not metric.evaluate:
            continue
        if "extractor" in metric.inputs and isinstance(extractor, Exception):
            # never fall back to an extractor fit on the test set
            results.append({"metric": metric.name, "value": None, "status": "error",
                            "reason": f"feature extractor unavailable: {extractor}"})
            continue
        results += _call_metric(metric, given)
    return results


def metric_columns(rows: list[dict[str, Any]]) -> list[str]:
    """Table columns, from the metric registry: each evaluated metric's declared columns
    (``<dataset>`` resolved from the rows), in registry order, where some row has a value."""
    from evaluator.metrics import METRICS

    names = list(dict.fromkeys(n for r in rows for n in r.get("metrics", {})))
    valued = {n for r in rows for n, m in r.get("metrics", {}).items()
              if m.get("mean") is not None}
    cols: list[str] = []
    for _, metric in METRICS.items():
        for col in metric.columns if metric.evaluate else ():
            prefix, _, suffix = col.partition("<dataset>")
            found = ([n for n in names if n.startswith(prefix) and n.endswith(suffix)]
                     if "<dataset>" in col else [col])
            cols += [n for n in found if n in valued and n not in cols]
    return cols


def feature_extractor(dataset: str, spec: Any = None, progress: bool = False) -> Any:
    """The in-project extractor for ``dataset`` (trained once on its training split, cached),
    or the exception that prevented it, which FD/KD then report as their error. With
    ``spec``, the split is read as the spec says (``train.data_root``, image size)."""
    try:
        from evaluator.datasets import load_dataset, spec_dataset
        from evaluator.metrics.features import extractor_for
        data = (spec_dataset(spec, "train") if spec is not None
                else load_dataset(dataset, split="train"))
        return extractor_for(data, progress=progress)
    except Exception as e:  # noqa: BLE001 - recorded as the FD/KD result
        return e


def speed_stats(model: Any, spec: Any, device: Any) -> dict[str, Any]:
    """Parameter count and forward FLOPs per sample (torch's FlopCounterMode, if it can)."""
    import torch

    from evaluator.profile import count_flops

    n_params = sum(p.numel() for p in model.parameters())
    try:
        c, s = spec.image.channels, spec.image.size
        x = torch.zeros(1, c, s, s, device=device)
        t = torch.zeros(1, dtype=torch.long, device=device)
        flops = count_flops(model, x, t)
    except Exception:  # noqa: BLE001 - FLOPs are a nicety; complex ops may be uncountable
        flops = None
    return {"params": n_params, "flops_per_sample": flops,
            "flops_note": "torch.utils.flop_counter (matmul/conv only; FFTs not counted)"}


# ---- one run --------------------------------------------------------------------------------
def evaluate_run(run: RunDir, budget: Budget, device: str = "auto",
                 progress: bool = False, reference: Any = None) -> dict[str, Any]:
    """Sample and measure a trained run under ``budget``; stores and returns the results.

    Args:
        reference: held-out images to compare against (default: the spec's dataset,
            ``split="test"``).
    """
    from evaluator.device import resolve_device
    from evaluator.processes import process_schedule
    from evaluator.train import load_trained

    dev = resolve_device(device)
    model, spec = load_trained(run, dev, ema=True)
    settings = eval_settings(spec, budget)
    if reference is None:
        from evaluator.datasets import spec_dataset
        reference = spec_dataset(spec, split="test")
    extractor = feature_extractor(spec.train.dataset, spec, progress)
    schedule = process_schedule(spec)      # the spec's forward process
    t0 = time.perf_counter()
    rows, spectra, metric_s = [], {}, 0.0
    plan = sampler_plan(spec, budget)
    from tqdm.auto import tqdm

    # The outer bar counts sampler settings (the DDPM-T reference is the last and longest);
    # each setting's own bar counts its model calls over all batches.
    bar = tqdm(plan, desc=f"evaluate {spec.name}", unit="setting", disable=not progress)
    for sampler, steps in bar:
        bar.set_postfix_str(f"{sampler} {steps} steps")
        per_seed, m_s = _sample_and_measure(run, model, schedule, spec, sampler, steps,
                                            settings, reference, extractor, dev, progress)
        metric_s += m_s
        rows.append(_aggregate(spec, sampler, steps, per_seed, settings))
        be = band_error_row(per_seed)
        if be:
            rows[-1]["band_error"] = be
        sp = _spectra_of(per_seed[0]["metrics"])
        if sp:
            spectra.setdefault("data", sp["data"])
            spectra[f"{sampler}_{steps}"] = sp["samples"]
    train_m = run.metrics().get("train", {})
    conv = (convergence_curve(run, spec, schedule, settings, reference, extractor, dev,
                              progress) if spec.evaluate.convergence is not None else None)
    out = {"settings": settings, "results": rows,
           "speed": {**speed_stats(model, spec, dev),
                     "train_steps_per_second": train_m.get("steps_per_second"),
                     "device": str(dev)},
           "timing": {"eval_seconds": time.perf_counter() - t0, "metric_seconds": metric_s,
                      "train_seconds": train_m.get("seconds"),
                      "metric_fraction_of_train": (metric_s / train_m["seconds"]
                                                   if train_m.get("seconds") else None)}}
    if conv is not None:
        out["convergence"] = conv
    evals = run.metrics().get("eval", {})
    evals[budget.name] = out
    run.update_metrics("eval", evals)
    if spectra:
        write_json(run.spectra_file, spectra)
    run.log(f"evaluated ({budget.name}): {len(rows)} sampler settings, "
            f"{out['timing']['eval_seconds']:.1f}s")
    return out


def convergence_curve(run: RunDir, spec: Any, schedule: Any, settings: dict, reference: Any,
                      extractor: Any, dev: Any, progress: bool = False) -> list[dict[str, Any]]:
    """FD-<dataset> of each EMA snapshot kept along training (``evaluate.convergence``).

    Every snapshot is sampled with the same cheap sampler, N, noise seed and clip policy,
    so the curve shows training progress only. N is capped by the budget's N.

    Returns:
        ``[{step, FD-<dataset>, KD-<dataset>, n, seed, sampler, steps, clip, settings}]``
        by step; a metric that could not be computed is None, its reason in ``reasons``.
    """
    from archspec import build_model
    from evaluator.metrics import METRICS
    from evaluator.samplers import sample
    from evaluator.snapshots import list_snapshots, load_snapshot

    c, want = spec.evaluate.convergence, run.hash
    n = min(c.num_samples, settings["num_samples"])
    shape = (spec.image.channels, spec.image.size, spec.image.size)
    given = {"reference": getattr(reference, "images", reference), "reference_data": reference,
             "extractor": extractor}
    curve = []
    for step, path in list_snapshots(run):
        snap = load_snapshot(path)
        if snap["spec_hash"] != want:
            continue  # not this run's (a copied folder): never score foreign weights
        model = build_model(spec)
        model.load_state_dict(snap["ema"])
        model = model.to(dev).eval()
        res = sample(model, schedule, sampler=c.sampler, steps=c.steps, n=n, shape=shape,
                     seed=c.seed, clip=settings["clip"], prediction=spec.diffusion.prediction,
                     device=dev, progress=False)
        point = {"step": step, "n": n, "seed": c.seed, "sampler": c.sampler, "steps": c.steps,
                 "clip": settings["clip"],
                 "settings": {k: v for k, v in res.settings.items() if k != "seed"}}
        if isinstance(extractor, Exception):
            point["reasons"] = {"FD": f"feature extractor unavailable: {extractor}"}
        else:
            for m in _call_metric(METRICS.get("fd_kd"), {**given, "samples": res.images}):
                point[m["metric"]] = m.get("value")
                if m.get("status") not in (None, "ok"):
                    point.setdefault("reasons", {})[m["metric"]] = m.get("reason")
        curve.append(point)
    run.log(f"convergence: scored {len(curve)} snapshots with {c.sampler} {c.steps}, N={n}")
    return curve


def _sample_and_measure(run: RunDir, model: Any, schedule: Any, spec: Any, sampler: str,
                        steps: int, settings: dict, reference: Any, extractor: Any,
                        dev: Any, progress: bool) -> tuple[list[dict], float]:
    from evaluator.samplers import sample

    per_seed, metric_s = [], 0.0
    shape = (spec.image.channels, spec.image.size, spec.image.size)
    for i, seed in enumerate(settings["seeds"]):
        res = sample(model, schedule, sampler=sampler, steps=steps,
                     n=settings["num_samples"], shape=shape, seed=seed, clip=settings["clip"],
                     prediction=spec.diffusion.prediction, device=dev, progress=progress)
        if i == 0:
            save_grid(res.images[:GRID_IMAGES],
                      run.eval_grid_file(settings["budget"], sampler, steps))
        t0 = time.perf_counter()
        metrics = quality_metrics(res.images, reference, extractor)
        metric_s += time.perf_counter() - t0
        per_seed.append({"seed": seed, "nfe": res.nfe, "ms_per_nfe": res.ms_per_nfe,
                         "settings": res.settings, "metrics": metrics})
    return per_seed, metric_s


def _aggregate(spec: Any, sampler: str, steps: int, per_seed: list[dict],
               settings: dict) -> dict[str, Any]:
    """One row: every metric's value per seed and mean +- CI, with N, seeds, settings."""
    metrics: dict[str, dict[str, Any]] = {}
    for rec in per_seed:
        for m in rec["metrics"]:
            e = metrics.setdefault(m["metric"], {"values": [], "status": m.get("status"),
                                                 "reason": m.get("reason"),
                                                 "n": m.get("n"),
                                                 "extractor": m.get("extractor"),
                                                 "weights_sha256": m.get("weights_sha256")})
            e["values"].append(m.get("value"))
    for e in metrics.values():
        e.update(mean_ci(e["values"]))
    first = per_seed[0]
    return {"pipeline": spec.name, "sampler": sampler, "steps": steps, "nfe": first["nfe"],
            "n": settings["num_samples"], "seeds": [r["seed"] for r in per_seed],
            "ms_per_nfe": mean_ci([r["ms_per_nfe"] for r in per_seed]),
            "reference": (sampler, steps) == (REFERENCE_SAMPLER, spec.diffusion.timesteps),
            "settings": {k: v for k, v in first["settings"].items() if k != "seed"},
            "metrics": metrics}


def band_error_row(per_seed: list[dict]) -> dict[str, Any] | None:
    """The per-radial-band error of one sampler setting (``metrics.json``, each result row):
    :func:`evaluator.metrics.spectral.band_errors` per seed, its log10 ratio averaged over
    the seeds; None when the spectral statistics could not be computed."""
    from evaluator.metrics.spectral import band_errors

    per = []
    for rec in per_seed:
        sp = _spectra_of(rec["metrics"])
        if sp and "band_energy" in sp["samples"]:
            per.append((rec["seed"], band_errors(sp["samples"], sp["data"])))
    if not per:
        return None
    ratios = [e["log10_ratio"] for _, e in per]
    mean = [sum(c) / len(c) for c in zip(*ratios)]
    first = per[0][1]
    return {"band_edges": first["band_edges"], "log10_ratio": mean,
            "abs_error": [abs(v) for v in mean], "per_seed": [e["log10_ratio"] for _, e in per],
            "seeds": [s for s, _ in per], "n": first["n"], "reference_n": first["reference_n"],
            "unit": "log10(samples / data) of mean energy per image in the band"}


def _spectra_of(metrics: list[dict]) -> dict | None:
    for m in metrics:
        details = m.get("details") if m.get("status") == "ok" else None
        if details and "samples" in details and "data" in details:
            return {"samples": details["samples"], "data": details["data"]}
    return None


def save_grid(images: Any, path: Path, nrow: int = 8) -> Path:
    """Write images in [-1, 1] as one PNG grid (atomically)."""
    from torchvision.utils import save_image

    from evaluator.runs import atomic_write

    grid = (images.float().clamp(-1, 1) + 1) / 2
    atomic_write(Path(path), lambda f: save_image(grid, f, nrow=nrow, padding=1, format="png"))
    return Path(path)


# ---- several specs ----------------------------------------------------------------------------
def evaluate(spec_paths: list[str | Path], budget: str = "quick", out: str | Path = "results",
             device: str = "auto", overrides: list[str] | None = None,
             progress: bool = True) -> list[dict[str, Any]]:
    """Train (or reuse a finished run with the same hash) and evaluate each spec.

    Returns the comparison rows of every spec (see :func:`_aggregate`), failed trainings
    as rows with ``status: failed`` and the reason.
    """
    from archspec import load_spec

    b = get_budget(budget)
    specs = []
    for p in spec_paths:
        if not Path(p).is_file():
            raise UserError(f"{p}: no such spec file")
        spec = apply_budget(load_spec(p, overrides=list(overrides or [])), b)
        check_samplers(spec, b)
        specs.append(spec)
    rows: list[dict[str, Any]] = []
    for spec in specs:
        run = ensure_trained(spec, out, device, progress)
        st = run.status()
        if st.get("status") != "finished":
            rows.append({"pipeline": spec.name, "status": st.get("status"),
                         "reason": st.get("reason"), "run": str(run.path)})
            continue
        res = evaluate_run(run, b, device, progress=progress)
        rows += [{**r, "status": "ok", "run": str(run.path)} for r in res["results"]]
    return rows


def ensure_trained(spec: Any, out: str | Path, device: str, progress: bool) -> RunDir:
    """The spec's run, trained: a finished run with the same hash is reused as is."""
    from evaluator.train import train

    run = RunDir.create(spec, out)
    if run.status().get("status") == "finished" and run.checkpoint_file.exists():
        run.log("reused finished run")
        return run
    train(spec, run=run, device=device, resume=True, progress=progress)
    return run


def format_table(rows: list[dict[str, Any]]) -> str:
    """Plain-text comparison table (one line per pipeline x sampler x steps); its metric
    columns come from the registry (:func:`metric_columns`)."""
    mcols = metric_columns(rows)
    cols = ["pipeline", "sampler", "steps", "NFE", "N", *mcols, "ms/NFE"]
    lines = [cols]
    for r in rows:
        if r.get("status") not in (None, "ok"):
            lines.append([r["pipeline"], "-", "-", "-", "-", f"{r['status']}: {r.get('reason')}"]
                         + [""] * (len(cols) - 6))
            continue
        m = r["metrics"]
        lines.append([r["pipeline"], r["sampler"] + (" (ref)" if r["reference"] else ""),
                      str(r["steps"]), str(r["nfe"]), str(r["n"]),
                      *[fmt_metric(m.get(c)) for c in mcols], fmt_metric(r["ms_per_nfe"])])
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(cols))]
    table = "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()
                      for row in lines)
    return "\n".join([table, *settings_notes(rows), *missing_notes(rows)])


def missing_notes(rows: list[dict[str, Any]]) -> list[str]:
    """One line per metric that no row could compute, with its first reason."""
    out: dict[str, str] = {}
    valued = {n for r in rows for n, m in r.get("metrics", {}).items()
              if m.get("mean") is not None}
    for r in rows:
        for n, m in r.get("metrics", {}).items():
            if n not in valued and n not in out:
                out[n] = f"{n}: {m.get('reason') or m.get('status')}"
    return list(out.values())


def settings_notes(rows: list[dict[str, Any]]) -> list[str]:
    """One line per distinct sampling setting shared by the rows: N, seeds, clip, spacing."""
    seen: dict[tuple, list[str]] = {}
    for r in rows:
        if r.get("status") not in (None, "ok"):
            continue
        st = r.get("settings", {})
        key = (r.get("n"), tuple(r.get("seeds", ())), st.get("clip"), st.get("timestep_spacing"),
               st.get("prediction"))
        seen.setdefault(key, [])
        if r["pipeline"] not in seen[key]:
            seen[key].append(r["pipeline"])
    return [f"{', '.join(p)}: N={n} per row, seeds {list(seeds)}, clip policy {clip}, "
            f"timestep spacing {spacing}, prediction {pred}; full scheduler configs in each "
            f"run's metrics.json" for (n, seeds, clip, spacing, pred), p in seen.items()]


def fmt_metric(m: dict | None) -> str:
    """``1.234 +- 0.056`` / ``1.234`` / ``unavailable`` / ``-``."""
    if not m:
        return "-"
    if m.get("mean") is None:
        return m.get("status") or "-"
    s = f"{m['mean']:.4g}"
    return s + (f" +- {m['ci95']:.2g}" if m.get("ci95") is not None else "")
