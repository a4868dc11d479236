"""Plotly figures the tabs show. Only drawing: the numbers come from the core
(:mod:`evaluator.trajectory`, :mod:`evaluator.runs`, :mod:`archspec.graph`)."""
from __future__ import annotations

import math
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

DOMAIN_COLOURS = {"real": "#1f77b4", "complex": "#d62728", "dual": "#9467bd",
                  "time": "#2ca02c", "embed": "#2ca02c", None: "#7f7f7f"}
BAND_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                "#e377c2", "#7f7f7f"]


def empty(title: str = "") -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, template="plotly_white", height=300,
                      margin=dict(l=40, r=10, t=40, b=30))
    return fig


# ---- spec graph ------------------------------------------------------------------------
def graph_figure(g: Any) -> go.Figure:
    """Layered drawing of a spec graph: x = topological generation; colour = domain;
    hovering a node shows block/shape/params, hovering an edge's midpoint its tensor."""
    import networkx as nx

    pos = {}
    for x, gen in enumerate(nx.topological_generations(g)):
        for y, n in enumerate(sorted(gen)):
            pos[n] = (x, y - (len(gen) - 1) / 2)
    fig = go.Figure()
    ex, ey, mx, my, mt = [], [], [], [], []
    for a, b, d in g.edges(data=True):
        (x0, y0), (x1, y1) = pos[a], pos[b]
        ex += [x0, x1, None]
        ey += [y0, y1, None]
        mx.append((x0 + x1) / 2)
        my.append((y0 + y1) / 2)
        mt.append(f"{a} -> {b}<br>{d.get('domain')} {d.get('shape')}"
                  + (" (skip)" if d.get("skip") else ""))
    fig.add_trace(go.Scatter(x=ex, y=ey, mode="lines", hoverinfo="skip",
                             line=dict(color="#bbbbbb", width=1.5), showlegend=False))
    fig.add_trace(go.Scatter(x=mx, y=my, mode="markers", text=mt, hoverinfo="text",
                             marker=dict(size=7, color="#bbbbbb", symbol="diamond"),
                             showlegend=False))
    by_domain: dict[str, list[str]] = {}
    for n, d in g.nodes(data=True):
        by_domain.setdefault(d.get("domain") or "?", []).append(n)
    for dom, ns in sorted(by_domain.items()):
        fig.add_trace(go.Scatter(
            x=[pos[n][0] for n in ns], y=[pos[n][1] for n in ns], mode="markers+text",
            name=dom, text=ns, textposition="top center",
            marker=dict(size=16, color=DOMAIN_COLOURS.get(dom, "#7f7f7f"),
                        line=dict(width=2, color=["black" if g.nodes[n].get("output")
                                                  else "white" for n in ns])),
            hovertext=[f"{n}: {g.nodes[n]['block']}<br>{dom} {g.nodes[n].get('shape')}<br>"
                       f"{g.nodes[n].get('params', 0):,} params" for n in ns],
            hoverinfo="text"))
    fig.update_layout(template="plotly_white", height=380, legend_title="domain",
                      xaxis=dict(visible=False), yaxis=dict(visible=False),
                      margin=dict(l=10, r=10, t=30, b=10), title=g.graph.get("name", ""))
    return fig


# ---- side by side ----------------------------------------------------------------------
def panel_figure(band_energy: Any, stats: dict, ref: dict | None, k: int,
                 title: str = "") -> go.Figure:
    """2x2 under one panel: RAPS of x0-hat at step k vs data; band energy vs step (marker
    at k, data shares dashed); log-magnitude and phase histograms at step k."""
    fig = make_subplots(rows=2, cols=2, subplot_titles=(
        "RAPS: x0-hat (red), data", "band share vs step", "log10 |F|", "phase"),
        vertical_spacing=0.16, horizontal_spacing=0.12)
    fig.update_annotations(font_size=11)
    if "raps" in stats:
        r, p = stats["raps"]["radius"][1:], stats["raps"]["power"][1:]
        fig.add_trace(go.Scatter(x=r, y=p, name="x0-hat", line=dict(color="#d62728")), 1, 1)
    if ref is not None:
        fig.add_trace(go.Scatter(x=ref["raps"]["radius"][1:], y=ref["raps"]["power"][1:],
                                 name="data", line=dict(color="black", dash="dash")), 1, 1)
    fig.update_yaxes(type="log", row=1, col=1)
    steps = list(range(1, band_energy.shape[0] + 1))
    for b in range(band_energy.shape[1]):
        c = BAND_COLOURS[b % len(BAND_COLOURS)]
        fig.add_trace(go.Scatter(x=steps, y=band_energy[:, b].tolist(), name=f"band {b}",
                                 line=dict(color=c), showlegend=False), 1, 2)
        if ref is not None:
            fig.add_hline(y=ref["band_shares"][b], line=dict(color=c, dash="dot", width=1),
                          row=1, col=2)
    fig.add_vline(x=k, line=dict(color="black", width=1), row=1, col=2)
    for col, key in ((1, "log10_magnitude"), (2, "phase")):
        for src, colour in ((stats, "#d62728"), (ref, "black")):
            h = (src or {}).get("histograms", {}).get(key)
            if h:
                e = h["edges"]
                fig.add_trace(go.Scatter(x=[(a + b) / 2 for a, b in zip(e, e[1:])],
                                         y=h["density"], line=dict(color=colour, shape="hvh"),
                                         showlegend=False), 2, col)
    fig.update_layout(template="plotly_white", height=430, title=title, showlegend=False,
                      margin=dict(l=40, r=10, t=60, b=30))
    return fig


# ---- results ---------------------------------------------------------------------------
def speed_figure(rows: list[dict]) -> go.Figure:
    """Training steps/s against parameters, one point per run."""
    pts = [r for r in rows if r.get("params") and r.get("steps_per_s")]
    fig = go.Figure(go.Scatter(
        x=[r["params"] for r in pts], y=[r["steps_per_s"] for r in pts], mode="markers+text",
        text=[r["name"] for r in pts], textposition="top center",
        hovertext=[f"{r['name']}/{r['hash']}" for r in pts]))
    fig.update_layout(template="plotly_white", title="training speed vs parameters",
                      xaxis_title="parameters", yaxis_title="steps/s", height=380)
    return fig


def loss_curve(points: list[tuple[int, float]], title: str = "loss") -> go.Figure:
    fig = go.Figure(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points],
                               mode="lines"))
    ok = [p[1] for p in points if p[1] > 0 and math.isfinite(p[1])]
    fig.update_layout(template="plotly_white", title=title, xaxis_title="step",
                      yaxis_title="loss", yaxis_type="log" if ok else None, height=320)
    return fig
