"""Side-by-side sampling of trained runs and per-step statistics of their trajectories.

The research question behind the comparison view: does a frequency-native model settle the
high radial bands of its x0 prediction sooner (in fewer sampler steps) than a spatial one?
:func:`sample_side_by_side` samples several runs from the *same* initial noise
(:func:`evaluator.diffusion.samplers.initial_noise`, the seed the CLI uses) with the same sampler,
step count and clip policy, keeps x_t and x0-hat after every model call, and measures the
energy share of each radial band of x0-hat at every step (:func:`band_energy_per_step`,
built on :func:`evaluator.measure.spectral.band_energy_shares`).

Everything here is plain data (tensors, lists, dicts) so surfaces (the Gradio app, scripts)
only lay it out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from archspec.errors import UserError
from evaluator.measure.step_spectra import band_energy_per_step, default_bands
from evaluator.store.rundir import RunDir


@dataclass
class RunTrajectory:
    """One run's samples and trajectory from a side-by-side sampling.

    Attributes:
        run: the run folder; name: its spec name.
        images: (n, C, H, W) final samples in [-1, 1].
        x0: x0-hat after each model call, each (n, C, H, W); ``len(x0) == nfe``.
        xt: x_t the model saw at each call (before input scaling); ``len(xt) == nfe``.
        nfe: model calls per sample; ms_per_nfe: wall time per batched call.
        settings: the sampler settings (:func:`evaluator.diffusion.samplers.sample`).
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
        sampler, steps, seed, n: as in :func:`evaluator.diffusion.samplers.sample`.
        clip: x0 clipping policy for every run; default the first run's ``evaluate.clip``.
        device: where the models run.
        n_bands: radial bands for :func:`band_energy_per_step` (default
            :func:`default_bands` of the image size).
        models: optional cache ``{run path: (model, spec)}`` filled and reused (surfaces
            keep it so that sampling again does not reload checkpoints).

    Raises:
        UserError: no runs, a run without checkpoint, differing image shapes, a bad sampler.
    """
    from evaluator.diffusion.processes import process_schedule
    from evaluator.diffusion.samplers import check_sampler, initial_noise, sample
    from evaluator.store.checkpoints import load_trained

    if not run_paths:
        raise UserError("choose at least one run")
    check_sampler(sampler)
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


