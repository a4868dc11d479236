"""Bands, input checks, divergence flags and the metrics table of the comparison views."""
from __future__ import annotations

import math

import pytest
import torch

from evaluator.compare import (band_counts, band_edges, band_labels, bands_for, check_ints,
                               check_nfes, divergence, empty_bands, log10_ratio)


def _counts_by_radius(size: int, n: int) -> list[int]:
    # independent reference: count rfft bins by their radius, done with numpy's fftfreq
    import numpy as np

    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    r = np.sqrt(fy ** 2 + fx ** 2).flatten()[1:] / 0.5   # Nyquist units, DC dropped
    idx = np.minimum(np.floor(r * n + 1e-9 * n), n - 1).astype(int)
    return np.bincount(idx, minlength=n).tolist()


@pytest.mark.parametrize("size,n", [(8, 3), (8, 4), (16, 4), (28, 8)])
def test_band_counts_match_radius_binning(size, n):
    assert band_counts(size, n) == _counts_by_radius(size, n)


def test_bands_for_leaves_no_empty_band():
    assert bands_for(8) == 3 and empty_bands(8, 4) == [True, False, False, False]
    assert not any(empty_bands(8, bands_for(8)))
    assert bands_for(32) == 4
    assert band_edges(4) == [0.0, 0.125, 0.25, 0.375, 0.5]
    assert band_labels(2) == ["b0 0-0.25 c/px", "b1 0.25-0.5 c/px"]


def test_check_ints_refuses_fractions_and_out_of_range():
    assert check_ints({"steps": 20, "samples": 16, "seed": 0}) == []
    probs = check_ints({"steps": 0, "samples": 100000, "seed": 1.5})
    assert probs == ["steps: 0 is out of range 1..1000",
                     "samples: 100000 is out of range 1..256",
                     "seed: 1.5 is not a whole number"]
    assert check_ints({"steps": None, "samples": "x", "seed": 2.0})[:2] == [
        "steps: a whole number is required", "samples: 'x' is not a number"]


def test_check_nfes():
    assert check_nfes("50, 5,10 ,5") == ([5, 10, 50], [])
    steps, probs = check_nfes("5, abc, 0")
    assert steps == [5] and len(probs) == 2 and "'abc'" in probs[0]
    assert check_nfes("")[1]


def test_divergence_flags_non_finite_and_exploding():
    torch.manual_seed(0)
    x = torch.randn(8, 1, 8, 8) * 0.3
    from evaluator.metrics.spectral import band_energies

    data = band_energies(x, 3).tolist()
    assert divergence(x, data) is None
    assert "exploded" in divergence(x * 1000, data)   # 10^6 times the energy
    y = x.clone()
    y[2, 0, 0, 0] = math.nan
    assert divergence(y, data) == "1 of 8 samples hold NaN/inf values"


def test_log10_ratio():
    assert log10_ratio(10.0, 1.0) == pytest.approx(1.0) and log10_ratio(0.0, 1.0) is None
