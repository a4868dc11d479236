"""Per-step spectral statistics of sampling trajectories: the energy share of each radial
band of x0-hat after every model call, when it settles, and the data's reference."""
from __future__ import annotations

import functools
import math
from typing import Any

import torch

from evaluator.measure.spectral import band_energy_shares, spectral_summary


N_BANDS = 4
HIST_BINS = 32
REFERENCE_N = 256   # data images the reference spectrum is computed from


def default_bands(size: int) -> int:
    """Radial bands for ``size`` x ``size`` images: 4, but 3 at 8x8, where the lowest of 4
    equal bands over [0, 0.5] would hold only the (removed) DC term."""
    return max(2, min(N_BANDS, size // 2 - 1))


def band_energy_per_step(trajectory: list[torch.Tensor], n_bands: int = N_BANDS
                         ) -> torch.Tensor:
    """(steps, n_bands) float64: band-energy shares (DC removed) of each step's images.

    A step whose images carry no spectral energy (constant images) gives a row of NaN.
    """
    rows = []
    for x in trajectory:
        try:
            rows.append(band_energy_shares(x, n_bands))
        except ValueError:  # constant images: no energy to share out
            rows.append(torch.full((n_bands,), math.nan, dtype=torch.float64))
    return torch.stack(rows) if rows else torch.zeros((0, n_bands), dtype=torch.float64)


def settle_step(band_energy: torch.Tensor, target: torch.Tensor, tol: float = 0.02
                ) -> list[int | None]:
    """Per band, the first step (1-based) from which the share stays within ``tol`` of
    ``target`` until the end; None if it never settles."""
    out: list[int | None] = []
    for b in range(band_energy.shape[1]):
        close = (band_energy[:, b] - float(target[b])).abs() <= tol
        k = None
        for i in range(len(close) - 1, -1, -1):
            if not bool(close[i]):
                break
            k = i + 1
        out.append(k)
    return out


@functools.lru_cache(maxsize=8)
def data_statistics(dataset: str, n_bands: int = N_BANDS, hist_bins: int = HIST_BINS
                    ) -> dict[str, Any]:
    """:func:`spectral_summary` of the first ``REFERENCE_N`` test images of ``dataset``."""
    from evaluator.data.datasets import load_dataset

    images = load_dataset(dataset, split="test").images[:REFERENCE_N]
    return spectral_summary(images, n_bands, hist_bins)


def step_statistics(x0: torch.Tensor, reference: dict[str, Any] | None = None,
                    n_bands: int = N_BANDS, hist_bins: int = HIST_BINS) -> dict[str, Any]:
    """RAPS, band shares and magnitude/phase histograms of one step's x0-hat.

    With ``reference`` (a :func:`data_statistics` result) the magnitude histogram shares
    the reference's bin edges. Constant images give ``{"error": ...}`` instead.
    """
    rng = None
    if reference is not None:
        edges = reference["histograms"]["log10_magnitude"]["edges"]
        rng = (edges[0], edges[-1])
    try:
        return spectral_summary(x0, n_bands, hist_bins, rng)
    except ValueError as e:
        return {"error": str(e)}
