"""The answer logic on constructed tables: sentences flip with the data, overlapping
intervals give "inconclusive", a pipeline that never reaches the baseline says so."""
from __future__ import annotations

import math

import pytest

from evaluator.study import analyses as A

NFES = (5, 10, 20, 50, 100)


def _evals(curves: dict[str, list[list[float]]], sampler: str = "ddim") -> list[dict]:
    """Rows for pipeline -> per seed FD at NFES."""
    rows = []
    for p, per_seed in curves.items():
        for seed, fds in enumerate(per_seed):
            for n, fd in zip(NFES, fds):
                rows.append({"experiment": "nfe", "pipeline": p, "seed": seed,
                             "sampler": sampler, "nfe": n, "fd": fd, "n": 64,
                             "ms_per_nfe": 1.0 if p == "spatial" else 2.0,
                             "reference": False})
    return rows


def _tables(evals=(), runs=(), **more) -> dict[str, list[dict]]:
    t = {"runs": list(runs), "evals": list(evals), "convergence": [], "clip": [], "band": []}
    t.update(more)
    return t


SPATIAL = [[20, 12, 8, 6.0, 5.5], [21, 12.5, 8.2, 6.2, 5.6], [19, 11.5, 7.8, 5.8, 5.4]]
FAST = [[10, 6.5, 5.5, 5.0, 4.9], [10.5, 6.6, 5.6, 5.1, 5.0], [9.5, 6.4, 5.4, 4.9, 4.8]]


def test_q1_a_faster_pipeline_answers_yes_and_swapping_the_curves_answers_no():
    res = A.q1(_tables(_evals({"spatial": SPATIAL, "spectral": FAST})), {"baseline": "spatial"})
    assert res["verdict"] == "yes" and res["answer"].startswith("Yes: spectral reaches")
    m = res["numbers"]["match"][0]
    assert m["high"] < 50 and m["nfe"] < 20
    # the same numbers with the roles swapped: the baseline is now the fast one
    res = A.q1(_tables(_evals({"spatial": FAST, "spectral": SPATIAL})), {"baseline": "spatial"})
    assert res["verdict"] == "no" and res["answer"].startswith("No:")


def test_q1_a_pipeline_that_never_reaches_the_baseline_says_not_reached():
    slow = [[30, 25, 20, 15, 12], [31, 26, 21, 16, 13], [29, 24, 19, 14, 11]]
    res = A.q1(_tables(_evals({"spatial": SPATIAL, "spectral": slow})), {"baseline": "spatial"})
    assert res["numbers"]["match"][0]["verdict"] == "not reached"
    assert "not reached within 100" in res["answer"] and res["verdict"] == "no"


def test_q1_a_ci_straddling_the_baseline_nfe_is_inconclusive():
    # seeds disagree: one matches at about 20 NFE, one needs about 70
    mixed = [[12, 8, 6.0, 5.9, 5.8], [20, 15, 9, 6.5, 5.9], [16, 11, 7, 6.0, 5.5]]
    res = A.q1(_tables(_evals({"spatial": SPATIAL, "spectral": mixed})), {"baseline": "spatial"})
    m = res["numbers"]["match"][0]
    assert m["low"] < 50 and (m["high"] is None or m["high"] >= 50)
    assert res["verdict"] == "inconclusive" and res["answer"].startswith("Inconclusive")


def test_q1_equal_wall_clock_uses_the_measured_ms_per_nfe():
    res = A.q1(_tables(_evals({"spatial": SPATIAL, "spectral": FAST})), {"baseline": "spatial"})
    wall = {w["pipeline"]: w for w in res["numbers"]["wall"]}
    # spectral costs 2 ms per NFE against 1: the 50-NFE budget buys it 25 NFE
    assert wall["spectral"]["nfe"] == pytest.approx(25)
    assert wall["spatial"]["mean"] == pytest.approx(6.0)  # its own FD at 50 NFE
    # per seed, FD between NFE 20 and 50 on log NFE at 25
    f = (math.log(25) - math.log(20)) / (math.log(50) - math.log(20))
    want = sum(s[2] + f * (s[3] - s[2]) for s in FAST) / 3
    assert wall["spectral"]["mean"] == pytest.approx(want)


