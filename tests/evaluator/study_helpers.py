"""A tiny study on ``synthetic8``: 2 pipelines x 2 seeds x a few dozen training steps."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from tests.evaluator.helpers import mini_spec


def tiny_pipeline(channels: int) -> dict[str, Any]:
    data = mini_spec(train={"dataset": "synthetic8", "steps": 24, "batch_size": 8,
                            "checkpoint_every": 8})
    data["model"]["nodes"]["eps"]["channels"] = 1
    data["model"]["nodes"]["temb"]["dim"] = channels
    data["name"] = f"mini{channels}"
    return data


def tiny_study(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "tiny",
        "questions": {
            "q1": {"text": "Fewer steps?", "analysis": "q1_nfe", "experiments": ["nfe"],
                   "settings": {"baseline": "spatial", "baseline_nfe": 4}},
            "q2": {"text": "Stability?", "analysis": "q2_stability",
                   "experiments": ["stability"],
                   "settings": {"factors": ["lr"], "sampler": "ddim", "nfe": 4}},
            "q3": {"text": "Weighting per timestep?", "analysis": "q3_weighting",
                   "experiments": ["weighting"], "settings": {"factors": ["weighting"]}},
            "q4": {"text": "Robust?", "analysis": "q4_robustness",
                   "experiments": ["robustness"],
                   "settings": {"candidate": "spectral", "against": "spatial",
                                "sampler": "ddim", "nfe": 4}},
        },
        "pipelines": {"spatial": {"role": "spatial", "spec": {"cpu": "spatial.yaml"}},
                      "spectral": {"role": "spectral", "spec": {"cpu": "spectral.yaml"}}},
        "datasets": {"cpu": "synthetic8"},
        "seeds": [0, 1, 2],
        "samplers": {"names": ["ddim"], "nfe": [2, 4], "reference": {"name": "ddpm",
                                                                     "steps": [50]}},
        "experiments": {
            "nfe": {"pipelines": ["spatial", "spectral"], "seeds": 2},
            "stability": {"pipelines": ["spectral"], "seeds": 2,
                          "factors": {"lr": {"path": "train.lr", "levels": [1e-3, 2e-3]}},
                          "samplers": [{"name": "ddim", "steps": [4]}], "convergence": True,
                          "clip_probe": {"policies": ["clip", "none"],
                                         "samplers": [{"name": "ddim", "steps": [4]}]}},
            "weighting": {"pipelines": ["spectral"], "seeds": 2,
                          "factors": {"weighting": {"levels": {
                              "uniform": {"diffusion.loss.time_weighting": "uniform"},
                              "min_snr": {"diffusion.loss.time_weighting": "min_snr"}}}},
                          "samplers": [{"name": "ddim", "steps": [4]}], "band_probe": True},
            "robustness": {"pipelines": ["spectral", "spatial"], "seeds": 2,
                           "factors": {"lr": {"path": "train.lr", "levels": [1e-3, 2e-3]}},
                           "samplers": [{"name": "ddim", "steps": [4]}]},
        },
        "budgets": {"cpu": {"dataset": "synthetic8", "image_size": 8, "train_steps": 24,
                            "batch_size": 8, "num_samples": 16, "noise_seeds": [0],
                            "convergence": {"every": 12, "sampler": "ddim", "steps": 2,
                                            "num_samples": 16},
                            "band_probe": {"num_images": 16, "t_bins": 3, "bands": 2}}},
    }
    data.update(copy.deepcopy(over))
    return data


def write_study(tmp: Path, data: dict[str, Any] | None = None) -> Path:
    tmp = Path(tmp)
    (tmp / "spatial.yaml").write_text(yaml.safe_dump(tiny_pipeline(8)))
    (tmp / "spectral.yaml").write_text(yaml.safe_dump(tiny_pipeline(12)))
    p = tmp / "study.yaml"
    p.write_text(yaml.safe_dump(data or tiny_study(), sort_keys=False))
    return p


def start_study(path: Path, out: Path) -> tuple[str, Any]:
    """Create the study's sweeps and enqueue every cell (nothing trains); (url, storage)."""
    from evaluator.study import engine
    from evaluator.study.model import load_study_file, plan
    from evaluator.sweeps.study import make_storage

    ls = load_study_file(path)
    p = plan(ls, "cpu")
    url = engine.default_storage(out, ls.study.name, "cpu")
    storage = make_storage(url, heartbeat=1)
    engine.enqueue_missing(engine.create_or_resume(ls, "cpu", p, storage, out), p)
    return url, storage


def run_tiny_study(tmp: Path) -> tuple[Path, Path, str]:
    """:func:`tiny_study` written, enqueued and run to the end by one worker here:
    (study file, results root, storage URL). All 20 trials must finish."""
    from evaluator.study import engine

    path, out = write_study(tmp), Path(tmp) / "results"
    url, _ = start_study(path, out)
    ran = engine.work("tiny.cpu", url, out, "cpu", heartbeat=1)
    assert ran == 20, ran
    return path, out, url
