"""The study's statistics against hand-computed values and independent references."""
from __future__ import annotations

import math

import numpy as np
import pytest

from evaluator.study import stats as S


def test_crossing_interpolates_on_log_nfe_by_hand():
    # FD 10 at NFE 10 and 4 at NFE 40; target 6 is 2/3 of the way down in FD, so the
    # crossing is at exp(log 10 + 2/3 (log 40 - log 10)) = 10 * 4^(2/3)
    assert S.crossing([10, 40, 100], [10.0, 4.0, 3.0], 6.0) == pytest.approx(10 * 4 ** (2 / 3))
    assert S.crossing([5, 10], [9.0, 8.0], 8.0) == 10.0        # exactly at a point
    assert S.crossing([5, 10], [2.0, 1.0], 3.0) == 5.0         # already below at the start
    assert S.crossing([5, 10, 100], [9.0, 8.5, 8.1], 8.0) is None  # never reached


def test_nfe_to_match_bootstrap_spans_the_single_seed_crossings():
    # two seeds; the baseline has one seed so the target is fixed at 6.
    # seed a crosses at 10 * 4^(2/3), seed b at 20 * 2^(1/2) (FD 8 -> 4 between 20 and 40,
    # halfway in FD), the mean curve in between; every bootstrap replicate is a, b or the
    # mean, each extreme with probability 1/4, so the 2.5/97.5 percentiles are a and b.
    curve = {0: {10: 10.0, 20: 7.0, 40: 4.0}, 1: {10: 12.0, 20: 8.0, 40: 4.0}}
    m = S.nfe_to_match({0: {10: 10.0, 40: 4.0}, 1: {10: 10.0, 20: 8.0, 40: 4.0}},
                       {0: 6.0}, boot=400)
    assert m["target"] == 6.0
    # seed 0 lacks NFE 20, so the mean curve uses the common NFEs 10 and 40 only
    assert m["nfe"] == pytest.approx(10 * 4 ** (2 / 3))
    m = S.nfe_to_match(curve, {0: 6.0}, boot=400)
    a = S.crossing([10, 20, 40], [10.0, 7.0, 4.0], 6.0)
    b = S.crossing([10, 20, 40], [12.0, 8.0, 4.0], 6.0)
    assert a == pytest.approx(20 * 2 ** (1 / 3))  # FD 7 -> 4, a third of the way down
    assert b == pytest.approx(20 * 2 ** (1 / 2))
    assert m["nfe"] == pytest.approx(S.crossing([10, 20, 40], [11.0, 7.5, 4.0], 6.0))
    assert m["low"] == pytest.approx(a) and m["high"] == pytest.approx(b)
    assert m["reached_fraction"] == 1.0


def test_nfe_to_match_not_reached_and_an_open_upper_bound():
    never = S.nfe_to_match({0: {5: 9.0, 100: 8.0}, 1: {5: 9.5, 100: 8.5}}, {0: 6.0}, boot=200)
    assert never["nfe"] is None and never["high"] is None and never["reached_fraction"] == 0
    # one seed reaches, one never does: the mean does not, and the upper bound is open
    half = S.nfe_to_match({0: {5: 9.0, 100: 5.0}, 1: {5: 9.0, 100: 8.0}}, {0: 6.0}, boot=400)
    assert half["nfe"] is None and half["high"] is None
    # only a replicate drawing seed 0 twice reaches (the mixed mean ends at 6.5):
    # probability 1/4; 3 binomial standard deviations at 400 replicates is 0.065
    assert half["reached_fraction"] == pytest.approx(0.25, abs=0.065)


def test_quantile_matches_numpy():
    rng = np.random.default_rng(0)
    v = sorted(rng.normal(size=37).tolist())
    for q in (0.0, 0.025, 0.5, 0.975, 1.0):
        assert S.quantile(v, q) == pytest.approx(np.percentile(v, 100 * q))


def test_wilson_interval_by_hand():
    z = 1.959964
    lo, hi = S.wilson(0, 2)
    assert lo == 0.0 and hi == pytest.approx(z * z / (2 + z * z))  # upper bound for k = 0
    lo, hi = S.wilson(5, 10)
    assert (lo + hi) / 2 == pytest.approx(0.5)
    assert S.wilson(0, 0) is None


def test_compare_needs_disjoint_intervals():
    assert S.compare((1, 2), (3, 4)) == "better"
    assert S.compare((3, 4), (1, 2)) == "worse"
    assert S.compare((1, 3), (2, 4)) == "inconclusive"
    assert S.compare((1, 2), (3, 4), lower_is_better=False) == "worse"
    assert S.compare(None, (3, 4)) == "inconclusive"


def test_mean_ci_is_the_student_t_interval():
    from scipy import stats

    v = [1.0, 2.0, 4.0]
    s = S.mean_ci(v)
    lo, hi = stats.t.interval(0.95, len(v) - 1, loc=np.mean(v), scale=stats.sem(v))
    assert s["mean"] == pytest.approx(np.mean(v))
    assert s["ci95"] == pytest.approx((hi - lo) / 2)
    assert S.interval(s) == pytest.approx((lo, hi))


def test_interp_log_and_spikes_by_hand():
    assert S.interp_log([10, 100], [5.0, 3.0], math.sqrt(1000)) == pytest.approx(4.0)
    assert S.interp_log([10, 100], [5.0, 3.0], 200) is None
    g = [1.0] * 60 + [20.0] + [1.0] * 10 + [9.0]
    assert S.spikes(g, factor=10, window=50, warmup=50) == 1  # 20 > 10 x 1; 9 is not


def test_bootstrap_interval_of_the_mean_brackets_it():
    v = [1.0, 2.0, 3.0, 10.0]
    lo, hi = S.bootstrap(v, lambda x: sum(x) / len(x), boot=500)
    assert 1.0 <= lo < sum(v) / 4 < hi <= 10.0
    assert S.bootstrap([1.0], lambda x: x[0]) is None


def test_summarise_orders_numbers_numerically_and_keeps_each_group():
    rows = [{"p": p, "nfe": n, "seed": s, "fd": float(n + s)}
            for p in ("b", "a") for n in (100, 5, 50, 10) for s in (0, 1)]
    out = S.summarise(rows, ("p", "nfe"), "fd")
    assert [(r["p"], r["nfe"]) for r in out] == [
        (p, n) for p in ("a", "b") for n in (5, 10, 50, 100)]   # not "10" < "100" < "5"
    assert [r["mean"] for r in out[:4]] == [5.5, 10.5, 50.5, 100.5]
