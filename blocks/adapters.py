"""Domain adapters: orthonormal FFTs between pixel space and spectra, and complex <-> dual.

Every FFT here uses ``norm="ortho"``, so the transforms are unitary: energy is preserved
(Parseval). For the full ``fft2`` spectrum plain MSE is the pixel MSE; on the ``rfft2`` half
spectrum it is not (equal pixel energy gives 1.0 at DC but 0.5 at an interior frequency):
only the multiplicity-weighted sum (:func:`blocks.fourier.rfft_multiplicity`) equals it. FFTs always run
in float32 / complex64 with autocast disabled, because half-precision FFTs lose several
digits and cuFFT only supports power-of-two sizes in half precision.

Layouts:

- ``complex``: (B, C, H, W//2+1) complex64, the ``rfft2`` half spectrum (or (B, C, H, W)
  for the full ``fft2`` spectrum).
- ``dual``: (B, 2C, H, W') float32, the C real parts first, then the C imaginary parts.

Besides the registered blocks this module exports plain helpers used by other families and
by the ``unet`` composite: :func:`to_dual`, :func:`from_dual`, :func:`concat_domain`,
:func:`convert`, :func:`spec_for` and :func:`domain_channels`.
"""
from __future__ import annotations

from typing import Sequence

import torch
from pydantic import Field
from torch import nn

from blocks.core import BlockParams, TensorSpec, autocast_off, register_block
from blocks.fourier import from_dual, to_dual

FEATURE_DOMAINS = ("real", "complex", "dual")

Size = int | tuple[int, int]


