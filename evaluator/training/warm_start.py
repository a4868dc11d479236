"""Warm start (``train.init_from``): the new model takes a finished run's EMA weights for
every tensor whose name AND shape match (the time embedding of a spectral model trained
after a spatial one, the spatial decoder of a hybrid, ...); every other tensor keeps the
seeded initialisation. What was copied and what not is logged and recorded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from evaluator.store.checkpoints import load_checkpoint
from evaluator.store.rundir import RunDir


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


def apply_init_from(model: nn.Module, cfg: Any, run: RunDir | None) -> dict[str, Any]:
    """``train.init_from``: copy the source run's matching tensors; log what was copied."""
    info = warm_start(model, cfg.init_from)
    if run is not None:
        run.log(f"init_from {info['source']} ({info['source_hash']}): copied "
                f"{len(info['copied'])} tensors: {', '.join(info['copied']) or '-'}")
        run.log(f"init_from: kept the seeded init of {len(info['not_copied'])} tensors: "
                + (", ".join(f"{n['name']} ({n['reason']})" for n in info["not_copied"])
                   or "-"))
        run.update_metrics("train", {**run.metrics().get("train", {}), "init_from": info})
    return info
