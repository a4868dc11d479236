"""The evaluator's contribution to spec validation (entry point ``archsearch.checks``).

``archspec`` calls :func:`check_spec` for every spec whose schema is valid, so everything
the evaluator would refuse later (an unknown dataset or sampler, a dataset whose images do
not match ``image``, missing data files, sampler steps beyond ``diffusion.timesteps``) is
refused by ``archsearch validate`` instead.
"""
from __future__ import annotations

from typing import Any

from archspec.errors import Problem
from blocks.registry import RegistryError
from evaluator.datasets import dataset_problems


def check_spec(spec: Any) -> list[Problem]:
    """Problems with the spec's dataset and samplers, each located."""
    return dataset_problems(spec) + sampler_problems(spec)


def _known(registry: Any, name: str) -> str:
    try:
        registry.get(name)
    except RegistryError as e:
        return f"{e}; known: {', '.join(registry.names())}"
    return ""


def sampler_problems(spec: Any) -> list[Problem]:
    """Sampler names, their clip and prediction support, and steps within timesteps."""
    from evaluator.samplers import SAMPLERS

    out, pred, clip = [], spec.diffusion.prediction, spec.evaluate.clip
    big = spec.diffusion.timesteps
    for i, s in enumerate(spec.evaluate.samplers):
        loc = f"evaluate.samplers[{i}]"
        for j, n in enumerate(s.steps):
            if n > big:
                out.append(Problem(f"{loc}.steps[{j}]", f"{n} steps exceed "
                                   f"diffusion.timesteps ({big}); use 1..{big}"))
        unknown = _known(SAMPLERS, s.name)
        if unknown:
            out.append(Problem(f"{loc}.name", unknown))
            continue
        extra = SAMPLERS.get(s.name).extra
        if clip not in extra.get("clip", (clip,)):
            out.append(Problem(f"{loc}.name", f"sampler {s.name!r} cannot apply clip policy "
                               f"{clip!r} (it supports {', '.join(extra['clip'])}); samplers "
                               "compared must share one"))
        if pred not in extra.get("predictions", (pred,)):
            out.append(Problem(f"{loc}.name", f"sampler {s.name!r} does not support "
                               f"prediction {pred!r} (it supports "
                               f"{', '.join(extra['predictions'])})"))
    return out
