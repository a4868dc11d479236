"""Statistics over seeds: mean and Student-t confidence interval."""
from __future__ import annotations

import math
from typing import Any


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
