"""Main effects, S/N, ANOVA and the best combination against a hand-computed L4 example.

L4 (Taguchi's table, levels 1/2 -> a1/a2 ...), two repeats per row:

    row  A  B  C   y1 y2   mean   S/N smaller-is-better = -10 log10(mean y^2)
    1    1  1  1   1  3    2      -10 log10(5)  = -6.98970
    2    1  2  2   4  6    5      -10 log10(26) = -14.14973
    3    2  1  2   5  7    6      -10 log10(37) = -15.68202
    4    2  2  1   8  8    8      -10 log10(64) = -18.06180

grand mean 42/8 = 5.25; level means A 3.5 / 7.0, B 4.0 / 6.5, C 5.0 / 5.5.
SS_T = 43.5; SS_A = 8 * 1.75^2 = 24.5, SS_B = 8 * 1.25^2 = 12.5, SS_C = 8 * 0.25^2 = 0.5;
SS_e = 43.5 - 37.5 = 6.0 (= pure error within rows: 2 + 2 + 2 + 0), df_e = 7 - 3 = 4,
MS_e = 1.5; F_A = 16.333, F_B = 8.333, F_C = 0.333; contribution A = 24.5 / 43.5 = 56.32%.
Best by S/N: a1 b1 c1 (row 1, so it was run); predicted 5.25 - 1.75 - 1.25 - 0.25 = 2.0.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from evaluator.sweeps.analysis import analyze_records, format_text, sn_ratio

ROWS = [("a1", "b1", "c1", [1, 3]), ("a1", "b2", "c2", [4, 6]),
        ("a2", "b1", "c2", [5, 7]), ("a2", "b2", "c1", [8, 8])]
FACTORS = {"A": ["a1", "a2"], "B": ["b1", "b2"], "C": ["c1", "c2"]}


def _records():
    return [{"levels": {"A": a, "B": b, "C": c}, "value": float(y)}
            for a, b, c, ys in ROWS for y in ys]


def _level(res, f, label):
    return next(e for e in res["main_effects"][f] if e["level"] == label)


def test_main_effects_and_spread_match_the_hand_computation():
    res = analyze_records(_records(), FACTORS)
    assert res["grand_mean"] == pytest.approx(5.25) and res["n_obs"] == 8
    want = {("A", "a1"): 3.5, ("A", "a2"): 7.0, ("B", "b1"): 4.0, ("B", "b2"): 6.5,
            ("C", "c1"): 5.0, ("C", "c2"): 5.5}
    for (f, lv), m in want.items():
        assert _level(res, f, lv)["mean"] == pytest.approx(m)
        assert _level(res, f, lv)["n"] == 4
    # sd of A=a1's observations 1, 3, 4, 6: sqrt(13/3)
    assert _level(res, "A", "a1")["sd"] == pytest.approx(math.sqrt(13 / 3))
    # 95% CI half-width: t_{0.975,3} = 3.18245 (t-table) * sd / 2
    assert _level(res, "A", "a1")["ci95"] == pytest.approx(3.182446 * math.sqrt(13 / 3) / 2,
                                                          rel=1e-5)


def test_sn_ratios_match_the_hand_values_and_pydoe():
    import pydoe

    res = analyze_records(_records(), FACTORS, sn="smaller")
    row_sn = {tuple(r["levels"].values()): r["sn"] for r in res["rows"]}
    assert row_sn[("a1", "b1", "c1")] == pytest.approx(-6.98970, abs=1e-5)
    assert row_sn[("a2", "b2", "c1")] == pytest.approx(-18.06180, abs=1e-5)
    assert _level(res, "A", "a1")["sn"] == pytest.approx((-6.98970 - 14.14973) / 2, abs=1e-5)
    for *_, ys in ROWS:  # an independent implementation of the same formulas
        y = np.array(ys, float)
        for kind, obj in [("smaller", pydoe.TaguchiObjective.SMALLER_IS_BETTER),
                          ("larger", pydoe.TaguchiObjective.LARGER_IS_BETTER)]:
            assert sn_ratio(ys, kind) == pytest.approx(pydoe.compute_snr(y, obj))
    assert sn_ratio([4.0, 6.0], "nominal") == pytest.approx(10 * math.log10(25 / 2))
    assert sn_ratio([8.0, 8.0], "nominal") is None  # no variance: undefined, not infinite


def test_ranking_by_delta_of_sn():
    res = analyze_records(_records(), FACTORS)
    rk = res["ranking"]
    assert [r["factor"] for r in rk] == ["A", "B", "C"] and [r["rank"] for r in rk] == [1, 2, 3]
    assert rk[0]["delta_mean"] == pytest.approx(3.5)
    assert rk[0]["delta_sn"] == pytest.approx((-6.98970 - 14.14973) / 2
                                              - (-15.68202 - 18.06180) / 2, abs=1e-5)


def test_anova_matches_the_hand_computation():
    from scipy.stats import f as f_dist

    a = analyze_records(_records(), FACTORS)["anova"]
    rows = {r["source"]: r for r in a["table"]}
    assert a["total"] == {"df": 7, "ss": pytest.approx(43.5)}
    for f, ss, fv in [("A", 24.5, 49 / 3), ("B", 12.5, 25 / 3), ("C", 0.5, 1 / 3)]:
        assert rows[f]["df"] == 1 and rows[f]["ss"] == pytest.approx(ss)
        assert rows[f]["f"] == pytest.approx(fv, rel=1e-6)
        assert rows[f]["p"] == pytest.approx(f_dist.sf(fv, 1, 4), rel=1e-5)
        assert rows[f]["pct"] == pytest.approx(100 * ss / 43.5)
    assert a["error"]["df"] == 4 and a["error"]["ss"] == pytest.approx(6.0)
    assert a["error"]["ms"] == pytest.approx(1.5) and a["note"] is None
    assert rows["A"]["pct"] == pytest.approx(56.32, abs=0.01)


def test_saturated_design_without_repeats_has_no_f():
    one = [r for i, r in enumerate(_records()) if i % 2 == 0]
    a = analyze_records(one, FACTORS)["anova"]
    assert a["error"]["df"] == 0 and all(r["f"] is None for r in a["table"])
    assert "no error degrees of freedom" in a["note"]


def test_best_combination_and_whether_it_was_run():
    res = analyze_records(_records(), FACTORS)
    assert res["best"] == {"levels": {"A": "a1", "B": "b1", "C": "c1"},
                           "predicted_mean": pytest.approx(2.0), "was_run": True}
    # without row 1 the same best combination is predicted but was not run
    res = analyze_records(_records()[2:], FACTORS)
    assert res["best"]["was_run"] is False
    # larger-is-better flips the choice
    res = analyze_records(_records(), FACTORS, sn="larger", direction="maximize")
    assert res["best"]["levels"] == {"A": "a2", "B": "b2", "C": "c2"}
    assert "best predicted: A=a2, B=b2, C=c2" in format_text(res)


def test_figures_and_html_from_a_study(tmp_path):
    import optuna
    from optuna.distributions import CategoricalDistribution

    from evaluator.sweeps.analysis import analyze, write_html
    from evaluator.sweeps.spec import from_data
    from evaluator.sweeps.study import create_or_resume, list_studies, make_storage
    from tests.evaluator.sweep_helpers import tiny_sweep

    data = tiny_sweep()
    data["factors"] = {"A": {"path": "train.lr", "levels": [0.001, 0.002]},
                       "B": {"path": "train.seed", "levels": [1, 2]},
                       "C": {"path": "train.batch_size", "levels": [4, 8]}}
    ls = from_data(data)
    path = tmp_path / "sweeps" / "tiny_l4" / "journal.log"
    study = create_or_resume(ls, make_storage(str(path)), tmp_path)
    lab = {"a1": "0.001", "a2": "0.002", "b1": "1", "b2": "2", "c1": "4", "c2": "8"}
    for a, b, c, ys in ROWS:
        for y in ys:
            lv = {"A": lab[a], "B": lab[b], "C": lab[c]}
            study.add_trial(optuna.create_trial(
                value=y, params=lv, user_attrs={"levels": lv},
                distributions={k: CategoricalDistribution(ls.sweep.factors[k].labels())
                               for k in lv}))
    res, figs = analyze("tiny_l4", str(path))
    assert _level(res, "A", "0.001")["mean"] == pytest.approx(3.5)
    assert res["anova"]["error"]["ss"] == pytest.approx(6.0)
    assert set(figs) == {"main_effects", "sn", "parallel"}
    assert len(figs["parallel"].data[0].dimensions) == 4
    html = write_html(res, figs, tmp_path / "a.html").read_text()
    assert "<h2>ANOVA</h2>" in html and "plotly" in html.lower()
    assert [s["name"] for s in list_studies(tmp_path)] == ["tiny_l4"]
