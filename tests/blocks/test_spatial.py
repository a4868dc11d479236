"""Spatial blocks against hand-written references built from the modules' own weights."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

import blocks
from blocks.adapters import from_dual, to_dual
from blocks.core import TensorSpec
from blocks.spatial import ResBlock, SelfAttention, norm_groups
from tests.blocks.helpers import family_examples

EXAMPLES = family_examples("spatial")


def R(c: int, h: int = 8, w: int | None = None) -> TensorSpec:
    return TensorSpec("real", (c, h, w or h))


def _x(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _randomize(mod: nn.Module, seed: int = 0) -> None:
    """Replace every parameter (zero-initialised ones included) by random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in mod.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))


# --------------------------------------------------------------------------- conv / norm / act


def test_conv_same_padding_and_stride() -> None:
    conv = blocks.build("conv", {"channels": 5, "kernel_size": 5}, [R(3)])
    x = _x(2, 3, 8, 8)
    ref = F.conv2d(x, conv.weight, conv.bias, padding=2)
    torch.testing.assert_close(conv(x), ref)
    down = blocks.build("conv", {"channels": 4, "stride": 2}, [R(3)])
    assert down(x).shape == (2, 4, 4, 4)


def test_conv_rejects_even_kernel_and_extra_keys() -> None:
    with pytest.raises(ValidationError, match="kernel_size must be odd"):
        blocks.build("conv", {"channels": 4, "kernel_size": 4}, [R(3)])
    with pytest.raises(ValidationError, match="extra"):
        blocks.build("conv", {"channels": 4, "padding": 1}, [R(3)])
    with pytest.raises(ValueError, match=r"\(C, H, W\) feature map"):
        blocks.build("conv", {"channels": 4}, [TensorSpec("real", (3, 8))])


@pytest.mark.parametrize("channels", [1, 3, 6, 7, 12, 32])
@pytest.mark.parametrize("groups", [1, 4, 8])
def test_norm_groups_is_largest_divisor(channels: int, groups: int) -> None:
    brute = max(g for g in range(1, groups + 1) if channels % g == 0)
    assert norm_groups(channels, groups) == brute


def test_group_norm_reduces_groups_and_normalises() -> None:
    gn = blocks.build("group_norm", {"groups": 4}, [R(6)])
    assert gn.num_groups == 3
    x = _x(2, 6, 8, 8)
    y = gn(x)
    # Independent reference: standardise each group of 2 channels by hand.
    xg = x.reshape(2, 3, -1)
    ref = (xg - xg.mean(-1, keepdim=True)) / torch.sqrt(xg.var(-1, unbiased=False,
                                                              keepdim=True) + 1e-5)
    torch.testing.assert_close(y, ref.reshape_as(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fn,ref", [("silu", lambda x: x * torch.sigmoid(x)),
                                    ("gelu", lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))),
                                    ("relu", lambda x: x.clamp_min(0))])
def test_act(fn: str, ref) -> None:
    x = _x(2, 3, 4, 4)
    torch.testing.assert_close(blocks.build("act", {"fn": fn}, [R(3, 4)])(x), ref(x))
    with pytest.raises(ValidationError):
        blocks.build("act", {"fn": "tanh"}, [R(3, 4)])


# --------------------------------------------------------------------------- resblock


def _resblock_params(cin: int, cout: int, emb: int | None, scale_shift: bool = True) -> int:
    n = 2 * cin + (9 * cin * cout + cout) + 2 * cout + (9 * cout * cout + cout)
    if emb is not None:
        k = 2 * cout if scale_shift else cout
        n += emb * k + k
    if cin != cout:
        n += cin * cout + cout
    return n


@pytest.mark.parametrize("cin,cout,emb,ss", [(4, 8, 16, True), (8, 8, 16, False),
                                             (4, 4, None, True)])
def test_resblock_param_count(cin: int, cout: int, emb: int | None, ss: bool) -> None:
    specs = [R(cin)] + ([TensorSpec("embed", (emb,))] if emb else [])
    mod = blocks.build("resblock", {"channels": cout, "scale_shift": ss}, specs)
    assert sum(p.numel() for p in mod.parameters()) == _resblock_params(cin, cout, emb, ss)


