"""Quality against NFE, and training time as a second axis (checkpoint choice).

:func:`nfe_sweep` samples every run at several step counts with one sampler from the same
initial noise (:func:`evaluator.diffusion.samplers.initial_noise` of ``seed``: the first ``n`` draws
are identical for every step count and run) and scores each with the in-project
``FD-<dataset>``/``KD-<dataset>`` (never called FID). Every point is cached in the run's
folder (``nfe_sweep.json``) under its full settings, so asking again costs only a file read.
The cache is the only file this module writes, merged and replaced atomically under its own
brief lock (never the run lock: the app's views must not wait for a training), so two
processes sweeping one run at once keep both their points.

:func:`models_for` loads, per run, either the final EMA weights or one of the EMA snapshots
kept along training (``evaluate.convergence``), as a model cache that
:func:`evaluator.pipeline.side_by_side.sample_side_by_side` takes; :func:`checkpoint_options` and
:func:`convergence_points` list what can be chosen and the convergence curve to show.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from archspec.errors import UserError
from evaluator.store.rundir import RunDir
from evaluator.store.atomic import read_json, update_json

CACHE_FILE = "nfe_sweep.json"
FINAL = "final"


# ---- checkpoints ------------------------------------------------------------------------
def checkpoint_options(run: RunDir) -> list[tuple[str, str]]:
    """(label, value) of what a panel can show: the final EMA weights, then each snapshot
    by step (value ``"final"`` or the step as text)."""
    from evaluator.store.snapshots import list_snapshots

    total = run.status().get("step")
    out = [(f"final (step {total})" if total else "final", FINAL)]
    out += [(f"snapshot step {s}", str(s)) for s, _ in list_snapshots(run)]
    return out


def convergence_points(run: RunDir) -> dict[str, Any]:
    """The stored convergence curve: ``{"metric", "points": [(step, value)], "n", "seed",
    "sampler", "steps"}`` (empty points when the run has none)."""
    from evaluator.store.queries import best_eval

    curve = (best_eval(run)[1] or {}).get("convergence") or []
    metric = next((k for p in curve for k in p if k.startswith("FD-")), None)
    pts = [(p["step"], p.get(metric)) for p in curve if metric and p.get(metric) is not None]
    first = curve[0] if curve else {}
    return {"metric": metric, "points": pts, "n": first.get("n"), "seed": first.get("seed"),
            "sampler": first.get("sampler"), "steps": first.get("steps")}


def _snapshot_model(run: RunDir, step: int, device: str) -> tuple[Any, Any]:
    from archspec import build_model
    from evaluator.store.snapshots import list_snapshots, load_snapshot

    path = dict(list_snapshots(run)).get(step)
    if path is None:
        raise UserError(f"{run.path.name}: no snapshot at step {step} "
                        f"(have: {[s for s, _ in list_snapshots(run)] or 'none'})")
    snap = load_snapshot(path)
    if snap["spec_hash"] != run.hash:
        raise UserError(f"{path}: snapshot of another spec ({snap['spec_hash']}); refused")
    spec = run.load_spec()
    model = build_model(spec)
    model.load_state_dict(snap["ema"])
    return model.to(device).eval(), spec


def models_for(run_paths: list[str], checkpoints: list[str | None] | None, device: str,
               cache: dict[str, Any]) -> dict[str, Any]:
    """``{resolved run path: (model, spec)}`` with each run's chosen checkpoint (``"final"``,
    None, or a snapshot step), loaded once into ``cache`` and reused."""
    from evaluator.store.checkpoints import load_trained

    chosen = list(checkpoints or [])
    out = {}
    for i, p in enumerate(run_paths):
        run = RunDir.open(p)
        key = str(run.path.resolve())
        ck = chosen[i] if i < len(chosen) else None
        if ck in (None, "", FINAL):
            if key not in cache:
                cache[key] = load_trained(run, device, ema=True)
            out[key] = cache[key]
            continue
        try:
            step = int(ck)
        except ValueError:
            raise UserError(f"checkpoint {ck!r}: expected 'final' or a snapshot step") from None
        skey = f"{key}@{step}"
        if skey not in cache:
            cache[skey] = _snapshot_model(run, step, device)
        out[key] = cache[skey]
    return out


# ---- NFE sweep --------------------------------------------------------------------------
def _key(run: RunDir, sampler: str, steps: int, seed: int, n: int, clip: str,
         checkpoint: str) -> str:
    # The final weights change when a run is resumed, so its step is part of the key.
    at = f"{FINAL}@{run.status().get('step')}" if checkpoint == FINAL else checkpoint
    return json.dumps({"sampler": sampler, "steps": steps, "seed": seed, "n": n, "clip": clip,
                       "checkpoint": at}, sort_keys=True)


def _scorer(spec: Any, memo: dict) -> tuple[Any, Any]:
    """(reference test data, feature extractor or its exception) for the spec's data."""
    from evaluator.data.datasets import spec_dataset
    from evaluator.measure.quality import feature_extractor

    k = (spec.train.dataset, spec.image.size, spec.image.channels)
    if k not in memo:
        memo[k] = (spec_dataset(spec, split="test"),
                   feature_extractor(spec.train.dataset, spec))
    return memo[k]


