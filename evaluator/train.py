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

import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from evaluator.device import autocast, describe_device, resolve_device, seed_everything
from evaluator.runs import RunDir, atomic_write, hash_spec
from evaluator.snapshots import save_snapshot

# Block families whose activations and gradients are watched for explosions.
SPECTRAL_FAMILIES = frozenset({"complex", "dual", "spectral", "spectral_attention"})
LOSS_WINDOW = 50  # steps averaged at each end of the run for ``loss_drop``
# Stability warning (issue 8: "monitor exploding magnitudes"): a spectral node whose mean
# |activation| or gradient norm exceeds STABILITY_FACTOR x its smallest value over the
# previous STABILITY_WINDOW steps. Steps before STABILITY_WARMUP are ignored: zero-
# initialised layers legitimately grow from ~0 at the start.
STABILITY_FACTOR = 10.0
STABILITY_WINDOW = 500
STABILITY_WARMUP = 100


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


# ---- EMA ------------------------------------------------------------------------------
class EMA:
    """Exponential moving average of a model's state dict.

    Uses the warm-up ``decay_t = min(decay, (1 + t) / (10 + t))`` (as in TF's
    ``ExponentialMovingAverage(num_updates=...)`` and diffusers' ``EMAModel``) so that
    short runs are not dominated by the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in model.state_dict().items():
            e = self.state[k]
            if e.is_floating_point() or e.is_complex():
                e.mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                e.copy_(v)


# ---- RNG state <-> tensors (checkpoints hold only tensors and plain containers) ----------
def rng_state(gen: torch.Generator) -> dict[str, Any]:
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "generator": gen.get_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_has_gauss": int(np_state[3]),
        "numpy_gauss": float(np_state[4]),
        "python": torch.tensor(py_state[1], dtype=torch.int64),
        "python_gauss": py_state[2],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["generator"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32),
                         state["numpy_pos"], state["numpy_has_gauss"], state["numpy_gauss"]))
    random.setstate((3, tuple(int(v) for v in state["python"].tolist()), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Atomically write ``payload`` (tensors and plain containers only)."""
    atomic_write(Path(path), lambda f: torch.save(payload, f))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no pickled objects are executed).

    Raises:
        evaluator.runs.CorruptRunFile: truncated, corrupted or not a checkpoint.
    """
    from evaluator.runs import CorruptRunFile

    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a damaged file
        msg = str(e).strip().splitlines()[0][:100] if str(e).strip() else type(e).__name__
        raise CorruptRunFile(path, f"truncated or corrupted checkpoint ({msg})") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise CorruptRunFile(path, f"not a complete checkpoint (missing {', '.join(missing)})")
    return ckpt


CHECKPOINT_KEYS = ("model", "ema", "optimizer", "step", "losses", "loss_pos", "rng")


# ---- spectral block monitor ---------------------------------------------------------------
class SpectralMonitor:
    """Forward hooks on the spectral nodes of a graph model, active one step in N.

    Composite nodes (``unet``) are looked into: each spectral block inside is watched under
    ``<node>.<stage id>`` (e.g. ``eps.enc0.0``, ``eps.mid0.att``), see ``UNet.named_blocks``.

    Records the mean absolute activation of each node's output and, after backward, the
    gradient norm of its parameters. Models without ``node_modules``/``node_families``
    (plain modules) are not monitored.
    """

    def __init__(self, model: nn.Module, every: int) -> None:
        self.every = max(1, every)
        self.active = False
        self._act: dict[str, torch.Tensor] = {}
        mods = getattr(model, "node_modules", None) or {}
        fams = getattr(model, "node_families", None) or {}
        self.nodes = {}
        for n, m in dict(mods).items():
            if fams.get(n) in SPECTRAL_FAMILIES:
                self.nodes[n] = m
            elif hasattr(m, "named_blocks"):  # a composite (unet): its spectral blocks
                self.nodes.update({f"{n}.{sid}": sub for sid, sub, fam in m.named_blocks()
                                   if fam in SPECTRAL_FAMILIES})
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.nodes.items()]

    def _hook(self, name: str) -> Callable:
        def hook(_mod: nn.Module, _inp: Any, out: Any) -> None:
            if self.active and isinstance(out, torch.Tensor):
                self._act[name] = out.detach().abs().float().mean()
        return hook

    def begin(self, step: int) -> None:
        self.active = bool(self.nodes) and step % self.every == 0
        self._act = {}

    def collect(self) -> dict[str, dict[str, float]] | None:
        if not self.active:
            return None
        self.active = False
        out = {}
        for name, mod in self.nodes.items():
            grads = [p.grad.detach().abs().pow(2).sum() for p in mod.parameters()
                     if p.grad is not None]
            gnorm = float(torch.stack(grads).sum().sqrt()) if grads else 0.0
            act = float(self._act[name]) if name in self._act else None
            out[name] = {"act": act, "grad_norm": gnorm}
        return out

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def stability_warnings(records: list[dict], factor: float = STABILITY_FACTOR,
                       window: int = STABILITY_WINDOW, warmup: int = STABILITY_WARMUP
                       ) -> list[dict[str, Any]]:
    """The first blow-up per (spectral node, quantity) in a run's loss records.

    Args:
        records: ``loss.jsonl`` records; those with a ``spectral`` entry are the monitor's.
        factor: growth that counts as a blow-up.
        window: steps back over which the baseline (the smallest positive value) is taken.
        warmup: records at steps <= warmup are neither checked nor used as baselines.

    Returns:
        One dict per blow-up: node, quantity (``act`` or ``grad_norm``), step, value,
        baseline, baseline_step, growth and a one-line ``message``.
    """
    series: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for rec in records:
        if rec.get("step", 0) <= warmup:
            continue
        for node, vals in (rec.get("spectral") or {}).items():
            for q in ("act", "grad_norm"):
                v = vals.get(q)
                if v is not None and math.isfinite(v) and v > 0:
                    series.setdefault((node, q), []).append((rec["step"], float(v)))
    out = []
    for (node, q), pts in sorted(series.items()):
        for i, (step, v) in enumerate(pts):
            prior = [(b, s) for s, b in pts[:i] if step - s <= window]
            if not prior:
                continue
            base, base_step = min(prior)
            if v > factor * base:
                what = "mean |activation|" if q == "act" else "gradient norm"
                out.append({"node": node, "quantity": q, "step": step, "value": v,
                            "baseline": base, "baseline_step": base_step, "growth": v / base,
                            "message": f"spectral node {node!r}: {what} grew {v / base:.1f}x "
                                       f"(from {base:.3g} at step {base_step} to {v:.3g} at "
                                       f"step {step}; warning above {factor:g}x within "
                                       f"{window} steps)"})
                break
    return out


# ---- the loop -----------------------------------------------------------------------------
@dataclass
class _State:
    step: int = 0
    losses: list[float] = field(default_factory=list)


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
        from evaluator.datasets import spec_dataset
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
    from evaluator.diffusion import FrequencySNR, diffusion_loss
    from evaluator.processes import process_schedule

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
            spec's dataset via :func:`evaluator.datasets.load_dataset`.
        device: ``auto`` (CUDA if available), ``cpu`` or ``cuda``.
        resume: continue from the run's checkpoint if there is one.
        progress: show a tqdm bar.
        monitor_every: log spectral-block activations / gradient norms every N steps.
        on_step: called as ``on_step(step, loss)`` after every step (tests, GUIs).
        step_loss: ``(model, x0, t, noise) -> loss`` replacing the spec's diffusion loss.

    Returns:
        A :class:`TrainResult`; a non-finite loss gives ``status == "failed"``.
    """
    from tqdm.auto import tqdm

    cfg = spec.train
    dev = resolve_device(device)
    if run is None and root is not None:
        run = RunDir.create(spec, root)
    ckpt = load_checkpoint(run.checkpoint_file) if (
        run is not None and resume and run.checkpoint_file.exists()) else None
    if ckpt is not None and ckpt.get("spec_hash") != hash_spec(spec):
        from archspec.errors import UserError
        raise UserError(f"{run.checkpoint_file}: checkpoint belongs to another spec")

    seed_everything(cfg.seed)
    if model is None:
        from archspec import build_model
        model = build_model(spec)
    model = model.to(dev).train()
    warm = _warm_start(model, cfg, run) if ckpt is None and cfg.init_from else None
    images = _load_images(spec, data)
    if step_loss is None:
        step_loss = _make_loss(spec, images, dev)
    n_t = getattr(step_loss, "timesteps", spec.diffusion.timesteps)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = EMA(model, cfg.ema)
    gen = torch.Generator().manual_seed(cfg.seed)
    st = _State()
    loss_pos = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        ema.state = {k: v.to(dev) for k, v in ckpt["ema"].items()}
        st.step, st.losses, loss_pos = ckpt["step"], list(ckpt["losses"]), ckpt["loss_pos"]
        set_rng_state(ckpt["rng"], gen)
        if st.step >= cfg.steps and run.status().get("status") == "finished":
            return TrainResult("finished", st.step, run.metrics().get("train", {}), model,
                               ema.state, run)
    if run is not None:
        _truncate(run.loss_file, loss_pos)
        run.set_status("running", step=st.step, total=cfg.steps, device=str(dev))
        run.log(f"{'resume at step ' + str(st.step) if ckpt else 'start'}: "
                f"{cfg.steps} steps on {describe_device(dev)}")

    monitor = SpectralMonitor(model, monitor_every)
    n_params = sum(p.numel() for p in model.parameters())
    start_step, t0 = st.step, time.perf_counter()
    log = open(run.loss_file, "a") if run is not None else None
    bar = tqdm(total=cfg.steps, initial=st.step, disable=not progress, desc=spec.name,
               unit="step", leave=False)
    reason, status, session_records = None, "finished", []
    conv = spec.evaluate.convergence
    try:
        while st.step < cfg.steps:
            rec = _one_step(model, opt, ema, step_loss, images, gen, dev, cfg, n_t, st, monitor)
            if run is None and "spectral" in rec:
                session_records.append(rec)
            if log is not None:
                log.write(json.dumps(rec) + "\n")
            bar.update(1)
            if st.step % 10 == 0:
                bar.set_postfix(loss=f"{rec['loss']:.4f}")
            if on_step is not None:
                on_step(st.step, rec["loss"])
            if run is not None and (st.step % cfg.checkpoint_every == 0 or st.step == cfg.steps):
                _checkpoint(run, spec, model, opt, ema, gen, st, log)
            if run is not None and conv is not None and (st.step % conv.every == 0
                                                         or st.step == cfg.steps):
                save_snapshot(run, hash_spec(spec), st.step, ema.state)
    except NonFinite as e:
        reason, status = str(e), "failed"
    except Cancelled as e:
        reason, status = str(e) or "cancelled", "cancelled"
        if run is not None and st.step > 0:
            _checkpoint(run, spec, model, opt, ema, gen, st, log)
    finally:
        bar.close()
        monitor.remove()
        if log is not None:
            log.close()
    elapsed = time.perf_counter() - t0
    done = st.step - start_step
    metrics = {**loss_summary(st.losses), "steps": st.step, "steps_this_session": done,
               "seconds": elapsed, "steps_per_second": done / elapsed if elapsed > 0 else None,
               "device": describe_device(dev), "params": n_params,
               "batch_size": cfg.batch_size, "seed": cfg.seed}
    if getattr(step_loss, "process", None) is not None:
        metrics["process"] = step_loss.process       # kind, parameters, data stats sha256
    if cfg.init_from:
        metrics["init_from"] = warm or (run.metrics().get("train", {}).get("init_from")
                                        if run is not None else None)
    warnings_ = stability_warnings(run.losses() if run is not None else session_records)
    metrics["stability"] = {"factor": STABILITY_FACTOR, "window": STABILITY_WINDOW,
                            "warmup": STABILITY_WARMUP, "warnings": warnings_}
    for w in warnings_:
        tqdm.write(f"WARNING: {spec.name}: {w['message']}")
        if run is not None:
            run.log(f"WARNING: {w['message']}")
    if run is not None:
        _finish_run(run, status, reason, metrics)
    return TrainResult(status, st.step, metrics, model, ema.state, run, reason)


