"""blocks.fourier: the one home of the rfft grid facts, checked against integer arithmetic."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from blocks import fourier, spectral
from blocks.adapters import IRFFT2
from evaluator.diffusion.losses import FrequencySNR
from evaluator.diffusion.schedules import NoiseSchedule
from evaluator.measure import spectral as metrics_spectral


def _int_offsets(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    ky = np.array([i if i < (h + 1) // 2 else i - h for i in range(h)])
    kx = np.arange(w // 2 + 1)
    return ky[:, None], kx[None, :]


def _exact_band(h: int, bands: int) -> np.ndarray:
    """Band of each bin of a square h x h grid in exact integer arithmetic.

    radius (Nyquist units) = sqrt(n) / (h/2) with n = ky^2 + kx^2, so
    radius * bands >= b  <=>  4 * bands^2 * n >= (b h)^2.
    """
    ky, kx = _int_offsets(h, h)
    n = ky ** 2 + kx ** 2
    band = np.zeros(n.shape, dtype=int)
    for b in range(1, bands):
        band[4 * bands ** 2 * n >= (b * h) ** 2] = b
    return band


@pytest.mark.parametrize("h,bands", [(100, 8), (64, 8), (30, 6), (16, 5)])
def test_band_onehot_puts_exact_edge_bins_in_the_upper_band(h, bands):
    ref = _exact_band(h, bands)
    got = spectral.band_onehot(h, h, bands).argmax(0).reshape(ref.shape).numpy()
    np.testing.assert_array_equal(got, ref)


def test_100x100_has_bins_exactly_on_an_edge_and_float32_would_misplace_them():
    # (7, 24) and (15, 20) lie exactly on radius 25 = 0.5 Nyquist: band 4 of 8
    ref = _exact_band(100, 8)
    assert ref[7, 24] == 4 and ref[15, 20] == 4
    r32 = torch.sqrt(torch.fft.fftfreq(100)[:, None] ** 2 + torch.fft.rfftfreq(100)[None] ** 2) / 0.5
    naive = torch.clamp(torch.floor(r32 * 8), max=7).numpy().astype(int)
    assert (naive != ref).any()  # the bug this module fixes is real on this grid


@pytest.mark.parametrize("h,bands", [(100, 8), (32, 4)])
def test_band_mask_and_band_onehot_share_the_edge_rule(h, bands):
    onehot = spectral.band_onehot(h, h, bands).reshape(bands, h, h // 2 + 1).bool()
    for b in range(bands):
        lo, hi = b / bands, (b + 1) / bands if b + 1 < bands else 2.0  # corners: last band
        mask = spectral.band_mask(h, h, lo, hi)
        # every bin of band b lies in [lo, hi] ...
        assert not (onehot[b] & ~mask).any()
        # ... and the mask adds only bins on the upper edge, which belong to band b + 1
        extra = mask & ~onehot[b]
        if b + 1 < bands:
            assert not (extra & ~onehot[b + 1]).any()
            r = fourier.radius_grid(h, h, dtype=torch.float64)
            assert torch.allclose(r[extra], torch.full_like(r[extra], hi))


@pytest.mark.parametrize("h,w", [(8, 8), (7, 9), (6, 5), (16, 10)])
def test_multiplicity_counts_every_full_spectrum_bin_once(h, w):
    ky, kx = _int_offsets(h, w)
    full = np.zeros((h, w))
    m = fourier.rfft_multiplicity(h, w).numpy()
    for i in range(h):
        for j in range(w // 2 + 1):
            full[i, j] += 1
            if m[i, j] == 2:
                full[(-i) % h, (-j) % w] += 1
    assert (full == 1).all()


def test_power_spectrum_parseval_and_callers_share_it():
    x = torch.randn(3, 2, 8, 9, dtype=torch.float64)
    p = fourier.power_spectrum(x)
    torch.testing.assert_close((p * fourier.rfft_multiplicity(8, 9)).sum((-2, -1)),
                               (x ** 2).sum((-2, -1)))
    torch.testing.assert_close(FrequencySNR.from_data(x, NoiseSchedule("linear", 10)).power,
                               p.mean((0, 1)))
    torch.testing.assert_close(metrics_spectral.power_spectrum(x, remove_mean=False), p)


def test_from_dual_keeps_double_precision():
    z = torch.randn(2, 3, 4, 5, dtype=torch.complex128)
    d = fourier.to_dual(z)
    assert d.dtype == torch.float64
    back = fourier.from_dual(d)
    assert back.dtype == torch.complex128 and torch.equal(back, z)
    assert fourier.from_dual(d.float()).dtype == torch.complex64
    assert fourier.from_dual(d.half()).dtype == torch.complex64


def test_from_dual_rejects_odd_channels_and_complex_input():
    with pytest.raises(ValueError, match="even channel count"):
        fourier.from_dual(torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="real"):
        fourier.from_dual(torch.zeros(1, 2, 2, 2, dtype=torch.complex64))


def test_width_is_required_where_the_half_spectrum_cannot_tell_it():
    z = torch.zeros(1, 1, 8, 5, dtype=torch.complex64)
    with pytest.raises(TypeError):
        IRFFT2()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        spectral.hermitian_project(z)  # type: ignore[call-arg]
    assert IRFFT2(width=9)(z).shape[-1] == 9 and IRFFT2(width=8)(z).shape[-1] == 8