def _score(images: Any, spec: Any, memo: dict) -> dict[str, Any]:
    from evaluator.measure.quality import call_metric
    from evaluator.measure.registry import METRICS

    reference, extractor = _scorer(spec, memo)
    if isinstance(extractor, Exception):
        return {"reasons": {"FD": f"feature extractor unavailable: {extractor}"}}
    out: dict[str, Any] = {}
    given = {"samples": images, "reference": reference.images, "reference_data": reference,
             "extractor": extractor}
    for m in call_metric(METRICS.get("fd_kd"), given):
        out[m["metric"]] = m.get("value")
        if m.get("status") not in (None, "ok"):
            out.setdefault("reasons", {})[m["metric"]] = m.get("reason")
    return out


def nfe_sweep(run_paths: list[str], *, sampler: str = "ddim", steps: list[int],
              seed: int = 0, n: int = 64, clip: str | None = None, device: str = "cpu",
              checkpoints: list[str | None] | None = None,
              models: dict[str, Any] | None = None) -> dict[str, Any]:
    """FD/KD of every run at every step count, the same noise for all (cached per run).

    Returns ``{"runs": [{"run", "hash", "path", "checkpoint", "points": [{"steps", "nfe",
    "FD-<ds>", "KD-<ds>", "reasons"?, "cached"}]}], "sampler", "seed", "n", "clip",
    "metric", "seconds"}``.

    Raises:
        UserError: no runs or step counts, differing image shapes, a bad sampler/clip.
    """
    from evaluator.diffusion.processes import process_schedule
    from evaluator.diffusion.samplers import SAMPLERS, sample

    if not run_paths or not steps:
        raise UserError("choose at least one run and one step count")
    if sampler not in SAMPLERS:
        raise UserError(f"unknown sampler {sampler!r} (known: {SAMPLERS.names()})")
    t0 = time.perf_counter()
    chosen = list(checkpoints or [])
    loaded = models_for(list(run_paths), chosen, device, models if models is not None else {})
    shapes = {(s.image.channels, s.image.size, s.image.size) for _, s in loaded.values()}
    if len(shapes) > 1:
        raise UserError(f"runs have different image shapes {sorted(shapes)}")
    shape = shapes.pop()
    memo: dict = {}
    out, metric = [], None
    for i, p in enumerate(run_paths):
        run = RunDir.open(p)
        model, spec = loaded[str(run.path.resolve())]
        ck = str(chosen[i]) if i < len(chosen) and chosen[i] not in (None, "") else FINAL
        clip_ = clip or spec.evaluate.clip
        cache_path = run.path / CACHE_FILE
        cache = read_json(cache_path, default={}) or {}
        points, fresh = [], False
        for s in steps:
            key = _key(run, sampler, int(s), int(seed), int(n), clip_, ck)
            if key in cache:
                points.append({**cache[key], "cached": True})
                continue
            res = sample(model, process_schedule(spec), sampler=sampler,
                         steps=int(s), n=int(n), shape=shape, seed=int(seed),
                         clip=clip_, prediction=spec.diffusion.prediction, device=device)
            pt = {"steps": int(s), "nfe": res.nfe, **_score(res.images, spec, memo)}
            cache[key] = pt
            fresh = True
            points.append({**pt, "cached": False})
        if fresh:  # merged into what other processes stored meanwhile
            update_json(cache_path, lambda old: {**(old or {}), **cache}, default={})
        metric = metric or next((k for pt in points for k in pt if k.startswith("FD-")), None)
        out.append({"run": spec.name, "hash": run.hash, "path": str(run.path),
                    "checkpoint": ck, "clip": clip_, "points": points})
    return {"runs": out, "sampler": sampler, "seed": int(seed), "n": int(n),
            "clip": clip, "metric": metric, "seconds": time.perf_counter() - t0}


def sweep_caption(res: dict[str, Any]) -> str:
    """One line stating what was measured: metric, sampler, N, seed, noise, clip."""
    runs = ", ".join(f"{r['run']} ({r['checkpoint']})" for r in res["runs"])
    cached = sum(p["cached"] for r in res["runs"] for p in r["points"])
    total = sum(len(r["points"]) for r in res["runs"])
    return (f"{res['metric'] or 'FD'} (in-project extractor, lower is better) against NFE: "
            f"{res['sampler']}, N={res['n']} samples per point, noise seed {res['seed']} "
            f"(the same initial noise for every run and step count), clip "
            f"{res['clip'] or 'per spec'}; runs: {runs}; {cached}/{total} points from the "
            f"cache ({Path(CACHE_FILE).name} in each run folder); {res['seconds']:.2f} s")
