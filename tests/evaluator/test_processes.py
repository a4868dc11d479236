"""Forward processes diagonal in the Fourier basis and the samplers that follow them."""
from __future__ import annotations

import math
import re

import pytest
import torch

from archspec import SpecError, spec_from_dict, spec_hash
from archspec.errors import UserError
from archspec.spec import LossSpec
from blocks import fourier
from evaluator.diffusion.schedules import NoiseSchedule
from evaluator.diffusion.losses import diffusion_loss
from evaluator.diffusion.processes import (DiagonalProcess, data_power, fourier_apply, process_schedule,
                                 spectrum_sha256, table_problems)
from evaluator.diffusion.samplers import SAMPLERS, sample
from tests.evaluator.helpers import mini_spec

H = 8
PARAMS = {"isotropic": {}, "equal_snr": {"floor": 1e-3},
          "blurring": {"sigma_blur_max": 3.0, "min_scale": 1e-3}}


def _spectrum(var: float = 0.0625) -> torch.Tensor:
    """(H, H//2+1) float64 radial power law with per-pixel variance ``var``."""
    k = fourier.frequency_radius(H, H) * H                       # cycles per image
    p = 1.0 / (1.0 + (k / 3) ** 2)
    m = fourier.rfft_multiplicity(H, H, dtype=torch.float64)
    return p * var * H * H / (m * p).sum()


def _process(kind: str, schedule: str = "cosine", timesteps: int = 1000) -> DiagonalProcess:
    return DiagonalProcess(schedule, timesteps, kind, PARAMS[kind], (H, H), _spectrum())


