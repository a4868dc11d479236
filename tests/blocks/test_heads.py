"""Tests for blocks/heads.py: spectral and dual output heads."""
from __future__ import annotations

import numpy as np
import pydantic
import pytest
import torch

from blocks import heads
from blocks.core import TensorSpec, build_block
from tests.blocks.helpers import cspec, crandn, gradcheck_module


def np_image_from_half(y: np.ndarray, w: int) -> np.ndarray:
    """Pixel image of a half spectrum without using irfft: extend it to the full spectrum by
    conjugate mirroring and keep the real part of the full inverse FFT (which is what the
    Hermitian projection makes exact)."""
    h, wh = y.shape[-2:]
    full = np.zeros(y.shape[:-1] + (w,), dtype=complex)
    full[..., :wh] = y
    for j in range(wh, w):  # column -j' mirrors column w - j
        for i in range(h):
            full[..., i, j] = np.conj(y[..., (-i) % h, w - j])
    return np.fft.ifft2(full, norm="ortho").real


@pytest.mark.parametrize("h,w", [(8, 8), (8, 9), (32, 32), (7, 7)])
def test_spectral_head_matches_numpy_reference(h, w):
    c, o = 3, 2
    wh = w // 2 + 1
    m = build_block("spectral_head", {"out_channels": o, "size": w, "bias": True},
                    [cspec(c, h, wh)]).double()
    with torch.no_grad():
        m.bias.normal_()
    z = crandn(2, c, h, wh, dtype=torch.complex128)
    out = m(z)
    assert out.shape == (2, o, h, w) and not out.is_complex()
    wc = torch.view_as_complex(m.weight).detach().numpy()  # (O, C)
    y = np.einsum("bchw,oc->bohw", z.numpy(), wc)
    ref = np_image_from_half(y, w) + m.bias.detach().numpy()[:, None, None]
    np.testing.assert_allclose(out.detach().numpy(), ref, atol=1e-10)


def test_spectral_head_with_real_weight_is_a_pixel_space_1x1_conv():
    m = build_block("spectral_head", {"out_channels": 2, "bias": False}, [cspec(3, 8, 5)]).double()
    with torch.no_grad():
        m.weight[..., 1].zero_()
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    out = m(torch.fft.rfft2(x, norm="ortho"))
    ref = torch.einsum("bchw,oc->bohw", x, m.weight[..., 0])
    assert torch.allclose(out, ref, atol=1e-12)


@pytest.mark.parametrize("name,spec", [("spectral_head", cspec(3, 8, 5)),
                                       ("dual_head", TensorSpec("dual", (6, 8, 5)))])
@pytest.mark.parametrize("bias", [False, True])
def test_heads_are_linear_or_affine(name, spec, bias):
    m = build_block(name, {"out_channels": 2, "bias": bias}, [spec]).double()
    if bias:
        with torch.no_grad():
            m.bias.normal_()

    def sample(seed):
        if spec.domain == "complex":
            return crandn(2, *spec.shape, dtype=torch.complex128, seed=seed)
        return torch.randn(2, *spec.shape, dtype=torch.float64,
                           generator=torch.Generator().manual_seed(seed))

    a, b = sample(1), sample(2)
    f0 = m(torch.zeros_like(a))
    assert torch.allclose(m(a + b) + f0, m(a) + m(b), atol=1e-12)
    assert torch.allclose(m(2.5 * a) - f0, 2.5 * (m(a) - f0), atol=1e-12)
    if not bias:
        assert torch.equal(f0, torch.zeros_like(f0))
    assert (m(a) - f0).abs().max() > 1e-3  # not trivially zero


def test_spectral_head_output_is_exactly_invertible():
    h = 8
    m = build_block("spectral_head", {"out_channels": 2, "bias": False},
                    [cspec(3, h, 5)]).double()
    z = crandn(2, 3, h, 5, dtype=torch.complex128)
    y = torch.einsum("bchw,oc->bohw", z, torch.view_as_complex(m.weight))
    back = torch.fft.rfft2(m(z), norm="ortho")
    # the same spectrum, except the self-conjugate columns get their Hermitian part only
    assert torch.allclose(back[..., 1:4], y[..., 1:4], atol=1e-12)
    for col in (0, 4):
        herm = 0.5 * (y[..., col] + torch.roll(y[..., col].flip(-1), 1, -1).conj())
        assert torch.allclose(back[..., col], herm, atol=1e-12)


