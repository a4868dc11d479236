"""The toolkit's own small training loop: AdamW, EMA, gradient clipping, resumable.

Reproducibility contract (tested): on CPU, a run killed with SIGKILL and resumed from its
last checkpoint ends with the same weights as an uninterrupted run. Everything random in
a step (batch indices, timesteps, noise) comes from one ``torch.Generator`` whose state is
checkpointed together with the global torch / numpy / python RNG states, the optimizer, the
EMA weights and the byte position of the loss log (records written after the checkpoint
are cut off on resume, so ``loss.jsonl`` holds exactly one record per step).

A non-finite loss or gradient norm stops the run: ``status.json`` records
``status: failed`` and ``reason: non-finite loss at step N``; no checkpoint is written for
the failing step.

Cancellation: an ``on_step`` callback that raises :class:`Cancelled` stops the run after
the step it was called for; a checkpoint of that step is written and ``status.json``
records ``status: cancelled, resumable: true``, so ``train(..., resume=True)`` continues
exactly where it stopped.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from evaluator.device import autocast, describe_device, resolve_device, seed_everything
# save_checkpoint: the writer the run store's checkpoints go through (tests reach it here)
from evaluator.store.checkpoints import save_checkpoint  # noqa: F401
from evaluator.store.rundir import RunDir, hash_spec
from evaluator.training.callbacks import (Callback, Checkpointer, LossLog, Monitor, OnStep,
                                          Progress, Snapshots)
from evaluator.training.ema import EMA
from evaluator.training.monitor import (STABILITY_FACTOR, STABILITY_WARMUP, STABILITY_WINDOW,
                                        SpectralMonitor, stability_warnings)
from evaluator.training.state import NullStore, RunStore, TrainState
from evaluator.training.warm_start import apply_init_from

LOSS_WINDOW = 50  # steps averaged at each end of the run for ``loss_drop``


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        status: ``finished`` or ``failed``.
        step: completed optimisation steps.
        reason: why a failed run stopped.
        metrics: ``loss_first``, ``loss_last``, ``loss_drop``, ``steps_per_second``...
        model: the trained model (raw weights); ``ema`` the EMA state dict.
        run: the run folder, when the run is stored.
    """

    status: str
    step: int
    metrics: dict[str, Any]
    model: nn.Module
    ema: dict[str, torch.Tensor]
    run: RunDir | None = None
    reason: str | None = None


class NonFinite(RuntimeError):
    """The loss or gradient became NaN/inf; ``str()`` is the recorded reason."""


class Cancelled(Exception):
    """Raised by an ``on_step`` callback to stop training resumably; ``str()`` is the reason."""


