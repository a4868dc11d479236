"""Complex-valued blocks on rfft2 spectra: ``complex`` domain, (B, C, H, W') complex64.

Layers follow Trabelsi et al. 2018, "Deep Complex Networks" (ICLR): complex convolution with
separate real/imaginary weights, covariance-whitening batch norm and complex He/Glorot
initialisation; activations modReLU (Arjovsky et al. 2016), CReLU (Trabelsi et al. 2018),
zReLU (Guberman 2016) and cardioid (Virtue et al. 2017); spectral pooling from Rippel et al.
2015, "Spectral Representations for Convolutional Neural Networks".

Every parameter and buffer is *real* (``weight_real``/``weight_imag``, ...), so
``module.double()`` gives a complex128-ready module and the dual-channel twins in
:mod:`blocks.dual` can hold exactly the same state dict.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import Tensor, nn

from blocks.complex_norm import ComplexBatchNorm2d, ComplexGroupNorm
from blocks.core import BlockParams, odd_kernel
from blocks.spectral_pad import SpectralPadParams, pad_spectrum
from blocks.spectral_pool import SpectralDown, SpectralUp

ConvMode = Literal["native", "gauss", "block"]
# Fastest exact form measured on the shared 2-core CPU (fwd+bwd, C=32..64, 8x8 and 32x32,
# batch 64): "block" won 3 of 4 cases and the total; `archsearch profile --blocks` times
# every mode side by side.
DEFAULT_MODE: ConvMode = "block"
_EPS = 1e-6  # magnitude floor: keeps z/|z| and its gradient finite at z = 0


# ----------------------------------------------------------------------------- stacked layout
# Every layer below also has ``stacked(x)``: the same function on the real (B, 2C, H, W')
# [re; im] layout. The dual twins' forward is ``stacked``, and the complex resblock runs
# its whole body through it (one split of the input, one complex rebuild at the end):
# real contiguous ops instead of strided ``z.real``/``z.imag`` views and a complex tensor
# rebuilt after every layer, which is most of what a complex block costs on the CPU.
def stack(z: Tensor) -> Tensor:
    """(B, C, ...) complex -> (B, 2C, ...) real, real parts first."""
    return torch.cat([z.real, z.imag], 1)


def unstack(x: Tensor) -> Tensor:
    """(B, 2C, ...) real [re; im] -> (B, C, ...) complex."""
    return torch.complex(*x.chunk(2, 1))


def conj_stacked(x: Tensor) -> Tensor:
    """Complex conjugate in the stacked layout: the imaginary half changes sign."""
    x_re, x_im = x.chunk(2, 1)
    return torch.cat([x_re, -x_im], 1)


def both(t: Tensor) -> Tensor:
    """A per-complex-entry factor (B, C, ...) applied to re and im halves: (B, 2C, ...)."""
    return torch.cat([t, t], 1)


def magnitude(x_re: Tensor, x_im: Tensor) -> Tensor:
    """max(|z|, eps) from parts; the clamp keeps the sqrt's gradient finite at 0."""
    return torch.sqrt((x_re.square() + x_im.square()).clamp_min(_EPS**2))


class NoLayer(nn.Identity):
    """Identity in either layout (norm ``none``, a skip between equal widths)."""

    def stacked(self, x: Tensor) -> Tensor:
        return x


# ----------------------------------------------------------------------------- parameters
class _ConvFields(BlockParams):
    channels: int = Field(16, gt=0, le=4096, description="output channels (complex)")
    kernel_size: int = Field(3, ge=1, le=15, description="odd kernel size, 'same' padding")
    bias: bool = True
    mode: ConvMode = Field(DEFAULT_MODE, description="native cfloat, 3-mult Gauss or block")
    init: Literal["he", "glorot"] = "he"

    _odd = field_validator("kernel_size")(odd_kernel)


class ComplexConvParams(SpectralPadParams, _ConvFields):
    """A 'same' complex conv: the conv fields, then the spectrum-shaped padding."""


class ComplexConvTransposeParams(_ConvFields):
    kernel_size: int = Field(4, ge=2, le=16, description="even kernel size, stride 2")

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, k: int) -> int:  # overrides the parent's check
        if k % 2:
            raise ValueError("kernel_size must be even for an exact 2x upsampling")
        return k


class ComplexLinearParams(BlockParams):
    channels: int = Field(16, gt=0, le=4096, description="output channels (complex)")
    bias: bool = True
    mode: ConvMode = DEFAULT_MODE
    init: Literal["he", "glorot"] = "he"


