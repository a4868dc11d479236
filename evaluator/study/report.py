"""``study.md`` and a self-contained ``study.html`` (plotly.js inline, no CDN) from a
study's stored results: one section per question with the question, the design, the
figures, a table with CIs, the computed answer and what the evidence does not show.

Nothing trains or samples here; the tables come from :mod:`evaluator.study.collect`.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from evaluator.study import analyses as A
from evaluator.study import figures as F
from evaluator.study.stats import fmt

LIMITS = {
    "q1_nfe": ["NFE-to-match compares mean curves over training seeds at one training "
               "budget; longer training can move both the baseline and the curves.",
               "ms per NFE is measured inside the study's workers, which share the "
               "machine with each other and anything else running, so the equal-time "
               "table is noisy (`archsearch profile A B` measures the ratio side by side); "
               "another device changes the wall-clock comparison, not the NFE one."],
    "q2_stability": ["Convergence is scored with one cheap sampler on snapshots; the "
                     "threshold is relative to this study's own runs.",
                     "Factors from a fractional design are main effects: interactions "
                     "are aliased with other columns."],
    "q3_weighting": ["The per-timestep error is the regression error on held-out data, "
                     "not sample quality; a lower error in one t-bin need not lower FD.",
                     "With a seed-rotated (latin) design each combination has one seed: "
                     "intervals are over the other factor's levels as well as seeds."],
    "ablation": ["One factor (or a small grid) at a time around the example spec: an "
                 "effect found here may not hold with other components changed."],
    "q4_robustness": ["Robustness is measured over this study's lr grid, samplers and clip "
                      "policies only; other perturbations (data, resolution) are not "
                      "covered."],
}


def restrict(tables: dict[str, list[dict]], experiments: list[str]) -> dict[str, list[dict]]:
    return {k: [r for r in v if r["experiment"] in experiments] for k, v in tables.items()}


def sections(plan: dict[str, Any], tables: dict[str, list[dict]]) -> list[dict[str, Any]]:
    """Per question: its text, design lines, analysis numbers and answer."""
    from evaluator.study.model import dataset_of, from_data

    ls = from_data(plan["study"])
    out = []
    for qn, q in ls.study.questions.items():
        t = restrict(tables, q.experiments)
        res = A.ANALYSIS[q.analysis](t, dict(q.settings))
        # one dataset per question (the study file is checked for it)
        res["numbers"]["metric"] = f"FD-{dataset_of(ls, q.experiments[0], plan['budget'])}"
        out.append({"key": qn, "question": q.text, "analysis": q.analysis,
                    "design": design_lines(ls, plan, q.experiments, t), **res,
                    "limits": limits(q.analysis, ls, plan, res, q.experiments)})
    return out


def design_lines(ls: Any, plan: dict, experiments: list[str], t: dict) -> list[str]:
    from evaluator.study.model import cells, sampler_settings, sizes

    b = plan["budget"]
    bd, z = ls.study.budgets[b], sizes(ls, experiments[0], b)
    lines = [f"budget `{b}`: {z['dataset']} {z['image_size']}x{z['image_size']}, "
             f"{z['train_steps']} training steps at batch {z['batch_size']}; "
             f"FD-{z['dataset']} (in-project extractor) on N={z['num_samples']} samples per "
             "noise seed, noise "
             f"seeds {bd.noise_seeds}; commit {plan.get('commit') or 'unknown'}"]
    for en in experiments:
        e = ls.study.experiments[en]
        d = e.design_of(b)
        cs = cells(ls, en, b)
        fac = "; ".join(f"{k}: {', '.join(f.labels())}" for k, f in e.factors.items()) or "none"
        runs = [r for r in t["runs"] if r["experiment"] == en]
        done = sum(r["state"] == "COMPLETE" for r in runs)
        smp = ", ".join(f"{s['name']} {s['steps']}" for s in sampler_settings(ls, en))
        lines.append(
            f"`{en}`: pipelines {', '.join(e.pipelines)}; factors {fac}; design {d.type}"
            f"{' ' + d.array if d.array else ''}; training seeds "
            f"{sorted({c['seed'] for c in cs})}; {len(cs)} runs per pipeline "
            f"({done}/{len(cs) * len(e.pipelines)} finished, "
            f"{sum(r['state'] == 'FAIL' for r in runs)} failed); samplers {smp}"
            + (f"; clip policies {', '.join(e.clip_probe.policies)}" if e.clip_probe else ""))
    return lines


def limits(analysis: str, ls: Any, plan: dict, res: dict, experiments: list[str]
           ) -> list[str]:
    from evaluator.study.model import sizes

    z = sizes(ls, experiments[0], plan["budget"])
    out = list(LIMITS[analysis])
    out.append(f"FD-{z['dataset']} uses the in-project extractor, not Inception: its numbers "
               "are comparable within this study only, never with published FID.")
    if z["image_size"] <= 8:
        out.append(f"Measured at {z['image_size']}x{z['image_size']} with {z['train_steps']} "
                   "training steps; nothing here shows the behaviour at 32x32 or with the "
                   "full budget.")
    if res.get("comparisons", 0) > 1:
        k = res["comparisons"]
        out.append(f"Multiple comparisons: {k} intervals compared at 95% each, uncorrected; "
                   f"about {0.05 * k:.1f} separations are expected by chance.")
    return out


def write(plan: dict[str, Any], tables: dict[str, list[dict]], out_dir: str | Path
          ) -> tuple[Path, Path]:
    """Write ``study.md``, ``study.html`` and ``study.json`` (the numbers) to ``out_dir``."""
    from evaluator.store.atomic import atomic_write

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    secs = sections(plan, tables)
    name = plan["study"]["study"]["name"]
    md, page = markdown(name, plan, secs), html_page(name, plan, secs)
    paths = (out_dir / "study.md", out_dir / "study.html")
    atomic_write(paths[0], lambda f: f.write(md), mode="w")
    atomic_write(paths[1], lambda f: f.write(page), mode="w")
    numbers = [{k: s[k] for k in ("key", "verdict", "answer", "comparisons")} for s in secs]
    atomic_write(out_dir / "study.json",
                 lambda f: f.write(json.dumps(numbers, indent=1, default=str)), mode="w")
    return paths


def markdown(name: str, plan: dict, secs: list[dict]) -> str:
    lines = [f"# Study `{name}` (budget `{plan['budget']}`)", "",
             "Figures: see `study.html` next to this file (self-contained, offline).", ""]
    for s in secs:
        lines += [section_head_md(s), section_body_md(s)]
    return "\n".join(lines)


def section_head_md(s: dict[str, Any]) -> str:
    """A section's question and design lines (Markdown); the app shows them above the
    figures, the report above the tables."""
    lines = [f"## {s['key'].upper()}: {s['question']}", "", "**Design.**", ""]
    return "\n".join(lines + [f"- {d}" for d in s["design"]] + [""])


def section_body_md(s: dict[str, Any]) -> str:
    """A section's tables with CIs, its computed answer and what the evidence does not show."""
    lines: list[str] = []
    for title, rows in tables_of(s):
        lines += [f"**{title}**", "", _md_table(rows), ""]
    lines += [f"**Answer ({s['verdict']}).** {s['answer']}", "",
              "**What the evidence does not show.**", ""]
    return "\n".join(lines + [f"- {x}" for x in s["limits"]] + [""])


