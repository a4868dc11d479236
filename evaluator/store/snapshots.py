"""EMA snapshots along training (convergence curves).

Snapshots (``evaluate.convergence``): the training loop keeps only its latest checkpoint,
so with ``convergence.every: K`` it also writes the EMA weights at every K-th step (and at
the last) to ``snapshots/ema_<step>.pt`` in the run folder: weights only, written
atomically, read back with ``torch.load(weights_only=True)``. ``evaluate`` scores them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from evaluator.store.atomic import CorruptRunFile, atomic_write
from evaluator.store.rundir import RunDir

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
        evaluator.store.atomic.CorruptRunFile: unreadable or not a snapshot.
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