class BatchNormParams(BlockParams):
    eps: float = Field(1e-5, gt=0)
    momentum: float = Field(0.1, gt=0, le=1)


class GroupNormParams(BlockParams):
    groups: int = Field(8, gt=0, le=1024)
    eps: float = Field(1e-5, gt=0)


class ModReLUParams(BlockParams):
    bias_init: float = Field(0.0, description="initial value of the per-channel bias b")


class DropoutParams(BlockParams):
    p: float = Field(0.1, ge=0, lt=1, description="probability of zeroing a complex entry")


class _ResBlockFields(BlockParams):
    channels: int = Field(16, gt=0, le=4096)
    groups: int = Field(8, gt=0, le=1024, description="capped to a divisor of the channels")
    dropout: float = Field(0.0, ge=0, lt=1)
    kernel_size: int = Field(3, ge=1, le=15)
    norm: Literal["group", "batch", "none"] = "group"
    act: Literal["crelu", "modrelu", "zrelu", "cardioid"] = "crelu"
    mode: ConvMode = DEFAULT_MODE

    _odd = field_validator("kernel_size")(odd_kernel)


class ResBlockParams(SpectralPadParams, _ResBlockFields):
    """The resblock fields, then the spectrum-shaped padding of its two 3x3 convs."""


# ----------------------------------------------------------------------------- init
def complex_init_(w_re: Tensor, w_im: Tensor, fan_in: int, fan_out: int,
                  criterion: str = "he") -> None:
    """Complex He/Glorot initialisation (Trabelsi et al. 2018, sec. 3.6), in place.

    A pre-activation ``y = sum_j w_j x_j`` over ``fan_in`` independent zero-mean terms has
    ``E|y|^2 = fan_in * E|w|^2 * E|x|^2`` for real and complex numbers alike. Real He init
    uses ``Var(w) = 2 / fan_in`` (the 2 undoes ReLU halving the power), so the complex
    criterion is ``E|w|^2 = 2 / fan_in`` (Glorot: ``2 / (fan_in + fan_out)``), which makes the
    output power of a complex layer equal that of its real He counterpart. The modulus is
    drawn from Rayleigh(sigma), ``E|w|^2 = 2 sigma^2``, so ``sigma = 1/sqrt(fan_in)``; the
    phase is uniform. (That is the same distribution as independent N(0, sigma^2) real and
    imaginary parts: the variance is split evenly over re/im.)
    """
    sigma = 1.0 / math.sqrt(fan_in if criterion == "he" else fan_in + fan_out)
    with torch.no_grad():
        u = torch.rand_like(w_re)  # in [0, 1): inverse Rayleigh CDF stays finite
        modulus = sigma * torch.sqrt(-2.0 * torch.log1p(-u))
        phase = (torch.rand_like(w_re) * 2.0 - 1.0) * math.pi
        w_re.copy_(modulus * torch.cos(phase))
        w_im.copy_(modulus * torch.sin(phase))


# ----------------------------------------------------------------------------- convolution
def block_weight(w_re: Tensor, w_im: Tensor, transposed: bool = False) -> Tensor:
    """Real weight ``[[Wr, -Wi], [Wi, Wr]]`` acting on stacked ``[re; im]`` channels.

    Conv weights are (out, in, ...); transposed-conv weights are (in, out, ...), hence the
    transposed block layout for them.
    """
    if transposed:
        return torch.cat([torch.cat([w_re, w_im], 1), torch.cat([-w_im, w_re], 1)], 0)
    return torch.cat([torch.cat([w_re, -w_im], 1), torch.cat([w_im, w_re], 1)], 0)


