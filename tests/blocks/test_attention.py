"""Tests for blocks/attention.py: spectral attention variants against independent references."""
from __future__ import annotations

import math

import numpy as np
import pydantic
import pytest
import torch

from blocks import attention
from blocks.core import TensorSpec, build_block
from tests.blocks.helpers import cspec, crandn, family_examples, gradcheck_module

EXAMPLES = family_examples("spectral_attention")

EMB = TensorSpec("embed", (6,))


def np_radius(h: int, w: int) -> np.ndarray:
    """(H, W//2+1) radius in Nyquist units, from integer frequency offsets."""
    ky = np.array([i if i < (h + 1) // 2 else i - h for i in range(h)]) / h
    kx = np.arange(w // 2 + 1) / w
    return np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2) / 0.5


def np_bands(h: int, w: int, bands: int) -> np.ndarray:
    return np.minimum(np.floor(np_radius(h, w) * bands + 1e-12), bands - 1).astype(int)


def manual_mha(attn: attention.TokenAttention, x: torch.Tensor) -> torch.Tensor:
    """Multi-head attention written out: softmax(q k^T / sqrt(d)) v per head, no SDPA."""
    x = attn.norm(x)
    q, k, v = (x @ attn.qkv.weight.T + attn.qkv.bias).chunk(3, dim=-1)
    outs = []
    for hd in range(attn.heads):
        sl = slice(hd * attn.head_dim, (hd + 1) * attn.head_dim)
        w = torch.softmax(q[..., sl] @ k[..., sl].transpose(-1, -2) / math.sqrt(attn.head_dim), -1)
        outs.append(w @ v[..., sl])
    return attn.out(torch.cat(outs, dim=-1))


NAMES = sorted(EXAMPLES)


# --------------------------------------------------------------------------- all variants


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("c,h,wh", [(4, 8, 5), (3, 32, 17)])
@pytest.mark.parametrize("with_embed", [False, True])
def test_residual_shape_and_meta(name, c, h, wh, with_embed):
    params = EXAMPLES[name][0]
    specs = [cspec(c, h, wh)] + ([EMB] if with_embed else [])
    z = crandn(2, c, h, wh)
    args = [z] + ([torch.randn(2, 6)] if with_embed else [])
    out = build_block(name, params, specs)(*args)
    assert out.shape == z.shape and out.dtype == torch.complex64
    assert torch.isfinite(torch.view_as_real(out)).all()
    assert not torch.equal(out, z) or name == "global_filter"  # identity init only for GFNet
    with torch.device("meta"):
        meta = build_block(name, params, specs)
    mo = meta(*[a.to("meta") for a in args])
    assert mo.device.type == "meta" and mo.shape == z.shape and mo.dtype == torch.complex64


def _gradcheck(name: str, fast: bool) -> bool:
    params = dict(EXAMPLES[name][0])
    if name == "lowrank_spectral":
        params["modes"] = 2
    elif name != "global_filter":
        params.update(heads=2, head_dim=2)
    m = build_block(name, params, [cspec(2, 4, 3), EMB])
    for p in m.parameters():  # move off the exact initial values (zero-init gates etc.)
        with torch.no_grad():
            p.add_(0.1 * torch.randn_like(p))
    z = crandn(1, 2, 4, 3, dtype=torch.complex128).requires_grad_()
    e = torch.randn(1, 6, dtype=torch.float64, requires_grad=True)
    return gradcheck_module(m, z, e, fast=fast)


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck(name):
    # the attention variants have hundreds of parameters: check random Jacobian projections
    assert _gradcheck(name, fast=name.endswith("attention"))


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in NAMES if n.endswith("attention")])
def test_gradcheck_full_jacobian(name):
    assert _gradcheck(name, fast=False)


@pytest.mark.parametrize("name", NAMES)
def test_every_parameter_gets_a_gradient(name):
    params, specs = EXAMPLES[name]
    m = build_block(name, params, specs)
    out = m(crandn(2, *specs[0].shape), torch.randn(2, *specs[1].shape))
    (out.abs() ** 2).sum().backward()
    for n, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n


# --------------------------------------------------------------------------- global filter


def test_global_filter_all_ones_is_identity():
    m = build_block("global_filter", {}, [cspec(3, 8, 5), EMB])
    z = crandn(2, 3, 8, 5)
    assert torch.equal(m(z), z)
    assert torch.equal(m(z, torch.randn(2, 6)), z)  # the embedding gain is zero-initialised


