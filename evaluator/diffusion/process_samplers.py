"""DDPM, DDIM and DPM-Solver++(2M) for forward processes diagonal in the Fourier basis.

For x_t = A_t x0 + S_t eps with A, S per frequency (:class:`evaluator.diffusion.processes.
DiagonalProcess`) every frequency is a scalar VP-like process, so each sampler's scalar
update holds bin by bin in the orthonormal rfft2 basis:

- DDPM ancestral (Ho et al. 2020): the Gaussian posterior q(x_s | x_t, x0) with
  a = A_t/A_s, b^2 = S_t^2 - a^2 S_s^2: mean a S_s^2/S_t^2 x_t + A_s b^2/S_t^2 x0,
  variance b^2 S_s^2/S_t^2 (diffusers' ``fixed_small``).
- DDIM, eta = 0 (Song et al. 2021): x_s = A_s x0 + S_s (x_t - A_t x0)/S_t.
- DPM-Solver++(2M) (Lu et al. 2022), midpoint form, with lambda = log(A/S) per bin.

On the isotropic process these are diffusers' DDPMScheduler, DDIMScheduler and
DPMSolverMultistepScheduler as :mod:`evaluator.diffusion.samplers` configures them: trailing
timesteps, DDIM's previous timestep t - T//steps, DPM-Solver's first-order first and last
steps, the same clip policy on x0-hat (every update uses the clipped x0-hat and the
epsilon it implies), DDPM noise drawn from the step generator whenever t > 0, in the same
order and shape. The state is kept in float64; the model sees float32.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from evaluator.diffusion.processes import DiagonalProcess, x0_eps_spectra

FOLLOWERS = {"ddpm": "DDPM ancestral", "ddim": "DDIM (eta=0)",
             "dpmsolver++": "DPM-Solver++(2M)"}


def trailing_timesteps(timesteps: int, steps: int) -> list[int]:
    """diffusers' ``timestep_spacing="trailing"`` timesteps, decreasing."""
    ts = np.arange(timesteps, 0, -timesteps / steps).round().copy().astype(np.int64) - 1
    return [int(t) for t in ts]


def _rfft(x: torch.Tensor) -> torch.Tensor:
    return torch.fft.rfft2(x, norm="ortho")                    # (B, C, H, W') complex128


