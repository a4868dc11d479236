"""The app under concurrent users: N gradio_client sessions against the real app.

    python benchmarks/app_load.py [--results DIR] [--clients 8] [--seconds 60]

Starts ``archsearch app`` (127.0.0.1, a free port) over a results root with two runs
(without ``--results``, or with fewer than two finished runs there, two tiny 8x8 digits
runs of ``examples/specs/tiny_unet_8.yaml`` are trained first through ``archsearch train``
in a temporary folder). Only the CLI and the app's HTTP API are used. Each client is its own browser-like session with its
own seed and loops, until ``--seconds`` have passed or ``--loops`` are done:

- validate the example spec ``tiny_unet_8`` under a name unique to the client and loop
  (no cache hits); the answer must name that spec;
- side by side of both runs (ddim, ``--steps`` steps, ``--n`` samples, the client's seed);
- ``--moves`` slider moves to steps drawn from the client's seed.

It prints p50 / p95 latency per endpoint and the error count, then re-runs every client's
seed alone (one client, nothing else running) and checks that each image the client saw
(x_t and x0-hat of both panels, after sampling and at every slider step) is pixel-identical
to the solo run's. Exit code 0 only with no error and no mismatch.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "specs" / "tiny_unet_8.yaml"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

PER_PANEL = 5  # app.gui.side_by_side.PER_PANEL: header, x_t, x0-hat, figure, metrics
PANELS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}


def train_two(steps: int) -> str:
    """A temporary results root with two tiny 8x8 digits runs of the example spec (widths
    16 and 8), trained through the CLI."""
    root = tempfile.mkdtemp(prefix="archsearch-load-")
    for name, width in (("load_a", 16), ("load_b", 8)):
        subprocess.run([sys.executable, "-m", "app.cli", "train", str(SPEC), "--steps",
                        str(steps), "--out", root, "--device", "cpu", "--no-progress",
                        "-o", f"name={name}", "-o", f"vars.width={width}",
                        "-o", "train.batch_size=16"], cwd=ROOT, env=_env(), check=True,
                       stdout=subprocess.DEVNULL)
    return root


def trained_runs(root: str) -> list[str]:
    """Run folders under ``root`` that finished training, oldest name first."""
    out = []
    for ckpt in sorted(Path(root).glob("runs/*/*/checkpoint.pt")):
        status = ckpt.parent / "status.json"
        if status.exists() and '"finished"' in status.read_text():
            out.append(str(ckpt.parent))
    return out


def runs_of(results: str | None, steps: int) -> tuple[str, list[str]]:
    if results and len(trained_runs(results)) >= 2:
        return results, trained_runs(results)[:2]
    root = train_two(steps)
    return root, trained_runs(root)[:2]


def start_app(results: str, log: Path) -> tuple[subprocess.Popen, str]:
    """``archsearch app`` on 127.0.0.1 and a free port, answering HTTP."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "app", "--host", "127.0.0.1",
                             "--port", str(port), "--results", results], cwd=ROOT, env=_env(),
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url, end = f"http://127.0.0.1:{port}/", time.time() + 180
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited ({proc.returncode}); see {log}")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the app did not answer within 180 s; see {log}")


def _value(x: Any) -> Any:
    return x["value"] if isinstance(x, dict) and "__type__" in x else x


def image_digest(html: Any) -> str:
    """sha256 of the pixels of the data-URI PNG in a panel's HTML."""
    import numpy as np
    from PIL import Image

    (b64,) = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', _value(html))
    px = np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))
    return hashlib.sha256(px.tobytes() + str(px.shape).encode()).hexdigest()[:16]


def panel_digests(out: list[Any], offset: int) -> tuple[str, ...]:
    """(x_t, x0-hat) digests of both panels from an endpoint's outputs."""
    return tuple(image_digest(out[offset + PER_PANEL * i + j])
                 for i in range(PANELS) for j in (1, 2))


def spec_text(name: str) -> str:
    """The example spec under another name (a new text: validated, not a cache hit)."""
    return re.sub(r"(?m)^name: .*$", f"name: {name}", SPEC.read_text(), count=1)


