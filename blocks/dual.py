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

from blocks.complex import (BatchNormParams, CReLU, Cardioid, ComplexBatchNorm2d,
                            ComplexConv2d, ComplexConvParams, ComplexConvTranspose2d,
                            ComplexConvTransposeParams, ComplexDropout, ComplexGroupNorm,
                            ComplexLinear, ComplexLinearParams, ComplexResBlock, DropoutParams,
                            GroupNormParams, ModReLU, ModReLUParams, ResBlockParams, SpectralDown,
                            SpectralPoolParams, SpectralUp, ZReLU, build_conv, build_layer,
                            build_resblock, conj_stacked, example)
from blocks.core import NoParams, TensorSpec, register_block


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


CLASSES: dict[str, type] = {
    "conv": DualConv2d, "linear": DualLinear, "conv_transpose": DualConvTranspose2d,
    "batch_norm": DualBatchNorm2d, "group_norm": DualGroupNorm, "modrelu": DualModReLU,
    "crelu": DualCReLU, "zrelu": DualZReLU, "cardioid": DualCardioid, "dropout": DualDropout,
    "resblock": DualResBlock, "down": DualDown, "up": DualUp}
NAMES: dict[str, str] = {k: f"dual_{k}" for k in CLASSES}


@register_block("dual_conv", params=ComplexConvParams, takes=("dual",),
                gives="dual", family="dual", twin="complex_conv",
                example=example("dual", "conv"))
def _dual_conv(p: ComplexConvParams, inputs: list[TensorSpec]) -> nn.Module:
    """Complex convolution as one real conv of [[Wr, -Wi], [Wi, Wr]] over [re; im] channels."""
    return build_conv(DualConv2d, p, inputs)


@register_block("dual_linear", params=ComplexLinearParams, takes=("dual",),
                gives="dual", family="dual", twin="complex_linear",
                example=example("dual", "linear"))
def _dual_linear(p: ComplexLinearParams, inputs: list[TensorSpec]) -> nn.Module:
    """Complex channel mixing (1x1) as a real block-matrix 1x1 conv over [re; im]."""
    return build_conv(DualLinear, p, inputs)


@register_block("dual_conv_transpose", params=ComplexConvTransposeParams, takes=("dual",),
                gives="dual", family="dual", twin="complex_conv_transpose",
                example=example("dual", "conv_transpose"))
def _dual_conv_transpose(p: ComplexConvTransposeParams, inputs: list[TensorSpec]) -> nn.Module:
    """Stride-2 complex transposed conv as one real transposed conv over [re; im] channels."""
    return build_conv(DualConvTranspose2d, p, inputs)


@register_block("dual_batch_norm", params=BatchNormParams, takes=("dual",),
                gives="dual", family="dual", twin="complex_batch_norm",
                example=example("dual", "batch_norm"))
def _dual_batch_norm(p: BatchNormParams, inputs: list[TensorSpec]) -> nn.Module:
    """Trabelsi 2x2 covariance-whitening batch norm on stacked [re; im] channels."""
    return build_layer(DualBatchNorm2d, p, inputs, per_channel=True)


@register_block("dual_group_norm", params=GroupNormParams, takes=("dual",),
                gives="dual", family="dual", twin="complex_group_norm",
                example=example("dual", "group_norm"))
def _dual_group_norm(p: GroupNormParams, inputs: list[TensorSpec]) -> nn.Module:
    """Magnitude-RMS group norm on stacked [re; im] channels (real gain, complex bias)."""
    return build_layer(DualGroupNorm, p, inputs, per_channel=True)


@register_block("dual_modrelu", params=ModReLUParams, takes=("dual",),
                gives="dual", family="dual", twin="modrelu",
                example=example("dual", "modrelu"))
def _dual_modrelu(p: ModReLUParams, inputs: list[TensorSpec]) -> nn.Module:
    """modReLU relu(|z| + b) z/|z| on stacked [re; im] channels (Arjovsky et al. 2016)."""
    return build_layer(DualModReLU, p, inputs, per_channel=True)


@register_block("dual_crelu", params=NoParams, takes=("dual",),
                gives="dual", family="dual", twin="crelu",
                example=example("dual", "crelu"))
def _dual_crelu(p: NoParams, inputs: list[TensorSpec]) -> nn.Module:
    """CReLU on stacked [re; im] channels: a plain ReLU."""
    return build_layer(DualCReLU, p, inputs, per_channel=False)


@register_block("dual_zrelu", params=NoParams, takes=("dual",),
                gives="dual", family="dual", twin="zrelu",
                example=example("dual", "zrelu"))
def _dual_zrelu(p: NoParams, inputs: list[TensorSpec]) -> nn.Module:
    """zReLU (keep first-quadrant entries) on stacked [re; im] channels (Guberman 2016)."""
    return build_layer(DualZReLU, p, inputs, per_channel=False)


@register_block("dual_cardioid", params=NoParams, takes=("dual",),
                gives="dual", family="dual", twin="cardioid",
                example=example("dual", "cardioid"))
def _dual_cardioid(p: NoParams, inputs: list[TensorSpec]) -> nn.Module:
    """Cardioid (1 + cos arg z)/2 * z on stacked [re; im] channels (Virtue et al. 2017)."""
    return build_layer(DualCardioid, p, inputs, per_channel=False)


@register_block("dual_dropout", params=DropoutParams, takes=("dual",),
                gives="dual", family="dual", twin="complex_dropout",
                example=example("dual", "dropout"))
def _dual_dropout(p: DropoutParams, inputs: list[TensorSpec]) -> nn.Module:
    """Drops whole complex entries (same mask on the re and im halves), scaled 1/(1-p)."""
    return build_layer(DualDropout, p, inputs, per_channel=False)


@register_block("dual_resblock", params=ResBlockParams, takes=("dual", "embed?"),
                gives="dual", family="dual", twin="complex_resblock",
                example=example("dual", "resblock"))
def _dual_resblock(p: ResBlockParams, inputs: list[TensorSpec]) -> nn.Module:
    """Residual block with time shift, built from the dual layers (twin of complex_resblock)."""
    return build_resblock(DualResBlock, p, inputs)


@register_block("dual_down", params=SpectralPoolParams, takes=("dual",),
                gives="dual", family="dual", twin="spectral_down",
                example=example("dual", "down"))
def _dual_down(p: SpectralPoolParams, inputs: list[TensorSpec]) -> nn.Module:
    """Spectral pooling (Rippel et al. 2015) on a dual rfft2 spectrum; twin of spectral_down."""
    return build_layer(DualDown, p, inputs, per_channel=False)


@register_block("dual_up", params=SpectralPoolParams, takes=("dual",),
                gives="dual", family="dual", twin="spectral_up",
                example=example("dual", "up"))
def _dual_up(p: SpectralPoolParams, inputs: list[TensorSpec]) -> nn.Module:
    """Spectral zero-padding upsampling on a dual rfft2 spectrum; twin of spectral_up."""
    return build_layer(DualUp, p, inputs, per_channel=False)