def test_dual_head_with_block_weight_equals_spectral_head():
    # a complex weight a + ib acts on stacked (re, im) as the real block [[a, -b], [b, a]]
    c, o = 3, 2
    sh = build_block("spectral_head", {"out_channels": o}, [cspec(c, 8, 5)]).double()
    dh = build_block("dual_head", {"out_channels": o}, [TensorSpec("dual", (2 * c, 8, 5))]).double()
    a, b = sh.weight[..., 0].detach(), sh.weight[..., 1].detach()
    with torch.no_grad():
        dh.proj.weight.copy_(torch.cat([torch.cat([a, -b], 1), torch.cat([b, a], 1)], 0)[..., None,
                                                                                         None])
        sh.bias.normal_()
        dh.bias.copy_(sh.bias)
    z = crandn(2, c, 8, 5, dtype=torch.complex128)
    assert torch.allclose(dh(torch.cat([z.real, z.imag], 1)), sh(z), atol=1e-12)


@pytest.mark.parametrize("name,spec", [("spectral_head", cspec(2, 4, 3)),
                                       ("dual_head", TensorSpec("dual", (4, 4, 3)))])
def test_heads_gradcheck(name, spec):
    m = build_block(name, {"out_channels": 1}, [spec])
    if spec.domain == "complex":
        x = crandn(1, *spec.shape, dtype=torch.complex128).requires_grad_()
    else:
        x = torch.randn(1, *spec.shape, dtype=torch.float64, requires_grad=True)
    assert gradcheck_module(m, x)