def _irfft(z: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    return torch.fft.irfft2(z, s=hw, norm="ortho")             # (B, C, H, W) float64


def _coefs(proc: DiagonalProcess, t: int, device: torch.device) -> tuple:
    a, s = proc.coefs(torch.tensor([t]))
    return a.to(device), s.to(device)


class _Stepper:
    """One batch's per-frequency update rule; ``step`` maps (x_t, clipped x0-hat) to x_s."""

    def __init__(self, name: str, proc: DiagonalProcess, ts: list[int], steps: int,
                 gen: torch.Generator | None, shape: tuple[int, ...],
                 noise_dtype: torch.dtype) -> None:
        self.name, self.proc, self.ts, self.gen = name, proc, ts, gen
        # diffusers draws DDPM noise shaped and typed like the model output
        self.shape, self.noise_dtype = shape, noise_dtype
        self.jump = proc.timesteps // steps                   # DDIM's prev = t - T//steps
        self.history: list[tuple[torch.Tensor, torch.Tensor]] = []   # DPM: (X0, lambda_t)

    def prev(self, i: int) -> int:
        if self.name == "ddim":
            return max(self.ts[i] - self.jump, -1)
        return self.ts[i + 1] if i + 1 < len(self.ts) else -1

    def step(self, i: int, xf: torch.Tensor, x0f: torch.Tensor) -> torch.Tensor:
        """Spectrum of x_s from those of x_t and of the clipped x0-hat, (B, C, H, W')."""
        t, s_t = self.ts[i], self.prev(i)
        at, st = _coefs(self.proc, t, xf.device)            # (1, 1, H, W'): one t per batch
        as_, ss = _coefs(self.proc, s_t, xf.device)
        if self.name == "ddim":
            return as_ * x0f + ss * (xf - at * x0f) / st
        if self.name == "ddpm":
            return self._ddpm(t, xf, x0f, at, st, as_, ss)
        return self._dpm(i, xf, x0f, at, st, as_, ss)

    def _ddpm(self, t: int, xf: torch.Tensor, x0f: torch.Tensor,
              at: torch.Tensor, st: torch.Tensor, as_: torch.Tensor,
              ss: torch.Tensor) -> torch.Tensor:
        a = at / as_
        b2 = st * st - a * a * ss * ss                        # transition variance
        mean = (a * ss * ss / (st * st)) * xf + (as_ * b2 / (st * st)) * x0f
        if t <= 0:                                            # diffusers adds noise iff t > 0
            return mean
        var = (b2 * ss * ss / (st * st)).clamp(min=1e-20)      # diffusers' fixed_small clamp
        noise = torch.randn(self.shape, generator=self.gen, dtype=self.noise_dtype)
        return mean + var.sqrt() * _rfft(noise.to(xf.device, torch.float64))

    def _dpm(self, i: int, xf: torch.Tensor, x0f: torch.Tensor, at: torch.Tensor,
             st: torch.Tensor, as_: torch.Tensor, ss: torch.Tensor) -> torch.Tensor:
        lam_t = torch.log(at) - torch.log(st)
        self.history.append((x0f, lam_t))
        if self.prev(i) < 0:                                  # final step to sigma = 0: x0
            return x0f
        lam_s = torch.log(as_) - torch.log(ss)
        h = lam_s - lam_t
        phi = as_ * (torch.exp(-h) - 1.0)
        base = (ss / st) * xf - phi * x0f
        if len(self.history) < 2:                             # first step: first order
            return base
        m1, lam_1 = self.history[-2]
        r0 = (lam_t - lam_1) / h
        return base - 0.5 * phi * (x0f - m1) / r0


def process_batch(entry: Any, model: Any, x: torch.Tensor, proc: DiagonalProcess,
                  steps: int, prediction: str, clip: str, step_gen: torch.Generator | None,
                  callback: Callable | None) -> tuple[torch.Tensor, int, dict]:
    """Run sampler ``entry.name`` (one of :data:`FOLLOWERS`) on ``proc`` from white noise ``x``.

    Same contract as :func:`evaluator.diffusion.samplers._scheduler_batch`: returns
    (x, model calls, settings), and ``callback`` gets ``{"x", "i", "sigma", "denoised"}``
    after every model call (sigma of the base schedule; x0-hat before clipping).
    """
    from evaluator.diffusion.ksampling import clip_x0
    from evaluator.diffusion.schedules import betas_sha256

    name, hw = entry.name, x.shape[-2:]
    ts = trailing_timesteps(proc.timesteps, steps)
    out_dtype, b = x.dtype, x.shape[0]
    stepper = _Stepper(name, proc, ts, steps, step_gen, tuple(x.shape), out_dtype)
    xf = _rfft(x.double()) * proc.prior_scale().to(x.device)   # state: (B, C, H, W') c128
    for i in range(len(ts)):
        x = _irfft(xf, hw)                                       # (B, C, H, W) float64
        tb = torch.full((b,), ts[i], dtype=torch.long, device=x.device)
        out = model(x.to(out_dtype), tb)
        a, s = _coefs(proc, ts[i], x.device)
        x0f = x0_eps_spectra(xf, _rfft(out.double()), a, s, prediction)[0]
        x0 = _irfft(x0f, hw)
        if callback is not None:
            abar = proc.abar(tb)
            callback({"x": x.to(out_dtype), "i": i, "sigma": ((1 - abar) / abar).sqrt(),
                      "denoised": x0.to(out_dtype)})
        if clip != "none":
            x0f = _rfft(clip_x0(x0, clip))
        xf = stepper.step(i, xf, x0f)
    x = _irfft(xf, hw)
    info = {"scheduler": f"per-frequency {FOLLOWERS[name]} (evaluator.diffusion.process_samplers)",
            "scheduler_config": {"process": proc.record(), "timesteps": ts,
                                 "schedule": proc.kind, "prediction_type": prediction},
            "trained_betas_sha256": betas_sha256(proc)}
    return x.to(out_dtype), len(ts), info
