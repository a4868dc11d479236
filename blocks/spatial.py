"""Spatial (pixel-space) blocks: convolutions, normalisation, residual and attention blocks.

These are the building blocks of the DDPM/ADM UNet (Ho et al. 2020, "Denoising Diffusion
Probabilistic Models"; Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image
Synthesis") and the baseline the spectral families are compared against. All take and give
``real`` (B, C, H, W) tensors, except ``add``/``concat`` which work in any feature domain.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from blocks.adapters import concat_domain
from blocks.core import BlockParams, NoParams, TensorSpec, odd_kernel, register_block

ACTIVATIONS: dict[str, type[nn.Module]] = {"silu": nn.SiLU, "gelu": nn.GELU, "relu": nn.ReLU}


def norm_groups(channels: int, groups: int) -> int:
    """The largest divisor of ``channels`` that is <= ``groups`` (GroupNorm needs one)."""
    g = max(1, min(groups, channels))
    while channels % g:
        g -= 1
    return g


def group_norm(channels: int, groups: int = 8, eps: float = 1e-5) -> nn.GroupNorm:
    """GroupNorm with ``groups`` reduced to a divisor of ``channels``."""
    return nn.GroupNorm(norm_groups(channels, groups), channels, eps=eps)


def zero_(module: nn.Module) -> nn.Module:
    """Zero a module's parameters: residual branches start as the identity (ADM)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def _feature_map(name: str, spec: TensorSpec) -> tuple[int, int, int]:
    if len(spec.shape) != 3:
        raise ValueError(f"{name} expects a (C, H, W) feature map, got shape {spec.shape}")
    c, h, w = spec.shape
    return c, h, w


# --------------------------------------------------------------------------- modules


