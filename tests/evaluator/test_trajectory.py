"""evaluator.pipeline.side_by_side: side-by-side sampling from one noise, per-step band energy."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from archspec.errors import UserError
from evaluator.diffusion.samplers import initial_noise
from evaluator.measure.step_spectra import (band_energy_per_step, default_bands, settle_step,
                                            step_statistics)
from evaluator.pipeline.side_by_side import sample_side_by_side
from evaluator.report.images import image_grid
from tests.evaluator.helpers import train_mini


def _np_band_shares(x: torch.Tensor, n_bands: int) -> np.ndarray:
    """Independent reference with numpy's full FFT (no rfft weights needed)."""
    a = x.double().numpy()
    a = a - a.mean(axis=(-2, -1), keepdims=True)
    p = np.abs(np.fft.fft2(a, norm="ortho")) ** 2
    h, w = a.shape[-2:]
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    band = np.minimum(np.floor(np.sqrt(fy ** 2 + fx ** 2) / 0.5 * n_bands), n_bands - 1)
    e = np.array([p[..., band == b].sum() for b in range(n_bands)])
    return e / e.sum()


def test_band_energy_per_step_matches_numpy():
    g = torch.Generator().manual_seed(0)
    traj = [torch.randn(3, 1, 8, 8, generator=g) * (i + 1) for i in range(4)]
    traj.append(torch.zeros(3, 1, 8, 8))  # constant images: no energy -> NaN row
    be = band_energy_per_step(traj, 3)
    assert be.shape == (5, 3)
    for i in range(4):
        np.testing.assert_allclose(be[i].numpy(), _np_band_shares(traj[i], 3), rtol=1e-10)
    assert torch.isnan(be[4]).all()
    assert default_bands(8) == 3 and default_bands(32) == 4


def test_settle_step():
    be = torch.tensor([[0.9, 0.1], [0.5, 0.5], [0.61, 0.39], [0.6, 0.4]], dtype=torch.float64)
    assert settle_step(be, torch.tensor([0.6, 0.4]), tol=0.02) == [3, 3]
    assert settle_step(be, torch.tensor([0.0, 1.0]), tol=0.02) == [None, None]


def test_image_grid_layout_and_values():
    x = torch.tensor([-1.0, 1.0]).reshape(2, 1, 1, 1).expand(2, 1, 2, 2)
    g = image_grid(x, nrow=2, scale=3, pad=1)
    assert g.shape == (1 + 6 + 1, 1 + 2 * (6 + 1), 3) and g.dtype == np.uint8
    assert (g[1:7, 1:7] == 0).all() and (g[1:7, 8:14] == 255).all()
    assert (g[0] == 255).all()


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("traj")
    return [train_mini(root, name, dim, steps=6, batch_size=8)
            for name, dim in (("ta", 16), ("tb", 8))]


def test_side_by_side_shares_noise_and_settings(two_runs):
    out = sample_side_by_side([r.path for r in two_runs], sampler="ddim", steps=4, seed=7,
                              n=3)
    noise = initial_noise(3, (1, 8, 8), 7)
    assert len(out) == 2 and out[0].noise_sha256 == out[1].noise_sha256
    for t in out:
        assert t.nfe == 4 and len(t.x0) == len(t.xt) == 4
        assert t.images.shape == t.x0[0].shape == (3, 1, 8, 8)
        assert torch.equal(t.xt[0], noise)  # DDIM's init_noise_sigma is 1
        assert t.band_energy.shape == (4, default_bands(8))
        # no clip given: each run's own spec policy (the spec default, "clip")
        assert {k: t.settings[k] for k in ("sampler", "steps", "seed", "clip")} == {
            "sampler": "ddim", "steps": 4, "seed": 7, "clip": "clip"}
    assert not torch.equal(out[0].x0[-1], out[1].x0[-1])
    st = step_statistics(out[0].x0[-1], n_bands=3)
    np.testing.assert_allclose(st["band_shares"], out[0].band_energy[-1].numpy(), rtol=1e-12)


def test_side_by_side_reuses_loaded_models(two_runs):
    cache: dict = {}
    a = sample_side_by_side([two_runs[0].path], steps=2, n=2, models=cache)
    assert len(cache) == 1
    b = sample_side_by_side([two_runs[0].path], steps=2, n=2, models=cache)
    assert torch.equal(a[0].images, b[0].images)


def test_side_by_side_bad_input(two_runs, tmp_path):
    with pytest.raises(UserError, match="choose at least one run"):
        sample_side_by_side([])
    with pytest.raises(UserError, match="did you mean 'ddim'"):
        sample_side_by_side([two_runs[0].path], sampler="ddimm")
    with pytest.raises(UserError, match="no such run folder"):
        sample_side_by_side([tmp_path / "nope"])