class Session:
    """One client: its seed, latencies per endpoint, errors, and the images it saw
    (``seen[k]``: the set of panel digests shown for step k)."""

    def __init__(self, url: str, index: int, args: argparse.Namespace) -> None:
        from gradio_client import Client

        self.client = Client(url, verbose=False)
        self.index, self.args = index, args
        self.seed = args.seed + index
        self.lat: dict[str, list[float]] = {"/validate": [], "/side_by_side": [],
                                            "/show_step": []}
        self.errors: list[str] = []
        self.seen: dict[int, set[tuple[str, ...]]] = {}
        self.loops = 0

    def call(self, api: str, *inputs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            out = self.client.predict(*inputs, api_name=api)
        except Exception as e:  # noqa: BLE001 - counted and reported, the load goes on
            self.errors.append(f"{api}: {type(e).__name__}: {' '.join(str(e).split())[:200]}")
            return None
        self.lat[api].append(time.perf_counter() - t0)
        return out

    def sample(self, paths: list[str]) -> None:
        a = self.args
        out = self.call("/side_by_side", paths, "ddim", a.steps, self.seed, a.n, "spec")
        if out is not None:
            self.seen.setdefault(a.steps, set()).add(panel_digests(out, 2))

    def move(self, k: int) -> None:
        out = self.call("/show_step", k)
        if out is not None:
            self.seen.setdefault(k, set()).add(panel_digests(out, 0))

    def validate(self, name: str) -> None:
        out = self.call("/validate", spec_text(name), False)
        if out is not None and f"`{name}`" not in out[0]:
            self.errors.append(f"/validate: the answer does not name {name!r}: {out[0][:120]}")

    def run(self, paths: list[str], until: float) -> None:
        import random

        rng = random.Random(self.seed)
        while self.loops < self.args.loops and time.time() < until:
            self.validate(f"load_c{self.index}_{self.loops}")
            self.sample(paths)
            for _ in range(self.args.moves):
                self.move(rng.randint(1, self.args.steps))
            self.loops += 1


def solo(url: str, index: int, args: argparse.Namespace, paths: list[str],
         steps: list[int]) -> dict[int, tuple[str, ...]]:
    """The panel digests of one client's seed, sampled and moved alone."""
    s = Session(url, index, args)
    s.sample(paths)
    for k in steps:
        s.move(k)
    if s.errors:
        raise RuntimeError(f"solo re-run of seed {s.seed}: {s.errors[0]}")
    return {k: next(iter(v)) for k, v in s.seen.items()}


def percentile(xs: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(xs, q)) * 1000 if xs else float("nan")


def report(sessions: list[Session], wall: float, args: argparse.Namespace) -> int:
    lat: dict[str, list[float]] = {}
    for s in sessions:
        for k, v in s.lat.items():
            lat.setdefault(k, []).extend(v)
    errors = [e for s in sessions for e in s.errors]
    print(f"{len(sessions)} clients for {wall:.1f} s, {sum(s.loops for s in sessions)} loops "
          f"(validate + side by side ddim {args.steps} steps N={args.n} x 2 runs + "
          f"{args.moves} slider moves), seeds {args.seed}..{args.seed + len(sessions) - 1}")
    print(f"{'endpoint':<16}{'calls':>7}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}")
    for k, v in lat.items():
        print(f"{k:<16}{len(v):>7}{percentile(v, 50):>10.0f}{percentile(v, 95):>10.0f}"
              f"{max(v, default=float('nan')) * 1000:>10.0f}")
    print(f"errors: {len(errors)}")
    for e in errors[:5]:
        print(f"  {e}")
    return len(errors)


def check_images(url: str, sessions: list[Session], args: argparse.Namespace,
                 paths: list[str]) -> int:
    """Mismatches between what each client saw and a solo re-run of its seed."""
    bad = compared = 0
    for s in sessions:
        ref = solo(url, s.index, args, paths, sorted(s.seen))
        for k, seen in s.seen.items():
            compared += len(seen)
            wrong = seen - {ref[k]}
            bad += len(wrong)
            if wrong:
                print(f"  client {s.index} (seed {s.seed}) step {k}: {len(seen)} different "
                      "image sets seen, solo run differs")
    print(f"images: {compared} distinct (client, step) image sets compared with a solo "
          f"re-run of the client's seed: {bad} mismatch(es)")
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python benchmarks/app_load.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", help="results root with at least two runs of one shape")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60.0, help="load phase length")
    ap.add_argument("--loops", type=int, default=500, help="most loops per client")
    ap.add_argument("--steps", type=int, default=10, help="sampler steps (ddim)")
    ap.add_argument("--n", type=int, default=8, help="samples per panel")
    ap.add_argument("--moves", type=int, default=3, help="slider moves per loop")
    ap.add_argument("--seed", type=int, default=0, help="the first client's seed")
    ap.add_argument("--train-steps", type=int, default=20,
                    help="steps of the two runs trained when none are given")
    args = ap.parse_args(argv)
    results, paths = runs_of(args.results, args.train_steps)
    log = Path(tempfile.mkdtemp(prefix="archsearch-load-log-")) / "app.log"
    proc, url = start_app(results, log)
    print(f"app {url} (pid {proc.pid}, log {log}); runs: {', '.join(paths)}")
    try:
        sessions = [Session(url, i, args) for i in range(args.clients)]
        sessions[0].sample(paths)  # loads both models once, as a first user would
        sessions[0].seen.clear()
        sessions[0].lat["/side_by_side"].clear()
        t0 = time.time()
        until = t0 + args.seconds
        threads = [threading.Thread(target=s.run, args=(paths, until), daemon=True)
                   for s in sessions]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=max(1.0, until + 300 - time.time()))
        hung = sum(t.is_alive() for t in threads)
        wall = time.time() - t0
        n_err = report(sessions, wall, args)
        if hung:
            print(f"{hung} client(s) still waiting 300 s after the end: counted as errors")
        bad = check_images(url, sessions, args, paths)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return 0 if n_err == 0 and bad == 0 and not hung else 1


if __name__ == "__main__":
    raise SystemExit(main())
