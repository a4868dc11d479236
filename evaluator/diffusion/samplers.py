"""Samplers: diffusers' schedulers and k-diffusion-style functions, compared fairly.

A sampler is either a diffusers scheduler (registered with ``_register``) or a plain
function ``fn(model, x, sigmas, *, generator) -> x`` in sigma (registered with
:func:`register_function`; ``model`` is a :class:`Denoiser` returning the clipped x0-hat).

Every scheduler sampler is built from the training :class:`NoiseSchedule`
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

Consistency: every sampler that clips updates from the clipped x0-hat alone, i.e. with the
epsilon it implies. diffusers' DDIM needs ``use_clipped_model_output=True`` for that (its
default keeps the model's raw epsilon in the direction term); DDPM's posterior mean,
DPM-Solver++/SDE-DPM-Solver++/UniPC (x0 form), DEIS (epsilon re-derived from the
thresholded x0) and Heun (derivative from x0-hat) already do. Function samplers get the
clipped x0-hat from the denoiser, so they cannot mix the two.

A sampler that cannot apply a policy raises a :class:`UserError` naming the samplers that
can (``SAMPLERS.get(name).extra["clip"]`` lists the supported policies).

Seeds: the initial noise for ``n`` samples is drawn once on the CPU with
``torch.Generator().manual_seed(seed)`` and is the same for every sampler; stochastic
samplers get a second CPU generator seeded with ``seed + STEP_SEED_OFFSET`` (function
samplers draw from it with :func:`evaluator.diffusion.ksampling.noise_like`).

Importing this module is cheap (no torch or diffusers); they are imported when sampling.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Literal

from archspec.choices import CLIP_POLICIES, PREDICTIONS
from archspec.errors import Problem, UserError
from blocks.registry import Entry, Registry, RegistryError
from evaluator.diffusion.callbacks import CallsBar, Trajectory, fan_out
from evaluator.diffusion.ksampling import (DYNAMIC_RATIO, DYNAMIC_SAMPLE_MAX, Denoiser, euler_k,
                                          heun_k, sigma_grid)

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from evaluator.diffusion.schedules import NoiseSchedule

SAMPLERS: Registry[Entry] = Registry("sampler")

PREDICTION_TYPES = {"epsilon": "epsilon", "x0": "sample", "v": "v_prediction"}
TIMESTEP_SPACING = "trailing"
STEP_SEED_OFFSET = 1_000_003


def _build(name: str, *args: Any, **kwargs: Any) -> Any:
    # late binding: build_scheduler is defined below the registrations
    return build_scheduler(name, *args, **kwargs)


def _register(name: str, scheduler: str, doc: str, *, kwargs: dict | None = None,
              clip_mode: str | None = "thresholding", stochastic: bool = False,
              predictions: tuple[str, ...] = PREDICTIONS,
              step_kwargs: dict | None = None, follows_process: bool = False) -> None:
    clips = {"thresholding": CLIP_POLICIES, "clip_sample": ("none", "clip"),
             None: ("none",)}[clip_mode]
    extra = {"kind": "scheduler", "scheduler": scheduler, "kwargs": dict(kwargs or {}),
             "clip_mode": clip_mode, "clip": clips, "stochastic": stochastic,
             "predictions": predictions, "step_kwargs": dict(step_kwargs or {}),
             "follows_process": follows_process}
    SAMPLERS.add(name, Entry(name=name, factory=partial(_build, name), doc=doc,
                             extra=extra))


_register("ddpm", "DDPMScheduler", "DDPM ancestral sampling (Ho et al. 2020), stochastic",
          kwargs={"variance_type": "fixed_small"}, stochastic=True, follows_process=True)
# use_clipped_model_output: diffusers' DDIM clips x0-hat but by default keeps the model's raw
# eps for the direction term, so the step mixes two predictions that disagree (and more steps
# pile up more of it). Re-deriving eps from the clipped x0-hat (as GLIDE does) keeps the
# update on one prediction, as every other scheduler here already does.
_register("ddim", "DDIMScheduler", "DDIM, eta=0, deterministic (Song et al. 2021)",
          kwargs={"set_alpha_to_one": True}, step_kwargs={"use_clipped_model_output": True},
          follows_process=True)
_register("dpmsolver++", "DPMSolverMultistepScheduler",
          "DPM-Solver++ 2M, multistep 2nd order (Lu et al. 2022)",
          kwargs={"algorithm_type": "dpmsolver++", "solver_order": 2}, follows_process=True)
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
          "Heun 2nd order, 2 NFE per step but the last (Karras et al. 2022); its correction "
          "over the first jump from the cosine schedule's sigma_max (2e4) is far off: "
          "prefer heun-k",
          clip_mode="clip_sample")
_register("pndm", "PNDMScheduler", "PLMS (pseudo linear multistep, Liu et al. 2022)",
          kwargs={"skip_prk_steps": True}, clip_mode=None, predictions=("epsilon", "v"))
_register("lms", "LMSDiscreteScheduler", "linear multistep in sigma, order 4 (Karras 2022)",
          clip_mode=None)


def _clip_kwargs(entry: Entry, clip: str) -> dict:
    """Scheduler kwargs implementing the clip policy (see the module docstring)."""
    mode = entry.extra["clip_mode"]
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

    entry = check_sampler(name, clip, prediction)
    if entry.extra["kind"] != "scheduler":
        raise UserError(f"sampler {name!r} is a function sampler, not a diffusers scheduler")
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


def sample(model: "nn.Module", schedule: "NoiseSchedule", *, sampler: str, steps: int, n: int,
           shape: tuple[int, int, int], seed: int,
           clip: Literal["none", "clip", "dynamic"] = "none", prediction: str = "epsilon",
           device: Any = "cpu", batch_size: int = 256, progress: bool = False,
           return_trajectory: bool = False,
           callback: Callable[[dict[str, Any]], None] | None = None) -> SampleResult:
    """Draw ``n`` samples with a registered sampler (a scheduler or a function).

    Args:
        model: ``model(x_t, t) -> prediction``, x_t (B, C, H, W), t (B,) (the scheduler's
            timestep dtype: int64 for DDPM/DDIM/DPM-Solver, float32 for Euler-type and
            function samplers).
        schedule: the training noise schedule.
        sampler: registered sampler name (``SAMPLERS.names()``).
        steps: sampler steps (``set_timesteps(steps)``, or ``steps + 1`` sigmas for a
            function sampler); NFE may differ (Heun).
        n: number of samples; shape: (C, H, W); seed: noise seed (see module docstring).
        clip: x0 clipping policy, applied the same way for every sampler.
        prediction: what the model predicts: epsilon | x0 | v.
        device: where the model runs; batch_size: samples per model call.
        progress: show a tqdm bar over the model calls of every batch.
        return_trajectory: also return x0-hat after every model call.
        callback: called after every model call with ``{"x", "i", "sigma", "denoised"}``
            (k-diffusion's convention): the sample the model saw, the call's index in the
            batch, its noise level and x0-hat before clipping. Progress and trajectories
            are such callbacks; the sampling maths only calls them.

    The model is put in eval mode for sampling and restored afterwards. Stochastic
    samplers draw from one generator across batches, so their samples depend on
    ``batch_size`` (recorded in ``settings``).
    """
    import torch

    if steps < 1 or n < 1 or batch_size < 1:
        raise UserError(f"steps, n and batch_size must be >= 1 (got {steps}, {n}, {batch_size})")
    entry = check_sampler(sampler, clip, prediction)
    device = torch.device(device)
    noise = initial_noise(n, tuple(shape), seed)
    step_gen = (torch.Generator(device="cpu").manual_seed(int(seed) + STEP_SEED_OFFSET)
                if entry.extra["stochastic"] else None)
    run = _scheduler_batch if entry.extra["kind"] == "scheduler" else _function_batch
    run = _process_runner(entry, schedule, run)
    was_training = model.training
    model.eval()
    images, nfe_counts, elapsed = [], [], 0.0
    n_batches = -(-n // batch_size)
    record = Trajectory() if return_trajectory else None
    bar = CallsBar(f"{sampler} {steps} steps, {n_batches} batch(es)", n_batches) \
        if progress else None
    listeners = [c for c in (record, bar, callback) if c is not None]
    try:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                x = noise[start:start + batch_size].to(device)
                t0 = time.perf_counter()
                x, calls, info = run(entry, model, x, schedule, steps, prediction, clip,
                                     step_gen, fan_out(listeners))
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                elapsed += time.perf_counter() - t0
                images.append(x.float().clamp(-1, 1).cpu())
                nfe_counts.append(calls)
                for c in (record, bar):
                    if c is not None:
                        c.batch_done(calls)
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    steps_traj, xt_traj = record.stacked(nfe_counts[0]) if record else (None, None)
    settings = {"sampler": sampler, "steps": steps, "timestep_spacing": TIMESTEP_SPACING,
                "clip": clip, "seed": seed, "prediction": prediction,
                "batch_size": batch_size, **info}
    return SampleResult(
        images=torch.cat(images), nfe=nfe_counts[0], settings=settings,
        ms_per_nfe=1000.0 * elapsed / max(1, sum(nfe_counts)), trajectory=steps_traj,
        xt_trajectory=xt_traj)


def process_kind(schedule: Any) -> str:
    """The forward process a schedule stands for (``isotropic`` for a plain one)."""
    return getattr(schedule, "process_kind", "isotropic")


def process_problem(entry: Entry, process: str) -> str | None:
    """Why sampler ``entry`` cannot follow forward ``process``, or None when it can."""
    if process == "isotropic" or entry.extra.get("follows_process", False):
        return None
    able = [n for n, e in SAMPLERS.items() if e.extra.get("follows_process", False)]
    return (f"sampler {entry.name!r} cannot follow the {process!r} forward process (it "
            f"assumes isotropic white noise; diffusion.process); samplers that can: "
            f"{', '.join(able)}")


def check_process(entry: Entry, process: str) -> None:
    """Raise :class:`UserError` if sampler ``entry`` cannot follow forward ``process``."""
    why = process_problem(entry, process)
    if why:
        raise UserError(why)


def _process_runner(entry: Entry, schedule: Any, run: Any) -> Any:
    """``run``, or the per-frequency sampler for a :class:`DiagonalProcess` schedule."""
    if not hasattr(schedule, "process_kind"):
        return run
    check_process(entry, schedule.process_kind)
    if not entry.extra.get("follows_process", False):
        return run           # an isotropic DiagonalProcess: the base schedule is the process
    from evaluator.diffusion.process_samplers import process_batch

    return process_batch


def sampler_problems(name: str, clip: str | None = None, prediction: str | None = None,
                     process: str | None = None) -> list[str]:
    """Every reason sampler ``name`` cannot run with ``clip``, ``prediction`` and forward
    ``process`` (None: not checked), one message each; ``[]`` when it can. The one home of
    this check: sampling, spec validation, budgets, side by side and the CLI all call it."""
    try:
        entry = SAMPLERS.get(name)
    except RegistryError as e:
        return [f"{e}; known: {', '.join(SAMPLERS.names())}"]
    out = []
    if clip is not None and clip not in CLIP_POLICIES:
        out.append(f"unknown clip policy {clip!r} (expected one of {CLIP_POLICIES})")
    elif clip is not None and clip not in entry.extra["clip"]:
        able = [n for n, e in SAMPLERS.items() if clip in e.extra["clip"]]
        out.append(f"sampler {name!r} cannot apply clip policy {clip!r} (it supports "
                   f"{', '.join(entry.extra['clip'])}); samplers that do: {', '.join(able)}; "
                   "or use clip: none")
    if prediction is not None and prediction not in PREDICTION_TYPES:
        out.append(f"unknown prediction {prediction!r} (expected one of "
                   f"{tuple(PREDICTION_TYPES)})")
    elif prediction is not None and prediction not in entry.extra["predictions"]:
        out.append(f"sampler {name!r} does not support prediction {prediction!r} "
                   f"(it supports {', '.join(entry.extra['predictions'])})")
    why = process_problem(entry, process) if process is not None else None
    return out + ([why] if why else [])


def check_sampler(name: str, clip: str | None = None, prediction: str | None = None,
                  source: str | None = None) -> Entry:
    """Sampler ``name``'s registry entry; :class:`UserError` with every
    :func:`sampler_problems` line otherwise."""
    problems = sampler_problems(name, clip, prediction)
    if problems:
        raise UserError([Problem("", m) for m in problems], source)
    return SAMPLERS.get(name)


# ---- diffusers schedulers -------------------------------------------------------------------
def _scheduler_batch(entry: Entry, model: "nn.Module", x: "torch.Tensor",
                     schedule: "NoiseSchedule", steps: int, prediction: str, clip: str,
                     step_gen: "torch.Generator | None",
                     callback: Callable | None) -> tuple["torch.Tensor", int, dict]:
    """The plain diffusers loop over ``sched.timesteps``, from noise ``x``.

    Returns (x, model calls, settings); ``callback`` (see :func:`sample`) gets the x_t
    before the scheduler's input scaling, and ``sigma`` of the call's timestep.
    """
    from evaluator.diffusion.schedules import betas_sha256

    sched = build_scheduler(entry.name, schedule, prediction, clip)
    sched.set_timesteps(steps, device=x.device)
    x = x * sched.init_noise_sigma
    step_kwargs = dict(entry.extra["step_kwargs"])
    if step_gen is not None:
        step_kwargs["generator"] = step_gen
    calls = 0
    for t in sched.timesteps:
        inp = sched.scale_model_input(x, t)                       # VP-scaled x_t, (B, C, H, W)
        tb = t.reshape(1).expand(x.shape[0]).to(x.device)          # (B,)
        out = model(inp, tb)
        calls += 1
        if callback is not None:
            abar = schedule.abar(tb)
            callback({"x": x, "i": calls - 1, "sigma": ((1 - abar) / abar).sqrt(),
                      "denoised": schedule.to_x0_eps(inp, tb, out, prediction)[0]})
        x = sched.step(out, t, x, **step_kwargs).prev_sample
    config = {k: v for k, v in dict(sched.config).items() if not k.startswith("_")}
    config.pop("trained_betas", None)
    info = {"scheduler": type(sched).__name__, "scheduler_config": config,
            "step_kwargs": dict(entry.extra["step_kwargs"]),
            "trained_betas_sha256": betas_sha256(schedule)}
    return x, calls, info


# ---- function samplers (k-diffusion style) --------------------------------------------------
def register_function(name: str, *, doc: str, stochastic: bool = False,
                      clip: tuple[str, ...] = CLIP_POLICIES) -> Any:
    """Decorator registering ``fn(model, x, sigmas, *, generator=None) -> x``.

    The function gets a :class:`Denoiser` as ``model`` (``model(x, sigma)`` returns the
    clipped x0-hat), the VE start ``x = noise * sqrt(sigmas[0]^2 + 1)`` (the VP noise the
    schedulers start from), and :func:`sigma_grid` sigmas; it returns x at sigma = 0.
    Stochastic functions draw noise only from ``generator`` (a CPU generator, see
    :func:`evaluator.diffusion.ksampling.noise_like`), so they get the same seeding as the
    schedulers. NFE is the number of denoiser calls.
    """
    def deco(fn: Any) -> Any:
        extra = {"kind": "function", "scheduler": f"function {fn.__module__}.{fn.__qualname__}",
                 "function": fn, "clip": tuple(clip), "stochastic": stochastic,
                 "predictions": tuple(PREDICTION_TYPES)}
        SAMPLERS.add(name, Entry(name=name, factory=fn, doc=doc, extra=extra))
        return fn
    return deco


def _function_batch(entry: Entry, model: "nn.Module", x: "torch.Tensor",
                    schedule: "NoiseSchedule", steps: int, prediction: str, clip: str,
                    step_gen: "torch.Generator | None",
                    callback: Callable | None) -> tuple["torch.Tensor", int, dict]:
    """Run a registered function sampler from VP noise ``x`` (see :func:`register_function`)."""
    from evaluator.diffusion.schedules import betas_sha256

    sigmas = sigma_grid(schedule, steps)
    den = Denoiser(model, schedule, prediction, clip, callback)
    x = x * float((sigmas[0] ** 2 + 1).sqrt())
    x = entry.extra["function"](den, x, sigmas, generator=step_gen)
    info = {"scheduler": entry.extra["scheduler"],
            "scheduler_config": {"sigmas": [round(float(s), 6) for s in sigmas]},
            "trained_betas_sha256": betas_sha256(schedule)}
    return x, den.calls, info


# The built-in function samplers (their maths: :mod:`evaluator.diffusion.ksampling`).
register_function(
    "euler-k", doc="Euler on the probability-flow ODE in sigma, as a function (Karras et al. "
    "2022, Alg. 1 without churn); on the trailing grid it is DDIM")(euler_k)
register_function(
    "heun-k", doc="Heun 2nd order in sigma, as a function (Karras et al. 2022, Alg. 1 "
    "without churn); Euler for the first and last steps, 2 NFE per step between; all clip "
    "policies")(heun_k)
