"""Diffusion maths against diffusers, closed forms and Parseval."""
from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from archspec.spec import DiffusionSpec, LossSpec
from blocks import fourier
from evaluator.diffusion.losses import (FrequencySNR, describe_loss, diffusion_loss,
                                        frequency_weight, radial_profile, time_weight)
from evaluator.diffusion.schedules import NoiseSchedule


@pytest.mark.parametrize("kind,diffusers_name", [("linear", "linear"),
                                                 ("cosine", "squaredcos_cap_v2")])
def test_betas_match_diffusers(kind, diffusers_name):
    ours = NoiseSchedule(kind, 1000)
    ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule=diffusers_name)
    torch.testing.assert_close(ours.betas.float(), ref.betas, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(ours.alphas_cumprod, ref.alphas_cumprod.double(),
                               rtol=1e-5, atol=1e-7)


def test_diffusers_config_gives_identical_betas():
    ours = NoiseSchedule("linear", 300)
    sched = DDIMScheduler(**ours.diffusers_config())
    assert torch.equal(sched.betas, ours.betas.float())
    torch.testing.assert_close(sched.alphas_cumprod.double(), ours.alphas_cumprod,
                               rtol=1e-5, atol=0.0)
    # 1000/T scaling keeps the end of the chain at the same noise level as T=1000.
    assert ours.betas[-1].item() == pytest.approx(0.02 * 1000 / 300, rel=1e-6)


def test_from_spec_and_errors():
    s = NoiseSchedule.from_spec(DiffusionSpec(schedule="linear", timesteps=50))
    assert s.kind == "linear" and s.betas.shape == (50,)
    with pytest.raises(ValueError, match="unknown noise schedule 'quadratic'"):
        NoiseSchedule("quadratic", 10)
    with pytest.raises(ValueError, match="unknown prediction 'eps'"):
        s.target(torch.zeros(1), torch.zeros(1), torch.zeros(1, dtype=torch.long), "eps")


def test_q_sample_statistics():
    s = NoiseSchedule("cosine", 1000)
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((20000, 1, 2, 2), 0.5)
    t = torch.full((20000,), 400, dtype=torch.long)
    xt = s.q_sample(x0, t, torch.randn(x0.shape, generator=g))
    a = s.alphas_cumprod[400].item()
    assert xt.mean().item() == pytest.approx(0.5 * math.sqrt(a), abs=0.01)
    assert xt.var().item() == pytest.approx(1 - a, rel=0.03)


@pytest.mark.parametrize("prediction", ["epsilon", "x0", "v"])
def test_target_inverts(prediction):
    s = NoiseSchedule("linear", 1000)
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(8, 2, 4, 4, generator=g), torch.randn(8, 2, 4, 4, generator=g)
    t = torch.randint(0, 1000, (8,), generator=g)
    xt = s.q_sample(x0, t, eps)
    x0_hat, eps_hat = s.to_x0_eps(xt, t, s.target(x0, eps, t, prediction), prediction)
    torch.testing.assert_close(x0_hat, x0, rtol=1e-3, atol=2e-3)
    torch.testing.assert_close(eps_hat, eps, rtol=1e-3, atol=2e-3)


def test_v_matches_diffusers_velocity():
    s = NoiseSchedule("cosine", 1000)
    ref = DDPMScheduler(**s.diffusers_config())
    g = torch.Generator().manual_seed(5)
    x0, eps = torch.randn(4, 1, 3, 3, generator=g), torch.randn(4, 1, 3, 3, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    # diffusers accumulates abar in float32 (ours float64): ~1e-4 relative at t = 999.
    torch.testing.assert_close(s.target(x0, eps, t, "v"), ref.get_velocity(x0, eps, t),
                               rtol=1e-4, atol=1e-5)


def test_snr_and_float_timesteps():
    s = NoiseSchedule("cosine", 1000)
    t = torch.tensor([3, 600])
    a = s.alphas_cumprod[t]
    torch.testing.assert_close(s.snr(t), a / (1 - a))
    torch.testing.assert_close(s.abar(t.float()), a)     # integral floats hit the table


# --------------------------------------------------------------------------- Fourier losses

def test_multiplicity_counts_full_spectrum():
    for h, w in [(8, 8), (6, 7), (5, 4)]:
        assert fourier.rfft_multiplicity(h, w).sum().item() == h * w


@pytest.mark.parametrize("hw", [(8, 8), (6, 7)])
def test_fourier_uniform_loss_equals_pixel_loss(hw):
    s = NoiseSchedule("cosine", 1000)
    g = torch.Generator().manual_seed(2)
    pred, target = torch.randn(4, 3, *hw, generator=g), torch.randn(4, 3, *hw, generator=g)
    t = torch.tensor([5, 100, 500, 900])
    for tw in ["uniform", "min_snr", "p2"]:
        pixel = diffusion_loss(pred, target, t, s, LossSpec(domain="pixel", time_weighting=tw),
                               "epsilon")
        fourier = diffusion_loss(pred, target, t, s,
                                 LossSpec(domain="fourier", time_weighting=tw), "epsilon")
        torch.testing.assert_close(fourier, pixel, rtol=1e-5, atol=0.0)
    plain = torch.nn.functional.mse_loss(pred, target)
    torch.testing.assert_close(
        diffusion_loss(pred, target, t, s, LossSpec(domain="fourier"), "x0"), plain,
        rtol=1e-5, atol=0.0)


def test_power_law_weights_mean_one_and_single_bin_loss():
    loss = LossSpec(domain="fourier", freq_weighting="power_law", power_law_alpha=2.0)
    f = frequency_weight((8, 8), loss)[0, 0]
    m = fourier.rfft_multiplicity(8, 8, dtype=torch.float32)
    assert (m * f).sum().item() == pytest.approx(64.0)
    # An error that is one pure cosine at frequency (0, 2) is weighted by 2^-2 / norm.
    y, x = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    err = torch.cos(2 * math.pi * 2 * x / 8)[None, None]
    s = NoiseSchedule("linear", 100)
    t = torch.tensor([10])
    got = diffusion_loss(err, torch.zeros_like(err), t, s, loss, "x0")
    torch.testing.assert_close(got, err.pow(2).mean() * f[0, 2], rtol=1e-5, atol=0.0)
    assert f[0, 2].item() == pytest.approx(f[0, 1].item() / 4)


@pytest.mark.parametrize("prediction", ["epsilon", "x0", "v"])
def test_min_snr_is_clamped_snr_on_x0_error(prediction):
    # Independent route: convert prediction and target to x0 and weight by min(SNR, gamma).
    s = NoiseSchedule("cosine", 1000)
    g = torch.Generator().manual_seed(3)
    x0, eps = torch.randn(6, 1, 4, 4, generator=g), torch.randn(6, 1, 4, 4, generator=g)
    t = torch.tensor([1, 50, 200, 400, 700, 990])
    xt = s.q_sample(x0, t, eps)
    target = s.target(x0, eps, t, prediction)
    pred = target + 0.1 * torch.randn(target.shape, generator=g)
    loss = LossSpec(time_weighting="min_snr", min_snr_gamma=5.0)
    got = torch.stack([diffusion_loss(pred[i:i + 1], target[i:i + 1], t[i:i + 1], s, loss,
                                      prediction) for i in range(6)])
    x0_pred = s.to_x0_eps(xt.double(), t, pred.double(), prediction)[0]
    x0_mse = (x0_pred - x0.double()).pow(2).mean(dim=(1, 2, 3))
    expected = s.snr(t).clamp(max=5.0) * x0_mse
    torch.testing.assert_close(got.double(), expected, rtol=2e-3, atol=1e-7)


@pytest.mark.parametrize("prediction", ["epsilon", "x0", "v"])
def test_p2_is_weighted_eps_error(prediction):
    s = NoiseSchedule("linear", 1000)
    g = torch.Generator().manual_seed(4)
    x0, eps = torch.randn(5, 1, 4, 4, generator=g), torch.randn(5, 1, 4, 4, generator=g)
    t = torch.tensor([3, 100, 300, 600, 950])
    xt = s.q_sample(x0, t, eps)
    target = s.target(x0, eps, t, prediction)
    pred = target + 0.1 * torch.randn(target.shape, generator=g)
    loss = LossSpec(time_weighting="p2", p2_k=1.0, p2_gamma=1.0)
    got = torch.stack([diffusion_loss(pred[i:i + 1], target[i:i + 1], t[i:i + 1], s, loss,
                                      prediction) for i in range(5)])
    eps_pred = s.to_x0_eps(xt.double(), t, pred.double(), prediction)[1]
    eps_mse = (eps_pred - eps.double()).pow(2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(got.double(), eps_mse / (1.0 + s.snr(t)), rtol=2e-3, atol=1e-7)


def test_uniform_time_weight_is_one():
    s = NoiseSchedule("linear", 10)
    assert torch.all(time_weight(torch.arange(10), s, LossSpec(), "v") == 1)


def test_pixel_domain_rejects_frequency_weights():
    s = NoiseSchedule("linear", 10)
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="needs loss domain 'fourier'"):
        diffusion_loss(x, x, torch.tensor([1]), s, LossSpec(freq_weighting="power_law"), "x0")
    with pytest.raises(ValueError, match="needs a FrequencySNR"):
        diffusion_loss(x, x, torch.tensor([1]), s,
                       LossSpec(domain="fourier", freq_weighting="snr"), "x0")


# --------------------------------------------------------------------------- frequency SNR

def test_frequency_snr_formula_and_weights():
    from evaluator.data.datasets import load_dataset, synthetic8_expected_power

    s = NoiseSchedule("cosine", 1000)
    fs = FrequencySNR.from_data(load_dataset("synthetic8").images, s)
    expected = torch.from_numpy(synthetic8_expected_power())
    torch.testing.assert_close(fs.power, expected, rtol=0.15, atol=0.0)
    t = torch.tensor([10, 500])
    snr = fs.snr(t)
    assert snr.shape == (2, 1, 8, 5)
    a = s.alphas_cumprod[t]
    torch.testing.assert_close(snr[:, 0].double(),
                               (a / (1 - a))[:, None, None] * fs.power[None], rtol=1e-5,
                               atol=0.0)
    loss = LossSpec(domain="fourier", freq_weighting="snr")
    f = frequency_weight((8, 8), loss, t, fs)
    m = fourier.rfft_multiplicity(8, 8, dtype=torch.float32)
    torch.testing.assert_close((m * f).sum(dim=(-2, -1)).flatten(), torch.full((2,), 64.0))
    ratio = snr / (1 + snr)
    torch.testing.assert_close(f / f[..., :1, :1], ratio / ratio[..., :1, :1])
    bands = fs.band_snr(t)
    torch.testing.assert_close(bands[:, 0], snr[:, 0, 0, 0])      # band 0 is DC only


def test_radial_profile_against_loop():
    x = torch.rand(3, 8, 5, dtype=torch.float64)
    prof = radial_profile(x)
    bins, m = fourier.radial_bins(8, 8), fourier.rfft_multiplicity(8, 8).double()
    for b in range(prof.shape[-1]):
        sel = bins == b
        ref = (x[:, sel] * m[sel]).sum(-1) / m[sel].sum()
        torch.testing.assert_close(prof[:, b], ref)


def test_power_spectrum_parseval():
    x = torch.randn(10, 2, 8, 8)
    p = FrequencySNR.from_data(x, NoiseSchedule("linear", 10)).power
    torch.testing.assert_close((fourier.rfft_multiplicity(8, 8) * p).sum(),
                               x.double().pow(2).sum(dim=(2, 3)).mean(), rtol=1e-6, atol=0.0)


def test_describe_loss_states_the_choice():
    text = describe_loss(LossSpec(domain="fourier", time_weighting="min_snr",
                                  freq_weighting="power_law", power_law_alpha=1.5), "epsilon")
    assert "fourier" in text and "gamma=5" in text and "^-1.5" in text
    assert "uniform over timesteps" in describe_loss(LossSpec())
