"""Training loop: loss goes down, EMA, logs, atomic checkpoints, SIGKILL + resume, NaN stop."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from archspec.errors import UserError
import torch
import torch.nn.functional as F
from torch import nn

from archspec import spec_from_dict
from evaluator.training import loop as train_mod
from evaluator.store.rundir import RunDir
from evaluator.store.checkpoints import load_checkpoint
from evaluator.training.ema import EMA
from evaluator.training.loop import loss_summary, train

REPO = Path(__file__).resolve().parents[2]


# ---- helpers (also imported by the resume subprocess) -------------------------------------
# The spec's own graph (a model must have parameters); the tests train the model they pass.
PLACEHOLDER_MODEL = {"nodes": {"x": {"block": "input"},
                               "y": {"block": "conv", "in": ["x"], "channels": 1}},
                     "output": "y"}


def make_spec(**train_cfg):
    cfg = {"steps": 60, "batch_size": 16, "lr": 3e-3, "ema": 0.9, "checkpoint_every": 20,
           "seed": 0, "dataset": "synthetic8"}
    cfg.update(train_cfg)
    return spec_from_dict({"name": "tiny", "image": {"channels": 1, "size": 8},
                           "model": PLACEHOLDER_MODEL,
                           "train": cfg})


class Tiny(nn.Module):
    """Two convolutions; the timestep enters as an extra constant channel."""

    def __init__(self, c: int = 1, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c + 1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, c, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tt = (t.float() / 1000).view(-1, 1, 1, 1).expand(-1, 1, *x.shape[2:])
        return self.conv2(torch.relu(self.conv1(torch.cat([x, tt], 1))))


def make_data(n: int = 256) -> torch.Tensor:
    """Smooth random gratings in [-1, 1]: structured enough that the noise is learnable."""
    g = torch.Generator().manual_seed(123)
    yy, xx = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    f = torch.rand(n, 2, generator=g) * 0.8
    ph = torch.rand(n, 1, generator=g) * 6.28
    arg = f[:, :1, None] * xx + f[:, 1:, None] * yy + ph[:, :, None]
    return torch.sin(arg).view(n, 1, 8, 8)


def make_loss(timesteps: int = 1000):
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, timesteps), 0)

    def step_loss(model, x0, t, noise):
        a = abar.to(x0.device)[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        return F.mse_loss(model(x_t, t), noise)

    step_loss.timesteps = timesteps
    return step_loss


def run_tiny(root, spec=None, model=None, **kw):
    torch.manual_seed(0)
    return train(spec or make_spec(), root=root, model=model or Tiny(), data=make_data(),
                 device="cpu", progress=False, step_loss=kw.pop("step_loss", make_loss()), **kw)


# ---- tests --------------------------------------------------------------------------------
def test_training_lowers_loss_and_logs_every_step(tmp_path):
    res = run_tiny(tmp_path, spec=make_spec(steps=100))
    assert res.status == "finished" and res.step == 100
    # independent recomputation of the summary from the raw log
    recs = res.run.losses()
    assert [r["step"] for r in recs] == list(range(1, 101))
    losses = [r["loss"] for r in recs]
    w = res.metrics["loss_window"]
    assert res.metrics["loss_first"] == pytest.approx(sum(losses[:w]) / w)
    assert res.metrics["loss_last"] == pytest.approx(sum(losses[-w:]) / w)
    assert res.metrics["loss_drop"] > 0.3, res.metrics
    assert res.metrics["steps_per_second"] > 0
    status = res.run.status()
    assert status["status"] == "finished" and status["step"] == 100
    assert res.run.metrics()["train"]["steps"] == 100
    ck = load_checkpoint(res.run.checkpoint_file)
    assert ck["step"] == 100
    for k, v in res.model.state_dict().items():
        assert torch.equal(ck["model"][k], v)


@dataclass
class FirstStep:
    result: Any
    loss: float
    data: torch.Tensor
    model: nn.Module          # back at its initial weights, to recompute the step's loss
    draws: tuple              # (idx, t, noise) as the step drew them


def _first_step(name: str, root: Any, diffusion: dict) -> FirstStep:
    """One training step of :class:`Tiny` on 64 synthetic images (batch 8, train.seed 3),
    and the same draws regenerated from one CPU generator seeded by train.seed."""
    spec = spec_from_dict({
        "name": name, "image": {"channels": 1, "size": 8}, "model": PLACEHOLDER_MODEL,
        "diffusion": diffusion,
        "train": {"steps": 1, "batch_size": 8, "lr": 1e-3, "seed": 3, "dataset": "synthetic8"}})
    data = make_data(64)
    torch.manual_seed(0)
    model = Tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    res = train(spec, root=root, model=model, data=data, device="cpu", progress=False,
                on_step=lambda step, loss: seen.append(loss))
    assert res.status == "finished" and len(seen) == 1
    gen = torch.Generator().manual_seed(3)
    draws = (torch.randint(0, 64, (8,), generator=gen),
             torch.randint(0, 1000, (8,), generator=gen),
             torch.randn((8, 1, 8, 8), generator=gen))
    model.load_state_dict(before)
    return FirstStep(res, seen[0], data, model, draws)


def test_train_uses_the_spec_own_loss(tmp_path):
    """No step_loss given: train builds it from spec.diffusion. The first step's loss is
    recomputed independently (diffusers' alphas, the v target written out, min-SNR weight
    by hand, uniform Fourier MSE == pixel MSE by Parseval) from the same random draws."""
    from diffusers import DDPMScheduler

    step = _first_step("own_loss", None, {
        "schedule": "linear", "timesteps": 1000, "prediction": "v",
        "loss": {"domain": "fourier", "time_weighting": "min_snr", "min_snr_gamma": 5.0}})
    model, (idx, t, noise) = step.model, step.draws
    x0 = step.data[idx]
    abar = DDPMScheduler(num_train_timesteps=1000).alphas_cumprod.double()[t].view(-1, 1, 1, 1)
    x_t = (abar.sqrt() * x0 + (1 - abar).sqrt() * noise).float()
    v = abar.sqrt() * noise - (1 - abar).sqrt() * x0
    with torch.no_grad():
        mse = (model(x_t, t).double() - v).pow(2).mean(dim=(1, 2, 3))
    snr = (abar / (1 - abar)).view(-1)
    ref = (torch.clamp(snr, max=5.0) / (snr + 1) * mse).mean()
    assert step.loss == pytest.approx(float(ref), rel=1e-4)


def test_loss_summary_relative_drop():
    s = loss_summary([2.0] * 10 + [1.0] * 10, window=5)
    assert s["loss_first"] == 2.0 and s["loss_last"] == 1.0 and s["loss_drop"] == 0.5


def test_ema_follows_the_warmup_formula():
    lin = nn.Linear(2, 1)
    ema = EMA(lin, decay=0.99)
    ref = {k: v.clone() for k, v in lin.state_dict().items()}
    for step in range(1, 4):
        with torch.no_grad():
            for p in lin.parameters():
                p.add_(1.0)
        ema.update(lin, step)
        d = min(0.99, (1 + step) / (10 + step))
        ref = {k: d * ref[k] + (1 - d) * v for k, v in lin.state_dict().items()}
    for k in ref:
        torch.testing.assert_close(ema.state[k], ref[k])


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    res = run_tiny(tmp_path, spec=make_spec(steps=20, checkpoint_every=10))
    ck_file = res.run.checkpoint_file
    before = ck_file.read_bytes()

    def torn_save(obj, f, *a, **k):  # writes half a file, then the machine "dies"
        f.write(before[: len(before) // 2])
        raise OSError("disk gone")

    monkeypatch.setattr(train_mod.torch, "save", torn_save)
    with pytest.raises(OSError, match="disk gone"):
        train_mod.save_checkpoint(ck_file, {"step": 99})
    assert ck_file.read_bytes() == before
    assert load_checkpoint(ck_file)["step"] == 20
    assert [p.name for p in ck_file.parent.iterdir() if p.name.endswith(".tmp")] == []


class InfAfter(Tiny):
    """Outputs inf from the ``n``-th forward call on."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n, self.calls = n, 0

    def forward(self, x, t):
        self.calls += 1
        out = super().forward(x, t)
        return out * math.inf if self.calls >= self.n else out


