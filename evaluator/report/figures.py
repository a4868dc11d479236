"""Plotly figures of evaluated runs: quality vs NFE, loss curves, band spectra and errors,
convergence."""
from __future__ import annotations

from evaluator.report.tables import band_labels, band_rows, convergence_rows, edge_labels
from evaluator.store.queries import best_eval
from evaluator.store.rundir import RunDir


MAX_CURVE_POINTS = 400


def quality_metric(runs: list[RunDir]) -> str | None:
    """The headline quality metric present: FD-<dataset>, else FID, else None."""
    names = {m for r in runs for row in (best_eval(r)[1] or {}).get("results", [])
             for m, v in row["metrics"].items() if v.get("mean") is not None}
    fd = sorted(n for n in names if n.startswith("FD-"))
    return fd[0] if fd else ("FID" if "FID" in names else None)


# ---- figures ------------------------------------------------------------------------------
def quality_figure(runs: list[RunDir], metric: str):
    import plotly.graph_objects as go

    fig = go.Figure()
    for run in runs:
        _, ev = best_eval(run)
        by_sampler: dict[str, list[dict]] = {}
        for row in (ev or {}).get("results", []):
            by_sampler.setdefault(row["sampler"], []).append(row)
        for sampler, rows in sorted(by_sampler.items()):
            rows = sorted((r for r in rows if r["metrics"].get(metric, {}).get("mean")
                           is not None), key=lambda r: r["nfe"])
            if not rows:
                continue
            ms = [r["metrics"][metric] for r in rows]
            fig.add_trace(go.Scatter(
                x=[r["nfe"] for r in rows], y=[m["mean"] for m in ms],
                error_y={"type": "data", "array": [m.get("ci95") or 0 for m in ms]},
                mode="lines+markers", name=f"{run.name} / {sampler}",
                hovertext=[f"N={r['n']} seeds={r['seeds']}" for r in rows]))
    fig.update_layout(title=f"{metric} vs NFE (lower is better)", xaxis_title="NFE",
                      yaxis_title=metric, xaxis_type="log", template="plotly_white")
    return fig


def loss_figure(runs: list[RunDir]):
    import plotly.graph_objects as go

    fig = go.Figure()
    for run in runs:
        recs = run.losses()
        if not recs:
            continue
        stride = max(1, len(recs) // MAX_CURVE_POINTS)
        pts = [recs[i:i + stride] for i in range(0, len(recs), stride)]
        fig.add_trace(go.Scatter(x=[p[-1]["step"] for p in pts],
                                 y=[sum(r["loss"] for r in p) / len(p) for p in pts],
                                 mode="lines", name=f"{run.name} ({run.hash[:8]})"))
    fig.update_layout(title="Training loss (mean over each plotted interval)",
                      xaxis_title="step", yaxis_title="loss", yaxis_type="log",
                      template="plotly_white")
    return fig


def spectra_figure(runs: list[RunDir]):
    import plotly.graph_objects as go

    from evaluator.store.atomic import read_json

    fig, data_done = go.Figure(), False
    for run in runs:
        sp = read_json(run.spectra_file, default={}) or {}
        if "data" not in sp:
            continue
        labels = band_labels(sp["data"])
        if not data_done:
            fig.add_trace(go.Bar(x=labels, y=sp["data"]["band_shares"], name="data"))
            data_done = True
        for key, stats in sp.items():
            if key != "data":
                fig.add_trace(go.Bar(x=labels, y=stats["band_shares"],
                                     name=f"{run.name} {key}"))
    fig.update_layout(title="Spectral energy share per radial band (cycles/pixel)",
                      barmode="group", yaxis_title="share of energy", template="plotly_white")
    return fig


def band_error_figure(runs: list[RunDir]):
    """Signed per-band error, log10(samples / data) energy, one line per run x setting."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for run in runs:
        for row in band_rows(run):
            be = row["band_error"]
            fig.add_trace(go.Scatter(
                x=edge_labels(be["band_edges"]), y=be["log10_ratio"], mode="lines+markers",
                name=f"{run.name} / {row['sampler']} {row['steps']}",
                hovertext=f"N={be['n']} seeds={be['seeds']}"))
    fig.add_hline(y=0, line_dash="dot")
    fig.update_layout(title="Per-band error: log10(sample / data energy) per radial band "
                      "(0 = right, >0 too much energy, <0 too little)",
                      xaxis_title="radial band (cycles/pixel)", yaxis_title="log10 ratio",
                      template="plotly_white")
    return fig


def convergence_figure(runs: list[RunDir], metric: str):
    """``metric`` of the EMA snapshots against training step, one line per run."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for run in runs:
        pts = [p for p in convergence_rows(run) if p.get(metric) is not None]
        if pts:
            fig.add_trace(go.Scatter(
                x=[p["step"] for p in pts], y=[p[metric] for p in pts], mode="lines+markers",
                name=f"{run.name} ({run.hash[:8]})",
                hovertext=[f"{p['sampler']} {p['steps']} steps, N={p['n']}, seed {p['seed']}, "
                           f"clip {p['clip']}" for p in pts]))
    fig.update_layout(title=f"Convergence: {metric} of EMA snapshots vs training step "
                      "(lower is better)", xaxis_title="training step", yaxis_title=metric,
                      template="plotly_white")
    return fig
