"""Reports of a results folder: ``report.md`` and one self-contained ``report.html``.

The HTML embeds plotly.js inline and the sample grids as base64 PNGs, so it opens
offline and can be mailed as a single file. Charts: quality vs NFE per sampler and
pipeline (mean +- 95% CI when there are several seeds), training loss curves, spectral
energy per radial band (data vs samples), and sample grids.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Callable

from archspec.errors import UserError
from evaluator.runs import RunDir, atomic_write, list_runs

MAX_CURVE_POINTS = 400
BUDGET_PREFERENCE = ("full", "quick")


def collect(root: str | Path) -> list[RunDir]:
    """The runs of a results root, or the single run when ``root`` is a run folder."""
    p = Path(root)
    if not p.is_dir():
        raise UserError(f"{p}: no such results folder")
    if (p / "spec.resolved.json").is_file():
        return [RunDir.open(p)]
    runs = list_runs(p)
    if not runs:
        raise UserError(f"{p}: no runs found (expected {p}/runs/<name>/<hash>/)")
    return runs


def best_eval(run: RunDir) -> tuple[str | None, dict | None]:
    """(budget, evaluation) of a run, preferring the full budget over quick."""
    evals = run.metrics().get("eval", {})
    for b in (*BUDGET_PREFERENCE, *sorted(evals)):
        if b in evals:
            return b, evals[b]
    return None, None


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

    from evaluator.runs import read_json

    fig, data_done = go.Figure(), False
    for run in runs:
        sp = read_json(run.spectra_file, default={}) or {}
        if "data" not in sp:
            continue
        labels = _band_labels(sp["data"])
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
        for row in _band_rows(run):
            be = row["band_error"]
            fig.add_trace(go.Scatter(
                x=_edge_labels(be["band_edges"]), y=be["log10_ratio"], mode="lines+markers",
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
        pts = [p for p in _convergence(run) if p.get(metric) is not None]
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


def _convergence(run: RunDir) -> list[dict]:
    return (best_eval(run)[1] or {}).get("convergence") or []


def convergence_table(runs: list[RunDir]) -> tuple[list[list[str]], str] | None:
    """(one row per run x snapshot, the FD metric's name); None without convergence data."""
    pts = [(run, p) for run in runs for p in _convergence(run)]
    names = sorted({k for _, p in pts for k in p if k.startswith("FD-")})
    if not pts or not names:
        return None
    metric = names[0]
    rows = [["pipeline", "step", metric, "sampler", "steps", "N", "seed", "clip"]]
    rows += [[run.name, str(p["step"]), _num(p.get(metric)), p["sampler"], str(p["steps"]),
              str(p["n"]), str(p["seed"]), str(p["clip"])] for run, p in pts]
    return rows, metric


def _band_rows(run: RunDir) -> list[dict]:
    return [r for r in (best_eval(run)[1] or {}).get("results", []) if r.get("band_error")]


def _edge_labels(e: list[float]) -> list[str]:
    return [f"{a:.3g}-{b:.3g}" for a, b in zip(e[:-1], e[1:])]


def _band_labels(stats: dict) -> list[str]:
    e = stats.get("band_edges") or [i / (2 * len(stats["band_shares"]))
                                    for i in range(len(stats["band_shares"]) + 1)]
    return [f"{a:.3g}-{b:.3g}" for a, b in zip(e[:-1], e[1:])]


# ---- tables ---------------------------------------------------------------------------------
def runs_table(runs: list[RunDir]) -> list[list[str]]:
    rows = [["pipeline", "hash", "status", "steps", "loss_drop", "steps/s", "params",
             "FLOPs/sample", "budget"]]
    for r in runs:
        st, tr = r.status(), r.metrics().get("train", {})
        budget, ev = best_eval(r)
        speed = (ev or {}).get("speed", {})
        status = st.get("status", "?") + (f" ({st['reason']})" if st.get("reason") else "")
        rows.append([r.name, r.hash[:12], status, str(tr.get("steps", "-")),
                     _num(tr.get("loss_drop")), _num(tr.get("steps_per_second")),
                     str(speed.get("params", tr.get("params", "-"))),
                     str(speed.get("flops_per_sample") or "-"), budget or "-"])
    return rows


def results_table(runs: list[RunDir], metric: str | None = None) -> list[list[str]]:
    """One row per pipeline x sampler x steps; metric columns come from the metric registry
    (:func:`evaluator.evaluate.metric_columns`), as in ``evaluate``'s own table."""
    from evaluator.evaluate import fmt_metric, metric_columns

    results = [r for run in runs for r in (best_eval(run)[1] or {}).get("results", [])]
    cols = metric_columns(results)
    rows = [["pipeline", "sampler", "steps", "NFE", "N", "seeds", *cols, "ms/NFE"]]
    for r in results:
        m = r["metrics"]
        rows.append([r["pipeline"], r["sampler"] + (" (ref)" if r.get("reference") else ""),
                     str(r["steps"]), str(r["nfe"]), str(r["n"]),
                     ",".join(map(str, r["seeds"])), *[fmt_metric(m.get(c)) for c in cols],
                     fmt_metric(r.get("ms_per_nfe"))])
    return rows


def band_error_table(runs: list[RunDir]) -> list[list[str]] | None:
    """One row per pipeline x sampler x steps: the signed log10 energy ratio in each band
    and the band it gets most wrong; None when no run has per-band errors. A band that
    holds no frequency at the run's image size (DC removed) reads "—", never +0.00."""
    from evaluator.compare import empty_bands

    rows = [(run, r) for run in runs for r in _band_rows(run)]
    if not rows:
        return None
    labels = _edge_labels(rows[0][1]["band_error"]["band_edges"])
    out = [["pipeline", "sampler", "steps", "N", "seeds", *labels, "worst band"]]
    for run, r in rows:
        be = r["band_error"]
        size = (run.spec_dict().get("image") or {}).get("size")
        empty = empty_bands(size, len(be["log10_ratio"])) if size else \
            [False] * len(be["log10_ratio"])
        live = [i for i in range(len(be["abs_error"])) if not empty[i]] or [0]
        worst = max(live, key=lambda i: be["abs_error"][i])
        cells = ["—" if e else f"{v:+.2f}" for v, e in zip(be["log10_ratio"], empty)]
        if len(cells) != len(labels):  # another band count: shown but not aligned
            cells = (cells + [""] * len(labels))[: len(labels)]
        out.append([r["pipeline"], r["sampler"], str(r["steps"]), str(be["n"]),
                    ",".join(map(str, be["seeds"])), *cells,
                    f"{_edge_labels(be['band_edges'])[worst]} ({be['log10_ratio'][worst]:+.2f})"])
    return out


BAND_ERROR_NOTE = ("Per-band error: log10 of the samples' mean energy per image in each "
                   "radial band over the data's (0 = matches; +1 = ten times too much energy, "
                   "e.g. noise left in; -1 = ten times too little, e.g. over-smoothed). "
                   "Band edges in cycles/pixel; per-image mean removed; — marks a band "
                   "that holds no frequency at this image size.")


def unavailable_notes(runs: list[RunDir]) -> list[str]:
    notes = set()
    for run in runs:
        for row in (best_eval(run)[1] or {}).get("results", []):
            for name, m in row["metrics"].items():
                if m.get("status") != "ok" and m.get("reason"):
                    notes.add(f"{name}: {m['reason']}")
    return sorted(notes)


def stability_notes(runs: list[RunDir]) -> list[str]:
    """One line per stability warning training recorded (``metrics.json``, train section)."""
    return [f"{run.name} ({run.hash[:8]}): {w['message']}" for run in runs
            for w in run.metrics().get("train", {}).get("stability", {}).get("warnings", [])]


def _num(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, (int, float)) else "-"


def _md_table(rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows[1:]]
    return "\n".join(out)


def _html_table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                   for r in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ---- writers ----------------------------------------------------------------------------------
def readable_runs(runs: list[RunDir]) -> tuple[list[RunDir], list[str]]:
    """(runs whose files read, one line per unreadable file naming it): a corrupt
    ``status.json``, ``metrics.json`` or ``spectra.json`` skips its run, not the report."""
    from evaluator.runs import CorruptRunFile, read_json

    ok, skipped = [], []
    for run in runs:
        try:
            run.status(), run.metrics(), read_json(run.spectra_file, default={})
        except CorruptRunFile as e:
            skipped.append(e.problems[0].msg)
            continue
        ok.append(run)
    return ok, skipped


def report(root: str | Path, out: str | Path | None = None,
           on_skip: Callable[[str], None] | None = None) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` for the runs under ``root``.

    Args:
        root: a results root (holding ``runs/``) or a single run folder.
        out: folder for the two files (default ``root``).
        on_skip: called with one line per run skipped because a file of it is corrupt
            (the report lists them too).

    Returns:
        (markdown path, html path).
    """
    runs, skipped = readable_runs(collect(root))
    for line in skipped:
        if on_skip is not None:
            on_skip(line)
    if not runs:
        raise UserError(f"{root}: no readable runs ({len(skipped)} skipped)")
    out_dir = Path(out) if out is not None else Path(root)
    out_dir.mkdir(parents=True, exist_ok=True)
    metric = quality_metric(runs)
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    md = _markdown(runs, metric, out_dir)
    if skipped:
        md += "\n## Skipped runs (unreadable files)\n\n" + "".join(f"- {x}\n" for x in skipped)
    atomic_write(md_path, lambda f: f.write(md), "w")
    page = _html(runs, metric)
    atomic_write(html_path, lambda f: f.write(page), "w")
    return md_path, html_path


def _grids(run: RunDir) -> list[Path]:
    """The grids of the evaluation the report shows (never ones ``sample`` wrote)."""
    budget, _ = best_eval(run)
    return run.eval_grid_files(budget) if budget else []


def _markdown(runs: list[RunDir], metric: str | None, out_dir: Path) -> str:
    parts = ["# Architecture search report", "",
             f"{len(runs)} run(s). Interactive charts: `report.html` (self-contained).", "",
             "## Runs", "", _md_table(runs_table(runs)), "",
             *_stability_md(runs),
             "## Quality vs NFE", "", _md_table(results_table(runs, metric)), "",
             *[f"- {n}" for n in _settings(runs)], ""]
    bands = band_error_table(runs)
    if bands:
        parts += ["## Per-band error", "", BAND_ERROR_NOTE, "", _md_table(bands), ""]
    conv = convergence_table(runs)
    if conv:
        parts += ["## Convergence", "", f"{conv[1]} of the EMA snapshots kept along training "
                  "(`evaluate.convergence`); chart in `report.html`.", "",
                  _md_table(conv[0]), ""]
    notes = unavailable_notes(runs)
    if notes:
        parts += ["Metrics not computed:", ""] + [f"- {n}" for n in notes] + [""]
    parts += ["## Samples", ""]
    for run in runs:
        for png in _grids(run):
            rel = _relpath(png, out_dir)
            parts.append(f"![{run.name} {png.stem}]({rel})")
    return "\n".join(parts) + "\n"


def _stability_md(runs: list[RunDir]) -> list[str]:
    notes = stability_notes(runs)
    if not notes:
        return []
    return ["**Stability warnings** (spectral blocks whose activation or gradient norm "
            "blew up during training):", "", *[f"- WARNING: {n}" for n in notes], ""]


def _settings(runs: list[RunDir]) -> list[str]:
    from evaluator.evaluate import settings_notes

    rows = [r for run in runs for ev in run.metrics().get("eval", {}).values()
            for r in ev.get("results", [])]
    return settings_notes(rows)


def _relpath(p: Path, base: Path) -> str:
    import os
    return os.path.relpath(p.resolve(), base.resolve())


def _html(runs: list[RunDir], metric: str | None) -> str:
    from plotly.offline import get_plotlyjs

    figs = []
    if metric:
        figs.append(quality_figure(runs, metric))
    figs += [loss_figure(runs), spectra_figure(runs)]
    bands = band_error_table(runs)
    if bands:
        figs.append(band_error_figure(runs))
    conv = convergence_table(runs)
    if conv:
        figs.append(convergence_figure(runs, conv[1]))
    charts = "\n".join(f.to_html(full_html=False, include_plotlyjs=False) for f in figs)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in unavailable_notes(runs))
    grids = "\n".join(_img_tag(run, png) for run in runs for png in _grids(run))
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Architecture search report</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px}}
figure{{display:inline-block;margin:6px}} img{{image-rendering:pixelated;width:256px}}</style>
<script type="text/javascript">{get_plotlyjs()}</script></head><body>
<h1>Architecture search report</h1>
<h2>Runs</h2>{_html_table(runs_table(runs))}
{_stability_html(runs)}
<h2>Quality vs NFE</h2>{_html_table(results_table(runs, metric))}
<ul>{"".join(f"<li>{html.escape(n)}</li>" for n in _settings(runs))}</ul>
<ul>{notes}</ul>
{_band_html(bands)}
{f"<h2>Convergence</h2>{_html_table(conv[0])}" if conv else ""}
<h2>Charts</h2>{charts}
<h2>Samples</h2>{grids}
</body></html>
"""


def _band_html(rows: list[list[str]] | None) -> str:
    if not rows:
        return ""
    return f"<h2>Per-band error</h2><p>{html.escape(BAND_ERROR_NOTE)}</p>{_html_table(rows)}"


def _stability_html(runs: list[RunDir]) -> str:
    notes = stability_notes(runs)
    if not notes:
        return ""
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return f'<h3 style="color:#b00">Stability warnings</h3><ul>{items}</ul>'


def _img_tag(run: RunDir, png: Path) -> str:
    b64 = base64.b64encode(png.read_bytes()).decode()
    cap = html.escape(f"{run.name} {png.stem.removeprefix('eval_')}")
    return (f'<figure><img alt="{cap}" src="data:image/png;base64,{b64}">'
            f"<figcaption>{cap}</figcaption></figure>")
