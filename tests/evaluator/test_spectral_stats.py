"""Spectral statistics: checked against Parseval, hand-placed gratings, white noise, blur."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from sklearn.datasets import load_digits

from blocks import fourier
from evaluator.measure import spectral as sp


def _grating(size: int, ky: int, kx: int, phase: float = 0.3) -> torch.Tensor:
    """cos(2 pi (ky y + kx x) / size): all energy at radius sqrt(ky^2 + kx^2) / size."""
    y, x = np.mgrid[0:size, 0:size]
    img = np.cos(2 * np.pi * (ky * y + kx * x) / size + phase)
    return torch.tensor(img, dtype=torch.float64)[None, None]


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    d = load_digits().images.astype(np.float32) / 16.0 * 2 - 1  # (N, 8, 8) in [-1, 1]
    return torch.from_numpy(d)[:, None]


def test_rfft_weights_count_every_full_fft_coefficient_once():
    for h, w in [(8, 8), (7, 9), (6, 5), (16, 10)]:
        assert float(fourier.rfft_multiplicity(h, w).sum()) == h * w


@pytest.mark.parametrize("shape", [(3, 2, 8, 8), (2, 3, 7, 9), (4, 1, 16, 10)])
@pytest.mark.parametrize("remove_mean", [False, True])
def test_parseval_total_energy_equals_pixel_energy(shape, remove_mean):
    x = torch.randn(shape) + 0.7
    ref = x.double() - (x.double().mean(dim=(-2, -1), keepdim=True) if remove_mean else 0)
    energy = sp.spectral_energy(x, remove_mean=remove_mean)
    torch.testing.assert_close(energy, (ref ** 2).sum(dim=(1, 2, 3)), rtol=1e-10, atol=1e-10)


def test_radius_matches_numpy_full_fft_frequencies():
    h, w = 6, 9
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    full = np.sqrt(fy ** 2 + fx ** 2)[:, : w // 2 + 1]
    np.testing.assert_allclose(fourier.frequency_radius(h, w).numpy(), full)


@pytest.mark.parametrize("ky,kx", [(0, 3), (3, 0), (3, 4), (-3, 4), (5, 5)])
def test_grating_energy_lands_at_its_radius(ky, kx):
    size = 16
    radius, raps = sp.radial_power_spectrum(_grating(size, ky, kx))
    expected_bin = round(math.hypot(ky, kx))
    assert int(torch.argmax(raps)) == expected_bin
    others = torch.cat([raps[:expected_bin], raps[expected_bin + 1:]])
    assert float(others.max()) < 1e-12 * float(raps.max())
    assert radius[expected_bin] == pytest.approx(expected_bin / size)


@pytest.mark.parametrize("ky,kx,band", [(0, 1, 0), (0, 3, 1), (3, 4, 2), (0, 7, 3), (7, 7, 3)])
def test_grating_energy_lands_in_its_band(ky, kx, band):
    # 4 bands over [0, 0.5] cycles/pixel on 16 px: band b holds radii [2b, 2b+2) / 16 and
    # the corner (7, 7) (radius 0.62 > 0.5) belongs to the last band.
    shares = sp.band_energy_shares(_grating(16, ky, kx), n_bands=4)
    assert float(shares[band]) == pytest.approx(1.0, abs=1e-12)
    assert float(shares.sum()) == pytest.approx(1.0, abs=1e-12)


def test_band_shares_sum_to_one_on_random_images(digits):
    for n_bands in (1, 3, 8):
        shares = sp.band_energy_shares(digits[:50], n_bands=n_bands)
        assert shares.shape == (n_bands,)
        assert float(shares.sum()) == pytest.approx(1.0, abs=1e-12)
        assert bool((shares >= 0).all())


def test_band_shares_match_full_fft_reference(digits):
    x = digits[:40, 0].double().numpy()
    x = x - x.mean(axis=(-2, -1), keepdims=True)
    f = np.abs(np.fft.fft2(x, norm="ortho")) ** 2  # full spectrum, no mirroring to undo
    fy, fx = np.meshgrid(np.fft.fftfreq(8), np.fft.fftfreq(8), indexing="ij")
    band = np.minimum(np.floor(np.sqrt(fy ** 2 + fx ** 2) / 0.5 * 3), 2).astype(int)
    ref = np.array([f[:, band == b].sum() for b in range(3)])
    np.testing.assert_allclose(sp.band_energy_shares(digits[:40], 3).numpy(), ref / ref.sum(),
                               rtol=1e-10)


def test_white_noise_has_flat_raps():
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(4000, 1, 16, 16, generator=gen) * 0.5
    _, raps = sp.radial_power_spectrum(noise, remove_mean=False)
    # orthonormal FFT of iid N(0, s^2) pixels: E|F_k|^2 = s^2 at every frequency
    np.testing.assert_allclose(raps.numpy(), 0.25, rtol=0.08)
    assert float(raps.std() / raps.mean()) < 0.03


def test_spectral_distance_zero_for_same_set_and_grows_with_blur(digits):
    x = digits[:300]
    assert sp.raps_distance(x, x) == 0.0
    assert sp.band_skl(x, x) == pytest.approx(0.0, abs=1e-15)
    dists, skls = [], []
    # sigma 2 on 8 px leaves almost a constant image; band *shares* are normalised, so the
    # strongest blur only checks the RAPS distance (absolute power) keeps growing.
    for sigma in (0.5, 1.0, 1.5):
        blurred = torch.from_numpy(gaussian_filter(x.numpy(), sigma=(0, 0, sigma, sigma),
                                                   mode="reflect"))
        dists.append(sp.raps_distance(blurred, x))
        skls.append(sp.band_skl(blurred, x))
    assert 0 < dists[0] < dists[1] < dists[2]
    assert 0 < skls[0] < skls[1] < skls[2]


def test_histograms_are_densities_and_share_edges(digits):
    h = sp.spectrum_histograms(digits[:100], bins=16)
    for key in ("log10_magnitude", "phase"):
        edges, dens = np.array(h[key]["edges"]), np.array(h[key]["density"])
        assert len(edges) == 17 and len(dens) == 16
        assert float((dens * np.diff(edges)).sum()) == pytest.approx(1.0, abs=1e-5)
    # white noise has uniformly distributed phases
    noise = torch.randn(500, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    dens = np.array(sp.spectrum_histograms(noise, bins=8)["phase"]["density"])
    np.testing.assert_allclose(dens, 1 / (2 * np.pi), rtol=0.05)


def test_spectral_metrics_result_shape(digits):
    res = sp.spectral_metrics(digits[:64], digits[64:200], n_bands=4, hist_bins=8)
    assert [r["metric"] for r in res] == ["spectral-RAPS-dist", "spectral-band-SKL"]
    for r in res:
        assert r["status"] == "ok" and r["reason"] is None and r["n"] == 64
        assert r["reference_n"] == 136 and math.isfinite(r["value"]) and r["value"] >= 0
        d = r["details"]
        assert (d["samples"]["histograms"]["log10_magnitude"]["edges"]
                == d["data"]["histograms"]["log10_magnitude"]["edges"])


def test_size_mismatch_and_bad_shapes_raise():
    with pytest.raises(ValueError, match="same image size"):
        sp.raps_distance(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 16, 16))
    with pytest.raises(ValueError, match=r"expected images \(B, C, H, W\)"):
        sp.radial_power_spectrum(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="no spectral energy"):
        sp.band_energy_shares(torch.ones(2, 1, 8, 8))


# ---- per-band error (issue 8, item 3) ----------------------------------------------------
def _numpy_band_energy(images: np.ndarray, n_bands: int) -> np.ndarray:
    """Independent reference: full-plane numpy FFT, radius from numpy's own fftfreq, band
    floor(r / 0.5 * n_bands) (corners into the last band), mean energy per image."""
    x = images - images.mean(axis=(-2, -1), keepdims=True)
    h, w = x.shape[-2:]
    power = np.abs(np.fft.fft2(x)) ** 2 / (h * w)  # orthonormal scaling
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    band = np.minimum(np.floor(np.hypot(fy, fx) / 0.5 * n_bands + 1e-9), n_bands - 1)
    per_image = power.sum(axis=1)  # (B, H, W) summed over channels
    return np.array([per_image[:, band == b].sum(axis=1).mean() for b in range(n_bands)])


@pytest.mark.parametrize("shape", [(5, 1, 8, 8), (3, 2, 16, 12), (4, 1, 9, 7)])
def test_band_energies_match_an_independent_numpy_computation(shape):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    ref = _numpy_band_energy(x.numpy(), 4)
    # atol: after mean removal a band holding only DC has ~1e-32 of rounding energy
    np.testing.assert_allclose(sp.band_energies(x, 4).numpy(), ref, rtol=1e-10, atol=1e-12)


def test_band_errors_on_a_known_synthetic_spectrum():
    # data: one grating per band; samples: the same with the top band's grating scaled by
    # 10 (amplitude -> energy x100, log10 ratio +2) and the lowest band's halved (-log10 4)
    size, n_bands = 16, 4
    radii = [(1, 0), (0, 3), (5, 0), (0, 7)]  # radius/size in band 0, 1, 2, 3
    data = sum(_grating(size, ky, kx) for ky, kx in radii)
    samples = (0.5 * _grating(size, *radii[0]) + _grating(size, *radii[1])
               + _grating(size, *radii[2]) + 10 * _grating(size, *radii[3]))
    err = sp.band_errors(sp.spectral_summary(samples, n_bands), sp.spectral_summary(data, n_bands))
    np.testing.assert_allclose(err["log10_ratio"], [-math.log10(4), 0, 0, 2], atol=1e-9)
    assert err["abs_error"][3] == pytest.approx(2) and err["band_edges"][-1] == 0.5
    assert sum(err["share_error"]) == pytest.approx(0, abs=1e-12)


def test_band_errors_refuse_different_band_counts(digits):
    with pytest.raises(ValueError, match="band counts differ"):
        sp.band_errors(sp.spectral_summary(digits[:8], 4), sp.spectral_summary(digits[:8], 8))
