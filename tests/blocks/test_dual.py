"""Dual family: every dual block computes its complex twin's function with the same weights."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch
from torch.autograd import gradcheck

import blocks.complex as bc
import blocks.dual as bd
from blocks.core import TensorSpec, build_block, get_block
from blocks.twins import NAMES
from blocks.fourier import from_dual, to_dual
from tests.blocks.helpers import family_examples

EXAMPLES = family_examples("dual")

MODES = ("native", "gauss", "block")

# (complex block key, params) pairs; every key of bc.CLASSES appears at least once
CASES = {
    **{f"conv[{m}]": ("conv", {"channels": 3, "mode": m}) for m in MODES},
    **{f"linear[{m}]": ("linear", {"channels": 3, "mode": m}) for m in MODES},
    **{f"conv_transpose[{m}]": ("conv_transpose", {"channels": 3, "mode": m}) for m in MODES},
    "batch_norm": ("batch_norm", {}),
    "group_norm": ("group_norm", {"groups": 2}),
    "modrelu": ("modrelu", {"bias_init": -0.5}),
    "crelu": ("crelu", {}), "zrelu": ("zrelu", {}), "cardioid": ("cardioid", {}),
    "dropout": ("dropout", {"p": 0.4}),
    "resblock": ("resblock", {"channels": 6, "groups": 2, "dropout": 0.2}),
    "resblock[batch,cardioid]": ("resblock", {"channels": 4, "norm": "batch",
                                              "act": "cardioid", "mode": "gauss"}),
    "resblock[modrelu]": ("resblock", {"channels": 4, "act": "modrelu"}),
    "down": ("down", {}), "up": ("up", {}),
}
C = 4


def twins(key: str, params: dict, embed: bool):
    """Build the complex block and its dual twin from the same params, weights copied."""
    cspec = [TensorSpec("complex", (C, 8, 5))]
    dspec = [TensorSpec("dual", (2 * C, 8, 5))]
    if embed:
        cspec.append(TensorSpec("embed", (7,)))
        dspec.append(TensorSpec("embed", (7,)))
    torch.manual_seed(0)
    cm = build_block(NAMES["complex"][key], params, cspec)
    torch.manual_seed(1)  # different init, so the copy below matters
    dm = build_block(NAMES["dual"][key], params, dspec)
    with torch.no_grad():  # make zero-initialised biases/betas non-trivial
        for p in cm.parameters():
            if not p.any():
                p.normal_(0, 0.3)
    return cm, bd.copy_complex_to_dual(cm, dm)


def test_cases_cover_every_block_and_share_param_models():
    assert {k for k, _ in CASES.values()} == set(bc.CLASSES) == set(bd.CLASSES)
    assert set(EXAMPLES) == set(NAMES["dual"].values())
    for key in bc.CLASSES:
        c, d = get_block(NAMES["complex"][key]), get_block(NAMES["dual"][key])
        assert c.params is d.params  # a spec swaps twins by block name only
        assert (c.takes[0], c.gives, d.takes[0], d.gives) == ("complex",) * 2 + ("dual",) * 2
        assert c.takes[1:] == d.takes[1:]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("train", [True, False])
def test_twin_computes_same_function_and_gradients(case, train):
    key, params = CASES[case]
    embed = key == "resblock"
    cm, dm = twins(key, params, embed)
    cm.train(train), dm.train(train)
    g = torch.Generator().manual_seed(5)
    z = torch.randn(3, C, 8, 5, dtype=torch.complex64, generator=g).requires_grad_()
    x = to_dual(z.detach()).requires_grad_()
    extra = [torch.randn(3, 7, generator=g)] if embed else []
    torch.manual_seed(9)
    cout = cm(z, *extra)
    torch.manual_seed(9)
    dout = dm(x, *extra)
    assert dout.dtype == torch.float32 and dout.shape[1] == 2 * cout.shape[1]
    torch.testing.assert_close(dout, to_dual(cout), rtol=1e-5, atol=1e-5)
    # same loss on both sides -> same gradients for the input and every parameter
    w = torch.randn(dout.shape, generator=g)
    (to_dual(cout) * w).sum().backward()
    (dout * w).sum().backward()
    torch.testing.assert_close(x.grad, to_dual(z.grad), rtol=1e-4, atol=1e-4)
    for (n, pc), (_, pd) in zip(cm.named_parameters(), dm.named_parameters()):
        torch.testing.assert_close(pd.grad, pc.grad, rtol=1e-4, atol=1e-4, msg=n)
    for (n, bc_), (_, bd_) in zip(cm.named_buffers(), dm.named_buffers()):
        torch.testing.assert_close(bd_, bc_, msg=n)  # running stats updated alike


@pytest.mark.parametrize("key", ["modrelu", "cardioid"])
def test_magnitude_activations_agree_and_stay_finite_at_zero(key):
    cm, dm = twins(key, {}, False)
    z = torch.zeros(1, C, 8, 5, dtype=torch.complex64)
    z[0, 0, 0, 0] = 1 + 2j
    x = to_dual(z).requires_grad_()
    out = dm(x)
    torch.testing.assert_close(out, to_dual(cm(z)))
    (out.square().sum() + out.sum()).backward()
    assert torch.isfinite(x.grad).all()


def test_copy_rejects_non_twins():
    cm = build_block("complex_conv", {"channels": 3}, [TensorSpec("complex", (C, 8, 5))])
    other = build_block("dual_conv", {"channels": 5}, [TensorSpec("dual", (2 * C, 8, 5))])
    with pytest.raises(RuntimeError, match="size mismatch"):
        bd.copy_complex_to_dual(cm, other)
    norm = build_block("dual_group_norm", {"groups": 2}, [TensorSpec("dual", (2 * C, 8, 5))])
    with pytest.raises(RuntimeError, match="Missing key"):
        bd.copy_complex_to_dual(cm, norm)


def test_dual_rejects_odd_channel_count():
    with pytest.raises(ValueError, match="even channel count"):
        build_block("dual_conv", {"channels": 3}, [TensorSpec("dual", (5, 8, 5))])


def test_dual_block_conv_is_one_real_conv_over_stacked_channels():
    """The dual conv's block weight equals the real 2C x 2C matrix of the complex map."""
    m = build_block("dual_linear", {"channels": 2, "bias": False},
                    [TensorSpec("dual", (6, 1, 1))]).double()
    wr, wi = m.weight_real.detach(), m.weight_imag.detach()
    # columns of the real matrix: images of the unit vectors e_k (real) and i e_k (imag)
    basis = torch.eye(6, dtype=torch.float64)[:, :, None, None]
    mat = m(basis)[:, :, 0, 0].T  # (4, 6)
    w = torch.complex(wr, wi)
    for k in range(3):
        torch.testing.assert_close(mat[:, k], torch.cat([w[:, k].real, w[:, k].imag]))
        torch.testing.assert_close(mat[:, 3 + k], torch.cat([(1j * w[:, k]).real,
                                                              (1j * w[:, k]).imag]))