def _full_grid(coef: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W//2+1) factor -> (B, 1, H, W) on the full fft2 grid (even in k)."""
    w = H
    cols = [c if c <= w // 2 else w - c for c in range(w)]
    rows = [[r if c <= w // 2 else (-r) % H for c in range(w)] for r in range(H)]
    out = torch.empty(*coef.shape[:2], H, w, dtype=coef.dtype)
    for r in range(H):
        for c in range(w):
            out[..., r, c] = coef[..., rows[r][c], cols[c]]
    return out


# ---- the spec -------------------------------------------------------------------------------
def test_process_is_part_of_the_spec_and_the_default_keeps_hashes():
    plain = spec_from_dict(mini_spec())
    explicit = spec_from_dict(mini_spec(diffusion={"timesteps": 50,
                                                   "process": {"kind": "isotropic"}}))
    equal = spec_from_dict(mini_spec(diffusion={"timesteps": 50,
                                                "process": {"kind": "equal_snr"}}))
    assert plain.diffusion.process.kind == "isotropic"
    assert spec_hash(explicit) == spec_hash(plain)
    assert spec_hash(equal) != spec_hash(plain)
    assert equal.diffusion.process.floor == 1e-3


@pytest.mark.parametrize("process,where,what", [
    ({"kind": "blurring", "min_scale": 0.0}, "diffusion.process.blurring.min_scale",
     "expected >= 1e-06, got 0.0"),
    ({"kind": "equal_snr", "floor": 0.0}, "diffusion.process.equal_snr.floor",
     "expected > 0.0, got 0.0"),
    ({"kind": "pink"}, "diffusion.process", "'isotropic', 'equal_snr', 'blurring'"),
    ({"kind": "blurring", "sigma": 2}, "diffusion.process.blurring.sigma",
     "unknown key (did you mean 'sigma_blur_max'?); allowed: kind, sigma_blur_max"),
])
def test_bad_process_parameters_are_located(process, where, what):
    with pytest.raises(SpecError) as e:
        spec_from_dict(mini_spec(diffusion={"timesteps": 50, "process": process}))
    text = str(e.value)
    assert where in text and what in text, text


def test_samplers_that_cannot_follow_are_refused_at_validation():
    data = mini_spec(diffusion={"timesteps": 50, "process": {"kind": "equal_snr"}},
                     evaluate={"samplers": [{"name": "ddim", "steps": [5]},
                                            {"name": "heun", "steps": [5]}]})
    with pytest.raises(SpecError, match=r"evaluate.samplers\[1\].name: sampler 'heun' "
                                        r"cannot follow the 'equal_snr' forward process"):
        spec_from_dict(data)


def test_degenerate_tables_are_named():
    t = torch.arange(4.0)[:, None]
    a, s = (1 - t / 4).sqrt(), (t / 4 + 0.1).sqrt()
    assert table_problems(a, s) == []
    assert "A_t reaches zero" in table_problems(a * (t < 3), s)[0]
    assert "S_t reaches zero" in table_problems(a, s * 0)[0]
    assert "not finite" in table_problems(a / 0, s)[0]
    bumped = a.clone()
    bumped[2] = 2.0
    assert "SNR increases with t (between timesteps 1 and 2)" in table_problems(bumped, s)[0]


# ---- the forward process --------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(PARAMS))
def test_q_sample_is_the_diagonal_operator_on_the_full_spectrum(kind):
    proc = _process(kind)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 2, H, H, generator=g), torch.randn(3, 2, H, H, generator=g)
    t = torch.tensor([0, 400, 999])
    a, s = proc.coefs(t)
    full = torch.fft.fft2(x0.double(), norm="ortho") * _full_grid(a) \
        + torch.fft.fft2(eps.double(), norm="ortho") * _full_grid(s)
    want = torch.fft.ifft2(full, norm="ortho")
    assert want.imag.abs().max() < 1e-12               # even factors keep images real
    torch.testing.assert_close(proc.q_sample(x0.double(), t, eps.double()), want.real,
                               rtol=0, atol=1e-12)


def test_isotropic_process_is_the_noise_schedule():
    proc, base = _process("isotropic"), NoiseSchedule("cosine", 1000)
    x0, eps = torch.randn(4, 1, H, H), torch.randn(4, 1, H, H)
    t = torch.tensor([0, 10, 500, 999])
    torch.testing.assert_close(proc.q_sample(x0, t, eps), base.q_sample(x0, t, eps),
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(proc.target(x0, eps, t, "v"), base.target(x0, eps, t, "v"),
                               rtol=1e-5, atol=1e-5)


def test_equal_snr_gives_every_frequency_the_same_snr():
    p = _spectrum()
    proc = _process("equal_snr")
    t = torch.tensor([100, 700])
    data_snr = proc.snr(t) * p                          # A^2 P_k / S^2 per bin
    abar = proc.abar_table[t].view(-1, 1, 1, 1)
    mean_p = (fourier.rfft_multiplicity(H, H, dtype=torch.float64) * p).sum() / (H * H)
    torch.testing.assert_close(data_snr, (abar / (1 - abar) * mean_p).expand_as(data_snr))
    # total noise power is the isotropic one (orthonormal basis: mean s^2 over the grid)
    m = fourier.rfft_multiplicity(H, H, dtype=torch.float64)
    assert float((m * proc.noise_shape ** 2).sum() / (H * H)) == pytest.approx(1.0)


def test_blurring_attenuates_high_frequencies_by_the_heat_equation():
    proc = _process("blurring")
    t = torch.tensor([499])
    a, s = proc.coefs(t)
    abar = proc.abar_table[499]
    u = 500 / 1000
    tau = (3.0 * math.sin(u * math.pi / 2) ** 2) ** 2 / 2
    f = fourier.frequency_radius(H, H)                  # cycles per pixel
    d = 0.999 * torch.exp(-(2 * math.pi * f) ** 2 * tau) + 1e-3
    torch.testing.assert_close(a[0, 0], abar.sqrt() * d)
    torch.testing.assert_close(s[0, 0], (1 - abar).sqrt().expand(H, H // 2 + 1))
    assert a[0, 0, 0, 0] > a[0, 0, H // 2, H // 2]      # DC kept, Nyquist blurred away


@pytest.mark.parametrize("kind", list(PARAMS))
@pytest.mark.parametrize("prediction", ["epsilon", "x0", "v"])
def test_targets_invert_to_x0_and_noise(kind, prediction):
    proc = _process(kind)
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(2, 1, H, H, generator=g).double(), torch.randn(
        2, 1, H, H, generator=g).double()
    t = torch.tensor([30, 900])
    x_t = proc.q_sample(x0, t, eps)
    got_x0, got_eps = proc.to_x0_eps(x_t, t, proc.target(x0, eps, t, prediction), prediction)
    torch.testing.assert_close(got_x0, x0, rtol=0, atol=1e-6)
    torch.testing.assert_close(got_eps, eps, rtol=0, atol=1e-6)


def test_loss_weighting_follows_the_process():
    proc = _process("equal_snr")
    g = torch.Generator().manual_seed(2)
    pred, target = torch.randn(3, 1, H, H, generator=g), torch.randn(3, 1, H, H, generator=g)
    t = torch.tensor([5, 300, 950])
    uniform = diffusion_loss(pred, target, t, proc, LossSpec(), "epsilon")
    assert uniform.item() == pytest.approx((pred - target).pow(2).mean().item(), rel=1e-5)
    # min-SNR on epsilon: weight min(SNR_k, 5)/SNR_k in every bin, SNR_k = A_k^2 / S_k^2
    a, s = proc.coefs(t)
    snr = _full_grid(a * a / (s * s))
    err = torch.fft.fft2((pred - target).double(), norm="ortho").abs() ** 2
    want = (snr.clamp(max=5.0) / snr * err).sum(dim=(1, 2, 3)).mean() / (H * H)
    got = diffusion_loss(pred, target, t, proc, LossSpec(time_weighting="min_snr"), "epsilon")
    assert got.item() == pytest.approx(want.item(), rel=1e-5)


def test_power_spectrum_is_cached_with_its_hash(tmp_path, monkeypatch):
    import evaluator.data.datasets as datasets

    spec = spec_from_dict(mini_spec(diffusion={"timesteps": 50,
                                               "process": {"kind": "equal_snr"}}))
    images = torch.as_tensor(datasets.spec_dataset(spec, split="train").images)
    want = (torch.fft.rfft2(images.double(), norm="ortho").abs() ** 2).mean(dim=(0, 1))
    power, sha = data_power(spec, cache=tmp_path)
    torch.testing.assert_close(power, want)
    assert sha == spectrum_sha256(want) and len(list(tmp_path.rglob("*.pt"))) == 1
    monkeypatch.setattr(datasets, "spec_dataset", lambda *a, **k: pytest.fail("not cached"))
    again, sha2 = data_power(spec, cache=tmp_path)
    assert sha2 == sha and torch.equal(again, power)
    monkeypatch.setenv("ARCHSEARCH_CACHE", str(tmp_path))
    assert process_schedule(spec).stats_sha256 == sha


# ---- samplers -------------------------------------------------------------------------------
class Tiny(torch.nn.Module):
    """A small nonlinear, time-dependent net (seeded): any prediction type reads it."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        time = torch.cos(t.float() / 100).view(-1, 1, 1, 1)
        return torch.tanh(self.conv(x)) * 0.8 + 0.1 * x * time


@pytest.mark.parametrize("name", ["ddpm", "ddim", "dpmsolver++"])
@pytest.mark.parametrize("clip,prediction,steps,schedule", [
    ("none", "epsilon", 7, "cosine"), ("clip", "x0", 7, "cosine"),
    ("dynamic", "v", 7, "cosine"), ("clip", "epsilon", 1, "cosine"),
    ("none", "v", 10, "linear"), ("dynamic", "x0", 3, "linear")])
def test_isotropic_reduces_to_diffusers(name, clip, prediction, steps, schedule):
    base = NoiseSchedule(schedule, 1000)
    iso = DiagonalProcess(schedule, 1000, "isotropic", {}, (H, H))
    kw = dict(sampler=name, steps=steps, n=5, shape=(2, H, H), seed=3, clip=clip,
              prediction=prediction, return_trajectory=True)
    ref, got = sample(Tiny(), base, **kw), sample(Tiny(), iso, **kw)
    assert got.settings["scheduler"].startswith("per-frequency")
    assert ref.settings["scheduler"].endswith("Scheduler")
    assert got.nfe == ref.nfe == len(got.trajectory) == len(got.xt_trajectory)
    torch.testing.assert_close(got.images, ref.images, rtol=1e-5, atol=1e-5)
    for a, b in zip(got.xt_trajectory, ref.xt_trajectory):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", [n for n in SAMPLERS.names()
                                  if n not in ("ddpm", "ddim", "dpmsolver++")])
def test_other_samplers_refuse_a_non_isotropic_process(name):
    proc = _process("blurring")
    with pytest.raises(UserError, match=re.escape(f"sampler '{name}' cannot follow the "
                                                  "'blurring' forward process")):
        sample(Tiny(), proc, sampler=name, steps=2, n=1, shape=(2, H, H), seed=0)


class Exact(torch.nn.Module):
    """E[x0 | x_t] for x0 ~ N(0, diag(P)) in the orthonormal Fourier basis:
    A_t P / (A_t^2 P + S_t^2) x_t per frequency (closed form)."""

    def __init__(self, proc: DiagonalProcess, power: torch.Tensor) -> None:
        super().__init__()
        self.proc, self.power = proc, power

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s = self.proc.coefs(t[:1])                            # one t per batch
        gain = a * self.power / (a * a * self.power + s * s)
        return fourier_apply(gain, x.double()).float()


# Tolerance: every rfft2 bin's sample variance within 15% (relative) of P_k. The steps
# keep each sampler's discretisation bias (variance lost in the low-noise steps, where
# log-SNR moves fastest) to a few %: the exact DDIM recursion V_s = c^2 V_t loses 3-4% on
# average at 250 steps (worst bin 4.4%, blurring); DDPM ancestral loses ~5% at 250 steps;
# DPM-Solver++(2M) ~1.5% at 50. 1536 samples of 8x8 give a per-bin standard error of
# 2.6% (complex bins) to 3.6% (the four real bins).
ANALYTIC_STEPS = {"ddpm": 250, "ddim": 250, "dpmsolver++": 50}
ANALYTIC_N, ANALYTIC_TOL = 1536, 0.15


@pytest.mark.parametrize("name", list(ANALYTIC_STEPS))
@pytest.mark.parametrize("kind", list(PARAMS))
def test_exact_denoiser_reproduces_the_data_spectrum(kind, name):
    power = _spectrum()
    proc = _process(kind)
    res = sample(Exact(proc, power), proc, sampler=name, steps=ANALYTIC_STEPS[name],
                 n=ANALYTIC_N, shape=(1, H, H), seed=0, clip="none", prediction="x0",
                 batch_size=ANALYTIC_N)
    got = fourier.power_spectrum(res.images).mean(dim=(0, 1))   # per-bin variance
    rel = (got / power - 1).abs()
    assert rel.max() < ANALYTIC_TOL, f"{kind}/{name}: worst bin off by {rel.max():.3f}"


def test_evaluate_samples_with_the_trained_process(tmp_path):
    """End to end: train + evaluate an equal-SNR spec; every result row was sampled by the
    per-frequency sampler, with the data spectrum whose hash training recorded."""
    from tests.evaluator.helpers import evaluate_in

    data = mini_spec(diffusion={"timesteps": 50, "process": {"kind": "equal_snr"}},
                     train={"steps": 6},
                     evaluate={"num_samples": 8, "seeds": [0],
                               "samplers": [{"name": "dpmsolver++", "steps": [4]}]})
    _, rows = evaluate_in(tmp_path, data)
    from evaluator.store.rundir import RunDir

    run = RunDir.open(rows[0]["run"])
    trained = run.metrics()["train"]["process"]
    assert trained["kind"] == "equal_snr" and len(trained["stats_sha256"]) == 64
    # the spec's sampler and the full-chain DDPM reference row
    assert {r["sampler"] for r in rows} == {"dpmsolver++", "ddpm"}
    for row in rows:
        want = {"dpmsolver++": "DPM-Solver++(2M)", "ddpm": "DDPM ancestral"}[row["sampler"]]
        assert row["settings"]["scheduler"].startswith(f"per-frequency {want}")
        assert row["settings"]["scheduler_config"]["process"] == trained
