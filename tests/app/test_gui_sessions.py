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


def _reference(run, seed: int):
    """x_t trajectory of ``run`` sampled here, outside the app."""
    from evaluator.diffusion import NoiseSchedule
    from evaluator.samplers import sample
    from evaluator.train import load_trained

    model, spec = load_trained(run, "cpu")
    return sample(model, NoiseSchedule.from_spec(spec.diffusion), sampler="ddim", steps=STEPS,
                  n=N, shape=(1, 8, 8), seed=seed, clip=spec.evaluate.clip,
                  prediction=spec.diffusion.prediction, return_trajectory=True).xt_trajectory


def test_two_sessions_interleaving_each_see_their_own_trajectory(served_app):
    from evaluator.trajectory import image_grid

    url, _demo, runs, _root = served_app
    paths = [str(r.path) for r in runs]
    a, b = (gradio_client.Client(url, verbose=False) for _ in range(2))
    seeds = {"a": 11, "b": 12}
    ref = {k: _reference(runs[1], s) for k, s in seeds.items()}
    assert not np.array_equal(image_grid(ref["a"][0], scale=1),
                              image_grid(ref["b"][0], scale=1))
    a.predict(paths, "ddim", STEPS, seeds["a"], N, "spec", api_name="/side_by_side")
    b.predict(paths, "ddim", STEPS, seeds["b"], N, "spec", api_name="/side_by_side")
    # the later sampling (b) must not replace a's trajectory, nor a's moves b's
    for who, client, k in (("a", a, 2), ("b", b, 4), ("a", a, 1), ("b", b, 1), ("a", a, 5)):
        got = _xt(client.predict(k, api_name="/show_step"), panel=1)
        assert np.array_equal(got, image_grid(ref[who][k - 1], scale=1)), (who, k)
