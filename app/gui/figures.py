"""Plotly figures the tabs show. Only drawing: the numbers come from the core
(:mod:`evaluator.pipeline.side_by_side`, :mod:`evaluator.store.queries`, :mod:`archspec.graph`)."""
from __future__ import annotations

import math
from typing import Any

import plotly.graph_objects as go

DOMAIN_COLOURS = {"real": "#1f77b4", "complex": "#d62728", "dual": "#9467bd",
                  "time": "#2ca02c", "embed": "#98df8a", None: "#7f7f7f"}
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
    expanded unet stages hang below by level (the U); hovering a node shows
    block/shape/params, hovering an edge's midpoint its tensor."""
    import networkx as nx

    pos, label_at = {}, {}
    for x, gen in enumerate(nx.topological_generations(g)):
        plain = sorted(n for n in gen if "depth" not in g.nodes[n])
        for y, n in enumerate(plain):
            pos[n] = (x, 1 + y - (len(plain) - 1) / 2)
        for n in gen:
            if "depth" in g.nodes[n]:
                pos[n] = (x, -1.5 * g.nodes[n]["depth"])
            label_at[n] = "top center" if x % 2 == 0 else "bottom center"
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
            name=dom, text=[n.split(".", 1)[1] if "depth" in g.nodes[n] else n for n in ns],
            textposition=[label_at[n] for n in ns], textfont=dict(size=10),
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
# The slider redraws these on every move, so they are plain plotly JSON (no figure-object
# validation, which costs ~0.3 s per 2x2 figure); layout as make_subplots would give.
_CELLS = {(1, 1): ("x", "y", [0, 0.45], [0.58, 1]), (1, 2): ("x2", "y2", [0.57, 1], [0.58, 1]),
          (2, 1): ("x3", "y3", [0, 0.45], [0, 0.40]), (2, 2): ("x4", "y4", [0.57, 1], [0, 0.40])}
_GRID = {"gridcolor": "#eeeeee", "zeroline": False, "linecolor": "#bbbbbb", "showline": True}


def _trace(cell: tuple[int, int], x: list, y: list, colour: str, **kw: Any) -> dict:
    xa, ya = _CELLS[cell][:2]
    return {"type": "scatter", "mode": "lines", "x": list(x), "y": list(y), "xaxis": xa,
            "yaxis": ya, "line": {"color": colour, **kw.pop("line", {})}, **kw}


def panel_figure(band_energy: Any, stats: dict, ref: dict | None, k: int,
                 title: str = "") -> Any:
    """2x2 under one panel: RAPS of x0-hat at step k vs data; band energy vs step (marker
    at k, data shares dotted); log-magnitude and phase histograms at step k.

    Returns gradio's ``PlotData`` (plotly JSON) for a ``gr.Plot``."""
    import json

    from gradio.components.plot import PlotData

    data: list[dict] = []
    if "raps" in stats:
        data.append(_trace((1, 1), stats["raps"]["radius"][1:], stats["raps"]["power"][1:],
                           "#d62728", name="x0-hat"))
    if ref is not None:
        data.append(_trace((1, 1), ref["raps"]["radius"][1:], ref["raps"]["power"][1:],
                           "black", name="data", line={"dash": "dash"}))
    steps = list(range(1, band_energy.shape[0] + 1))
    shapes = [{"type": "line", "xref": "x2", "x0": k, "x1": k, "yref": "y2 domain", "y0": 0,
               "y1": 1, "line": {"color": "black", "width": 1}}]
    for b in range(band_energy.shape[1]):
        c = BAND_COLOURS[b % len(BAND_COLOURS)]
        ys = [None if math.isnan(v) else v for v in band_energy[:, b].tolist()]
        data.append(_trace((1, 2), steps, ys, c, name=f"band {b}"))
        if ref is not None:
            v = ref["band_shares"][b]
            shapes.append({"type": "line", "xref": "x2 domain", "x0": 0, "x1": 1, "yref": "y2",
                           "y0": v, "y1": v, "line": {"color": c, "dash": "dot", "width": 1}})
    for col, key in ((1, "log10_magnitude"), (2, "phase")):
        for src, colour in ((stats, "#d62728"), (ref, "black")):
            h = (src or {}).get("histograms", {}).get(key)
            if h:
                e = h["edges"]
                data.append(_trace((2, col), [(a + b) / 2 for a, b in zip(e, e[1:])],
                                   h["density"], colour, line={"shape": "hvh"}))
    layout: dict[str, Any] = {
        "title": {"text": title}, "height": 430, "showlegend": False,
        "margin": {"l": 40, "r": 10, "t": 60, "b": 30}, "plot_bgcolor": "white",
        "paper_bgcolor": "white", "shapes": shapes, "annotations": []}
    names = {(1, 1): "RAPS: x0-hat (red), data", (1, 2): "band share vs step",
             (2, 1): "log10 |F|", (2, 2): "phase"}
    for cell, (xa, ya, xd, yd) in _CELLS.items():
        n = xa[1:]
        layout[f"xaxis{n}"] = {"domain": xd, "anchor": ya, **_GRID}
        layout[f"yaxis{n}"] = {"domain": yd, "anchor": xa, **_GRID}
        layout["annotations"].append({
            "text": names[cell], "showarrow": False, "xref": "paper", "yref": "paper",
            "x": sum(xd) / 2, "y": yd[1], "xanchor": "center", "yanchor": "bottom",
            "font": {"size": 11}})
    layout["yaxis"]["type"] = "log"
    return PlotData(type="plotly", plot=json.dumps({"data": data, "layout": layout}))


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
