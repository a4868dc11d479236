"""Time embedding: sinusoidal features against diffusers and a hand-written formula."""
from __future__ import annotations

import math

import pytest
import torch
from diffusers.models.embeddings import get_timestep_embedding
from pydantic import ValidationError

import blocks
from blocks.core import TensorSpec
from blocks.time import TimeEmbedding, sinusoidal_embedding

EXAMPLES = {"time_embedding": blocks.get("time_embedding").example_config()}

T = TensorSpec("time", ())


def test_sinusoid_matches_diffusers() -> None:
    t = torch.tensor([0, 1, 17, 500, 999])
    for dim, period in [(64, 10000), (32, 1000), (7, 10000)]:
        ours = sinusoidal_embedding(t, dim, period)
        # diffusers' ADM convention: cos first, frequency exponent k/half (shift 0).
        ref = get_timestep_embedding(t, dim, flip_sin_to_cos=True, downscale_freq_shift=0,
                                     max_period=period)
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_sinusoid_single_value_by_hand() -> None:
    emb = sinusoidal_embedding(torch.tensor([3.0]), 4, 100.0)[0]
    # half = 2: frequencies 1 and 100**-0.5 = 0.1.
    expected = [math.cos(3.0), math.cos(0.3), math.sin(3.0), math.sin(0.3)]
    torch.testing.assert_close(emb, torch.tensor(expected), atol=1e-6, rtol=1e-6)


def test_odd_dim_pads_one_zero_column() -> None:
    emb = sinusoidal_embedding(torch.tensor([5.0, 6.0]), 9)
    assert emb.shape == (2, 9)
    assert torch.all(emb[:, -1] == 0)


def test_block_float_and_long_timesteps_agree() -> None:
    torch.manual_seed(0)
    mod = blocks.build("time_embedding", {"dim": 16}, [T])
    t_long = torch.tensor([0, 10, 999])
    out = mod(t_long)
    assert out.shape == (3, 16) and out.dtype == torch.float32
    torch.testing.assert_close(out, mod(t_long.float()))
    # Different timesteps must give different vectors.
    assert torch.cdist(out, out).fill_diagonal_(1.0).min() > 0


def test_block_is_sinusoid_then_mlp() -> None:
    mod = blocks.build("time_embedding", {"dim": 8, "hidden": 12, "max_period": 500.0}, [T])
    assert isinstance(mod, TimeEmbedding)
    lin1, lin2 = mod.mlp[0], mod.mlp[2]
    assert (lin1.in_features, lin1.out_features, lin2.out_features) == (8, 12, 8)
    t = torch.tensor([3.0, 400.0])
    feats = get_timestep_embedding(t, 8, flip_sin_to_cos=True, downscale_freq_shift=0,
                                   max_period=500)
    ref = lin2(torch.nn.functional.silu(lin1(feats)))
    torch.testing.assert_close(mod(t), ref)


def test_default_hidden_is_four_times_dim() -> None:
    mod = blocks.build("time_embedding", {}, [T])
    assert mod.mlp[0].out_features == 4 * 64 and mod.mlp[2].out_features == 64


def test_gradients_reach_all_parameters() -> None:
    mod = blocks.build("time_embedding", *EXAMPLES["time_embedding"])
    mod(torch.tensor([1.0, 2.0])).pow(2).sum().backward()
    for name, p in mod.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_meta_device_forward() -> None:
    with torch.device("meta"):
        mod = blocks.build("time_embedding", {"dim": 10}, [T])
        out = mod(torch.empty(4, dtype=torch.long))
    assert out.shape == (4, 10) and out.device.type == "meta"


def test_param_validation() -> None:
    with pytest.raises(ValidationError, match="dim"):
        blocks.build("time_embedding", {"dim": 0}, [T])
    with pytest.raises(ValidationError, match="extra"):
        blocks.build("time_embedding", {"dims": 4}, [T])
    with pytest.raises(ValueError, match="timesteps of shape"):
        blocks.build("time_embedding", {}, [TensorSpec("time", (3, 4))])