def _warm_start(model: nn.Module, cfg: Any, run: RunDir | None) -> dict[str, Any]:
    """``train.init_from``: copy the source run's matching tensors; log what was copied."""
    from evaluator.snapshots import warm_start

    info = warm_start(model, cfg.init_from)
    if run is not None:
        run.log(f"init_from {info['source']} ({info['source_hash']}): copied "
                f"{len(info['copied'])} tensors: {', '.join(info['copied']) or '-'}")
        run.log(f"init_from: kept the seeded init of {len(info['not_copied'])} tensors: "
                + (", ".join(f"{n['name']} ({n['reason']})" for n in info["not_copied"])
                   or "-"))
        run.update_metrics("train", {**run.metrics().get("train", {}), "init_from": info})
    return info


def _one_step(model: nn.Module, opt: torch.optim.Optimizer, ema: EMA, step_loss: Callable,
              images: torch.Tensor, gen: torch.Generator, dev: torch.device, cfg: Any,
              n_t: int, st: _State, monitor: SpectralMonitor) -> dict[str, Any]:
    # All step randomness from ``gen`` on the CPU: identical streams on every device.
    step = st.step + 1
    idx = torch.randint(0, images.shape[0], (cfg.batch_size,), generator=gen)
    t = torch.randint(0, n_t, (cfg.batch_size,), generator=gen)
    noise = torch.randn((cfg.batch_size, *images.shape[1:]), generator=gen)
    x0 = images[idx].to(dev)  # (B, C, H, W) float32 in [-1, 1]
    monitor.begin(step)
    loss = step_loss(model, x0, t.to(dev), noise.to(dev))
    loss_v = float(loss.detach())
    if not math.isfinite(loss_v):
        raise NonFinite(f"non-finite loss at step {step} ({loss_v})")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = float(torch.nn.utils.clip_grad_norm_(
        model.parameters(), cfg.grad_clip if cfg.grad_clip else math.inf))
    if not math.isfinite(gnorm):
        raise NonFinite(f"non-finite gradient norm at step {step} ({gnorm})")
    opt.step()
    ema.update(model, step)
    st.step = step
    st.losses.append(loss_v)
    rec = {"step": step, "loss": loss_v, "grad_norm": gnorm, "time": time.time()}
    spectral = monitor.collect()
    if spectral:
        rec["spectral"] = spectral
    return rec


