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
    """A placeholder saying why there is nothing to draw (no empty axes frame)."""
    fig = go.Figure()
    fig.update_layout(template="plotly_white", height=160, margin=dict(l=10, r=10, t=10, b=10),
                      xaxis={"visible": False}, yaxis={"visible": False},
                      annotations=[{"text": title, "showarrow": False, "xref": "paper",
                                    "yref": "paper", "x": 0.5, "y": 0.5,
                                    "font": {"size": 13, "color": "#666"}}])
    return fig


# ---- spec graph ------------------------------------------------------------------------
def graph_figure(g: Any) -> go.Figure:
    """Layered drawing of a spec graph: x = topological generation; colour = domain;
    expanded unet stages hang below by level (the U); hovering a node shows
    block/shape/params, hovering an edge's midpoint its tensor."""
    from app.gui import graph_layout as GL

    labels = {n: node_label(n, d) for n, d in g.nodes(data=True)}
    pos, above = GL.layout(g, labels)
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
        by_domain.setdefault(_draw_domain(d), []).append(n)
    totals: dict[str, int] = {}
    for n, d in g.nodes(data=True):
        if "parent" in d:
            totals[d["parent"]] = max(totals.get(d["parent"], 0), d.get("params", 0))
    for dom, ns in sorted(by_domain.items()):
        fig.add_trace(go.Scatter(
            x=[pos[n][0] for n in ns], y=[pos[n][1] for n in ns], mode="markers+text",
            name=dom, text=[labels[n] for n in ns],
            textposition=["top center" if above[n] else "bottom center" for n in ns],
            textfont=dict(size=GL.FONT_PX), cliponaxis=False,
            marker=dict(size=GL.MARKER_PX, color=DOMAIN_COLOURS.get(dom.split(" ")[0], "#7f7f7f"),
                        line=dict(width=[4 if "stage_domains" in g.nodes[n] else 2
                                         for n in ns],
                                  color=[_rim(g.nodes[n]) for n in ns])),
            hovertext=[_node_hover(n, g.nodes[n], totals) for n in ns], hoverinfo="text"))
    xr, yr = GL.extent(pos, above, labels)
    # The plot area is at least the drawing's natural size (pixels = axis units), so
    # the label boxes the layout kept apart stay apart; the legend goes below, not beside.
    fig.update_layout(template="plotly_white", height=max(260, int(yr[1] - yr[0]) + 130),
                      legend=dict(title="domain", orientation="h", y=-0.02, yanchor="top"),
                      xaxis=dict(visible=False, range=xr, fixedrange=False),
                      yaxis=dict(visible=False, range=yr), margin=dict(l=10, r=10, t=30, b=90),
                      title=g.graph.get("name", ""))
    return fig


def node_label(n: str, d: dict) -> str:
    """A node's label: a stage's name without its UNet's prefix; the output marked."""
    if "depth" in d:
        return n.split(".", 1)[1]
    return n + (" (output)" if d.get("output") else "")


def _draw_domain(d: dict) -> str:
    """Legend group of a node: its domain; a unet composite by its stages' domains."""
    sd = d.get("stage_domains")
    if sd:
        return (f"{sd['encoder']} stages" if sd["encoder"] == sd["decoder"]
                else f"{sd['encoder']} enc / {sd['decoder']} dec stages")
    return d.get("domain") or "?"


def _rim(d: dict) -> str:
    """Marker rim: a unet's decoder domain (its fill is the encoder's); else black for
    the output node."""
    sd = d.get("stage_domains")
    if sd:
        return DOMAIN_COLOURS.get(sd["decoder"], "#7f7f7f")
    return "black" if d.get("output") else "white"


def _node_hover(n: str, d: dict, totals: dict[str, int]) -> str:
    head = f"{n}: {d['block']}<br>{d.get('domain')} {d.get('shape')}<br>"
    if "parent" in d:  # a stage of an expanded unet: only the whole UNet is counted
        return head + (f"stage of {d['parent']}, whose {totals.get(d['parent'], 0):,} "
                       "parameters are counted for the whole UNet")
    sd = d.get("stage_domains")
    extra = (f"<br>stages: encoder {sd['encoder']}, decoder {sd['decoder']} "
             "(output real)") if sd else ""
    return head + f"{d.get('params', 0):,} params" + extra


# ---- side by side ----------------------------------------------------------------------
# The slider redraws these on every move, so they are plain plotly JSON (no figure-object
# validation, which costs ~0.3 s per 2x2 figure); layout as make_subplots would give.
_CELLS = {(1, 1): ("x", "y", [0, 0.42], [0.62, 1]), (1, 2): ("x2", "y2", [0.58, 1], [0.62, 1]),
          (2, 1): ("x3", "y3", [0, 0.42], [0.08, 0.44]),
          (2, 2): ("x4", "y4", [0.58, 1], [0.08, 0.44])}
