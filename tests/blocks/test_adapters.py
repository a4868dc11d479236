"""FFT and dual adapters: inverses, Parseval, numpy reference, autocast, layouts."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import blocks
from blocks.adapters import (FFT2, IFFT2, IRFFT2, RFFT2, concat_domain, convert,
                             domain_channels, from_dual, spec_for, to_dual)
from blocks.core import TensorSpec
from tests.blocks.helpers import family_examples

EXAMPLES = family_examples("adapter")


def _x(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _z(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(*shape, generator=g), torch.randn(*shape, generator=g))


@pytest.mark.parametrize("size", [8, 7, 6, 5])
def test_irfft2_inverts_rfft2(size: int) -> None:
    x = _x(2, 3, size, size)
    spec = TensorSpec("real", (3, size, size))
    fwd = blocks.build("rfft2", {}, [spec])
    z = fwd(x)
    assert z.shape == (2, 3, size, size // 2 + 1) and z.dtype == torch.complex64
    inv = blocks.build("irfft2", {"size": size}, [TensorSpec("complex", tuple(z.shape[1:]))])
    torch.testing.assert_close(inv(z), x, atol=1e-5, rtol=1e-5)


def test_irfft2_default_width_is_even() -> None:
    x = _x(1, 2, 8, 8)
    inv = blocks.build("irfft2", {}, [TensorSpec("complex", (2, 8, 5))])
    torch.testing.assert_close(inv(RFFT2()(x)), x, atol=1e-5, rtol=1e-5)


def test_irfft2_rejects_inconsistent_size() -> None:
    with pytest.raises(ValueError, match="size 8 needs 5 spectrum columns"):
        blocks.build("irfft2", {"size": 8}, [TensorSpec("complex", (2, 8, 4))])
    with pytest.raises(ValueError, match="cannot give width 9"):
        IRFFT2(width=9)(_z(1, 1, 8, 4))


@pytest.mark.parametrize("size", [8, 7])
def test_ifft2_inverts_fft2(size: int) -> None:
    x = _x(2, 3, size, size)
    z = FFT2()(x)
    assert z.shape == x.shape and z.dtype == torch.complex64
    torch.testing.assert_close(IFFT2()(z), x, atol=1e-5, rtol=1e-5)


def test_ifft2_keeps_real_part_of_non_hermitian_spectrum() -> None:
    z = _z(1, 2, 6, 6)
    expected = np.fft.ifft2(z.numpy().astype(np.complex128), norm="ortho").real
    np.testing.assert_allclose(IFFT2()(z).numpy(), expected, atol=1e-5)


def test_fft2_parseval() -> None:
    x = _x(4, 3, 8, 8, seed=1)
    z = FFT2()(x)
    torch.testing.assert_close(z.abs().pow(2).sum(), x.pow(2).sum(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("size", [8, 7])
def test_rfft2_parseval_with_doubled_columns(size: int) -> None:
    x = _x(4, 3, size, size, seed=2)
    z = RFFT2()(x)
    # Columns 1..ceil(W/2)-1 stand for themselves and their conjugate mirror; column 0 and,
    # for even W, the Nyquist column W/2 are their own mirrors.
    weight = torch.full((z.shape[-1],), 2.0)
    weight[0] = 1.0
    if size % 2 == 0:
        weight[-1] = 1.0
    energy = (z.abs().pow(2) * weight).sum()
    torch.testing.assert_close(energy, x.pow(2).sum(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("size", [8, 7])
def test_matches_numpy_reference(size: int) -> None:
    x = _x(2, 3, size, size, seed=3)
    xn = x.numpy().astype(np.float64)
    np.testing.assert_allclose(RFFT2()(x).numpy(), np.fft.rfft2(xn, norm="ortho"), atol=1e-5)
    np.testing.assert_allclose(FFT2()(x).numpy(), np.fft.fft2(xn, norm="ortho"), atol=1e-5)
    z = np.fft.rfft2(xn, norm="ortho")
    back = IRFFT2(width=size)(torch.from_numpy(z.astype(np.complex64)))
    np.testing.assert_allclose(back.numpy(), np.fft.irfft2(z, s=(size, size), norm="ortho"),
                               atol=1e-5)


def test_bf16_autocast_still_gives_full_precision_fft() -> None:
    x = _x(2, 3, 8, 8, seed=4).bfloat16()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        z = RFFT2()(x)
        zf = FFT2()(x)
        y = IRFFT2(width=8)(z)
        yf = IFFT2()(zf)
    assert z.dtype == torch.complex64 and zf.dtype == torch.complex64
    assert y.dtype == torch.float32 and yf.dtype == torch.float32
    ref = np.fft.rfft2(x.float().numpy().astype(np.float64), norm="ortho")
    np.testing.assert_allclose(z.numpy(), ref, atol=1e-5)
    torch.testing.assert_close(y, x.float(), atol=1e-5, rtol=1e-5)


def test_to_dual_layout_and_round_trip() -> None:
    z = _z(2, 3, 8, 5)
    d = to_dual(z)
    assert d.shape == (2, 6, 8, 5) and d.dtype == torch.float32
    torch.testing.assert_close(d[:, :3], z.real)
    torch.testing.assert_close(d[:, 3:], z.imag)
    torch.testing.assert_close(from_dual(d), z)
    blocks_round = blocks.build("from_dual", {}, [TensorSpec("dual", (6, 8, 5))])(
        blocks.build("to_dual", {}, [TensorSpec("complex", (3, 8, 5))])(z))
    torch.testing.assert_close(blocks_round, z)


def test_dual_helpers_reject_wrong_inputs() -> None:
    with pytest.raises(ValueError, match="expects a complex tensor"):
        to_dual(_x(1, 2, 4, 3))
    with pytest.raises(ValueError, match="even channel count"):
        from_dual(_x(1, 3, 4, 3))
    with pytest.raises(ValueError, match="even channel count"):
        blocks.build("from_dual", {}, [TensorSpec("dual", (3, 8, 5))])


def test_concat_domain_dual_keeps_real_then_imag() -> None:
    a, b = _z(2, 3, 8, 5, seed=5), _z(2, 2, 8, 5, seed=6)
    cat = concat_domain("dual", [to_dual(a), to_dual(b)])
    assert cat.shape == (2, 10, 8, 5)
    # Independent reference: concatenate in the complex domain, then split.
    torch.testing.assert_close(from_dual(cat), torch.cat([a, b], dim=1))
    torch.testing.assert_close(concat_domain("complex", [a, b]), torch.cat([a, b], dim=1))
    with pytest.raises(ValueError, match="cannot concatenate"):
        concat_domain("embed", [a])


DOMAINS = ("real", "complex", "dual")


def _make(domain: str, size: int) -> torch.Tensor:
    x = _x(2, 3, size, size, seed=7)
    if domain == "real":
        return x
    z = torch.fft.rfft2(x, norm="ortho")
    return z if domain == "complex" else to_dual(z)


@pytest.mark.parametrize("size", [8, 7])
@pytest.mark.parametrize("src", DOMAINS)
@pytest.mark.parametrize("dst", DOMAINS)
def test_convert_round_trips_and_matches_spec(src: str, dst: str, size: int) -> None:
    t = _make(src, size)
    fwd, back = convert(src, dst, size=size), convert(dst, src, size=size)
    if src == dst:
        assert isinstance(fwd, nn.Identity)
    out = fwd(t)
    expected = spec_for(dst, 3, size)
    assert (tuple(out.shape[1:]), out.is_complex()) == (expected.shape, dst == "complex")
    assert domain_channels(expected) == 3
    torch.testing.assert_close(back(out), t, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out, _make(dst, size), atol=1e-5, rtol=1e-5)


def test_convert_rejects_unknown_domain() -> None:
    with pytest.raises(ValueError, match="unsupported domain 'embed'"):
        convert("real", "embed", size=8)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_examples_run_on_meta_and_cpu(name: str) -> None:
    params, specs = EXAMPLES[name]
    dtype = {"complex": torch.complex64}
    xs = [torch.randn(2, *s.shape, dtype=dtype.get(s.domain, torch.float32)) for s in specs]
    out = blocks.build(name, params, specs)(*xs)
    with torch.device("meta"):
        meta_in = [torch.empty(2, *s.shape, dtype=dtype.get(s.domain, torch.float32))
                   for s in specs]
        meta_out = blocks.build(name, params, specs)(*meta_in)
    assert meta_out.shape == out.shape and meta_out.dtype == out.dtype
    assert torch.isfinite(torch.view_as_real(out) if out.is_complex() else out).all()