def _hw(size: Size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


# --------------------------------------------------------------------------- helpers


def concat_domain(domain: str, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate feature maps on channels, keeping the ``dual`` layout intact.

    A naive ``torch.cat`` of two dual tensors would interleave [re1, im1, re2, im2];
    the dual layout needs [re1, re2, im1, im2].

    Args:
        domain: ``real``, ``complex`` or ``dual``.
        tensors: (B, C_i, H, W) tensors of that domain.

    Returns:
        (B, sum C_i, H, W) tensor of the same domain.
    """
    if not tensors:
        raise ValueError("concat_domain needs at least one tensor")
    if domain == "dual":
        for t in tensors:
            if t.shape[1] % 2:
                raise ValueError(f"dual tensor needs an even channel count, got {t.shape[1]}")
        reals = [t[:, : t.shape[1] // 2] for t in tensors]
        imags = [t[:, t.shape[1] // 2:] for t in tensors]
        return torch.cat(reals + imags, dim=1)
    if domain in ("real", "complex"):
        return torch.cat(list(tensors), dim=1)
    raise ValueError(f"cannot concatenate tensors of domain {domain!r}")


def domain_channels(spec: TensorSpec) -> int:
    """Feature channels C of a real/complex/dual spec (a dual spec holds 2C planes)."""
    if spec.domain == "dual":
        return spec.shape[0] // 2
    return spec.shape[0]


def spec_for(domain: str, channels: int, size: Size) -> TensorSpec:
    """Per-sample spec of C feature channels of an image of ``size`` in ``domain``.

    Complex and dual use the ``rfft2`` layout H x (W//2+1).
    """
    h, w = _hw(size)
    if domain == "real":
        return TensorSpec("real", (channels, h, w))
    if domain == "complex":
        return TensorSpec("complex", (channels, h, w // 2 + 1))
    if domain == "dual":
        return TensorSpec("dual", (2 * channels, h, w // 2 + 1))
    raise ValueError(f"no feature-map layout for domain {domain!r}")


# --------------------------------------------------------------------------- modules


class RFFT2(nn.Module):
    """Orthonormal real 2-D FFT over the last two dims: (B, C, H, W) -> (B, C, H, W//2+1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast_off(x):
            return torch.fft.rfft2(x.float(), norm="ortho")  # (B, C, H, W//2+1) complex64


class IRFFT2(nn.Module):
    """Orthonormal inverse of :class:`RFFT2`.

    Args:
        width: output width W, required: the half spectrum has W//2+1 columns whatever the
            parity of W (8 and 9 both give 5), so guessing would silently lose a column.
    """

    def __init__(self, *, width: int) -> None:
        super().__init__()
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"IRFFT2 needs the output width W as a positive int, got {width!r}")
        self.width = width

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h, wp = z.shape[-2], z.shape[-1]
        w = self.width
        if w // 2 + 1 != wp:
            raise ValueError(f"irfft2: a half spectrum with {wp} columns cannot give width {w}")
        with autocast_off(z):
            return torch.fft.irfft2(z.to(torch.complex64), s=(h, w), norm="ortho")  # (B, C, H, W)


class FFT2(nn.Module):
    """Orthonormal full 2-D FFT of a real map: (B, C, H, W) -> (B, C, H, W) complex64."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast_off(x):
            return torch.fft.fft2(x.float(), norm="ortho")


class IFFT2(nn.Module):
    """Orthonormal inverse full 2-D FFT, keeping the real part.

    The spectrum of a real image is Hermitian, so its inverse is real; a spectrum that a
    network edited need not be, and the imaginary part it would produce is dropped.
    """

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        with autocast_off(z):
            return torch.fft.ifft2(z.to(torch.complex64), norm="ortho").real  # (B, C, H, W)


class ToDual(nn.Module):
    """complex (B, C, H, W') -> dual (B, 2C, H, W'); see :func:`to_dual`."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return to_dual(z)


class FromDual(nn.Module):
    """dual (B, 2C, H, W') -> complex (B, C, H, W'); see :func:`from_dual`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return from_dual(x)


def convert(src: str, dst: str, *, size: Size) -> nn.Module:
    """A module turning a ``src``-domain feature map into a ``dst``-domain one.

    Args:
        src: ``real``, ``complex`` or ``dual``.
        dst: ``real``, ``complex`` or ``dual``.
        size: spatial size of the image (int for square, or (H, W)); needed to invert a
            half spectrum of odd width.

    Returns:
        ``nn.Identity`` when the domains agree, else a module or ``nn.Sequential`` of
        adapter modules (``rfft2`` layout for complex/dual).
    """
    for d in (src, dst):
        if d not in FEATURE_DOMAINS:
            raise ValueError(f"convert: unsupported domain {d!r}; expected one of {FEATURE_DOMAINS}")
    if src == dst:
        return nn.Identity()
    width = _hw(size)[1]
    to_complex = {"real": RFFT2(), "dual": FromDual()}
    from_complex = {"real": IRFFT2(width=width), "dual": ToDual()}
    if src == "complex":
        return from_complex[dst]
    if dst == "complex":
        return to_complex[src]
    return nn.Sequential(to_complex[src], from_complex[dst])


# --------------------------------------------------------------------------- blocks


class IRFFT2Params(BlockParams):
    size: int | None = Field(None, gt=0, le=65536,
                             description="output width W; default 2*(W'-1) (give it for odd W)")


def _check_feature(name: str, spec: TensorSpec) -> None:
    if len(spec.shape) != 3:
        raise ValueError(f"{name} expects a (C, H, W) feature map, got shape {spec.shape}")


@register_block("rfft2", takes=("real",), gives="complex", family="adapter",
                example=({}, [TensorSpec("real", (3, 8, 8))]))
def _rfft2(p: BlockParams, inputs: list[TensorSpec]) -> nn.Module:
    """Orthonormal real FFT: real (C,H,W) -> complex half spectrum (C,H,W//2+1)."""
    _check_feature("rfft2", inputs[0])
    return RFFT2()


@register_block("irfft2", params=IRFFT2Params, takes=("complex",), gives="real", family="adapter",
                example=({"size": 8}, [TensorSpec("complex", (3, 8, 5))]))
def _irfft2(p: IRFFT2Params, inputs: list[TensorSpec]) -> nn.Module:
    """Orthonormal inverse real FFT: complex (C,H,W//2+1) -> real (C,H,W)."""
    _check_feature("irfft2", inputs[0])
    wp = inputs[0].shape[-1]
    if p.size is not None and p.size // 2 + 1 != wp:
        raise ValueError(f"irfft2: size {p.size} needs {p.size // 2 + 1} spectrum columns, "
                         f"the input has {wp}")
    return IRFFT2(width=2 * (wp - 1) if p.size is None else p.size)  # None: the even W


@register_block("fft2", takes=("real",), gives="complex", family="adapter",
                example=({}, [TensorSpec("real", (3, 8, 8))]))
def _fft2(p: BlockParams, inputs: list[TensorSpec]) -> nn.Module:
    """Orthonormal full FFT: real (C,H,W) -> complex full spectrum (C,H,W)."""
    _check_feature("fft2", inputs[0])
    return FFT2()


@register_block("ifft2", takes=("complex",), gives="real", family="adapter",
                example=({}, [TensorSpec("complex", (3, 8, 8))]))
def _ifft2(p: BlockParams, inputs: list[TensorSpec]) -> nn.Module:
    """Orthonormal inverse full FFT, real part: complex (C,H,W) -> real (C,H,W)."""
    _check_feature("ifft2", inputs[0])
    return IFFT2()


@register_block("to_dual", takes=("complex",), gives="dual", family="adapter",
                example=({}, [TensorSpec("complex", (3, 8, 5))]))
def _to_dual(p: BlockParams, inputs: list[TensorSpec]) -> nn.Module:
    """complex (C,H,W') -> dual (2C,H,W'): real parts, then imaginary parts."""
    return ToDual()


@register_block("from_dual", takes=("dual",), gives="complex", family="adapter",
                example=({}, [TensorSpec("dual", (6, 8, 5))]))
def _from_dual(p: BlockParams, inputs: list[TensorSpec]) -> nn.Module:
    """dual (2C,H,W') -> complex (C,H,W')."""
    if inputs and inputs[0].shape and inputs[0].shape[0] % 2:
        raise ValueError(f"from_dual: a dual tensor has an even channel count, got {inputs[0].shape[0]}")
    return FromDual()



__all__ = [
    "FFT2", "FromDual", "IFFT2", "IRFFT2", "RFFT2", "ToDual", "concat_domain",
    "convert", "domain_channels", "from_dual", "spec_for", "to_dual",
]