class ComplexConv2d(nn.Module):
    """Complex convolution ``W * z`` with ``W = Wr + i Wi`` (Trabelsi et al. 2018).

    Three exact forms (``mode``): ``native`` builds a cfloat weight and calls ``F.conv2d``
    on the complex input; ``gauss`` uses Gauss's 3-multiplication trick
    (``Wr*xr - Wi*xi`` and ``(Wr+Wi)*(xr+xi) - Wr*xr - Wi*xi``); ``block`` runs one real
    convolution of the block weight ``[[Wr, -Wi], [Wi, Wr]]`` over stacked ``[re; im]``.

    Args:
        in_channels: complex input channels.
        out_channels: complex output channels.
        kernel_size: odd kernel ('same' padding), or even for ``transposed``.
        bias: add a complex per-channel bias.
        mode: ``native`` | ``gauss`` | ``block``.
        transposed: stride-2 transposed convolution (2x upsampling of the H, W' grid).
        init: ``he`` or ``glorot`` complex initialisation.
        padding: ``zeros`` | ``circular`` | ``hermitian`` (:mod:`blocks.spectral_pad`),
            for the 'same' (not transposed) convolution of a half spectrum.
        width: image width W for ``hermitian`` padding (default 2*(W'-1)).
    """

    def __init__(self, *, in_channels: int, out_channels: int, kernel_size: int = 3,
                 bias: bool = True, mode: str = DEFAULT_MODE, transposed: bool = False,
                 init: str = "he", padding: str = "zeros", width: int | None = None) -> None:
        super().__init__()
        if transposed and padding != "zeros":
            raise ValueError(f"{padding} padding applies to 'same' convolutions only")
        self.mode, self.transposed = mode, transposed
        self.padding, self.width, self.pad = padding, width, kernel_size // 2
        shape = (in_channels, out_channels) if transposed else (out_channels, in_channels)
        self.weight_real = nn.Parameter(torch.empty(*shape, kernel_size, kernel_size))
        self.weight_imag = nn.Parameter(torch.empty(*shape, kernel_size, kernel_size))
        self.bias_real = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.bias_imag = nn.Parameter(torch.zeros(out_channels)) if bias else None
        if transposed:  # each output pixel sees in_channels * (k/2)^2 taps at stride 2
            self.op: Callable = partial(F.conv_transpose2d, stride=2, padding=(kernel_size - 2) // 2)
            fan_in, fan_out = in_channels * kernel_size**2 // 4, out_channels * kernel_size**2 // 4
        else:
            # spectrum-shaped padding is done by pad_input, before a padding-free conv
            self.op = partial(F.conv2d, padding=kernel_size // 2 if padding == "zeros" else 0)
            fan_in, fan_out = in_channels * kernel_size**2, out_channels * kernel_size**2
        complex_init_(self.weight_real, self.weight_imag, max(fan_in, 1), fan_out, init)

    def pad_input(self, x: Tensor, conj: Callable[[Tensor], Tensor]) -> Tensor:
        """The input with its ``circular``/``hermitian`` padding (as is for ``zeros``)."""
        if self.padding == "zeros" or self.pad == 0:
            return x
        return pad_spectrum(x, self.pad, self.padding, self.width, conj)

    def parts(self, x_re: Tensor, x_im: Tensor) -> tuple[Tensor, Tensor]:
        """Real and imaginary output parts (no bias) computed with real ops only."""
        w_re, w_im = self.weight_real, self.weight_imag
        if self.mode == "gauss":
            t1, t2 = self.op(x_re, w_re), self.op(x_im, w_im)
            t3 = self.op(x_re + x_im, w_re + w_im)
            return t1 - t2, t3 - t1 - t2
        y = self.op(torch.cat([x_re, x_im], 1), block_weight(w_re, w_im, self.transposed))
        return y.chunk(2, 1)  # "block" (and the dual twin's stand-in for "native")

    def forward(self, z: Tensor) -> Tensor:
        # z: (B, Cin, H, W') complex -> (B, Cout, H, W') complex ((2H, 2W') if transposed)
        z = self.pad_input(z, torch.conj)  # (B, Cin, H+2p, W'+2p) unless the conv pads zeros
        if self.mode == "native":
            y = self.op(z, torch.complex(self.weight_real, self.weight_imag))
        else:
            y = torch.complex(*self.parts(z.real, z.imag))
        if self.bias_real is not None:
            y = y + torch.complex(self.bias_real, self.bias_imag)[:, None, None]
        return y

    def stacked(self, x: Tensor) -> Tensor:
        # x: (B, 2Cin, H, W') -> (B, 2Cout, H, W') ((2H, 2W') if transposed)
        x = self.pad_input(x, conj_stacked)  # (B, 2Cin, H+2p, W'+2p) unless conv pads zeros
        if self.mode == "gauss":
            y = torch.cat(self.parts(*x.chunk(2, 1)), 1)
        else:  # "block"; "native" needs a complex dtype, so it is the block form here
            y = self.op(x, block_weight(self.weight_real, self.weight_imag, self.transposed))
        if self.bias_real is not None:
            y = y + torch.cat([self.bias_real, self.bias_imag])[:, None, None]
        return y


class ComplexLinear(ComplexConv2d):
    """Complex channel mixing ``y[o] = sum_i W[o, i] z[i] + b[o]`` (a complex 1x1 conv).

    The weights are (out, in) matrices, so they copy straight to/from ``nn.Linear`` pairs.
    """

    def __init__(self, *, in_channels: int, out_channels: int, bias: bool = True,
                 mode: str = DEFAULT_MODE, init: str = "he") -> None:
        super().__init__(in_channels=in_channels, out_channels=out_channels, kernel_size=1,
                         bias=bias, mode=mode, init=init)
        self.weight_real = nn.Parameter(self.weight_real.detach()[:, :, 0, 0])
        self.weight_imag = nn.Parameter(self.weight_imag.detach()[:, :, 0, 0])
        self.op = _linear_op


class ComplexConvTranspose2d(ComplexConv2d):
    """Stride-2 complex transposed convolution: 2x upsampling of the (H, W') grid it sees.

    Weights are (in, out, k, k) with an even ``k`` and padding ``(k-2)/2``, so the output is
    exactly (2H, 2W'). Note that this is upsampling *in the domain it is applied to*: on a
    spectrum it refines the frequency grid; use spectral_up for image-size upsampling.
    """

    def __init__(self, *, in_channels: int, out_channels: int, kernel_size: int = 4,
                 bias: bool = True, mode: str = DEFAULT_MODE, init: str = "he") -> None:
        super().__init__(in_channels=in_channels, out_channels=out_channels,
                         kernel_size=kernel_size, bias=bias, mode=mode, transposed=True,
                         init=init)


# ----------------------------------------------------------------------------- activations
class ModReLU(nn.Module):
    """modReLU ``relu(|z| + b) * z / |z|`` with a learnable bias per channel (Arjovsky et al.
    2016, "Unitary Evolution Recurrent Neural Networks"). Keeps the phase."""

    def __init__(self, *, num_channels: int, bias_init: float = 0.0) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.full((num_channels,), float(bias_init)))

    def forward(self, z: Tensor) -> Tensor:
        mag = z.abs().clamp_min(_EPS)  # (B, C, H, W') real
        return z * (F.relu(mag + self.bias[:, None, None]) / mag)

    def stacked(self, x: Tensor) -> Tensor:
        mag = magnitude(*x.chunk(2, 1))  # (B, C, H, W')
        return x * both(F.relu(mag + self.bias[:, None, None]) / mag)


class CReLU(nn.Module):
    """CReLU ``relu(Re z) + i relu(Im z)`` (Trabelsi et al. 2018)."""

    def forward(self, z: Tensor) -> Tensor:
        return torch.complex(F.relu(z.real), F.relu(z.imag))

    def stacked(self, x: Tensor) -> Tensor:
        return F.relu(x)  # on [re; im] CReLU is a plain ReLU


class ZReLU(nn.Module):
    """zReLU: ``z`` where ``0 <= arg z <= pi/2`` (first quadrant), else 0 (Guberman 2016,
    "On Complex Valued Convolutional Neural Networks")."""

    def forward(self, z: Tensor) -> Tensor:
        return z * ((z.real >= 0) & (z.imag >= 0))

    def stacked(self, x: Tensor) -> Tensor:
        x_re, x_im = x.chunk(2, 1)
        return x * both((x_re >= 0) & (x_im >= 0))


class Cardioid(nn.Module):
    """Cardioid ``(1 + cos arg z) / 2 * z`` (Virtue et al. 2017, "Better than Real"):
    phase-preserving, attenuates by direction; equals ReLU on the real line."""

    def forward(self, z: Tensor) -> Tensor:
        return z * (0.5 * (1.0 + z.real / z.abs().clamp_min(_EPS)))

    def stacked(self, x: Tensor) -> Tensor:
        x_re, x_im = x.chunk(2, 1)
        return x * both(0.5 * (1.0 + x_re / magnitude(x_re, x_im)))


class ComplexDropout(nn.Module):
    """Drops whole complex entries (one mask for re and im), scaled by ``1/(1-p)``."""

    def __init__(self, *, p: float = 0.1) -> None:
        super().__init__()
        self.p = p

    def mask(self, shape: torch.Size, like: Tensor) -> Tensor:
        keep = torch.rand(shape, dtype=like.dtype, device=like.device) >= self.p
        return keep.to(like.dtype) / (1.0 - self.p)

    def forward(self, z: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return z
        return z * self.mask(z.shape, z.real)

    def stacked(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        b, c2 = x.shape[:2]  # the same draws as the complex form: one per complex entry
        return x * both(self.mask((b, c2 // 2, *x.shape[2:]), x))


# ----------------------------------------------------------------------------- resblock
class ComplexResBlock(nn.Module):
    """Complex residual block: norm-act-conv, time shift, norm-act-dropout-conv, 1x1 skip.

    The DDPM residual block (Ho et al. 2020) in complex arithmetic: the embedding passes
    SiLU and a real linear layer to ``2*channels`` numbers, used as a complex per-channel
    shift (first half real, second half imaginary). The dual twin swaps the component
    classes below and nothing else, so both hold the same state dict. ``padding`` and
    ``width`` go to both 3x3 convs (spectrum-shaped padding, :mod:`blocks.spectral_pad`).
    """

    conv_cls, linear_cls = ComplexConv2d, ComplexLinear
    norm_cls = {"group": ComplexGroupNorm, "batch": ComplexBatchNorm2d}
    act_cls = {"crelu": CReLU, "modrelu": ModReLU, "zrelu": ZReLU, "cardioid": Cardioid}
    dropout_cls = ComplexDropout

    def __init__(self, *, in_channels: int, channels: int, emb_dim: int | None = None,
                 groups: int = 8, dropout: float = 0.0, kernel_size: int = 3,
                 norm: str = "group", act: str = "crelu", mode: str = DEFAULT_MODE,
                 padding: str = "zeros", width: int | None = None) -> None:
        super().__init__()
        pad = {"padding": padding, "width": width}
        self.norm1 = self._norm(norm, in_channels, groups)
        self.act1 = self._act(act, in_channels)
        self.conv1 = self.conv_cls(in_channels=in_channels, out_channels=channels,
                                   kernel_size=kernel_size, mode=mode, **pad)
        self.emb_proj = nn.Linear(emb_dim, 2 * channels) if emb_dim else None
        self.norm2 = self._norm(norm, channels, groups)
        self.act2 = self._act(act, channels)
        self.dropout = self.dropout_cls(p=dropout)
        self.conv2 = self.conv_cls(in_channels=channels, out_channels=channels,
                                   kernel_size=kernel_size, mode=mode, **pad)
        self.skip = (self.linear_cls(in_channels=in_channels, out_channels=channels, mode=mode)
                     if in_channels != channels else NoLayer())
        self.mode = mode

    def _norm(self, norm: str, c: int, groups: int) -> nn.Module:
        if norm == "none":
            return NoLayer()
        if norm == "group":
            return self.norm_cls["group"](num_channels=c, groups=math.gcd(groups, c))
        return self.norm_cls["batch"](num_channels=c)

    def _act(self, act: str, c: int) -> nn.Module:
        return self.act_cls[act](num_channels=c) if act == "modrelu" else self.act_cls[act]()

    def add_shift(self, h: Tensor, shift: Tensor) -> Tensor:
        c = h.shape[1]  # shift: (B, 2C) real -> complex (B, C, 1, 1)
        return h + torch.complex(shift[:, :c], shift[:, c:])[:, :, None, None]

    def _check_emb(self, emb: Tensor | None) -> None:
        if (emb is None) != (self.emb_proj is None):
            raise ValueError("resblock: embedding input given/missing at call but not at build")

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        # x: (B, Cin, H, W') complex -> (B, C, H, W') complex
        if self.mode == "native":  # the complex-autograd form keeps complex tensors
            return self.complex_forward(x, emb)
        return unstack(self.stacked(stack(x), emb))  # the same function, real ops inside

    def complex_forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        h = self.conv1(self.act1(self.norm1(x)))
        self._check_emb(emb)
        if emb is not None:
            h = self.add_shift(h, self.emb_proj(F.silu(emb)))  # emb: (B, D)
        h = self.conv2(self.dropout(self.act2(self.norm2(h))))
        return self.skip(x) + h

    def stacked(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        # x: (B, 2Cin, H, W') [re; im] real -> (B, 2C, H, W')
        h = self.conv1.stacked(self.act1.stacked(self.norm1.stacked(x)))
        self._check_emb(emb)
        if emb is not None:  # (B, 2C): the real shifts then the imaginary ones, as h
            h = h + self.emb_proj(F.silu(emb))[:, :, None, None]
        h = self.conv2.stacked(self.dropout.stacked(self.act2.stacked(self.norm2.stacked(h))))
        return self.skip.stacked(x) + h


def _linear_op(x: Tensor, w: Tensor) -> Tensor:
    return F.conv2d(x, w[:, :, None, None])


# Block keys shared with the dual twins; blocks/twins.py registers both layouts from them.
CLASSES: dict[str, type] = {
    "conv": ComplexConv2d, "linear": ComplexLinear, "conv_transpose": ComplexConvTranspose2d,
    "batch_norm": ComplexBatchNorm2d, "group_norm": ComplexGroupNorm, "modrelu": ModReLU,
    "crelu": CReLU, "zrelu": ZReLU, "cardioid": Cardioid, "dropout": ComplexDropout,
    "resblock": ComplexResBlock, "down": SpectralDown, "up": SpectralUp}
