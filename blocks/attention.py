"""Spectral attention: mixing information across frequencies of an rfft2 spectrum.

Every block takes a complex (B, C, H, W') spectrum and an optional (B, D) embedding (the
time embedding, added to the attention tokens or used as a gate), and returns a spectrum of
the same shape as a residual update of its input. Attention runs on real tokens that stack
real and imaginary parts (dim 2C) through ``F.scaled_dot_product_attention``.

Variants, cheapest first:

- ``global_filter``: GFNet's learnable elementwise complex filter (Rao et al. 2021).
- ``lowrank_spectral``: FNO's per-mode channel mixing (Li et al. 2021) with a CP-factorised
  weight as in TFNO (Kossaifi et al. 2023).
- ``radial_band_attention``: attention across radial bands (one token per band).
- ``band_limited_attention``: full attention among the frequencies inside one band.
- ``nystrom_spectral_attention``: Nystrom attention over all frequencies (Xiong et al. 2021)
  with radial-band landmarks.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from blocks.core import BlockParams, TensorSpec, register_block
from blocks.spectral import (as_complex, band_mask, band_onehot, check_embed, check_spectrum,
                             complex_param, fft_context, fft_real_dtype, full_width)

# --------------------------------------------------------------------------- helpers


def to_tokens(z: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W') complex -> (B, H*W', 2C) real tokens, real parts first."""
    x = torch.cat([z.real, z.imag], dim=1).flatten(2)  # (B, 2C, H*W')
    return x.transpose(1, 2)


def from_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, N, 2C) real tokens -> (B, C, N) complex."""
    c = x.shape[-1] // 2
    if x.dtype in (torch.float16, torch.bfloat16):  # autocast output; torch.complex needs fp32
        x = x.float()
    x = x.transpose(1, 2)  # (B, 2C, N)
    return torch.complex(x[:, :c], x[:, c:])


class TokenAttention(nn.Module):
    """Pre-norm multi-head self-attention on (B, N, dim) tokens, conditioned additively.

    Args:
        dim: token dim (2C).
        heads: attention heads.
        head_dim: dim per head.
        embed_dim: conditioning dim D, or None without conditioning.
    """

    def __init__(self, *, dim: int, heads: int, head_dim: int, embed_dim: int | None) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.cond = nn.Linear(embed_dim, dim) if embed_dim else None
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * heads * head_dim)
        self.out = nn.Linear(heads * head_dim, dim)
        # small output init: the residual update starts small but every weight gets a gradient
        nn.init.normal_(self.out.weight, std=0.02)
        nn.init.zeros_(self.out.bias)

    def qkv_heads(self, x: torch.Tensor, emb: torch.Tensor | None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised, conditioned tokens -> q, k, v of shape (B, heads, N, head_dim)."""
        if self.cond is not None and emb is not None:
            x = x + self.cond(emb)[:, None, :]
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, N, head_dim)
        return q, k, v

    def merge(self, y: torch.Tensor) -> torch.Tensor:
        """(B, heads, N, head_dim) -> (B, N, dim) through the output projection."""
        b, _, n, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(b, n, self.heads * self.head_dim))

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.qkv_heads(x, emb)
        return self.merge(F.scaled_dot_product_attention(q, k, v))  # (B, N, dim)


# --------------------------------------------------------------------------- modules


