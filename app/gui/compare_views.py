"""The side-by-side tab's comparison sections: checkpoint choice per panel with the
convergence curve, quality against NFE in one click, and the per-band table of the runs
sampled. Layout and wiring only: the numbers come from :mod:`evaluator.pipeline.nfe_sweep` and
:mod:`evaluator.report.compare`."""
from __future__ import annotations

import html
from typing import Any

import gradio as gr

from app.gui import figures
from app.gui.common import Context, ui_errors

MAX_PANELS = 4
NFE_CAPTION = ("Look for: which run reaches a low FD with the fewest model calls, and where "
               "each curve flattens (more steps stop paying).")
BAND_CAPTION = ("Look for: bands far from 0 (too much or too little energy at those "
                "frequencies) and which run settles its high bands first.")


# ---- checkpoints ------------------------------------------------------------------------
def build_checkpoints() -> tuple[list[Any], Any]:
    with gr.Accordion("training time: checkpoint per panel", open=False,
                      elem_id="checkpoints"):
        with gr.Row():
            cks = [gr.Dropdown(choices=[("final", "final")], value="final",
                               label=f"panel {i + 1} checkpoint", elem_id=f"panel-ckpt-{i}",
                               visible=i < 2) for i in range(MAX_PANELS)]
        conv = gr.Plot(label="convergence (FD of the EMA snapshots)", elem_id="conv-plot")
        gr.Markdown("Look for: whether a run's quality is still improving when training "
                    "stopped; ringed points are the checkpoints chosen above.",
                    elem_classes=["caption"])
    return cks, conv


def checkpoint_view(run_paths: list[str], chosen: list[str | None]) -> list[Any]:
    """Per panel, the checkpoint picker (label = run, choices = final + snapshots; a
    choice that no longer exists falls back to final), then the convergence figure."""
    from evaluator.pipeline.nfe_sweep import FINAL, checkpoint_options, convergence_points
    from evaluator.store.rundir import RunDir

    out, curves = [], []
    for i in range(MAX_PANELS):
        if i >= len(run_paths):
            out.append(gr.update(visible=False, value=FINAL, choices=[("final", FINAL)]))
            continue
        run = RunDir.open(run_paths[i])
        opts = checkpoint_options(run)
        value = chosen[i] if i < len(chosen) and chosen[i] in {v for _, v in opts} else FINAL
        out.append(gr.update(visible=True, choices=opts, value=value,
                             label=f"panel {i + 1}: {run.name} {run.hash[:6]}"))
        curves.append((f"{run.name} {run.hash[:6]}", convergence_points(run),
                       None if value == FINAL else int(value)))
    return [*out, figures.convergence_figure(curves)]


def wire_checkpoints(ctx: Context, runs: Any, cks: list[Any], conv: Any,
                     demo: gr.Blocks | None = None) -> None:
    @ui_errors
    def do_checkpoints(run_paths, *chosen):
        return checkpoint_view(list(run_paths or []), list(chosen))

    if demo is not None:  # the pickers of the runs chosen when the page opens
        demo.load(do_checkpoints, [runs, *cks], [*cks, conv], api_name=False,
                  show_progress="hidden")
    runs.change(do_checkpoints, [runs, *cks], [*cks, conv], api_name="checkpoints",
                show_progress="hidden")
    for c in cks:
        c.input(do_checkpoints, [runs, *cks], [*cks, conv], api_name=False,
                show_progress="hidden")


