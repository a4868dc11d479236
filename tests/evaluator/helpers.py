"""A tiny trainable spec shared by the evaluation tests (seconds to train and sample)."""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

_MINI: dict[str, Any] = {
    "name": "mini", "image": {"channels": 1, "size": 8},
    "model": {"nodes": {"x": {"block": "input"}, "t": {"block": "timestep"},
                        "temb": {"block": "time_embedding", "in": ["t"], "dim": 16},
                        "eps": {"block": "resblock", "in": ["x", "temb"], "channels": 1}},
              "output": "eps"},
    "diffusion": {"timesteps": 50},
    "train": {"dataset": "digits", "steps": 30, "batch_size": 16, "checkpoint_every": 10},
    "evaluate": {"num_samples": 32, "seeds": [0, 1],
                 "samplers": [{"name": "ddim", "steps": [5, 10]}]},
}


def mini_spec(**sections: dict[str, Any]) -> dict[str, Any]:
    """A fresh copy of the tiny spec, with whole sections merged in (``train={...}``)."""
    data = copy.deepcopy(_MINI)
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return data


def train_mini(root: Path, name: str, emb_dim: int, *, steps: int, batch_size: int,
               evaluate: dict[str, Any] | None = None) -> Any:
    """Train the tiny spec named ``name`` (time-embedding width ``emb_dim``) into ``root``;
    returns its finished run folder."""
    from archspec import spec_from_dict
    from evaluator.training.loop import train

    data = mini_spec(train={"steps": steps, "batch_size": batch_size},
                     **({"evaluate": evaluate} if evaluate else {}))
    data["name"] = name
    data["model"]["nodes"]["temb"]["dim"] = emb_dim
    res = train(spec_from_dict(data), root=root, device="cpu", progress=False)
    assert res.status == "finished", res.reason
    return res.run


def evaluate_in(root: Path, data: dict[str, Any]) -> tuple[Path, list[dict[str, Any]]]:
    """Write ``data`` to ``root/mini.yaml`` and evaluate it (full budget, CPU) with a cache
    of its own under ``root``; returns (spec file, rows)."""
    import yaml

    from evaluator.pipeline.evaluate import evaluate

    spec_file = root / "mini.yaml"
    spec_file.write_text(yaml.safe_dump(data))
    old = os.environ.get("ARCHSEARCH_CACHE")
    os.environ["ARCHSEARCH_CACHE"] = str(root / "cache")
    try:
        rows = evaluate([spec_file], budget="full", out=root / "results", device="cpu",
                        progress=False)
    finally:
        if old is None:
            os.environ.pop("ARCHSEARCH_CACHE")
        else:
            os.environ["ARCHSEARCH_CACHE"] = old
    return spec_file, rows
