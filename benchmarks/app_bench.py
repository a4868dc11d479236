"""Benchmark of the app's targets, measured side by side in one run (interleaved, medians).

    python benchmarks/app_bench.py [--results DIR] [--repeats 7]

Targets (issue 9): validating a 50-node spec < 50 ms in-process and < 300 ms through
gradio_client, beside a trivial echo endpoint on the same server (the round-trip floor);
side by side, 2 runs x 16 samples x 20 steps at 8x8: < 2 s from click to images; moving
the slider < 200 ms; (issue 16) the NFE sweep, 4 step counts x 2 runs x 64 samples with
FD, < 10 s uncached. Without ``--results`` (or with fewer than two runs there) two tiny
digits runs are trained first in a temporary folder (a minute on two cores).
"""
from __future__ import annotations

import argparse
import os
import socket
import tempfile
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from anywhere

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"


def spec_text(n_nodes: int = 50) -> str:
    """A valid spec of exactly ``n_nodes`` nodes: input, timestep, embedding, a chain of
    convs and resblocks, and a 1-channel output conv."""
    lines = ["name: bench50", "image: {channels: 1, size: 8}", "model:", "  nodes:",
             "    x: {block: input}", "    t: {block: timestep}",
             "    temb: {block: time_embedding, in: [t], dim: 16}",
             "    n0: {block: conv, in: [x], channels: 8}"]
    prev = "n0"
    for i in range(1, n_nodes - 4):
        kind = ("{block: resblock, in: [%s, temb], channels: 8, groups: 4}" % prev
                if i % 2 else "{block: conv, in: [%s], channels: 8}" % prev)
        lines.append(f"    n{i}: {kind}")
        prev = f"n{i}"
    lines += [f"    out: {{block: conv, in: [{prev}], channels: 1}}", "  output: out"]
    return "\n".join(lines) + "\n"


def medians(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median ms of each callable, run round-robin after one warm-up round."""
    from evaluator.measure.profile import interleaved_median_ms

    return interleaved_median_ms(fns, repeats, warmup=1)


def startup_seconds(results: str, repeats: int) -> dict[str, float]:
    """Median seconds from spawning ``archsearch app`` to its first HTTP 200, beside a bare
    ``python -c 'import torch, gradio'`` (interleaved)."""
    import subprocess
    import sys
    import urllib.request

    def app() -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "app", "--port", str(port),
                                 "--results", results], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            while proc.poll() is None:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read()
                    return
                except OSError:
                    time.sleep(0.05)
            raise RuntimeError("archsearch app exited before answering")
        finally:
            proc.terminate()
            proc.wait()

    def imports() -> None:
        subprocess.run([sys.executable, "-c", "import torch, gradio"], check=True)

    ms = medians({"app start to first page": app, "import torch, gradio": imports}, repeats)
    return {k: v / 1e3 for k, v in ms.items()}


def _runs(results: str | None) -> tuple[str, list[str]]:
    from evaluator.store.rundir import list_runs

    if results and len(list_runs(results)) >= 2:
        return results, [str(r.path) for r in list_runs(results)[:2]]
    root = tempfile.mkdtemp(prefix="archsearch-bench-")
    from archspec import spec_from_dict
    from evaluator.training.loop import train

    paths = []
    for name, width in (("bench_a", 16), ("bench_b", 8)):
        data = {"name": name, "image": {"channels": 1, "size": 8},
                "model": {"nodes": {
                    "x": {"block": "input"}, "t": {"block": "timestep"},
                    "temb": {"block": "time_embedding", "in": ["t"], "dim": 32},
                    "eps": {"block": "unet", "in": ["x", "temb"], "channels": width,
                            "channel_mult": [1, 2], "groups": 4}}, "output": "eps"},
                "train": {"dataset": "digits", "steps": 50, "batch_size": 32}}
        paths.append(str(train(spec_from_dict(data), root=root, device="cpu",
                               progress=False).run.path))
    return root, paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python benchmarks/app_bench.py", description=__doc__)
    ap.add_argument("--results", help="results root with at least two 8x8 runs")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--startup-repeats", type=int, default=3,
                    help="start-up measurements (0 to skip)")
    args = ap.parse_args(argv)
    import gradio as gr
    from gradio_client import Client

    from app.gui import build_app, launch
    from archspec.locate import check_text

    root, paths = _runs(args.results)
    text = spec_text(50)
    assert check_text(text)[1] == [], check_text(text)[1]
    demo = build_app(root)
    with demo:  # the round-trip floor: an endpoint that does nothing
        box = gr.Textbox(visible=False)
        box.submit(lambda s: s, box, box, api_name="echo")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    launch(demo, "127.0.0.1", port, block=False)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    print(f"launch + client connect: {time.perf_counter() - t0:.2f} s (app built before)")
    try:
        m = medians({
            "validate in-process": lambda: check_text(text),
            "echo via gradio_client": lambda: client.predict("x", api_name="/echo"),
            "validate via gradio_client": lambda: client.predict(text, False,
                                                                 api_name="/validate"),
        }, args.repeats)
        sbs = lambda: client.predict(paths, "ddim", 20, 0, 16, "spec",  # noqa: E731
                                     api_name="/side_by_side")
        sbs()  # loads the models once, as the app does
        k = iter(range(10 ** 6))
        seeds = iter(range(1000, 10 ** 6))  # a new noise seed each time: never cached
        nfe = lambda s: client.predict(paths, "ddim", "5, 10, 20, 50", 64, s,  # noqa: E731
                                       "spec", api_name="/nfe_sweep")
        m.update(medians({
            "echo via gradio_client (2)": lambda: client.predict("x", api_name="/echo"),
            "side by side 2 runs x 16 x 20 steps": sbs,
            "slider move (show_step)": lambda: client.predict(1 + next(k) % 20,
                                                              api_name="/show_step"),
            "NFE sweep 4 NFEs x 2 runs x 64 (new)": lambda: nfe(next(seeds)),
            "NFE sweep again (cached)": lambda: nfe(0),
        }, args.repeats))
    finally:
        demo.close()
    echo = m["echo via gradio_client"]
    targets = {"validate in-process": 50, "validate via gradio_client": 300,
               "side by side 2 runs x 16 x 20 steps": 2000, "slider move (show_step)": 200,
               "NFE sweep 4 NFEs x 2 runs x 64 (new)": 10000}
    print(f"threads {os.environ.get('OMP_NUM_THREADS', 'default')}, median of "
          f"{args.repeats}, interleaved; runs: {', '.join(paths)}")
    for name, ms in m.items():
        tgt = f"  target < {targets[name]} ms" if name in targets else ""
        print(f"{name:<40}{ms:>10.1f} ms  {ms / echo:>6.2f}x echo{tgt}")
    if args.startup_repeats > 0:
        st = startup_seconds(root, args.startup_repeats)
        base = st["import torch, gradio"]
        for name, sec in st.items():
            tgt = "  target < 10 s" if name.startswith("app") else ""
            print(f"{name:<40}{sec:>10.2f} s   {sec / base:>6.2f}x imports{tgt}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
