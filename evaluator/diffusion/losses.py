"""Diffusion losses: per-frequency SNR, time and frequency weights, the loss itself.

Fourier quantities use the orthonormal ``rfft2`` over the last two dims (layout
(H, W//2+1)). A real image's full spectrum is Hermitian, so each rfft2 column other than
column 0 (and column W/2 for even W) stands for two bins: it gets multiplicity 2 in every
sum so that Parseval holds exactly and uniform Fourier MSE equals pixel MSE
(:func:`blocks.fourier.rfft_multiplicity`).
"""
from __future__ import annotations

import torch

from archspec.spec import LossSpec
from blocks import fourier
from evaluator.diffusion.schedules import NoiseSchedule, check_prediction


def radial_frequency(h: int, w: int) -> torch.Tensor:
    """(H, W//2+1) float32: |k| in cycles per image (``min(H, W)`` times cycles per pixel)."""
    return (fourier.frequency_radius(h, w) * min(h, w)).float()


def radial_profile(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x[..., H, W']`` over each radial band, weighted by rfft multiplicity.

    Args:
        x: (..., H, W//2+1) real values on the rfft2 grid of an (H, W) image, W even.

    Returns:
        (..., n_bands) with band b = mean over full-spectrum bins with round(|k|) == b.
    """
    h, wr = x.shape[-2:]
    w = 2 * (wr - 1)
    bins = fourier.radial_bins(h, w).to(x.device).flatten()
    m = fourier.rfft_multiplicity(h, w, dtype=torch.float32)
    m = m.to(device=x.device, dtype=x.dtype).flatten()
    n = int(bins.max()) + 1
    flat = (x * m.view(h, wr)).flatten(-2)                                 # (..., H*W')
    num = torch.zeros(*flat.shape[:-1], n, dtype=x.dtype, device=x.device)
    num = num.index_add(-1, bins, flat)
    den = torch.zeros(n, dtype=x.dtype, device=x.device).index_add(0, bins, m)
    return num / den


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
        return cls(fourier.power_spectrum(images).mean(dim=(0, 1)), schedule)

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W//2+1) float32: SNR_k(t) per sample and frequency."""
        s = self.schedule.snr(t).float()              # (B,), or (B, 1, H, W') per frequency
        power = self.power.float().to(s.device)
        return (s.view(-1, 1, 1, 1) if s.dim() == 1 else s) * power[None, None]

    def band_snr(self, t: torch.Tensor) -> torch.Tensor:
        """(B, n_bands) SNR per radial band (band mean of S_k times SNR(t))."""
        s = self.schedule.snr(t).float()
        return s[:, None] * radial_profile(self.power.float()).to(s.device)[None]


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
    check_prediction(prediction)
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
    m = fourier.rfft_multiplicity(h, w, dtype=torch.float32)
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
    if tw.dim() > 1:     # a per-frequency process (evaluator.diffusion.processes): weights per bin
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
        m = fourier.rfft_multiplicity(h, w, dtype=torch.float32).to(err.device)
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
    m = fourier.rfft_multiplicity(h, w).to(err.device)
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
