"""Analysis of a sweep: main effects, Taguchi S/N ratios, ranking, ANOVA, best combination.

Definitions (Taguchi; e.g. Phadke, *Quality Engineering Using Robust Design*, 1989, ch. 3;
Montgomery, *Design and Analysis of Experiments*, ch. 12):

- main effect of level l of factor F: the mean of every observation (row x repeat) run at
  F = l; its spread is the standard deviation of those observations and the 95% Student-t
  half-width of their mean;
- S/N of a row with repeats y_1..y_n: smaller-is-better ``-10 log10(mean y^2)``,
  larger-is-better ``-10 log10(mean 1/y^2)``, nominal-is-best ``10 log10(ybar^2 / s^2)``;
  the S/N of a level is the mean S/N of the rows run at it; higher is always better;
- delta of a factor: max - min of its level values; factors are ranked by delta (of S/N);
- ANOVA on the observations: SS_F = sum_l n_l (ybar_l - ybar)^2 with L_F - 1 degrees of
  freedom; the error is what the factors leave of SS_total; F = MS_F / MS_error when the
  error has degrees of freedom (repeats, or free columns); % contribution = SS_F / SS_T;
- best predicted combination: per factor the level of highest S/N; the predicted mean is
  the additive model ``ybar + sum_F (ybar_{F,best} - ybar)``.
"""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

SN_TYPES = ("smaller", "larger", "nominal")


def sn_ratio(values: list[float], kind: str) -> float | None:
    """Taguchi signal-to-noise ratio in dB (None where undefined)."""
    ys = [float(v) for v in values]
    if not ys:
        return None
    if kind == "smaller":
        ms = sum(y * y for y in ys) / len(ys)
        return -10 * math.log10(ms) if ms > 0 else None
    if kind == "larger":
        if any(y == 0 for y in ys):
            return None
        return -10 * math.log10(sum(1 / (y * y) for y in ys) / len(ys))
    if kind == "nominal":
        if len(ys) < 2:
            return None
        m = sum(ys) / len(ys)
        var = sum((y - m) ** 2 for y in ys) / (len(ys) - 1)
        return 10 * math.log10(m * m / var) if var > 0 and m != 0 else None
    raise ValueError(f"unknown S/N type {kind!r}; choose from {SN_TYPES}")


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _sd(xs: list[float]) -> float | None:
    if len(xs) < 2:
        return None
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _ci95(xs: list[float]) -> float | None:
    sd = _sd(xs)
    if sd is None:
        return None
    from scipy.stats import t as student_t

    return float(student_t.ppf(0.975, len(xs) - 1)) * sd / math.sqrt(len(xs))


def analyze_records(records: list[dict[str, Any]], factors: dict[str, list[str]],
                    sn: str = "smaller", direction: str = "minimize") -> dict[str, Any]:
    """Main effects, S/N, ranking, ANOVA and best combination of observations.

    Args:
        records: ``{"levels": {factor: label}, "value": float}`` per observation (one
            per row x repeat); observations with the same levels form one row.
        factors: factor -> its level labels, in order.
        sn: S/N type (smaller, larger, nominal).
        direction: the objective's direction (which main-effect level is "best" by mean).
    """
    obs = [r for r in records if r.get("value") is not None and math.isfinite(r["value"])]
    rows: dict[tuple, dict[str, Any]] = {}
    for r in obs:
        key = tuple(r["levels"][f] for f in factors)
        rows.setdefault(key, {"levels": dict(zip(factors, key)), "values": []})
        rows[key]["values"].append(float(r["value"]))
    for row in rows.values():
        v = row["values"]
        row.update(mean=_mean(v), sd=_sd(v), sn=sn_ratio(v, sn))
    ys = [float(r["value"]) for r in obs]
    grand = _mean(ys)
    effects = _main_effects(obs, list(rows.values()), factors)
    out = {"n_obs": len(obs), "n_rows": len(rows), "grand_mean": grand, "sn_type": sn,
           "direction": direction, "factors": factors, "rows": list(rows.values()),
           "main_effects": effects, "ranking": _ranking(effects),
           "anova": anova(obs, factors) if obs else None}
    out["best"] = best_combination(out)
    return out


