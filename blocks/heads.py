"""Output heads: turn spectral features into the model's pixel-space prediction.

Every model exposes the same interface whatever domain it works in: it returns the
diffusion target (epsilon, x0 or v, as the spec's ``diffusion.prediction`` says) in pixel
space, (B, C_img, H, W). A head projects features to the image channels in the spectral
domain, projects the result onto Hermitian symmetry (so the inverse transform is exact
and does not depend on how the FFT backend treats the imaginary parts of self-conjugate
bins), then applies the orthonormal ``irfft2``.

Options (Trabelsi et al. 2018 for complex norms/activations): ``norm`` and ``act`` put a
complex (or dual) normalisation and activation in front of the projection, and
``zero_init`` starts the projection at zero, so that the spectral head can mirror the
spatial UNet head (GroupNorm -> SiLU -> zero-initialised conv, Dhariwal & Nichol 2021).
``norm: none, act: none, zero_init: false`` is the bare projection and the default: a
default lives outside the spec's hash, so flipping it would let a finished run trained
with the old head be reused as the new one. The example specs set ``zero_init: true``
(measured in examples/ablations: it starts training at the spatial head's loss).

The head cannot see the spec's image, so ``out_channels`` defaults to 1 (grayscale) and
``size`` (the image width W) to 2 * (W' - 1); the assembler checks that the model's output
shape equals the image shape, so a mismatch is reported rather than silently trained.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from blocks.complex import Cardioid, CReLU, ModReLU, ZReLU
from blocks.complex_norm import ComplexBatchNorm2d, ComplexGroupNorm
from blocks.core import BlockParams, TensorSpec, register_block
from blocks.dual import (DualBatchNorm2d, DualCardioid, DualCReLU, DualGroupNorm, DualModReLU,
                         DualZReLU)
from blocks.spectral import (as_complex, check_spectrum, complex_param, fft_context,
                             fft_real_dtype, full_width, hermitian_project)

Prediction = Literal["epsilon", "x0", "v"]
HeadNorm = Literal["none", "group", "batch"]
HeadAct = Literal["none", "crelu", "modrelu", "zrelu", "cardioid"]

# (complex, dual) twins of each choice; norms take (num_channels, groups)
_NORMS = {"group": (ComplexGroupNorm, DualGroupNorm), "batch": (ComplexBatchNorm2d,
                                                                DualBatchNorm2d)}
_ACTS = {"crelu": (CReLU, DualCReLU), "modrelu": (ModReLU, DualModReLU),
         "zrelu": (ZReLU, DualZReLU), "cardioid": (Cardioid, DualCardioid)}


def head_pre(norm: str, act: str, channels: int, groups: int, dual: bool) -> nn.Module:
    """Norm then activation in front of a head's projection (identity for none/none)."""
    layers: list[nn.Module] = []
    if norm != "none":
        cls = _NORMS[norm][dual]
        layers.append(cls(num_channels=channels, groups=math.gcd(groups, channels))
                      if norm == "group" else cls(num_channels=channels))
    if act != "none":
        cls = _ACTS[act][dual]
        layers.append(cls(num_channels=channels) if act == "modrelu" else cls())
    return nn.Sequential(*layers) if layers else nn.Identity()


def spectrum_to_image(z: torch.Tensor, width: int) -> torch.Tensor:
    """Hermitian projection then orthonormal irfft2: (B, C, H, W') -> (B, C, H, W) real."""
    with fft_context(z):
        z = z.to(torch.complex128 if fft_real_dtype(z) == torch.float64 else torch.complex64)
        z = hermitian_project(z, width)
        return torch.fft.irfft2(z, s=(z.shape[-2], width), norm="ortho")  # (B, C, H, W)


class SpectralHead(nn.Module):
    """1x1 complex projection to the image channels, then back to pixel space.

    Args:
        in_channels: spectrum channels C.
        out_channels: image channels.
        width: image width W.
        bias: add a learned per-channel constant in pixel space (the DC bin, in effect).
        predicts: which diffusion target the head is trained on; recorded for reports.
        norm, act, groups: complex normalisation and activation before the projection.
        zero_init: start the projection at zero (else complex Glorot-like, std 1/sqrt(C)).
    """

    def __init__(self, *, in_channels: int, out_channels: int, width: int, bias: bool,
                 predicts: Prediction, norm: str = "none", act: str = "none",
                 groups: int = 8, zero_init: bool = False) -> None:
        super().__init__()
        self.width, self.predicts = width, predicts
        self.pre = head_pre(norm, act, in_channels, groups, dual=False)
        std = 0.0 if zero_init else 1.0 / math.sqrt(in_channels)
        self.weight = complex_param(out_channels, in_channels, std=std)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = self.pre(z)                                                  # (B, C, H, W') complex
        y = torch.einsum("bchw,oc->bohw", z, as_complex(self.weight).to(z.dtype))  # (B, O, H, W')
        x = spectrum_to_image(y, self.width)  # (B, O, H, W) float
        return x if self.bias is None else x + self.bias[:, None, None].to(x.dtype)