# ---- NFE sweep --------------------------------------------------------------------------
def build_nfe(ctx: Context, runs: Any, sampler: Any, seed: Any, clip: Any,
              cks: list[Any]) -> None:
    with gr.Accordion("quality vs NFE (one click, cached in each run folder)", open=True,
                      elem_id="nfe-section"):
        with gr.Row():
            nfes = gr.Textbox(value="5, 10, 20, 50", label="step counts", scale=2,
                              elem_id="nfe-steps")
            n = gr.Number(value=64, precision=0, minimum=1, maximum=1024,
                          label="samples per point (1-1024)", elem_id="nfe-samples")
            btn = gr.Button("quality vs NFE", variant="primary", elem_id="nfe-btn")
        nfe_msg = gr.Markdown("", elem_id="nfe-message")
        plot = gr.Plot(label="FD vs NFE", elem_id="nfe-plot")
        table = gr.HTML("", elem_id="nfe-table")
        gr.Markdown(NFE_CAPTION, elem_classes=["caption"])

    @ui_errors
    def do_nfe(run_paths, sampler_, nfe_text, n_, seed_, clip_, *ck):
        from archspec.errors import UserError
        from evaluator.report.compare import Limit, check_ints, check_nfes
        from evaluator.pipeline.nfe_sweep import nfe_sweep, sweep_caption

        steps, problems = check_nfes(nfe_text)
        problems += check_ints({"seed": seed_, "samples per point": n_},
                               (Limit("seed", 0, 2 ** 31 - 1),
                                Limit("samples per point", 1, 1024)))
        if not run_paths:
            problems.append("runs: choose 1-4 runs above")
        if problems:
            return gr.skip(), gr.skip(), "**⚠ not run:**\n" + "\n".join(
                f"- {p}" for p in problems)
        try:
            with ctx.lock:
                res = nfe_sweep(list(run_paths), sampler=sampler_, steps=steps,
                                seed=int(seed_), n=int(n_),
                                clip=None if clip_ == "spec" else clip_, device=ctx.device,
                                checkpoints=list(ck), models=ctx.models)
        except UserError as e:
            return gr.skip(), gr.skip(), "**⚠ not run:**\n" + "\n".join(
                f"- {p}" for p in e.lines())
        return figures.nfe_figure(res), nfe_table(res), sweep_caption(res)

    btn.click(do_nfe, [runs, sampler, nfes, n, seed, clip, *cks], [plot, table, nfe_msg],
              api_name="nfe_sweep", concurrency_id="sampling")


def nfe_table(res: dict) -> str:
    metric = res.get("metric") or "FD"
    rows = []
    for r in res["runs"]:
        for p in r["points"]:
            why = "; ".join(f"{k}: {v}" for k, v in (p.get("reasons") or {}).items())
            val = p.get(metric)
            rows.append([r["run"], r["checkpoint"], str(p["steps"]), str(p["nfe"]),
                         f"{val:.4g}" if isinstance(val, float) else (why or "-"),
                         "cache" if p["cached"] else "sampled now"])
    return _html_table(["run", "checkpoint", "steps", "NFE", metric, "source"], rows,
                       "nfe-table")


# ---- band table -------------------------------------------------------------------------
def build_bands(step: Any, state: Any, sampled: Any) -> None:
    with gr.Accordion("band comparison at the step shown", open=True, elem_id="band-section"):
        table = gr.HTML("", elem_id="band-table")
        chart = gr.Plot(label="per-band error", elem_id="band-plot")
        gr.Markdown(BAND_CAPTION, elem_classes=["caption"])

    @ui_errors
    def do_bands(k, trajs):
        from evaluator.report.compare import band_rows

        if not trajs:  # nothing sampled (or the sampling was refused): nothing to compare
            return "<p><em>sample first: the table compares the runs sampled</em></p>", \
                gr.skip()
        t = band_rows(trajs, int(k or 1))
        return band_table_html(t), figures.band_chart(t)

    sampled.then(do_bands, [step, state], [table, chart], api_name="band_table")
    step.change(do_bands, [step, state], [table, chart], api_name=False,
                trigger_mode="always_last", show_progress="hidden")


def band_table_html(t: dict) -> str:
    rows = []
    for r in t["rows"]:
        err = [f"{v:+.2f}" if v is not None else "—" for v in r["log10_ratio"]]
        settle = [str(v) if v else "never" for v in r["settle"]] if not r["diverged"] else \
            ["—"] * len(r["settle"])
        rows.append([f"{r['run']} {r['hash'][:6]}", f"{r['step']}/{r['nfe']}", *err, *settle,
                     f"⚠ {r['diverged']}" if r["diverged"] else "ok"])
    heads = ["run", "step", *[f"error {b}" for b in t["bands"]],
             *[f"settle {b.split(' ')[0]}" for b in t["bands"]], "state"]
    return _html_table(heads, rows, "band-table") + f"<p class='caption'>{t['note']}</p>"


def _html_table(heads: list[str], rows: list[list[str]], cls: str) -> str:
    h = "".join(f"<th>{html.escape(x)}</th>" for x in heads)
    b = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                for r in rows)
    return (f'<div class="metrics-wrap"><table class="metrics-table {cls}"><thead><tr>{h}'
            f"</tr></thead><tbody>{b}</tbody></table></div>")
