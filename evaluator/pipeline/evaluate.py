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

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from archspec.errors import UserError
from evaluator.measure.quality import (call_metric, feature_extractor, quality_metrics,
                                       speed_stats)
from evaluator.measure.stats import mean_ci
from evaluator.pipeline.budgets import (REFERENCE_SAMPLER, Budget, apply_budget, check_samplers,
                                        eval_settings, get_budget, sampler_plan)
from evaluator.store.atomic import write_json
from evaluator.store.rundir import RunDir

GRID_IMAGES = 64


# ---- one run --------------------------------------------------------------------------------
def evaluate_run(run: RunDir, budget: Budget, device: str = "auto",
                 progress: bool = False, reference: Any = None,
                 on_setting: Any = None) -> dict[str, Any]:
    """Sample and measure a trained run under ``budget``; stores and returns the results.

    Args:
        reference: held-out images to compare against (default: the spec's dataset,
            ``split="test"``).
        on_setting: optional ``fn(done, total, "sampler steps")`` called before each
            sampler setting (and once at the end), for surfaces that show progress.
    """
    from evaluator.device import resolve_device
    from evaluator.diffusion.processes import process_schedule
    from evaluator.store.checkpoints import load_trained

    dev = resolve_device(device)
    model, spec = load_trained(run, dev, ema=True)
    settings = eval_settings(spec, budget)
    if reference is None:
        from evaluator.data.datasets import spec_dataset
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
    for i, (sampler, steps) in enumerate(bar):
        bar.set_postfix_str(f"{sampler} {steps} steps")
        if on_setting is not None:
            on_setting(i, len(plan), f"{sampler} {steps} steps")
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
    if on_setting is not None:
        on_setting(len(plan), len(plan), "done")
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
    from evaluator.measure.registry import METRICS
    from evaluator.diffusion.samplers import sample
    from evaluator.store.snapshots import list_snapshots, load_snapshot

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
            for m in call_metric(METRICS.get("fd_kd"), {**given, "samples": res.images}):
                point[m["metric"]] = m.get("value")
                if m.get("status") not in (None, "ok"):
                    point.setdefault("reasons", {})[m["metric"]] = m.get("reason")
        curve.append(point)
    run.log(f"convergence: scored {len(curve)} snapshots with {c.sampler} {c.steps}, N={n}")
    return curve


def _sample_and_measure(run: RunDir, model: Any, schedule: Any, spec: Any, sampler: str,
                        steps: int, settings: dict, reference: Any, extractor: Any,
                        dev: Any, progress: bool) -> tuple[list[dict], float]:
    from evaluator.diffusion.samplers import sample
    from evaluator.report.images import save_grid

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
    :func:`evaluator.measure.spectral.band_errors` per seed, its log10 ratio averaged over
    the seeds; None when the spectral statistics could not be computed."""
    from evaluator.measure.spectral import band_errors

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


# ---- several specs ----------------------------------------------------------------------------
def evaluate(spec_paths: list[str | Path], budget: str = "quick", out: str | Path = "results",
             device: str = "auto", overrides: list[str] | None = None,
             progress: bool = True, reuse_eval: bool = False,
             wait: bool = True) -> list[dict[str, Any]]:
    """Train (or reuse a finished run with the same hash) and evaluate each spec
    (:func:`run_spec`; by default evaluated again even when an evaluation is stored).

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
    from evaluator.store.atomic import check_writable

    check_writable(out)
    rows: list[dict[str, Any]] = []
    for spec in specs:
        r = run_spec(spec, b, out, device=device, progress=progress, reuse_eval=reuse_eval,
                     wait=wait)
        if r.status != "finished":
            rows.append({"pipeline": spec.name, "status": r.status, "reason": r.reason,
                         "run": str(r.run.path)})
            continue
        rows += [{**x, "status": "ok", "run": str(r.run.path)} for x in r.evaluation["results"]]
    return rows


# ---- the pipeline: one spec, trained or reused, evaluated or reused ---------------------------
@dataclass
class SpecRun:
    """What :func:`run_spec` did with one spec.

    Attributes:
        run: the spec's run folder (keyed by its hash).
        status, reason, step: the run's training status after the call.
        evaluation: ``metrics.json["eval"][budget]`` when evaluated or reused, else None.
        reused_run: a finished run was found and not trained again.
        had_eval: an evaluation under the budget was stored before the call.
        evaluated: this call sampled and measured (False when reused or not asked).
        t_trained, t_evaluated: ``time.time()`` after each phase.
    """

    run: RunDir
    status: str
    reason: str | None
    step: int | None
    evaluation: dict[str, Any] | None
    reused_run: bool
    had_eval: bool
    evaluated: bool
    t_trained: float
    t_evaluated: float


