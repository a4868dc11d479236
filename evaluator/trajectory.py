"""Side-by-side sampling of trained runs and per-step statistics of their trajectories.

The research question behind the comparison view: does a frequency-native model settle the
high radial bands of its x0 prediction sooner (in fewer sampler steps) than a spatial one?
:func:`sample_side_by_side` samples several runs from the *same* initial noise
(:func:`evaluator.samplers.initial_noise`, the seed the CLI uses) with the same sampler,
step count and clip policy, keeps x_t and x0-hat after every model call, and measures the
energy share of each radial band of x0-hat at every step (:func:`band_energy_per_step`,
built on :func:`evaluator.metrics.spectral.band_energy_shares`).

Everything here is plain data (tensors, lists, dicts) so surfaces (the Gradio app, scripts)
only lay it out.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from archspec.errors import UserError
from evaluator.metrics.spectral import band_energy_shares, spectral_summary
from evaluator.runs import RunDir

N_BANDS = 4
HIST_BINS = 32
REFERENCE_N = 256   # data images the reference spectrum is computed from


@dataclass
class RunTrajectory:
    """One run's samples and trajectory from a side-by-side sampling.

    Attributes:
        run: the run folder; name: its spec name.
        images: (n, C, H, W) final samples in [-1, 1].
        x0: x0-hat after each model call, each (n, C, H, W); ``len(x0) == nfe``.
        xt: x_t the model saw at each call (before input scaling); ``len(xt) == nfe``.
        nfe: model calls per sample; ms_per_nfe: wall time per batched call.
        settings: the sampler settings (:func:`evaluator.samplers.sample`).
        band_energy: (nfe, n_bands) energy share of each radial band of x0-hat per step.
        dataset: the run's training dataset (its test split is the spectral reference).
    """

    run: RunDir
    name: str
    images: torch.Tensor
    x0: list[torch.Tensor]
    xt: list[torch.Tensor]
    nfe: int
    ms_per_nfe: float
    settings: dict[str, Any]
    band_energy: torch.Tensor
    dataset: str
    noise_sha256: str = field(default="")


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
    from evaluator.datasets import load_dataset

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


def _noise_digest(x: torch.Tensor) -> str:
    import hashlib

    return hashlib.sha256(x.contiguous().numpy().tobytes()).hexdigest()[:16]


def sample_side_by_side(run_paths: list[str | Path], *, sampler: str = "ddim",
                        steps: int = 20, seed: int = 0, n: int = 16, clip: str | None = None,
                        device: str = "cpu", n_bands: int | None = None,
                        models: dict[str, Any] | None = None) -> list[RunTrajectory]:
    """Sample every run from the same initial noise with the same sampler settings.

    Args:
        run_paths: 1+ trained run folders; all must share one image shape.
        sampler, steps, seed, n: as in :func:`evaluator.samplers.sample`.
        clip: x0 clipping policy for every run; default the first run's ``evaluate.clip``.
        device: where the models run.
        n_bands: radial bands for :func:`band_energy_per_step` (default
            :func:`default_bands` of the image size).
        models: optional cache ``{run path: (model, spec)}`` filled and reused (surfaces
            keep it so that sampling again does not reload checkpoints).

    Raises:
        UserError: no runs, a run without checkpoint, differing image shapes, a bad sampler.
    """
    from evaluator.processes import process_schedule
    from evaluator.samplers import SAMPLERS, initial_noise, sample
    from evaluator.train import load_trained

    if not run_paths:
        raise UserError("choose at least one run")
    if sampler not in SAMPLERS:
        from blocks.registry import suggest
        raise UserError(f"unknown sampler {sampler!r}{suggest(sampler, SAMPLERS.names())}")
    cache = models if models is not None else {}
    loaded = []
    for p in run_paths:
        run = RunDir.open(p)
        key = str(run.path.resolve())
        if key not in cache:
            cache[key] = load_trained(run, device, ema=True)
        loaded.append((run, *cache[key]))
    shapes = {(s.image.channels, s.image.size, s.image.size) for _, _, s in loaded}
    if len(shapes) > 1:
        raise UserError(f"runs have different image shapes {sorted(shapes)}; side by side "
                        "needs one shape (the same initial noise for every run)")
    shape = shapes.pop()
    clip = clip or loaded[0][2].evaluate.clip
    n_bands = n_bands or default_bands(shape[-1])
    digest = _noise_digest(initial_noise(n, shape, seed))
    out = []
    for run, model, spec in loaded:
        res = sample(model, process_schedule(spec), sampler=sampler,
                     steps=steps, n=n, shape=shape, seed=seed, clip=clip,
                     prediction=spec.diffusion.prediction, device=device,
                     return_trajectory=True)
        out.append(RunTrajectory(
            run=run, name=spec.name, images=res.images, x0=res.trajectory,
            xt=res.xt_trajectory, nfe=res.nfe, ms_per_nfe=res.ms_per_nfe,
            settings=res.settings, band_energy=band_energy_per_step(res.trajectory, n_bands),
            dataset=spec.train.dataset, noise_sha256=digest))
    return out


def image_grid(images: torch.Tensor, nrow: int = 4, scale: int = 8, pad: int = 1):
    """(H', W', 3) uint8 numpy grid of images in [-1, 1] (clamped), upscaled by ``scale``
    with nearest-neighbour so 8x8 pixels stay visible."""
    import numpy as np

    x = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    n, c, h, w = x.shape
    if c == 1:
        x = x.expand(n, 3, h, w)
    elif c != 3:
        x = x[:, :1].expand(n, 3, h, w)
    x = x.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    hs, ws = h * scale, w * scale
    ncol = min(nrow, n)
    rows = math.ceil(n / ncol)
    grid = torch.full((3, rows * (hs + pad) + pad, ncol * (ws + pad) + pad), 255,
                      dtype=torch.uint8)
    for i in range(n):
        r, col = divmod(i, ncol)
        y0, x0 = pad + r * (hs + pad), pad + col * (ws + pad)
        grid[:, y0:y0 + hs, x0:x0 + ws] = x[i]
    return np.ascontiguousarray(grid.permute(1, 2, 0).numpy())
