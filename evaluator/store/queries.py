"""Run queries: one run as a flat row (the app's runs table, scripts) and its preferred
evaluation."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from evaluator.store.atomic import read_json
from evaluator.store.metrics import TrainMetrics
from evaluator.store.rundir import RunDir, list_runs


# ---- queries (the app's runs table, scripts) ------------------------------------------------
RUN_COLUMNS = ("name", "hash", "status", "dataset", "params", "steps", "loss_drop",
               "steps_per_s")


def run_row(run: RunDir) -> dict[str, Any]:
    """One run as a flat row: :data:`RUN_COLUMNS` plus ``best <FD-x> <sampler>`` (the
    lowest mean over the sampler's step counts, from the preferred budget) and ``path``."""
    st, m = run.status(), run.read_metrics()
    tr = m.train or TrainMetrics()
    spec = read_json(run.spec_json, default={}) or {}
    _, ev = m.best_eval(BUDGET_PREFERENCE)
    speed = ev.speed if ev is not None else None
    row: dict[str, Any] = {
        "name": run.name, "hash": run.hash, "status": st.get("status"),
        "dataset": (spec.get("train") or {}).get("dataset"),
        "params": tr.params or (speed.params if speed else None),
        "steps": tr.steps if tr.steps is not None else st.get("step"),
        "loss_drop": tr.loss_drop, "steps_per_s": tr.steps_per_second}
    for r in ev.results if ev is not None else []:
        for metric, v in r.metrics.items():
            if metric.startswith("FD-") and v.mean is not None:
                key = f"best {metric} {r.sampler}"
                row[key] = v.mean if row.get(key) is None else min(row[key], v.mean)
    row["path"] = str(run.path)
    return row


def query_runs(root: str | Path = "results", text: str = "", status: str | None = None,
               sort_by: str = "name", descending: bool = False) -> list[dict[str, Any]]:
    """Rows (:func:`run_row`) of the runs under ``root``, filtered and sorted.

    Args:
        text: case-insensitive substring of the name, hash or dataset ("" keeps all).
        status: keep only runs with this status (None or "" keeps all).
        sort_by: a column; rows without a value sort last.
    """
    rows = [run_row(r) for r in list_runs(root)]
    t = text.strip().lower()
    if t:
        rows = [r for r in rows
                if any(t in str(r.get(k) or "").lower() for k in ("name", "hash", "dataset"))]
    if status:
        rows = [r for r in rows if r["status"] == status]
    present = [r for r in rows if r.get(sort_by) is not None]
    missing = [r for r in rows if r.get(sort_by) is None]
    present.sort(key=lambda r: (isinstance(r[sort_by], str), r[sort_by]), reverse=descending)
    return present + missing


def eval_rows(run: RunDir) -> list[dict[str, Any]]:
    """Per (sampler, steps) of the preferred budget: NFE, ms/NFE, N, seeds and the mean of
    every metric present (FD-*, FID, KID, LPIPS, spectral distances); None when absent."""
    budget, ev = run.read_metrics().best_eval(BUDGET_PREFERENCE)
    out = []
    for r in ev.results if ev is not None else []:
        row = {"budget": budget, "sampler": r.sampler, "steps": r.steps, "nfe": r.nfe,
               "n": r.n, "seeds": r.seeds, "ms_per_nfe": r.ms_per_nfe.mean}
        for metric, v in r.metrics.items():
            row[metric] = v.mean if v.mean is not None else v.status
        out.append(row)
    return out


BUDGET_PREFERENCE = ("full", "quick")


def best_eval(run: RunDir) -> tuple[str | None, dict | None]:
    """(budget, evaluation) of a run, preferring the full budget over quick: the stored
    dict, checked against :class:`~evaluator.store.metrics.RunMetrics` (typed:
    ``run.read_metrics().best_eval()``)."""
    evals = run.metrics().get("eval", {})
    for b in (*BUDGET_PREFERENCE, *sorted(evals)):
        if b in evals:
            return b, evals[b]
    return None, None
