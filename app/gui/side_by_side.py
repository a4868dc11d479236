"""Side-by-side tab: 1-4 runs from the same initial noise, one step slider for all panels.

Sampling (:func:`evaluator.pipeline.side_by_side.sample_side_by_side`) happens once per
click and its trajectories are kept in the session state; moving the slider only re-draws
step k from that cache, it never samples again. A slider move sends only what changes with the step
(headers, images, figures; ``gr.skip()`` for the metrics and the layout), and the images
travel inline as small unscaled PNG data URIs that the browser upscales pixelated, so a
move costs no file writes and no extra downloads.
"""
from __future__ import annotations

import base64
import html
import io
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from app.gui import figures
from app.gui.common import Context, ui_errors

MAX_PANELS = 4
PER_PANEL = 5   # outputs per panel: header, x_t image, x0-hat image, figure, metrics
CLIPS = ["spec", "none", "clip", "dynamic"]
SETTLE_TOL = 0.02


def _metrics_md(run) -> str:
    """The run's evaluation (metrics.json) as a narrow HTML table: one row per sampler
    setting, a column per FD-/KD-/FID/KID/LPIPS metric that has a value, and a note saying
    why each missing metric is unavailable (also on hover)."""
    from evaluator.report.compare import metrics_table

    m = metrics_table(run)
    if not m["rows"]:
        return "<p><em>no evaluation in metrics.json</em></p>"
    cols = [c for c in m["columns"] if any(r.get(c) is not None for r in m["rows"])]
    speed = (f"eval ms/NFE: batch {m['batch_size']}, {m['device']}, "
             "evaluation sampling (no trajectory kept)")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in
                   ["setting", "NFE", *cols]) + f'<th title="{speed}">ms/NFE*</th>'
    body = []
    for r in m["rows"]:
        cells = [f"{r['sampler']} {r['steps']}", str(r["nfe"]),
                 *[_f(r.get(c)) for c in cols], _f(r.get("ms_per_nfe"))]
        body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    notes = [f'<li title="{html.escape(str(why))}"><b>{html.escape(c)}</b> unavailable: '
             f"{html.escape(str(why).removeprefix('unavailable: '))}</li>"
             for c, why in sorted(m["reasons"].items()) if c not in cols]
    return (f'<div class="metrics-wrap"><table class="metrics-table"><thead><tr>{head}</tr>'
            f"</thead><tbody>{''.join(body)}</tbody></table></div>"
            f"<p class=\"metrics-note\">N={m['n']} seeds={m['seeds']} ({m['budget']} budget); "
            f"*{speed}</p>" + (f'<ul class="metrics-note">{"".join(notes)}</ul>'
                                if notes else ""))