class ResBlock(nn.Module):
    """Residual block with timestep conditioning (DDPM; ADM's scale-shift variant).

    ``GroupNorm-SiLU-conv``, then the embedding is projected and either added to the
    features (DDPM) or used as a FiLM scale and shift after the second norm (ADM,
    Dhariwal & Nichol 2021, "adaptive group normalisation"), then
    ``GroupNorm-SiLU-dropout-conv``; the last conv starts at zero so the block starts as
    its skip path. A 1x1 conv on the skip path matches channel counts.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        emb_dim: size of the conditioning vector, or None for an unconditioned block.
        groups: GroupNorm groups (reduced to a divisor of the channel count).
        dropout: dropout probability before the second conv.
        scale_shift: FiLM conditioning instead of an added bias.
    """

    def __init__(self, *, in_channels: int, out_channels: int, emb_dim: int | None,
                 groups: int = 8, dropout: float = 0.0, scale_shift: bool = True) -> None:
        super().__init__()
        self.scale_shift = scale_shift
        self.norm1 = group_norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb = None
        if emb_dim is not None:
            n = 2 * out_channels if scale_shift else out_channels
            self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, n))
        self.norm2 = group_norm(out_channels, groups)
        self.drop = nn.Dropout(dropout)
        self.conv2 = zero_(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip = (nn.Identity() if in_channels == out_channels
                     else nn.Conv2d(in_channels, out_channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        if self.emb is not None and emb is not None:
            e = self.emb(emb)[:, :, None, None]  # (B, C_out or 2 C_out, 1, 1)
            if self.scale_shift:
                scale, shift = e.chunk(2, dim=1)
                h = self.norm2(h) * (1 + scale) + shift
            else:
                h = self.norm2(h + e)
        else:
            h = self.norm2(h)
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions, pre-norm, residual.

    Scaled dot-product attention (Vaswani et al. 2017, "Attention Is All You Need") as
    placed in the DDPM/ADM UNet; the output projection starts at zero (ADM).

    Args:
        channels: feature channels C (divisible by ``heads``).
        heads: number of attention heads.
        groups: GroupNorm groups.
    """

    def __init__(self, *, channels: int, heads: int = 4, groups: int = 8) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"self_attention: channels {channels} not divisible by heads {heads}")
        self.heads = heads
        self.norm = group_norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = zero_(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(dim=1)  # each (B, heads, HW, C/heads)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, C/heads)
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.proj(out)


class Upsample(nn.Module):
    """Nearest-neighbour x2 upsampling followed by a 3x3 conv (DDPM)."""

    def __init__(self, *, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # (B, C, 2H, 2W)


class Add(nn.Module):
    """Elementwise sum of equally shaped tensors."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class Concat(nn.Module):
    """Channel concatenation that keeps the dual layout; see :func:`concat_domain`."""

    def __init__(self, *, domain: str) -> None:
        super().__init__()
        self.domain = domain

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return concat_domain(self.domain, xs)


# --------------------------------------------------------------------------- params


class ConvParams(BlockParams):
    channels: int = Field(gt=0, le=4096, description="output channels")
    kernel_size: int = Field(3, ge=1, le=15, description="odd kernel size ('same' padding)")
    stride: int = Field(1, ge=1, le=2)
    bias: bool = True

    _odd = field_validator("kernel_size")(odd_kernel)


class GroupNormParams(BlockParams):
    groups: int = Field(8, gt=0, le=1024, description="reduced to a divisor of the channels")
    eps: float = Field(1e-5, gt=0.0, le=1.0)


class ActParams(BlockParams):
    fn: Literal["silu", "gelu", "relu"] = "silu"


class ResBlockParams(BlockParams):
    channels: int = Field(gt=0, le=4096, description="output channels")
    groups: int = Field(8, gt=0, le=1024)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    scale_shift: bool = Field(True, description="FiLM (ADM) instead of additive conditioning")


class DownsampleParams(BlockParams):
    mode: Literal["conv", "avgpool"] = "conv"


class AttentionParams(BlockParams):
    heads: int = Field(4, gt=0, le=256)
    groups: int = Field(8, gt=0, le=1024)


# --------------------------------------------------------------------------- blocks


_R = TensorSpec("real", (4, 8, 8))


@register_block("conv", params=ConvParams, takes=("real",), gives="real", family="spatial",
                example=({"channels": 6}, [_R]))
def _conv(p: ConvParams, inputs: list[TensorSpec]) -> nn.Module:
    """k x k 2-D convolution with 'same' padding (stride 1 or 2)."""
    c, _, _ = _feature_map("conv", inputs[0])
    return nn.Conv2d(c, p.channels, p.kernel_size, stride=p.stride,
                     padding=p.kernel_size // 2, bias=p.bias)


@register_block("group_norm", params=GroupNormParams, takes=("real",), gives="real",
                family="spatial",
                example=({"groups": 2}, [_R]))
def _group_norm(p: GroupNormParams, inputs: list[TensorSpec]) -> nn.Module:
    """GroupNorm (Wu & He 2018); groups reduced to a divisor of the channel count."""
    c, _, _ = _feature_map("group_norm", inputs[0])
    return group_norm(c, p.groups, p.eps)


@register_block("act", params=ActParams, takes=("real",), gives="real", family="spatial",
                example=({"fn": "gelu"}, [_R]))
def _act(p: ActParams, inputs: list[TensorSpec]) -> nn.Module:
    """Pointwise activation: silu, gelu or relu."""
    return ACTIVATIONS[p.fn]()


@register_block("resblock", params=ResBlockParams, takes=("real", "embed?"), gives="real",
                family="spatial",
                example=({"channels": 8, "groups": 4}, [_R, TensorSpec("embed", (16,))]))
def _resblock(p: ResBlockParams, inputs: list[TensorSpec]) -> nn.Module:
    """Residual block with time conditioning (Ho et al. 2020; Dhariwal & Nichol 2021)."""
    c, _, _ = _feature_map("resblock", inputs[0])
    emb_dim = None
    if len(inputs) > 1:
        if len(inputs[1].shape) != 1:
            raise ValueError(f"resblock: embedding must be a (D,) vector, got {inputs[1].shape}")
        emb_dim = inputs[1].shape[0]
    return ResBlock(in_channels=c, out_channels=p.channels, emb_dim=emb_dim, groups=p.groups,
                    dropout=p.dropout, scale_shift=p.scale_shift)


@register_block("downsample", params=DownsampleParams, takes=("real",), gives="real",
                family="spatial",
                example=({"mode": "conv"}, [_R]))
def _downsample(p: DownsampleParams, inputs: list[TensorSpec]) -> nn.Module:
    """Halve H and W: stride-2 3x3 conv or 2x2 average pooling; channels kept."""
    c, h, w = _feature_map("downsample", inputs[0])
    if h % 2 or w % 2:
        raise ValueError(f"downsample needs even H and W, got {h}x{w}")
    if p.mode == "avgpool":
        return nn.AvgPool2d(2)
    return nn.Conv2d(c, c, 3, stride=2, padding=1)


@register_block("upsample", takes=("real",), gives="real", family="spatial",
                example=({}, [_R]))
def _upsample(p: NoParams, inputs: list[TensorSpec]) -> nn.Module:
    """Double H and W: nearest-neighbour x2 then a 3x3 conv; channels kept."""
    c, _, _ = _feature_map("upsample", inputs[0])
    return Upsample(channels=c)


@register_block("self_attention", params=AttentionParams, takes=("real",), gives="real",
                family="spatial",
                example=({"heads": 2, "groups": 2}, [_R]))
def _self_attention(p: AttentionParams, inputs: list[TensorSpec]) -> nn.Module:
    """Multi-head self-attention over H*W positions with GroupNorm and residual (Vaswani 2017)."""
    c, _, _ = _feature_map("self_attention", inputs[0])
    return SelfAttention(channels=c, heads=p.heads, groups=p.groups)


def _same_domain(name: str, inputs: list[TensorSpec]) -> str:
    if not inputs:
        raise ValueError(f"{name} needs at least one input")
    domains = {s.domain for s in inputs}
    if len(domains) > 1:
        raise ValueError(f"{name}: inputs must share one domain, got {sorted(domains)}")
    return inputs[0].domain


@register_block("add", takes=("any*",), gives="same", family="spatial",
                example=({}, [_R, _R]))
def _add(p: NoParams, inputs: list[TensorSpec]) -> nn.Module:
    """Elementwise sum of inputs of one domain and shape."""
    _same_domain("add", inputs)
    shapes = {s.shape for s in inputs}
    if len(shapes) > 1:
        raise ValueError(f"add: input shapes differ: {[s.shape for s in inputs]}")
    return Add()


@register_block("concat", takes=("any*",), gives="same", family="spatial",
                example=({}, [_R, TensorSpec("real", (2, 8, 8))]))
def _concat(p: NoParams, inputs: list[TensorSpec]) -> nn.Module:
    """Channel concatenation of feature maps of one domain (dual-layout aware)."""
    domain = _same_domain("concat", inputs)
    if domain not in ("real", "complex", "dual"):
        raise ValueError(f"concat: cannot concatenate {domain!r} inputs")
    for s in inputs:
        _feature_map("concat", s)
    spatial = {s.shape[1:] for s in inputs}
    if len(spatial) > 1:
        raise ValueError(f"concat: spatial sizes differ: {[s.shape for s in inputs]}")
    return Concat(domain=domain)



__all__ = [
    "ACTIVATIONS", "Add", "Concat", "ResBlock", "SelfAttention", "Upsample",
    "group_norm", "norm_groups", "zero_",
]
