"""Keeping every list current: the run pickers, the diff pickers and the spec pickers
reflect the results root and the workspace when the page loads and, through a light poll,
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
         tr: dict[str, Any], res: dict[str, Any]) -> None:
    sig = gr.State(None)
    timer = gr.Timer(POLL_S)
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
