"""The Gradio app: spec editor, train/evaluate, side by side, results.

Analytics are switched off before Gradio is imported; nothing is fetched from a CDN (the
theme uses local fonts) and no share link is made unless asked. Each tab is one module
(:mod:`app.gui.editor`, :mod:`app.gui.train`, :mod:`app.gui.side_by_side`,
:mod:`app.gui.results`) holding layout and wiring only; the work is done by the core.
"""
from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"   # before gradio is imported anywhere

from pathlib import Path  # noqa: E402


def build_app(results: str | Path = "results", workspace: str | Path | None = None,
              device: str = "cpu"):
    """The app's ``gr.Blocks`` for a results root (specs are saved to ``workspace``,
    default ``<results>/specs``)."""
    import gradio as gr

    from app.gui import editor, results as results_tab, side_by_side, train
    from app.gui.common import Context
    from evaluator.store.workspace import workspace_dir

    root = Path(results)
    ctx = Context(root=root, workspace=Path(workspace) if workspace else workspace_dir(root),
                  device=device)
    with gr.Blocks(title="archsearch", analytics_enabled=False) as demo:
        gr.Markdown(f"## archsearch: spatial vs spectral diffusion · results `{root}`")
        with gr.Tabs():
            with gr.Tab("side by side", id="side"):
                side_by_side.build(ctx)
            with gr.Tab("spec editor", id="editor"):
                editor.build(ctx, demo)
            with gr.Tab("train / evaluate", id="train"):
                train.build(ctx)
            with gr.Tab("results", id="results"):
                results_tab.build(ctx)
    demo.ctx = ctx  # for tests and the benchmark
    return demo


def launch(demo, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           block: bool = True):
    """Start the server (no share link unless ``share``); returns (app, local_url)."""
    demo.queue(default_concurrency_limit=4)
    app, url, _ = demo.launch(server_name=host, server_port=port, share=share,
                              prevent_thread_lock=not block, inbrowser=False, quiet=True,
                              ssr_mode=False, mcp_server=False, show_error=True)
    return app, url