def test_nonfinite_loss_fails_the_run_cleanly(tmp_path):
    res = run_tiny(tmp_path, spec=make_spec(steps=10, checkpoint_every=2), model=InfAfter(4))
    assert res.status == "failed" and res.step == 3
    assert res.reason.startswith("non-finite loss at step 4")
    st = res.run.status()
    assert st["status"] == "failed" and st["reason"].startswith("non-finite loss at step 4")
    # the last checkpoint is the intact one from step 2, not anything from the bad step
    assert load_checkpoint(res.run.checkpoint_file)["step"] == 2
    assert "non-finite loss at step 4" in res.run.log_file.read_text()


def test_nonfinite_gradient_fails_the_run(tmp_path):
    def sqrt_loss(model, x0, t, noise):  # d sqrt(u)/du at u = 0 is inf -> NaN gradient
        return torch.sqrt((model(x0, t) * 0).pow(2).sum())

    res = run_tiny(tmp_path, spec=make_spec(steps=5), step_loss=sqrt_loss)
    assert res.status == "failed"
    assert res.reason.startswith("non-finite gradient norm at step 1")
    assert not res.run.checkpoint_file.exists()


def test_huge_learning_rate_is_caught(tmp_path):
    spec = make_spec(steps=200, lr=1.0, grad_clip=None, checkpoint_every=1000)

    class Exploding(Tiny):  # exp() turns the diverging weights into inf quickly
        def forward(self, x, t):
            return torch.exp(super().forward(x, t) * 50)

    res = run_tiny(tmp_path, spec=spec, model=Exploding())
    assert res.status == "failed" and "non-finite" in res.reason
    assert res.run.status()["status"] == "failed"