def test_dual_down_up_in_real_space():
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    X = to_dual(torch.fft.rfft2(x, norm="ortho"))
    down, up = bd.DualDown(), bd.DualUp()
    small = torch.fft.irfft2(from_dual(down(X)), s=(4, 4), norm="ortho")
    rs = scipy.signal.resample
    np.testing.assert_allclose(small.numpy(), rs(rs(x.numpy(), 4, axis=-2), 4, axis=-1),
                               atol=1e-12)
    big = torch.fft.irfft2(from_dual(up(X)), s=(16, 16), norm="ortho")
    torch.testing.assert_close(big[..., ::2, ::2], x)
    torch.testing.assert_close(down(up(X)), X)


@pytest.mark.parametrize("case", sorted(CASES))
def test_dual_gradcheck(case):
    key, params = CASES[case]
    spec = [TensorSpec("dual", (4, 4, 3))]
    inputs = [torch.randn(2, 4, 4, 3, dtype=torch.float64)]
    if key == "resblock":
        spec.append(TensorSpec("embed", (3,)))
        inputs.append(torch.randn(2, 3, dtype=torch.float64))
    params = {**params, "channels": 2} if "channels" in params else params
    m = build_block(NAMES["dual"][key], params, spec).double().train()
    names = [n for n, _ in m.named_parameters()]
    ps = [p.detach().clone().requires_grad_() for p in m.parameters()]
    xs = [x.requires_grad_() for x in inputs]

    def f(*args):
        torch.manual_seed(0)
        return torch.func.functional_call(m, dict(zip(names, args[len(xs):])), args[:len(xs)])

    assert gradcheck(f, (*xs, *ps), eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_examples_build_on_meta(name):
    params, spec = EXAMPLES[name]
    xs = [torch.randn(2, *s.shape) for s in spec]
    with torch.device("meta"):
        meta_out = build_block(name, params, spec)(*[x.to("meta") for x in xs])
    out = build_block(name, params, spec)(*xs)
    assert meta_out.shape == out.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all()
