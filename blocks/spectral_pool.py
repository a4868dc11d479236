"""Spectral pooling (Rippel et al. 2015, "Spectral Representations for Convolutional
Neural Networks"): halve or double the implied image size of an rfft2 spectrum by cropping
or zero-padding frequencies. Registered as ``spectral_down``/``spectral_up`` (complex) in
:mod:`blocks.complex` and ``dual_down``/``dual_up`` in :mod:`blocks.dual`.
"""
from __future__ import annotations

from typing import Callable, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from blocks.core import BlockParams


class SpectralPoolParams(BlockParams):
    preserve: Literal["amplitude", "energy"] = Field(
        "amplitude", description="amplitude: pixel values survive (x1/2 per halving, ortho "
        "FFT); energy: kept coefficients unchanged")


def _flip_rows(x: Tensor) -> Tensor:
    """Row index r -> -r (mod H) on dim -2."""
    return torch.roll(torch.flip(x, [-2]), 1, -2)


def spectral_down(x: Tensor, conj: Callable[[Tensor], Tensor], scale: float = 0.5) -> Tensor:
    """rfft2 spectrum of an HxW image -> that of the band-limited (H/2)x(W/2) image.

    Keeps rows ``0..H/4-1`` and ``-H/4..-1`` and columns ``0..W/4``. The new Nyquist row and
    column each stand for two old frequencies (``+-H/4``, ``+-W/4``) that alias to one bin
    when sampling at half rate, so they are *summed* (row ``+H/4`` is added to row ``-H/4``;
    column ``W/4`` gets the implicit ``-W/4`` partner ``conj(X[-r, W/4])``). The result is
    exactly the ortho rfft2 of ``lowpass(x)[::2, ::2]`` where ``lowpass`` keeps
    ``|f_row| <= H/4, |f_col| <= W/4`` (as ``scipy.signal.resample`` does), and is a valid
    Hermitian spectrum. ``scale`` = 1/2 keeps pixel amplitudes under the ortho FFT.
    ``conj`` conjugates in the caller's layout (complex or dual), so the dual twin reuses it.
    """
    h, w2 = x.shape[-2], x.shape[-1]  # (.., H, W/2+1)
    if h % 4 or (w2 - 1) % 2 or w2 < 3:
        raise ValueError(f"spectral_down needs an rfft2 spectrum of an HxW image with H and W "
                         f"divisible by 4, got (H, W//2+1) = ({h}, {w2})")
    q, cq = h // 4, (w2 - 1) // 2  # H/4, W/4
    rows = torch.cat([x[..., :q, :], x[..., h - q:h - q + 1, :] + x[..., q:q + 1, :],
                      x[..., h - q + 1:, :]], -2)  # (.., H/2, W/2+1)
    nyq = rows[..., cq:cq + 1] + conj(_flip_rows(rows[..., cq:cq + 1]))
    return torch.cat([rows[..., :cq], nyq], -1) * scale  # (.., H/2, W/4+1)


def spectral_up(x: Tensor, conj: Callable[[Tensor], Tensor], scale: float = 2.0) -> Tensor:
    """rfft2 spectrum of an hxw image -> that of its band-limited 2hx2w interpolation.

    Zero-pads rows (to ``2h``) and columns (to ``w+1``); the old Nyquist row and column are
    split in half between ``+-h/2`` and ``+-w/2`` (the column's implicit partner gets its
    half through Hermitian symmetry, so the column is first made Hermitian), which is the
    right inverse of :func:`spectral_down`: ``down(up(Y)) == Y`` for every real image's Y,
    and ``irfft2(up(Y))[::2, ::2] == irfft2(Y)`` (trigonometric interpolation).
    """
    h, w2 = x.shape[-2], x.shape[-1]
    if h % 2 or w2 < 2:
        raise ValueError(f"spectral_up needs an rfft2 spectrum of an hxw image with h, w even, "
                         f"got (h, w//2+1) = ({h}, {w2})")
    q, cq = h // 2, w2 - 1
    nyq = 0.25 * (x[..., cq:] + conj(_flip_rows(x[..., cq:])))  # Hermitian part, halved
    cols = torch.cat([x[..., :cq], nyq, torch.zeros_like(x[..., :cq])], -1)  # (.., h, 2w2-1)
    half = 0.5 * cols[..., q:q + 1, :]
    out = torch.cat([cols[..., :q, :], half, torch.zeros_like(cols[..., 1:, :]), half,
                     cols[..., q + 1:, :]], -2)  # (.., 2h, 2w2-1)
    return out * scale


class SpectralDown(nn.Module):
    """Spectral pooling (Rippel et al. 2015) on complex rfft2 spectra; see spectral_down."""

    def __init__(self, *, preserve: str = "amplitude") -> None:
        super().__init__()
        self.scale = 0.5 if preserve == "amplitude" else 1.0

    def conj(self, x: Tensor) -> Tensor:
        return torch.conj(x)

    def forward(self, z: Tensor) -> Tensor:
        # (B, C, H, W//2+1) -> (B, C, H/2, W//4+1)
        return spectral_down(z, self.conj, self.scale)


class SpectralUp(SpectralDown):
    """Spectral zero-padding upsampling, right inverse of SpectralDown; see spectral_up."""

    def forward(self, z: Tensor) -> Tensor:
        # (B, C, h, w//2+1) -> (B, C, 2h, w+1)
        return spectral_up(z, self.conj, 1.0 / self.scale)