def test_data_shape_must_match_spec(tmp_path):
    with pytest.raises(ValueError, match=r"shape \(3, 8, 8\).*\(1, 8, 8\)"):
        train(make_spec(), root=tmp_path, model=Tiny(), data=torch.zeros(4, 3, 8, 8),
              device="cpu", progress=False, step_loss=make_loss())


class SpectralToy(nn.Module):
    """A stand-in for the graph model: two nodes, one of them in a spectral family."""

    def __init__(self) -> None:
        super().__init__()
        self.node_modules = nn.ModuleDict({"f": nn.Conv2d(1, 1, 3, padding=1),
                                           "s": nn.Conv2d(1, 1, 1)})
        self.node_families = {"f": "complex", "s": "spatial"}

    def forward(self, x, t):
        return self.node_modules["s"](self.node_modules["f"](x))


def test_spectral_blocks_are_monitored_every_n_steps(tmp_path):
    res = run_tiny(tmp_path, spec=make_spec(steps=12), model=SpectralToy(), monitor_every=4)
    recs = res.run.losses()
    watched = [r["step"] for r in recs if "spectral" in r]
    assert watched == [4, 8, 12]
    for r in recs:
        if "spectral" in r:
            assert set(r["spectral"]) == {"f"}  # spatial node not watched
            assert r["spectral"]["f"]["act"] > 0
            assert math.isfinite(r["spectral"]["f"]["grad_norm"]) and r["spectral"]["f"]["grad_norm"] > 0


def test_resume_refuses_a_checkpoint_of_another_spec(tmp_path):
    res = run_tiny(tmp_path, spec=make_spec(steps=4, checkpoint_every=2))
    other = RunDir(res.run.path)  # same folder, different spec
    with pytest.raises(UserError, match="another spec"):
        run_tiny(tmp_path, spec=make_spec(steps=8, checkpoint_every=2), run=other, resume=True)


_SCRIPT = """
import sys, time, torch
torch.set_num_threads(1)
sys.path[:0] = [{repo!r}, {tests!r}]
from test_train import Tiny, make_data, make_loss, make_spec
from evaluator.training.loop import train
root, slow, resume = sys.argv[1], sys.argv[2] == "slow", sys.argv[3] == "resume"
spec = make_spec(steps=20, checkpoint_every=5)
torch.manual_seed(0)
res = train(spec, root=root, model=Tiny(), data=make_data(), device="cpu", progress=False,
            step_loss=make_loss(), resume=resume,
            on_step=(lambda s, l: time.sleep(0.1)) if slow else None)
print(res.status, res.step)
"""


