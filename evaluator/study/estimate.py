"""The cost of a study before it runs: each distinct run (spec hash) counted once, from
the sweep engine's profile-based estimate (:func:`evaluator.sweeps.study.estimate_seconds`)
plus the convergence scoring and the probes, for ``workers`` workers sharing the cores."""
from __future__ import annotations

import json
from typing import Any


def run_costs(plan: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per distinct run: sweep, cell, hash, train s, sampling s, probe s."""
    from archspec import build_model, canonical
    from evaluator.store.rundir import hash_spec
    from evaluator.sweeps.spec import budget_of, resolve
    from evaluator.sweeps.study import estimate_seconds

    cache: dict[str, tuple[float, float, float]] = {}
    seen, out = set(), []
    for p in plan:
        ls, budget = p["sweep"], budget_of(p["sweep"].sweep)
        for idx in ls.rows:
            labels = ls.labels_of(idx)
            spec = resolve(ls, labels)
            h = hash_spec(spec)
            key = json.dumps({**canonical(spec), "train": {**canonical(spec)["train"],
                                                           "seed": 0}}, sort_keys=True)
            if key not in cache:
                train_s, sample_s = estimate_seconds(build_model(spec), spec, budget)
                cache[key] = (train_s, sample_s, _per_call(spec, budget, sample_s))
            train_s, sample_s, per_call = cache[key]
            extra = _extra_calls(spec, p["probes"]) * per_call
            out.append({"sweep": p["name"], "cell": labels["cell"], "hash": h,
                        "train_s": 0.0 if h in seen else train_s,
                        "sample_s": 0.0 if h in seen else sample_s, "probe_s": extra})
            seen.add(h)
    return out


def _per_call(spec: Any, budget: Any, sample_s: float) -> float:
    """Seconds per (sample x model call), from the estimate's sampling time."""
    from evaluator.pipeline.budgets import eval_settings

    st = eval_settings(spec, budget)
    calls = sum(n for _, n in st["plan"]) * st["num_samples"] * len(st["seeds"])
    return sample_s / calls if calls else 0.0


def _extra_calls(spec: Any, probes: dict[str, Any]) -> float:
    """Sample x model calls of the convergence scoring and the probes."""
    n = 0.0
    c = spec.evaluate.convergence
    if c is not None:
        snaps = spec.train.steps // c.every + 1
        n += snaps * c.steps * min(c.num_samples, spec.evaluate.num_samples)
    if "clip" in probes:
        cp = probes["clip"]
        n += (len(cp["policies"]) * sum(s for _, s in cp["samplers"]) * cp["num_samples"]
              * len(cp["seeds"]))
    if "band" in probes:
        n += probes["band"]["num_images"] * probes["band"]["t_bins"]
    return n


def print_estimate(ls: Any, plan: list[dict[str, Any]], budget: str, workers: int) -> int:
    import torch

    from evaluator.study.engine import cores

    threads = max(1, cores() // workers)
    torch.set_num_threads(threads)
    rows = run_costs(plan)
    print(f"{'sweep':<52} {'runs':>4} {'new':>4} {'train s':>8} {'sample s':>8} {'probe s':>8}")
    for p in plan:
        mine = [r for r in rows if r["sweep"] == p["name"]]
        print(f"{p['name']:<52} {len(mine):>4} {sum(r['train_s'] > 0 for r in mine):>4} "
              f"{sum(r['train_s'] for r in mine):>8.0f} {sum(r['sample_s'] for r in mine):>8.0f} "
              f"{sum(r['probe_s'] for r in mine):>8.0f}")
    total = sum(r["train_s"] + r["sample_s"] + r["probe_s"] for r in rows)
    print(f"{len(rows)} trials, {len({r['hash'] for r in rows})} distinct runs; one worker on "
          f"{threads} thread(s): {total:.0f} s; {workers} worker(s): about "
          f"{total / workers / 3600:.2f} h (evaluator.profile step timings on this machine "
          "now; FD metrics, start-up and reuse of finished runs not included)")
    return 0
