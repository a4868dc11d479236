"""The optimised complex/dual blocks against straightforward complex-arithmetic references.

The resblocks run in the stacked [re; im] layout with a fused group norm (for speed); the
references here are written directly in complex arithmetic from the papers' formulas,
with the modules' own parameters, and must agree to float64 rounding.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from blocks.core import TensorSpec, build_block
from blocks.fourier import from_dual, to_dual
from tests.blocks.helpers import crandn


def ref_conv(conv, z: torch.Tensor) -> torch.Tensor:
    """'same' complex convolution with the complex weight, zero padding."""
    w = torch.complex(conv.weight_real, conv.weight_imag)
    if w.dim() == 2:
        w = w[:, :, None, None]
    y = F.conv2d(z, w, padding=w.shape[-1] // 2)
    return y + torch.complex(conv.bias_real, conv.bias_imag)[:, None, None]


def ref_group_norm(gn, z: torch.Tensor) -> torch.Tensor:
    """z / sqrt(mean over the group of |z|^2 + eps) * gain + bias, group by group."""
    out = torch.empty_like(z)
    cg = z.shape[1] // gn.groups
    for g in range(gn.groups):
        part = z[:, g * cg:(g + 1) * cg]
        ms = (part.abs() ** 2).mean(dim=(1, 2, 3), keepdim=True)
        out[:, g * cg:(g + 1) * cg] = part / torch.sqrt(ms + gn.eps)
    return out * gn.gain[:, None, None] + torch.complex(gn.bias_real, gn.bias_imag)[:, None, None]


def ref_act(name: str, act, z: torch.Tensor) -> torch.Tensor:
    mag = z.abs().clamp_min(1e-6)
    if name == "crelu":
        return torch.complex(z.real.clamp_min(0), z.imag.clamp_min(0))
    if name == "modrelu":
        return torch.polar((mag + act.bias[:, None, None]).clamp_min(0), z.angle())
    if name == "zrelu":
        return torch.where((z.angle() >= 0) & (z.angle() <= math.pi / 2), z, 0)
    return 0.5 * (1 + torch.cos(z.angle())) * z  # cardioid


def ref_resblock(m, z: torch.Tensor, emb: torch.Tensor, act: str) -> torch.Tensor:
    h = ref_conv(m.conv1, ref_act(act, m.act1, ref_group_norm(m.norm1, z)))
    shift = m.emb_proj(F.silu(emb))
    c = h.shape[1]
    h = h + torch.complex(shift[:, :c], shift[:, c:])[:, :, None, None]
    h = ref_conv(m.conv2, ref_act(act, m.act2, ref_group_norm(m.norm2, h)))
    return ref_conv(m.skip, z) + h


def randomised(m: torch.nn.Module) -> torch.nn.Module:
    """float64, with every parameter drawn at random (biases, gains not at their init)."""
    m = m.double()
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype) + (p == 1) * 1.0)
    return m


@pytest.mark.parametrize("act", ["crelu", "modrelu", "zrelu", "cardioid"])
@pytest.mark.parametrize("twin", ["complex", "dual"])
def test_resblock_equals_the_complex_reference(act, twin):
    c_in, c, h, wh = 4, 6, 6, 4
    spec = TensorSpec(twin, ((2 if twin == "dual" else 1) * c_in, h, wh))
    m = randomised(build_block(f"{twin}_resblock", {"channels": c, "groups": 3, "act": act},
                               [spec, TensorSpec("embed", (5,))]))
    z, emb = crandn(3, c_in, h, wh, dtype=torch.complex128, seed=2), torch.randn(3, 5).double()
    got = m(z, emb) if twin == "complex" else from_dual(m(to_dual(z), emb))
    torch.testing.assert_close(got, ref_resblock(m, z, emb, act), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("norm", ["batch", "none"])
@pytest.mark.parametrize("train", [True, False])
def test_resblock_stacked_path_equals_the_complex_path(norm, train):
    """Every norm, dropout on, train and eval: the stacked layout (``block`` mode) and the
    layer-by-layer complex forward (the ``native``-mode path) compute the same function."""
    spec = [TensorSpec("complex", (4, 6, 4)), TensorSpec("embed", (5,))]
    m = randomised(build_block("complex_resblock", {"channels": 4, "norm": norm,
                                                    "dropout": 0.3, "act": "modrelu"}, spec))
    z, emb = crandn(3, 4, 6, 4, dtype=torch.complex128, seed=4), torch.randn(3, 5).double()
    m.train(train)
    torch.manual_seed(0)
    stats = [b.clone() for b in m.buffers()]
    fast = m(z, emb)
    fast_stats = [b.clone() for b in m.buffers()]
    for b, s in zip(m.buffers(), stats):
        b.copy_(s)
    torch.manual_seed(0)
    torch.testing.assert_close(fast, m.complex_forward(z, emb), rtol=1e-12, atol=1e-12)
    for a, b in zip(fast_stats, m.buffers()):  # batch norm running statistics too
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_fused_group_norm_gradients_match_the_reference():
    gn = randomised(build_block("complex_group_norm", {"groups": 2},
                                [TensorSpec("complex", (6, 5, 3))]))
    z = crandn(2, 6, 5, 3, dtype=torch.complex128, seed=9).requires_grad_()
    x = to_dual(z.detach()).requires_grad_()
    ref = ref_group_norm(gn, z)
    fast = from_dual(gn.stacked(x))
    torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)
    g = crandn(*ref.shape, dtype=torch.complex128, seed=1)  # a random cotangent
    grads = []
    for out in (ref, fast):
        gn.zero_grad()
        (out.real * g.real + out.imag * g.imag).sum().backward()
        grads.append([p.grad.clone() for p in gn.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(from_dual(x.grad), z.grad, rtol=1e-10, atol=1e-10)
