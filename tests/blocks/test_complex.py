"""Complex family: exactness against independent references, gradcheck, statistics."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

import blocks.complex as bc
from blocks.complex_norm import ComplexBatchNorm2d
from blocks.core import TensorSpec, build_block, get_block
from blocks.twins import NAMES
from tests.blocks.helpers import family_examples

EXAMPLES = family_examples("complex")

MODES = ("native", "gauss", "block")


def crandn(*shape: int, dtype=torch.complex64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, dtype=dtype, generator=g)


def check_grad(module: torch.nn.Module, inputs: list[torch.Tensor], seed: int | None = None,
               fast: bool = True):
    """gradcheck w.r.t. the inputs AND every parameter (float64 / complex128)."""
    names = [n for n, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in module.named_parameters()]
    inputs = [x.detach().clone().requires_grad_() for x in inputs]
    k = len(inputs)

    def f(*args):
        if seed is not None:  # same dropout mask on every call
            torch.manual_seed(seed)
        return torch.func.functional_call(module, dict(zip(names, args[k:])), tuple(args[:k]))

    assert gradcheck(f, (*inputs, *params), eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=fast)


# ------------------------------------------------------------------ convolution
def four_real_convs(z, w_re, w_im, b_re, b_im, op):
    """(Wr + iWi) * (xr + ixi) expanded into four real convolutions."""
    yr = op(z.real, w_re) - op(z.imag, w_im) + b_re[:, None, None]
    yi = op(z.real, w_im) + op(z.imag, w_re) + b_im[:, None, None]
    return torch.complex(yr, yi)


@pytest.mark.parametrize("mode", MODES)
def test_conv_matches_four_real_convs(mode):
    m = build_block("complex_conv", {"channels": 5, "kernel_size": 3, "mode": mode},
                    [TensorSpec("complex", (3, 8, 5))]).double()
    with torch.no_grad():
        m.bias_real.normal_(), m.bias_imag.normal_()
    z = crandn(2, 3, 8, 5, dtype=torch.complex128)
    ref = four_real_convs(z, m.weight_real, m.weight_imag, m.bias_real, m.bias_imag,
                          lambda x, w: F.conv2d(x, w, padding=1))
    torch.testing.assert_close(m(z), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mode", MODES)
def test_conv_transpose_matches_four_real_convs(mode):
    m = build_block("complex_conv_transpose", {"channels": 2, "kernel_size": 4, "mode": mode},
                    [TensorSpec("complex", (3, 4, 3))]).double()
    with torch.no_grad():
        m.bias_real.normal_(), m.bias_imag.normal_()
    z = crandn(2, 3, 4, 3, dtype=torch.complex128)
    ref = four_real_convs(z, m.weight_real, m.weight_imag, m.bias_real, m.bias_imag,
                          lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1))
    out = m(z)
    assert out.shape == (2, 2, 8, 6)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mode", MODES)
def test_linear_is_complex_matrix_product(mode):
    m = build_block("complex_linear", {"channels": 4, "mode": mode},
                    [TensorSpec("complex", (3, 4, 3))]).double()
    z = crandn(2, 3, 4, 3, dtype=torch.complex128)
    w = torch.complex(m.weight_real, m.weight_imag).detach().numpy()
    ref = np.einsum("oi,bihw->bohw", w, z.numpy())  # bias starts at zero
    np.testing.assert_allclose(m(z).detach().numpy(), ref, rtol=1e-12, atol=1e-12)


def test_init_output_power_matches_real_he_conv():
    torch.manual_seed(0)
    c, size = 64, 32
    pc, pr = [], []
    for _ in range(4):
        cconv = bc.ComplexConv2d(in_channels=c, out_channels=c, bias=False)
        rconv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
        torch.nn.init.kaiming_normal_(rconv.weight, nonlinearity="relu")  # Var = 2/fan_in
        z = torch.randn(8, c, size, size, dtype=torch.complex64)  # E|z|^2 = 1
        x = torch.randn(8, c, size, size)  # E x^2 = 1
        with torch.no_grad():
            pc.append(cconv(z)[..., 1:-1, 1:-1].abs().square().mean())
            pr.append(rconv(x)[..., 1:-1, 1:-1].square().mean())
        # variance split evenly over re/im: E wr^2 = E wi^2 = 1/fan_in
        fan_in = c * 9
        for w in (cconv.weight_real, cconv.weight_imag):
            assert w.square().mean().item() == pytest.approx(1 / fan_in, rel=0.05)
    power_c, power_r = torch.stack(pc).mean().item(), torch.stack(pr).mean().item()
    assert power_c == pytest.approx(power_r, rel=0.05)
    assert power_c == pytest.approx(2.0, rel=0.05)  # fan_in * (2/fan_in) * 1


def test_conv_transpose_init_output_power():
    torch.manual_seed(1)
    m = bc.ComplexConvTranspose2d(in_channels=64, out_channels=64, bias=False)
    z = torch.randn(8, 64, 16, 16, dtype=torch.complex64)
    with torch.no_grad():
        p = m(z)[..., 2:-2, 2:-2].abs().square().mean().item()
    assert p == pytest.approx(2.0, rel=0.05)  # each output sees 64 * 2 * 2 taps


def test_conv_param_validation():
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        get_block("complex_conv").params(channels=4, kernel_size=4)
    with pytest.raises(ValueError, match="kernel_size must be even"):
        get_block("complex_conv_transpose").params(channels=4, kernel_size=3)
    with pytest.raises(ValueError, match="extra"):
        get_block("complex_conv").params(channels=4, stride=1)
    with pytest.raises(ValueError, match="'zeros', 'circular' or 'hermitian'"):
        get_block("complex_conv").params(channels=4, padding=1)  # a mode, not a size


# ------------------------------------------------------------------ normalisation
def cov2(z: torch.Tensor) -> torch.Tensor:
    """Per-channel 2x2 real/imag covariance, (C, 2, 2), via numpy."""
    zn = z.detach().numpy()
    out = []
    for c in range(zn.shape[1]):
        v = zn[:, c].reshape(-1)
        out.append(np.cov(np.stack([v.real, v.imag]), bias=True))
    return torch.tensor(np.stack(out))


def correlated(n: int, c: int, seed: int, shift: float = 0.0, mix: float = 0.8):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(2, n, c, 6, 4, generator=g, dtype=torch.float64)
    scale = torch.arange(1, c + 1, dtype=torch.float64)[:, None, None]
    return torch.complex(3 * a * scale + 1 + shift, mix * a + 0.5 * b - 2 + shift)


def test_whitening_batch_norm_train_output_is_white():
    m = build_block("complex_batch_norm", {}, [TensorSpec("complex", (3, 6, 4))]).double()
    z = correlated(400, 3, seed=0)
    assert abs(cov2(z)[:, 0, 1]).min() > 0.5  # input really is correlated
    out = m.train()(z)
    # whitened to I, then gamma = I/sqrt(2): covariance I/2, zero mean
    torch.testing.assert_close(cov2(out), 0.5 * torch.eye(2).expand(3, 2, 2).double(),
                               atol=1e-4, rtol=0)
    assert out.mean((0, 2, 3)).abs().max() < 1e-10


def test_whitening_batch_norm_eval_uses_running_stats():
    m = ComplexBatchNorm2d(num_channels=3, momentum=1.0).double()  # running = last batch
    assert torch.equal(m.gamma_rr, m.gamma_ii) and not m.gamma_ri.any()
    za = correlated(300, 3, seed=1)
    m.train()(za)
    zb = correlated(50, 3, seed=2, shift=5.0, mix=-0.3)
    out = m.eval()(zb).detach().numpy()
    # independent reference: stats of batch A (unbiased), inverse sqrt via eigh
    ref = np.empty_like(out)
    for c in range(3):
        a = za[:, c].reshape(-1).numpy()
        pa = np.stack([a.real, a.imag])
        mu, cov = pa.mean(1, keepdims=True), np.cov(pa) + 1e-5 * np.eye(2)
        ev, evec = np.linalg.eigh(cov)
        inv_sqrt = evec @ np.diag(ev ** -0.5) @ evec.T
        b = zb[:, c].numpy()
        pb = np.stack([b.real.ravel(), b.imag.ravel()])
        w = (inv_sqrt @ (pb - mu)) * m.gamma_rr[c].item()  # gamma = diag(1/sqrt 2) in fp32
        ref[:, c] = (w[0] + 1j * w[1]).reshape(b.shape)
    np.testing.assert_allclose(out, ref, rtol=1e-8, atol=1e-8)
    assert abs(cov2(torch.from_numpy(out)) - 0.5 * torch.eye(2)).max() > 0.1  # not re-whitened


def test_fresh_batch_norm_is_identity_in_eval():
    m = ComplexBatchNorm2d(num_channels=4, eps=1e-12).double().eval()
    z = crandn(2, 4, 4, 3, dtype=torch.complex128)
    torch.testing.assert_close(m(z), z)


def test_group_norm_matches_numpy():
    m = build_block("complex_group_norm", {"groups": 2}, [TensorSpec("complex", (4, 4, 3))])
    with torch.no_grad():
        m.gain.normal_(), m.bias_real.normal_(), m.bias_imag.normal_()
    z = crandn(3, 4, 4, 3) * 3
    zn = z.numpy().reshape(3, 2, 2, 4, 3)
    rms = np.sqrt((np.abs(zn) ** 2).mean(axis=(2, 3, 4), keepdims=True) + 1e-5)
    ref = (zn / rms).reshape(3, 4, 4, 3) * m.gain.detach().numpy()[:, None, None]
    ref = ref + (m.bias_real + 1j * m.bias_imag).detach().numpy()[:, None, None]
    np.testing.assert_allclose(m(z).detach().numpy(), ref, rtol=1e-5, atol=1e-5)


def test_group_norm_rejects_indivisible_channels():
    with pytest.raises(ValueError, match=r"channels \(6\) must be divisible by groups \(4\)"):
        build_block("complex_group_norm", {"groups": 4}, [TensorSpec("complex", (6, 4, 3))])


# ------------------------------------------------------------------ activations
def np_modrelu(z, b):
    return np.maximum(np.abs(z) + b, 0) * z / np.abs(z)


ACTS = {
    "crelu": lambda z: np.maximum(z.real, 0) + 1j * np.maximum(z.imag, 0),
    "zrelu": lambda z: np.where((np.angle(z) >= 0) & (np.angle(z) <= np.pi / 2), z, 0),
    "cardioid": lambda z: 0.5 * (1 + np.cos(np.angle(z))) * z,
}


@pytest.mark.parametrize("name", sorted(ACTS))
def test_activation_matches_formula(name):
    z = crandn(2, 3, 4, 3, dtype=torch.complex128)
    out = build_block(name, {}, [TensorSpec("complex", (3, 4, 3))])(z)
    np.testing.assert_allclose(out.numpy(), ACTS[name](z.numpy()), rtol=1e-12, atol=1e-12)


def test_modrelu_matches_formula():
    m = build_block("modrelu", {}, [TensorSpec("complex", (3, 4, 3))]).double()
    with torch.no_grad():
        m.bias.copy_(torch.tensor([-0.5, 0.0, 0.3], dtype=torch.float64))
    z = crandn(2, 3, 4, 3, dtype=torch.complex128)
    ref = np_modrelu(z.numpy(), np.array([-0.5, 0.0, 0.3])[:, None, None])
    np.testing.assert_allclose(m(z).detach().numpy(), ref, rtol=1e-12, atol=1e-12)
    assert (m(z).detach().numpy()[:, 0] == 0).any()  # the negative bias does cut


def test_modrelu_and_cardioid_gradients_finite_at_zero():
    z = torch.zeros(1, 2, 2, 2, dtype=torch.complex64, requires_grad=True)
    for name in ("modrelu", "cardioid"):
        out = build_block(name, {}, [TensorSpec("complex", (2, 2, 2))])(z)
        (g,) = torch.autograd.grad(out.abs().sum() + out.real.sum(), z)
        assert torch.isfinite(torch.view_as_real(g)).all()


def test_dropout_drops_whole_complex_entries():
    m = build_block("complex_dropout", {"p": 0.3}, [TensorSpec("complex", (4, 8, 5))])
    z = crandn(64, 4, 8, 5) + (1 + 1j)  # no exact zeros in either part
    torch.manual_seed(0)
    out = m.train()(z)
    kept = out != 0
    assert torch.equal(out.real != 0, out.imag != 0)  # re and im share the mask
    torch.testing.assert_close(out[kept], z[kept] / 0.7)
    assert (~kept).float().mean().item() == pytest.approx(0.3, abs=0.02)
    assert torch.equal(m.eval()(z), z)


# ------------------------------------------------------------------ resblock
def test_resblock_shapes_embedding_and_skip():
    spec = [TensorSpec("complex", (4, 8, 5)), TensorSpec("embed", (16,))]
    m = build_block("complex_resblock", {"channels": 6, "groups": 4}, spec)
    z, e = crandn(2, 4, 8, 5), torch.randn(2, 16)
    out = m(z, e)
    assert out.shape == (2, 6, 8, 5) and out.dtype == torch.complex64
    assert m.norm1.groups == 4 and m.norm2.groups == 2  # capped to gcd(groups, channels)
    assert not torch.allclose(out, m(z, e + 1.0))  # the embedding shifts the output
    with pytest.raises(ValueError, match="embedding"):
        m(z)
    same = build_block("complex_resblock", {"channels": 4}, spec[:1])
    assert isinstance(same.skip, torch.nn.Identity)
    with torch.no_grad():  # zero residual branch -> identity skip
        same.conv2.weight_real.zero_(), same.conv2.weight_imag.zero_()
    torch.testing.assert_close(same(z), z)


# ------------------------------------------------------------------ spectral pooling
def rfft2(x):
    return torch.fft.rfft2(x, norm="ortho")


def test_spectral_down_is_band_limited_downsampling():
    x = torch.randn(2, 3, 16, 12, dtype=torch.float64)
    out = build_block("spectral_down", {}, [TensorSpec("complex", (3, 16, 7))])(rfft2(x))
    assert out.shape == (2, 3, 8, 4)
    y = torch.fft.irfft2(out, s=(8, 6), norm="ortho").numpy()
    # reference 1: symmetric ideal low-pass (|f| <= N/4, both signs), then keep every 2nd pixel
    fr, fc = np.fft.fftfreq(16) * 16, np.fft.fftfreq(12) * 12
    mask = (np.abs(fr)[:, None] <= 4) & (np.abs(fc)[None, :] <= 3)
    lp = np.fft.ifft2(np.fft.fft2(x.numpy()) * mask)
    assert np.abs(lp.imag).max() < 1e-12
    np.testing.assert_allclose(y, lp.real[..., ::2, ::2], atol=1e-12)
    # reference 2: scipy's Fourier resampling, one axis at a time
    ref = scipy.signal.resample(scipy.signal.resample(x.numpy(), 8, axis=-2), 6, axis=-1)
    np.testing.assert_allclose(y, ref, atol=1e-12)
    # and the output is a valid rfft2 spectrum: the round trip through real space is exact
    torch.testing.assert_close(rfft2(torch.from_numpy(y)), out)


def test_spectral_up_down_keep_exactly_the_low_band():
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    X = rfft2(x)
    down = bc.SpectralDown()
    up = bc.SpectralUp()
    low = up(down(X))
    assert low.shape == X.shape
    inner = (slice(None), slice(None), np.r_[0:4, 13:16], slice(0, 4))  # |f| < N/4
    torch.testing.assert_close(low[inner], X[inner])
    nyq_row = 0.5 * (X[..., 4, :4] + X[..., 12, :4])  # +-H/4 merged then split evenly
    torch.testing.assert_close(low[..., 4, :4], nyq_row)
    torch.testing.assert_close(low[..., 12, :4], nyq_row)
    col = X[..., 4]  # column +W/4 merged with its implicit -W/4 partner conj(X[-r, W/4])
    herm = 0.5 * (col + torch.roll(torch.flip(col, [-1]), 1, -1).conj())
    rows = np.r_[0:4, 13:16]
    torch.testing.assert_close(low[..., rows, 4], herm[..., rows])
    assert low[..., 5:12, :].abs().max() == 0 and low[..., 5:].abs().max() == 0
    torch.testing.assert_close(up(down(low)), low)  # a projection
    # in pixel space: decimate band-limited, then interpolate back (scipy, axis by axis)
    rs = scipy.signal.resample
    ref = rs(rs(rs(rs(x.numpy(), 8, axis=-2), 8, axis=-1), 16, axis=-2), 16, axis=-1)
    np.testing.assert_allclose(torch.fft.irfft2(low, s=(16, 16), norm="ortho").numpy(), ref,
                               atol=1e-12)


def test_spectral_up_is_trigonometric_interpolation():
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    Y = rfft2(x)
    up = build_block("spectral_up", {}, [TensorSpec("complex", (3, 8, 5))])
    big = up(Y)
    assert big.shape == (2, 3, 16, 9)
    xb = torch.fft.irfft2(big, s=(16, 16), norm="ortho")
    torch.testing.assert_close(xb[..., ::2, ::2], x)  # passes through the samples
    torch.testing.assert_close(rfft2(xb), big)  # valid Hermitian spectrum, nothing dropped
    torch.testing.assert_close(bc.SpectralDown()(big), Y)  # right inverse of spectral_down
    ref = scipy.signal.resample(scipy.signal.resample(x.numpy(), 16, axis=-2), 16, axis=-1)
    np.testing.assert_allclose(xb.numpy(), ref, atol=1e-12)


def test_spectral_pool_energy_mode_keeps_coefficients():
    X = rfft2(torch.randn(1, 1, 8, 8, dtype=torch.float64))
    a = bc.SpectralDown(preserve="amplitude")(X)
    e = bc.SpectralDown(preserve="energy")(X)
    torch.testing.assert_close(e, 2 * a)
    torch.testing.assert_close(e[..., :2, :2], X[..., :2, :2])


def test_spectral_down_rejects_bad_sizes():
    with pytest.raises(ValueError, match="divisible by 4"):
        build_block("spectral_down", {}, [TensorSpec("complex", (1, 6, 4))])(
            torch.zeros(1, 1, 6, 4, dtype=torch.complex64))


# ------------------------------------------------------------------ every block: gradcheck, meta
GRAD_CASES = {
    **{f"complex_conv[{m}]": ("complex_conv", {"channels": 2, "mode": m}) for m in MODES},
    **{f"complex_linear[{m}]": ("complex_linear", {"channels": 2, "mode": m}) for m in MODES},
    **{f"complex_conv_transpose[{m}]": ("complex_conv_transpose", {"channels": 2, "mode": m})
       for m in MODES},
    "complex_batch_norm": ("complex_batch_norm", {}),
    "complex_group_norm": ("complex_group_norm", {"groups": 2}),
    "modrelu": ("modrelu", {"bias_init": -0.2}),
    "crelu": ("crelu", {}), "zrelu": ("zrelu", {}), "cardioid": ("cardioid", {}),
    "complex_dropout": ("complex_dropout", {"p": 0.3}),
    "complex_resblock": ("complex_resblock", {"channels": 3, "groups": 2, "dropout": 0.2}),
    "complex_resblock[batch,modrelu]": ("complex_resblock",
                                        {"channels": 2, "norm": "batch", "act": "modrelu"}),
    "spectral_down": ("spectral_down", {}), "spectral_up": ("spectral_up", {}),
    "complex_conv_down": ("complex_conv_down", {}), "complex_conv_up": ("complex_conv_up", {}),
}


def test_every_complex_block_has_a_gradcheck_case_and_example():
    names = {n for n, _ in GRAD_CASES.values()}
    assert names == set(EXAMPLES)
    assert set(NAMES["complex"].values()) <= names  # the blocks with dual twins


MODE_DEPENDENT = ("complex_batch_norm", "complex_dropout", "complex_resblock")


@pytest.mark.parametrize("case,train", [(c, t) for c in sorted(GRAD_CASES) for t in (True, False)
                                        if t or GRAD_CASES[c][0] in MODE_DEPENDENT])
def test_gradcheck(case, train):
    """Fast-mode gradcheck (random directions) w.r.t. input and all parameters."""
    name, params = GRAD_CASES[case]
    spec = [TensorSpec("complex", (2, 4, 3))]
    inputs = [crandn(2, 2, 4, 3, dtype=torch.complex128, seed=3)]
    if name == "complex_resblock":
        spec.append(TensorSpec("embed", (3,)))
        inputs.append(torch.randn(2, 3, dtype=torch.float64))
    torch.manual_seed(0)
    m = build_block(name, params, spec).double().train(train)
    check_grad(m, inputs, seed=0)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_examples_build_on_meta_and_match_real_shapes(name):
    params, spec = EXAMPLES[name]
    xs = [torch.randn(2, *s.shape, dtype=torch.complex64 if s.domain == "complex" else None)
          for s in spec]
    with torch.device("meta"):
        meta_out = build_block(name, params, spec)(*[x.to("meta") for x in xs])
    out = build_block(name, params, spec)(*xs)
    assert meta_out.shape == out.shape and meta_out.dtype == out.dtype == torch.complex64
    assert torch.isfinite(torch.view_as_real(out)).all()


@pytest.mark.parametrize("mode", MODES)
def test_full_gradcheck_complex_conv(mode):
    """Slow-mode gradcheck (full Jacobians, Wirtinger calculus) on a tiny conv."""
    m = build_block("complex_conv", {"channels": 2, "mode": mode},
                    [TensorSpec("complex", (2, 3, 2))]).double()
    check_grad(m, [crandn(1, 2, 3, 2, dtype=torch.complex128)], fast=False)