def loss_summary(losses: list[float], window: int = LOSS_WINDOW) -> dict[str, float]:
    """``loss_first``/``loss_last``: means of the first / last ``window`` losses.

    ``loss_drop`` is the relative drop ``(first - last) / first`` (0.4 = 40% lower); with
    fewer than two windows' worth of steps the window shrinks to a quarter of the run.
    """
    if not losses:
        return {"loss_first": math.nan, "loss_last": math.nan, "loss_drop": math.nan}
    w = max(1, min(window, len(losses) // 4 or 1))
    first, last = float(np.mean(losses[:w])), float(np.mean(losses[-w:]))
    drop = (first - last) / first if first else math.nan
    return {"loss_first": first, "loss_last": last, "loss_drop": drop, "loss_window": w}


def _load_images(spec: Any, data: Any) -> torch.Tensor:
    if data is None:
        from evaluator.data.datasets import spec_dataset
        data = spec_dataset(spec, split="train")
    images = getattr(data, "images", data)
    images = torch.as_tensor(images, dtype=torch.float32)
    want = (spec.image.channels, spec.image.size, spec.image.size)
    if images.dim() != 4 or tuple(images.shape[1:]) != want:
        raise ValueError(f"dataset {spec.train.dataset!r} gives images of shape "
                         f"{tuple(images.shape[1:])}, the spec's image is {want}")
    return images


def _make_loss(spec: Any, images: torch.Tensor, device: torch.device) -> Callable:
    """``step_loss(model, x0, t, noise) -> scalar`` built from the spec's diffusion section."""
    from evaluator.diffusion.losses import FrequencySNR, diffusion_loss
    from evaluator.diffusion.processes import process_schedule

    d = spec.diffusion
    # the forward process (a NoiseSchedule for isotropic); its tables move to t's device
    schedule = process_schedule(spec, images)
    freq_snr = None
    if d.loss.freq_weighting == "snr":
        freq_snr = FrequencySNR.from_data(images, schedule)

    def step_loss(model: nn.Module, x0: torch.Tensor, t: torch.Tensor,
                  noise: torch.Tensor) -> torch.Tensor:
        x_t = schedule.q_sample(x0, t, noise)
        with autocast(device):
            pred = model(x_t, t)
        target = schedule.target(x0, noise, t, d.prediction)
        return diffusion_loss(pred.float(), target, t, schedule, d.loss, d.prediction,
                              freq_snr=freq_snr)

    step_loss.timesteps = d.timesteps  # type: ignore[attr-defined]
    if hasattr(schedule, "record"):    # a per-frequency process: metrics.json records it
        step_loss.process = schedule.record()  # type: ignore[attr-defined]
    return step_loss


def train(spec: Any, *, root: str | Path | None = "results", run: RunDir | None = None,
          model: nn.Module | None = None, data: Any = None, device: str = "auto",
          resume: bool = False, progress: bool = True, monitor_every: int = 50,
          on_step: Callable[[int, float], None] | None = None,
          step_loss: Callable | None = None) -> TrainResult:
    """Train ``spec``'s model, storing checkpoints and logs in its run folder.

    Args:
        spec: a validated :class:`archspec.spec.Spec`; ``spec.train`` sets the loop.
        root: results root for the run folder (``None`` and no ``run``: nothing stored).
        run: an explicit run folder (overrides ``root``).
        model: the model to train; default ``archspec.build_model(spec)`` after seeding.
        data: images (N, C, H, W) in [-1, 1] or an object with ``.images``; default the
            spec's dataset via :func:`evaluator.data.datasets.load_dataset`.
        device: ``auto`` (CUDA if available), ``cpu`` or ``cuda``.
        resume: continue from the run's checkpoint if there is one.
        progress: show a tqdm bar.
        monitor_every: log spectral-block activations / gradient norms every N steps.
        on_step: called as ``on_step(step, loss)`` after every step (tests, GUIs).
        step_loss: ``(model, x0, t, noise) -> loss`` replacing the spec's diffusion loss.

    Returns:
        A :class:`TrainResult`; a non-finite loss gives ``status == "failed"``.
    """
    cfg = spec.train
    dev = resolve_device(device)
    if run is None and root is not None:
        run = RunDir.create(spec, root)
    store = RunStore(run) if run is not None else NullStore()
    ckpt = store.checkpoint_to_resume(resume)
    if ckpt is not None and ckpt.get("spec_hash") != hash_spec(spec):
        from archspec.errors import UserError
        raise UserError(f"{run.checkpoint_file}: checkpoint belongs to another spec")
    state, step_loss, images, warm = _setup(spec, dev, model, data, step_loss, ckpt, run)
    loss_pos = state.restore(ckpt) if ckpt is not None else 0
    if ckpt is not None and state.step >= cfg.steps and store.is_finished():
        return TrainResult("finished", state.step, store.train_metrics(), state.model,
                           state.ema.state, run)
    store.begin(state, loss_pos, cfg.steps, describe_device(dev), resumed=ckpt is not None)
    callbacks = _callbacks(spec, store, state, monitor_every, progress, on_step)
    n_params = sum(p.numel() for p in state.model.parameters())
    start_step, t0 = state.step, time.perf_counter()
    n_t = getattr(step_loss, "timesteps", spec.diffusion.timesteps)
    reason, status = None, "finished"
    try:
        while state.step < cfg.steps:
            rec = _one_step(state, step_loss, images, n_t, callbacks)
            for cb in callbacks:
                cb.after_step(state, rec)
    except NonFinite as e:
        reason, status = str(e), "failed"
    except Cancelled as e:
        reason, status = str(e) or "cancelled", "cancelled"
        if state.step > 0:
            store.checkpoint(state)
    finally:
        for cb in callbacks:
            cb.close()
        store.close()
    metrics = _train_metrics(state, start_step, time.perf_counter() - t0, n_params)
    if cfg.init_from:
        metrics["init_from"] = warm or store.train_metrics().get("init_from")
    metrics["stability"] = _stability(spec, store)
    if getattr(step_loss, "process", None) is not None:
        metrics["process"] = step_loss.process       # kind, parameters, data stats sha256
    store.finish(status, reason, metrics)
    return TrainResult(status, state.step, metrics, state.model, state.ema.state, run, reason)


def _setup(spec: Any, dev: torch.device, model: nn.Module | None, data: Any,
           step_loss: Callable | None, ckpt: dict | None, run: RunDir | None
           ) -> tuple[TrainState, Callable, torch.Tensor, dict | None]:
    """The seeded model (warm-started when asked), data, loss, optimiser, EMA, generator;
    in this order, which the global RNG stream depends on."""
    cfg = spec.train
    seed_everything(cfg.seed)
    if model is None:
        from archspec import build_model
        model = build_model(spec)
    model = model.to(dev).train()
    warm = apply_init_from(model, cfg, run) if ckpt is None and cfg.init_from else None
    images = _load_images(spec, data)
    if step_loss is None:
        step_loss = _make_loss(spec, images, dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = EMA(model, cfg.ema)
    gen = torch.Generator().manual_seed(cfg.seed)
    return TrainState(spec, model, opt, ema, gen, dev), step_loss, images, warm


def _callbacks(spec: Any, store: NullStore, state: TrainState, monitor_every: int,
               progress: bool, on_step: Callable[[int, float], None] | None) -> list[Callback]:
    """Monitor, loss log, progress, the caller's on_step, checkpoints, snapshots (in order)."""
    cfg, conv = spec.train, spec.evaluate.convergence
    out: list[Callback] = [Monitor(SpectralMonitor(state.model, monitor_every)), LossLog(store),
                           Progress(cfg.steps, state.step, spec.name, progress)]
    if on_step is not None:
        out.append(OnStep(on_step))
    out.append(Checkpointer(store, cfg.checkpoint_every, cfg.steps))
    if conv is not None:
        out.append(Snapshots(store, conv.every, cfg.steps))
    return out


def _train_metrics(state: TrainState, start_step: int, elapsed: float,
                   n_params: int) -> dict[str, Any]:
    cfg, done = state.spec.train, state.step - start_step
    return {**loss_summary(state.losses), "steps": state.step, "steps_this_session": done,
            "seconds": elapsed, "steps_per_second": done / elapsed if elapsed > 0 else None,
            "device": describe_device(state.dev), "params": n_params,
            "batch_size": cfg.batch_size, "seed": cfg.seed}


def _stability(spec: Any, store: NullStore) -> dict[str, Any]:
    """Stability warnings over the whole run's records, printed and logged."""
    from tqdm.auto import tqdm

    warnings_ = stability_warnings(store.records())
    for w in warnings_:
        tqdm.write(f"WARNING: {spec.name}: {w['message']}")
        store.log(f"WARNING: {w['message']}")
    return {"factor": STABILITY_FACTOR, "window": STABILITY_WINDOW,
            "warmup": STABILITY_WARMUP, "warnings": warnings_}


def _one_step(s: TrainState, step_loss: Callable, images: torch.Tensor, n_t: int,
              callbacks: list[Callback]) -> dict[str, Any]:
    # All step randomness from ``gen`` on the CPU: identical streams on every device.
    cfg, step = s.spec.train, s.step + 1
    idx = torch.randint(0, images.shape[0], (cfg.batch_size,), generator=s.gen)
    t = torch.randint(0, n_t, (cfg.batch_size,), generator=s.gen)
    noise = torch.randn((cfg.batch_size, *images.shape[1:]), generator=s.gen)
    x0 = images[idx].to(s.dev)  # (B, C, H, W) float32 in [-1, 1]
    for cb in callbacks:
        cb.before_step(s, step)
    loss = step_loss(s.model, x0, t.to(s.dev), noise.to(s.dev))
    loss_v = float(loss.detach())
    if not math.isfinite(loss_v):
        raise NonFinite(f"non-finite loss at step {step} ({loss_v})")
    s.opt.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = float(torch.nn.utils.clip_grad_norm_(
        s.model.parameters(), cfg.grad_clip if cfg.grad_clip else math.inf))
    if not math.isfinite(gnorm):
        raise NonFinite(f"non-finite gradient norm at step {step} ({gnorm})")
    s.opt.step()
    s.ema.update(s.model, step)
    s.step = step
    s.losses.append(loss_v)
    return {"step": step, "loss": loss_v, "grad_norm": gnorm, "time": time.time()}
