"""Spectrum-shaped padding of complex/dual convs against explicit full-spectrum references."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from blocks.core import TensorSpec, build_block
from blocks.fourier import from_dual, to_dual
from tests.blocks.helpers import crandn, gradcheck_module

SIZES = [(6, 8), (5, 7), (4, 9), (7, 6)]  # (H, W): even and odd W and H


def conv_block(name: str, c_in: int, h: int, w: int, **params) -> torch.nn.Module:
    dual = name.startswith("dual")
    spec = TensorSpec("dual" if dual else "complex", (2 * c_in if dual else c_in, h, w // 2 + 1))
    m = build_block(name, {"channels": 3, **params}, [spec]).double()
    with torch.no_grad():
        m.bias_real.normal_(), m.bias_imag.normal_()
    return m


def full_from_half(z: np.ndarray, w: int) -> np.ndarray:
    """The full (H, W) spectrum a half one stands for, entry by entry:
    stored columns as they are, the others X[k, j] = conj(X[-k, W - j])."""
    h, wh = z.shape[-2:]
    full = np.zeros((*z.shape[:-1], w), dtype=z.dtype)
    for k in range(h):
        for j in range(w):
            full[..., k, j] = z[..., k, j] if j < wh else np.conj(z[..., (-k) % h, w - j])
    return full


def complex_conv_np(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """'valid' complex cross-correlation (what conv2d computes), by explicit sums."""
    o, _, kh, kw = weight.shape
    b, _, hp, wp = x.shape
    out = np.zeros((b, o, hp - kh + 1, wp - kw + 1), dtype=complex)
    for dy in range(kh):
        for dx in range(kw):
            patch = x[:, :, dy:dy + hp - kh + 1, dx:dx + wp - kw + 1]
            out += np.einsum("oi,bihw->bohw", weight[:, :, dy, dx], patch)
    return out + bias[None, :, None, None]


def reference(m: torch.nn.Module, z: torch.Tensor, w: int, padding: str) -> np.ndarray:
    """The conv output each padding promises, from numpy and the explicit full spectrum."""
    weight = (m.weight_real + 1j * m.weight_imag).detach().numpy()
    bias = (m.bias_real + 1j * m.bias_imag).detach().numpy()
    p, zn, wh = weight.shape[-1] // 2, z.numpy(), z.shape[-1]
    if padding == "hermitian":  # circular conv of the full spectrum, folded back
        full = full_from_half(zn, w)
        padded = np.pad(full, [(0, 0), (0, 0), (p, p), (p, p)], mode="wrap")
        return complex_conv_np(padded, weight, bias)[..., :wh]
    rows = "wrap" if padding == "circular" else "constant"
    padded = np.pad(zn, [(0, 0), (0, 0), (p, p), (0, 0)], mode=rows)
    padded = np.pad(padded, [(0, 0), (0, 0), (0, 0), (p, p)])
    return complex_conv_np(padded, weight, bias)


@pytest.mark.parametrize("padding", ["zeros", "circular", "hermitian"])
@pytest.mark.parametrize("mode", ["native", "gauss", "block"])
@pytest.mark.parametrize("h,w", SIZES)
def test_complex_conv_padding_matches_the_explicit_reference(padding, mode, h, w):
    m = conv_block("complex_conv", 2, h, w, padding=padding, width=w, mode=mode)
    z = crandn(2, 2, h, w // 2 + 1, dtype=torch.complex128, seed=h * w)
    np.testing.assert_allclose(m(z).detach().numpy(), reference(m, z, w, padding),
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("padding", ["circular", "hermitian"])
@pytest.mark.parametrize("mode", ["gauss", "block"])
@pytest.mark.parametrize("h,w", SIZES)
def test_dual_conv_padding_matches_the_explicit_reference(padding, mode, h, w):
    m = conv_block("dual_conv", 2, h, w, padding=padding, width=w, mode=mode)
    z = crandn(2, 2, h, w // 2 + 1, dtype=torch.complex128, seed=h + w)
    got = from_dual(m(to_dual(z))).detach().numpy()
    np.testing.assert_allclose(got, reference(m, z, w, padding), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("h,w", [(4, 8), (5, 7)])
def test_hermitian_padding_of_a_real_image_sees_its_fft2(h, w):
    """For a real image the full spectrum is simply fft2: a kernel on the padded half
    spectrum must give the circular convolution of fft2(x), cropped to W//2+1 columns."""
    m = conv_block("complex_conv", 2, h, w, padding="hermitian", width=w, kernel_size=5)
    x = torch.randn(2, 2, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    full = torch.fft.fft2(x, norm="ortho")
    padded = torch.complex(F.pad(full.real, (2, 2, 2, 2), mode="circular"),
                           F.pad(full.imag, (2, 2, 2, 2), mode="circular"))
    want = F.conv2d(padded, torch.complex(m.weight_real, m.weight_imag))
    want = want + torch.complex(m.bias_real, m.bias_imag)[:, None, None]
    torch.testing.assert_close(m(torch.fft.rfft2(x, norm="ortho")), want[..., :w // 2 + 1],
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["complex_conv", "dual_conv"])
@pytest.mark.parametrize("padding", ["circular", "hermitian"])
def test_padded_conv_gradcheck(name, padding):
    m = conv_block(name, 1, 3, 5, padding=padding, width=5, channels=2)
    z = crandn(1, 1, 3, 3, dtype=torch.complex128, seed=3)
    x = to_dual(z) if name == "dual_conv" else z
    assert gradcheck_module(m, x.requires_grad_())


@pytest.mark.parametrize("padding", ["circular", "hermitian"])
def test_resblocks_pass_padding_to_both_convs_and_twins_agree(padding):
    c, h, w = 4, 6, 7
    params = {"channels": 4, "groups": 2, "padding": padding, "width": w}
    emb = TensorSpec("embed", (8,))
    cm = build_block("complex_resblock", params, [TensorSpec("complex", (c, h, 4)), emb])
    dm = build_block("dual_resblock", params, [TensorSpec("dual", (2 * c, h, 4)), emb])
    dm.load_state_dict(cm.state_dict())
    assert [(v.padding, v.width) for v in (cm.conv1, cm.conv2)] == [(padding, w)] * 2
    z, e = crandn(2, c, h, 4, seed=5), torch.randn(2, 8)
    torch.testing.assert_close(to_dual(cm(z, e)), dm(to_dual(z), e), rtol=1e-5, atol=1e-5)
    zeros = build_block("complex_resblock", {**params, "padding": "zeros"},
                        [TensorSpec("complex", (c, h, 4)), emb])
    zeros.load_state_dict(cm.state_dict())
    assert not torch.allclose(zeros(z, e), cm(z, e))  # the padding does change the result


def test_zero_padding_is_left_out_of_the_dumped_params():
    """Specs that never name a padding keep their canonical form (and hashes)."""
    from blocks.complex import ComplexConvParams, ResBlockParams

    for model in (ComplexConvParams, ResBlockParams):
        assert {"padding", "width"}.isdisjoint(model().model_dump())
        assert model(padding="hermitian", width=9).model_dump()["padding"] == "hermitian"


def test_bad_padding_settings_are_refused():
    spec = [TensorSpec("complex", (2, 6, 5))]
    with pytest.raises(ValueError, match="padding"):
        build_block("complex_conv", {"padding": "reflect"}, spec)
    with pytest.raises(ValueError, match="padding"):
        build_block("complex_conv_transpose", {"padding": "circular"}, spec)
    m = build_block("complex_conv", {"padding": "hermitian", "width": 10}, spec)
    with pytest.raises(ValueError, match="width 10 does not match a spectrum with 5 columns"):
        m(crandn(1, 2, 6, 5))