def test_global_filter_is_circular_convolution_in_pixel_space():
    h = w = 8
    m = build_block("global_filter", {}, [cspec(2, h, 5)]).double()
    kernel = torch.randn(2, h, w, dtype=torch.float64)
    with torch.no_grad():
        m.filter.copy_(torch.view_as_real(torch.fft.rfft2(kernel)))  # unnormalised DFT of k
    x = torch.randn(1, 2, h, w, dtype=torch.float64)
    y = torch.fft.irfft2(m(torch.fft.rfft2(x, norm="ortho")), s=(h, w), norm="ortho")
    ref = np.zeros((1, 2, h, w))
    xn, kn = x.numpy(), kernel.numpy()
    for a in range(h):
        for b in range(w):
            ref += kn[None, :, a, b, None, None] * np.roll(xn, shift=(a, b), axis=(2, 3))
    np.testing.assert_allclose(y.detach().numpy(), ref, atol=1e-10)


# --------------------------------------------------------------------------- low-rank FNO


@pytest.mark.parametrize("h,wh,modes", [(8, 5, 3), (32, 17, 4)])
def test_lowrank_spectral_matches_dense_cp_weight(h, wh, modes):
    c, rank = 3, 2
    m = build_block("lowrank_spectral", {"modes": modes, "rank": rank}, [cspec(c, h, wh)]).double()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_()
    a, b, kh, kw = (torch.view_as_complex(t).detach().numpy() for t in (m.a, m.b, m.kh, m.kw))
    z = crandn(2, c, h, wh, dtype=torch.complex128)
    out = m(z).detach().numpy()
    zn = z.numpy()
    ref = zn.copy()
    rows = list(range(modes)) + list(range(h - modes, h))
    for ri, row in enumerate(rows):
        for col in range(modes):
            w = np.zeros((c, c), dtype=complex)  # dense W[o, i] for this mode
            for r in range(rank):
                w += np.outer(a[:, r], b[:, r]) * kh[ri, r] * kw[col, r]
            ref[:, :, row, col] += zn[:, :, row, col] @ w.T
    np.testing.assert_allclose(out, ref, atol=1e-10)
    # modes outside the retained block come back bit-for-bit
    assert np.array_equal(out[:, :, modes:h - modes, :], zn[:, :, modes:h - modes, :])
    assert np.array_equal(out[..., modes:], zn[..., modes:])


def test_lowrank_spectral_rejects_too_many_modes():
    with pytest.raises(ValueError, match=r"modes=5 needs 2\*modes <= H \(8\)"):
        build_block("lowrank_spectral", {"modes": 5}, [cspec(2, 8, 5)])


# --------------------------------------------------------------------------- radial bands


@pytest.mark.parametrize("h,w,bands", [(8, 8, 4), (32, 32, 8)])
def test_radial_band_attention_matches_manual_reference(h, w, bands):
    torch.manual_seed(0)  # weights from the global RNG: same numbers whatever ran before
    c = 2
    wh = w // 2 + 1
    m = build_block("radial_band_attention", {"bands": bands, "heads": 2, "head_dim": 4},
                    [cspec(c, h, wh)]).double()
    with torch.no_grad():
        m.attn.out.weight.normal_()
    z = crandn(2, c, h, wh, dtype=torch.complex128)
    out = m(z)
    idx = np_bands(h, w, bands)
    zn = z.numpy()
    # pool each band by an explicit mean over its bins
    tok = np.zeros((2, bands, 2 * c))
    for k in range(bands):
        sel = zn[:, :, idx == k]  # (B, C, n_k)
        if sel.shape[-1]:
            tok[:, k] = np.concatenate([sel.real.mean(-1), sel.imag.mean(-1)], axis=1)
    tok = torch.from_numpy(tok) + m.band_embed
    y = manual_mha(m.attn, tok).detach().numpy()  # (B, bands, 2C)
    mod = y[:, :, :c] + 1j * y[:, :, c:]  # (B, bands, C)
    ref = zn * (1 + mod.transpose(0, 2, 1)[:, :, idx])
    np.testing.assert_allclose(out.detach().numpy(), ref, atol=1e-10)


# --------------------------------------------------------------------------- band-limited


@pytest.mark.parametrize("h,w,low,high", [(8, 8, 0.2, 0.6), (32, 32, 0.0, 0.3),
                                          (32, 32, 0.5, 1.0)])
