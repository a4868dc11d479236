"""``archsearch app``: the Gradio comparison app (spec editor, side by side, results)."""
from __future__ import annotations

import argparse
import os


def add_app(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--results", default="results", metavar="DIR",
                   help="results root with runs/ (default: results)")
    p.add_argument("--workspace", default=None, metavar="DIR",
                   help="where the editor saves specs (default: DIR/specs)")
    p.add_argument("--device", default="cpu", help="where sampling runs (cpu, cuda, auto)")
    p.add_argument("--share", action="store_true",
                   help="also make a public gradio.live link (off by default)")


def run_app(args: argparse.Namespace) -> int:
    from archspec.errors import UserError

    if not 0 < args.port < 65536:
        raise UserError(f"--port must be 1-65535, got {args.port}")
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    from app.gui import build_app, launch

    demo = build_app(args.results, args.workspace, args.device)
    print(f"archsearch app: http://{args.host}:{args.port} (results {args.results}); "
          "Ctrl-C stops it", flush=True)
    launch(demo, args.host, args.port, share=args.share, block=True)
    return 0