_GRID = {"gridcolor": "#eeeeee", "zeroline": False, "linecolor": "#bbbbbb", "showline": True}


def _trace(cell: tuple[int, int], x: list, y: list, colour: str, **kw: Any) -> dict:
    xa, ya = _CELLS[cell][:2]
    return {"type": "scatter", "mode": "lines", "x": list(x), "y": list(y), "xaxis": xa,
            "yaxis": ya, "line": {"color": colour, **kw.pop("line", {})}, **kw}


# Log axes label decades only (1e-3, 1e-2, ...): plotly's default minor labels on a log
# axis ("2 5 2 5") read as data.
LOG_AXIS = {"type": "log", "dtick": 1, "exponentformat": "power", "showexponent": "all",
            "minor": {"ticks": "inside", "ticklen": 3, "showgrid": False}}
AXIS_TITLES = {(1, 1): ("frequency (cycles/pixel)", "power per frequency"),
               (1, 2): ("step (model call)", "energy share"),
               (2, 1): ("log10 |F| (DC removed)", "density"),
               (2, 2): ("phase (rad)", "density")}
PANEL_CAPTION = ("Look for: the red RAPS meeting the dashed data curve at high frequency; "
                 "band shares (solid) reaching their data share (dotted) and settling (x) "
                 "early; red histograms matching black. Axes are shared by all panels.")


def shared_ranges(stats: list[dict], ref: dict | None) -> dict[str, Any]:
    """Axis ranges common to every panel at one step: RAPS decades and histogram peaks."""
    powers, mags, phases = [], [], []
    for s in [*stats, ref or {}]:
        powers += [v for v in (s.get("raps") or {}).get("power", [])[1:] if v > 0]
        h = s.get("histograms") or {}
        mags += h.get("log10_magnitude", {}).get("density", [])
        phases += h.get("phase", {}).get("density", [])
    out: dict[str, Any] = {}
    if powers:
        out["raps"] = [math.floor(math.log10(min(powers))), math.ceil(math.log10(max(powers)))]
    if mags:
        out["mag"] = [0, 1.05 * max(mags)]
    if phases:
        out["phase"] = [0, 1.05 * max(phases)]
    return out


def panel_figure(band_energy: Any, stats: dict, ref: dict | None, k: int,
                 title: str = "", *, ranges: dict | None = None,
                 settle: list | None = None, band_names: list[str] | None = None) -> Any:
    """2x2 under one panel: RAPS of x0-hat at step k vs data; band share vs step (line
    at k, data shares dotted, settle steps x); log-magnitude and phase histograms at step
    k. ``ranges`` (:func:`shared_ranges`) gives every panel the same axes.

    Returns gradio's ``PlotData`` (plotly JSON) for a ``gr.Plot``."""
    import json

    from gradio.components.plot import PlotData

    n_bands = band_energy.shape[1]
    names = band_names or [f"band {b}" for b in range(n_bands)]
    data: list[dict] = []
    if "raps" in stats:
        data.append(_trace((1, 1), stats["raps"]["radius"][1:], stats["raps"]["power"][1:],
                           "#d62728", name=f"x0-hat at step {k}", legendgroup="x0"))
    if ref is not None:
        data.append(_trace((1, 1), ref["raps"]["radius"][1:], ref["raps"]["power"][1:],
                           "black", name="data (test split)", line={"dash": "dash"},
                           legendgroup="data"))
    steps = list(range(1, band_energy.shape[0] + 1))
    shapes = [{"type": "line", "xref": "x2", "x0": k, "x1": k, "yref": "y2 domain", "y0": 0,
               "y1": 1, "line": {"color": "black", "width": 1}}]
    sx, sy, st = [], [], []
    for b in range(n_bands):
        c = BAND_COLOURS[b % len(BAND_COLOURS)]
        ys = [None if math.isnan(v) else v for v in band_energy[:, b].tolist()]
        data.append(_trace((1, 2), steps, ys, c, name=names[b]))
        if ref is not None:
            v = ref["band_shares"][b]
            shapes.append({"type": "line", "xref": "x2 domain", "x0": 0, "x1": 1, "yref": "y2",
                           "y0": v, "y1": v, "line": {"color": c, "dash": "dot", "width": 1}})
        if settle and settle[b] is not None and ys[settle[b] - 1] is not None:
            sx.append(settle[b])
            sy.append(ys[settle[b] - 1])
            st.append(f"{names[b]} settles at step {settle[b]}")
    if ref is not None:  # legend entry for the dotted lines (shapes have none)
        data.append(_trace((1, 2), [None], [None], "#555555", name="data share (dotted)",
                           line={"dash": "dot"}))
    data.append(_trace((1, 2), sx, sy, "black", mode="markers", name="settle step",
                       text=st, hoverinfo="text", marker={"symbol": "x", "size": 9}))
    data.append(_trace((1, 2), [None], [None], "black", name=f"step shown ({k})"))
    for col, key in ((1, "log10_magnitude"), (2, "phase")):
        for src, colour, group in ((stats, "#d62728", "x0"), (ref, "black", "data")):
            h = (src or {}).get("histograms", {}).get(key)
            if h:
                e = h["edges"]
                data.append(_trace((2, col), [(a + b) / 2 for a, b in zip(e, e[1:])],
                                   h["density"], colour, line={"shape": "hvh"},
                                   legendgroup=group, showlegend=False))
    return PlotData(type="plotly", plot=json.dumps(
        {"data": data, "layout": _panel_layout(title, shapes, ranges or {})}))