def _train_proc(tmp_path, root, mode, resume):
    script = tmp_path / "train_script.py"
    script.write_text(_SCRIPT.format(repo=str(REPO), tests=str(Path(__file__).parent)))
    return subprocess.Popen([sys.executable, str(script), str(root), mode, resume],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
    victim = _train_proc(tmp_path, tmp_path / "b", "slow", "fresh")
    run_b = None
    deadline = time.time() + 120
    while time.time() < deadline:
        found = list((tmp_path / "b").glob("runs/*/*/checkpoint.pt"))
        if found:
            run_b = RunDir(found[0].parent)
            break
        time.sleep(0.01)
    assert run_b is not None, victim.stderr.read()
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(30)
    killed_at = load_checkpoint(run_b.checkpoint_file)["step"]
    assert killed_at < 20 and run_b.status()["status"] == "running"

    ref = _train_proc(tmp_path, tmp_path / "a", "fast", "fresh")
    resumed = _train_proc(tmp_path, tmp_path / "b", "fast", "resume")
    assert ref.wait(120) == 0, ref.stderr.read()
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert out.split() == ["finished", "20"]

    run_a = RunDir(next((tmp_path / "a").glob("runs/*/*/checkpoint.pt")).parent)
    ca, cb = load_checkpoint(run_a.checkpoint_file), load_checkpoint(run_b.checkpoint_file)
    for part in ("model", "ema"):
        assert ca[part].keys() == cb[part].keys()
        for k in ca[part]:
            assert torch.equal(ca[part][k], cb[part][k]), (part, k)
    la, lb = run_a.losses(), run_b.losses()
    assert [r["step"] for r in lb] == list(range(1, 21))
    assert [r["loss"] for r in la] == [r["loss"] for r in lb]
    assert f"resume at step {killed_at}" in run_b.log_file.read_text()
    assert json.loads(run_b.status_file.read_text())["status"] == "finished"


# ---- stability warnings -------------------------------------------------------------------
def _records(values, quantity="act", node="f", every=10):
    return [{"step": (i + 1) * every, "loss": 1.0,
             "spectral": {node: {"act": 1.0, "grad_norm": 1.0, quantity: v}}}
            for i, v in enumerate(values)]


def test_stability_warning_fires_on_fast_growth_only():
    sw = train_mod.stability_warnings
    # steps 10..300; warm-up is the first 100 steps, window 500, factor 10
    flat = [1.0] * 30
    fast = [1.0] * 20 + [2.0, 5.0, 12.0, 50.0] + [60.0] * 6        # 12x at step 230
    assert sw(_records(flat)) == []
    w = sw(_records(fast))
    assert len(w) == 1 and (w[0]["node"], w[0]["quantity"], w[0]["step"]) == ("f", "act", 230)
    assert w[0]["baseline"] == 1.0 and w[0]["growth"] == pytest.approx(12.0)
    assert "'f'" in w[0]["message"] and "12.0x" in w[0]["message"]
    # the same 12x spread over 1200 steps (never 10x within a 500-step window): no warning
    slow = [1.0 * 12 ** (i / 119) for i in range(120)]
    assert sw(_records(slow)) == []
    # growth only inside the warm-up (zero-initialised layers waking up): no warning
    assert sw(_records([1e-6, 1e-3, 1.0] + [1.0] * 20, every=30)) == []
    assert sw(_records(fast, quantity="grad_norm"))[0]["quantity"] == "grad_norm"


class Blowup(nn.Module):
    """A spectral node x * exp(g) whose loss drives g up by Adam's lr every step."""

    def __init__(self) -> None:
        super().__init__()
        self.g = nn.Parameter(torch.zeros(()))
        self.node_modules = nn.ModuleDict({"f": _Scale(self.g)})
        self.node_families = {"f": "complex"}

    def forward(self, x, t):
        return self.node_modules["f"](x)


class _Scale(nn.Module):
    def __init__(self, g: nn.Parameter) -> None:
        super().__init__()
        self.g = g

    def forward(self, x):
        return x * torch.exp(self.g)


def test_training_records_and_logs_stability_warnings(tmp_path):
    def grow(model, x0, t, noise):
        return -model(x0, t).abs().mean().log()

    res = run_tiny(tmp_path, spec=make_spec(steps=160, lr=0.05, checkpoint_every=80,
                                            grad_clip=None),
                   model=Blowup(), monitor_every=10, step_loss=grow)
    stab = res.run.metrics()["train"]["stability"]
    assert stab["factor"] == train_mod.STABILITY_FACTOR and stab["warnings"]
    w = stab["warnings"][0]
    assert (w["node"], w["quantity"]) == ("f", "act") and w["growth"] > 10
    assert "WARNING: spectral node 'f'" in res.run.log_file.read_text()
    calm = run_tiny(tmp_path / "calm", spec=make_spec(steps=120), model=SpectralToy(),
                    monitor_every=10)
    assert calm.run.metrics()["train"]["stability"]["warnings"] == []


def test_spectral_blocks_inside_a_unet_are_monitored(tmp_path):
    """Every example pipeline is one ``unet`` node: the monitor looks inside it, under the
    stage ids of the graph view (archspec.graph.unet_stages, the independent reference)."""
    from archspec.graph import unet_stages
    from archspec import build_model, validated

    spec = spec_from_dict({
        "name": "tiny_spectral_unet", "image": {"channels": 1, "size": 8},
        "model": {"nodes": {
            "x": {"block": "input"}, "t": {"block": "timestep"},
            "temb": {"block": "time_embedding", "in": ["t"], "dim": 16},
            "eps": {"block": "unet", "in": ["x", "temb"], "channels": 4, "groups": 2,
                    "channel_mult": [1, 2], "attention_levels": [1],
                    "mid_attention": True,
                    "encoder": {"block": "complex_resblock", "params": {"norm": "batch"},
                                "attention": "radial_band_attention"},
                    "head": "spectral_head"}},
            "output": "eps"},
        "train": {"steps": 4, "batch_size": 8, "lr": 1e-3, "ema": 0.9, "seed": 0,
                  "checkpoint_every": 4, "dataset": "synthetic8"}})
    res = run_tiny(tmp_path, spec=spec, model=build_model(spec), monitor_every=2)
    watched = [r for r in res.run.losses() if "spectral" in r]
    assert [r["step"] for r in watched] == [2, 4]
    stages, _ = unet_stages(validated(spec).params["eps"], (1, 8, 8))
    inner = {f"eps.{s['id']}" for s in stages if s["id"] not in ("stem", "head")}
    for r in watched:
        names = set(r["spectral"])
        assert {n for n in names if not n.endswith(".att")} == inner  # head is family "head"
        assert {"eps.enc1.0.att", "eps.mid0.att", "eps.dec1.0.att"} <= names
        for n in ("eps.enc0.0", "eps.mid1", "eps.dec0.0", "eps.mid0.att"):
            s = r["spectral"][n]
            assert s["act"] > 0 and math.isfinite(s["act"])
            assert math.isfinite(s["grad_norm"]) and s["grad_norm"] > 0


def test_training_follows_the_forward_process_and_records_it(tmp_path):
    """An equal-SNR spec: the first step's loss is recomputed with the noise coloured by
    hand on the full fft2 grid (sqrt of the data power over its mean, floored), and
    metrics.json's train section names the process and the hash of the data spectrum."""
    from diffusers import DDPMScheduler

    from evaluator.diffusion.processes import spectrum_sha256

    step = _first_step("equal_snr", tmp_path, {
        "schedule": "linear", "timesteps": 1000,
        "process": {"kind": "equal_snr", "floor": 0.01}})
    data, model, (idx, t, noise) = step.data, step.model, step.draws
    power = (torch.fft.fft2(data.double(), norm="ortho").abs() ** 2).mean(dim=(0, 1))  # (8, 8)
    shape = (power / power.mean()).clamp(min=0.01).sqrt()
    coloured = torch.fft.ifft2(torch.fft.fft2(noise.double(), norm="ortho") * shape,
                               norm="ortho").real
    abar = DDPMScheduler(num_train_timesteps=1000).alphas_cumprod.double()[t].view(-1, 1, 1, 1)
    x_t = (abar.sqrt() * data[idx] + (1 - abar).sqrt() * coloured).float()
    with torch.no_grad():
        ref = (model(x_t, t).double() - noise).pow(2).mean()
    assert step.loss == pytest.approx(float(ref), rel=1e-4)
    rec = json.loads(step.result.run.metrics_file.read_text())["train"]["process"]
    half = (torch.fft.rfft2(data.double(), norm="ortho").abs() ** 2).mean(dim=(0, 1))
    assert rec == {"kind": "equal_snr", "floor": 0.01, "stats_sha256": spectrum_sha256(half)}
