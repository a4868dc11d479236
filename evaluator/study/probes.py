"""Measurements a study takes from a trained run besides its evaluation.

- ``clip``: FD-<dataset> of the run under each x0 clip policy at given (sampler, NFE),
  same N and noise seeds as the evaluation; the clip policy is a sampling setting, so the
  run is not retrained for it.
- ``band``: the per-timestep denoising error on held-out data (test split): for each of
  K equal bins of t and each radial band (:func:`blocks.fourier.band_index`), the mean
  energy per image of (prediction - regression target) in the band, in the orthonormal
  2-D DFT (so the bands' errors sum to the pixel-space squared error, Parseval).

Each result is stored as ``<run>/study_probes/<kind>-<digest>.json`` (digest of the
settings), written atomically and reused when present, so a resumed study never redoes
one.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

PROBE_DIR = "study_probes"


def probe_file(run_path: str | Path, kind: str, settings: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    return Path(run_path) / PROBE_DIR / f"{kind}-{digest}.json"


def read_probe(run_path: str | Path, kind: str, settings: dict[str, Any]) -> Any:
    from evaluator.store.atomic import read_json

    p = probe_file(run_path, kind, settings)
    return read_json(p) if p.is_file() else None


def run_probes(run_path: str | Path, probes: dict[str, Any], device: str = "cpu") -> None:
    """Compute every probe of ``probes`` that the run does not hold yet."""
    from evaluator.device import resolve_device
    from evaluator.store.rundir import RunDir
    from evaluator.store.atomic import write_json
    from evaluator.store.checkpoints import load_trained

    todo = {k: v for k, v in probes.items() if read_probe(run_path, k, v) is None}
    if not todo:
        return
    run = RunDir.open(run_path)
    dev = resolve_device(device)
    model, spec = load_trained(run, dev, ema=True)
    for kind, settings in todo.items():
        fn = {"clip": clip_probe, "band": band_probe}[kind]
        result = fn(model, spec, settings, dev)
        p = probe_file(run_path, kind, settings)
        p.parent.mkdir(parents=True, exist_ok=True)
        write_json(p, {"settings": settings, **result})


def clip_probe(model: Any, spec: Any, settings: dict[str, Any], dev: Any) -> dict[str, Any]:
    """FD per (clip policy, sampler, steps, noise seed)."""
    from evaluator.data.datasets import spec_dataset
    from evaluator.measure.quality import call_metric, feature_extractor
    from evaluator.measure.registry import METRICS
    from evaluator.diffusion.processes import process_schedule
    from evaluator.diffusion.samplers import sample

    reference = spec_dataset(spec, split="test")
    extractor = feature_extractor(spec.train.dataset, spec)
    schedule = process_schedule(spec)
    shape = (spec.image.channels, spec.image.size, spec.image.size)
    rows = []
    for policy in settings["policies"]:
        for sampler, steps in settings["samplers"]:
            for seed in settings["seeds"]:
                res = sample(model, schedule, sampler=sampler, steps=steps,
                             n=settings["num_samples"], shape=shape, seed=seed, clip=policy,
                             prediction=spec.diffusion.prediction, device=dev, progress=False)
                given = {"samples": res.images, "reference": reference.images,
                         "reference_data": reference, "extractor": extractor}
                vals = {m["metric"]: m.get("value")
                        for m in call_metric(METRICS.get("fd_kd"), given)}
                fd = next((v for k, v in vals.items() if k.startswith("FD-")), None)
                rows.append({"clip": policy, "sampler": sampler, "steps": steps,
                             "seed": seed, "fd": fd})
    return {"rows": rows, "metric": f"FD-{spec.train.dataset}"}


@torch.no_grad()
def band_probe(model: Any, spec: Any, settings: dict[str, Any], dev: Any) -> dict[str, Any]:
    """``error[k][b]``: mean per-image error energy in band b at t-bin k."""
    from evaluator.data.datasets import spec_dataset
    from evaluator.diffusion.processes import process_schedule

    x0 = spec_dataset(spec, split="test").images[: settings["num_images"]].float().to(dev)
    schedule = process_schedule(spec)
    T, K = spec.diffusion.timesteps, settings["t_bins"]
    gen = torch.Generator().manual_seed(settings["seed"])
    edges = [round(k * T / K) for k in range(K + 1)]
    error = []
    for k in range(K):
        lo, hi = edges[k], max(edges[k + 1], edges[k] + 1)
        t = torch.randint(lo, hi, (x0.shape[0],), generator=gen).to(dev)
        noise = torch.randn(x0.shape, generator=gen).to(dev)
        x_t = schedule.q_sample(x0, t, noise)
        pred = model(x_t, t)
        target = schedule.target(x0, noise, t, spec.diffusion.prediction)
        error.append(band_energy(pred - target, settings["bands"]))
    return {"t_edges": edges, "error": error, "n": int(x0.shape[0]),
            "target": spec.diffusion.prediction, "bands": settings["bands"],
            "unit": "mean energy per image of (prediction - target) in the band, "
                    "orthonormal DFT"}


def band_energy(e: torch.Tensor, bands: int) -> list[float]:
    """Per band: the mean over images of sum |DFT(e)|^2 over the band's bins (each rfft bin
    counted with its multiplicity, so the bands sum to mean sum e^2)."""
    from blocks.fourier import band_index, rfft_multiplicity

    h, w = e.shape[-2:]
    spec2 = torch.fft.rfft2(e.double(), norm="ortho").abs().pow(2)   # (B, C, H, W//2+1)
    m = rfft_multiplicity(h, w).to(spec2.device, spec2.dtype)
    idx = band_index(h, w, bands).to(spec2.device)
    weighted = (spec2 * m).sum(dim=1).mean(dim=0)                    # (H, W//2+1)
    return [float(weighted[idx == b].sum()) for b in range(bands)]
