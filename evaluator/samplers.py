"""Samplers: diffusers' schedulers and k-diffusion-style functions, compared fairly.

A sampler is either a diffusers scheduler (registered with ``_register``) or a plain
function ``fn(model, x, sigmas, *, generator, progress) -> x`` in sigma (registered with
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
samplers draw from it with :func:`noise_like`).

Importing this module is cheap (no torch or diffusers); they are imported when sampling.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from archspec.choices import CLIP_POLICIES, PREDICTIONS
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

    entry = SAMPLERS.get(name)
    if entry.extra["kind"] != "scheduler":
        raise UserError(f"sampler {name!r} is a function sampler, not a diffusers scheduler")
    check_options(entry, clip, prediction)
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
           return_trajectory: bool = False) -> SampleResult:
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
    check_options(entry, clip, prediction)
    device = torch.device(device)
    noise = initial_noise(n, tuple(shape), seed)
    step_gen = (torch.Generator(device="cpu").manual_seed(int(seed) + STEP_SEED_OFFSET)
                if entry.extra["stochastic"] else None)
    run = _scheduler_batch if entry.extra["kind"] == "scheduler" else _function_batch
    run = _process_runner(entry, schedule, run)
    was_training = model.training
    model.eval()
    images, trajectory, xts, nfe_counts, elapsed = [], [], [], [], 0.0
    n_batches, bar = -(-n // batch_size), None
    if progress:
        bar = _CallsBar(f"{sampler} {steps} steps, {n_batches} batch(es)", n_batches)
    try:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                x = noise[start:start + batch_size].to(device)
                t0 = time.perf_counter()
                x, calls, traj, xt, info = run(entry, model, x, schedule, steps, prediction,
                                               clip, step_gen, return_trajectory, bar)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                elapsed += time.perf_counter() - t0
                images.append(x.float().clamp(-1, 1).cpu())
                nfe_counts.append(calls)
                trajectory.append(traj)
                xts.append(xt)
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    steps_traj = xt_traj = None
    if return_trajectory:
        steps_traj = [torch.cat([b[i] for b in trajectory]) for i in range(nfe_counts[0])]
        xt_traj = [torch.cat([b[i] for b in xts]) for i in range(nfe_counts[0])]
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


def check_process(entry: Entry, process: str) -> None:
    """Raise :class:`UserError` if sampler ``entry`` cannot follow forward ``process``."""
    if process != "isotropic" and not entry.extra.get("follows_process", False):
        able = [n for n, e in SAMPLERS.items() if e.extra.get("follows_process", False)]
        raise UserError(f"sampler {entry.name!r} cannot follow the {process!r} forward "
                        "process (it assumes isotropic white noise); samplers that can: "
                        f"{', '.join(able)}")


def _process_runner(entry: Entry, schedule: Any, run: Any) -> Any:
    """``run``, or the per-frequency sampler for a :class:`DiagonalProcess` schedule."""
    if not hasattr(schedule, "process_kind"):
        return run
    check_process(entry, schedule.process_kind)
    if not entry.extra.get("follows_process", False):
        return run           # an isotropic DiagonalProcess: the base schedule is the process
    from evaluator.process_samplers import process_batch

    return process_batch


def check_options(entry: Entry, clip: str, prediction: str) -> None:
    """Raise :class:`UserError` if sampler ``entry`` cannot apply ``clip`` or ``prediction``."""
    if clip not in CLIP_POLICIES:
        raise UserError(f"unknown clip policy {clip!r} (expected one of {CLIP_POLICIES})")
    if clip not in entry.extra["clip"]:
        able = [n for n, e in SAMPLERS.items() if clip in e.extra["clip"]]
        raise UserError(f"sampler {entry.name!r} ({entry.extra['scheduler']}) does not support "
                        f"clip policy {clip!r}; samplers that do: {', '.join(able)}; "
                        "or use clip: none")
    if prediction not in PREDICTION_TYPES:
        raise UserError(f"unknown prediction {prediction!r} (expected one of "
                        f"{tuple(PREDICTION_TYPES)})")
    if prediction not in entry.extra["predictions"]:
        raise UserError(f"sampler {entry.name!r} does not support prediction {prediction!r} "
                        f"(it supports {', '.join(entry.extra['predictions'])})")


def _betas_sha256(schedule: "NoiseSchedule") -> str:
    betas = schedule.betas.float().tolist()
    return hashlib.sha256(repr(list(betas)).encode()).hexdigest()[:16]


def _steps_bar(items: Any, progress: Any) -> Any:
    """``items``, ticking a progress bar per item.

    ``progress`` is False (no bar), True (a bar of its own) or the caller's shared tqdm
    bar: :func:`sample` passes one bar for every model call of every batch, whose total
    is set from the first batch's length.
    """
    if not progress:
        return items
    from tqdm.auto import tqdm

    if progress is True:
        return tqdm(items, desc="sampling", leave=False)
    return progress.wrap(items)


class _CallsBar:
    """One tqdm bar over the steps of every batch; its total is known after the first."""

    def __init__(self, desc: str, batches: int) -> None:
        from tqdm.auto import tqdm

        self.bar, self.batches_left = tqdm(total=None, desc=desc, unit="step", leave=False), batches

    def wrap(self, items: Any) -> Any:
        items = list(items)
        if self.bar.total is None:
            self.bar.total = len(items) * self.batches_left
            self.bar.refresh()
        self.batches_left -= 1
        for item in items:
            yield item
            self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


# ---- diffusers schedulers -------------------------------------------------------------------
def _scheduler_batch(entry: Entry, model: "nn.Module", x: "torch.Tensor",
                     schedule: "NoiseSchedule", steps: int, prediction: str, clip: str,
                     step_gen: "torch.Generator | None", keep: bool,
                     progress: bool) -> tuple["torch.Tensor", int, list, list, dict]:
    """The plain diffusers loop over ``sched.timesteps``, from noise ``x``.

    Returns (x, model calls, x0-hat per call, x_t per call, settings); the lists are
    empty unless ``keep``.
    """
    sched = build_scheduler(entry.name, schedule, prediction, clip)
    sched.set_timesteps(steps, device=x.device)
    x = x * sched.init_noise_sigma
    step_kwargs = dict(entry.extra["step_kwargs"])
    if step_gen is not None:
        step_kwargs["generator"] = step_gen
    calls, traj, xts = 0, [], []
    for t in _steps_bar(sched.timesteps, progress):
        inp = sched.scale_model_input(x, t)                       # VP-scaled x_t, (B, C, H, W)
        tb = t.reshape(1).expand(x.shape[0]).to(x.device)          # (B,)
        out = model(inp, tb)
        calls += 1
        if keep:
            traj.append(schedule.to_x0_eps(inp, tb, out, prediction)[0].float().cpu())
            xts.append(x.float().cpu())
        x = sched.step(out, t, x, **step_kwargs).prev_sample
    config = {k: v for k, v in dict(sched.config).items() if not k.startswith("_")}
    config.pop("trained_betas", None)
    info = {"scheduler": type(sched).__name__, "scheduler_config": config,
            "step_kwargs": dict(entry.extra["step_kwargs"]),
            "trained_betas_sha256": _betas_sha256(schedule)}
    return x, calls, traj, xts, info


# ---- function samplers (k-diffusion style) --------------------------------------------------
def clip_x0(x0: "torch.Tensor", policy: str) -> "torch.Tensor":
    """Apply clip ``policy`` to x0-hat (B, C, H, W), exactly as the schedulers do.

    ``clip`` clamps to [-1, 1]; ``dynamic`` is Imagen's thresholding (Saharia et al. 2022):
    s = clamp(quantile_0.995 |x0|, 1, DYNAMIC_SAMPLE_MAX) per image, then clamp(x0, -s, s)/s.
    """
    import torch

    if policy == "none":
        return x0
    if policy == "clip":
        return x0.clamp(-1.0, 1.0)
    flat = x0.float().reshape(x0.shape[0], -1)
    s = torch.quantile(flat.abs(), DYNAMIC_RATIO, dim=1).clamp(1.0, DYNAMIC_SAMPLE_MAX)
    s = s.view(-1, *([1] * (x0.dim() - 1)))
    return (torch.maximum(torch.minimum(x0.float(), s), -s) / s).to(x0.dtype)


def sigma_grid(schedule: "NoiseSchedule", steps: int) -> "torch.Tensor":
    """(steps + 1,) float64 sigmas, decreasing, ending in 0, on the trailing timesteps.

    sigma_t = sqrt((1 - abar_t) / abar_t) (the VE view of the VP schedule, Karras et al.
    2022) at t_i = round(T - i T / steps) - 1, the timesteps diffusers' trailing spacing
    gives, so a function sampler visits the same noise levels as the schedulers.
    """
    import numpy as np
    import torch

    T = schedule.timesteps
    ts = torch.from_numpy((np.round(np.arange(T, 0, -T / steps)) - 1).astype(np.int64))
    a = schedule.alphas_cumprod[ts]
    return torch.cat([((1 - a) / a).sqrt(), torch.zeros(1, dtype=torch.float64)])


class Denoiser:
    """D(x, sigma) -> clipped x0-hat, the k-diffusion view of a VP-trained model.

    x is the VE sample x0 + sigma * eps; the model sees the VP sample x / sqrt(1 + sigma^2)
    and the (float) timestep whose sigma is ``sigma`` (sigma linear in t between table
    entries, as :meth:`NoiseSchedule.abar` reads float timesteps). Counts its calls and,
    with ``keep``, records x0-hat before clipping and the x it was given.
    """

    def __init__(self, model: "nn.Module", schedule: "NoiseSchedule", prediction: str,
                 clip: str, keep: bool = False) -> None:
        table = schedule.alphas_cumprod
        self.table_sigmas = ((1 - table) / table).sqrt()        # (T,) increasing, float64
        self.model, self.prediction, self.clip, self.keep = model, prediction, clip, keep
        self.calls, self.x0s, self.xs = 0, [], []

    def timestep(self, sigma: "torch.Tensor") -> "torch.Tensor":
        """Float timesteps with sigma(t) = ``sigma`` (clamped to the table's range)."""
        import torch

        sig = self.table_sigmas
        s = sigma.detach().double().cpu().clamp(sig[0], sig[-1])
        hi = torch.searchsorted(sig, s).clamp(1, len(sig) - 1)
        frac = (s - sig[hi - 1]) / (sig[hi] - sig[hi - 1])
        return (hi - 1).double() + frac

    def __call__(self, x: "torch.Tensor", sigma: Any) -> "torch.Tensor":
        import torch

        b = x.shape[0]
        sig = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1).expand(b)   # (B,)
        scale = (1.0 / (1.0 + sig * sig)).sqrt()                  # sqrt(abar), (B,)
        sv = sig.to(x.device, x.dtype).view(-1, 1, 1, 1)
        sa = scale.to(x.device, x.dtype).view(-1, 1, 1, 1)
        inp = x * sa                                              # VP x_t, (B, C, H, W)
        out = self.model(inp, self.timestep(sig).float().to(x.device))
        self.calls += 1
        if self.prediction == "epsilon":
            x0 = x - sv * out
        elif self.prediction == "x0":
            x0 = out
        else:   # v = sa eps - s1 x0 with s1 = sigma * sa
            x0 = sa * inp - sv * sa * out
        if self.keep:
            self.x0s.append(x0.float().cpu())
            self.xs.append(x.float().cpu())
        return clip_x0(x0, self.clip)


