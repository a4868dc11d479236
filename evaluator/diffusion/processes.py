"""Forward processes diagonal in the orthonormal Fourier basis: x_t = A_t x0 + S_t eps.

Every process keeps the spec's VP schedule abar_t and shapes it per frequency k (a bin
of the orthonormal ``rfft2``, :mod:`blocks.fourier`):

    A_t(k) = sqrt(abar_t) a_t(k),    S_t(k) = sqrt(1 - abar_t) s(k)

- ``isotropic``: a = s = 1 (Ho et al. 2020); the plain :class:`NoiseSchedule` is used.
- ``equal_snr``: a = 1, s(k)^2 = max(P_k / mean P, floor), P the training split's power
  spectrum, so SNR_k(t) = A^2 P_k / S^2 is the same for every k while the total noise
  power is the isotropic one (Falck et al. 2025, "A Fourier Space Perspective on
  Diffusion Models").
- ``blurring``: s = 1, a_t(k) = (1 - d_min) exp(-lambda_k tau_t) + d_min, the heat
  equation run for tau_t = sigma_B(u)^2 / 2 with sigma_B(u) = sigma_blur_max sin^2(u pi/2),
  u = (t+1)/T, lambda_k = (2 pi |f_k|)^2, |f_k| in cycles per pixel (Hoogeboom &
  Salimans 2022, "Blurring Diffusion Models"; periodic Fourier basis instead of their
  DCT, so that every process shares one basis).

All factors are real and even in k, so each is a self-adjoint operator that maps real
images to real images; white pixel noise is white in this basis. Timestep -1 stands for
clean data (A = 1, S = 0), as diffusers' final step does.

The processes read their schedule from the float32 cumulative product diffusers'
schedulers store, so the isotropic process reproduces diffusers' samplers exactly.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch

from archspec.choices import PREDICTIONS
from archspec.errors import Problem
from blocks import fourier
from evaluator.diffusion.schedules import NoiseSchedule

STATS_VERSION = 1             # bump when the statistics' definition changes (cache key)
SNR_FLOOR = 1e-20             # A_t^2 / S_t^2 below this is numerically zero: x0 unrecoverable
CHECK_BINS = 5_000_000        # validation evaluates at most this many (t, k) pairs


def _check_prediction(prediction: str) -> None:
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r} (expected one of {PREDICTIONS})")


def mean_power(images: torch.Tensor) -> torch.Tensor:
    """Mean |rfft2_ortho(x)|^2 over images and channels: (N, C, H, W) -> (H, W//2+1) f64."""
    return fourier.power_spectrum(images).mean(dim=(0, 1))


def fourier_apply(coef: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply a real, even per-frequency factor to real images in the orthonormal basis.

    Args:
        coef: (B or 1, 1, H, W//2+1) real factor on the rfft2 grid.
        x: (B, C, H, W) real images.

    Returns:
        (B, C, H, W) real, in x's dtype.
    """
    spec = torch.fft.rfft2(x, norm="ortho")                         # (B, C, H, W') complex
    spec = spec * coef.to(device=x.device, dtype=x.dtype)
    return torch.fft.irfft2(spec, s=x.shape[-2:], norm="ortho")


def spectrum_sha256(power: torch.Tensor) -> str:
    """sha256 (hex) of a (H, W//2+1) float64 power spectrum's bytes."""
    return hashlib.sha256(power.double().contiguous().numpy().tobytes()).hexdigest()


def x0_eps_spectra(xs: torch.Tensor, ps: torch.Tensor, a: torch.Tensor, s: torch.Tensor,
                   prediction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Spectra of (x0_hat, eps_hat) from those of x_t and a model output ``ps``.

    ``a``, ``s``: A_t, S_t per bin (broadcast against the (B, C, H, W') spectra).
    """
    if prediction == "epsilon":
        return (xs - s * ps) / a, ps
    if prediction == "x0":
        return ps, (xs - a * ps) / s
    r = (a * a + s * s).sqrt()
    z = xs / r                   # v: x0 = alpha z - sigma v, eps = sigma z + alpha v
    return (a * z - s * ps) / r, (s * z + a * ps) / r


class DiagonalProcess(NoiseSchedule):
    """A VP schedule shaped per frequency; drop-in for :class:`NoiseSchedule`.

    ``q_sample``, ``target``, ``to_x0_eps`` and ``snr`` act per frequency (``snr`` is
    (B, 1, H, W//2+1)); ``betas``/``alphas_cumprod`` stay the base schedule's, which is
    what the model is conditioned on (the integer timestep).

    Args:
        schedule: ``linear`` or ``cosine``; timesteps: T.
        kind: ``isotropic``, ``equal_snr`` or ``blurring``.
        params: the process parameters (spec ``diffusion.process`` without ``kind``).
        size: (H, W) of the images.
        power: (H, W//2+1) data power spectrum, required by ``equal_snr``.
        stats_sha256: hash of ``power`` recorded with samples and metrics.
    """

    def __init__(self, schedule: str, timesteps: int, kind: str, params: dict[str, Any],
                 size: tuple[int, int], power: torch.Tensor | None = None,
                 stats_sha256: str | None = None) -> None:
        super().__init__(schedule, timesteps)
        self.process_kind, self.process_params = kind, dict(params)
        self.size, self.stats_sha256 = (int(size[0]), int(size[1])), stats_sha256
        # diffusers' own table (float32 cumprod of float32 betas), held in float64
        self.abar_table = torch.cumprod(1.0 - self.betas.float(), dim=0).double()
        h, w = self.size
        self._lam = (2 * math.pi * fourier.frequency_radius(h, w)) ** 2   # (H, W') float64
        self.noise_shape = self._noise_shape(power)                       # (H, W') float64

    def _noise_shape(self, power: torch.Tensor | None) -> torch.Tensor:
        h, w = self.size
        if self.process_kind != "equal_snr":
            return torch.ones(h, w // 2 + 1, dtype=torch.float64)
        if power is None:
            raise ValueError("the equal_snr process needs the data power spectrum")
        power = power.double().cpu()
        m = fourier.rfft_multiplicity(h, w, dtype=torch.float64)
        rel = power * (h * w) / (m * power).sum()                # mean 1 over the full grid
        return rel.clamp(min=self.process_params["floor"]).sqrt()

    def __repr__(self) -> str:
        return (f"DiagonalProcess({self.process_kind!r}, {self.process_params}, "
                f"schedule={self.kind!r}, timesteps={self.timesteps}, size={self.size})")

    def _attenuation(self, t: torch.Tensor) -> torch.Tensor:
        """a_t(k): (B, 1, H, W') float64 (ones but for ``blurring``)."""
        if self.process_kind != "blurring":
            return torch.ones(t.shape[0], 1, 1, 1, dtype=torch.float64)
        p = self.process_params
        u = (t.double() + 1) / self.timesteps                                   # (B,)
        tau = (p["sigma_blur_max"] * torch.sin(u * math.pi / 2) ** 2) ** 2 / 2
        d = torch.exp(-self._lam[None] * tau.view(-1, 1, 1))                    # (B, H, W')
        return ((1 - p["min_scale"]) * d + p["min_scale"])[:, None]

    def coefs(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(A_t, S_t), each (B, 1, H, W//2+1) float64 on the CPU; t = -1 is clean data."""
        t = torch.as_tensor(t).reshape(-1).long().cpu()
        clean = t < 0
        abar = torch.where(clean, torch.ones((), dtype=torch.float64),
                           self.abar_table[t.clamp(min=0)]).view(-1, 1, 1, 1)
        a = torch.where(clean.view(-1, 1, 1, 1), 1.0, self._attenuation(t.clamp(min=0)))
        shape = self.noise_shape[None, None]
        ones = torch.ones_like(shape)
        return abar.sqrt() * a * ones, (1 - abar).sqrt() * shape

    def prior_scale(self) -> torch.Tensor:
        """(1, 1, H, W') factor on unit white noise that starts sampling (like diffusers,
        the start ignores the residual signal and takes sqrt(1 - abar_T) as 1)."""
        return self.noise_shape[None, None]

    def _coefs_like(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        a, s = self.coefs(t)
        dtype = like.real.dtype if like.is_complex() else like.dtype
        return a.to(like.device, dtype), s.to(like.device, dtype)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = A_t x0 + S_t noise, per frequency."""
        a, s = self._coefs_like(t, x0)
        return fourier_apply(a, x0) + fourier_apply(s, noise)

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
               prediction: str) -> torch.Tensor:
        """epsilon | x0 | v; v = alpha eps - sigma x0 per frequency with alpha, sigma =
        A, S / sqrt(A^2 + S^2) (Salimans & Ho 2022, per frequency)."""
        _check_prediction(prediction)
        if prediction == "epsilon":
            return noise
        if prediction == "x0":
            return x0
        a, s = self._coefs_like(t, x0)
        r = (a * a + s * s).sqrt()
        return fourier_apply(a / r, noise) - fourier_apply(s / r, x0)

    def to_x0_eps(self, x_t: torch.Tensor, t: torch.Tensor, pred: torch.Tensor,
                  prediction: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0_hat, eps_hat) from a model output, per frequency."""
        _check_prediction(prediction)
        a, s = self._coefs_like(t, x_t)
        xs = torch.fft.rfft2(x_t, norm="ortho")                  # (B, C, H, W') complex
        ps = torch.fft.rfft2(pred.to(x_t.dtype), norm="ortho")
        x0s, es = x0_eps_spectra(xs, ps, a, s, prediction)
        hw = x_t.shape[-2:]
        return (torch.fft.irfft2(x0s, s=hw, norm="ortho"),
                torch.fft.irfft2(es, s=hw, norm="ortho"))

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """SNR_k(t) = A_t(k)^2 / S_t(k)^2: (B, 1, H, W//2+1) float64 on t's device."""
        a, s = self.coefs(t)
        return (a * a / (s * s)).to(torch.as_tensor(t).device)

    def record(self) -> dict[str, Any]:
        """The process for metrics.json and sample settings."""
        out = {"kind": self.process_kind, **self.process_params}
        if self.stats_sha256 is not None:
            out["stats_sha256"] = self.stats_sha256
        return out


# --------------------------------------------------------------------------- from a spec

def process_schedule(spec: Any, images: torch.Tensor | None = None) -> NoiseSchedule:
    """The spec's forward process: a plain :class:`NoiseSchedule` for ``isotropic``.

    Args:
        spec: a validated spec.
        images: (N, C, H, W) training images for the data statistics; default the
            spec's training split, through the cache (:func:`data_power`).
    """
    d = spec.diffusion
    proc = d.process
    if proc.kind == "isotropic":
        return NoiseSchedule.from_spec(d)
    power = sha = None
    if proc.kind == "equal_snr":
        power, sha = data_power(spec, images)
    params = proc.model_dump(exclude={"kind"})
    size = (spec.image.size, spec.image.size)
    return DiagonalProcess(d.schedule, d.timesteps, proc.kind, params, size, power, sha)


def _stats_key(spec: Any) -> str:
    root = spec.train.data_root
    ident = {"dataset": spec.train.dataset, "split": "train", "version": STATS_VERSION,
             "data_root": str(Path(root).resolve()) if root else None,
             "image": [spec.image.channels, spec.image.size]}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]


def data_power(spec: Any, images: torch.Tensor | None = None,
               cache: str | Path | None = None) -> tuple[torch.Tensor, str]:
    """(H, W//2+1) float64 mean power spectrum of the training split, and its sha256.

    With ``images`` the spectrum is computed from them and not cached (a caller's own
    data need not be the spec's dataset). Otherwise it is read from
    ``cache_root()/process_stats/<key>.pt`` (key: dataset, data root, image shape), or
    computed from the spec's training split and stored there.
    """
    if images is not None:
        power = mean_power(torch.as_tensor(images, dtype=torch.float32))
        return power, spectrum_sha256(power)
    from evaluator.store.cache import cache_root

    path = cache_root(cache) / "process_stats" / f"{_stats_key(spec)}.pt"
    if path.is_file():
        stored = torch.load(path, weights_only=True)
        power = stored["power"]
        if spectrum_sha256(power) == stored.get("sha256"):
            return power, stored["sha256"]
    from evaluator.data.datasets import spec_dataset

    imgs = torch.as_tensor(spec_dataset(spec, split="train").images, dtype=torch.float32)
    power = mean_power(imgs)
    sha = spectrum_sha256(power)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"power": power, "sha256": sha}, tmp)
    tmp.replace(path)                                     # atomic: never a half-written file
    return power, sha


# --------------------------------------------------------------------------- validation

def table_problems(a: torch.Tensor, s: torch.Tensor) -> list[str]:
    """Degenerate coefficient tables A, S: (n_t, ..., bins) with t increasing.

    A and S must be finite and positive, and every frequency's SNR A^2/S^2 must stay
    above :data:`SNR_FLOOR` and not increase with t (else the forward process has no
    Markov chain behind it: the transition variance S_t^2 - (A_t/A_s)^2 S_s^2 < 0).
    """
    out = []
    if not (torch.isfinite(a).all() and torch.isfinite(s).all()):
        out.append("A_t or S_t is not finite")
    elif (a <= 0).any() or (s <= 0).any():
        which = "A_t" if (a <= 0).any() else "S_t"
        out.append(f"{which} reaches zero; the process loses the data (or the noise) there")
    else:
        snr = (a / s) ** 2
        if (snr < SNR_FLOOR).any():
            out.append(f"SNR A_t^2/S_t^2 falls below {SNR_FLOOR:g} (x0 is unrecoverable)")
        if (snr[1:] > snr[:-1] * (1 + 1e-9)).any():
            bad = int((snr[1:] > snr[:-1] * (1 + 1e-9)).flatten(1).any(1).nonzero()[0])
            out.append(f"SNR increases with t (between timesteps {bad} and {bad + 1}); "
                       "each frequency's SNR must not increase")
    return out


def process_problems(spec: Any) -> list[Problem]:
    """``diffusion.process``: tables of A_t and S_t that stay finite, positive and of
    non-increasing SNR. ``equal_snr`` is checked with a flat spectrum at its floor (the
    data is not read at validation; its floor keeps S_t > 0 whatever the data)."""
    proc = spec.diffusion.process
    if proc.kind == "isotropic":
        return []
    d, n = spec.diffusion, spec.image.size
    params = proc.model_dump(exclude={"kind"})
    power = None
    if proc.kind == "equal_snr":
        power = torch.full((n, n // 2 + 1), float(params["floor"]), dtype=torch.float64)
    proc_ = DiagonalProcess(d.schedule, d.timesteps, proc.kind, params, (n, n), power)
    bins = n * (n // 2 + 1)
    n_t = max(2, min(d.timesteps, CHECK_BINS // bins))
    t = torch.linspace(0, d.timesteps - 1, n_t).round().long().unique()
    a, s = proc_.coefs(t)
    return [Problem("diffusion.process", f"{proc.kind}: {m}") for m in table_problems(a, s)]
