"""Samplers: diffusers' schedulers driven by one loop, compared fairly.

Every sampler is a diffusers scheduler built from the training :class:`NoiseSchedule`
(``trained_betas``), with ``timestep_spacing="trailing"`` (Lin et al. 2024: the first step
starts at t = T-1), the model's ``prediction_type``, and the x0 clipping policy set the same
way for every scheduler:

- ``none``: no clipping (``thresholding=False``, ``clip_sample=False``).
- ``clip``: x0-hat clamped to [-1, 1] at every step. Schedulers with dynamic thresholding
  get ``thresholding=True, sample_max_value=1.0``: diffusers then computes
  s = clamp(quantile, 1, 1) = 1, i.e. exactly a clamp to [-1, 1]. Schedulers that only
  have ``clip_sample`` (Heun) get ``clip_sample=True, clip_sample_range=1.0``, the same
  operation.
- ``dynamic``: dynamic thresholding (Saharia et al. 2022, Imagen): s = max(1,
  quantile_0.995 |x0-hat|) per image, x0-hat clamped to [-s, s] and divided by s.
  ``sample_max_value`` is :data:`DYNAMIC_SAMPLE_MAX` (effectively no cap, as in the paper).

A scheduler that cannot apply a policy raises a :class:`UserError` naming the samplers that
can (``SAMPLERS.get(name).extra["clip"]`` lists the supported policies).

Seeds: the initial noise for ``n`` samples is drawn once on the CPU with
``torch.Generator().manual_seed(seed)`` and is the same for every sampler; stochastic
samplers get a second CPU generator seeded with ``seed + STEP_SEED_OFFSET``.

Importing this module is cheap (no torch or diffusers); they are imported when sampling.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from archspec.choices import CLIP_POLICIES
from archspec.errors import UserError
from blocks.registry import Entry, Registry

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from evaluator.diffusion import NoiseSchedule

SAMPLERS: Registry[Entry] = Registry("sampler")

PREDICTION_TYPES = {"epsilon": "epsilon", "x0": "sample", "v": "v_prediction"}
TIMESTEP_SPACING = "trailing"
DYNAMIC_RATIO = 0.995
DYNAMIC_SAMPLE_MAX = 1.0e4
STEP_SEED_OFFSET = 1_000_003


def _build(name: str, *args: Any, **kwargs: Any) -> Any:
    # late binding: build_scheduler is defined below the registrations
    return build_scheduler(name, *args, **kwargs)


def _register(name: str, scheduler: str, doc: str, *, kwargs: dict | None = None,
              clip_mode: str | None = "thresholding", stochastic: bool = False,
              predictions: tuple[str, ...] = ("epsilon", "x0", "v")) -> None:
    clips = {"thresholding": CLIP_POLICIES, "clip_sample": ("none", "clip"),
             None: ("none",)}[clip_mode]
    extra = {"scheduler": scheduler, "kwargs": dict(kwargs or {}), "clip_mode": clip_mode,
             "clip": clips, "stochastic": stochastic, "predictions": predictions}
    SAMPLERS.add(name, Entry(name=name, factory=partial(_build, name), doc=doc,
                             extra=extra))


_register("ddpm", "DDPMScheduler", "DDPM ancestral sampling (Ho et al. 2020), stochastic",
          kwargs={"variance_type": "fixed_small"}, stochastic=True)
_register("ddim", "DDIMScheduler", "DDIM, eta=0, deterministic (Song et al. 2021)",
          kwargs={"set_alpha_to_one": True})
_register("dpmsolver++", "DPMSolverMultistepScheduler",
          "DPM-Solver++ 2M, multistep 2nd order (Lu et al. 2022)",
          kwargs={"algorithm_type": "dpmsolver++", "solver_order": 2})
_register("sde-dpmsolver++", "DPMSolverMultistepScheduler",
          "SDE-DPM-Solver++ 2M, stochastic (Lu et al. 2022)",
          kwargs={"algorithm_type": "sde-dpmsolver++", "solver_order": 2}, stochastic=True)
_register("unipc", "UniPCMultistepScheduler", "UniPC bh2, order 2 (Zhao et al. 2023)",
          kwargs={"solver_order": 2, "solver_type": "bh2"})
_register("deis", "DEISMultistepScheduler", "DEIS multistep, order 2 (Zhang & Chen 2023)",
          kwargs={"solver_order": 2})
_register("euler", "EulerDiscreteScheduler",
          "Euler on the probability-flow ODE in sigma (Karras et al. 2022)", clip_mode=None)
_register("euler-ancestral", "EulerAncestralDiscreteScheduler",
          "Euler ancestral, stochastic (Karras et al. 2022)", clip_mode=None, stochastic=True)
_register("heun", "HeunDiscreteScheduler",
          "Heun 2nd order, 2 NFE per step but the last (Karras et al. 2022)",
          clip_mode="clip_sample")
_register("pndm", "PNDMScheduler", "PLMS (pseudo linear multistep, Liu et al. 2022)",
          kwargs={"skip_prk_steps": True}, clip_mode=None, predictions=("epsilon", "v"))
_register("lms", "LMSDiscreteScheduler", "linear multistep in sigma, order 4 (Karras 2022)",
          clip_mode=None)


def _clip_kwargs(entry: Entry, clip: str) -> dict:
    """Scheduler kwargs implementing the clip policy (see the module docstring)."""
    mode = entry.extra["clip_mode"]
    if clip not in CLIP_POLICIES:
        raise UserError(f"unknown clip policy {clip!r} (expected one of {CLIP_POLICIES})")
    if clip not in entry.extra["clip"]:
        able = [n for n, e in SAMPLERS.items() if clip in e.extra["clip"]]
        raise UserError(f"sampler {entry.name!r} ({entry.extra['scheduler']}) does not support "
                        f"clip policy {clip!r}; samplers that do: {', '.join(able)}; "
                        "or use clip: none")
    out: dict[str, Any] = {}
    if mode == "thresholding":
        out["thresholding"] = clip != "none"
        out["dynamic_thresholding_ratio"] = DYNAMIC_RATIO
        out["sample_max_value"] = DYNAMIC_SAMPLE_MAX if clip == "dynamic" else 1.0
    if mode == "clip_sample" or entry.extra["scheduler"] in ("DDPMScheduler", "DDIMScheduler"):
        out["clip_sample"] = clip == "clip" and mode == "clip_sample"
        out["clip_sample_range"] = 1.0
    return out


def build_scheduler(name: str, schedule: "NoiseSchedule", prediction: str, clip: str) -> Any:
    """A fresh diffusers scheduler for sampler ``name``, configured as described above."""
    import diffusers

    entry = SAMPLERS.get(name)
    if prediction not in PREDICTION_TYPES:
        raise UserError(f"unknown prediction {prediction!r} (expected one of "
                        f"{tuple(PREDICTION_TYPES)})")
    if prediction not in entry.extra["predictions"]:
        raise UserError(f"sampler {name!r} does not support prediction {prediction!r} "
                        f"(it supports {', '.join(entry.extra['predictions'])})")
    cls = getattr(diffusers, entry.extra["scheduler"])
    kwargs = {**schedule.diffusers_config(), **entry.extra["kwargs"],
              "prediction_type": PREDICTION_TYPES[prediction],
              "timestep_spacing": TIMESTEP_SPACING, **_clip_kwargs(entry, clip)}
    return cls(**kwargs)


@dataclass
class SampleResult:
    """Samples and how they were made.

    Attributes:
        images: (n, C, H, W) float32 in [-1, 1] (clamped at the end), on the CPU.
        nfe: model evaluations per sample (counted calls, e.g. Heun 2 per step).
        settings: sampler, steps, timestep spacing, clip policy, seed, prediction,
            scheduler class and config (betas as a sha256 instead of the list).
        ms_per_nfe: wall time of the sampling loops divided by the number of batched model
            calls (includes the scheduler's own work).
        trajectory: with ``return_trajectory``, x0-hat after each model call, each
            (n, C, H, W) on the CPU (before clipping by the scheduler).
        xt_trajectory: with ``return_trajectory``, the sample x_t the model saw at each
            call (before the scheduler's input scaling), each (n, C, H, W) on the CPU;
            ``len(xt_trajectory) == len(trajectory) == nfe``.
    """

    images: "torch.Tensor"
    nfe: int
    settings: dict[str, Any]
    ms_per_nfe: float
    trajectory: list["torch.Tensor"] | None = field(default=None)
    xt_trajectory: list["torch.Tensor"] | None = field(default=None)


def initial_noise(n: int, shape: tuple[int, int, int], seed: int) -> "torch.Tensor":
    """(n, C, H, W) standard normal noise from a CPU generator seeded with ``seed``."""
    import torch

    g = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn((n, *shape), generator=g, dtype=torch.float32)


def _settings(name: str, scheduler: Any, steps: int, clip: str, seed: int, prediction: str,
              batch_size: int) -> dict[str, Any]:
    config = {k: v for k, v in dict(scheduler.config).items() if not k.startswith("_")}
    betas = config.pop("trained_betas", None)
    betas_hash = hashlib.sha256(repr(list(betas or [])).encode()).hexdigest()[:16]
    return {"sampler": name, "steps": steps, "timestep_spacing": TIMESTEP_SPACING,
            "clip": clip, "seed": seed, "prediction": prediction, "batch_size": batch_size,
            "scheduler": type(scheduler).__name__, "scheduler_config": config,
            "trained_betas_sha256": betas_hash}


def sample(model: "nn.Module", schedule: "NoiseSchedule", *, sampler: str, steps: int, n: int,
           shape: tuple[int, int, int], seed: int,
           clip: Literal["none", "clip", "dynamic"] = "none", prediction: str = "epsilon",
           device: Any = "cpu", batch_size: int = 256, progress: bool = False,
           return_trajectory: bool = False) -> SampleResult:
    """Draw ``n`` samples with a registered sampler.

    Args:
        model: ``model(x_t, t) -> prediction``, x_t (B, C, H, W), t (B,) (the scheduler's
            timestep dtype: int64 for DDPM/DDIM/DPM-Solver, float32 for Euler-type).
        schedule: the training noise schedule.
        sampler: registered sampler name (``SAMPLERS.names()``).
        steps: scheduler steps (``set_timesteps(steps)``); NFE may differ (Heun).
        n: number of samples; shape: (C, H, W); seed: noise seed (see module docstring).
        clip: x0 clipping policy, applied the same way for every sampler.
        prediction: what the model predicts: epsilon | x0 | v.
        device: where the model runs; batch_size: samples per model call.
        progress: show a tqdm bar over batches and steps.
        return_trajectory: also return x0-hat after every model call.

    The model is put in eval mode for sampling and restored afterwards. Stochastic
    samplers draw from one generator across batches, so their samples depend on
    ``batch_size`` (recorded in ``settings``).
    """
    import torch

    if steps < 1 or n < 1 or batch_size < 1:
        raise UserError(f"steps, n and batch_size must be >= 1 (got {steps}, {n}, {batch_size})")
    entry = SAMPLERS.get(sampler)
    device = torch.device(device)
    noise = initial_noise(n, tuple(shape), seed)
    step_gen = (torch.Generator(device="cpu").manual_seed(int(seed) + STEP_SEED_OFFSET)
                if entry.extra["stochastic"] else None)
    was_training = model.training
    model.eval()
    images, trajectory, xts, nfe_counts, elapsed = [], [], [], [], 0.0
    try:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                sched = build_scheduler(sampler, schedule, prediction, clip)
                sched.set_timesteps(steps, device=device)
                x = noise[start:start + batch_size].to(device) * sched.init_noise_sigma
                t0 = time.perf_counter()
                x, calls, traj, xt = _run_batch(model, sched, x, schedule, prediction,
                                                step_gen, return_trajectory, progress)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                elapsed += time.perf_counter() - t0
                images.append(x.float().clamp(-1, 1).cpu())
                nfe_counts.append(calls)
                trajectory.append(traj)
                xts.append(xt)
    finally:
        model.train(was_training)
    steps_traj = xt_traj = None
    if return_trajectory:
        steps_traj = [torch.cat([b[i] for b in trajectory]) for i in range(nfe_counts[0])]
        xt_traj = [torch.cat([b[i] for b in xts]) for i in range(nfe_counts[0])]
    return SampleResult(
        images=torch.cat(images), nfe=nfe_counts[0],
        settings=_settings(sampler, sched, steps, clip, seed, prediction, batch_size),
        ms_per_nfe=1000.0 * elapsed / max(1, sum(nfe_counts)), trajectory=steps_traj,
        xt_trajectory=xt_traj)


def _run_batch(model: "nn.Module", sched: Any, x: "torch.Tensor", schedule: "NoiseSchedule",
               prediction: str, step_gen: "torch.Generator | None", keep: bool,
               progress: bool) -> tuple["torch.Tensor", int, list, list]:
    """The plain diffusers loop over ``sched.timesteps``.

    Returns (x, model calls, x0-hat per call, x_t per call); the lists are empty unless
    ``keep``.
    """
    step_kwargs = {"generator": step_gen} if step_gen is not None else {}
    timesteps = sched.timesteps
    if progress:
        from tqdm.auto import tqdm

        timesteps = tqdm(timesteps, desc="sampling", leave=False)
    calls, traj, xts = 0, [], []
    for t in timesteps:
        inp = sched.scale_model_input(x, t)                       # VP-scaled x_t, (B, C, H, W)
        tb = t.reshape(1).expand(x.shape[0]).to(x.device)          # (B,)
        out = model(inp, tb)
        calls += 1
        if keep:
            traj.append(schedule.to_x0_eps(inp, tb, out, prediction)[0].float().cpu())
            xts.append(x.float().cpu())
        x = sched.step(out, t, x, **step_kwargs).prev_sample
    return x, calls, traj, xts
