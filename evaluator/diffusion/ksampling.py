"""Function samplers in the k-diffusion style: the maths only.

A function sampler is ``fn(model, x, sigmas, *, generator=None) -> x`` in sigma, where
``model`` is a :class:`Denoiser` (``model(x, sigma)`` returns the clipped x0-hat). They are
registered as samplers in :mod:`evaluator.diffusion.samplers`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from evaluator.diffusion.schedules import NoiseSchedule

# Imagen's dynamic thresholding (see :func:`clip_x0`), shared with the schedulers' config
DYNAMIC_RATIO = 0.995
DYNAMIC_SAMPLE_MAX = 1.0e4


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
    entries, as :meth:`NoiseSchedule.abar` reads float timesteps). Counts its calls and
    hands ``callback`` (see :func:`sample`) x0-hat before clipping and the x it was given.
    """

    def __init__(self, model: "nn.Module", schedule: "NoiseSchedule", prediction: str,
                 clip: str, callback: Callable | None = None) -> None:
        table = schedule.alphas_cumprod
        self.table_sigmas = ((1 - table) / table).sqrt()        # (T,) increasing, float64
        self.model, self.prediction, self.clip = model, prediction, clip
        self.callback, self.calls = callback, 0

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
        if self.callback is not None:
            self.callback({"x": x, "i": self.calls - 1, "sigma": sig, "denoised": x0})
        return clip_x0(x0, self.clip)


def noise_like(x: "torch.Tensor", generator: "torch.Generator | None") -> "torch.Tensor":
    """Standard normal noise shaped like ``x``, drawn on the CPU from ``generator``."""
    import torch

    return torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.device, x.dtype)


def euler_k(model: Any, x: "torch.Tensor", sigmas: "torch.Tensor", *,
            generator: Any = None) -> "torch.Tensor":
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        d = (x - model(x, s)) / float(s)                          # dx/dsigma, (B, C, H, W)
        x = x + d * float(s_next - s)
    return x


def heun_k(model: Any, x: "torch.Tensor", sigmas: "torch.Tensor", *,
           generator: Any = None) -> "torch.Tensor":
    """Heun's method with an Euler first step.

    The trailing grid starts at the schedule's sigma_max (2e4 for the cosine schedule,
    alpha-bar ~ 2e-9); the trapezoid rule over that first jump averages the slope at 2e4
    with the slope at ~6 and its error scales with the step, so on a Gaussian toy data
    set it gives 10x the data variance at 5 steps. The Euler (= DDIM) step is exact in
    the limit sigma -> inf for the x0-hat it is given. Karras et al. avoid this with
    sigma_max = 80.
    """
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        d = (x - model(x, s)) / s
        x_euler = x + d * (s_next - s)
        if i == 0 or s_next == 0:                                 # Euler: see the docstring
            x = x_euler
            continue
        d2 = (x_euler - model(x_euler, s_next)) / s_next
        x = x + (d + d2) / 2 * (s_next - s)
    return x