def register_function(name: str, *, doc: str, stochastic: bool = False,
                      clip: tuple[str, ...] = CLIP_POLICIES) -> Any:
    """Decorator registering ``fn(model, x, sigmas, *, generator=None, progress=False) -> x``.

    The function gets a :class:`Denoiser` as ``model`` (``model(x, sigma)`` returns the
    clipped x0-hat), the VE start ``x = noise * sqrt(sigmas[0]^2 + 1)`` (the VP noise the
    schedulers start from), and :func:`sigma_grid` sigmas; it returns x at sigma = 0.
    Stochastic functions draw noise only from ``generator`` (a CPU generator, see
    :func:`noise_like`), so they get the same seeding as the schedulers. NFE is the number
    of denoiser calls.
    """
    def deco(fn: Any) -> Any:
        extra = {"kind": "function", "scheduler": f"function {fn.__module__}.{fn.__qualname__}",
                 "function": fn, "clip": tuple(clip), "stochastic": stochastic,
                 "predictions": tuple(PREDICTION_TYPES)}
        SAMPLERS.add(name, Entry(name=name, factory=fn, doc=doc, extra=extra))
        return fn
    return deco


def noise_like(x: "torch.Tensor", generator: "torch.Generator | None") -> "torch.Tensor":
    """Standard normal noise shaped like ``x``, drawn on the CPU from ``generator``."""
    import torch

    return torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.device, x.dtype)


