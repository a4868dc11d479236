"""Evaluation budgets (``quick``, ``full``; table in :mod:`evaluator.pipeline.evaluate`) and
the sampler plan a budget gives a spec."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from archspec.errors import UserError


REFERENCE_SAMPLER = "ddpm"


@dataclass(frozen=True)
class Budget:
    """How much of a spec's declared training/evaluation a budget runs (None = all)."""

    name: str
    train_steps: int | None = None
    batch_size: int | None = None
    num_samples: int | None = None
    steps_per_sampler: int | None = None
    max_sampler_steps: int | None = None
    seeds: int | None = None
    reference: bool = True  # add DDPM at the full T (the fair-comparison reference)


BUDGETS = {
    "quick": Budget("quick", train_steps=600, batch_size=64, num_samples=128,
                    steps_per_sampler=2, max_sampler_steps=20, seeds=1),
    "full": Budget("full"),
}


def get_budget(name: str) -> Budget:
    try:
        return BUDGETS[name]
    except KeyError:
        raise UserError(f"unknown budget {name!r} (choose from {', '.join(BUDGETS)})") from None


def apply_budget(spec: Any, budget: Budget) -> Any:
    """The spec a budget trains: steps and batch size capped (a new hash when changed)."""
    overrides = []
    if budget.train_steps is not None and spec.train.steps > budget.train_steps:
        overrides.append(f"train.steps={budget.train_steps}")
    if budget.batch_size is not None and spec.train.batch_size > budget.batch_size:
        overrides.append(f"train.batch_size={budget.batch_size}")
    if not overrides:
        return spec
    from archspec import canonical, spec_from_dict

    return spec_from_dict(canonical(spec), overrides, source=spec.validated.source)


def sampler_plan(spec: Any, budget: Budget) -> list[tuple[str, int]]:
    """(sampler, steps) pairs to evaluate; the DDPM full-T reference comes last (a
    screening budget may leave it out with ``reference=False``)."""
    plan: list[tuple[str, int]] = []
    for s in spec.evaluate.samplers:
        steps = sorted(set(s.steps))
        if budget.max_sampler_steps is not None:
            steps = [n for n in steps if n <= budget.max_sampler_steps] or steps[:1]
        if budget.steps_per_sampler is not None:
            steps = steps[: budget.steps_per_sampler]
        plan += [(s.name, n) for n in steps if (s.name, n) not in plan]
    ref = (REFERENCE_SAMPLER, spec.diffusion.timesteps)
    return [p for p in plan if p != ref] + ([ref] if budget.reference else [])


def eval_settings(spec: Any, budget: Budget) -> dict[str, Any]:
    e = spec.evaluate
    n = min(e.num_samples, budget.num_samples or e.num_samples)
    seeds = list(e.seeds)[: budget.seeds or len(e.seeds)]
    return {"budget": budget.name, "num_samples": n, "seeds": seeds, "clip": e.clip,
            "plan": [list(p) for p in sampler_plan(spec, budget)]}


def check_samplers(spec: Any, budget: Budget) -> None:
    """Raise :class:`UserError` for unknown samplers before anything is trained."""
    from evaluator.diffusion.samplers import sampler_problems

    bad = [m for name, _ in sampler_plan(spec, budget) for m in sampler_problems(name)]
    if bad:
        raise UserError([f"evaluate.samplers: {m}" for m in bad], spec.validated.source)
