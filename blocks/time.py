"""Time conditioning: the diffusion timestep as a learned embedding vector."""
from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn

from blocks.core import BlockParams, TensorSpec, register_block


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal timestep features, ``[cos(t w_k), sin(t w_k)]``, w_k = max_period^(-k/half).

    The transformer position encoding of Vaswani et al. 2017, "Attention Is All You Need",
    as used for timesteps by Ho et al. 2020 (DDPM) and Dhariwal & Nichol 2021 (ADM).

    Args:
        t: (B,) timesteps, float or integer.
        dim: embedding size; an odd ``dim`` gets one zero column at the end.
        max_period: the longest wavelength.

    Returns:
        (B, dim) float32.
    """
    # Our own copy, tested equal to diffusers' get_timestep_embedding (tests/blocks/
    # test_time.py) because importing diffusers.models pulls in its whole model stack,
    # which the blocks layer (and so `archsearch validate`) must not pay for at start-up.
    half = dim // 2
    # Built in forward (not a buffer) so it stays correct on any device, meta included.
    k = torch.arange(half, device=t.device, dtype=torch.float32)
    freqs = torch.exp(-math.log(max_period) * k / max(half, 1))  # (half,)
    args = t.reshape(-1).float()[:, None] * freqs[None, :]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, 2*half)
    if dim % 2:
        emb = torch.cat([emb, emb.new_zeros(emb.shape[0], 1)], dim=-1)
    return emb


class TimeEmbedding(nn.Module):
    """Sinusoidal features followed by an MLP (Linear-SiLU-Linear), as in DDPM/ADM.

    Args:
        dim: output size (and size of the sinusoidal features).
        hidden: width of the MLP's hidden layer.
        max_period: longest wavelength of the sinusoids.
    """

    def __init__(self, *, dim: int, hidden: int, max_period: float = 10000.0) -> None:
        super().__init__()
        self.dim = dim
        self.max_period = max_period
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        emb = sinusoidal_embedding(t, self.dim, self.max_period)  # (B, dim) float32
        w = self.mlp[0].weight
        return self.mlp(emb.to(w.dtype))  # (B, dim)


class TimeEmbeddingParams(BlockParams):
    dim: int = Field(64, gt=0, le=8192, description="embedding size")
    hidden: int | None = Field(None, gt=0, le=32768, description="MLP hidden width; default 4*dim")
    max_period: float = Field(10000.0, gt=1.0, description="longest sinusoid wavelength")


@register_block("time_embedding", params=TimeEmbeddingParams, takes=("time",), gives="embed",
                family="time",
                example=({"dim": 16}, [TensorSpec("time", ())]))
def _time_embedding(p: TimeEmbeddingParams, inputs: list[TensorSpec]) -> nn.Module:
    """Sinusoidal timestep embedding + MLP (Vaswani 2017; Ho et al. 2020): time -> embed (dim,)."""
    if inputs and len(inputs[0].shape) > 1:
        raise ValueError(f"time_embedding expects timesteps of shape (B,), got per-sample "
                         f"shape {inputs[0].shape}")
    return TimeEmbedding(dim=p.dim, hidden=p.hidden or 4 * p.dim, max_period=p.max_period)



__all__ = ["TimeEmbedding", "sinusoidal_embedding"]
