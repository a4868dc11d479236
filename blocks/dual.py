"""Dual-channel twins of the complex blocks: ``dual`` domain, (B, 2C, H, W') float32.

A dual tensor stacks the C real parts, then the C imaginary parts, on the channel axis, and
every layer here computes the complex layer's function with *real* ops only (the FourierUnit
style of Chi et al. 2020, "Fast Fourier Convolution", NeurIPS): the ablation fallback for
complex autograd. Each class subclasses its complex twin and only replaces ``forward``, so
twins take the same parameter model and hold the same state dict: swap ``complex_conv`` for
``dual_conv`` in a spec, or copy weights with :func:`copy_complex_to_dual`.
"""
from __future__ import annotations

from torch import Tensor, nn

from blocks.complex import (CReLU, Cardioid, ComplexConv2d, ComplexConvTranspose2d,
                            ComplexDropout, ComplexLinear, ComplexResBlock, ModReLU,
                            SpectralDown, SpectralUp, ZReLU, conj_stacked)
from blocks.complex_norm import ComplexBatchNorm2d, ComplexGroupNorm


class _DualConvForward:
    def forward(self, x: Tensor) -> Tensor:
        return self.stacked(x)  # (B, 2Cin, H, W') -> (B, 2Cout, H, W') ((2H, 2W') transposed)


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
        return self.stacked(x)  # (B, 2C, H, W') -> same


class DualGroupNorm(ComplexGroupNorm):
    """Magnitude-RMS group norm on stacked [re; im] channels (real gain, complex bias)."""

    def forward(self, x: Tensor) -> Tensor:
        return self.stacked(x)  # (B, 2C, H, W') -> same


class DualModReLU(ModReLU):
    """modReLU relu(|z| + b) z/|z| on stacked [re; im] channels (Arjovsky et al. 2016)."""

    def forward(self, x: Tensor) -> Tensor:
        return self.stacked(x)  # (B, 2C, H, W') -> same


class DualCReLU(CReLU):
    """CReLU on stacked [re; im] channels: a plain ReLU."""

    def forward(self, x: Tensor) -> Tensor:
        return self.stacked(x)  # (B, 2C, H, W') -> same


class DualZReLU(ZReLU):
    """zReLU (keep first-quadrant entries) on stacked [re; im] channels (Guberman 2016)."""

    def forward(self, x: Tensor) -> Tensor:
        return self.stacked(x)  # (B, 2C, H, W') -> same


class DualCardioid(Cardioid):
    """Cardioid (1 + cos arg z)/2 * z on stacked [re; im] channels (Virtue et al. 2017)."""

    def forward(self, x: Tensor) -> Tensor:
        return self.stacked(x)  # (B, 2C, H, W') -> same


class DualDropout(ComplexDropout):
    """Drops whole complex entries (same mask on the re and im halves), scaled 1/(1-p)."""

    def forward(self, x: Tensor) -> Tensor:
        return self.stacked(x)  # (B, 2C, H, W') -> same


class DualResBlock(ComplexResBlock):
    """Residual block with time shift, built from the dual layers (twin of complex_resblock)."""

    conv_cls, linear_cls = DualConv2d, DualLinear
    norm_cls = {"group": DualGroupNorm, "batch": DualBatchNorm2d}
    act_cls = {"crelu": DualCReLU, "modrelu": DualModReLU, "zrelu": DualZReLU,
               "cardioid": DualCardioid}
    dropout_cls = DualDropout

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        return self.stacked(x, emb)  # (B, 2Cin, H, W') -> (B, 2C, H, W')


class _DualConj:
    def conj(self, x: Tensor) -> Tensor:
        return conj_stacked(x)  # the imaginary half changes sign


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
