"""Keeping every list current: the run pickers, the diff pickers, the spec pickers and
the study picker reflect the results root and the workspace when the page loads and, through a light poll,
whenever a run or a spec appears, changes status or goes (a job finishing, a spec saved in
the editor, a run trained from the CLI). A list is only re-sent when what it shows changed.
"""
from __future__ import annotations

from typing import Any

import gradio as gr

from app.gui.common import Context

POLL_S = 3.0


def signature(ctx: Context) -> tuple:
    """What the lists show: every run's label and path, every spec's label and path."""
    return tuple(ctx.run_choices()), tuple(ctx.spec_choices())


def _keep(value: Any, have: set[str]) -> list[str]:
    return [v for v in (value or []) if v in have]


def wire(ctx: Context, demo: gr.Blocks, runs: Any, ed: dict[str, Any],
         tr: dict[str, Any], res: dict[str, Any], study: dict[str, Any] | None = None) -> None:
    sig = gr.State(None)
    timer = gr.Timer(POLL_S)
    if study is not None:
        wire_studies(ctx, demo, timer, study["pick"])
    outs = [sig, runs, ed["pick"], ed["a"], ed["b"], tr["pick"]]

    def refresh(old, run_value, train_value):
        new = signature(ctx)
        if new == old:
            return [gr.skip()] * len(outs)
        run_ch, spec_ch = list(new[0]), list(new[1])
        have_r, have_s = {p for _, p in run_ch}, {p for _, p in spec_ch}
        picked = _keep(run_value, have_r)
        if old is None and not picked:  # first load of an empty selection: two runs
            picked = [p for _, p in run_ch[:2]]
        both = spec_ch + run_ch
        return [new, gr.update(choices=run_ch, value=picked), gr.update(choices=spec_ch),
                gr.update(choices=both), gr.update(choices=both),
                gr.update(choices=spec_ch, value=_keep(train_value, have_s))]

    demo.load(refresh, [sig, runs, tr["pick"]], outs, api_name="refresh_lists",
              show_progress="hidden")
    timer.tick(refresh, [sig, runs, tr["pick"]], outs, api_name=False,
               show_progress="hidden")


def wire_studies(ctx: Context, demo: gr.Blocks, timer: gr.Timer, pick: Any) -> None:
    """The study picker: the studies under the results root and the workspace, the chosen
    one kept while it exists, else the first (its view then redraws through ``change``)."""
    from app.gui.study_view import find_studies

    sig = gr.State(None)

    def refresh(old, value):
        new = tuple(find_studies(ctx.root, ctx.workspace))
        if new == old:
            return gr.skip(), gr.skip()
        have = [p for _, p in new]
        keep = value if value in have else (have[0] if have else None)
        return new, gr.update(choices=list(new), value=keep)

    demo.load(refresh, [sig, pick], [sig, pick], api_name="refresh_studies",
              show_progress="hidden")
    timer.tick(refresh, [sig, pick], [sig, pick], api_name=False, show_progress="hidden")