def _panel_layout(title: str, shapes: list, ranges: dict) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": title, "font": {"size": 13}}, "height": 560, "showlegend": True,
        "legend": {"orientation": "h", "y": -0.16, "yanchor": "top", "x": 0,
                   "font": {"size": 10}},
        "margin": {"l": 50, "r": 10, "t": 50, "b": 40}, "plot_bgcolor": "white",
        "paper_bgcolor": "white", "shapes": shapes, "annotations": []}
    names = {(1, 1): "RAPS at this step", (1, 2): "band share vs step",
             (2, 1): "log10 |F| histogram", (2, 2): "phase histogram"}
    for cell, (xa, ya, xd, yd) in _CELLS.items():
        n = xa[1:]
        xt, yt = AXIS_TITLES[cell]
        layout[f"xaxis{n}"] = {"domain": xd, "anchor": ya, **_GRID,
                               "title": {"text": xt, "font": {"size": 10}, "standoff": 2}}
        layout[f"yaxis{n}"] = {"domain": yd, "anchor": xa, **_GRID,
                               "title": {"text": yt, "font": {"size": 10}, "standoff": 2}}
        layout["annotations"].append({
            "text": names[cell], "showarrow": False, "xref": "paper", "yref": "paper",
            "x": sum(xd) / 2, "y": yd[1], "xanchor": "center", "yanchor": "bottom",
            "font": {"size": 11}})
    layout["yaxis"].update(LOG_AXIS)
    if "raps" in ranges:
        layout["yaxis"]["range"] = ranges["raps"]
    layout["yaxis2"]["range"] = [0, 1]
    layout["xaxis4"]["range"] = [-math.pi, math.pi]
    for ax, key in (("yaxis3", "mag"), ("yaxis4", "phase")):
        if key in ranges:
            layout[ax]["range"] = ranges[key]
    return layout


# ---- results ---------------------------------------------------------------------------
def speed_figure(rows: list[dict]) -> go.Figure:
    """Training steps/s against parameters, one point per run (names on hover and in the
    legend, so labels never overlap or clip)."""
    pts = [r for r in rows if r.get("params") and r.get("steps_per_s")]
    fig = go.Figure()
    for r in pts:
        fig.add_trace(go.Scatter(x=[r["params"]], y=[r["steps_per_s"]], mode="markers",
                                 name=f"{r['name']} {r['hash'][:6]}", marker={"size": 10},
                                 hovertext=f"{r['name']}/{r['hash']}"))
    fig.update_layout(**_plain_layout("training speed vs parameters", "parameters (count)",
                                      "training steps per second", 400))
    return fig


def loss_curve(points: list[tuple[int, float]], title: str = "loss") -> go.Figure:
    fig = go.Figure(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points],
                               mode="lines", name="training loss (per step)"))
    ok = [p[1] for p in points if p[1] > 0 and math.isfinite(p[1])]
    fig.update_layout(**_plain_layout(title, "training step", "loss (diffusion MSE)", 340))
    if ok:
        fig.update_yaxes(type="log", dtick=1, exponentformat="power", showexponent="all")
    return fig


# ---- comparisons (NFE sweep, convergence, bands) -----------------------------------------
def _plain_layout(title: str, xt: str, yt: str, height: int = 380) -> dict[str, Any]:
    return {"title": {"text": title, "font": {"size": 13}}, "height": height,
            "template": "plotly_white", "showlegend": True,
            "legend": {"orientation": "h", "y": -0.25, "yanchor": "top", "x": 0},
            "margin": {"l": 60, "r": 10, "t": 40, "b": 60},
            "xaxis": {"title": {"text": xt}}, "yaxis": {"title": {"text": yt}}}


