"""Two browser sessions on one app: each keeps its own side-by-side trajectories (the
session state), however their calls interleave."""
from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")

from app.gui.side_by_side import PER_PANEL as P  # noqa: E402

pytestmark = pytest.mark.slow  # the shared fixture trains, evaluates and launches (~40 s)
STEPS, N = 5, 4


def _xt(out, panel: int, offset: int = 0) -> np.ndarray:
    """Pixels of a panel's x_t image (a data-URI PNG inside its HTML)."""
    html = out[offset + P * panel + 1]
    html = html["value"] if isinstance(html, dict) else html
    (b64,) = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def _solo(url: str, paths: list[str], seed: int, ks: list[int]) -> dict[int, np.ndarray]:
    """x_t of panel 1 at each step k, seen by a fresh session that is alone with its seed."""
    c = gradio_client.Client(url, verbose=False)
    c.predict(paths, "ddim", STEPS, seed, N, "spec", api_name="/side_by_side")
    return {k: _xt(c.predict(k, api_name="/show_step"), panel=1) for k in ks}


def test_two_sessions_interleaving_each_see_their_own_trajectory(served_app):
    url, _demo, runs, _root = served_app
    paths = [str(r.path) for r in runs]
    seeds = {"a": 11, "b": 12}
    moves = [("a", 2), ("b", 4), ("a", 1), ("b", 1), ("a", 5)]
    ref = {w: _solo(url, paths, s, sorted({k for v, k in moves if v == w}))
           for w, s in seeds.items()}
    assert not np.array_equal(ref["a"][1], ref["b"][1])  # the seeds' noise differs
    clients = {w: gradio_client.Client(url, verbose=False) for w in seeds}
    for w, c in clients.items():
        c.predict(paths, "ddim", STEPS, seeds[w], N, "spec", api_name="/side_by_side")
    # b sampled last: that must not replace a's trajectory, nor a's moves b's
    for w, k in moves:
        got = _xt(clients[w].predict(k, api_name="/show_step"), panel=1)
        assert np.array_equal(got, ref[w][k]), (w, k)