class DualHead(nn.Module):
    """Dual-channel ablation of :class:`SpectralHead`: a real 1x1 conv on stacked re/im.

    The conv maps (B, 2C, H, W') to (B, 2O, H, W'); its output is read as O complex
    channels (real parts first), then projected and inverted like the complex head. A real
    conv on stacked parts is more general than a complex linear map (it need not commute
    with multiplication by i), which is exactly what the dual ablation compares.
    """

    def __init__(self, *, in_channels: int, out_channels: int, width: int, bias: bool,
                 predicts: Prediction, norm: str = "none", act: str = "none",
                 groups: int = 8, zero_init: bool = False) -> None:
        super().__init__()
        self.width, self.predicts = width, predicts
        self.pre = head_pre(norm, act, in_channels, groups, dual=True)
        self.proj = nn.Conv2d(2 * in_channels, 2 * out_channels, kernel_size=1, bias=False)
        if zero_init:
            nn.init.zeros_(self.proj.weight)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj(self.pre(x))  # (B, 2O, H, W') real parts then imaginary parts
        y = y.to(fft_real_dtype(y))  # torch.complex has no half form
        o = y.shape[1] // 2
        out = spectrum_to_image(torch.complex(y[:, :o], y[:, o:]), self.width)  # (B, O, H, W)
        return out if self.bias is None else out + self.bias[:, None, None].to(out.dtype)


class HeadParams(BlockParams):
    out_channels: int = Field(1, gt=0, le=64, description=(
        "image channels (1 grayscale, 3 RGB); the assembler checks it against the image"))
    size: int | None = Field(None, gt=0, description="image width W (default 2*(W'-1))")
    predicts: Prediction = Field("epsilon", description=(
        "diffusion target the output stands for; recorded, the output is always pixel space"))
    bias: bool = Field(True, description="learned per-channel pixel-space offset")
    norm: HeadNorm = Field("none", description=(
        "normalisation before the projection: group (magnitude-RMS group norm), batch "
        "(covariance-whitening complex batch norm) or none"))
    act: HeadAct = Field("none", description="complex activation after the norm, or none")
    groups: int = Field(8, gt=0, le=1024, description="norm groups (capped to a divisor)")
    zero_init: bool = Field(False, description="start the projection at zero, as the "
                            "spatial head's last conv")


@register_block("spectral_head", params=HeadParams, takes=("complex",), gives="real",
                family="head")
def _spectral_head(p: HeadParams, inputs: list[TensorSpec]) -> nn.Module:
    """Complex 1x1 projection to image channels, Hermitian projection, orthonormal irfft2."""
    c, _, wh = check_spectrum("spectral_head", inputs[0])
    return SpectralHead(in_channels=c, out_channels=p.out_channels, width=full_width(wh, p.size),
                        bias=p.bias, predicts=p.predicts, norm=p.norm, act=p.act,
                        groups=p.groups, zero_init=p.zero_init)


@register_block("dual_head", params=HeadParams, takes=("dual",), gives="real", family="head")
def _dual_head(p: HeadParams, inputs: list[TensorSpec]) -> nn.Module:
    """Real 1x1 conv on stacked re/im channels, Hermitian projection, orthonormal irfft2."""
    spec = inputs[0]
    if spec.domain != "dual" or len(spec.shape) != 3 or spec.shape[0] % 2:
        raise ValueError(f"dual_head expects a dual (2C, H, W') input with an even channel "
                         f"count, got {spec.domain} with shape {spec.shape}")
    c2, _, wh = spec.shape
    return DualHead(in_channels=c2 // 2, out_channels=p.out_channels,
                    width=full_width(wh, p.size), bias=p.bias, predicts=p.predicts,
                    norm=p.norm, act=p.act, groups=p.groups, zero_init=p.zero_init)


EXAMPLES: dict[str, tuple[dict, list[TensorSpec]]] = {
    "spectral_head": ({"out_channels": 3}, [TensorSpec("complex", (4, 8, 5))]),
    "dual_head": ({"out_channels": 1, "predicts": "v", "norm": "group", "act": "crelu"},
                  [TensorSpec("dual", (8, 8, 5))]),
}