def _runs(pipe: str, lr_fd: dict[str, list[float | None]]) -> tuple[list[dict], list[dict]]:
    runs, evals = [], []
    for lr, fds in lr_fd.items():
        for seed, fd in enumerate(fds):
            base = {"experiment": "robustness", "pipeline": pipe, "seed": seed, "f:lr": lr}
            runs.append({**base, "state": "COMPLETE" if fd is not None else "FAIL",
                         "diverged": fd is None, "run": f"{pipe}-{lr}-{seed}",
                         "spikes": 0, "warnings": 0})
            if fd is not None:
                for smp, extra in (("dpmsolver++", 0.0), ("ddim", 0.5)):
                    evals.append({**base, "sampler": smp, "nfe": 20, "fd": fd + extra,
                                  "reference": False, "ms_per_nfe": 1.0})
    return runs, evals


def _q4(hybrid: dict, spectral: dict) -> dict:
    r1, e1 = _runs("hybrid", hybrid)
    r2, e2 = _runs("spectral", spectral)
    return A.q4(_tables(e1 + e2, r1 + r2), {"sampler": "dpmsolver++", "nfe": 20})


STEADY = {"1e-3": [5.0, 5.1, 4.9], "3e-3": [5.2, 5.3, 5.1]}
SHAKY = {"1e-3": [5.0, 5.1, 4.9], "3e-3": [9.0, 9.2, 8.8]}


def test_q4_swapping_the_robust_pipeline_flips_the_answer():
    yes = _q4(STEADY, SHAKY)
    assert yes["verdict"] == "yes" and yes["answer"].startswith("Yes: hybrid is more robust")
    no = _q4(SHAKY, STEADY)
    assert no["verdict"] == "no" and no["answer"].startswith("No: hybrid is less robust")
    rob = yes["numbers"]["robustness"]
    assert rob["hybrid"]["lr_spread"]["mean"] == pytest.approx(0.2)
    assert rob["spectral"]["lr_spread"]["mean"] == pytest.approx(4.0)
    assert rob["hybrid"]["worst"]["mean"] == pytest.approx((5.5 + 5.7) / 2, abs=1e-9)


def test_q4_overlapping_intervals_are_inconclusive():
    noisy = {"1e-3": [3.0, 8.0, 5.0], "3e-3": [2.0, 9.0, 5.5]}
    res = _q4(noisy, {"1e-3": [4.0, 6.0, 5.2], "3e-3": [3.5, 7.5, 5.0]})
    assert res["verdict"] == "inconclusive" and res["answer"].startswith("Inconclusive")


def test_q4_divergence_counts_failed_runs():
    res = _q4({"1e-3": [5.0, 5.1, 4.9], "3e-3": [None, None, 5.0]}, STEADY)
    d = res["numbers"]["robustness"]["hybrid"]["divergence"]
    assert (d["diverged"], d["runs"]) == (2, 6)


def _band(weighting: str, seed: int, errors: list[list[float]]) -> list[dict]:
    return [{"experiment": "weighting", "pipeline": "spectral", "seed": seed,
             "f:weighting": weighting, "t_bin": k, "band": b, "error": e,
             "run": f"{weighting}-{seed}"}
            for k, per in enumerate(errors) for b, e in enumerate(per)]


def test_q3_names_the_lowest_error_strategy_in_each_t_bin():
    band = []
    for seed, jitter in enumerate((0.0, 0.01, -0.01)):
        band += _band("uniform", seed, [[1.0 + jitter, 1.0], [3.0 + jitter, 3.0]])
        band += _band("min_snr", seed, [[2.0 + jitter, 2.0], [1.0 + jitter, 1.0]])
    res = A.q3(_tables(band=band), {"factors": ["weighting"]})
    best = {b["t_bin"]: b for b in res["numbers"]["best"]}
    assert best[0]["best"] == "uniform" and best[1]["best"] == "min_snr"
    assert best[0]["mean"] == pytest.approx(2.0) and best[0]["decided"]
    assert "t-bin 0 uniform" in res["answer"] and "t-bin 1 min_snr" in res["answer"]
    heat = [h for h in res["numbers"]["heat"] if h["level"] == "min_snr" and h["t_bin"] == 1]
    assert sorted(h["mean"] for h in heat) == pytest.approx([1.0, 1.0])


