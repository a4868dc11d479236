"""The evaluator's contribution to spec validation (entry point ``archsearch.checks``).

``archspec`` calls :func:`check_spec` for every spec whose schema is valid, so everything
the evaluator would refuse later (an unknown dataset or sampler, a dataset whose images do
not match ``image``, missing data files, sampler steps beyond ``diffusion.timesteps``) is
refused by ``archsearch validate`` instead.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator

from archspec.errors import Problem
from blocks.registry import RegistryError
from evaluator.datasets import dataset_problems


# True while a run folder's own stored spec is re-read: its warm start already happened,
# so a source run moved or deleted since must not make the trained run unreadable.
_STORED_RUN: ContextVar[bool] = ContextVar("stored_run", default=False)


@contextmanager
def reading_stored_run() -> Iterator[None]:
    """Validate a run's stored spec without re-checking ``train.init_from``."""
    token = _STORED_RUN.set(True)
    try:
        yield
    finally:
        _STORED_RUN.reset(token)


def check_spec(spec: Any) -> list[Problem]:
    """Problems with the spec's dataset and samplers, each located."""
    from evaluator.processes import process_problems

    return (dataset_problems(spec) + sampler_problems(spec) + convergence_problems(spec)
            + init_from_problems(spec) + process_problems(spec))


def _known(registry: Any, name: str) -> str:
    try:
        registry.get(name)
    except RegistryError as e:
        return f"{e}; known: {', '.join(registry.names())}"
    return ""


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
    if src is None or _STORED_RUN.get():
        return []
    from pathlib import Path

    p, loc = Path(src), "train.init_from"
    if not p.is_dir():
        return [Problem(loc, f"{src}: no such run folder")]
    if not (p / "spec.resolved.json").is_file():
        return [Problem(loc, f"{src}: not a run folder (no spec.resolved.json)")]
    from evaluator.runs import RunDir

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
    from evaluator.samplers import SAMPLERS

    pred, clip = spec.diffusion.prediction, spec.evaluate.clip
    unknown = _known(SAMPLERS, name)
    if unknown:
        return [Problem(loc, unknown)]
    out, extra = [], SAMPLERS.get(name).extra
    if clip not in extra.get("clip", (clip,)):
        out.append(Problem(loc, f"sampler {name!r} cannot apply clip policy "
                           f"{clip!r} (it supports {', '.join(extra['clip'])}); samplers "
                           "compared must share one"))
    proc = spec.diffusion.process.kind
    if proc != "isotropic" and not extra.get("follows_process", False):
        able = [n for n, e in SAMPLERS.items() if e.extra.get("follows_process", False)]
        out.append(Problem(loc, f"sampler {name!r} cannot follow the {proc!r} forward "
                           f"process (diffusion.process); samplers that can: "
                           f"{', '.join(able)}"))
    if pred not in extra.get("predictions", (pred,)):
        out.append(Problem(loc, f"sampler {name!r} does not support "
                           f"prediction {pred!r} (it supports "
                           f"{', '.join(extra['predictions'])})"))
    return out
