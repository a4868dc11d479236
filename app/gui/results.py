"""Results tab: the runs table (filter, sort, CSV), quality vs NFE, loss curves, band
energy against the data, speed against parameters, and the sweep study view."""
from __future__ import annotations

import csv
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from app.gui import figures
from app.gui.common import Context, ui_errors

SORTABLE = ["name", "hash", "status", "dataset", "params", "steps", "loss_drop",
            "steps_per_s"]


def table(rows: list[dict]) -> tuple[list[str], list[list[Any]]]:
    """Columns (the fixed ones, every ``best FD`` column, every ``FD-x sampler@steps``
    column seen, what differs between runs of one name, then path) and values."""
    from evaluator.store.queries import RUN_COLUMNS

    extra = sorted({k for r in rows for k in r if k.startswith("best ")})
    extra += sorted({k for r in rows for k in r if k.startswith("FD-") and "@" in k},
                    key=_fd_key)
    extra += ["differs"] if any(r.get("differs") for r in rows) else []
    cols = [*RUN_COLUMNS, *extra, "path"]
    return cols, [[_cell(r.get(c)) for c in cols] for r in rows]


def _fd_key(col: str) -> tuple:
    head, _, steps = col.rpartition("@")
    return head, int(steps) if steps.isdigit() else 0


def _cell(v: Any) -> Any:
    return round(v, 4) if isinstance(v, float) else ("" if v is None else v)


def write_csv(cols: list[str], values: list[list[Any]]) -> str:
    f = tempfile.NamedTemporaryFile("w", prefix="runs_", suffix=".csv", delete=False,
                                    newline="")
    with f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerows(values)
    return f.name


def sweep_view(root: Path) -> tuple[str, Any, Any]:
    """(message, main-effects figure, parallel-coordinates figure) of the newest-listed
    sweep study under ``root``; says there is nothing to show when no study exists.

    Uses the sweeps package (``evaluator.sweeps.study.list_studies(root)`` and
    ``evaluator.sweeps.analysis.analyze(name, storage) -> (result, figures)``, the Optuna
    study being the source of truth); a build without it reports that instead.
    """
    try:
        from evaluator.sweeps.analysis import analyze
        from evaluator.sweeps.study import list_studies
    except ImportError:
        return ("**no sweep study**: this build has no sweeps package "
                "(`evaluator.sweeps`)", None, None)
    studies = list_studies(root)
    if not studies:
        return (f"**no sweep study** under `{root}/sweeps/`: nothing to draw (run "
                "`archsearch sweep` first)", None, None)
    s = studies[-1]
    _res, figs = analyze(s["name"], s["storage"])
    others = ", ".join(f"`{x['name']}`" for x in studies[:-1])
    return (f"sweep study `{s['name']}` ({s['n_trials']} trials, `{s['storage']}`)"
            + (f"; also: {others}" if others else ""),
            figs.get("main_effects"), figs.get("parallel"))


CAPTIONS = {
    "quality": "Look for: the lowest curve at few NFE (better samples for fewer model calls).",
    "loss": "Look for: runs still falling at the end (undertrained) or spikes (instability).",
    "bands": "Look for: bars far from the data's (black) share in the high bands.",
    "speed": "Look for: runs above the trend (fast for their size)."}


def build(ctx: Context, demo: gr.Blocks | None = None) -> dict[str, Any]:
    with gr.Row():
        text = gr.Textbox(label="filter (name, hash or dataset)", scale=3)
        status = gr.Dropdown(choices=["", "created", "running", "finished", "failed",
                                      "cancelled"], value="", label="status")
        sort_by = gr.Dropdown(choices=SORTABLE, value="name", label="sort by",
                              allow_custom_value=True, elem_id="results-sort")
        desc = gr.Checkbox(label="descending", value=False)
        query = gr.Button("query", variant="primary")
    runs = gr.Dataframe(label="runs", interactive=False, wrap=True, elem_id="runs-table")
    csv_file = gr.File(label="CSV export", interactive=False)
    plots = []
    for pair in (("quality", "loss"), ("bands", "speed")):
        with gr.Row():
            for key in pair:
                with gr.Column():
                    plots.append(gr.Plot(label={"quality": "quality vs NFE", "loss":
                                                "loss curves", "bands": "band energy vs data",
                                                "speed": "speed vs parameters"}[key],
                                         elem_id=f"results-{key}"))
                    gr.Markdown(CAPTIONS[key], elem_classes=["caption"])
    with gr.Accordion("sweep study", open=False):
        sweep_msg = gr.Markdown("")
        with gr.Row():
            effects = gr.Plot(label="main effects", visible=False)
            parallel = gr.Plot(label="parallel coordinates", visible=False)

    @ui_errors
    def do_query(t, st, sb, d):
        from evaluator.report.compare import results_rows

        rows = results_rows(ctx.root, t or "", st or None, sb or "name", bool(d))
        cols, values = table(rows)
        return {"headers": cols, "data": values}, write_csv(cols, values)

    def sort_choices(tbl):
        cols = list(getattr(tbl, "columns", None) if tbl is not None else [])
        return gr.update(choices=[*SORTABLE, *[c for c in cols
                                               if str(c).startswith(("best ", "FD-"))]])

    @ui_errors
    def do_plots(t, st):
        from evaluator.report.figures import loss_figure, quality_figure, quality_metric
        from evaluator.store.queries import query_runs
        from evaluator.store.rundir import RunDir

        rows = query_runs(ctx.root, t or "", st or None)
        rs = [RunDir(Path(r["path"])) for r in rows]
        if not rs:
            e = figures.empty("no runs")
            return e, e, e, e
        metric = quality_metric(rs)
        q = quality_figure(rs, metric) if metric else figures.empty("no evaluated runs")
        return (figures.titled(q), figures.titled(loss_figure(rs)), figures.bands_figure(rs),
                figures.speed_figure(rows))

    @ui_errors
    def do_sweep():
        msg, a, b = sweep_view(ctx.root)
        return msg, gr.update(value=a, visible=a is not None), gr.update(
            value=b, visible=b is not None)

    ev = query.click(do_query, [text, status, sort_by, desc], [runs, csv_file],
                     api_name="runs")
    ev.then(do_plots, [text, status], plots, api_name="results_plots")
    ev.then(sort_choices, runs, sort_by, api_name=False, show_progress="hidden")
    query.click(do_sweep, None, [sweep_msg, effects, parallel], api_name="sweep")
    if demo is not None:  # filled when the page opens, not only on "query"
        loaded = demo.load(do_query, [text, status, sort_by, desc], [runs, csv_file],
                           api_name=False)
        loaded.then(do_plots, [text, status], plots, api_name=False)
        loaded.then(sort_choices, runs, sort_by, api_name=False, show_progress="hidden")
        demo.load(do_sweep, None, [sweep_msg, effects, parallel], api_name=False)
    return {}