def _checkpoint(run: RunDir, spec: Any, model: nn.Module, opt: torch.optim.Optimizer,
                ema: EMA, gen: torch.Generator, st: _State, log: Any) -> None:
    # The loss log must be on disk up to ``loss_pos`` before the checkpoint points there.
    log.flush()
    os.fsync(log.fileno())
    payload = {
        "format": 1, "spec_hash": hash_spec(spec), "step": st.step,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "ema": {k: v.detach().cpu() for k, v in ema.state.items()},
        "optimizer": opt.state_dict(), "rng": rng_state(gen),
        "losses": list(st.losses), "loss_pos": log.tell(),
    }
    save_checkpoint(run.checkpoint_file, payload)
    run.set_status("running", step=st.step)


def _truncate(path: Path, pos: int) -> None:
    if path.exists() and path.stat().st_size > pos:
        with open(path, "r+b") as f:
            f.truncate(pos)
    elif not path.exists():
        path.touch()


def _finish_run(run: RunDir, status: str, reason: str | None, metrics: dict) -> None:
    extra = {"reason": reason} if reason else {}
    extra["resumable"] = status == "cancelled"
    run.update_metrics("train", metrics)
    run.set_status(status, step=metrics["steps"], **extra)
    run.log(f"{status} at step {metrics['steps']}" + (f": {reason}" if reason else "")
            + f" ({metrics['steps_per_second'] or 0:.1f} steps/s)")


def load_trained(run: RunDir, device: str | torch.device = "cpu", ema: bool = True
                 ) -> tuple[nn.Module, Any]:
    """Rebuild a run's model and load its (EMA) weights: ``(model.eval(), spec)``.

    Raises:
        archspec.errors.UserError: the run has no checkpoint.
    """
    from archspec import build_model
    from archspec.errors import UserError

    if not run.checkpoint_file.exists():
        raise UserError(f"{run.path}: no checkpoint.pt (train the run first)")
    spec = run.load_spec()
    dev = resolve_device(device)
    ckpt = load_checkpoint(run.checkpoint_file)
    model = build_model(spec)
    model.load_state_dict(ckpt["ema" if ema else "model"])
    return model.to(dev).eval(), spec
