"""Side-by-side tab: 2-4 runs from the same initial noise, one step slider for all panels.

Sampling (:func:`evaluator.pipeline.side_by_side.sample_side_by_side`) happens once per
click and its trajectories are kept in the session state; moving the slider only re-draws
step k from that cache, it never samples again. A slider move sends only what changes with the step
(headers, images, figures; ``gr.skip()`` for the metrics and the layout), and the images
travel inline as small unscaled PNG data URIs that the browser upscales pixelated, so a
move costs no file writes and no extra downloads.
"""
from __future__ import annotations

import base64
import io
import tempfile
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
    """The run's metrics.json results as a small table: FD-*, FID, KID, LPIPS, NFE, ms/NFE."""
    from evaluator.store.queries import eval_rows

    rows = eval_rows(run)
    if not rows:
        return "_no evaluation in metrics.json_"
    names = [m for m in _metric_names(rows) if m.startswith(("FD-", "FID", "KID", "LPIPS"))]
    lines = ["| sampler | steps | NFE | ms/NFE | " + " | ".join(names) + " |",
             "|" + "---|" * (4 + len(names))]
    for r in rows:
        cells = [r["sampler"], str(r["steps"]), str(r["nfe"]), _f(r.get("ms_per_nfe"))]
        cells += [_f(r.get(m)) for m in names]
        lines.append("| " + " | ".join(cells) + " |")
    n = rows[0]
    lines.append(f"\nN={n.get('n')} seeds={n.get('seeds')} ({n.get('budget')} budget)")
    return "\n".join(lines)


def _metric_names(rows: list[dict]) -> list[str]:
    fixed = {"budget", "sampler", "steps", "nfe", "n", "seeds", "ms_per_nfe"}
    return sorted({k for r in rows for k in r if k not in fixed})


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


def render_step(trajs: list, k: int, only_step: bool = False) -> list[Any]:
    """Every panel's outputs at step ``k`` (1-based, clamped to 1..NFE), then the panel
    columns' visibility (layout blocks: not part of the API's outputs). ``only_step``
    leaves what does not depend on the step (metrics, visibility) as it is."""
    from evaluator.measure.step_spectra import data_statistics, settle_step, step_statistics

    out: list[Any] = []
    for i in range(MAX_PANELS):
        if i >= len(trajs):
            out += [gr.update(visible=False)] * PER_PANEL
            continue
        t = trajs[i]
        j = max(1, min(int(k), t.nfe)) - 1
        ref = data_statistics(t.dataset, t.band_energy.shape[1])
        stats = step_statistics(t.x0[j], ref, t.band_energy.shape[1])
        settle = settle_step(t.band_energy, t.band_energy[-1], SETTLE_TOL)
        head = (f"### {t.name} `{t.run.hash}`\nstep {j + 1}/{t.nfe} · "
                f"{t.ms_per_nfe:.2f} ms/NFE · band shares settle (within {SETTLE_TOL} of the "
                f"last step) at steps {', '.join(f'b{b} {k}' for b, k in enumerate(settle))}")
        out += [gr.update(value=head, visible=True),
                gr.update(value=image_html(t.xt[j], "x_t"), visible=True),
                gr.update(value=image_html(t.x0[j], "x0-hat"), visible=True),
                gr.update(value=figures.panel_figure(t.band_energy, stats, ref, j + 1,
                                                     f"{t.name}: step {j + 1}"), visible=True),
                gr.skip() if only_step else gr.update(value=_metrics_md(t.run), visible=True)]
    if only_step:
        return out + [gr.skip()] * MAX_PANELS
    return out + [gr.update(visible=i < len(trajs)) for i in range(MAX_PANELS)]


def build(ctx: Context) -> None:
    choices = ctx.run_choices()
    with gr.Row():
        runs = gr.Dropdown(choices=choices, multiselect=True, max_choices=MAX_PANELS,
                           label="runs (2-4)", value=[c[1] for c in choices[:2]], scale=4)
        refresh = gr.Button("refresh runs", scale=1)
    from evaluator.diffusion.samplers import SAMPLERS

    with gr.Row():
        sampler = gr.Dropdown(choices=SAMPLERS.names(), value="ddim", label="sampler")
        steps = gr.Number(value=20, precision=0, minimum=1, maximum=1000, label="steps")
        seed = gr.Number(value=0, precision=0, minimum=0, label="seed")
        n = gr.Number(value=16, precision=0, minimum=1, maximum=256, label="samples")
        clip = gr.Dropdown(choices=CLIPS, value="spec", label="clip policy")
        go_btn = gr.Button("sample", variant="primary")
    summary = gr.Markdown("")
    step = gr.Slider(minimum=1, maximum=20, value=20, step=1, label="step (model call)",
                     elem_id="step-slider")
    state = gr.State(None)
    outputs: list[Any] = []
    columns: list[Any] = []
    with gr.Row():
        for i in range(MAX_PANELS):
            with gr.Column(min_width=220, visible=False) as col:
                columns.append(col)
                outputs += [
                    gr.Markdown(visible=False, elem_id=f"panel-head-{i}"),
                    gr.HTML(visible=False, elem_id=f"panel-xt-{i}"),
                    gr.HTML(visible=False, elem_id=f"panel-x0-{i}"),
                    gr.Plot(visible=False, elem_id=f"panel-plot-{i}"),
                    gr.Markdown(visible=False, elem_id=f"panel-metrics-{i}")]
    outputs += columns
    with gr.Row():
        grid_btn = gr.Button("grid PNG of this step")
        grid_file = gr.File(label="download", interactive=False)

    @ui_errors
    def do_sample(run_paths, sampler_, steps_, seed_, n_, clip_):
        from evaluator.pipeline.side_by_side import sample_side_by_side

        if not run_paths:
            raise gr.Error("choose 1-4 runs")
        with ctx.lock:
            trajs = sample_side_by_side(
                list(run_paths), sampler=sampler_, steps=int(steps_), seed=int(seed_),
                n=int(n_), clip=None if clip_ == "spec" else clip_, device=ctx.device,
                models=ctx.models)
        t0 = trajs[0]
        s = t0.settings
        info = (f"{s['sampler']} x {s['steps']} steps (NFE {t0.nfe}), seed {s['seed']}, "
                f"N={t0.images.shape[0]}, clip {s['clip']}, spacing {s['timestep_spacing']}; "
                f"initial noise sha256 {t0.noise_sha256} shared by all {len(trajs)} runs")
        return [trajs, gr.update(maximum=t0.nfe, value=t0.nfe), info,
                *render_step(trajs, t0.nfe)]

    @ui_errors
    def do_step(k, trajs):
        if not trajs:
            raise gr.Error("sample first: the slider moves through a cached trajectory")
        return render_step(trajs, k, only_step=True)

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

    refresh.click(lambda: gr.update(choices=ctx.run_choices()), None, runs,
                  api_name="list_runs")
    go_btn.click(do_sample, [runs, sampler, steps, seed, n, clip],
                 [state, step, summary, *outputs], api_name="side_by_side",
                 concurrency_id="sampling", concurrency_limit=1)
    step.change(do_step, [step, state], outputs, api_name="show_step",
                trigger_mode="always_last", show_progress="hidden")
    grid_btn.click(do_grid, [step, state], grid_file, api_name="grid_png")