def _function_batch(entry: Entry, model: "nn.Module", x: "torch.Tensor",
                    schedule: "NoiseSchedule", steps: int, prediction: str, clip: str,
                    step_gen: "torch.Generator | None", keep: bool,
                    progress: bool) -> tuple["torch.Tensor", int, list, list, dict]:
    """Run a registered function sampler from VP noise ``x`` (see :func:`register_function`)."""
    sigmas = sigma_grid(schedule, steps)
    den = Denoiser(model, schedule, prediction, clip, keep)
    x = x * float((sigmas[0] ** 2 + 1).sqrt())
    x = entry.extra["function"](den, x, sigmas, generator=step_gen, progress=progress)
    info = {"scheduler": entry.extra["scheduler"],
            "scheduler_config": {"sigmas": [round(float(s), 6) for s in sigmas]},
            "trained_betas_sha256": _betas_sha256(schedule)}
    return x, den.calls, den.x0s, den.xs, info


@register_function("euler-k", doc="Euler on the probability-flow ODE in sigma, as a function "
                   "(Karras et al. 2022, Alg. 1 without churn); on the trailing grid it is DDIM")
def euler_k(model: Any, x: "torch.Tensor", sigmas: "torch.Tensor", *, generator: Any = None,
            progress: bool = False) -> "torch.Tensor":
    for i in _steps_bar(range(len(sigmas) - 1), progress):
        s, s_next = sigmas[i], sigmas[i + 1]
        d = (x - model(x, s)) / float(s)                          # dx/dsigma, (B, C, H, W)
        x = x + d * float(s_next - s)
    return x


