"""The Fourier facts every layer shares: rfft2 multiplicity, radius grid, radial bins and
bands, power spectrum, complex <-> dual layout.

One home for them, in the lowest layer that uses them (blocks cannot import the
evaluator), so that the spectral blocks, the diffusion losses and the spectral metrics
agree on what "the bin at radius r" and "band b" mean.

Conventions:

- Spectra are ``torch.fft.rfft2(norm="ortho")`` over (H, W): layout (H, W//2+1).
- A real image's full spectrum is Hermitian, so every rfft2 column other than 0 (and W/2
  for even W) stands for itself and its conjugate mirror: multiplicity 2 in every sum, so
  Parseval holds exactly (``sum m_k |X_k|^2 == sum x^2``).
- Radii are computed in float64 from ``fftfreq``/``rfftfreq`` (cycles per pixel).
  :func:`radius_grid` gives them in units of the Nyquist frequency (0.5 cycles/pixel).
- Band edges: a radius within :data:`EDGE_TOL` of an edge counts as *on* it. Radii such as
  0.5 are exact in binary but ``sqrt(fy^2 + fx^2)`` may round one ulp either way (on a
  100x100 grid bin (7, 24) has radius exactly 0.5 Nyquist), so without the tolerance the
  same bin would fall in different bands depending on the dtype.
"""
from __future__ import annotations

import torch

# Radii within this many Nyquist units of a band edge are on the edge (see module doc).
EDGE_TOL = 1e-9


def rfft_multiplicity(h: int, w: int, *, device: torch.device | str | None = None,
                      dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(H, W//2+1): how many full-spectrum bins each rfft2 bin stands for (1 or 2)."""
    m = torch.full((h, w // 2 + 1), 2.0, dtype=dtype, device=device)
    m[:, 0] = 1.0
    if w % 2 == 0:
        m[:, -1] = 1.0  # the Nyquist column is its own mirror
    return m


def frequency_radius(h: int, w: int, *, device: torch.device | str | None = None
                     ) -> torch.Tensor:
    """(H, W//2+1) float64: ``sqrt(fy^2 + fx^2)`` of each rfft2 bin, in cycles per pixel."""
    fy = torch.fft.fftfreq(h, dtype=torch.float64, device=device)   # (H,)
    fx = torch.fft.rfftfreq(w, dtype=torch.float64, device=device)  # (W//2+1,)
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def radius_grid(h: int, w: int, *, device: torch.device | str | None = None,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Radial frequency of every rfft2 bin in Nyquist units (computed in float64).

    Args:
        h: image height H.
        w: image width W (not W').

    Returns:
        (H, W//2+1); 0 at DC, 1 on the Nyquist circle, up to sqrt(2) in the corners.
    """
    return (frequency_radius(h, w, device=device) / 0.5).to(dtype)


def radial_bins(h: int, w: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """(H, W//2+1) int64 radial bin of each rfft2 bin: ``round(radius * min(H, W))``.

    For square images this is the integer radius |k| in cycles per image (0 = DC).
    """
    return torch.round(frequency_radius(h, w, device=device) * min(h, w)).long()


def band_index(h: int, w: int, bands: int, *, device: torch.device | str | None = None
               ) -> torch.Tensor:
    """(H, W//2+1) int64: which of ``bands`` equal-width bands over [0, 1] Nyquist holds
    each bin. Band b is [b/bands, (b+1)/bands); a bin on an edge (within
    :data:`EDGE_TOL`) belongs to the upper band; corners beyond Nyquist join the last band."""
    if bands < 1:
        raise ValueError(f"the number of bands must be >= 1, got {bands}")
    r = radius_grid(h, w, device=device, dtype=torch.float64)
    return torch.clamp(torch.floor(r * bands + EDGE_TOL * bands), max=bands - 1).long()


def in_band(h: int, w: int, low: float, high: float, *,
            device: torch.device | str | None = None) -> torch.Tensor:
    """Bool (H, W//2+1): bins with ``low <= radius <= high`` (Nyquist units, edges
    inclusive within :data:`EDGE_TOL`)."""
    r = radius_grid(h, w, device=device, dtype=torch.float64)
    return (r >= low - EDGE_TOL) & (r <= high + EDGE_TOL)


def power_spectrum(images: torch.Tensor, *, remove_mean: bool = False) -> torch.Tensor:
    """Per-image, per-channel ``|rfft2_ortho(x)|^2``: (..., H, W) -> (..., H, W//2+1) float64.

    Args:
        images: real (..., H, W) tensor.
        remove_mean: subtract each map's mean first (drops the DC term).
    """
    x = torch.as_tensor(images).double()
    if remove_mean:
        x = x - x.mean(dim=(-2, -1), keepdim=True)
    return torch.fft.rfft2(x, norm="ortho").abs() ** 2


def to_dual(z: torch.Tensor) -> torch.Tensor:
    """Stack real and imaginary parts on channels: (B, C, ...) complex -> (B, 2C, ...) real.

    complex64 gives float32, complex128 gives float64.
    """
    if not z.is_complex():
        raise ValueError(f"to_dual expects a complex tensor, got dtype {z.dtype}")
    return torch.cat([z.real, z.imag], dim=1)


def from_dual(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_dual`: (B, 2C, ...) real -> (B, C, ...) complex.

    float64 gives complex128 (a double-precision model stays double); float32, bfloat16
    and float16 give complex64, since torch has no half-precision complex form here.
    """
    if x.is_complex():
        raise ValueError(f"from_dual expects a real (dual) tensor, got dtype {x.dtype}")
    if x.shape[1] % 2:
        raise ValueError(f"dual tensor needs an even channel count, got {x.shape[1]}")
    if x.dtype != torch.float64:
        x = x.float()
    c = x.shape[1] // 2
    return torch.complex(x[:, :c], x[:, c:])


__all__ = [
    "EDGE_TOL", "band_index", "frequency_radius", "from_dual", "in_band", "power_spectrum",
    "radial_bins", "radius_grid", "rfft_multiplicity", "to_dual",
]