def run_spec(spec: Any, budget: Budget, out: str | Path, *, device: str = "auto",
             progress: bool = False, evaluate: bool = True, reuse_eval: bool = False,
             on_step: Callable[[int, float], None] | None = None,
             on_phase: Callable[[str], None] | None = None,
             on_setting: Callable[[int, int, str], None] | None = None, wait: bool = True,
             on_wait: Callable[[str], None] | None = None,
             should_stop: Callable[[], None] | None = None) -> SpecRun:
    """Train ``spec`` (already budgeted) or reuse its run, then evaluate it or reuse that.

    The one reuse rule of the toolkit: runs are keyed by spec hash; a finished run with a
    checkpoint is never trained again (an unfinished one resumes from its checkpoint);
    a stored evaluation under ``budget.name`` is reused only with ``reuse_eval``
    (``archsearch evaluate`` and the app's jobs evaluate again; sweep trials reuse).

    Args:
        evaluate: sample and measure after training (False: training only).
        on_step: ``(step, loss)`` after every training step; may raise
            :class:`evaluator.training.loop.Cancelled`.
        on_phase: called with ``"train"`` and ``"evaluate"`` as each begins; may raise to
            stop (the run stays as it is).
        on_setting: evaluation progress, as in :func:`evaluate_run`.
        wait, on_wait, should_stop: the run folder is held exclusively while it trains and
            evaluates (:func:`evaluator.store.runlock.owning_run`); another holder is waited
            for (``on_wait``, default stderr, gets "waiting for run ... held by pid N on
            host H since T") or, with ``wait=False``,
            refused with :class:`evaluator.store.runlock.RunBusy`.

    Raises:
        evaluator.store.runlock.WriteFailed: a write failed (full disk, read-only...); the
            reason is in the run's ``status.json``.
    """
    from evaluator.store.runlock import owning_run

    run = RunDir.create(spec, out)
    with owning_run(run, f"run_spec {budget.name}", wait=wait, should_stop=should_stop,
                    **({} if on_wait is None else {"on_wait": on_wait})):
        if on_phase:
            on_phase("train")
        run, reused_run = _train_or_reuse(spec, out, device, progress, on_step)
        st, t_trained = run.status(), time.time()
        evals = run.metrics().get("eval", {})
        had = budget.name in evals
        ev, evaluated = (evals.get(budget.name) if reuse_eval else None), False
        if st.get("status") == "finished" and evaluate and ev is None:
            if on_phase:
                on_phase("evaluate")
            ev, evaluated = _evaluate_marked(run, budget, device, progress, on_setting), True
    return SpecRun(run, st.get("status"), st.get("reason"), st.get("step"), ev, reused_run,
                   had, evaluated, t_trained, time.time())


def _evaluate_marked(run: RunDir, budget: Budget, device: str, progress: bool,
                     on_setting: Callable[[int, int, str], None] | None) -> dict[str, Any]:
    """:func:`evaluate_run` with ``status.json["phase"]`` set to ``evaluating <budget>``
    meanwhile, so that others (a study's monitor, a test) can see what the holder does."""
    run.set_phase(f"evaluating {budget.name}")
    try:
        return evaluate_run(run, budget, device, progress=progress, on_setting=on_setting)
    finally:
        run.set_phase(None)


def ensure_trained(spec: Any, out: str | Path, device: str, progress: bool) -> RunDir:
    """The spec's run, trained: a finished run with the same hash is reused as is (held
    exclusively meanwhile; another holder is waited for, see :func:`run_spec`)."""
    from evaluator.store.runlock import owning_run

    run = RunDir.create(spec, out)
    with owning_run(run, "train"):
        return _train_or_reuse(spec, out, device, progress, None)[0]


def _train_or_reuse(spec: Any, out: str | Path, device: str, progress: bool,
                    on_step: Callable[[int, float], None] | None) -> tuple[RunDir, bool]:
    from evaluator.training.loop import train

    run = RunDir.create(spec, out)
    if run.status().get("status") == "finished" and run.checkpoint_file.exists():
        run.log("reused finished run")
        return run, True
    train(spec, run=run, device=device, resume=True, progress=progress, on_step=on_step)
    return run, False