def test_q3_overlapping_errors_are_inconclusive():
    band = []
    for seed, jitter in enumerate((0.0, 1.5, -1.5)):
        band += _band("uniform", seed, [[1.0 + jitter, 1.0]])
        band += _band("min_snr", seed, [[1.2 - jitter, 1.0]])
    res = A.q3(_tables(band=band), {"factors": ["weighting"]})
    assert res["verdict"] == "inconclusive" and "t-bin 0 inconclusive" in res["answer"]


def test_q2_separated_effects_name_the_faster_level():
    runs, conv, evals = [], [], []
    for seed in range(3):
        for conv_lv, reach in (("complex", 100), ("dual", 300)):
            base = {"experiment": "stability", "pipeline": "spectral", "seed": seed,
                    "f:conv": conv_lv}
            runs.append({**base, "state": "COMPLETE", "diverged": False, "run": "x",
                         "spikes": seed, "warnings": 0})
            for step in (100, 200, 300):
                conv.append({**base, "step": step, "fd": 4.0 if step >= reach else 9.0 + seed})
            evals.append({**base, "sampler": "dpmsolver++", "nfe": 20, "fd": 4.0 + 0.1 * seed,
                          "reference": False, "ms_per_nfe": 1.0})
    res = A.q2(_tables(evals, runs, convergence=conv), {"factors": ["conv"], "threshold": 5.0})
    eff = {(e["measure"], e["level"]): e for e in res["numbers"]["effects"]}
    assert eff[("to_threshold", "complex")]["mean"] == 100
    assert eff[("to_threshold", "dual")]["mean"] == 300
    assert "steps to threshold" in res["answer"] and "(complex lower)" in res["answer"]


def test_ablation_names_the_best_level_and_whether_it_is_separated():
    def rows(fds: dict[str, list[float]]) -> list[dict]:
        return [{"experiment": "norm", "pipeline": "spectral", "seed": s, "f:norm": lv,
                 "sampler": "dpmsolver++", "nfe": 20, "fd": fd, "reference": False}
                for lv, v in fds.items() for s, fd in enumerate(v)]

    res = A.ablation(_tables(rows({"group": [2.0, 2.1, 1.9], "none": [5.0, 5.2, 4.8]})), {})
    assert res["verdict"] == "separated" and "norm=group 2 ± " in res["answer"]
    assert "not separated" not in res["answer"]
    res = A.ablation(_tables(rows({"group": [5.0, 5.1, 4.9], "none": [2.0, 2.1, 1.9]})), {})
    assert "norm=none 2 ± " in res["answer"]  # swapped data, swapped answer
    res = A.ablation(_tables(rows({"group": [2.0, 4.0, 3.0], "none": [2.5, 4.5, 3.5]})), {})
    assert res["verdict"] == "inconclusive" and "not separated from norm=none" in res["answer"]


def test_q3_some_bins_separated_is_partly_with_the_chance_count():
    band = []
    for seed, jitter in enumerate((0.0, 0.01, -0.01)):   # bin 0 separated
        band += _band("uniform", seed, [[1.0 + jitter], [1.0 + 10 * jitter]])
        band += _band("min_snr", seed, [[2.0 + jitter], [1.0 - 10 * jitter]])  # bin 1 ties
    res = A.q3(_tables(band=band), {"factors": ["weighting"]})
    assert res["verdict"] == "partly" and res["comparisons"] == 2
    assert res["answer"].startswith("Separated in 1 of 2 bins only (about 0.1 expected")
    assert "t-bin 0 uniform, t-bin 1 inconclusive" in res["answer"]