def _main_effects(obs: list[dict], rows: list[dict], factors: dict[str, list[str]]
                  ) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for f, labels in factors.items():
        lv = []
        for label in labels:
            vals = [float(r["value"]) for r in obs if r["levels"][f] == label]
            sns = [r["sn"] for r in rows if r["levels"][f] == label and r["sn"] is not None]
            lv.append({"level": label, "n": len(vals), "mean": _mean(vals), "sd": _sd(vals),
                       "ci95": _ci95(vals), "sn": _mean(sns)})
        out[f] = lv
    return out


def _delta(xs: list[float | None]) -> float | None:
    xs = [x for x in xs if x is not None]
    return max(xs) - min(xs) if len(xs) >= 2 else None


def _ranking(effects: dict[str, list[dict]]) -> list[dict[str, Any]]:
    """Factors by delta of S/N (delta of means where S/N is undefined), largest first."""
    rk = [{"factor": f, "delta_mean": _delta([e["mean"] for e in lv]),
           "delta_sn": _delta([e["sn"] for e in lv])} for f, lv in effects.items()]
    rk.sort(key=lambda r: -(r["delta_sn"] if r["delta_sn"] is not None
                            else (r["delta_mean"] or 0.0)))
    for i, r in enumerate(rk, 1):
        r["rank"] = i
    return rk


def anova(obs: list[dict[str, Any]], factors: dict[str, list[str]]) -> dict[str, Any]:
    """Main-effects ANOVA of the observations (valid for balanced orthogonal designs)."""
    ys = [float(r["value"]) for r in obs]
    n, grand = len(ys), sum(ys) / len(ys)
    ss_total = sum((y - grand) ** 2 for y in ys)
    table, ss_f, df_f = [], 0.0, 0
    for f, labels in factors.items():
        ss, present = 0.0, 0
        for label in labels:
            vals = [float(r["value"]) for r in obs if r["levels"][f] == label]
            if vals:
                present += 1
                ss += len(vals) * (sum(vals) / len(vals) - grand) ** 2
        df = max(present - 1, 0)
        table.append({"source": f, "df": df, "ss": ss})
        ss_f += ss
        df_f += df
    df_e = n - 1 - df_f
    ss_e = max(ss_total - ss_f, 0.0)
    ms_e = ss_e / df_e if df_e > 0 else None
    from scipy.stats import f as f_dist

    for row in table:
        row["ms"] = row["ss"] / row["df"] if row["df"] else None
        row["pct"] = 100 * row["ss"] / ss_total if ss_total > 0 else None
        if ms_e and row["ms"] is not None:
            row["f"] = row["ms"] / ms_e
            row["p"] = float(f_dist.sf(row["f"], row["df"], df_e))
        else:
            row["f"] = row["p"] = None
    error = {"source": "error", "df": df_e, "ss": ss_e, "ms": ms_e,
             "pct": 100 * ss_e / ss_total if ss_total > 0 else None, "f": None, "p": None}
    return {"table": table, "error": error, "total": {"df": n - 1, "ss": ss_total},
            "note": None if df_e > 0 else
            "no error degrees of freedom (saturated design, one repeat): F is not defined; "
            "add repeats or leave array columns free"}


def best_combination(res: dict[str, Any]) -> dict[str, Any] | None:
    """Per factor the level with the highest S/N (by mean, per direction, without S/N)."""
    if not res["n_obs"]:
        return None
    sign = -1 if res["direction"] == "minimize" else 1
    levels = {}
    for f, lv in res["main_effects"].items():
        cands = [e for e in lv if e["n"]]
        if all(e["sn"] is not None for e in cands):
            levels[f] = max(cands, key=lambda e: e["sn"])["level"]
        else:
            levels[f] = max(cands, key=lambda e: sign * e["mean"])["level"]
    g = res["grand_mean"]
    pred = g + sum(next(e["mean"] for e in res["main_effects"][f] if e["level"] == lv) - g
                   for f, lv in levels.items())
    was_run = any(r["levels"] == levels for r in res["rows"])
    return {"levels": levels, "predicted_mean": pred, "was_run": was_run}


# ---- from a study -------------------------------------------------------------------------
def records_of(study: Any) -> list[dict[str, Any]]:
    """One observation per completed trial (per repeat for open designs)."""
    from optuna.trial import TrialState

    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        lv = t.user_attrs.get("levels")
        if not lv:
            continue
        vals = t.user_attrs.get("repeat_values") or [t.value]
        out += [{"levels": lv, "value": v, "trial": t.number} for v in vals]
    return out


