"""The sweep file's schema (pydantic models: factors, design, objective, budget) and the
loaded sweep's data classes; :mod:`evaluator.sweeps.spec` loads and resolves them."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from archspec.errors import Problem

SWEEP_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Factor(_Strict):
    """One factor: a dotted spec ``path`` with a list of ``levels``, or a bundle whose
    ``levels`` map a label to ``{path: value}`` settings."""

    path: str | None = Field(None, description="dotted spec path, as in --override")
    levels: list[Any] | dict[str, dict[str, Any]] = Field(min_length=2)
    column: int | None = Field(None, ge=1, description="orthogonal-array column (1-based)")

    @model_validator(mode="after")
    def _check(self) -> "Factor":
        if isinstance(self.levels, list):
            if self.path is None:
                raise ValueError("a factor with a list of levels needs a 'path'; "
                                 "a bundle maps level labels to {path: value}")
            labels = [level_label(v) for v in self.levels]
            if len(set(labels)) != len(labels):
                raise ValueError(f"levels repeat: {labels}")
        elif self.path is not None:
            raise ValueError("a bundle's levels set their own paths; remove 'path'")
        else:
            for label, settings in self.levels.items():
                if not settings:
                    raise ValueError(f"bundle level {label!r} sets no path")
        return self

    def labels(self) -> list[str]:
        if isinstance(self.levels, dict):
            return list(self.levels)
        return [level_label(v) for v in self.levels]

    def settings(self, i: int) -> dict[str, Any]:
        """``{path: value}`` that level ``i`` sets."""
        if isinstance(self.levels, dict):
            return dict(list(self.levels.values())[i])
        return {self.path: self.levels[i]}


class Design(_Strict):
    type: Literal["taguchi", "grid", "random", "tpe"]
    array: str | None = Field(None, description="orthogonal array for taguchi: L4, L8, L9...")
    trials: int | None = Field(None, ge=1, le=100_000, description="for random / tpe")
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> "Design":
        if self.type == "taguchi" and not self.array:
            raise ValueError("a taguchi design needs 'array' (e.g. L8)")
        if self.type != "taguchi" and self.array:
            raise ValueError(f"'array' is for taguchi designs, not {self.type}")
        if self.type in ("random", "tpe") and self.trials is None:
            raise ValueError(f"a {self.type} design needs 'trials'")
        if self.type in ("taguchi", "grid") and self.trials is not None:
            raise ValueError(f"'trials' is for random/tpe designs; a {self.type} design "
                             "runs each row")
        return self


class Metric(_Strict):
    """A number in a run's ``metrics.json``: an evaluation metric of one (sampler, steps)
    row when ``sampler`` is given, else a dotted path (``train.loss_drop``)."""

    metric: str = Field(min_length=1)
    sampler: str | None = None
    steps: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _check(self) -> "Metric":
        if (self.sampler is None) != (self.steps is None):
            raise ValueError("give both 'sampler' and 'steps', or neither")
        return self

    @property
    def key(self) -> str:
        return f"{self.metric}@{self.sampler}:{self.steps}" if self.sampler else self.metric


class Objective(Metric):
    direction: Literal["minimize", "maximize"] = "minimize"
    sn: Literal["smaller", "larger", "nominal"] | None = Field(
        None, description="Taguchi S/N type; default smaller for minimize, larger for maximize")

    @property
    def sn_type(self) -> str:
        return self.sn or ("smaller" if self.direction == "minimize" else "larger")


class BudgetSpec(_Strict):
    """Caps on the spec's training and evaluation (see ``evaluator.pipeline.budgets.Budget``)."""

    train_steps: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    num_samples: int | None = Field(None, ge=1)
    steps_per_sampler: int | None = Field(None, ge=1)
    max_sampler_steps: int | None = Field(None, ge=1)
    seeds: int | None = Field(None, ge=1)
    reference: bool = Field(True, description="add the DDPM reference at the full T (false: "
                            "only the spec's samplers, for cheap screening sweeps)")


class Sweep(_Strict):
    sweep_version: int = SWEEP_VERSION
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    base: str | dict[str, Any]
    overrides: list[str] = Field(default_factory=list)
    factors: dict[str, Factor] = Field(min_length=1)
    design: Design
    repeats: int = Field(1, ge=1, le=100)
    seed_path: str = Field("train.seed", description="path that repeat r sets to base + r")
    objective: Objective
    secondary: list[Metric] = Field(default_factory=list)
    budget: Literal["quick", "full"] | BudgetSpec = "quick"


def level_label(v: Any) -> str:
    """A level value as a short label (``complex_resblock``, ``0.001``, ``[1, 2]``)."""
    return v if isinstance(v, str) else json.dumps(v)


@dataclass
class Row:
    """One resolved design row (one per repeat is a trial)."""

    index: int
    levels: dict[str, str]                   # factor -> level label
    spec: Any = None                         # validated Spec (budget applied)
    spec_hash: str | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class LoadedSweep:
    """A validated sweep with its base spec data and design rows (level indices)."""

    sweep: Sweep
    base: dict[str, Any]
    source: str | None
    rows: list[list[int]]                    # per row, level index per factor ([] for open)
    array: str | None = None
    columns: list[int] | None = None

    @property
    def factor_names(self) -> list[str]:
        return list(self.sweep.factors)

    @property
    def fixed(self) -> bool:
        return self.sweep.design.type in ("taguchi", "grid")

    def labels_of(self, level_idx: list[int]) -> dict[str, str]:
        return {f: self.sweep.factors[f].labels()[i]
                for f, i in zip(self.factor_names, level_idx)}

    def to_data(self) -> dict[str, Any]:
        """Self-contained plain data (base spec inlined) that :func:`from_data` restores;
        stored in the study so a worker on another machine needs no files."""
        d = self.sweep.model_dump(mode="json")
        d["base"] = self.base
        return d


def _pydantic_problems(e: ValidationError) -> list[Problem]:
    out = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("function-",)))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        out.append(Problem(loc, msg))
    return out