def test_band_limited_attention_leaves_outside_untouched(h, w, low, high):
    wh = w // 2 + 1
    m = build_block("band_limited_attention", {"low": low, "high": high, "head_dim": 4},
                    [cspec(3, h, wh), EMB])
    z = crandn(2, 3, h, wh)
    out = m(z, torch.randn(2, 6))
    r = np_radius(h, w)
    inside = (r >= low - 1e-9) & (r <= high + 1e-9)
    assert torch.equal(out[..., torch.from_numpy(~inside)], z[..., torch.from_numpy(~inside)])
    changed = (out != z).any(dim=(0, 1)).numpy()
    np.testing.assert_array_equal(changed, inside)


def test_band_limited_attention_matches_manual_reference():
    h, w, c = 8, 8, 2
    m = build_block("band_limited_attention", {"low": 0.3, "high": 0.8, "head_dim": 4},
                    [cspec(c, h, 5)]).double()
    z = crandn(2, c, h, 5, dtype=torch.complex128)
    out = m(z).detach().numpy()
    inside = np.flatnonzero((np_radius(h, w) >= 0.3) & (np_radius(h, w) <= 0.8))
    zf = z.numpy().reshape(2, c, -1)
    tok = np.concatenate([zf.real[:, :, inside], zf.imag[:, :, inside]], axis=1)  # (B, 2C, N)
    y = manual_mha(m.attn, torch.from_numpy(tok.transpose(0, 2, 1)) + m.pos).detach().numpy()
    ref = zf.copy()
    ref[:, :, inside] += (y[:, :, :c] + 1j * y[:, :, c:]).transpose(0, 2, 1)
    np.testing.assert_allclose(out.reshape(2, c, -1), ref, atol=1e-10)


def test_band_limited_attention_errors():
    with pytest.raises(ValueError, match="no frequency of a 8x5 spectrum has radius in"):
        build_block("band_limited_attention", {"low": 0.01, "high": 0.1}, [cspec(2, 8, 5)])
    with pytest.raises(pydantic.ValidationError, match="low .* must be <= high"):
        build_block("band_limited_attention", {"low": 0.9, "high": 0.1}, [cspec(2, 8, 5)])


# --------------------------------------------------------------------------- Nystrom


def test_nystrom_pinv_matches_linalg_pinv():
    m = build_block("nystrom_spectral_attention", {"pinv_iters": 30}, [cspec(2, 8, 5)]).double()
    a = torch.softmax(torch.randn(3, 6, 6, dtype=torch.float64), dim=-1)
    np.testing.assert_allclose(m.pinv(a).numpy(), torch.linalg.pinv(a).numpy(), atol=1e-8)


def test_nystrom_with_constant_logits_is_the_mean_of_values():
    # With q = 0 every softmax is uniform, where Nystrom is exact: each token gets mean(v).
    h, c = 8, 2
    m = build_block("nystrom_spectral_attention", {"bands": 4, "head_dim": 4},
                    [cspec(c, h, 5)]).double()
    qdim = m.attn.heads * m.attn.head_dim
    with torch.no_grad():
        m.attn.qkv.weight[:qdim].zero_()
        m.attn.qkv.bias[:qdim].zero_()
    z = crandn(2, c, h, 5, dtype=torch.complex128)
    out = m(z)
    tok = torch.cat([z.real, z.imag], dim=1).flatten(2).transpose(1, 2) + m.pos  # (B, N, 2C)
    v = (m.attn.norm(tok) @ m.attn.qkv.weight.T + m.attn.qkv.bias)[..., 2 * qdim:]
    y = m.attn.out(v.mean(dim=1, keepdim=True)).expand(-1, tok.shape[1], -1)  # (B, N, 2C)
    ref = z + torch.complex(y[..., :c], y[..., c:]).transpose(1, 2).reshape(2, c, h, 5)
    assert torch.allclose(out, ref, atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_runs_under_bf16_autocast(name):
    # mixed precision hands back bf16 from the linear layers; the spectrum must stay complex64
    params, specs = EXAMPLES[name]
    m = build_block(name, params, specs)
    for p in m.parameters():
        with torch.no_grad():
            p.add_(0.1 * torch.randn_like(p))
    z, e = crandn(2, *specs[0].shape), torch.randn(2, *specs[1].shape)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(z, e)
    ref = m(z, e)
    assert out.dtype == torch.complex64
    assert (out - ref).abs().max() <= 2e-2 * ref.abs().max()
