"""Sampler quality on a small trained model: more steps must not make samples worse.

Every deterministic registered sampler (a new one is checked without edits) samples the
same briefly trained UNet at 10 and 50 steps; FD-digits at 50 steps must not exceed
FD-digits at 10 steps by more than the noise margin. The clip policy is the examples'
default (``EvaluateSpec.clip``) where a sampler supports it, else ``none``; DDIM is also
checked with ``dynamic``.

This is a floor, not a quality bar: diffusers' ``heun`` (a Heun correction over the first
jump from sigma_max = 2e4) and ``pndm`` score FD-digits in the hundreds at every step count
on this model and still pass.

Before DDIM re-derived eps from the clipped x0-hat, DDIM with ``dynamic`` clipping went
62 -> 101 -> 230 at 10/20/50 steps on the spatial baseline (issue 8): exactly what this
test is for.
"""
from __future__ import annotations

import pytest
import torch

from archspec import spec_from_dict
from archspec.spec import EvaluateSpec
from evaluator.diffusion.samplers import SAMPLERS, sample

pytestmark = pytest.mark.slow

N = 256
TRAIN_STEPS = 300
# On this model (measured once, seed 0) the good solvers move by -20%..+6% from 10 to 50
# steps (unipc 18.9 -> 19.9, dpmsolver++ 21.0 -> 19.9, ddim 26.2 -> 21.0); DDIM with
# `dynamic` and the raw-eps update went 84.0 -> 102.3 (+22%), with the fix 57.1 -> 51.6.
# 15% plus 1.0 absolute separates the two.
REL_MARGIN, ABS_MARGIN = 0.15, 1.0

SPEC = {
    "name": "quality_probe", "image": {"channels": 1, "size": 8},
    "model": {"nodes": {
        "x": {"block": "input"}, "t": {"block": "timestep"},
        "temb": {"block": "time_embedding", "in": ["t"], "dim": 64},
        "eps": {"block": "unet", "in": ["x", "temb"], "channels": 16, "channel_mult": [1, 2],
                "mid_attention": False}},
        "output": "eps"},
    "diffusion": {"schedule": "cosine", "timesteps": 1000, "prediction": "epsilon"},
    "train": {"dataset": "digits", "steps": TRAIN_STEPS, "batch_size": 64, "lr": 1e-3,
              "ema": 0.99, "seed": 0},
}

DETERMINISTIC = [n for n in SAMPLERS.names() if not SAMPLERS.get(n).extra["stochastic"]]
DEFAULT_CLIP = EvaluateSpec.model_fields["clip"].default
CASES = [(n, DEFAULT_CLIP if DEFAULT_CLIP in SAMPLERS.get(n).extra["clip"] else "none")
         for n in DETERMINISTIC] + [("ddim", "dynamic")]   # the issue-8 regression


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from evaluator.data.datasets import load_dataset
    from evaluator.diffusion.schedules import NoiseSchedule
    from evaluator.measure.quality import feature_extractor
    from evaluator.training.loop import train

    spec = spec_from_dict(SPEC)
    res = train(spec, root=tmp_path_factory.mktemp("runs"), device="cpu", progress=False)
    assert res.status == "finished"
    model = res.model
    model.load_state_dict(res.ema)
    reference = load_dataset("digits", split="test")
    extractor = feature_extractor("digits")
    assert not isinstance(extractor, Exception), extractor
    return model, NoiseSchedule.from_spec(spec.diffusion), reference, extractor


def _fd(trained, sampler: str, steps: int, clip: str) -> float:
    from evaluator.measure.features import fd_kd

    model, schedule, reference, extractor = trained
    res = sample(model, schedule, sampler=sampler, steps=steps, n=N, shape=(1, 8, 8), seed=0,
                 clip=clip, batch_size=N)
    out = fd_kd(res.images, reference, extractor=extractor)
    return next(r["value"] for r in out if r["metric"] == "FD-digits")


@pytest.mark.parametrize("name,clip", CASES)
def test_more_steps_do_not_make_samples_worse(trained, name, clip):
    fd10, fd50 = _fd(trained, name, 10, clip), _fd(trained, name, 50, clip)
    assert fd50 <= fd10 * (1 + REL_MARGIN) + ABS_MARGIN, (name, clip, fd10, fd50)
