"""Learned spectrum resamplers (blocks/resample.py) against plain strided convolutions."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from blocks.core import TensorSpec, build_block


def _complex_ref(op, z, w_re, w_im, b_re, b_im):
    """(Wr + i Wi) * (zr + i zi) with four real strided ops, the independent reference."""
    re = op(z.real, w_re) - op(z.imag, w_im)
    im = op(z.real, w_im) + op(z.imag, w_re)
    return torch.complex(re + b_re[:, None, None], im + b_im[:, None, None])


@pytest.mark.parametrize("size", [4, 8, 16, 32])
def test_down_then_up_lands_on_the_half_spectra_of_the_smaller_and_original_image(size):
    c, w2 = 3, size // 2 + 1
    down = build_block("complex_conv_down", {}, [TensorSpec("complex", (c, size, w2))])
    small = down(torch.randn(2, c, size, w2, dtype=torch.complex64))
    assert small.shape == (2, c, size // 2, size // 4 + 1)  # rfft2 of the (size/2)^2 image
    up = build_block("complex_conv_up", {"channels": 5},
                     [TensorSpec("complex", (c, size // 2, size // 4 + 1))])
    assert up(small).shape == (2, 5, size, w2)


def test_down_is_a_stride_two_complex_convolution():
    torch.manual_seed(0)
    m = build_block("complex_conv_down", {"channels": 2}, [TensorSpec("complex", (3, 8, 5))])
    z = torch.randn(2, 3, 8, 5, dtype=torch.complex64)
    conv = m.conv
    torch.nn.init.normal_(conv.bias_real), torch.nn.init.normal_(conv.bias_imag)
    ref = _complex_ref(lambda x, w: F.conv2d(x, w, stride=2, padding=1), z,
                       conv.weight_real, conv.weight_imag, conv.bias_real, conv.bias_imag)
    torch.testing.assert_close(m(z), ref, rtol=1e-5, atol=1e-5)


def test_up_is_a_stride_two_transposed_complex_convolution_minus_its_last_column():
    torch.manual_seed(0)
    m = build_block("complex_conv_up", {}, [TensorSpec("complex", (3, 4, 3))])
    z = torch.randn(2, 3, 4, 3, dtype=torch.complex64)
    conv = m.conv
    ref = _complex_ref(lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1), z,
                       conv.weight_real, conv.weight_imag, conv.bias_real, conv.bias_imag)
    torch.testing.assert_close(m(z), ref[..., :-1], rtol=1e-5, atol=1e-5)


def test_down_refuses_a_spectrum_it_cannot_halve():
    with pytest.raises(ValueError, match="halves an image whose sides are even"):
        build_block("complex_conv_down", {}, [TensorSpec("complex", (3, 6, 4))])
