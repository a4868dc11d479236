"""Spectral statistics of image sets: radial power spectrum, band energy, histograms, distances.

All spectra use ``torch.fft.rfft2(norm="ortho")`` over (H, W), so by Parseval the weighted sum
of ``|F|^2`` equals the pixel-space sum of squares. ``rfft2`` keeps only the non-negative
column frequencies: every column except 0 (and W/2 for even W) stands for itself *and* its
conjugate mirror, so it is counted twice (:func:`blocks.fourier.rfft_multiplicity`).
Frequencies are in cycles per pixel (``fftfreq``/``rfftfreq``), the radius is ``sqrt(fy^2 + fx^2)``.

Conventions (reported with the results):

- ``remove_mean=True`` (default) subtracts each image's per-channel mean first, i.e. drops
  the DC term, which otherwise holds most of the energy of [-1, 1] images and hides the
  structure the research question is about.
- Radial bins have width ``1 / min(H, W)`` (integer radii for square images); the RAPS is
  the mean power per frequency in a bin, averaged over images and channels.
- Bands split [0, 0.5] cycles/pixel (DC to Nyquist) into ``n_bands`` equal widths; the
  corner frequencies beyond 0.5 go to the last band so the shares sum to one.

Distances between samples and data (Durall et al. 2020, "Watch your up-convolution", use the
radial spectrum to expose generator artefacts; the band KL is our summary of the same):

- ``spectral-RAPS-dist``: mean over radial bins (DC excluded) of
  ``|log10 RAPS_samples - log10 RAPS_data|``, in decades; 0 for identical sets.
- ``spectral-band-SKL``: symmetric KL divergence (nats) between band-energy shares.
- Per-band error (:func:`band_errors`, stored with every evaluated sampler setting):
  ``log10`` of the ratio of the samples' to the data's mean energy in each band.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from blocks import fourier
from evaluator.measure.registry import result

_EPS = 1e-12


def _as_images(x: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.dim() == 3:  # (B, H, W) -> one channel
        x = x.unsqueeze(1)
    if x.dim() != 4:
        raise ValueError(f"expected images (B, C, H, W), got shape {tuple(x.shape)}")
    if x.is_complex():
        raise ValueError("expected real images, got a complex tensor")
    return x.to(torch.float64)


def power_spectrum(images: torch.Tensor, remove_mean: bool = True) -> torch.Tensor:
    """Per-image, per-channel ``|rfft2(x)|^2`` (orthonormal), (B, C, H, W//2+1) float64."""
    return fourier.power_spectrum(_as_images(images), remove_mean=remove_mean)


def spectral_energy(images: torch.Tensor, remove_mean: bool = False) -> torch.Tensor:
    """(B,) total energy per image from the spectrum; equals ``(x**2).sum((1,2,3))``."""
    x = _as_images(images)
    h, w = x.shape[-2:]
    p = power_spectrum(x, remove_mean)  # (B, C, H, W//2+1)
    return (p * fourier.rfft_multiplicity(h, w, device=p.device)).sum(dim=(1, 2, 3))


def radial_power_spectrum(images: torch.Tensor, remove_mean: bool = True,
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Radially averaged power spectrum (RAPS), averaged over images and channels.

    Returns:
        ``(radius, raps)``: bin centres in cycles/pixel and the mean power per frequency in
        each bin (counting mirrored rfft columns twice), both (n_bins,) float64. Empty
        bins do not occur for the integer-radius binning used here.
    """
    x = _as_images(images)
    h, w = x.shape[-2:]
    p = power_spectrum(x, remove_mean).mean(dim=(0, 1))  # (H, W//2+1)
    wt = fourier.rfft_multiplicity(h, w, device=p.device)
    bins = fourier.radial_bins(h, w, device=p.device).flatten()
    n_bins = int(bins.max()) + 1
    zeros = torch.zeros(n_bins, dtype=torch.float64, device=p.device)
    power = zeros.index_add(0, bins, (p * wt).flatten())
    count = zeros.index_add(0, bins, wt.flatten())
    radius = torch.arange(n_bins, dtype=torch.float64, device=p.device) / min(h, w)
    return radius, power / count.clamp_min(1.0)


def band_energies(images: torch.Tensor, n_bands: int = 4, remove_mean: bool = True,
                  ) -> torch.Tensor:
    """(n_bands,) spectral energy in each radial band, mean per image (summed over
    channels); the bands sum to the mean pixel energy (Parseval)."""
    x = _as_images(images)
    h, w = x.shape[-2:]
    m = fourier.rfft_multiplicity(h, w, device=x.device)
    p = power_spectrum(x, remove_mean).mean(dim=0).sum(dim=0) * m
    return torch.zeros(n_bands, dtype=torch.float64, device=p.device).index_add_(
        0, fourier.band_index(h, w, n_bands, device=x.device).flatten(), p.flatten())


def band_energy_shares(images: torch.Tensor, n_bands: int = 4, remove_mean: bool = True,
                       ) -> torch.Tensor:
    """(n_bands,) share of the total spectral energy of the set in each radial band."""
    energy = band_energies(images, n_bands, remove_mean)
    total = energy.sum()
    if total <= 0:
        raise ValueError("the images have no spectral energy (constant images?)")
    return energy / total


def spectrum_histograms(images: torch.Tensor, bins: int = 32,
                        log_mag_range: tuple[float, float] | None = None,
                        remove_mean: bool = True) -> dict[str, Any]:
    """Histograms (densities) of log10 magnitude and of phase of the rfft2 coefficients.

    DC and Nyquist coefficients are left out of the phase histogram: they are real, so
    their phase is 0 or pi by construction. Pass the data's ``log_mag_range`` when
    histogramming samples so that the two share bin edges.
    """
    x = _as_images(images)
    if remove_mean:
        x = x - x.mean(dim=(-2, -1), keepdim=True)
    f = torch.fft.rfft2(x, norm="ortho")  # (B, C, H, W//2+1) complex128
    h, w = x.shape[-2:]
    logmag = torch.log10(f.abs() + _EPS)
    if remove_mean:
        logmag = logmag[..., _not_dc(h, w, x.device)]
    lo, hi = log_mag_range if log_mag_range else (float(logmag.min()), float(logmag.max()))
    if hi <= lo:
        hi = lo + 1.0
    mag_hist = torch.histc(logmag.clamp(lo, hi).float(), bins=bins, min=lo, max=hi)
    phase = torch.angle(f)[..., _not_self_conjugate(h, w, x.device)]
    ph_hist = torch.histc(phase.float(), bins=bins, min=-math.pi, max=math.pi)
    return {
        "log10_magnitude": {"edges": torch.linspace(lo, hi, bins + 1).tolist(),
                            "density": (mag_hist / mag_hist.sum() / ((hi - lo) / bins)).tolist()},
        "phase": {"edges": torch.linspace(-math.pi, math.pi, bins + 1).tolist(),
                  "density": (ph_hist / ph_hist.sum() / (2 * math.pi / bins)).tolist()},
    }


def _not_dc(h: int, w: int, device: torch.device) -> torch.Tensor:
    mask = torch.ones(h, w // 2 + 1, dtype=torch.bool, device=device)
    mask[0, 0] = False
    return mask


def _not_self_conjugate(h: int, w: int, device: torch.device) -> torch.Tensor:
    """Mask of coefficients that are not forced real (DC and the Nyquist rows/columns)."""
    mask = torch.ones(h, w // 2 + 1, dtype=torch.bool, device=device)
    rows = [0] + ([h // 2] if h % 2 == 0 else [])
    cols = [0] + ([w // 2] if w % 2 == 0 else [])
    for r in rows:
        for c in cols:
            mask[r, c] = False
    return mask


def raps_distance(samples: torch.Tensor, data: torch.Tensor, remove_mean: bool = True) -> float:
    """Mean over radial bins (DC excluded) of ``|log10 RAPS_samples - log10 RAPS_data|``."""
    _check_same_size(samples, data)
    _, rs = radial_power_spectrum(samples, remove_mean)
    _, rd = radial_power_spectrum(data, remove_mean)
    diff = torch.log10(rs[1:] + _EPS) - torch.log10(rd[1:] + _EPS)
    return float(diff.abs().mean())


def band_skl(samples: torch.Tensor, data: torch.Tensor, n_bands: int = 8,
             remove_mean: bool = True) -> float:
    """Symmetric KL divergence (nats) between the band-energy shares of two sets."""
    _check_same_size(samples, data)
    p = band_energy_shares(samples, n_bands, remove_mean).clamp_min(_EPS)
    q = band_energy_shares(data, n_bands, remove_mean).clamp_min(_EPS)
    return float(((p - q) * (p.log() - q.log())).sum())


def _check_same_size(a: torch.Tensor, b: torch.Tensor) -> None:
    sa, sb = tuple(torch.as_tensor(a).shape[-2:]), tuple(torch.as_tensor(b).shape[-2:])
    if sa != sb:
        raise ValueError(f"samples and data must have the same image size, got {sa} and {sb}")


def spectral_summary(images: torch.Tensor, n_bands: int = 8, hist_bins: int = 32,
                     log_mag_range: tuple[float, float] | None = None,
                     remove_mean: bool = True) -> dict[str, Any]:
    """JSON-friendly spectral statistics of one image set (for run stores and plots)."""
    radius, raps = radial_power_spectrum(images, remove_mean)
    return {
        "n": int(torch.as_tensor(images).shape[0]),
        "remove_mean": remove_mean,
        "raps": {"radius": radius.tolist(), "power": raps.tolist()},
        "band_shares": band_energy_shares(images, n_bands, remove_mean).tolist(),
        "band_energy": band_energies(images, n_bands, remove_mean).tolist(),
        "band_edges": [0.5 * i / n_bands for i in range(n_bands + 1)],
        "histograms": spectrum_histograms(images, hist_bins, log_mag_range, remove_mean),
    }


def band_errors(samples: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """Per-band error of samples against data, from two :func:`spectral_summary` dicts.

    ``log10_ratio[b] = log10(E_samples[b] / E_data[b])`` of the mean energy per image in
    band b: 0 where the model matches the data, +1 for ten times too much energy (noise
    left in), -1 for ten times too little (over-smoothed). ``abs_error`` is its magnitude;
    ``share_error`` the difference of the energy shares (sums to 0 over bands).
    """
    es, ed = samples["band_energy"], data["band_energy"]
    if len(es) != len(ed):
        raise ValueError(f"band counts differ: {len(es)} and {len(ed)}")
    ratio = [math.log10((a + _EPS) / (b + _EPS)) for a, b in zip(es, ed)]
    return {"band_edges": list(data["band_edges"]), "log10_ratio": ratio,
            "abs_error": [abs(r) for r in ratio],
            "share_error": [a - b for a, b in zip(samples["band_shares"], data["band_shares"])],
            "samples_energy": list(es), "data_energy": list(ed),
            "n": samples["n"], "reference_n": data["n"]}


def spectral_metrics(samples: torch.Tensor, data: torch.Tensor, n_bands: int = 8,
                     hist_bins: int = 32, remove_mean: bool = True) -> list[dict[str, Any]]:
    """Spectral distances of ``samples`` to ``data`` plus both sets' statistics.

    Returns two results, ``spectral-RAPS-dist`` and ``spectral-band-SKL``; each carries
    ``details`` with the samples' and data's :func:`spectral_summary` (same histogram edges).
    """
    _check_same_size(samples, data)
    data_stats = spectral_summary(data, n_bands, hist_bins, None, remove_mean)
    mag_range = tuple(data_stats["histograms"]["log10_magnitude"]["edges"][::hist_bins])
    details = {"samples": spectral_summary(samples, n_bands, hist_bins, mag_range, remove_mean),
               "data": data_stats}
    n = int(torch.as_tensor(samples).shape[0])
    common = dict(n=n, reference_n=data_stats["n"], n_bands=n_bands, remove_mean=remove_mean)
    return [
        result("spectral-RAPS-dist", raps_distance(samples, data, remove_mean), **common,
               unit="log10 decades", details=details),
        result("spectral-band-SKL", band_skl(samples, data, n_bands, remove_mean), **common,
               unit="nats", details=details),
    ]
