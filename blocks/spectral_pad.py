"""Padding shaped like the rfft2 half spectrum, for 'same' convolutions over it.

A (H, W//2+1) half spectrum is not a bounded image. Its rows are vertical frequencies
that wrap around (row 0, DC, neighbours row H-1, frequency -1), and its first and last
columns are Hermitian edges: the full spectrum of a real image continues them with
``X[k, -j] = conj(X[-k, j])``. Zero padding hides both facts from a 3x3 kernel.

- ``zeros``: today's zero padding on both axes.
- ``circular``: rows wrap, columns are zero-padded.
- ``hermitian``: rows wrap, and the columns continue the way the full spectrum does:
  column ``-m`` is ``conj(X[-k, m])`` and, past the last column, the reflection about the
  Nyquist column (even W) or about the half-way point between the last two full-spectrum
  columns (odd W, which has no Nyquist column). A kernel then sees exactly the neighbours
  it would see in the full ``fft2`` spectrum, convolved circularly.

``conj`` conjugates in the caller's layout (complex, or the dual's stacked [re; im]
channels, where conjugation flips the sign of the imaginary half), as in
:mod:`blocks.spectral_pool`.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Literal

import torch
from pydantic import Field, model_serializer
from torch import Tensor

from blocks.core import BlockParams

Padding = Literal["zeros", "circular", "hermitian"]


class SpectralPadParams(BlockParams):
    """Fields of blocks that convolve a half spectrum with 'same' padding."""

    padding: Padding = Field("zeros", description="zeros | circular (rows wrap) | hermitian "
                             "(rows wrap, columns continue with conjugation)")
    width: int | None = Field(None, gt=0, description="image width W for hermitian padding "
                              "(default 2*(W'-1), i.e. even)")

    @model_serializer(mode="wrap")
    def _defaults_left_out(self, handler: Any) -> dict[str, Any]:
        # left out at their defaults, so canonical specs and their hashes stay as before
        data = handler(self)
        if data.get("padding") == "zeros":
            del data["padding"]
        if "width" in data and data["width"] is None:
            del data["width"]
        return data


@lru_cache(maxsize=64)
def _indices(h: int, wh: int, p: int, width: int | None) -> tuple[Tensor, Tensor, Tensor]:
    """(rows, negated rows, columns into [X | conj(X[-k])]) for padding by ``p``."""
    w = 2 * (wh - 1) if width is None else width
    if w // 2 + 1 != wh:
        raise ValueError(f"width {w} does not match a spectrum with {wh} columns "
                         "(rfft2 of width W has W//2+1 columns)")
    rows = torch.arange(-p, h + p) % h  # rows wrap
    j = torch.arange(-p, wh + p) % w  # full-spectrum column of each padded column
    mirrored = j >= wh  # not stored: conj of column W - j at the negated row
    cols = torch.where(mirrored, w - j + wh, j)
    return rows, (-rows) % h, cols


def pad_spectrum(x: Tensor, p: int, mode: str, width: int | None,
                 conj: Callable[[Tensor], Tensor]) -> Tensor:
    """Pad the last two dims of a half spectrum by ``p`` on every side.

    Args:
        x: (B, C, H, W') complex, or dual (B, 2C, H, W') real.
        p: padding (kernel_size // 2).
        mode: ``circular`` or ``hermitian`` (``zeros`` is left to the convolution).
        width: W for ``hermitian``; default 2*(W'-1).
        conj: conjugation in the caller's layout.

    Returns:
        (B, C, H+2p, W'+2p) in the input's layout.
    """
    rows, neg_rows, cols = (t.to(x.device) for t in _indices(x.shape[-2], x.shape[-1], p,
                                                              width))
    padded = x.index_select(-2, rows)  # (B, C, H+2p, W')
    if mode == "circular":
        zeros = padded.new_zeros(*padded.shape[:-1], p)
        return torch.cat([zeros, padded, zeros], -1)
    mirror = conj(x.index_select(-2, neg_rows))  # X[-k, j] conjugated: (B, C, H+2p, W')
    return torch.cat([padded, mirror], -1).index_select(-1, cols)
