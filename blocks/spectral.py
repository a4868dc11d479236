"""Spectral blocks: frequency-position embeddings, radial band masks, Hermitian projection, FiLM.

All blocks here work on ``rfft2``-layout spectra, (B, C, H, W') complex with W' = W//2+1.
Since W' does not determine W (W = 8 and W = 9 both give W' = 5), blocks that need the
full width take a ``width`` parameter that defaults to the even choice W = 2 * (W' - 1).

Frequency radii are measured in units of the Nyquist frequency (0.5 cycles/pixel), from
``fftfreq(H)`` on the rows and ``rfftfreq(W)`` on the columns, so radius 1 is the Nyquist
circle and the corners of the spectrum reach sqrt(2).

Besides the registered blocks this module exports helpers used by the spectral attention
and head families: :func:`radius_grid`, :func:`band_onehot`, :func:`hermitian_project`,
:func:`fft_context`, :func:`complex_param` and :func:`check_spectrum`.
"""
from __future__ import annotations

import contextlib
import math
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from blocks.core import BlockParams, TensorSpec, register_block
from blocks.fourier import band_index, in_band, radius_grid

# --------------------------------------------------------------------------- helpers


def fft_context(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """Autocast disabled on ``x``'s device; a no-op where autocast does not exist (meta)."""
    if torch.amp.is_autocast_available(x.device.type):
        return torch.autocast(device_type=x.device.type, enabled=False)
    return contextlib.nullcontext()


def fft_real_dtype(x: torch.Tensor) -> torch.dtype:
    """Real dtype an FFT of ``x`` runs in: at least float32 (half FFTs lose digits)."""
    return torch.float64 if x.dtype in (torch.float64, torch.complex128) else torch.float32


def full_width(w_half: int, width: int | None) -> int:
    """Pixel width W of an rfft2 spectrum with W' = ``w_half`` columns.

    Raises:
        ValueError: ``width`` does not give ``w_half`` columns.
    """
    w = 2 * (w_half - 1) if width is None else width
    if w < 1 or w // 2 + 1 != w_half:
        raise ValueError(f"width {w} does not match a spectrum with {w_half} columns "
                         f"(rfft2 of width W has W//2+1 columns)")
    return w


def band_onehot(h: int, w: int, bands: int, *, device: torch.device | str | None = None
                ) -> torch.Tensor:
    """Assignment of every rfft2 bin to one of ``bands`` equal-width radial bands.

    Bands split [0, 1] Nyquist radii evenly with :func:`blocks.fourier.band_index` (the
    edge rule :func:`band_mask` shares); corner bins beyond the Nyquist circle join the
    last band. A one-hot matrix rather than an index tensor, so pooling and broadcasting
    are plain matmuls that also run on the meta device.

    Returns:
        (bands, H * (W//2+1)) float32 one-hot matrix (each column sums to 1).
    """
    idx = band_index(h, w, bands, device=device).flatten()  # (H*W',)
    levels = torch.arange(bands, device=device)
    return (levels[:, None] == idx[None, :]).to(torch.float32)


def band_mask(h: int, w: int, low: float, high: float, *,
              device: torch.device | str | None = None) -> torch.Tensor:
    """Bool (H, W//2+1) mask of the bins with ``low <= radius <= high`` (Nyquist units)."""
    return in_band(h, w, low, high, device=device)


def hermitian_project(z: torch.Tensor, width: int) -> torch.Tensor:
    """Orthogonal projection of an rfft2 spectrum onto spectra of real images.

    In the half spectrum only column 0 and, for even W, column W/2 hold bins whose
    conjugate partner X[-k] lives in the same column; those columns must satisfy
    X[k] = conj(X[-k]) along H (which also makes DC and the Nyquist bins real). Averaging
    each such column with its conjugate-flipped copy is the orthogonal projection onto that
    subspace. Without it ``irfft2`` silently drops the violating part in a backend-dependent
    way, so ``rfft2(irfft2(Z)) != Z``.

    Args:
        z: (..., H, W') complex spectrum.
        width: image width W, required (W' = 5 may come from W = 8 or 9).

    Returns:
        (..., H, W') complex spectrum with ``rfft2(irfft2(out, s=(H, W))) == out``.
    """
    w = full_width(z.shape[-1], width)
    j = torch.arange(z.shape[-1], device=z.device)
    self_paired = (j == 0) | ((j == w // 2) & (w % 2 == 0))  # (W',) columns holding X[-k]
    # index k -> (-k) mod H along H: flip, then roll so that DC stays at row 0
    partner = torch.roll(torch.flip(z, dims=(-2,)), shifts=1, dims=-2).conj()
    return torch.where(self_paired, 0.5 * (z + partner), z)  # (..., H, W') complex


def complex_param(*shape: int, std: float = 0.0, mean: complex = 0j) -> nn.Parameter:
    """Complex weight stored as a real (..., 2) parameter.

    Real storage keeps every optimiser, EMA, gradient clipping and ``.double()`` working;
    use :func:`as_complex` in forward.
    """
    w = torch.randn(*shape, 2) * (std / math.sqrt(2)) if std else torch.zeros(*shape, 2)
    w[..., 0] += mean.real
    w[..., 1] += mean.imag
    return nn.Parameter(w)


def as_complex(p: torch.Tensor) -> torch.Tensor:
    """View a (..., 2) real parameter as a (...) complex tensor."""
    return torch.view_as_complex(p)


def check_spectrum(name: str, spec: TensorSpec) -> tuple[int, int, int]:
    """(C, H, W') of a complex input spec, or a ValueError naming the block."""
    if spec.domain != "complex" or len(spec.shape) != 3:
        raise ValueError(f"{name} expects a complex (C, H, W') spectrum, got {spec.domain} "
                         f"with shape {spec.shape}")
    c, h, wh = spec.shape
    return c, h, wh


def check_embed(name: str, spec: TensorSpec) -> int:
    """Embedding dim D of an ``embed`` input spec."""
    if spec.domain != "embed" or len(spec.shape) != 1:
        raise ValueError(f"{name} expects an embed (D,) vector, got {spec.domain} "
                         f"with shape {spec.shape}")
    return spec.shape[0]


# --------------------------------------------------------------------------- modules


class MagPhaseEmbed(nn.Module):
    """Learned log-magnitude / phase offsets per frequency, plus positional channels.

    Each input channel becomes ``|z| exp(a) * exp(i (angle(z) + b))`` = ``z * exp(a + i b)``
    with learned per-(channel, frequency) ``a`` (added to the log-magnitude) and ``b`` (a
    phase offset), zero-initialised so the block starts as identity. Written as a product
    it stays smooth at z = 0, where the angle is undefined.

    The multiplicative part cannot create signal where the input has none, so ``extra``
    additional complex channels carry a learned per-frequency positional embedding,
    concatenated after the input channels (as in CoordConv, Liu et al. 2018, but in
    frequency space). Channel k starts as ``0.1 * exp(i pi (k+1) r)`` with r the radius in
    Nyquist units: a radial sinusoidal code in the spirit of Vaswani et al. 2017.

    Args:
        channels: input channels C.
        height: spectrum rows H.
        width: image width W.
        extra: positional channels appended to the output.
    """

    def __init__(self, *, channels: int, height: int, width: int, extra: int) -> None:
        super().__init__()
        wh = width // 2 + 1
        self.log_gain = nn.Parameter(torch.zeros(channels, height, wh))
        self.phase = nn.Parameter(torch.zeros(channels, height, wh))
        self.extra = extra
        if extra:
            r = radius_grid(height, width)  # (H, W')
            k = torch.arange(1, extra + 1, dtype=r.dtype)[:, None, None]
            ang = math.pi * k * r[None]  # (K, H, W')
            self.pos = nn.Parameter(0.1 * torch.stack([ang.cos(), ang.sin()], dim=-1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        gain = torch.exp(torch.complex(self.log_gain, self.phase))  # (C, H, W') complex
        out = z * gain  # (B, C, H, W') complex
        if self.extra:
            pos = as_complex(self.pos).to(out.dtype)  # (K, H, W')
            out = torch.cat([out, pos.expand(z.shape[0], *pos.shape)], dim=1)
        return out  # (B, C + K, H, W') complex


class BandMask(nn.Module):
    """Keep or zero a radial band of an rfft2 spectrum (an ideal band-pass / band-stop)."""

    def __init__(self, *, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask, persistent=False)  # (H, W') bool

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.mask.to(z.real.dtype)  # (B, C, H, W') complex


class Hermitian(nn.Module):
    """Project an rfft2 spectrum onto spectra of real images; see :func:`hermitian_project`."""

    def __init__(self, *, width: int) -> None:
        super().__init__()
        self.width = width

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return hermitian_project(z, self.width)  # (B, C, H, W') complex


class SpectralFiLM(nn.Module):
    """Per-frequency FiLM from a conditioning vector (Perez et al. 2018, "FiLM").

    A linear map from the embedding gives, per (channel, radial band), a scale ``gamma`` and
    a complex shift ``beta``; every frequency takes its band's values:
    ``out = z * (1 + gamma) + beta``. ``gamma`` is real (a gain) or complex (gain and phase
    rotation). The linear map is zero-initialised, so the block starts as identity.

    Args:
        embed_dim: conditioning dim D.
        channels: spectrum channels C.
        onehot: (bands, H*W') band assignment from :func:`band_onehot`.
        complex_scale: complex rather than real ``gamma``.
    """

    def __init__(self, *, embed_dim: int, channels: int, onehot: torch.Tensor,
                 complex_scale: bool) -> None:
        super().__init__()
        self.channels = channels
        self.bands = onehot.shape[0]
        self.scale_parts = 2 if complex_scale else 1
        self.proj = nn.Linear(embed_dim, channels * self.bands * (self.scale_parts + 2))
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.register_buffer("onehot", onehot, persistent=False)  # (bands, H*W')

    def forward(self, z: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        b, c, h, wh = z.shape
        m = self.proj(emb).view(b, c * (self.scale_parts + 2), self.bands)  # (B, C*P, bands)
        m = (m @ self.onehot.to(m.dtype)).view(b, self.scale_parts + 2, c, h, wh)
        m = m.to(z.real.dtype)  # autocast may hand back bf16, which torch.complex rejects
        if self.scale_parts == 2:
            gamma = torch.complex(m[:, 0], m[:, 1])
        else:
            gamma = m[:, 0]
        beta = torch.complex(m[:, -2], m[:, -1])  # (B, C, H, W') complex
        return z * (1 + gamma) + beta  # (B, C, H, W') complex


# --------------------------------------------------------------------------- registry


class MagPhaseEmbedParams(BlockParams):
    channels: int | None = Field(None, gt=0, le=4096, description=(
        "output channels; the ones beyond the input's carry the learned positional embedding "
        "(default: same as input, no positional channels)"))
    width: int | None = Field(None, gt=0, description="image width W (default 2*(W'-1))")


@register_block("magphase_embed", params=MagPhaseEmbedParams, takes=("complex",),
                gives="complex", family="spectral",
                example=({"channels": 6}, [TensorSpec("complex", (4, 8, 5))]))
def _magphase_embed(p: MagPhaseEmbedParams, inputs: list[TensorSpec]) -> nn.Module:
    """Learned per-frequency log-magnitude/phase offsets (+ positional-embedding channels)."""
    c, h, wh = check_spectrum("magphase_embed", inputs[0])
    out = c if p.channels is None else p.channels
    if out < c:
        raise ValueError(f"magphase_embed: channels ({out}) must be >= the input channels ({c}); "
                         "the extra channels hold the positional embedding")
    return MagPhaseEmbed(channels=c, height=h, width=full_width(wh, p.width), extra=out - c)


class BandMaskParams(BlockParams):
    low: float = Field(0.0, ge=0.0, le=1.5, description="inner radius, fraction of Nyquist")
    high: float = Field(1.0, ge=0.0, le=1.5, description=(
        "outer radius, fraction of Nyquist (the corners reach sqrt(2) ~ 1.414)"))
    mode: Literal["keep", "remove"] = "keep"
    width: int | None = Field(None, gt=0, description="image width W (default 2*(W'-1))")

    @model_validator(mode="after")
    def _order(self) -> "BandMaskParams":
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        return self


@register_block("band_mask", params=BandMaskParams, takes=("complex",), gives="complex",
                family="spectral",
                example=({"low": 0.25, "high": 0.75}, [TensorSpec("complex", (4, 8, 5))]))
def _band_mask(p: BandMaskParams, inputs: list[TensorSpec]) -> nn.Module:
    """Keep (band-pass) or remove (band-stop) the radial band low <= r <= high of Nyquist."""
    _, h, wh = check_spectrum("band_mask", inputs[0])
    m = band_mask(h, full_width(wh, p.width), p.low, p.high)
    return BandMask(mask=m if p.mode == "keep" else ~m)


class HermitianParams(BlockParams):
    width: int | None = Field(None, gt=0, description="image width W (default 2*(W'-1))")


@register_block("hermitian", params=HermitianParams, takes=("complex",), gives="complex",
                family="spectral",
                example=({}, [TensorSpec("complex", (4, 8, 5))]))
def _hermitian(p: HermitianParams, inputs: list[TensorSpec]) -> nn.Module:
    """Project a spectrum onto Hermitian symmetry so irfft2 inverts exactly."""
    _, _, wh = check_spectrum("hermitian", inputs[0])
    return Hermitian(width=full_width(wh, p.width))


class SpectralFiLMParams(BlockParams):
    bands: int = Field(8, ge=1, le=256, description="radial bands sharing one modulation")
    complex_scale: bool = Field(False, description="complex (gain + phase) rather than real scale")
    width: int | None = Field(None, gt=0, description="image width W (default 2*(W'-1))")


@register_block("spectral_film", params=SpectralFiLMParams, takes=("complex", "embed"),
                gives="complex", family="spectral",
                example=({"bands": 4, "complex_scale": True},
                      [TensorSpec("complex", (4, 8, 5)), TensorSpec("embed", (16,))]))
def _spectral_film(p: SpectralFiLMParams, inputs: list[TensorSpec]) -> nn.Module:
    """Per-(channel, radial band) FiLM scale and complex shift from an embedding, zero-init."""
    if len(inputs) != 2:
        raise ValueError("spectral_film takes a spectrum and an embedding")
    c, h, wh = check_spectrum("spectral_film", inputs[0])
    d = check_embed("spectral_film", inputs[1])
    onehot = band_onehot(h, full_width(wh, p.width), p.bands)
    return SpectralFiLM(embed_dim=d, channels=c, onehot=onehot, complex_scale=p.complex_scale)