def html_page(name: str, plan: dict, secs: list[dict]) -> str:
    from plotly.offline import get_plotlyjs

    body = []
    for s in secs:
        figs = "".join(f.to_html(full_html=False, include_plotlyjs=False)
                       for f in F.figures(s, s["numbers"].get("metric", "FD")))
        tabs = "".join(f"<h4>{html.escape(t)}</h4>{_html_table(r)}" for t, r in tables_of(s))
        body.append(
            f"<h2>{html.escape(s['key'].upper())}: {html.escape(s['question'])}</h2>"
            f"<h3>Design</h3><ul>{''.join(f'<li>{html.escape(d)}</li>' for d in s['design'])}"
            f"</ul><h3>Figures</h3>{figs}<h3>Tables</h3>{tabs}"
            f"<h3>Answer ({html.escape(s['verdict'])})</h3><p>{html.escape(s['answer'])}</p>"
            f"<h3>What the evidence does not show</h3>"
            f"<ul>{''.join(f'<li>{html.escape(x)}</li>' for x in s['limits'])}</ul>")
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Study {html.escape(name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px}}
</style><script type="text/javascript">{get_plotlyjs()}</script></head><body>
<h1>Study {html.escape(name)} (budget {html.escape(plan['budget'])})</h1>
{''.join(body)}</body></html>
"""


def tables_of(s: dict[str, Any]) -> list[tuple[str, list[list[str]]]]:
    """The section's tables, every FD header named with its extractor (FD-digits)."""
    tabs = {"q1_nfe": _q1_tables, "q2_stability": _q2_tables, "q3_weighting": _q3_tables,
            "q4_robustness": _q4_tables, "ablation": _ablation_tables}[s["analysis"]](
                s["numbers"])
    name = s["numbers"].get("metric", "FD")
    return [(label(title, name), [[label(c, name) for c in rows[0]], *rows[1:]])
            for title, rows in tabs]


