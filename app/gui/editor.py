"""Spec editor tab: YAML with live validation (paths and line numbers), the spec's graph,
profile on request, load/save in the workspace, and a diff of two specs."""
from __future__ import annotations

import functools
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import gradio as gr

from app.gui import figures
from app.gui.common import Context, ui_errors

PROFILE_BATCH, PROFILE_REPEATS = 16, 3
DEBOUNCE_MS = 300
# Browser-side debounce. Every keystroke starts its own delayed call (Gradio runs the js
# before it decides to defer), so each call resolves with the *latest* text, not its own:
# the burst collapses to one text, which the cache below validates once. Validation runs
# one at a time (concurrency_limit=1), so an older result can never land after a newer one.
_DEBOUNCE_JS = f"""(text, expand) => {{
  window.__archsearchSpec = [text, expand];
  return new Promise(done => setTimeout(() => done(window.__archsearchSpec), {DEBOUNCE_MS}));
}}"""


@functools.lru_cache(maxsize=8)
def validate_text(text: str, expand: bool = False) -> tuple[str, list[dict], Any]:
    """(status markdown, problems, graph figure) of the editor's text (cached: a burst of
    edits resolves to the same text several times)."""
    from archspec.graph import spec_graph
    from archspec.locate import check_text, format_problems

    spec, problems = check_text(text or "")
    if problems:
        lines = format_problems(problems)
        md = f"**{len(problems)} problem(s)**\n\n" + "\n".join(f"- `{ln}`" for ln in lines)
        return md, problems, figures.empty("(graph shown when the spec is valid)")
    from archspec import spec_hash

    md = (f"**valid**: `{spec.name}`, {spec.validated.total_params:,} parameters, "
          f"hash `{spec_hash(spec)}`")
    return md, [], figures.graph_figure(spec_graph(spec, expand_unet=expand))


