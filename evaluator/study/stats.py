"""Pure statistics of a study: means with Student-t CIs, seed bootstraps, NFE-to-match
on log-NFE, interval comparisons and the answer words they allow.

Every function takes plain numbers or lists of dicts and returns plain data, so each can
be checked against hand-computed values.
"""
from __future__ import annotations

import math
import random
from typing import Any, Callable, Iterable

BOOTSTRAP = 2000
BOOT_SEED = 0


def mean_ci(values: Iterable[float | None]) -> dict[str, Any]:
    """Mean and 95% Student-t half-width over finite values (``ci95`` None for one)."""
    from evaluator.measure.stats import mean_ci as t_ci

    return t_ci([v for v in values if v is not None])


def interval(s: dict[str, Any]) -> tuple[float, float] | None:
    """(low, high) of a mean +- ci95 summary; None without a CI."""
    if s.get("mean") is None or s.get("ci95") is None:
        return None
    return s["mean"] - s["ci95"], s["mean"] + s["ci95"]


def compare(a: tuple[float, float] | None, b: tuple[float, float] | None,
            lower_is_better: bool = True) -> str:
    """``better`` / ``worse`` (a against b) when the intervals are disjoint, else
    ``inconclusive`` (also when either has no interval)."""
    if a is None or b is None:
        return "inconclusive"
    if a[1] < b[0]:
        return "better" if lower_is_better else "worse"
    if a[0] > b[1]:
        return "worse" if lower_is_better else "better"
    return "inconclusive"


def group(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def _order(key: tuple) -> tuple:
    """Numbers in numeric order (NFE 5 before 10 before 100), then anything else as text."""
    return tuple((0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool)
                 else (1, 0, str(v)) for v in key)


def summarise(rows: list[dict[str, Any]], keys: tuple[str, ...], value: str
              ) -> list[dict[str, Any]]:
    """Mean +- CI of ``value`` per group of ``keys`` (seeds listed)."""
    out = []
    for k, rs in sorted(group(rows, keys).items(), key=lambda kv: _order(kv[0])):
        s = mean_ci(r[value] for r in rs)
        out.append({**dict(zip(keys, k)), **s,
                    "seeds": sorted({r["seed"] for r in rs if r.get(value) is not None})})
    return out


# ---- NFE to match ---------------------------------------------------------------------
def crossing(nfe: list[float], fd: list[float], target: float) -> float | None:
    """The smallest NFE at which the curve reaches ``fd <= target``, linear in log NFE
    between the last point above and the first point at or below; None if never."""
    pts = sorted(zip(nfe, fd))
    for i, (n, v) in enumerate(pts):
        if v <= target:
            if i == 0 or v == target:
                return float(n)
            n0, v0 = pts[i - 1]
            frac = (v0 - target) / (v0 - v)
            return float(math.exp(math.log(n0) + frac * (math.log(n) - math.log(n0))))
    return None


def mean_curve(per_seed: dict[Any, dict[int, float]]) -> tuple[list[int], list[float]]:
    """The mean FD per NFE over seeds (NFEs every seed has)."""
    common = sorted(set.intersection(*(set(c) for c in per_seed.values())))
    return common, [sum(c[n] for c in per_seed.values()) / len(per_seed) for n in common]


def nfe_to_match(curve: dict[Any, dict[int, float]], baseline: dict[Any, float],
                 boot: int = BOOTSTRAP, seed: int = BOOT_SEED) -> dict[str, Any]:
    """NFE at which a pipeline's mean curve reaches the baseline's mean FD, with a
    percentile bootstrap over seeds (the pipeline's and the baseline's resampled).

    Args:
        curve: seed -> {NFE: FD} of the pipeline.
        baseline: seed -> the baseline's FD at its reference NFE.

    Returns:
        ``{nfe, target, low, high, reached_fraction, max_nfe}``; ``nfe`` None means not
        reached within ``max_nfe``; ``high`` None means the upper bound is beyond it.
    """
    ns, fd = mean_curve(curve)
    target = sum(baseline.values()) / len(baseline)
    point = crossing(ns, fd, target)
    rng = random.Random(seed)
    cs, bs = list(curve.values()), list(baseline.values())
    reps: list[float | None] = []
    for _ in range(boot):
        c = [rng.choice(cs) for _ in cs]
        b = [rng.choice(bs) for _ in bs]
        n2, f2 = mean_curve(dict(enumerate(c)))
        reps.append(crossing(n2, f2, sum(b) / len(b)))
    return {"nfe": point, "target": target, **_percentiles(reps), "max_nfe": max(ns),
            "min_nfe": min(ns),
            "n_seeds": len(cs), "n_baseline_seeds": len(bs)}


def _percentiles(reps: list[float | None]) -> dict[str, Any]:
    """2.5 / 97.5 percentiles; a replicate that never reached counts as +infinity."""
    vals = sorted(math.inf if r is None else r for r in reps)
    lo, hi = quantile(vals, 0.025), quantile(vals, 0.975)
    reached = sum(r is not None for r in reps) / len(reps)
    return {"low": None if math.isinf(lo) else lo, "high": None if math.isinf(hi) else hi,
            "reached_fraction": reached}


def quantile(sorted_vals: list[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default) of sorted values."""
    pos = q * (len(sorted_vals) - 1)
    i = int(math.floor(pos))
    j = min(i + 1, len(sorted_vals) - 1)
    a, b = sorted_vals[i], sorted_vals[j]
    if math.isinf(a) or math.isinf(b):
        return b if pos > i else a
    return a + (pos - i) * (b - a)


def bootstrap(values: list[float], stat: Callable[[list[float]], float],
              boot: int = BOOTSTRAP, seed: int = BOOT_SEED) -> tuple[float, float] | None:
    """Percentile bootstrap 95% interval of ``stat`` over resampled values."""
    if len(values) < 2:
        return None
    rng = random.Random(seed)
    reps = sorted(stat([rng.choice(values) for _ in values]) for _ in range(boot))
    return quantile(reps, 0.025), quantile(reps, 0.975)


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float] | None:
    """Wilson score 95% interval of a rate k / n."""
    if n == 0:
        return None
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def interp_log(xs: list[float], ys: list[float], x: float) -> float | None:
    """y at x, linear in log x between neighbours; None outside the measured range."""
    pts = sorted(zip(xs, ys))
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            if x1 == x0:
                return y0
            f = (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0))
            return y0 + f * (y1 - y0)
    return ys[0] if len(pts) == 1 and pts[0][0] == x else None


def spikes(grad_norms: list[float], factor: float = 10.0, window: int = 50,
           warmup: int = 50) -> int:
    """Steps whose gradient norm exceeds ``factor`` x the median of the previous
    ``window`` steps (the first ``warmup`` steps are not judged)."""
    n = 0
    for i in range(max(warmup, 1), len(grad_norms)):
        prev = sorted(grad_norms[max(0, i - window):i])
        med = prev[len(prev) // 2]
        if med > 0 and grad_norms[i] > factor * med:
            n += 1
    return n


def fmt(s: dict[str, Any] | None, digits: int = 3) -> str:
    """``mean ± ci`` (``mean`` alone for one seed, ``-`` for none)."""
    if not s or s.get("mean") is None:
        return "-"
    m = f"{s['mean']:.{digits}g}"
    return m + (f" ± {s['ci95']:.2g}" if s.get("ci95") is not None else " (1 seed, no CI)")
