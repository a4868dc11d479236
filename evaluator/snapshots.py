"""EMA snapshots along training (convergence curves) and warm starts from another run.

Snapshots (``evaluate.convergence``): the training loop keeps only its latest checkpoint,
so with ``convergence.every: K`` it also writes the EMA weights at every K-th step (and at
the last) to ``snapshots/ema_<step>.pt`` in the run folder: weights only, written
atomically, read back with ``torch.load(weights_only=True)``. ``evaluate`` scores them.

Warm start (``train.init_from``): the new model takes a finished run's EMA weights for
every tensor whose name AND shape match (the time embedding of a spectral model trained
after a spatial one, the spatial decoder of a hybrid, ...); every other tensor keeps the
seeded initialisation. What was copied and what not is logged and recorded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from evaluator.runs import CorruptRunFile, RunDir, atomic_write

SNAPSHOT_DIR = "snapshots"
SNAPSHOT_KEYS = ("format", "spec_hash", "step", "ema")


def snapshot_file(run: RunDir, step: int) -> Path:
    return run.path / SNAPSHOT_DIR / f"ema_{step:08d}.pt"


def save_snapshot(run: RunDir, spec_hash: str, step: int, ema: dict[str, torch.Tensor]
                  ) -> Path:
    """Atomically write the EMA weights of ``step`` (CPU tensors only)."""
    path = snapshot_file(run, step)
    path.parent.mkdir(exist_ok=True)
    payload = {"format": 1, "spec_hash": spec_hash, "step": step,
               "ema": {k: v.detach().cpu() for k, v in ema.items()}}
    atomic_write(path, lambda f: torch.save(payload, f))
    return path


def load_snapshot(path: Path) -> dict[str, Any]:
    """A snapshot, loaded with ``weights_only=True``.

    Raises:
        evaluator.runs.CorruptRunFile: unreadable or not a snapshot.
    """
    try:
        snap = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a damaged file
        raise CorruptRunFile(path, f"truncated or corrupted snapshot ({type(e).__name__})"
                             ) from None
    if not isinstance(snap, dict) or any(k not in snap for k in SNAPSHOT_KEYS):
        raise CorruptRunFile(path, "not an EMA snapshot")
    return snap


def list_snapshots(run: RunDir) -> list[tuple[int, Path]]:
    """(step, path) of the run's snapshots, by step."""
    d = run.path / SNAPSHOT_DIR
    out = []
    for p in d.glob("ema_*.pt") if d.is_dir() else ():
        try:
            out.append((int(p.stem.removeprefix("ema_")), p))
        except ValueError:
            continue
    return sorted(out)


def warm_start(model: nn.Module, source: str | Path) -> dict[str, Any]:
    """Copy a finished run's EMA weights into ``model`` where names and shapes match.

    Returns:
        ``{"source", "source_hash", "copied": [names], "not_copied": [{"name", "reason"}]}``;
        ``not_copied`` lists the model's tensors left at their initialisation (absent from
        the source, or another shape).

    Raises:
        archspec.errors.UserError: ``source`` is not a finished run with a checkpoint.
    """
    from archspec.errors import UserError
    from evaluator.train import load_checkpoint

    src = RunDir.open(source)
    if src.status().get("status") != "finished" or not src.checkpoint_file.is_file():
        raise UserError(f"train.init_from: {source}: not a finished run with a checkpoint")
    weights = load_checkpoint(src.checkpoint_file)["ema"]
    own = model.state_dict()
    copied, not_copied = [], []
    with torch.no_grad():
        for name, t in own.items():
            w = weights.get(name)
            if w is None:
                not_copied.append({"name": name, "reason": "not in the source"})
            elif tuple(w.shape) != tuple(t.shape) or w.dtype != t.dtype:
                not_copied.append({"name": name, "reason": f"source {tuple(w.shape)} "
                                   f"{w.dtype} vs {tuple(t.shape)} {t.dtype}"})
            else:
                t.copy_(w.to(t.device))  # state_dict tensors share storage with the module
                copied.append(name)
    return {"source": str(source), "source_hash": src.hash, "copied": copied,
            "not_copied": not_copied}