def test_resblock_starts_as_its_skip_path() -> None:
    mod = blocks.build("resblock", {"channels": 8, "groups": 4}, [R(8), TensorSpec("embed", (6,))])
    x, e = _x(2, 8, 8, 8), _x(2, 6, seed=1)
    torch.testing.assert_close(mod(x, e), x)  # identity skip, zero last conv (ADM)


def _resblock_reference(m: ResBlock, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    def gn(norm: nn.GroupNorm, h: torch.Tensor) -> torch.Tensor:
        return F.group_norm(h, norm.num_groups, norm.weight, norm.bias, norm.eps)

    h = F.conv2d(F.silu(gn(m.norm1, x)), m.conv1.weight, m.conv1.bias, padding=1)
    lin = m.emb[1]
    proj = F.linear(F.silu(e), lin.weight, lin.bias)
    if m.scale_shift:
        c = h.shape[1]
        scale, shift = proj[:, :c, None, None], proj[:, c:, None, None]
        h = gn(m.norm2, h) * (1 + scale) + shift
    else:
        h = gn(m.norm2, h + proj[:, :, None, None])
    h = F.conv2d(F.silu(h), m.conv2.weight, m.conv2.bias, padding=1)
    skip = x if isinstance(m.skip, nn.Identity) else F.conv2d(x, m.skip.weight, m.skip.bias)
    return skip + h


@pytest.mark.parametrize("scale_shift", [True, False])
@pytest.mark.parametrize("cin", [4, 8])
def test_resblock_matches_reference(scale_shift: bool, cin: int) -> None:
    mod = blocks.build("resblock", {"channels": 8, "groups": 4, "scale_shift": scale_shift},
                       [R(cin), TensorSpec("embed", (6,))])
    _randomize(mod)
    x, e = _x(2, cin, 8, 8), _x(2, 6, seed=1)
    out = mod(x, e)
    torch.testing.assert_close(out, _resblock_reference(mod, x, e), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out, mod(x, _x(2, 6, seed=2)))  # conditioning matters


def test_resblock_without_embedding_and_dropout() -> None:
    mod = blocks.build("resblock", {"channels": 6, "dropout": 0.5}, [R(3)])
    assert mod.emb is None
    _randomize(mod)
    x = _x(2, 3, 8, 8)
    mod.eval()
    torch.testing.assert_close(mod(x), mod(x))
    mod.train()
    torch.manual_seed(0)
    a = mod(x)
    torch.manual_seed(1)
    assert not torch.allclose(a, mod(x))


def test_resblock_gradients_reach_every_parameter() -> None:
    mod = blocks.build("resblock", *EXAMPLES["resblock"])
    _randomize(mod)
    x, e = _x(2, 4, 8, 8), _x(2, 16, seed=1)
    mod(x, e).pow(2).sum().backward()
    for name, p in mod.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# --------------------------------------------------------------------------- resampling


def test_downsample_avgpool_matches_reference() -> None:
    x = _x(2, 3, 8, 8)
    out = blocks.build("downsample", {"mode": "avgpool"}, [R(3)])(x)
    ref = x.reshape(2, 3, 4, 2, 4, 2).mean(dim=(3, 5))
    torch.testing.assert_close(out, ref)


def test_downsample_conv_and_odd_size() -> None:
    mod = blocks.build("downsample", {}, [R(3)])
    assert mod(_x(2, 3, 8, 8)).shape == (2, 3, 4, 4)
    with pytest.raises(ValueError, match="even H and W, got 7x8"):
        blocks.build("downsample", {}, [R(3, 7, 8)])


def test_upsample_is_nearest_then_conv() -> None:
    mod = blocks.build("upsample", {}, [R(2, 4)])
    with torch.no_grad():  # a centred delta kernel turns the conv into the identity
        mod.conv.weight.zero_()
        mod.conv.weight[0, 0, 1, 1] = mod.conv.weight[1, 1, 1, 1] = 1.0
        mod.conv.bias.zero_()
    x = _x(1, 2, 4, 4)
    ref = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    torch.testing.assert_close(mod(x), ref)


# --------------------------------------------------------------------------- attention


def _attention_reference(m: SelfAttention, x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    n = F.group_norm(x, m.norm.num_groups, m.norm.weight, m.norm.bias, m.norm.eps)
    tokens = n.flatten(2).transpose(1, 2)  # (B, HW, C)
    qkv = tokens @ m.qkv.weight[:, :, 0, 0].T + m.qkv.bias  # (B, HW, 3C)
    q, k, v = qkv.split(c, dim=-1)
    d = c // m.heads
    outs = []
    for i in range(m.heads):
        sl = slice(i * d, (i + 1) * d)
        att = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(d), dim=-1)
        outs.append(att @ v[..., sl])
    o = torch.cat(outs, dim=-1) @ m.proj.weight[:, :, 0, 0].T + m.proj.bias  # (B, HW, C)
    return x + o.transpose(1, 2).reshape(b, c, h, w)


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_self_attention_matches_reference(heads: int) -> None:
    mod = blocks.build("self_attention", {"heads": heads, "groups": 2}, [R(8, 4, 6)])
    x = _x(2, 8, 4, 6)
    torch.testing.assert_close(mod(x), x)  # zero output projection at init
    _randomize(mod)
    torch.testing.assert_close(mod(x), _attention_reference(mod, x), atol=1e-5, rtol=1e-5)


def test_self_attention_is_permutation_equivariant() -> None:
    mod = blocks.build("self_attention", {"heads": 2}, [R(4, 4)])
    _randomize(mod)
    x = _x(1, 4, 4, 4)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    xp = x.flatten(2)[..., perm].reshape_as(x)
    torch.testing.assert_close(mod(xp).flatten(2), mod(x).flatten(2)[..., perm],
                               atol=1e-5, rtol=1e-5)


def test_self_attention_heads_must_divide_channels() -> None:
    with pytest.raises(ValueError, match="channels 6 not divisible by heads 4"):
        blocks.build("self_attention", {}, [R(6)])


# --------------------------------------------------------------------------- add / concat


def test_add_sums_and_checks() -> None:
    a, b, c = _x(2, 3, 8, 8), _x(2, 3, 8, 8, seed=1), _x(2, 3, 8, 8, seed=2)
    torch.testing.assert_close(blocks.build("add", {}, [R(3)] * 3)(a, b, c), a + b + c)
    with pytest.raises(ValueError, match="input shapes differ"):
        blocks.build("add", {}, [R(3), R(4)])
    with pytest.raises(ValueError, match="share one domain"):
        blocks.build("add", {}, [R(3), TensorSpec("complex", (3, 8, 8))])


def test_concat_real_and_dual_layout() -> None:
    a, b = _x(2, 3, 8, 8), _x(2, 2, 8, 8, seed=1)
    torch.testing.assert_close(blocks.build("concat", {}, [R(3), R(2)])(a, b),
                               torch.cat([a, b], dim=1))
    za, zb = torch.fft.rfft2(a, norm="ortho"), torch.fft.rfft2(b, norm="ortho")
    mod = blocks.build("concat", {}, [TensorSpec("dual", (6, 8, 5)), TensorSpec("dual", (4, 8, 5))])
    out = mod(to_dual(za), to_dual(zb))
    assert out.shape == (2, 10, 8, 5)
    torch.testing.assert_close(from_dual(out), torch.cat([za, zb], dim=1))


def test_concat_rejects_mismatches() -> None:
    with pytest.raises(ValueError, match="spatial sizes differ"):
        blocks.build("concat", {}, [R(3), R(3, 4)])
    with pytest.raises(ValueError, match="share one domain"):
        blocks.build("concat", {}, [R(3), TensorSpec("dual", (4, 8, 5))])
    with pytest.raises(ValueError, match="cannot concatenate 'embed'"):
        blocks.build("concat", {}, [TensorSpec("embed", (4,))] * 2)


# --------------------------------------------------------------------------- registry examples


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_examples_meta_matches_cpu(name: str) -> None:
    params, specs = EXAMPLES[name]
    assert blocks.get(name).family == "spatial"
    out = blocks.build(name, params, specs)(*[torch.randn(2, *s.shape) for s in specs])
    with torch.device("meta"):
        meta = blocks.build(name, params, specs)(*[torch.empty(2, *s.shape) for s in specs])
    assert meta.shape == out.shape and meta.dtype == out.dtype
    assert torch.isfinite(out).all()
