"""The Gradio app: spec editor, train/evaluate, side by side, results, study.

Analytics are switched off before Gradio is imported; nothing is fetched from a CDN (the
theme uses local fonts) and no share link is made unless asked. Each tab is one module
(:mod:`app.gui.editor`, :mod:`app.gui.train`, :mod:`app.gui.side_by_side`,
:mod:`app.gui.results`, :mod:`app.gui.study_view`) holding layout and wiring only; the
work is done by the core.
"""
from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"   # before gradio is imported anywhere

from pathlib import Path  # noqa: E402


# Equal panel widths whatever their content; tables keep readable columns (scrolling
# sideways in a narrow panel rather than squeezing to one letter).
CSS = """
#panels { flex-wrap: nowrap !important; }
#panels > .column, #panels > div { flex: 1 1 0 !important; min-width: 0 !important; }
.metrics-wrap { overflow-x: auto; max-width: 100%; }
.metrics-table { border-collapse: collapse; font-size: 12px; }
.metrics-table th, .metrics-table td { min-width: 56px; padding: 2px 6px;
  border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
.metrics-note, .caption { font-size: 12px; color: #555; }
"""


def build_app(results: str | Path = "results", workspace: str | Path | None = None,
              device: str = "cpu"):
    """The app's ``gr.Blocks`` for a results root (specs are saved to ``workspace``,
    default ``<results>/specs``)."""
    import gradio as gr

    from app.gui import (editor, lists, results as results_tab, side_by_side, study_view,
                        train)
    from app.gui.common import Context
    from evaluator.store.workspace import workspace_dir

    root = Path(results)
    ctx = Context(root=root, workspace=Path(workspace) if workspace else workspace_dir(root),
                  device=device)
    with gr.Blocks(title="archsearch", analytics_enabled=False) as demo:
        gr.Markdown(f"## archsearch: spatial vs spectral diffusion · results `{root}`")
        with gr.Tabs():
            with gr.Tab("side by side", id="side"):
                sbs = side_by_side.build(ctx, demo)
            with gr.Tab("spec editor", id="editor"):
                ed = editor.build(ctx, demo)
            with gr.Tab("train / evaluate", id="train"):
                tr = train.build(ctx)
            with gr.Tab("results", id="results"):
                res = results_tab.build(ctx, demo)
            with gr.Tab("study", id="study"):
                st = study_view.build(ctx)
        lists.wire(ctx, demo, sbs["runs"], ed, tr, res, st)
    demo.ctx = ctx  # for tests and the benchmark
    return demo


def launch(demo, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           block: bool = True):
    """Start the server (no share link unless ``share``); returns (app, local_url)."""
    demo.queue(default_concurrency_limit=4)
    app, url, _ = demo.launch(server_name=host, server_port=port, share=share,
                              prevent_thread_lock=not block, inbrowser=False, quiet=True,
                              ssr_mode=False, mcp_server=False, show_error=True,
                              css=CSS)
    return app, url