def analyze(study_name: str, storage: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Plain analysis data and plotly figures of a sweep study (used by the CLI and app).

    ``storage`` is a URL / journal path or an Optuna storage object."""
    from evaluator.sweeps.study import load_study, make_storage

    if isinstance(storage, (str, Path)):
        storage = make_storage(str(storage))
    study, ls = load_study(study_name, storage)
    obj = ls.sweep.objective
    res = analyze_records(records_of(study), {f: ls.sweep.factors[f].labels()
                                              for f in ls.factor_names},
                          sn=obj.sn_type, direction=obj.direction)
    res.update(study=study_name, objective=obj.key, design=ls.sweep.design.model_dump(),
               array=ls.array, repeats=ls.sweep.repeats,
               eval_settings=_eval_settings(study, ls) if obj.sampler else None)
    if res["best"] is not None:
        res["best"]["confirmed"] = study.user_attrs.get("confirm")
    if ls.fixed and res["anova"] is not None and res["n_rows"] < len(ls.rows):
        res["anova"]["note"] = (f"only {res['n_rows']} of {len(ls.rows)} design rows have "
                                "results: the design is no longer balanced, so effects are "
                                "partly confounded and the ANOVA is only indicative")
    if not ls.fixed and res["anova"] is not None:
        res["anova"]["note"] = ("open-ended design (random/tpe): levels are not balanced, "
                                "so the ANOVA is only indicative")
    return res, figures(res)


def _eval_settings(study: Any, ls: Any) -> dict[str, Any] | None:
    """N, seeds and clip policy of the evaluations behind the objective (from the first
    completed trial's run; every row is evaluated under the same budget)."""
    from optuna.trial import TrialState

    from evaluator.store.rundir import RunDir
    from evaluator.sweeps.spec import budget_of

    budget = budget_of(ls.sweep).name
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        run = t.user_attrs.get("run")
        ev = RunDir(Path(run)).read_metrics().eval.get(budget) if run else None
        if ev is not None:
            st = ev.settings
            return {"budget": st.budget, "num_samples": st.num_samples, "seeds": st.seeds,
                    "clip": st.clip}
    return None


# ---- charts and tables ------------------------------------------------------------------
def figures(res: dict[str, Any]) -> dict[str, Any]:
    """Plotly figures: main effects, S/N per level, parallel coordinates."""
    title = f"Main effects: mean {res.get('objective', '')}"
    return {"main_effects": _effects_figure(res, "mean", title),
            "sn": _effects_figure(res, "sn", f"S/N ratio ({res['sn_type']}-is-better, dB)"),
            "parallel": _parallel_figure(res)}


def _effects_figure(res: dict[str, Any], key: str, title: str):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fs = list(res["main_effects"])
    fig = make_subplots(rows=1, cols=max(len(fs), 1), shared_yaxes=True, subplot_titles=fs)
    for i, f in enumerate(fs, 1):
        lv = res["main_effects"][f]
        err = [e["ci95"] or 0.0 for e in lv] if key == "mean" else None
        fig.add_trace(go.Scatter(x=[e["level"] for e in lv], y=[e[key] for e in lv],
                                 mode="lines+markers", name=f, showlegend=False,
                                 error_y=dict(type="data", array=err) if err else None),
                      row=1, col=i)
    if res["grand_mean"] is not None and key == "mean":
        fig.add_hline(y=res["grand_mean"], line_dash="dot", line_color="grey")
    fig.update_layout(title=title, height=360, width=max(420, 200 * len(fs)))
    return fig


def _parallel_figure(res: dict[str, Any]):
    import plotly.graph_objects as go

    dims = []
    for f, labels in res["factors"].items():
        dims.append({"label": f, "tickvals": list(range(len(labels))), "ticktext": labels,
                     "values": [labels.index(r["levels"][f]) for r in res["rows"]]})
    means = [r["mean"] for r in res["rows"]]
    dims.append({"label": res.get("objective") or "objective", "values": means})
    fig = go.Figure(go.Parcoords(line={"color": means, "colorscale": "Viridis",
                                       "showscale": True}, dimensions=dims))
    fig.update_layout(title="Parallel coordinates (one line per row, mean over repeats)",
                      height=420)
    return fig


def _num(v: Any, fmt: str = ".4g") -> str:
    return "-" if v is None else format(v, fmt)


def tables(res: dict[str, Any]) -> dict[str, list[list[str]]]:
    """The analysis as plain tables (header row first)."""
    eff = [["factor", "level", "n", "mean", "sd", "95% CI", "S/N dB"]]
    for f, lv in res["main_effects"].items():
        eff += [[f, e["level"], str(e["n"]), _num(e["mean"]), _num(e["sd"]),
                 _num(e["ci95"], ".2g"), _num(e["sn"], ".3f")] for e in lv]
    rank = [["rank", "factor", "delta S/N dB", "delta mean"]]
    rank += [[str(r["rank"]), r["factor"], _num(r["delta_sn"], ".3f"), _num(r["delta_mean"])]
             for r in res["ranking"]]
    an = [["source", "df", "SS", "MS", "F", "p", "% contribution"]]
    a = res.get("anova")
    if a:
        for row in [*a["table"], a["error"]]:
            an.append([row["source"], str(row["df"]), _num(row["ss"]), _num(row["ms"]),
                       _num(row["f"], ".3f"), _num(row["p"], ".3g"), _num(row["pct"], ".1f")])
        an.append(["total", str(a["total"]["df"]), _num(a["total"]["ss"]), "", "", "", "100"])
    return {"main_effects": eff, "ranking": rank, "anova": an}


def _text_table(rows: list[list[str]]) -> str:
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(x) for c, x in zip(r, w)).rstrip() for r in rows)


