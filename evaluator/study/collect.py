"""The tables a study's analyses read, gathered from its storage and run folders.

One row per measured thing, each carrying ``experiment``, ``pipeline``, the design
``levels`` (flattened as ``f:<factor>``) and the training ``seed``:

- ``runs``: every design cell: state, whether it diverged (non-finite loss or gradient),
  gradient-norm spikes, the trainer's magnitude warnings, the run folder;
- ``evals``: FD per (sampler, NFE) (mean over the evaluation's noise seeds), ms per NFE;
- ``convergence``: FD of each EMA snapshot against its training step;
- ``clip``: FD per (clip policy, sampler, NFE) from the clip probe;
- ``band``: denoising error per (t-bin, radial band) from the band probe.

Nothing here trains or samples: it reads ``metrics.json``, ``loss.jsonl`` and the
probes' files.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from evaluator.study.stats import spikes

TABLES = ("runs", "evals", "convergence", "clip", "band")


def collect(storage: Any, name: str) -> tuple[dict[str, Any], dict[str, list[dict]]]:
    """The plan and the tables of the study ``name`` (``<study>.<budget>``)."""
    from evaluator.study import engine
    from evaluator.study.model import cells, cell_label, dataset_of, from_data

    plan, records = engine.trials(storage, name)
    ls = from_data(plan["study"])
    budget = plan["budget"]
    labels = {en: {cell_label(c): c for c in cells(ls, en, budget)}
              for en in ls.study.experiments}
    tables: dict[str, list[dict]] = {k: [] for k in TABLES}
    for rec in records:
        cell = labels[rec["experiment"]].get(rec["cell"])
        if cell is None:
            continue
        base = {"experiment": rec["experiment"], "pipeline": rec["pipeline"],
                "seed": cell["seed"], **{f"f:{k}": v for k, v in cell["levels"].items()}}
        _add_run(tables, base, rec, dataset_of(ls, rec["experiment"], budget))
    return plan, tables


def _add_run(tables: dict[str, list[dict]], base: dict, rec: dict, dataset: str) -> None:
    reason = rec.get("fail_reason") or ""
    diverged = "non-finite" in reason or "NonFinite" in reason
    row = {**base, "state": rec["state"], "diverged": diverged, "reason": reason or None,
           "run": rec.get("run"), "spikes": None, "warnings": None}
    tables["runs"].append(row)
    if rec["state"] != "COMPLETE" or not rec.get("run"):
        return
    from evaluator.store.rundir import RunDir

    run = RunDir.open(rec["run"])
    metrics = run.read_metrics()
    grads = [r["grad_norm"] for r in run.losses() if r.get("grad_norm") is not None]
    row["spikes"] = spikes(grads)
    train = metrics.train
    stability = train.stability if train is not None else None
    row["warnings"] = len(stability.warnings) if stability is not None else 0
    row["steps"] = train.steps if train is not None else None
    ev = metrics.eval.get(rec["budget_name"])
    metric = f"FD-{dataset}"
    for r in ev.results if ev is not None else []:
        m = r.metrics.get(metric)
        tables["evals"].append({**base, "sampler": r.sampler, "nfe": r.steps,
                                "fd": m.mean if m is not None else None, "n": r.n,
                                "noise_seeds": r.seeds, "ms_per_nfe": r.ms_per_nfe.mean,
                                "reference": r.reference})
    for p in (ev.convergence if ev is not None else None) or []:
        tables["convergence"].append({**base, "step": p.step, "fd": p.value(metric),
                                      "n": p.n})
    _add_probes(tables, base, rec)


def _add_probes(tables: dict[str, list[dict]], base: dict, rec: dict) -> None:
    from evaluator.study.probes import read_probe

    probes = rec.get("probes") or {}
    if "clip" in probes:
        got = read_probe(rec["run"], "clip", probes["clip"]) or {}
        per: dict[tuple, list[float]] = {}
        for r in got.get("rows", []):
            if r.get("fd") is not None:
                per.setdefault((r["clip"], r["sampler"], r["steps"]), []).append(r["fd"])
        for (clip, sampler, steps), v in per.items():
            tables["clip"].append({**base, "clip": clip, "sampler": sampler, "nfe": steps,
                                   "fd": sum(v) / len(v)})
    if "band" in probes:
        got = read_probe(rec["run"], "band", probes["band"]) or {}
        edges = got.get("t_edges", [])
        for k, per_band in enumerate(got.get("error", [])):
            for b, e in enumerate(per_band):
                tables["band"].append({**base, "t_bin": k, "t_lo": edges[k],
                                       "t_hi": edges[k + 1], "band": b, "error": e,
                                       "n": got.get("n"), "run": rec["run"]})


def levels_of(row: dict[str, Any]) -> dict[str, str]:
    return {k[2:]: v for k, v in row.items() if k.startswith("f:")}


def run_paths(tables: dict[str, list[dict]]) -> list[Path]:
    return [Path(r["run"]) for r in tables["runs"] if r.get("run")]
