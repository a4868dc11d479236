"""The training state (model, optimiser, EMA, generator, step, losses) and where it is
kept: a run folder, or nowhere (the null store), behind one interface."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evaluator.store.checkpoints import load_checkpoint, save_checkpoint
from evaluator.store.rundir import RunDir, hash_spec
from evaluator.store.snapshots import save_snapshot
from evaluator.training.ema import EMA
from evaluator.training.rng import rng_state, set_rng_state


@dataclass
class TrainState:
    """Everything a checkpoint holds, live."""

    spec: Any
    model: nn.Module
    opt: torch.optim.Optimizer
    ema: EMA
    gen: torch.Generator
    dev: torch.device
    step: int = 0
    losses: list[float] = field(default_factory=list)

    def restore(self, ckpt: dict[str, Any]) -> int:
        """Continue from ``ckpt``; returns the loss log's byte position it points at."""
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.ema.state = {k: v.to(self.dev) for k, v in ckpt["ema"].items()}
        self.step, self.losses = ckpt["step"], list(ckpt["losses"])
        set_rng_state(ckpt["rng"], self.gen)
        return ckpt["loss_pos"]

    def payload(self, loss_pos: int) -> dict[str, Any]:
        """The checkpoint (tensors and plain containers only)."""
        return {
            "format": 1, "spec_hash": hash_spec(self.spec), "step": self.step,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "ema": {k: v.detach().cpu() for k, v in self.ema.state.items()},
            "optimizer": self.opt.state_dict(), "rng": rng_state(self.gen),
            "losses": list(self.losses), "loss_pos": loss_pos,
        }


class NullStore:
    """Training with nothing stored; spectral records are kept for the stability check."""

    run = None

    def __init__(self) -> None:
        self._records: list[dict] = []

    def checkpoint_to_resume(self, resume: bool) -> dict[str, Any] | None:
        return None

    def is_finished(self) -> bool:
        return False

    def begin(self, state: TrainState, loss_pos: int, total: int, where: str,
              resumed: bool) -> None:
        pass

    def write_record(self, rec: dict[str, Any]) -> None:
        if "spectral" in rec:
            self._records.append(rec)

    def checkpoint(self, state: TrainState) -> None:
        pass

    def snapshot(self, state: TrainState) -> None:
        pass

    def records(self) -> list[dict]:
        return self._records

    def train_metrics(self) -> dict[str, Any]:
        return {}

    def log(self, msg: str) -> None:
        pass

    def finish(self, status: str, reason: str | None, metrics: dict) -> None:
        pass

    def close(self) -> None:
        pass


class RunStore(NullStore):
    """Training stored in a run folder: loss log, checkpoints, snapshots, status, log."""

    def __init__(self, run: RunDir) -> None:
        super().__init__()
        self.run = run
        self._log: Any = None

    def checkpoint_to_resume(self, resume: bool) -> dict[str, Any] | None:
        if not (resume and self.run.checkpoint_file.exists()):
            return None
        return load_checkpoint(self.run.checkpoint_file)

    def is_finished(self) -> bool:
        return self.run.status().get("status") == "finished"

    def begin(self, state: TrainState, loss_pos: int, total: int, where: str,
              resumed: bool) -> None:
        """Cut the loss log back to the checkpoint's position and mark the run running."""
        _truncate(self.run.loss_file, loss_pos)
        self.run.set_status("running", step=state.step, total=total, device=str(state.dev))
        self.run.log(f"{'resume at step ' + str(state.step) if resumed else 'start'}: "
                     f"{total} steps on {where}")
        self._log = open(self.run.loss_file, "a")

    def write_record(self, rec: dict[str, Any]) -> None:
        self._log.write(json.dumps(rec) + "\n")

    def checkpoint(self, state: TrainState) -> None:
        # The loss log must be on disk up to ``loss_pos`` before the checkpoint points there.
        self._log.flush()
        os.fsync(self._log.fileno())
        save_checkpoint(self.run.checkpoint_file, state.payload(self._log.tell()))
        self.run.set_status("running", step=state.step)

    def snapshot(self, state: TrainState) -> None:
        save_snapshot(self.run, hash_spec(state.spec), state.step, state.ema.state)

    def records(self) -> list[dict]:
        return self.run.losses()

    def train_metrics(self) -> dict[str, Any]:
        return self.run.metrics().get("train", {})

    def log(self, msg: str) -> None:
        self.run.log(msg)

    def finish(self, status: str, reason: str | None, metrics: dict) -> None:
        extra = {"reason": reason} if reason else {}
        extra["resumable"] = status == "cancelled"
        self.run.update_metrics("train", metrics)
        self.run.set_status(status, step=metrics["steps"], **extra)
        self.run.log(f"{status} at step {metrics['steps']}" + (f": {reason}" if reason else "")
                     + f" ({metrics['steps_per_second'] or 0:.1f} steps/s)")

    def close(self) -> None:
        if self._log is not None:
            self._log.close()


def _truncate(path: Path, pos: int) -> None:
    if path.exists() and path.stat().st_size > pos:
        with open(path, "r+b") as f:
            f.truncate(pos)
    elif not path.exists():
        path.touch()
