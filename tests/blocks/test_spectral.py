"""Tests for blocks/spectral.py: radius grid, band masks, Hermitian projection, FiLM, mag/phase."""
from __future__ import annotations

import math

import numpy as np
import pydantic
import pytest
import torch

from blocks import spectral
from blocks.core import TensorSpec, build_block
from tests.blocks.helpers import cspec, crandn, family_examples, gradcheck_module

EXAMPLES = family_examples("spectral")


def np_centred_radius(h: int, w: int) -> np.ndarray:
    """Radius (Nyquist units) of the full, fftshift-ed spectrum, from integer offsets."""
    ky = (np.arange(h) - h // 2) / h
    kx = (np.arange(w) - w // 2) / w
    return np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2) / 0.5


def np_band(h: int, w: int, low: float, high: float) -> np.ndarray:
    """Full-spectrum band mask in the *unshifted* fft2 layout, computed on the centred grid."""
    r = np_centred_radius(h, w)
    m = (r >= low - 1e-9) & (r <= high + 1e-9)
    return np.fft.ifftshift(m)


# --------------------------------------------------------------------------- radius / masks


@pytest.mark.parametrize("h,w", [(8, 8), (7, 9), (32, 32), (6, 11)])
def test_radius_grid_matches_centred_numpy(h, w):
    r = spectral.radius_grid(h, w, dtype=torch.float64).numpy()
    ref = np.fft.ifftshift(np_centred_radius(h, w))[:, : w // 2 + 1]
    np.testing.assert_allclose(r, ref, atol=1e-12)
    assert r[0, 0] == 0.0


@pytest.mark.parametrize("h,w,low,high", [(8, 8, 0.0, 0.5), (8, 8, 0.25, 1.0),
                                          (7, 9, 0.3, 0.8), (32, 32, 0.1, 0.6)])
@pytest.mark.parametrize("mode", ["keep", "remove"])
def test_band_mask_removes_exactly_the_stated_band(h, w, low, high, mode):
    m = build_block("band_mask", {"low": low, "high": high, "mode": mode, "width": w},
                    [cspec(1, h, w // 2 + 1)])
    kept = (m(torch.ones(1, 1, h, w // 2 + 1, dtype=torch.complex64))[0, 0] != 0).numpy()
    ref = np_band(h, w, low, high)[:, : w // 2 + 1]
    np.testing.assert_array_equal(kept, ref if mode == "keep" else ~ref)
    # the band is neither empty nor everything, so the test can tell keep from remove
    assert 0 < ref.sum() < ref.size


@pytest.mark.parametrize("h,w,low,high", [(8, 8, 0.0, 0.5), (8, 8, 0.5, 1.2), (7, 9, 0.2, 0.7),
                                          (16, 16, 0.3, 0.9)])
@pytest.mark.parametrize("mode", ["keep", "remove"])
def test_band_mask_is_numpy_band_filtering_in_pixel_space(h, w, low, high, mode):
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    m = build_block("band_mask", {"low": low, "high": high, "mode": mode, "width": w},
                    [cspec(3, h, w // 2 + 1)])
    ours = torch.fft.irfft2(m(torch.fft.rfft2(x, norm="ortho")), s=(h, w), norm="ortho")
    full = np_band(h, w, low, high)
    full = full if mode == "keep" else ~full
    ref = np.fft.ifft2(np.fft.fft2(x.numpy()) * full)
    assert np.abs(ref.imag).max() < 1e-10  # the radial mask is symmetric, so the result is real
    np.testing.assert_allclose(ours.numpy(), ref.real, atol=1e-10)


def test_band_mask_params_are_validated():
    with pytest.raises(pydantic.ValidationError, match="low .* must be <= high"):
        build_block("band_mask", {"low": 0.8, "high": 0.2}, [cspec(1, 8, 5)])
    with pytest.raises(pydantic.ValidationError, match="mode"):
        build_block("band_mask", {"mode": "bandpass"}, [cspec(1, 8, 5)])
    with pytest.raises(ValueError, match="width 10 does not match a spectrum with 5 columns"):
        build_block("band_mask", {"width": 10}, [cspec(1, 8, 5)])
    with pytest.raises(ValueError, match="expects a complex"):
        build_block("band_mask", {}, [TensorSpec("real", (1, 8, 8))])


def test_band_onehot_assigns_each_bin_to_its_radial_band():
    h, w, bands = 16, 16, 5
    oh = spectral.band_onehot(h, w, bands)
    assert oh.shape == (bands, h * (w // 2 + 1))
    assert torch.equal(oh.sum(0), torch.ones(h * (w // 2 + 1)))
    r = np.fft.ifftshift(np_centred_radius(h, w))[:, : w // 2 + 1].flatten()
    ref = np.minimum(np.floor(r * bands + 1e-12), bands - 1).astype(int)
    np.testing.assert_array_equal(oh.argmax(0).numpy(), ref)


# --------------------------------------------------------------------------- hermitian


@pytest.mark.parametrize("h,w", [(8, 8), (7, 8), (8, 9), (7, 7), (32, 32)])
def test_hermitian_is_identity_on_spectra_of_real_images(h, w):
    x = torch.randn(2, 3, h, w)
    z = torch.fft.rfft2(x, norm="ortho")
    assert torch.allclose(spectral.hermitian_project(z, w), z, atol=1e-6)


@pytest.mark.parametrize("h,w", [(8, 8), (7, 8), (8, 9), (7, 7), (32, 32)])
def test_hermitian_makes_irfft2_exactly_invertible(h, w):
    z = crandn(2, 3, h, w // 2 + 1)
    m = build_block("hermitian", {"width": w}, [cspec(3, h, w // 2 + 1)])
    hz = m(z)
    back = torch.fft.rfft2(torch.fft.irfft2(hz, s=(h, w), norm="ortho"), norm="ortho")
    assert (back - hz).abs().max() < 1e-5
    # a generic spectrum is not invertible that way: the check above can fail
    raw = torch.fft.rfft2(torch.fft.irfft2(z, s=(h, w), norm="ortho"), norm="ortho")
    assert (raw - z).abs().max() > 1e-2


def test_hermitian_is_an_orthogonal_projection():
    h, w = 8, 8
    z, y = crandn(4, 2, h, 5, dtype=torch.complex128), crandn(4, 2, h, 5, dtype=torch.complex128,
                                                               seed=1)
    pz, py = spectral.hermitian_project(z, w), spectral.hermitian_project(y, w)
    assert torch.allclose(spectral.hermitian_project(pz, w), pz, atol=1e-12)  # idempotent
    # residual orthogonal to the range under the real inner product Re<a, b>
    inner = (torch.conj(z - pz) * py).real.sum()
    assert abs(inner.item()) < 1e-10
    # only the self-paired columns (0 and W/2) change
    assert torch.equal(pz[..., 1:4], z[..., 1:4])


def test_hermitian_removes_a_symmetry_breaking_perturbation():
    h, w = 8, 8
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    q = crandn(2, 3, h, 5, dtype=torch.complex128, seed=3)
    pert = q - spectral.hermitian_project(q, w)  # lies entirely outside the Hermitian subspace
    assert pert.abs().max() > 0.1
    z = torch.fft.rfft2(x, norm="ortho") + pert
    out = torch.fft.irfft2(spectral.hermitian_project(z, w), s=(h, w), norm="ortho")
    assert torch.allclose(out, x, atol=1e-10)


def test_hermitian_gradcheck():
    z = crandn(1, 2, 6, 4, dtype=torch.complex128).requires_grad_()
    assert gradcheck_module(build_block("hermitian", {}, [cspec(2, 6, 4)]), z)


# --------------------------------------------------------------------------- spectral FiLM


def test_spectral_film_zero_init_is_identity():
    m = build_block("spectral_film", {"bands": 4}, [cspec(3, 8, 5), TensorSpec("embed", (7,))])
    z, e = crandn(2, 3, 8, 5), torch.randn(2, 7)
    assert torch.equal(m(z, e), z)


@pytest.mark.parametrize("complex_scale", [False, True])
@pytest.mark.parametrize("h,w,bands", [(8, 8, 4), (32, 32, 8)])
def test_spectral_film_matches_per_band_reference(complex_scale, h, w, bands):
    c, d = 3, 5
    wh = w // 2 + 1
    m = build_block("spectral_film", {"bands": bands, "complex_scale": complex_scale},
                    [cspec(c, h, wh), TensorSpec("embed", (d,))])
    torch.nn.init.normal_(m.proj.weight)
    torch.nn.init.normal_(m.proj.bias)
    z, e = crandn(2, c, h, wh), torch.randn(2, d)
    out = m(z, e)
    parts = 4 if complex_scale else 3
    mod = (e @ m.proj.weight.T + m.proj.bias).detach().numpy().reshape(2, parts, c, bands)
    fy, fx = np.fft.fftfreq(h), np.fft.rfftfreq(w)
    ref = np.empty((2, c, h, wh), dtype=np.complex128)
    zn = z.numpy()
    for i in range(h):
        for j in range(wh):
            band = min(int(math.hypot(fy[i], fx[j]) / 0.5 * bands), bands - 1)
            g = mod[:, 0, :, band] + (1j * mod[:, 1, :, band] if complex_scale else 0)
            beta = mod[:, -2, :, band] + 1j * mod[:, -1, :, band]
            ref[:, :, i, j] = zn[:, :, i, j] * (1 + g) + beta
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-4, atol=1e-4)


def test_spectral_film_gradcheck():
    m = build_block("spectral_film", {"bands": 3, "complex_scale": True},
                    [cspec(2, 6, 4), TensorSpec("embed", (3,))])
    torch.nn.init.normal_(m.proj.weight, std=0.3)
    z = crandn(2, 2, 6, 4, dtype=torch.complex128).requires_grad_()
    e = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert gradcheck_module(m, z, e)


def test_spectral_film_needs_an_embedding():
    with pytest.raises(ValueError, match="expects an embed"):
        build_block("spectral_film", {}, [cspec(2, 8, 5), TensorSpec("real", (2, 8, 8))])


# --------------------------------------------------------------------------- magphase embed


def test_magphase_embed_zero_init_is_identity_plus_positional_channels():
    m = build_block("magphase_embed", {"channels": 5}, [cspec(3, 8, 5)])
    z = crandn(2, 3, 8, 5)
    out = m(z)
    assert out.shape == (2, 5, 8, 5)
    assert torch.equal(out[:, :3], z)
    # positional channels: independent of the input, radial sinusoids at init
    assert torch.equal(out[0, 3:], out[1, 3:])
    assert torch.equal(m(2 * z)[:, 3:], out[:, 3:])
    r = np.fft.ifftshift(np_centred_radius(8, 8))[:, :5]
    for k in range(2):
        ref = 0.1 * np.exp(1j * np.pi * (k + 1) * r)
        np.testing.assert_allclose(out[0, 3 + k].detach().numpy(), ref, atol=1e-6)


def test_magphase_embed_offsets_log_magnitude_and_phase():
    m = build_block("magphase_embed", {}, [cspec(2, 8, 5)])
    with torch.no_grad():
        m.log_gain.normal_(std=0.5)
        m.phase.normal_(std=1.0)
    z = crandn(3, 2, 8, 5, dtype=torch.complex128)
    out = m.double()(z).detach().numpy()
    zn, a, b = z.numpy(), m.log_gain.detach().numpy(), m.phase.detach().numpy()
    np.testing.assert_allclose(np.log(np.abs(out)), np.log(np.abs(zn)) + a, atol=1e-9)
    dphase = np.angle(out) - (np.angle(zn) + b)
    np.testing.assert_allclose(np.exp(1j * dphase), 1.0, atol=1e-9)  # equal modulo 2 pi


def test_magphase_embed_gradcheck_and_errors():
    m = build_block("magphase_embed", {"channels": 3}, [cspec(2, 4, 3)])
    with torch.no_grad():
        m.log_gain.normal_(std=0.2)
    z = crandn(1, 2, 4, 3, dtype=torch.complex128).requires_grad_()
    assert gradcheck_module(m, z)
    with pytest.raises(ValueError, match=r"channels \(1\) must be >= the input channels \(2\)"):
        build_block("magphase_embed", {"channels": 1}, [cspec(2, 8, 5)])


# --------------------------------------------------------------------------- every block


def _sample(spec: TensorSpec, device: str = "cpu") -> torch.Tensor:
    if spec.domain == "complex":
        return torch.randn(2, *spec.shape, dtype=torch.complex64, device=device)
    return torch.randn(2, *spec.shape, device=device)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
@pytest.mark.parametrize("size", [8, 32])
def test_every_block_runs_on_meta_with_the_real_shapes(name, size):
    params, specs = EXAMPLES[name]
    specs = [TensorSpec(s.domain, (s.shape[0], size, size // 2 + 1)) if s.domain == "complex"
             else s for s in specs]
    real = build_block(name, params, specs)(*[_sample(s) for s in specs])
    with torch.device("meta"):
        meta_block = build_block(name, params, specs)
    meta = meta_block(*[_sample(s, "meta") for s in specs])
    assert meta.device.type == "meta"
    assert meta.shape == real.shape and meta.dtype == real.dtype == torch.complex64
    assert torch.isfinite(torch.view_as_real(real)).all()


def test_spectral_film_runs_under_bf16_autocast():
    m = build_block("spectral_film", {"bands": 4}, [cspec(3, 8, 5), TensorSpec("embed", (7,))])
    torch.nn.init.normal_(m.proj.weight, std=0.2)
    z, e = crandn(2, 3, 8, 5), torch.randn(2, 7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(z, e)
    ref = m(z, e)
    assert out.dtype == torch.complex64
    assert (out - ref).abs().max() <= 2e-2 * ref.abs().max()