def build(ctx: Context, demo: gr.Blocks | None = None) -> dict[str, Any]:
    specs = ctx.spec_choices()
    first = next((p for _, p in specs if p.endswith("tiny_unet_8.yaml")),
                 specs[0][1] if specs else None)
    with gr.Row():
        pick = gr.Dropdown(choices=specs, value=first, label="example / workspace spec",
                           allow_custom_value=True, scale=4)
        load = gr.Button("load", scale=1)
    with gr.Row():
        with gr.Column(scale=3):
            code = gr.Code(value=Path(first).read_text() if first else "", language="yaml",
                           label="spec (YAML)", lines=24, elem_id="spec-code")
            with gr.Row():
                name = gr.Textbox(label="save as (inside the workspace)", scale=3,
                                  placeholder="my_spec.yaml")
                overwrite = gr.Checkbox(label="overwrite if it exists", value=False,
                                        scale=1)
                save = gr.Button("save", scale=1)
            saved = gr.Markdown("")
        with gr.Column(scale=2):
            status = gr.Markdown("", elem_id="spec-status")
            problems = gr.JSON(label="problems", visible=True)
            expand = gr.Checkbox(label="expand unet composites into stages", value=False)
            graph = gr.Plot(label="graph (colour = domain; hover edges for shapes)")
            prof_btn = gr.Button("profile (params, FLOPs, fwd+bwd ms)")
            prof = gr.JSON(label="profile", visible=False)
            prof_md = gr.Markdown("", elem_id="profile-table")
    with gr.Accordion("diff two specs (files or runs)", open=False):
        choices = specs + ctx.run_choices()
        with gr.Row():
            a = gr.Dropdown(choices=choices, label="A", allow_custom_value=True)
            b = gr.Dropdown(choices=choices, label="B", allow_custom_value=True)
            diff_btn = gr.Button("diff")
        diff_text = gr.Code(label="changes", language=None, interactive=False)
        diff_json = gr.JSON(label="diff (JSON)")

    @ui_errors
    def do_load(path):
        from archspec.loading import read_text

        if not path:
            raise gr.Error("choose a spec")
        return read_text(path)

    @ui_errors
    def do_validate(text, exp):
        md, problems, fig = validate_text(text or "", bool(exp))
        return md, list(problems), fig

    @ui_errors
    def do_profile(text, progress=gr.Progress()):
        import torch

        from archspec import build_model
        from archspec.locate import check_text, format_problems
        from evaluator.measure.profile import profile_model

        progress(0.05, desc="validating")
        spec, probs = check_text(text or "")
        if probs:
            raise gr.Error("\n".join(format_problems(probs)))
        progress(0.2, desc="building the model")
        torch.manual_seed(0)
        model = build_model(spec)
        progress(0.4, desc=f"timing forward+backward (batch {PROFILE_BATCH}, "
                           f"median of {PROFILE_REPEATS})")
        with ctx.lock:
            r = profile_model(spec.name, model,
                              (spec.image.channels, spec.image.size, spec.image.size),
                              batch_size=PROFILE_BATCH, repeats=PROFILE_REPEATS)
        progress(1.0, desc="done")
        return asdict(r)

    @ui_errors
    def do_save(text, fname, replace=False):
        from archspec.locate import check_text, format_problems
        from evaluator.store.workspace import resolve_in_workspace, save_text

        target = resolve_in_workspace(ctx.workspace, fname or "")
        if target.exists() and not replace:
            return (f"**not saved**: `{target.name}` exists in the workspace; tick "
                    "'overwrite if it exists' to replace it", gr.skip())
        p = save_text(ctx.workspace, fname, text or "")
        _spec, probs = check_text(text or "")
        warn = ("" if not probs else f"\n\n**⚠ saved with {len(probs)} problem(s)** (it "
                "will not train until fixed):\n" + "\n".join(
                    f"- `{ln}`" for ln in format_problems(probs)))
        return f"saved `{p}`" + warn, gr.update(choices=ctx.spec_choices())

    @ui_errors
    def do_diff(pa, pb):
        from app.commands.diff import spec_flops
        from archspec.diff import diff_specs, format_diff, load_for_diff

        if not pa or not pb:
            raise gr.Error("choose two specs (A and B)")
        d = diff_specs(load_for_diff(pa), load_for_diff(pb), measure=spec_flops)
        return format_diff(d), json.loads(json.dumps(d, default=str))

    if demo is not None:  # the first spec is validated (and drawn) when the page opens
        demo.load(do_validate, [code, expand], [status, problems, graph], api_name=False)
    load.click(do_load, pick, code, api_name="load_spec")
    code.change(do_validate, [code, expand], [status, problems, graph], api_name="validate",
                trigger_mode="always_last", show_progress="hidden", js=_DEBOUNCE_JS,
                concurrency_id="validate", concurrency_limit=1)
    expand.change(do_validate, [code, expand], [status, problems, graph],
                  api_name="graph", show_progress="hidden", concurrency_id="validate")
    prof_btn.click(do_profile, code, prof, api_name="profile", concurrency_id="profile",
                   concurrency_limit=1).then(profile_table, prof, prof_md, api_name=False)
    save.click(do_save, [code, name, overwrite], [saved, pick], api_name="save")
    diff_btn.click(do_diff, [a, b], [diff_text, diff_json], api_name="diff")
    return {"pick": pick, "a": a, "b": b}


PROFILE_ROWS = [("params", "parameters", "{:,}"), ("flops", "forward FLOPs per batch", "{:,}"),
                ("fwd_bwd_ms", "forward+backward (ms, median)", "{:.2f}"),
                ("fwd_ms", "forward (ms, median)", "{:.2f}"),
                ("batch_size", "batch", "{}"), ("image", "image (C, H, W)", "{}"),
                ("device", "device", "{}")]


def profile_table(r: dict | None) -> str:
    """The profile as a small table with units and sensible rounding (not raw JSON)."""
    if not r:
        return ""
    rows = ["| measure | value |", "|---|---|"]
    shown = set()
    for key, label, fmt in PROFILE_ROWS:
        if r.get(key) is not None:
            shown.add(key)
            try:
                rows.append(f"| {label} | {fmt.format(r[key])} |")
            except (TypeError, ValueError):
                rows.append(f"| {label} | {r[key]} |")
    for key, v in r.items():
        if key not in shown and v is not None and not isinstance(v, (dict, list)):
            rows.append(f"| {key} | {v:.4g} |" if isinstance(v, float) else f"| {key} | {v} |")
    return "\n".join(rows)
