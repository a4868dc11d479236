"""The evaluator's contribution to spec validation (entry point ``archsearch.checks``).

``archspec`` calls :func:`check_spec` for every spec whose schema is valid, so everything
the evaluator would refuse later (an unknown dataset or sampler, a dataset whose images do
not match ``image``, missing data files, sampler steps beyond ``diffusion.timesteps``) is
refused by ``archsearch validate`` instead.
"""
from __future__ import annotations

from typing import Any

from archspec.errors import Problem
from evaluator.data.datasets import dataset_problems
from evaluator.store.rundir import is_reading_stored_run


def check_spec(spec: Any) -> list[Problem]:
    """Problems with the spec's dataset and samplers, each located."""
    from evaluator.diffusion.processes import process_problems

    return (dataset_problems(spec) + sampler_problems(spec) + convergence_problems(spec)
            + init_from_problems(spec) + process_problems(spec))


def convergence_problems(spec: Any) -> list[Problem]:
    """``evaluate.convergence``: a known sampler that can apply the clip policy and
    prediction, with steps within ``diffusion.timesteps``."""
    c = spec.evaluate.convergence
    if c is None:
        return []
    loc, big = "evaluate.convergence", spec.diffusion.timesteps
    out = ([Problem(f"{loc}.steps", f"{c.steps} steps exceed diffusion.timesteps ({big}); "
                    f"use 1..{big}")] if c.steps > big else [])
    return out + _sampler_name_problems(spec, f"{loc}.sampler", c.sampler)


def init_from_problems(spec: Any) -> list[Problem]:
    """``train.init_from`` must be a finished run folder with its checkpoint."""
    src = spec.train.init_from
    if src is None or is_reading_stored_run():
        return []
    from pathlib import Path

    p, loc = Path(src), "train.init_from"
    if not p.is_dir():
        return [Problem(loc, f"{src}: no such run folder")]
    if not (p / "spec.resolved.json").is_file():
        return [Problem(loc, f"{src}: not a run folder (no spec.resolved.json)")]
    from evaluator.store.rundir import RunDir

    try:
        status = RunDir.open(p).status().get("status")
    except Exception as e:  # noqa: BLE001 - any unreadable run is refused
        return [Problem(loc, f"{src}: unreadable run ({e})")]
    if status != "finished":
        return [Problem(loc, f"{src}: run is not finished (status {status}); train it first")]
    if not (p / "checkpoint.pt").is_file():
        return [Problem(loc, f"{src}: the run has no checkpoint.pt")]
    return []


def sampler_problems(spec: Any) -> list[Problem]:
    """Sampler names, their clip and prediction support, and steps within timesteps."""
    out, big = [], spec.diffusion.timesteps
    for i, s in enumerate(spec.evaluate.samplers):
        loc = f"evaluate.samplers[{i}]"
        for j, n in enumerate(s.steps):
            if n > big:
                out.append(Problem(f"{loc}.steps[{j}]", f"{n} steps exceed "
                                   f"diffusion.timesteps ({big}); use 1..{big}"))
        out += _sampler_name_problems(spec, f"{loc}.name", s.name)
    return out


def _sampler_name_problems(spec: Any, loc: str, name: str) -> list[Problem]:
    """A registered sampler that supports the spec's clip policy and prediction."""
    from evaluator.diffusion.samplers import sampler_problems

    return [Problem(loc, m) for m in sampler_problems(name, spec.evaluate.clip,
                                                      spec.diffusion.prediction,
                                                      spec.diffusion.process.kind)]
