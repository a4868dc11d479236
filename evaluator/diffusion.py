"""Diffusion maths: noise schedules, prediction targets, per-frequency SNR and losses.

Conventions (those of diffusers, so that training and sampling agree):

- integer timesteps ``t`` in ``[0, T)``; ``abar_t = prod_{s<=t} (1 - beta_s)``;
- ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` (Ho et al. 2020);
- targets: ``epsilon``; ``x0``; ``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0``
  (Salimans & Ho 2022, "Progressive distillation");
- ``SNR(t) = abar_t / (1 - abar_t)``.

Fourier quantities use the orthonormal ``rfft2`` over the last two dims (layout
(H, W//2+1)). A real image's full spectrum is Hermitian, so each rfft2 column other than
column 0 (and column W/2 for even W) stands for two bins: it gets multiplicity 2 in every
sum so that Parseval holds exactly and uniform Fourier MSE equals pixel MSE.
"""
from __future__ import annotations

from typing import Literal

import torch

from archspec.choices import PREDICTIONS
from archspec.spec import DiffusionSpec, LossSpec
from blocks import fourier



# --------------------------------------------------------------------------- frequency grid

def rfft_multiplicity(h: int, w: int) -> torch.Tensor:
    """(H, W//2+1) float32 multiplicity (1 or 2); see :func:`blocks.fourier.rfft_multiplicity`."""
    return fourier.rfft_multiplicity(h, w, dtype=torch.float32)


def radial_frequency(h: int, w: int) -> torch.Tensor:
    """(H, W//2+1) float32: |k| in cycles per image (``min(H, W)`` times cycles per pixel)."""
    return (fourier.frequency_radius(h, w) * min(h, w)).float()


radial_bins = fourier.radial_bins


