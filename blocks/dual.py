"""Dual-channel twins of the complex blocks: ``dual`` domain, (B, 2C, H, W') float32.

A dual tensor stacks the C real parts, then the C imaginary parts, on the channel axis, and
every layer here computes the complex layer's function with *real* ops only (the FourierUnit
style of Chi et al. 2020, "Fast Fourier Convolution", NeurIPS): the ablation fallback for
complex autograd. Each class subclasses its complex twin and only replaces ``forward``, so
twins take the same parameter model and hold the same state dict: swap ``complex_conv`` for
``dual_conv`` in a spec, or copy weights with :func:`copy_complex_to_dual`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from blocks.complex import (_EPS, CReLU, Cardioid, ComplexBatchNorm2d, ComplexConv2d,
                            ComplexConvTranspose2d, ComplexDropout, ComplexGroupNorm,
                            ComplexLinear, ComplexResBlock, ModReLU, SpectralDown, SpectralUp,
                            ZReLU, block_weight)


def _both(t: Tensor) -> Tensor:
    """A per-complex-entry factor (B, C, ...) applied to re and im halves: (B, 2C, ...)."""
    return torch.cat([t, t], 1)


def _mag(x_re: Tensor, x_im: Tensor) -> Tensor:
    """max(|z|, eps) from parts; the clamp keeps the sqrt's gradient finite at 0."""
    return torch.sqrt((x_re.square() + x_im.square()).clamp_min(_EPS**2))


class _DualConvForward:
    def forward(self, x: Tensor) -> Tensor:
        # x: (B, 2Cin, H, W') -> (B, 2Cout, H, W') ((2H, 2W') if transposed)
        if self.mode == "gauss":
            y = torch.cat(self.parts(*x.chunk(2, 1)), 1)
        else:  # "block"; "native" has no complex dtype here, so it is the block form too
            y = self.op(x, block_weight(self.weight_real, self.weight_imag, self.transposed))
        if self.bias_real is not None:
            y = y + torch.cat([self.bias_real, self.bias_imag])[:, None, None]
        return y


class DualConv2d(_DualConvForward, ComplexConv2d):
    """Complex convolution as one real conv of [[Wr, -Wi], [Wi, Wr]] over [re; im] channels
    (``gauss`` mode: three real convs), same weights as complex_conv."""


class DualConvTranspose2d(_DualConvForward, ComplexConvTranspose2d):
    """Stride-2 complex transposed conv as one real transposed conv over [re; im] channels."""


class DualLinear(_DualConvForward, ComplexLinear):
    """Complex channel mixing (1x1) as a real block-matrix 1x1 conv over [re; im]."""


class DualBatchNorm2d(ComplexBatchNorm2d):
    """Trabelsi 2x2 covariance-whitening batch norm on stacked [re; im] channels."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(self.normalize_parts(*x.chunk(2, 1)), 1)


class DualGroupNorm(ComplexGroupNorm):
    """Magnitude-RMS group norm on stacked [re; im] channels (real gain, complex bias)."""

    def forward(self, x: Tensor) -> Tensor:
        x_re, x_im = x.chunk(2, 1)  # (B, C, H, W') each
        scale = self.inv_rms(x_re.square() + x_im.square()) * self.gain[:, None, None]
        return x * _both(scale) + torch.cat([self.bias_real, self.bias_imag])[:, None, None]


class DualModReLU(ModReLU):
    """modReLU relu(|z| + b) z/|z| on stacked [re; im] channels (Arjovsky et al. 2016)."""

    def forward(self, x: Tensor) -> Tensor:
        mag = _mag(*x.chunk(2, 1))
        return x * _both(F.relu(mag + self.bias[:, None, None]) / mag)


class DualCReLU(CReLU):
    """CReLU on stacked [re; im] channels: a plain ReLU."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)


class DualZReLU(ZReLU):
    """zReLU (keep first-quadrant entries) on stacked [re; im] channels (Guberman 2016)."""

    def forward(self, x: Tensor) -> Tensor:
        x_re, x_im = x.chunk(2, 1)
        return x * _both((x_re >= 0) & (x_im >= 0))


class DualCardioid(Cardioid):
    """Cardioid (1 + cos arg z)/2 * z on stacked [re; im] channels (Virtue et al. 2017)."""

    def forward(self, x: Tensor) -> Tensor:
        x_re, x_im = x.chunk(2, 1)
        return x * _both(0.5 * (1.0 + x_re / _mag(x_re, x_im)))


class DualDropout(ComplexDropout):
    """Drops whole complex entries (same mask on the re and im halves), scaled 1/(1-p)."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        b, c2 = x.shape[:2]
        return x * _both(self.mask((b, c2 // 2, *x.shape[2:]), x))


class DualResBlock(ComplexResBlock):
    """Residual block with time shift, built from the dual layers (twin of complex_resblock)."""

    conv_cls, linear_cls = DualConv2d, DualLinear
    norm_cls = {"group": DualGroupNorm, "batch": DualBatchNorm2d}
    act_cls = {"crelu": DualCReLU, "modrelu": DualModReLU, "zrelu": DualZReLU,
               "cardioid": DualCardioid}
    dropout_cls = DualDropout

    def add_shift(self, h: Tensor, shift: Tensor) -> Tensor:
        return h + shift[:, :, None, None]  # (B, 2C): re shifts then im shifts, as h


class _DualConj:
    def conj(self, x: Tensor) -> Tensor:
        x_re, x_im = x.chunk(2, 1)
        return torch.cat([x_re, -x_im], 1)


class DualDown(_DualConj, SpectralDown):
    """Spectral pooling (Rippel et al. 2015) on a dual rfft2 spectrum; twin of spectral_down."""


class DualUp(_DualConj, SpectralUp):
    """Spectral zero-padding upsampling on a dual rfft2 spectrum; twin of spectral_up."""


def copy_complex_to_dual(complex_module: nn.Module, dual_module: nn.Module) -> nn.Module:
    """Load a complex block's weights and buffers into its dual twin (same state-dict keys).

    Raises:
        RuntimeError: the modules are not twins (missing/unexpected keys or shapes).
    """
    dual_module.load_state_dict(complex_module.state_dict(), strict=True)
    return dual_module


# Block keys shared with the complex twins; blocks/twins.py registers both layouts.
CLASSES: dict[str, type] = {
    "conv": DualConv2d, "linear": DualLinear, "conv_transpose": DualConvTranspose2d,
    "batch_norm": DualBatchNorm2d, "group_norm": DualGroupNorm, "modrelu": DualModReLU,
    "crelu": DualCReLU, "zrelu": DualZReLU, "cardioid": DualCardioid, "dropout": DualDropout,
    "resblock": DualResBlock, "down": DualDown, "up": DualUp}