@pytest.mark.parametrize("name", sorted(heads.EXAMPLES))
@pytest.mark.parametrize("size", [8, 32])
def test_heads_give_pixel_space_output_on_meta_too(name, size):
    params, specs = heads.EXAMPLES[name]
    spec = TensorSpec(specs[0].domain, (specs[0].shape[0], size, size // 2 + 1))
    x = (crandn(2, *spec.shape) if spec.domain == "complex" else torch.randn(2, *spec.shape))
    m = build_block(name, params, [spec])
    out = m(x)
    assert out.shape == (2, params["out_channels"], size, size)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert m.predicts == params.get("predicts", "epsilon")
    with torch.device("meta"):
        mm = build_block(name, params, [spec])
    mo = mm(x.to("meta"))
    assert mo.device.type == "meta" and mo.shape == out.shape and mo.dtype == out.dtype


def test_head_params_are_validated():
    with pytest.raises(pydantic.ValidationError, match="predicts"):
        build_block("spectral_head", {"predicts": "score"}, [cspec(2, 8, 5)])
    with pytest.raises(ValueError, match="width 10 does not match a spectrum with 5 columns"):
        build_block("spectral_head", {"size": 10}, [cspec(2, 8, 5)])
    with pytest.raises(ValueError, match="even channel count"):
        build_block("dual_head", {}, [TensorSpec("dual", (3, 8, 5))])
    m = build_block("spectral_head", {"size": 9, "out_channels": 3}, [cspec(2, 8, 5)])
    assert m(crandn(1, 2, 8, 5)).shape == (1, 3, 8, 9)


@pytest.mark.parametrize("name", sorted(heads.EXAMPLES))
def test_heads_run_under_bf16_autocast_with_fp32_fft(name):
    params, specs = heads.EXAMPLES[name]
    m = build_block(name, params, specs)
    shape = specs[0].shape
    x = crandn(2, *shape) if specs[0].domain == "complex" else torch.randn(2, *shape)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x)
    ref = m(x)
    assert out.dtype == torch.float32
    assert (out - ref).abs().max() <= 2e-2 * ref.abs().max()


# ---- head options: norm, activation, zero init -------------------------------------------
def _rms_group_norm(z: torch.Tensor, groups: int, eps: float = 1e-5) -> torch.Tensor:
    """z / sqrt(mean over each channel group of |z|^2 + eps), written out (gain 1, bias 0)."""
    b, c = z.shape[:2]
    ms = (z.abs() ** 2).reshape(b, groups, -1).mean(-1)                     # (B, G)
    return z / torch.sqrt(ms + eps).repeat_interleave(c // groups, 1)[..., None, None]


def test_normed_head_matches_a_hand_written_reference():
    c, o, groups = 4, 2, 2
    m = build_block("spectral_head", {"out_channels": o, "norm": "group", "act": "crelu",
                                      "groups": groups}, [cspec(c, 8, 5)]).double()
    z = 3.0 * crandn(2, c, 8, 5, dtype=torch.complex128)
    h = _rms_group_norm(z, groups)
    h = torch.complex(h.real.clamp(min=0), h.imag.clamp(min=0))            # CReLU
    y = np.einsum("bchw,oc->bohw", h.numpy(), torch.view_as_complex(m.weight).detach().numpy())
    np.testing.assert_allclose(m(z).detach().numpy(), np_image_from_half(y, 8), atol=1e-10)


@pytest.mark.parametrize("norm", ["group", "batch"])
def test_normed_head_does_not_see_the_input_scale(norm):
    # The bare head's output grows with its input; a normalised head's does not, which is
    # what the norm is for (a spectrum's magnitude varies by orders across frequencies).
    m = build_block("spectral_head", {"norm": norm, "act": "modrelu"}, [cspec(4, 8, 5)]).double()
    bare = build_block("spectral_head", {"norm": "none"}, [cspec(4, 8, 5)]).double()
    z = 10.0 * crandn(8, 4, 8, 5, dtype=torch.complex128)   # mean |z|^2 >> the norm's eps
    m.train()
    assert torch.allclose(m(100.0 * z), m(z), atol=1e-6)
    assert not torch.allclose(bare(100.0 * z), bare(z), atol=1e-3)


@pytest.mark.parametrize("name,spec", [("spectral_head", cspec(4, 8, 5)),
                                       ("dual_head", TensorSpec("dual", (8, 8, 5)))])
def test_zero_init_head_starts_at_its_bias_and_still_learns(name, spec):
    m = build_block(name, {"zero_init": True, "norm": "group", "act": "crelu"}, [spec]).double()
    x = (crandn(2, *spec.shape, dtype=torch.complex128) if spec.domain == "complex"
         else torch.randn(2, *spec.shape, dtype=torch.float64))
    out = m(x)
    assert torch.equal(out, torch.zeros_like(out))          # bias starts at zero too
    proj = m.weight if name == "spectral_head" else m.proj.weight
    (out - 1).square().sum().backward()
    assert proj.grad.abs().max() > 1e-3                     # gradients reach the projection


@pytest.mark.parametrize("norm,act", [("group", "crelu"), ("group", "modrelu"),
                                      ("batch", "cardioid"), ("none", "zrelu")])
def test_dual_head_options_are_twins_of_the_complex_ones(norm, act):
    c, o = 4, 2
    params = {"out_channels": o, "norm": norm, "act": act, "groups": 2}
    sh = build_block("spectral_head", params, [cspec(c, 8, 5)]).double()
    dh = build_block("dual_head", params, [TensorSpec("dual", (2 * c, 8, 5))]).double()
    a, b = sh.weight[..., 0].detach(), sh.weight[..., 1].detach()
    with torch.no_grad():
        dh.proj.weight.copy_(torch.cat([torch.cat([a, -b], 1), torch.cat([b, a], 1)], 0)[..., None,
                                                                                         None])
    assert [type(t).__name__ for t in dh.pre.modules()][1:] == [
        "Dual" + type(t).__name__.removeprefix("Complex") for t in sh.pre.modules()][1:]
    z = crandn(3, c, 8, 5, dtype=torch.complex128)
    sh.train(), dh.train()
    assert torch.allclose(dh(torch.cat([z.real, z.imag], 1)), sh(z), atol=1e-10)


def test_unet_passes_head_params_to_its_head():
    from blocks.core import build_block as build
    from blocks.core import TensorSpec as TS

    x, emb = TS("real", (1, 8, 8)), TS("embed", (16,))
    base = {"channels": 8, "channel_mult": [1, 2], "encoder": "complex_resblock",
            "mid_attention": False, "head": "spectral_head"}
    head = {"block": "spectral_head", "params": {"norm": "group", "zero_init": True}}
    m = build("unet", {**base, "head": head}, [x, emb])
    assert isinstance(m.head.pre[0], torch.nn.Module) and type(m.head.pre[0]).__name__ == (
        "ComplexGroupNorm")
    out = m(torch.randn(2, 1, 8, 8), torch.randn(2, 16))
    assert torch.equal(out, torch.zeros_like(out))
    with pytest.raises(ValueError, match="norm"):
        build("unet", {**base, "head": {"block": "spectral_head", "params": {"norm": "layer"}}},
              [x, emb])
