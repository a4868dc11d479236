"""Training checkpoints: atomic writes, ``weights_only`` reads, and a run's trained model.

``checkpoint.pt`` holds the model, EMA and optimizer states, the RNG states, the losses and
the byte position of the loss log (see :mod:`evaluator.training.loop`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from evaluator.device import resolve_device
from evaluator.store.atomic import CorruptRunFile, atomic_write
from evaluator.store.rundir import RunDir


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Atomically write ``payload`` (tensors and plain containers only)."""
    atomic_write(Path(path), lambda f: torch.save(payload, f))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no pickled objects are executed).

    Raises:
        evaluator.store.atomic.CorruptRunFile: truncated, corrupted or not a checkpoint.
    """
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