class GlobalFilter(nn.Module):
    """GFNet global filter (Rao et al. 2021): ``out = K * z`` with a learned complex K.

    K has one complex weight per (channel, frequency), i.e. a depthwise circular convolution
    with an image-sized kernel. K starts at all ones, so the block starts as identity (the
    residual form z + (K - 1) z). With an embedding, a zero-initialised linear map adds a
    per-channel complex gain: ``out = K * (1 + g(emb)) * z``.
    """

    def __init__(self, *, channels: int, height: int, width_half: int,
                 embed_dim: int | None) -> None:
        super().__init__()
        self.filter = complex_param(channels, height, width_half, mean=1 + 0j)
        self.cond = nn.Linear(embed_dim, 2 * channels) if embed_dim else None
        if self.cond is not None:
            nn.init.zeros_(self.cond.weight)
            nn.init.zeros_(self.cond.bias)

    def forward(self, z: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        out = z * as_complex(self.filter)  # (B, C, H, W') complex
        if self.cond is not None and emb is not None:
            g = self.cond(emb).to(out.real.dtype)  # (B, 2C)
            c = g.shape[1] // 2
            out = out * (1 + torch.complex(g[:, :c], g[:, c:]))[:, :, None, None]
        return out


class LowRankSpectral(nn.Module):
    """FNO spectral convolution with a CP-factorised complex weight, residual.

    FNO (Li et al. 2021) multiplies each retained low-frequency mode by its own C x C
    complex matrix W[o, i, kh, kw]; TFNO (Kossaifi et al. 2023) factorises that 4-way tensor.
    Here it is rank-R CP: ``W = sum_r A[o,r] B[i,r] Kh[kh,r] Kw[kw,r]``, contracted factor by
    factor so the full tensor is never formed. Retained modes: rows 0..m-1 and H-m..H-1
    (positive and negative vertical frequencies), columns 0..m-1. Other modes get no update:
    ``out = z + K(z)``. An embedding gates the R rank-one paths: ``(1 + g_r(emb))``.

    Args:
        channels: C.
        modes: m.
        rank: R.
        embed_dim: conditioning dim D, or None.
    """

    def __init__(self, *, channels: int, modes: int, rank: int, embed_dim: int | None) -> None:
        super().__init__()
        self.modes = modes
        self.a = complex_param(channels, rank, std=0.5 / math.sqrt(rank))
        self.b = complex_param(channels, rank, std=1.0 / math.sqrt(channels))
        self.kh = complex_param(2 * modes, rank, mean=1 + 0j)
        self.kw = complex_param(modes, rank, mean=1 + 0j)
        self.cond = nn.Linear(embed_dim, rank) if embed_dim else None
        if self.cond is not None:
            nn.init.zeros_(self.cond.weight)
            nn.init.zeros_(self.cond.bias)

    def forward(self, z: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, wh = z.shape
        m = self.modes
        low = torch.cat([z[..., :m, :m], z[..., h - m:, :m]], dim=-2)  # (B, C, 2m, m)
        t = torch.einsum("bihw,ir->brhw", low, as_complex(self.b))  # (B, R, 2m, m)
        k = as_complex(self.kh)[:, None, :] * as_complex(self.kw)[None, :, :]  # (2m, m, R)
        t = t * k.permute(2, 0, 1)
        if self.cond is not None and emb is not None:
            t = t * (1 + self.cond(emb).to(t.real.dtype))[:, :, None, None]
        y = torch.einsum("brhw,or->bohw", t, as_complex(self.a))  # (B, C, 2m, m)
        mid = y.new_zeros(b, c, h - 2 * m, m)
        y = torch.cat([y[..., :m, :], mid, y[..., m:, :]], dim=-2)  # (B, C, H, m)
        y = torch.cat([y, y.new_zeros(b, c, h, wh - m)], dim=-1)  # (B, C, H, W')
        return z + y


class RadialBandAttention(nn.Module):
    """Attention across radial frequency bands, applied back as a complex modulation.

    Each band is pooled (mean over its frequencies) to one token of dim 2C (real and
    imaginary parts), a learned band embedding tells the tokens apart, multi-head attention
    mixes the bands, and each frequency is modulated by its band's output read as C complex
    numbers: ``out = z * (1 + m_band)``. Cheap (a handful of tokens) and global: what
    happens at one scale can rescale and rotate every other scale.
    """

    def __init__(self, *, channels: int, onehot: torch.Tensor, heads: int, head_dim: int,
                 embed_dim: int | None) -> None:
        super().__init__()
        bands = onehot.shape[0]
        self.register_buffer("onehot", onehot, persistent=False)  # (bands, H*W')
        # mean pooling weights; empty bands (small grids) pool to a zero token
        pool = onehot / onehot.sum(dim=1, keepdim=True).clamp(min=1.0)
        self.register_buffer("pool", pool, persistent=False)  # (bands, H*W')
        self.band_embed = nn.Parameter(torch.randn(bands, 2 * channels) * 0.02)
        self.attn = TokenAttention(dim=2 * channels, heads=heads, head_dim=head_dim,
                                   embed_dim=embed_dim)

    def forward(self, z: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, wh = z.shape
        x = to_tokens(z)  # (B, H*W', 2C)
        tok = self.pool.to(x.dtype) @ x + self.band_embed  # (B, bands, 2C)
        y = self.attn(tok, emb)  # (B, bands, 2C)
        per_freq = self.onehot.T.to(y.dtype) @ y  # (B, H*W', 2C)
        mod = from_tokens(per_freq).view(b, c, h, wh)  # (B, C, H, W') complex
        return z * (1 + mod)


class BandLimitedAttention(nn.Module):
    """Full attention among the frequencies inside one radial band; the rest pass unchanged.

    Tokens are the individual bins with low <= radius <= high (index list fixed at build
    time), each with a learned position embedding; the attention output is added to those
    bins only, so every bin outside the band is returned bit-for-bit.
    """

    def __init__(self, *, channels: int, index: torch.Tensor, heads: int, head_dim: int,
                 embed_dim: int | None) -> None:
        super().__init__()
        self.register_buffer("index", index, persistent=False)  # (N,) long, into H*W'
        self.pos = nn.Parameter(torch.randn(index.numel(), 2 * channels) * 0.02)
        self.attn = TokenAttention(dim=2 * channels, heads=heads, head_dim=head_dim,
                                   embed_dim=embed_dim)

    def forward(self, z: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, wh = z.shape
        idx = self.index.to(z.device)  # built on CPU even when the module lives on meta
        zf = z.reshape(b, c, h * wh)
        tok = to_tokens(zf.index_select(-1, idx)[..., None]) + self.pos  # (B, N, 2C)
        delta = from_tokens(self.attn(tok, emb)).to(z.dtype)  # (B, C, N) complex
        return zf.index_add(-1, idx, delta).view(b, c, h, wh)


class NystromSpectralAttention(nn.Module):
    """Nystrom attention over all frequencies (Xiong et al. 2021), radial-band landmarks.

    ``softmax(QK^T)`` over N = H*W' frequencies is approximated by
    ``softmax(Q Kl^T) pinv(softmax(Ql Kl^T)) softmax(Ql K^T)``, with the landmarks Ql, Kl
    the per-band means of the queries and keys (bands are the natural summary of a
    spectrum). ``pinv`` is *not* the exact Moore-Penrose pseudo-inverse: it is the paper's
    iterative scheme truncated after ``pinv_iters`` (default 6, as in Xiong et al.) steps,
    an approximation whose error depends on the conditioning of the landmark kernel (no
    SVD, so it runs on every device, meta included). Cost O(N * bands) instead of O(N^2). Residual:
    ``out = z + attn(z)``, with a learned per-frequency position embedding.
    """

    def __init__(self, *, channels: int, onehot: torch.Tensor, heads: int, head_dim: int,
                 embed_dim: int | None, pinv_iters: int = 6) -> None:
        super().__init__()
        pool = onehot / onehot.sum(dim=1, keepdim=True).clamp(min=1.0)
        self.register_buffer("pool", pool, persistent=False)  # (bands, N)
        self.pos = nn.Parameter(torch.randn(onehot.shape[1], 2 * channels) * 0.02)
        self.attn = TokenAttention(dim=2 * channels, heads=heads, head_dim=head_dim,
                                   embed_dim=embed_dim)
        self.pinv_iters = pinv_iters

    def pinv(self, a: torch.Tensor) -> torch.Tensor:
        """Approximate pseudo-inverse of (..., m, m) row-stochastic matrices: ``pinv_iters``
        steps of the Razavi et al. 2014 iteration used by Xiong et al. 2021, truncated,
        so not the exact Moore-Penrose inverse."""
        eye = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
        scale = a.abs().sum(-1).amax(-1, keepdim=True) * a.abs().sum(-2).amax(-1, keepdim=True)
        v = a.transpose(-1, -2) / scale[..., None]
        for _ in range(self.pinv_iters):
            av = a @ v
            v = 0.25 * v @ (13 * eye - av @ (15 * eye - av @ (7 * eye - av)))
        return v

    def forward(self, z: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, wh = z.shape
        q, k, v = self.attn.qkv_heads(to_tokens(z) + self.pos, emb)  # (B, heads, N, d)
        # the iterative pseudo-inverse diverges in half precision: run the core in fp32+
        with fft_context(z):
            dt = fft_real_dtype(z)
            q, k, v = q.to(dt), k.to(dt), v.to(dt)
            pool = self.pool.to(dt)
            ql, kl = pool @ q, pool @ k  # (B, heads, bands, d)
            s = q.shape[-1] ** -0.5
            f = torch.softmax(q @ kl.transpose(-1, -2) * s, dim=-1)  # (B, heads, N, bands)
            a = torch.softmax(ql @ kl.transpose(-1, -2) * s, dim=-1)  # (B, heads, bands, bands)
            bt = torch.softmax(ql @ k.transpose(-1, -2) * s, dim=-1)  # (B, heads, bands, N)
            y = f @ (self.pinv(a) @ (bt @ v))  # (B, heads, N, d)
        delta = from_tokens(self.attn.merge(y)).view(b, c, h, wh)
        return z + delta.to(z.dtype)


# --------------------------------------------------------------------------- registry


class _AttnParams(BlockParams):
    heads: int = Field(2, ge=1, le=64)
    head_dim: int = Field(16, ge=1, le=512)
    width: int | None = Field(None, gt=0, description="image width W (default 2*(W'-1))")


def _dims(name: str, inputs: list[TensorSpec]) -> tuple[int, int, int, int | None]:
    """(C, H, W', D or None) of a (complex, embed?) input list."""
    c, h, wh = check_spectrum(name, inputs[0])
    d = check_embed(name, inputs[1]) if len(inputs) > 1 else None
    return c, h, wh, d


class GlobalFilterParams(BlockParams):
    pass


_Z = TensorSpec("complex", (4, 8, 5))
_E = TensorSpec("embed", (16,))


@register_block("global_filter", params=GlobalFilterParams, takes=("complex", "embed?"),
                gives="complex", family="spectral_attention",
                example=({}, [_Z, _E]))
def _global_filter(p: GlobalFilterParams, inputs: list[TensorSpec]) -> nn.Module:
    """GFNet learnable complex per-(channel, frequency) filter, identity-initialised."""
    c, h, wh, d = _dims("global_filter", inputs)
    return GlobalFilter(channels=c, height=h, width_half=wh, embed_dim=d)


class LowRankParams(BlockParams):
    modes: int = Field(4, ge=1, le=512, description="lowest modes kept per axis (FNO's m)")
    rank: int = Field(4, ge=1, le=512, description="CP rank of the per-mode weight")


@register_block("lowrank_spectral", params=LowRankParams, takes=("complex", "embed?"),
                gives="complex", family="spectral_attention",
                example=({"modes": 3, "rank": 2}, [_Z, _E]))
def _lowrank_spectral(p: LowRankParams, inputs: list[TensorSpec]) -> nn.Module:
    """FNO/TFNO per-mode channel mixing with a CP low-rank complex weight, residual."""
    c, h, wh, d = _dims("lowrank_spectral", inputs)
    if 2 * p.modes > h or p.modes > wh:
        raise ValueError(f"lowrank_spectral: modes={p.modes} needs 2*modes <= H ({h}) and "
                         f"modes <= W' ({wh}); use modes <= {min(h // 2, wh)}")
    return LowRankSpectral(channels=c, modes=p.modes, rank=p.rank, embed_dim=d)


class RadialBandParams(_AttnParams):
    bands: int = Field(8, ge=1, le=256, description="radial bands (one token each)")


@register_block("radial_band_attention", params=RadialBandParams, takes=("complex", "embed?"),
                gives="complex", family="spectral_attention",
                example=({"bands": 4, "heads": 2, "head_dim": 4}, [_Z, _E]))
def _radial_band_attention(p: RadialBandParams, inputs: list[TensorSpec]) -> nn.Module:
    """Multi-head attention across radial-band tokens, applied as a complex modulation."""
    c, h, wh, d = _dims("radial_band_attention", inputs)
    onehot = band_onehot(h, full_width(wh, p.width), p.bands)
    return RadialBandAttention(channels=c, onehot=onehot, heads=p.heads, head_dim=p.head_dim,
                               embed_dim=d)


class BandLimitedParams(_AttnParams):
    low: float = Field(0.0, ge=0.0, le=1.5, description="inner radius, fraction of Nyquist")
    high: float = Field(0.5, ge=0.0, le=1.5, description="outer radius, fraction of Nyquist")

    @model_validator(mode="after")
    def _order(self) -> "BandLimitedParams":
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        return self


@register_block("band_limited_attention", params=BandLimitedParams,
                takes=("complex", "embed?"), gives="complex", family="spectral_attention",
                example=({"low": 0.2, "high": 0.8, "heads": 2, "head_dim": 4}, [_Z, _E]))
def _band_limited_attention(p: BandLimitedParams, inputs: list[TensorSpec]) -> nn.Module:
    """Attention among the frequencies of one radial band; others pass through exactly."""
    c, h, wh, d = _dims("band_limited_attention", inputs)
    # on CPU even under a meta device context: the token count must be a real number
    mask = band_mask(h, full_width(wh, p.width), p.low, p.high, device="cpu")
    index = torch.nonzero(mask.flatten()).flatten()
    if index.numel() == 0:
        raise ValueError(f"band_limited_attention: no frequency of a {h}x{wh} spectrum has "
                         f"radius in [{p.low}, {p.high}] (Nyquist units)")
    return BandLimitedAttention(channels=c, index=index, heads=p.heads, head_dim=p.head_dim,
                                embed_dim=d)


class NystromParams(_AttnParams):
    bands: int = Field(8, ge=1, le=256, description="radial bands used as landmarks")
    pinv_iters: int = Field(6, ge=1, le=50,
                            description="steps of the truncated iterative pseudo-inverse")


@register_block("nystrom_spectral_attention", params=NystromParams,
                takes=("complex", "embed?"), gives="complex", family="spectral_attention",
                example=({"bands": 4, "heads": 2, "head_dim": 4}, [_Z, _E]))
def _nystrom_spectral_attention(p: NystromParams, inputs: list[TensorSpec]) -> nn.Module:
    """Nystrom attention over all frequencies with radial-band landmarks, residual."""
    c, h, wh, d = _dims("nystrom_spectral_attention", inputs)
    onehot = band_onehot(h, full_width(wh, p.width), p.bands)
    return NystromSpectralAttention(channels=c, onehot=onehot, heads=p.heads,
                                    head_dim=p.head_dim, embed_dim=d, pinv_iters=p.pinv_iters)


