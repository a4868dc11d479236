"""Diffusion maths: noise schedules and prediction targets.

Conventions (those of diffusers, so that training and sampling agree):

- integer timesteps ``t`` in ``[0, T)``; ``abar_t = prod_{s<=t} (1 - beta_s)``;
- ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` (Ho et al. 2020);
- targets: ``epsilon``; ``x0``; ``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0``
  (Salimans & Ho 2022, "Progressive distillation");
- ``SNR(t) = abar_t / (1 - abar_t)``.

Per-frequency SNR and the losses live in :mod:`evaluator.diffusion.losses`.
"""
from __future__ import annotations

from typing import Literal

import torch

from archspec.choices import PREDICTIONS
from archspec.spec import DiffusionSpec


# --------------------------------------------------------------------------- schedules

def _betas(kind: str, timesteps: int) -> torch.Tensor:
    """(T,) float32 betas from diffusers' own schedule code, so sampling agrees bit for bit.

    ``linear``: Ho et al. 2020 (1e-4..0.02 at T=1000), scaled by 1000/T as in Nichol &
    Dhariwal 2021 so that shorter chains reach the same final noise level, capped at 0.999.
    ``cosine``: Nichol & Dhariwal 2021, diffusers' ``squaredcos_cap_v2``.
    """
    from diffusers import DDPMScheduler

    if kind == "cosine":
        return DDPMScheduler(num_train_timesteps=timesteps,
                             beta_schedule="squaredcos_cap_v2").betas
    scale = 1000.0 / timesteps
    betas = DDPMScheduler(num_train_timesteps=timesteps, beta_schedule="linear",
                          beta_start=scale * 1e-4, beta_end=scale * 0.02).betas
    return betas.clamp(max=0.999)


class NoiseSchedule:
    """A discrete variance-preserving noise schedule.

    Betas come from diffusers in float32 (the precision its schedulers store them in) so
    that the sampler's schedule is bit-identical; cumulative products are float64.

    Args:
        kind: ``"linear"`` (Ho et al. 2020, scaled by 1000/T) or ``"cosine"`` (Nichol &
            Dhariwal 2021, diffusers' ``squaredcos_cap_v2``).
        timesteps: number of training timesteps T.
    """

    def __init__(self, kind: Literal["linear", "cosine"], timesteps: int) -> None:
        if kind not in ("linear", "cosine"):
            raise ValueError(f"unknown noise schedule {kind!r} (expected 'linear' or 'cosine')")
        if timesteps < 2:
            raise ValueError(f"timesteps must be >= 2, got {timesteps}")
        self.kind = kind
        self.timesteps = int(timesteps)
        self.betas = _betas(kind, timesteps).float().double()               # (T,) float64
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)         # (T,) float64

    @classmethod
    def from_spec(cls, d: DiffusionSpec) -> "NoiseSchedule":
        return cls(d.schedule, d.timesteps)

    def __repr__(self) -> str:
        return f"NoiseSchedule(kind={self.kind!r}, timesteps={self.timesteps})"

    def abar(self, t: torch.Tensor) -> torch.Tensor:
        """abar_t for (B,) timesteps, float64 on t's device.

        Integer ``t`` indexes the table; float ``t`` interpolates sigma = sqrt((1-a)/a)
        linearly, as diffusers' Karras-style schedulers (Euler, Heun, ...) do.
        """
        t = torch.as_tensor(t)
        table = self.alphas_cumprod
        if not t.is_floating_point():
            return _to_device(table[t.long().cpu()], t.device)
        sig = ((1 - table) / table).sqrt()
        tc = t.detach().double().cpu().clamp(0, self.timesteps - 1)
        lo = tc.floor().long().clamp(max=self.timesteps - 2)
        frac = tc - lo
        s = sig[lo] * (1 - frac) + sig[lo + 1] * frac
        return _to_device(1.0 / (1.0 + s * s), t.device)

    def _coef(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sqrt(abar_t), sqrt(1-abar_t) shaped (B, 1, ..., 1) in like's dtype/device."""
        a = self.abar(torch.as_tensor(t, device=like.device))
        shape = (-1,) + (1,) * (like.dim() - 1)
        dtype = like.real.dtype if like.is_complex() else like.dtype
        return (a.sqrt().to(dtype).view(shape), (1 - a).sqrt().to(dtype).view(shape))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise."""
        sa, s1 = self._coef(t, x0)
        return sa * x0 + s1 * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
               prediction: str) -> torch.Tensor:
        """The regression target for ``prediction`` in epsilon | x0 | v."""
        check_prediction(prediction)
        if prediction == "epsilon":
            return noise
        if prediction == "x0":
            return x0
        sa, s1 = self._coef(t, x0)
        return sa * noise - s1 * x0

    def to_x0_eps(self, x_t: torch.Tensor, t: torch.Tensor, pred: torch.Tensor,
                  prediction: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Convert a model output to (x0_hat, eps_hat) given x_t."""
        check_prediction(prediction)
        sa, s1 = self._coef(t, x_t)
        if prediction == "epsilon":
            return (x_t - s1 * pred) / sa, pred
        if prediction == "x0":
            return pred, (x_t - sa * pred) / s1
        # v: since sa^2 + s1^2 = 1, x0 = sa x_t - s1 v and eps = s1 x_t + sa v.
        return sa * x_t - s1 * pred, s1 * x_t + sa * pred

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """SNR(t) = abar_t / (1 - abar_t), (B,) float64."""
        a = self.abar(t)
        return a / (1 - a)

    def diffusers_config(self) -> dict:
        """Scheduler kwargs that make any diffusers scheduler use exactly these betas."""
        return {"num_train_timesteps": self.timesteps,
                "trained_betas": self.betas.float().tolist()}


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    # MPS has no float64; everywhere else keep the table's precision.
    return x.float().to(device) if device.type == "mps" else x.to(device)


def check_prediction(prediction: str) -> None:
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r} (expected one of {PREDICTIONS})")


# --------------------------------------------------------------------------- per-frequency SNR


# --------------------------------------------------------------------------- losses


def betas_sha256(schedule: NoiseSchedule) -> str:
    """First 16 hex digits of the sha256 of the schedule's betas (recorded with samples)."""
    import hashlib

    betas = schedule.betas.float().tolist()
    return hashlib.sha256(repr(list(betas)).encode()).hexdigest()[:16]
