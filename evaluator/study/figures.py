"""Plotly figures of a study's sections (built from the analyses' numbers only)."""
from __future__ import annotations

import math
from typing import Any


def figures(section: dict[str, Any], metric: str = "FD") -> list[Any]:
    """The section's figures, titles and axes naming the metric's extractor."""
    import re

    fn = {"q1_nfe": q1, "q2_stability": q2, "q3_weighting": q3,
          "q4_robustness": q4, "ablation": ablation}[section["analysis"]]
    figs = fn(section["numbers"])
    for f in figs:
        f.update_layout(showlegend=True)   # plotly hides a one-trace legend
        for obj in (f.layout.title, f.layout.yaxis.title):
            if obj.text:
                obj.text = re.sub(r"\bFD\b", metric, obj.text)
    return figs


def _err(rows: list[dict]) -> dict:
    return {"type": "data", "array": [r.get("ci95") or 0 for r in rows], "visible": True}


def q1(n: dict) -> list[Any]:
    import plotly.graph_objects as go

    fig = go.Figure()
    keys = sorted({(c["pipeline"], c["sampler"]) for c in n["curves"]})
    for p, s in keys:
        rows = sorted((c for c in n["curves"] if (c["pipeline"], c["sampler"]) == (p, s)),
                      key=lambda c: c["nfe"])
        fig.add_trace(go.Scatter(x=[r["nfe"] for r in rows], y=[r["mean"] for r in rows],
                                 error_y=_err(rows), mode="lines+markers", name=f"{p} {s}"))
    for r in n["reference"]:
        fig.add_hline(y=r["mean"], line_dash="dot",
                      annotation_text=f"{r['pipeline']} DDPM {r['nfe']}")
    fig.update_layout(title="FD (mean ± 95% CI over training seeds) against NFE",
                      xaxis_title="NFE", yaxis_title="FD", xaxis_type="log",
                      template="plotly_white")
    return [fig]


def q2(n: dict) -> list[Any]:
    import plotly.graph_objects as go

    fig = go.Figure()
    for lv in sorted({c["level"] for c in n["convergence"]}):
        rows = sorted((c for c in n["convergence"] if c["level"] == lv),
                      key=lambda c: c["step"])
        fig.add_trace(go.Scatter(x=[r["step"] for r in rows], y=[r["mean"] for r in rows],
                                 error_y=_err(rows), mode="lines+markers",
                                 name=" / ".join([*n["factors"], ""])[:-3] + f" = {lv}"))
    if n["threshold"] is not None:
        fig.add_hline(y=n["threshold"], line_dash="dot", annotation_text="threshold")
    fig.update_layout(title="Convergence: FD of EMA snapshots (mean ± 95% CI)",
                      xaxis_title="training step", yaxis_title="FD", template="plotly_white")
    return [fig]


def q3(n: dict) -> list[Any]:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    out = []
    for f in n["factors"]:
        for p in sorted({h["pipeline"] for h in n["heat"] if h["factor"] == f}):
            rows = [h for h in n["heat"] if (h["factor"], h["pipeline"]) == (f, p)]
            levels = sorted({h["level"] for h in rows})
            fig = make_subplots(rows=1, cols=len(levels), subplot_titles=levels)
            for i, lv in enumerate(levels):
                cell = {(h["band"], h["t_bin"]): h["mean"] for h in rows if h["level"] == lv}
                bands = sorted({b for b, _ in cell})
                bins = sorted({t for _, t in cell})
                z = [[math.log10(cell[(b, t)]) if cell.get((b, t)) else None for t in bins]
                     for b in bands]
                fig.add_trace(go.Heatmap(z=z, x=bins, y=bands, coloraxis="coloraxis"),
                              row=1, col=i + 1)
            fig.update_layout(title=f"{p}: log10 denoising error, radial band x t-bin, by {f}",
                              coloraxis={"colorscale": "Viridis",
                                         "colorbar": {"title": {"text": "log10 error"}}},
                              template="plotly_white")
            fig.update_xaxes(title_text="t-bin (0: least noise)")
            fig.update_yaxes(title_text="radial band (0: lowest frequencies)", col=1)
            out.append(fig)
    return out


def q4(n: dict) -> list[Any]:
    import plotly.graph_objects as go

    rob = n["robustness"]
    fig = go.Figure()
    for key, name in (("lr_spread", "FD spread over lr"), ("ci_width", "CI width"),
                      ("worst", "worst case FD")):
        fig.add_trace(go.Bar(x=list(rob), y=[rob[p][key]["mean"] for p in rob], name=name))
    fig.update_layout(title="Robustness measures (lower is more robust)", barmode="group",
                      xaxis_title="pipeline", yaxis_title="FD", template="plotly_white")
    return [fig]


def ablation(n: dict) -> list[Any]:
    import plotly.graph_objects as go

    fig = go.Figure()
    for key in sorted({(r["experiment"], r["pipeline"], r["sampler"], r["nfe"])
                       for r in n["table"]}):
        rows = [r for r in n["table"]
                if (r["experiment"], r["pipeline"], r["sampler"], r["nfe"]) == key]
        fig.add_trace(go.Bar(x=[f"{key[0]}: {r['level']}" for r in rows],
                             y=[r["mean"] for r in rows], error_y=_err(rows),
                             name=f"{key[1]} {key[2]} {key[3]}"))
    fig.update_layout(title="FD per level (mean ± 95% CI over training seeds)",
                      xaxis_title="experiment: level", yaxis_title="FD",
                      template="plotly_white")
    return [fig]
