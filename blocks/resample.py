"""Learned resampling of rfft2 spectra: a stride-2 complex convolution down and a stride-2
transposed complex convolution up, the ablation partners of spectral pooling.

Spectral pooling (:mod:`blocks.spectral_pool`, Rippel et al. 2015) halves an image by
keeping its low frequencies, exactly. The usual alternative in complex-valued networks
(Trabelsi et al. 2018, "Deep Complex Networks") is a learned strided convolution, which on
a spectrum mixes neighbouring frequencies and subsamples the frequency grid. The grids
still line up: a stride-2, kernel-3, padding-1 convolution takes the (H, W//2+1) half
spectrum of an HxW image to (H/2, W//4+1), the half spectrum of an (H/2)x(W/2) image, and
a stride-2 transposed convolution (kernel 4) followed by dropping its last column takes it
back. Neither keeps the Hermitian symmetry of the DC and Nyquist columns; the domain
adapters project onto it when the spectrum returns to pixels.
"""
from __future__ import annotations

from functools import partial

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from blocks.complex import DEFAULT_MODE, ComplexConv2d, ComplexConvTranspose2d, ConvMode
from blocks.core import BlockParams, TensorSpec, register_block


class ConvResampleParams(BlockParams):
    channels: int | None = Field(None, gt=0, le=4096,
                                 description="output channels (default: input channels)")
    mode: ConvMode = DEFAULT_MODE


class ComplexConvDown(nn.Module):
    """Stride-2 3x3 complex convolution on a half spectrum (a learned ``spectral_down``)."""

    def __init__(self, *, in_channels: int, out_channels: int, mode: str = DEFAULT_MODE):
        super().__init__()
        self.conv = ComplexConv2d(in_channels=in_channels, out_channels=out_channels,
                                  kernel_size=3, mode=mode)
        self.conv.op = partial(F.conv2d, stride=2, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        # (B, C, H, W//2+1) complex -> (B, C', H/2, W//4+1) complex
        return self.conv(z)


class ComplexConvUp(nn.Module):
    """Stride-2 transposed complex convolution on a half spectrum (a learned ``spectral_up``)."""

    def __init__(self, *, in_channels: int, out_channels: int, mode: str = DEFAULT_MODE):
        super().__init__()
        self.conv = ComplexConvTranspose2d(in_channels=in_channels, out_channels=out_channels,
                                           kernel_size=4, mode=mode)

    def forward(self, z: Tensor) -> Tensor:
        # (B, C, h, w//2+1) complex -> (B, C', 2h, 2(w//2+1)) -> crop to (B, C', 2h, w+1)
        return self.conv(z)[..., :-1]


def _check(name: str, x: TensorSpec, up: bool) -> int:
    if len(x.shape) != 3:
        raise ValueError(f"{name} expects a (C, H, W//2+1) spectrum, got {x.shape}")
    c, h, w2 = x.shape
    if not up and (h % 2 or (w2 - 1) % 2):
        raise ValueError(f"{name} halves an image whose sides are even and whose half "
                         f"width is even; got a spectrum of (H, W//2+1) = ({h}, {w2})")
    return c


_EXAMPLE = ({}, [TensorSpec("complex", (8, 8, 5))])


@register_block("complex_conv_down", params=ConvResampleParams, takes=("complex",),
                gives="complex", family="complex", example=_EXAMPLE)
def _complex_conv_down(p: ConvResampleParams, inputs: list[TensorSpec]) -> nn.Module:
    """Stride-2 complex conv halving the implied image (Trabelsi et al. 2018)."""
    c = _check("complex_conv_down", inputs[0], up=False)
    return ComplexConvDown(in_channels=c, out_channels=p.channels or c, mode=p.mode)


@register_block("complex_conv_up", params=ConvResampleParams, takes=("complex",),
                gives="complex", family="complex", example=_EXAMPLE)
def _complex_conv_up(p: ConvResampleParams, inputs: list[TensorSpec]) -> nn.Module:
    """Stride-2 transposed complex conv doubling the implied image (Trabelsi et al. 2018)."""
    c = _check("complex_conv_up", inputs[0], up=True)
    return ComplexConvUp(in_channels=c, out_channels=p.channels or c, mode=p.mode)


__all__ = ["ComplexConvDown", "ComplexConvUp", "ConvResampleParams"]