def radial_profile(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x[..., H, W']`` over each radial band, weighted by rfft multiplicity.

    Args:
        x: (..., H, W//2+1) real values on the rfft2 grid of an (H, W) image, W even.

    Returns:
        (..., n_bands) with band b = mean over full-spectrum bins with round(|k|) == b.
    """
    h, wr = x.shape[-2:]
    w = 2 * (wr - 1)
    bins = radial_bins(h, w).to(x.device).flatten()
    m = rfft_multiplicity(h, w).to(device=x.device, dtype=x.dtype).flatten()
    n = int(bins.max()) + 1
    flat = (x * m.view(h, wr)).flatten(-2)                                 # (..., H*W')
    num = torch.zeros(*flat.shape[:-1], n, dtype=x.dtype, device=x.device)
    num = num.index_add(-1, bins, flat)
    den = torch.zeros(n, dtype=x.dtype, device=x.device).index_add(0, bins, m)
    return num / den


def mean_power_spectrum(images: torch.Tensor) -> torch.Tensor:
    """Mean |rfft2_ortho(x)|^2 over batch and channels: (N, C, H, W) -> (H, W//2+1) float64."""
    return fourier.power_spectrum(images).mean(dim=(0, 1))


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
        _check_prediction(prediction)
        if prediction == "epsilon":
            return noise
        if prediction == "x0":
            return x0
        sa, s1 = self._coef(t, x0)
        return sa * noise - s1 * x0

    def to_x0_eps(self, x_t: torch.Tensor, t: torch.Tensor, pred: torch.Tensor,
                  prediction: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Convert a model output to (x0_hat, eps_hat) given x_t."""
        _check_prediction(prediction)
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


def _check_prediction(prediction: str) -> None:
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r} (expected one of {PREDICTIONS})")


# --------------------------------------------------------------------------- per-frequency SNR

class FrequencySNR:
    """Per-frequency signal-to-noise ratio of the forward process.

    With orthonormal Fourier transforms white noise has unit power in every bin, so for
    data whose mean power in bin k is S_k:

        SNR_k(t) = abar_t * S_k / (1 - abar_t)

    Natural images have little power at high frequencies, so noise drowns those first
    (see e.g. Rissanen et al. 2023; Dieleman 2024, "Diffusion is spectral autoregression").

    Args:
        power: (H, W//2+1) data power spectrum S_k (mean over images and channels).
        schedule: the noise schedule.
    """

    def __init__(self, power: torch.Tensor, schedule: NoiseSchedule) -> None:
        self.power = power.double()
        self.schedule = schedule

    @classmethod
    def from_data(cls, images: torch.Tensor, schedule: NoiseSchedule) -> "FrequencySNR":
        """S_k from (N, C, H, W) images in [-1, 1]."""
        return cls(mean_power_spectrum(images), schedule)

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W//2+1) float32: SNR_k(t) per sample and frequency."""
        s = self.schedule.snr(t).float()              # (B,), or (B, 1, H, W') per frequency
        power = self.power.float().to(s.device)
        return (s.view(-1, 1, 1, 1) if s.dim() == 1 else s) * power[None, None]

    def band_snr(self, t: torch.Tensor) -> torch.Tensor:
        """(B, n_bands) SNR per radial band (band mean of S_k times SNR(t))."""
        s = self.schedule.snr(t).float()
        return s[:, None] * radial_profile(self.power.float()).to(s.device)[None]


# --------------------------------------------------------------------------- losses

def time_weight(t: torch.Tensor, schedule: NoiseSchedule, loss: LossSpec,
                prediction: str) -> torch.Tensor:
    """(B,) per-sample weight on the MSE of ``prediction``'s target.

    - ``uniform``: 1.
    - ``min_snr`` (Hang et al. 2023): the effective x0-MSE weight is min(SNR, gamma).
      Since MSE_eps = SNR * MSE_x0 and MSE_v = (SNR + 1) * MSE_x0, the weight on the
      target's MSE is min(SNR, gamma)/SNR (epsilon), min(SNR, gamma) (x0),
      min(SNR, gamma)/(SNR + 1) (v).
    - ``p2`` (Choi et al. 2022): the effective epsilon-MSE weight is
      1/(k + SNR)^gamma; converted the same way: times SNR (x0), times SNR/(SNR+1) (v).
    """
    _check_prediction(prediction)
    snr = schedule.snr(t).float()
    if loss.time_weighting == "uniform":
        return torch.ones_like(snr)
    if loss.time_weighting == "min_snr":
        x0_weight = snr.clamp(max=loss.min_snr_gamma)
    else:
        x0_weight = snr / (loss.p2_k + snr) ** loss.p2_gamma
    per_target = {"epsilon": 1.0 / snr, "x0": torch.ones_like(snr), "v": 1.0 / (snr + 1.0)}
    return x0_weight * per_target[prediction]


def frequency_weight(shape: tuple[int, int], loss: LossSpec, t: torch.Tensor | None = None,
                     freq_snr: FrequencySNR | None = None) -> torch.Tensor:
    """(B or 1, 1, H, W//2+1) weights f_k with sum_k m_k f_k / (H W) = 1 (mean 1).

    - ``uniform``: f_k = 1.
    - ``power_law``: f_k proportional to max(|k|, 1)^-alpha (|k| in cycles per image; DC
      weighted like the fundamental).
    - ``snr``: f_k(t) proportional to SNR_k(t) / (1 + SNR_k(t)), the Wiener gain: the
      fraction of bin k's power at step t that is signal. It favours the frequencies the
      denoiser can still recover at t. Normalised per sample.
    """
    h, w = shape
    m = rfft_multiplicity(h, w)
    if loss.freq_weighting == "uniform":
        return torch.ones(1, 1, h, w // 2 + 1)
    if loss.freq_weighting == "power_law":
        f = radial_frequency(h, w).clamp(min=1.0) ** (-loss.power_law_alpha)
        return (f * (h * w) / (m * f).sum())[None, None]
    if freq_snr is None or t is None:
        raise ValueError("freq_weighting 'snr' needs a FrequencySNR (data power spectrum) "
                         "and the timesteps")
    snr = freq_snr.snr(t)                                                   # (B, 1, H, W')
    f = snr / (1.0 + snr)
    m = m.to(f.device)
    norm = (m * f).sum(dim=(-2, -1), keepdim=True).clamp(min=1e-12)
    return f * (h * w) / norm


def diffusion_loss(pred: torch.Tensor, target: torch.Tensor, t: torch.Tensor,
                   schedule: NoiseSchedule, loss: LossSpec, prediction: str,
                   freq_snr: FrequencySNR | None = None) -> torch.Tensor:
    """Weighted MSE between model output and target, a scalar.

    ``pixel``: mean squared error per sample. ``fourier``: sum_k m_k f_k |rfft2(err)_k|^2
    / (C H W) per sample (m_k the rfft multiplicity, f_k the frequency weight); with
    uniform f_k this equals the pixel MSE exactly (Parseval). Then each sample is
    multiplied by its time weight and the batch is averaged.

    Raises:
        ValueError: a frequency weighting with ``domain: pixel``, or shape mismatch.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape "
                         f"{tuple(target.shape)}")
    err = (pred - target).float()                                            # (B, C, H, W)
    tw = time_weight(t, schedule, loss, prediction).to(err.device)
    if tw.dim() > 1:     # a per-frequency process (evaluator.processes): weights per bin
        return _per_frequency_loss(err, tw, t, loss, freq_snr)
    if loss.domain == "pixel":
        if loss.freq_weighting != "uniform":
            raise ValueError(f"freq_weighting {loss.freq_weighting!r} needs loss domain "
                             "'fourier' (a pixel-domain loss has no frequency weights)")
        per_sample = err.pow(2).mean(dim=(1, 2, 3))
    else:
        c, h, w = err.shape[1:]
        spec = torch.fft.rfft2(err, norm="ortho")                            # (B, C, H, W') c64
        f = frequency_weight((h, w), loss, t, freq_snr).to(err.device)
        m = rfft_multiplicity(h, w).to(err.device)
        per_sample = (m * f * spec.abs().pow(2)).sum(dim=(1, 2, 3)) / (c * h * w)
    return (tw * per_sample).mean()


def _per_frequency_loss(err: torch.Tensor, tw: torch.Tensor, t: torch.Tensor,
                        loss: LossSpec, freq_snr: FrequencySNR | None) -> torch.Tensor:
    """:func:`diffusion_loss` with time weights per bin, tw (B, 1, H, W'): a process
    diagonal in the Fourier basis has its own SNR_k(t) in every bin, so min-SNR and P2
    weight each bin by its own SNR. Computed in the Fourier basis whatever the domain
    (uniform weights: the pixel MSE, by Parseval)."""
    if loss.domain == "pixel" and loss.freq_weighting != "uniform":
        raise ValueError(f"freq_weighting {loss.freq_weighting!r} needs loss domain "
                         "'fourier' (a pixel-domain loss has no frequency weights)")
    c, h, w = err.shape[1:]
    spec = torch.fft.rfft2(err, norm="ortho")                                # (B, C, H, W')
    f = frequency_weight((h, w), loss, t, freq_snr).to(err.device)
    m = rfft_multiplicity(h, w).to(err.device)
    per_sample = (m * f * tw.float() * spec.abs().pow(2)).sum(dim=(1, 2, 3)) / (c * h * w)
    return per_sample.mean()


def describe_loss(loss: LossSpec, prediction: str | None = None) -> str:
    """One line stating the loss and its weighting, for reports."""
    parts = [f"MSE on {prediction or 'the target'} in the {loss.domain} domain"]
    if loss.domain == "fourier":
        parts.append("(orthonormal rfft2, Hermitian columns counted twice: uniform "
                     "weights equal pixel MSE)")
    tw = {"uniform": "uniform over timesteps",
          "min_snr": f"min-SNR-gamma time weighting, gamma={loss.min_snr_gamma:g} "
                     "(Hang et al. 2023)",
          "p2": f"P2 time weighting 1/(k+SNR)^gamma on the eps-MSE, k={loss.p2_k:g}, "
                f"gamma={loss.p2_gamma:g} (Choi et al. 2022)"}[loss.time_weighting]
    fw = {"uniform": "uniform over frequencies",
          "power_law": f"radial power-law frequency weights max(|k|,1)^-{loss.power_law_alpha:g}"
                       " normalised to mean 1",
          "snr": "per-frequency SNR weights SNR_k/(1+SNR_k), SNR_k = abar S_k/(1-abar), "
                 "normalised to mean 1 per sample"}[loss.freq_weighting]
    return f"{' '.join(parts)}; {tw}; {fw}"