def label(text: str, metric: str) -> str:
    import re

    return re.sub(r"\bFD\b", metric, text)


def _q1_tables(n: dict) -> list[tuple[str, list[list[str]]]]:
    curves = [["pipeline", "sampler", "NFE", "FD mean ± 95% CI", "seeds"]] + [
        [c["pipeline"], c["sampler"], str(c["nfe"]), fmt(c), str(c["seeds"])]
        for c in n["curves"]] + [[r["pipeline"], "ddpm (reference)", str(r["nfe"]), fmt(r),
                                   str(r["seeds"])] for r in n["reference"]]
    match = [["pipeline", "sampler", "target FD", "NFE to match [95% bootstrap CI]",
              "verdict"]] + [[m["pipeline"], m["sampler"], f"{m['target']:.4g}",
                              A._nfe_text(m), m.get("verdict", "")] for m in n["match"]]
    wall = [["pipeline", "sampler", "time budget (ms)", "affordable NFE", "FD at equal time",
             "seeds outside measured NFE"]] + [
        [w["pipeline"], w["sampler"], f"{w['budget_ms']:.4g}",
         "-" if w["nfe"] is None else f"{w['nfe']:.3g}", fmt(w), str(w["outside"])]
        for w in n["wall"]]
    return [("Quality against NFE", curves),
            (f"NFE to match {n['baseline']} at {n['baseline_nfe']} NFE", match),
            (f"Quality at the sampling time of {n['baseline']} at {n['baseline_nfe']} NFE",
             wall)]


def _level_table(rows: list[dict], value: str = "measure") -> list[list[str]]:
    return [["factor", value, "level", "mean ± 95% CI", "seeds"]] + [
        [r["factor"], r.get("measure", ""), str(r["level"]), fmt(r), str(r["seeds"])]
        for r in rows]


def _q2_tables(n: dict) -> list[tuple[str, list[list[str]]]]:
    thr = n["threshold"]
    div = [["factor", "level", "diverged / runs", "95% Wilson"]] + [
        [d["factor"], str(d["level"]), f"{d['diverged']}/{d['runs']}",
         "-" if d["wilson"] is None else f"[{d['wilson'][0]:.2f}, {d['wilson'][1]:.2f}]"]
        for d in n["divergence"]]
    return [(f"Factor effects (threshold FD {thr if thr is None else f'{thr:.4g}'})",
             _level_table(n["effects"])), ("Divergence (non-finite loss or gradient)", div)]


def _q3_tables(n: dict) -> list[tuple[str, list[list[str]]]]:
    best = [["factor", "pipeline", "t-bin", "lowest error", "error mean ± CI", "runner-up",
             "separated"]] + [[b["factor"], b["pipeline"], str(b["t_bin"]), str(b["best"]),
                               fmt(b), str(b["runner_up"]), "yes" if b["decided"] else "no"]
                              for b in n["best"]]
    fd = [["pipeline", "levels", "sampler", "NFE", "FD mean ± CI", "seeds"]] + [
        [r["pipeline"], r["level"], r["sampler"], str(r["nfe"]), fmt(r), str(r["seeds"])]
        for r in n["fd"]]
    return [("Lowest denoising error per t-bin (summed over bands)", best), ("FD", fd)]


def _q4_tables(n: dict) -> list[tuple[str, list[list[str]]]]:
    rows = [["pipeline", "FD spread over lr [bootstrap]", "mean CI width over seeds",
             "worst case over samplers x clip", "diverged / runs"]]
    for p, m in n["robustness"].items():
        rows.append([p, A._num(m["lr_spread"]), A._num(m["ci_width"]), A._num(m["worst"]),
                     A._num(m["divergence"])])
    return [("Robustness", rows)]


def _ablation_tables(n: dict) -> list[tuple[str, list[list[str]]]]:
    rows = [["experiment", "pipeline", "sampler", "NFE", "levels", "FD mean ± 95% CI",
             "seeds"]] + [[r["experiment"], r["pipeline"], r["sampler"], str(r["nfe"]),
                           r["level"], fmt(r), str(r["seeds"])] for r in n["table"]]
    return [("FD per level", rows)]


def _md_table(rows: list[list[str]]) -> str:
    if len(rows) < 2:
        return "(no results)"
    head = "| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0])
    return head + "\n" + "\n".join("| " + " | ".join(r) + " |" for r in rows[1:])


def _html_table(rows: list[list[str]]) -> str:
    if len(rows) < 2:
        return "<p>(no results)</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                   for r in rows[1:])
    return f"<table><tr>{head}</tr>{body}</table>"
