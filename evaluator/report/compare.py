"""What the comparison views show, computed: radial bands, input checks, divergence flags,
the per-band table of a side-by-side sampling, and the metrics table with its reasons.

One band definition everywhere: :func:`bands_for` picks, for an image size, the largest
count (at most :data:`evaluator.measure.step_spectra.N_BANDS`) of equal-width radial bands over
DC..Nyquist (:func:`blocks.fourier.band_index`) in which every band holds at least one
frequency once the mean (DC) is removed, so no band is an empty "+0.00". Edges are in
cycles/pixel (0.5 = Nyquist).

Surfaces (the Gradio app) only lay these out.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from blocks import fourier

# A band whose mean energy per image exceeds the data's by this factor is "exploding":
# 100x is two decades, far beyond what an undertrained but sane model produces.
DIVERGE_FACTOR = 100.0
SETTLE_TOL = 0.02


# ---- bands ------------------------------------------------------------------------------
def band_counts(size: int, n_bands: int) -> list[int]:
    """Frequencies (rfft bins, DC left out) in each of ``n_bands`` bands of a square
    ``size`` image (:func:`blocks.fourier.band_index`)."""
    idx = fourier.band_index(size, size, n_bands).flatten()[1:]  # [0] is DC
    return torch.bincount(idx, minlength=n_bands).tolist()


def bands_for(size: int, most: int | None = None) -> int:
    """The largest band count <= ``most`` (default 4) whose bands all hold a frequency."""
    from evaluator.measure.step_spectra import N_BANDS

    for n in range(most or N_BANDS, 1, -1):
        if min(band_counts(size, n)) > 0:
            return n
    return 1


def band_edges(n_bands: int) -> list[float]:
    """Band edges in cycles/pixel: ``n_bands`` equal widths over [0, 0.5]."""
    return [0.5 * i / n_bands for i in range(n_bands + 1)]


def band_labels(n_bands: int) -> list[str]:
    """``b0 0-0.125 c/px``-style labels, low to high frequency."""
    e = band_edges(n_bands)
    return [f"b{b} {e[b]:.3g}-{e[b + 1]:.3g} c/px" for b in range(n_bands)]


def empty_bands(size: int, n_bands: int) -> list[bool]:
    """Per band: True when it holds no frequency at this image size (DC removed)."""
    return [c == 0 for c in band_counts(size, n_bands)]


# ---- input checks -----------------------------------------------------------------------
@dataclass(frozen=True)
class Limit:
    name: str
    low: int
    high: int


SAMPLING_LIMITS = (Limit("steps", 1, 1000), Limit("samples", 1, 256),
                   Limit("seed", 0, 2 ** 31 - 1))


def check_ints(values: dict[str, Any], limits: tuple[Limit, ...] = SAMPLING_LIMITS
               ) -> list[str]:
    """One line per problem: a value that is missing, not a whole number or out of range
    (no silent rounding: a seed of 1.5 is an error, not 2)."""
    out = []
    for lim in limits:
        v = values.get(lim.name)
        if v is None or (isinstance(v, str) and not v.strip()):
            out.append(f"{lim.name}: a whole number is required")
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            out.append(f"{lim.name}: {v!r} is not a number")
            continue
        if not math.isfinite(f) or f != int(f):
            out.append(f"{lim.name}: {v} is not a whole number")
        elif not lim.low <= int(f) <= lim.high:
            out.append(f"{lim.name}: {int(f)} is out of range {lim.low}..{lim.high}")
    return out


def check_nfes(text: str, high: int = 1000) -> tuple[list[int], list[str]]:
    """Step counts from ``"5, 10, 20, 50"``: (sorted unique counts, problems)."""
    out, problems = set(), []
    for part in (text or "").replace(";", ",").split(","):
        p = part.strip()
        if not p:
            continue
        if not p.isdigit() or not 1 <= int(p) <= high:
            problems.append(f"step counts: {p!r} is not a whole number in 1..{high}")
        else:
            out.add(int(p))
    if not out and not problems:
        problems.append("step counts: give at least one, e.g. 5, 10, 20, 50")
    return sorted(out), problems


# ---- divergence and the band table ------------------------------------------------------
def energies(x: torch.Tensor, n_bands: int) -> list[float] | None:
    """Mean energy per image in each band, or None when ``x`` is not finite."""
    from evaluator.measure.spectral import band_energies

    if not bool(torch.isfinite(x).all()):
        return None
    return band_energies(x, n_bands).tolist()


def divergence(x0: torch.Tensor, data_energy: list[float],
               factor: float = DIVERGE_FACTOR) -> str | None:
    """Why these samples diverged (non-finite values, or a band holding more than
    ``factor`` times the data's energy), or None when they look sane."""
    if not bool(torch.isfinite(x0).all()):
        bad = int((~torch.isfinite(x0)).flatten(1).any(1).sum())
        return f"{bad} of {x0.shape[0]} samples hold NaN/inf values"
    e = energies(x0, len(data_energy)) or []
    worst = [(b, s / d) for b, (s, d) in enumerate(zip(e, data_energy)) if d > 0]
    b, r = max(worst, key=lambda t: t[1], default=(None, 0.0))
    if b is not None and r > factor:
        return (f"band b{b} holds {r:.3g}x the data's energy (samples {e[b]:.3g} vs data "
                f"{data_energy[b]:.3g} per image): the samples exploded")
    return None


def log10_ratio(s: float, d: float) -> float | None:
    return math.log10(s / d) if s > 0 and d > 0 else None


def band_rows(trajs: list, k: int, tol: float = SETTLE_TOL) -> dict[str, Any]:
    """Per-band error and settle step of every sampled run at step ``k`` (1-based).

    Returns ``{"bands": labels, "rows": [{"run", "hash", "step", "log10_ratio": [...],
    "settle": [...], "diverged": reason | None}], "note": ...}``; a band's ratio is
    ``log10(samples' / data's mean energy per image)`` of x0-hat at step k, and its settle
    step the first step from which its energy share stays within ``tol`` of the final one.
    """
    from evaluator.measure.step_spectra import data_statistics, settle_step

    if not trajs:
        return {"bands": [], "rows": [], "note": "sample first"}
    n_bands = trajs[0].band_energy.shape[1]
    rows = []
    for t in trajs:
        j = max(1, min(int(k), t.nfe)) - 1
        ref = data_statistics(t.dataset, n_bands)["band_energy"]
        e = energies(t.x0[j], n_bands)
        why = divergence(t.x0[-1], ref)
        rows.append({"run": t.name, "hash": t.run.hash, "step": j + 1, "nfe": t.nfe,
                     "log10_ratio": [log10_ratio(s, d) for s, d in zip(e, ref)] if e
                     else [None] * n_bands,
                     "settle": [None] * n_bands if why
                     else settle_step(t.band_energy, t.band_energy[-1], tol),
                     "diverged": why})
    return {"bands": band_labels(n_bands), "rows": rows,
            "note": (f"log10(x0-hat / data energy per image) at the step shown; settle = "
                     f"first step whose band share stays within {tol} of the last step's "
                     f"(none for a diverged run); N={trajs[0].images.shape[0]}, seed "
                     f"{trajs[0].settings['seed']}")}


# ---- metrics table ----------------------------------------------------------------------
TABLE_PREFIXES = ("FD-", "KD-", "FID", "KID", "LPIPS")


def metrics_table(run: Any) -> dict[str, Any]:
    """The run's evaluation as table rows with every FD/KD/FID/KID/LPIPS column and, for
    each unavailable metric, the reason stored in metrics.json.

    Returns ``{"columns", "rows", "reasons": {metric: reason}, "n", "seeds", "budget",
    "batch_size", "device"}``; ``rows`` is empty when the run was never evaluated.
    """
    from evaluator.store.queries import best_eval

    budget, ev = best_eval(run)
    results = (ev or {}).get("results", [])
    names = sorted({m for r in results for m in r.get("metrics", {})
                    if m.startswith(TABLE_PREFIXES)})
    rows, reasons = [], {}
    for r in results:
        cells = {}
        for m in names:
            v = r["metrics"].get(m) or {}
            cells[m] = v.get("mean")
            if v.get("mean") is None:
                reasons[m] = v.get("reason") or v.get("status") or "not computed"
        rows.append({"sampler": r["sampler"], "steps": r["steps"], "nfe": r["nfe"],
                     "ms_per_nfe": (r.get("ms_per_nfe") or {}).get("mean"), **cells})
    first = results[0] if results else {}
    return {"columns": names, "rows": rows, "reasons": reasons, "budget": budget,
            "n": first.get("n"), "seeds": first.get("seeds"),
            "batch_size": (first.get("settings") or {}).get("batch_size"),
            "device": ((ev or {}).get("speed") or {}).get("device")}


# ---- results table ----------------------------------------------------------------------
def fd_columns(run: Any) -> dict[str, float]:
    """``FD-<ds> <sampler>@<steps>`` -> mean, for every evaluated setting of the run (the
    step count in the name, so the columns say what they measure)."""
    from evaluator.store.queries import eval_rows

    out = {}
    for r in eval_rows(run):
        for k, v in r.items():
            if k.startswith("FD-") and isinstance(v, float):
                out[f"{k} {r['sampler']}@{r['steps']}"] = v
    return out


def differences(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Per run path: what its resolved spec sets differently from the other runs of the
    same name (``train.steps=30, model.nodes.temb.dim=16``); "" for a name held once."""
    from archspec.diff import flatten
    from evaluator.store.atomic import read_json

    by_name: dict[str, list[dict]] = {}
    for r in rows:
        by_name.setdefault(r["name"], []).append(r)
    out = {}
    for group in by_name.values():
        flats = {r["path"]: flatten(read_json(Path(r["path"]) / "spec.resolved.json",
                                            default={}) or {}) for r in group}
        keys = set().union(*flats.values()) if flats else set()
        varying = sorted(k for k in keys
                         if len({json.dumps(f.get(k), sort_keys=True, default=str)
                                 for f in flats.values()}) > 1)
        for p, f in flats.items():
            out[p] = ", ".join(f"{k}={f.get(k)}" for k in varying) if len(group) > 1 else ""
    return out


def results_rows(root: Any, text: str = "", status: str | None = None,
                 sort_by: str = "name", descending: bool = False) -> list[dict[str, Any]]:
    """:func:`evaluator.store.queries.query_runs` rows plus a column per evaluated FD setting
    (:func:`fd_columns`) and ``differs`` (:func:`differences`), sorted by any column
    (rows without a value last)."""
    from evaluator.store.rundir import RunDir
    from evaluator.store.queries import query_runs

    rows = query_runs(root, text, status)
    diff = differences(rows)
    for r in rows:
        r.update(fd_columns(RunDir(Path(r["path"]))))
        r["differs"] = diff.get(r["path"], "")
    present = [r for r in rows if r.get(sort_by) not in (None, "")]
    missing = [r for r in rows if r.get(sort_by) in (None, "")]
    present.sort(key=lambda r: (isinstance(r[sort_by], str), r[sort_by]), reverse=descending)
    return present + missing


# ---- band shares of stored evaluations --------------------------------------------------
def shares_from_raps(power: list[float], size: int, n_bands: int) -> list[float]:
    """Band-energy shares (the :func:`bands_for` definition) of a stored RAPS: each rfft
    coefficient gets its radial bin's mean power and joins its band by
    :func:`blocks.fourier.band_index`; exact when power is radially uniform within a bin
    (an estimate otherwise, since the stored evaluation keeps only the RAPS)."""
    bins = fourier.radial_bins(size, size).flatten()
    bands = fourier.band_index(size, size, n_bands).flatten()
    weight = fourier.rfft_multiplicity(size, size).flatten()
    p = torch.tensor(power, dtype=torch.float64)
    per = p[bins.clamp(max=len(p) - 1)] * weight
    per[bins == 0] = 0.0                                   # DC: removed
    energy = torch.zeros(n_bands, dtype=torch.float64).index_add_(0, bands, per)
    total = float(energy.sum())
    return (energy / total).tolist() if total > 0 else [math.nan] * n_bands


def stored_band_shares(run: Any) -> dict[str, Any] | None:
    """``{"bands": labels, "series": {name: shares}}`` of a run's spectra.json (data and
    each evaluated setting) in the one band definition; None without spectra."""
    from evaluator.store.atomic import read_json

    sp = read_json(run.spectra_file, default={}) or {}
    size = ((read_json(run.spec_json, default={}) or {}).get("image") or {}).get("size")
    if "data" not in sp or not size:
        return None
    n = bands_for(int(size))
    series = {k: shares_from_raps(v["raps"]["power"], int(size), n) for k, v in sp.items()
              if isinstance(v, dict) and "raps" in v}
    return {"bands": band_labels(n), "series": series, "size": int(size)}