def format_text(res: dict[str, Any]) -> str:
    t = tables(res)
    lines = [f"sweep {res.get('study', '')}: objective {res.get('objective', '')} "
             f"({res['direction']}), S/N {res['sn_type']}-is-better; {res['n_obs']} "
             f"observations in {res['n_rows']} rows, grand mean {_num(res['grand_mean'])}",
             *([f"evaluation: N={st['num_samples']} samples per row, seeds {st['seeds']}, "
                f"clip policy {st['clip']}, budget {st['budget']}"]
               if (st := res.get("eval_settings")) else []),
             "", "Main effects", _text_table(t["main_effects"]), "",
             "Ranking (by delta of S/N)", _text_table(t["ranking"]), "",
             "ANOVA", _text_table(t["anova"])]
    a = res.get("anova")
    if a and a.get("note"):
        lines.append(f"note: {a['note']}")
    b = res.get("best")
    if b:
        lv = ", ".join(f"{k}={v}" for k, v in b["levels"].items())
        lines += ["", f"best predicted: {lv}; predicted mean {_num(b['predicted_mean'])}; "
                  + ("it was one of the rows run" if b["was_run"] else
                     "not run yet (archsearch sweep analyze --confirm runs it)")]
        if b.get("confirmed"):
            lines.append(f"confirmation run: {b['confirmed']}")
    return "\n".join(lines)


def write_html(res: dict[str, Any], figs: dict[str, Any], path: str | Path) -> Path:
    """A self-contained HTML page: tables and the three charts (plotly.js inlined)."""
    from plotly.offline import get_plotlyjs

    from evaluator.store.atomic import atomic_write

    def table(rows: list[list[str]]) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                       for r in rows[1:])
        return f"<table><tr>{head}</tr>{body}</table>"

    t = tables(res)
    charts = "\n".join(f.to_html(full_html=False, include_plotlyjs=False) for f in figs.values())
    summary = html.escape(format_text(res).split("\n\n")[0])
    best = html.escape(format_text(res).split("\n\n")[-1]) if res.get("best") else ""
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Sweep {html.escape(str(res.get('study', '')))}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px}}</style>
<script type="text/javascript">{get_plotlyjs()}</script></head><body>
<h1>Sweep {html.escape(str(res.get('study', '')))}</h1><p>{summary}</p>
<h2>Main effects</h2>{table(t['main_effects'])}
<h2>Ranking</h2>{table(t['ranking'])}
<h2>ANOVA</h2>{table(t['anova'])}<p>{html.escape((res.get('anova') or {}).get('note') or '')}</p>
<h2>Best predicted combination</h2><p>{best}</p>
<h2>Charts</h2>{charts}
</body></html>
"""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(p, lambda f: f.write(page), mode="w")
    return p