def _f(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def image_html(images, caption: str) -> str:
    """An ``<img>`` of the images' grid at 1 px per pixel as a PNG data URI, shown
    pixelated at the panel's width."""
    from PIL import Image

    from evaluator.report.images import image_grid

    buf = io.BytesIO()
    Image.fromarray(image_grid(images, scale=1)).save(buf, format="png")
    src = base64.b64encode(buf.getvalue()).decode("ascii")
    return (f'<div class="panel-img"><div>{caption}</div><img alt="{caption}" '
            f'src="data:image/png;base64,{src}" '
            'style="width:100%;max-width:260px;image-rendering:pixelated"></div>')


def _panel_head(t, j: int, diverged: str | None, settle: list) -> str:
    from evaluator.report.compare import band_labels

    s = t.settings
    speed = (f"{t.ms_per_nfe:.1f} ms/NFE interactive (batch {t.images.shape[0]}, "
             f"{s.get('device', 'cpu')}, trajectory kept)")
    ck = getattr(t, "checkpoint", None)
    head = (f"### {t.name} `{t.run.hash[:8]}`" + (f" @ {ck}" if ck else "")
            + f"\nstep {j + 1}/{t.nfe} · {speed}")
    if diverged:
        return head + f"\n\n**⚠ diverged:** {diverged}; settle steps are meaningless here."
    names = band_labels(len(settle))
    return head + "\n\nbands settle (share within " + f"{SETTLE_TOL} of the last step) at: " + \
        ", ".join(f"{n.split(' ')[0]} step {k if k else 'never'}" for n, k in zip(names, settle))


def render_step(trajs: list, k: int, only_step: bool = False) -> list[Any]:
    """Every panel's outputs at step ``k`` (1-based, clamped to 1..NFE), then the panel
    columns' visibility (layout blocks: not part of the API's outputs). ``only_step``
    leaves what does not depend on the step (metrics, visibility) as it is. Every panel
    shares its axes' ranges with the others."""
    from evaluator.report.compare import band_labels, divergence
    from evaluator.measure.step_spectra import data_statistics, settle_step, step_statistics

    trajs = trajs or []
    js, refs, stats = [], [], []
    for t in trajs:
        j = max(1, min(int(k), t.nfe)) - 1
        ref = data_statistics(t.dataset, t.band_energy.shape[1])
        js.append(j)
        refs.append(ref)
        stats.append(step_statistics(t.x0[j], ref, t.band_energy.shape[1]))
    ranges = figures.shared_ranges(stats, refs[0] if refs else None)
    out: list[Any] = []
    for i in range(MAX_PANELS):
        if i >= len(trajs):
            out += [gr.update(visible=False)] * PER_PANEL
            continue
        t, j, ref = trajs[i], js[i], refs[i]
        if getattr(t, "flags", None) is None:  # per trajectory, not per step: once
            why = divergence(t.x0[-1], ref["band_energy"])
            t.flags = (why, [None] * t.band_energy.shape[1] if why
                       else settle_step(t.band_energy, t.band_energy[-1], SETTLE_TOL))
        why, settle = t.flags
        fig = figures.panel_figure(t.band_energy, stats[i], ref, j + 1,
                                   f"{t.name}: step {j + 1}/{t.nfe}", ranges=ranges,
                                   settle=settle,
                                   band_names=band_labels(t.band_energy.shape[1]))
        out += [gr.update(value=_panel_head(t, j, why, settle), visible=True),
                gr.update(value=image_html(t.xt[j], "x_t (input at this step)"), visible=True),
                gr.update(value=image_html(t.x0[j], "x0-hat (prediction)"), visible=True),
                gr.update(value=fig, visible=True),
                gr.skip() if only_step else gr.update(value=_metrics_md(t.run), visible=True)]
    if only_step:
        return out + [gr.skip()] * MAX_PANELS
    return out + [gr.update(visible=i < len(trajs)) for i in range(MAX_PANELS)]


def summary_line(trajs: list) -> str:
    if not trajs:
        return ""
    t0 = trajs[0]
    s = t0.settings
    return (f"{s['sampler']} x {s['steps']} steps (NFE {t0.nfe}), seed {s['seed']}, "
            f"N={t0.images.shape[0]}, clip {s['clip']}, spacing {s['timestep_spacing']}; "
            f"initial noise sha256 {t0.noise_sha256} shared by all {len(trajs)} runs")


def message(lines: list[str] | str) -> str:
    lines = [lines] if isinstance(lines, str) else lines
    if not lines:
        return ""
    return "**⚠ not sampled** (the results shown are kept):\n" + "\n".join(
        f"- {ln}" for ln in lines)


class LimitedNumber(gr.Number):
    """A number field with its limits in the widget, whose value reaches the handler as
    typed (no silent rounding, no event-wide error): the handler checks it, answers next to
    the field and keeps the last result."""

    is_template = True

    def preprocess(self, payload: float | None) -> float | None:
        return payload


class LimitedSlider(gr.Slider):
    """A slider whose typed out-of-range value is clamped by the handler instead of
    failing the event (which would blank every panel)."""

    is_template = True

    def preprocess(self, payload: float) -> float:
        return payload


def build(ctx: Context, demo: gr.Blocks | None = None) -> dict[str, Any]:
    """Lay out the tab and wire it; returns the components other tabs refresh."""
    from app.gui import compare_views
    from evaluator.report.compare import SAMPLING_LIMITS
    from evaluator.diffusion.samplers import SAMPLERS

    lim = {x.name: x for x in SAMPLING_LIMITS}
    choices = ctx.run_choices()
    with gr.Row():
        runs = gr.Dropdown(choices=choices, multiselect=True, max_choices=MAX_PANELS,
                           label="runs (1-4)", value=[c[1] for c in choices[:2]], scale=4,
                           elem_id="sbs-runs")
        refresh = gr.Button("refresh runs", scale=1)
    with gr.Row():
        sampler = gr.Dropdown(choices=SAMPLERS.names(), value="ddim", label="sampler")
        steps = LimitedNumber(value=20, precision=0, minimum=lim["steps"].low,
                              maximum=lim["steps"].high, step=1, elem_id="sbs-steps",
                              label=f"steps ({lim['steps'].low}-{lim['steps'].high})")
        seed = LimitedNumber(value=0, precision=0, minimum=0, step=1, elem_id="sbs-seed",
                             label="seed (whole number)")
        n = LimitedNumber(value=16, precision=0, minimum=1, maximum=lim["samples"].high,
                          step=1, label=f"samples (1-{lim['samples'].high})",
                          elem_id="sbs-samples")
        clip = gr.Dropdown(choices=CLIPS, value="spec", label="clip policy")
        go_btn = gr.Button("sample", variant="primary")
    msg = gr.Markdown("", elem_id="sbs-message")
    cks, conv = compare_views.build_checkpoints()
    summary = gr.Markdown("", elem_id="sbs-summary")
    step = LimitedSlider(minimum=1, maximum=20, value=20, step=1, label="step (model call)",
                         elem_id="step-slider")
    state = gr.State(None)
    outputs: list[Any] = []
    columns: list[Any] = []
    with gr.Row(elem_id="panels"):
        for i in range(MAX_PANELS):
            with gr.Column(min_width=160, scale=1, visible=False,
                           elem_classes=["panel-col"]) as col:
                columns.append(col)
                outputs += [
                    gr.Markdown(visible=False, elem_id=f"panel-head-{i}"),
                    gr.HTML(visible=False, elem_id=f"panel-xt-{i}"),
                    gr.HTML(visible=False, elem_id=f"panel-x0-{i}"),
                    gr.Plot(visible=False, elem_id=f"panel-plot-{i}", show_label=False),
                    gr.HTML(visible=False, elem_id=f"panel-metrics-{i}")]
    outputs += columns
    gr.Markdown(figures.PANEL_CAPTION, elem_classes=["caption"])
    with gr.Row():
        grid_btn = gr.Button("grid PNG of this step")
        grid_file = gr.File(label="download", interactive=False)

    @ui_errors
    def do_sample(run_paths, sampler_, steps_, seed_, n_, clip_, *ck):
        from archspec.errors import UserError
        from evaluator.report.compare import check_ints
        from evaluator.pipeline.nfe_sweep import FINAL, models_for
        from evaluator.pipeline.side_by_side import sample_side_by_side

        skip = [gr.skip()] * (3 + len(outputs))
        problems = [] if run_paths else ["runs: choose 1-4 runs"]
        problems += check_ints({"steps": steps_, "samples": n_, "seed": seed_})
        if problems:
            return [*skip, message(problems)]
        try:
            with ctx.lock:
                models = models_for(list(run_paths), list(ck), ctx.device, ctx.models)
                trajs = sample_side_by_side(
                    list(run_paths), sampler=sampler_, steps=int(steps_), seed=int(seed_),
                    n=int(n_), clip=None if clip_ == "spec" else clip_, device=ctx.device,
                    models=models)
        except UserError as e:
            return [*skip, message(e.lines())]
        for t, c in zip(trajs, list(ck) + [None] * MAX_PANELS):
            t.checkpoint = None if c in (None, "", FINAL) else f"snapshot step {c}"
            t.settings["device"] = ctx.device
        t0 = trajs[0]
        return [trajs, gr.update(maximum=t0.nfe, value=t0.nfe), summary_line(trajs),
                *render_step(trajs, t0.nfe), ""]

    @ui_errors
    def do_step(k, trajs):
        if not trajs:
            raise gr.Error("sample first: the slider moves through a cached trajectory")
        return render_step(trajs, k, only_step=True)

    @ui_errors
    def do_prune(run_paths, k, trajs):
        """Drop the panels of runs no longer selected (and their share of the summary)."""
        if not trajs:
            return [gr.skip()] * (2 + len(outputs))
        keep_paths = {str(Path(p).resolve()) for p in run_paths or []}
        keep = [t for t in trajs if str(t.run.path.resolve()) in keep_paths]
        if len(keep) == len(trajs):
            return [gr.skip()] * (2 + len(outputs))
        return [keep or None, summary_line(keep), *render_step(keep, k)]

    @ui_errors
    def do_grid(k, trajs):
        from PIL import Image

        from evaluator.report.images import image_grid

        if not trajs:
            raise gr.Error("sample first")
        rows = []
        for t in trajs:
            j = max(1, min(int(k), t.nfe)) - 1
            a, b = image_grid(t.xt[j]), image_grid(t.x0[j])
            rows.append(np.concatenate([a, np.full((a.shape[0], 8, 3), 255, np.uint8), b], 1))
        width = max(r.shape[1] for r in rows)
        rows = [np.pad(r, ((0, 8), (0, width - r.shape[1]), (0, 0)), constant_values=255)
                for r in rows]
        f = tempfile.NamedTemporaryFile(prefix=f"side_by_side_step{int(k)}_", suffix=".png",
                                        delete=False)
        Image.fromarray(np.concatenate(rows, 0)).save(f, format="png")
        f.close()
        return f.name

    refresh.click(lambda v: runs_update(ctx, v), runs, runs, api_name="list_runs")
    go = go_btn.click(do_sample, [runs, sampler, steps, seed, n, clip, *cks],
                      [state, step, summary, *outputs, msg], api_name="side_by_side",
                      concurrency_id="sampling", concurrency_limit=1)
    step.change(do_step, [step, state], outputs, api_name="show_step",
                trigger_mode="always_last", show_progress="hidden")
    runs.change(do_prune, [runs, step, state], [state, summary, *outputs],
                api_name="prune_panels", show_progress="hidden")
    grid_btn.click(do_grid, [step, state], grid_file, api_name="grid_png")
    compare_views.wire_checkpoints(ctx, runs, cks, conv, demo)
    compare_views.build_nfe(ctx, runs, sampler, seed, clip, cks)
    compare_views.build_bands(step, state, go)
    return {"runs": runs}


def runs_update(ctx: Context, value: list[str] | None = None) -> Any:
    """The run picker's choices now, keeping the selection that still exists."""
    choices = ctx.run_choices()
    have = {p for _, p in choices}
    return gr.update(choices=choices, value=[v for v in (value or []) if v in have])