@register_function("heun-k", doc="Heun 2nd order in sigma, as a function (Karras et al. "
                   "2022, Alg. 1 without churn); Euler for the first and last steps, "
                   "2 NFE per step between; all clip policies")
def heun_k(model: Any, x: "torch.Tensor", sigmas: "torch.Tensor", *, generator: Any = None,
           progress: bool = False) -> "torch.Tensor":
    """Heun's method with an Euler first step.

    The trailing grid starts at the schedule's sigma_max (2e4 for the cosine schedule,
    alpha-bar ~ 2e-9); the trapezoid rule over that first jump averages the slope at 2e4
    with the slope at ~6 and its error scales with the step, so on a Gaussian toy data
    set it gives 10x the data variance at 5 steps. The Euler (= DDIM) step is exact in
    the limit sigma -> inf for the x0-hat it is given. Karras et al. avoid this with
    sigma_max = 80.
    """
    for i in _steps_bar(range(len(sigmas) - 1), progress):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        d = (x - model(x, s)) / s
        x_euler = x + d * (s_next - s)
        if i == 0 or s_next == 0:                                 # Euler: see the docstring
            x = x_euler
            continue
        d2 = (x_euler - model(x_euler, s_next)) / s_next
        x = x + (d + d2) / 2 * (s_next - s)
    return x
