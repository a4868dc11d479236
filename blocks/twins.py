"""Registration of the complex/dual twins: one table, both spectral layouts.

Thirteen blocks exist twice: on complex64 spectra (:mod:`blocks.complex`, Trabelsi et al.
2018, "Deep Complex Networks") and on spectra with real and imaginary parts stacked on the
channel axis (:mod:`blocks.dual`). Twins take the same parameter model and hold the same
state dict, so a spec swaps one for the other by changing the name only. The table TWINS
is the one home of their names, parameter models, builders, descriptions and examples;
each layout contributes only its classes (``CLASSES``, keyed like the table).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Callable

from torch import nn

from blocks import complex as bc
from blocks import dual as bd
from blocks.complex import (BatchNormParams, ComplexConvParams, ComplexConvTransposeParams,
                            ComplexLinearParams, DropoutParams, GroupNormParams,
                            ModReLUParams, ResBlockParams)
from blocks.core import BlockParams, NoParams, TensorSpec, register_block
from blocks.spectral_pool import SpectralPoolParams


def _channels(inputs: list[TensorSpec]) -> int:
    """Complex channel count of the first input (half the stacked channels for dual)."""
    c = inputs[0].shape[0]
    if inputs[0].domain == "dual":
        if c % 2:
            raise ValueError(f"dual input needs an even channel count (re then im), got {c}")
        return c // 2
    return c


def build_conv(cls: type, p: BlockParams, inputs: list[TensorSpec]) -> nn.Module:
    kw = p.model_dump()
    return cls(in_channels=_channels(inputs), out_channels=kw.pop("channels"), **kw)


def build_layer(cls: type, p: BlockParams, inputs: list[TensorSpec], *,
                per_channel: bool) -> nn.Module:
    kw = p.model_dump()
    if per_channel:
        kw["num_channels"] = _channels(inputs)
    return cls(**kw)


def build_resblock(cls: type, p: BlockParams, inputs: list[TensorSpec]) -> nn.Module:
    emb_dim = inputs[1].shape[0] if len(inputs) > 1 else None
    return cls(in_channels=_channels(inputs), emb_dim=emb_dim, **p.model_dump())


_per_channel = partial(build_layer, per_channel=True)
_pointwise = partial(build_layer, per_channel=False)


@dataclass(frozen=True)
class Twin:
    """One block that exists in both spectral layouts.

    Attributes:
        key: layout-free key (``conv``); the dual block is named ``dual_<key>``.
        name: the complex block's registry name.
        params: the parameter model both twins take.
        build: ``(cls, params, inputs) -> module``, given each layout's class.
        docs: one-line description of the (complex, dual) block.
        example: parameters of one small valid configuration (C=8 complex channels).
        embed: the block also takes an optional time embedding.
    """

    key: str
    name: str
    params: type[BlockParams]
    build: Callable[..., nn.Module]
    docs: tuple[str, str]
    example: dict = field(default_factory=dict)
    embed: bool = False

    def registry_name(self, layout: str) -> str:
        return self.name if layout == "complex" else f"dual_{self.key}"

    def example_config(self, layout: str) -> tuple[dict, list[TensorSpec]]:
        """(params, inputs) on an 8x8 image: 8 complex channels, or 16 dual ones."""
        x = [TensorSpec(layout, (16 if layout == "dual" else 8, 8, 5))]
        return dict(self.example), x + ([TensorSpec("embed", (16,))] if self.embed else [])


TWINS: tuple[Twin, ...] = (
    Twin("conv", "complex_conv", ComplexConvParams, build_conv, (
        "Complex convolution ``W * z`` with ``W = Wr + i Wi`` (Trabelsi et al. 2018).",
        "Complex convolution as one real conv of [[Wr, -Wi], [Wi, Wr]] over [re; im] "
        "channels."), {"channels": 4}),
    Twin("linear", "complex_linear", ComplexLinearParams, build_conv, (
        "Complex channel mixing ``y[o] = sum_i W[o, i] z[i] + b[o]`` (a complex 1x1 conv).",
        "Complex channel mixing (1x1) as a real block-matrix 1x1 conv over [re; im]."),
         {"channels": 4}),
    Twin("conv_transpose", "complex_conv_transpose", ComplexConvTransposeParams, build_conv, (
        "Stride-2 complex transposed convolution: 2x upsampling of the (H, W') grid it sees.",
        "Stride-2 complex transposed conv as one real transposed conv over [re; im] "
        "channels."), {"channels": 4}),
    Twin("batch_norm", "complex_batch_norm", BatchNormParams, _per_channel, (
        "Covariance-whitening complex batch norm (Trabelsi et al. 2018, sec. 3.5).",
        "Trabelsi 2x2 covariance-whitening batch norm on stacked [re; im] channels.")),
    Twin("group_norm", "complex_group_norm", GroupNormParams, _per_channel, (
        "Magnitude-RMS group norm: ``z / sqrt(mean_group |z|^2 + eps) * g + b``.",
        "Magnitude-RMS group norm on stacked [re; im] channels (real gain, complex bias)."),
         {"groups": 4}),
    Twin("modrelu", "modrelu", ModReLUParams, _per_channel, (
        "modReLU ``relu(|z| + b) * z / |z|``, learnable bias per channel (Arjovsky et al. "
        "2016).",
        "modReLU relu(|z| + b) z/|z| on stacked [re; im] channels (Arjovsky et al. 2016)."),
         {"bias_init": -0.1}),
    Twin("crelu", "crelu", NoParams, _pointwise, (
        "CReLU ``relu(Re z) + i relu(Im z)`` (Trabelsi et al. 2018).",
        "CReLU on stacked [re; im] channels: a plain ReLU.")),
    Twin("zrelu", "zrelu", NoParams, _pointwise, (
        "zReLU: ``z`` where ``0 <= arg z <= pi/2`` (first quadrant), else 0 (Guberman 2016).",
        "zReLU (keep first-quadrant entries) on stacked [re; im] channels (Guberman 2016).")),
    Twin("cardioid", "cardioid", NoParams, _pointwise, (
        "Cardioid ``(1 + cos arg z) / 2 * z`` (Virtue et al. 2017, \"Better than Real\").",
        "Cardioid (1 + cos arg z)/2 * z on stacked [re; im] channels (Virtue et al. 2017).")),
    Twin("dropout", "complex_dropout", DropoutParams, _pointwise, (
        "Drops whole complex entries (one mask for re and im), scaled by ``1/(1-p)``.",
        "Drops whole complex entries (same mask on the re and im halves), scaled 1/(1-p)."),
         {"p": 0.2}),
    Twin("resblock", "complex_resblock", ResBlockParams, build_resblock, (
        "Complex residual block: norm-act-conv, time shift, norm-act-dropout-conv, 1x1 skip.",
        "Residual block with time shift, built from the dual layers (twin of "
        "complex_resblock)."), {"channels": 4, "groups": 2, "dropout": 0.1}, embed=True),
    Twin("down", "spectral_down", SpectralPoolParams, _pointwise, (
        "Spectral pooling (Rippel et al. 2015) on complex rfft2 spectra; see spectral_down.",
        "Spectral pooling (Rippel et al. 2015) on a dual rfft2 spectrum; twin of "
        "spectral_down.")),
    Twin("up", "spectral_up", SpectralPoolParams, _pointwise, (
        "Spectral zero-padding upsampling, right inverse of SpectralDown; see spectral_up.",
        "Spectral zero-padding upsampling on a dual rfft2 spectrum; twin of spectral_up.")),
)


def register_twins(layout: str, classes: dict[str, type]) -> dict[str, str]:
    """Register ``layout``'s block (``complex`` or ``dual``) for every row of TWINS.

    Each builder is bound in this module as ``_<name>``, the source the registry reports
    (``blocks.twins:_dual_conv``).

    Args:
        classes: key -> the layout's module class (``blocks.complex.CLASSES``).

    Returns:
        key -> registry name.
    """
    other = "dual" if layout == "complex" else "complex"
    names = {}
    for t in TWINS:
        name = t.registry_name(layout)
        fn = _builder(t.build, classes[t.key], name, t.docs[layout == "dual"])
        register_block(name, params=t.params, takes=(layout, "embed?") if t.embed else (layout,),
                       gives=layout, family=layout, twin=t.registry_name(other),
                       example=t.example_config(layout))(fn)
        globals()[fn.__name__] = fn
        names[t.key] = name
    return names


def _builder(build: Callable, cls: type, name: str, doc: str) -> Callable:
    def builder(p: BlockParams, inputs: list[TensorSpec]) -> nn.Module:
        return build(cls, p, inputs)

    builder.__name__ = builder.__qualname__ = f"_{name}"
    builder.__doc__ = doc
    return builder


# layout -> key -> registry name (tests pair twins through it)
NAMES: dict[str, dict[str, str]] = {
    layout: register_twins(layout, classes)
    for layout, classes in (("complex", bc.CLASSES), ("dual", bd.CLASSES))}

__all__ = ["NAMES", "TWINS", "Twin", "build_conv", "build_layer", "build_resblock",
           "register_twins"]