def nfe_figure(res: dict) -> go.Figure:
    """FD against NFE, one line per run (log NFE axis with the measured NFEs as ticks)."""
    metric = res.get("metric") or "FD"
    fig = go.Figure()
    nfes = set()
    for r in res["runs"]:
        pts = [p for p in r["points"] if p.get(metric) is not None]
        nfes |= {p["nfe"] for p in pts}
        fig.add_trace(go.Scatter(x=[p["nfe"] for p in pts], y=[p[metric] for p in pts],
                                 mode="lines+markers", name=f"{r['run']} ({r['checkpoint']})",
                                 hovertext=[f"{p['steps']} steps, NFE {p['nfe']}"
                                            for p in pts]))
    fig.update_layout(**_plain_layout(
        f"{metric} vs NFE: {res['sampler']}, N={res['n']}, noise seed {res['seed']}",
        "NFE (model calls per sample, log scale)", f"{metric} (lower is better)"))
    fig.update_xaxes(type="log", tickvals=sorted(nfes), ticktext=[str(v) for v in sorted(nfes)])
    return fig


def convergence_figure(curves: list[tuple[str, dict, int | None]]) -> go.Figure:
    """FD of the EMA snapshots against training step, one line per run; the chosen
    checkpoint is ringed. ``curves``: (run label, :func:`convergence_points`, chosen step)."""
    fig = go.Figure()
    metric = next((c["metric"] for _, c, _ in curves if c["metric"]), "FD")
    for i, (name, c, chosen) in enumerate(curves):
        colour = BAND_COLOURS[i % len(BAND_COLOURS)]
        xs, ys = [p[0] for p in c["points"]], [p[1] for p in c["points"]]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=name,
                                 line={"color": colour}))
        if chosen in xs:
            fig.add_trace(go.Scatter(x=[chosen], y=[ys[xs.index(chosen)]], mode="markers",
                                     name=f"{name}: chosen checkpoint", marker={
                                         "size": 14, "symbol": "circle-open",
                                         "color": colour, "line": {"width": 2}}))
    first = next((c for _, c, _ in curves if c["points"]), None)
    sub = (f"{first['sampler']} {first['steps']} steps, N={first['n']}, seed {first['seed']}"
           if first else "no run here has convergence snapshots (evaluate.convergence)")
    fig.update_layout(**_plain_layout(f"convergence: {metric} of EMA snapshots ({sub})",
                                      "training step", f"{metric} (lower is better)", 340))
    return fig


def band_chart(table: dict) -> go.Figure:
    """Per-band error (log10 of x0-hat's over the data's energy) per run, grouped bars."""
    fig = go.Figure()
    for i, r in enumerate(table["rows"]):
        name = f"{r['run']} {r['hash'][:6]}" + (" (diverged)" if r["diverged"] else "")
        fig.add_trace(go.Bar(x=table["bands"], y=r["log10_ratio"], name=name,
                             marker_color=BAND_COLOURS[i % len(BAND_COLOURS)]))
    step = table["rows"][0]["step"] if table["rows"] else "-"
    fig.update_layout(**_plain_layout(
        f"per-band error at step {step} (0 = data's energy; +1 = 10x too much)",
        "radial band (cycles/pixel)", "log10(x0-hat / data energy)", 340), barmode="group")
    return fig


def titled(fig: go.Figure) -> go.Figure:
    """A core figure made readable here: legend below, decade ticks on log axes."""
    fig.update_layout(showlegend=True, legend={"orientation": "h", "y": -0.25,
                                                "yanchor": "top", "x": 0},
                      margin={"l": 60, "r": 10, "t": 40, "b": 60}, height=400)
    xs = sorted({x for t in fig.data for x in (getattr(t, "x", None) or ())
                 if isinstance(x, (int, float))})
    for name, ax in (("x", fig.layout.xaxis), ("y", fig.layout.yaxis)):
        if ax.type != "log":
            continue
        if name == "x" and 0 < len(xs) <= 12:  # a few measured NFEs: label exactly those
            ax.update(tickvals=xs, ticktext=[f"{v:g}" for v in xs])
        else:
            ax.update(dtick=1, exponentformat="power", showexponent="all")
    return fig


def bands_figure(runs: list) -> go.Figure:
    """Energy share per radial band (the side-by-side bands, with their ranges) of the
    data and of each run's evaluated settings."""
    from evaluator.report.compare import stored_band_shares

    fig, data_done = go.Figure(), False
    note = ""
    for run in runs:
        s = stored_band_shares(run)
        if s is None:
            continue
        note = f"{s['size']}x{s['size']}: {len(s['bands'])} bands with a frequency each"
        for key, shares in s["series"].items():
            if key == "data" and data_done:
                continue
            data_done = data_done or key == "data"
            fig.add_trace(go.Bar(x=s["bands"], y=shares,
                                 name="data (test split)" if key == "data"
                                 else f"{run.name} {key}",
                                 marker_color="black" if key == "data" else None))
    fig.update_layout(**_plain_layout(f"energy share per radial band ({note or 'no spectra'};"
                                      " from the stored RAPS)", "radial band (cycles/pixel)",
                                      "share of energy (DC removed)", 400), barmode="group")
    return fig
