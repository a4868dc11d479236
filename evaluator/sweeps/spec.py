"""The sweep file: base spec, factors (dotted spec paths or bundles), design, repeats,
objective and budget; loading, validation and resolution of every row into a spec. The
pydantic models and data classes live in :mod:`evaluator.sweeps.schema` (re-exported here).

A sweep file is read with the spec loader (:func:`archspec.loading.read_document`: YAML
safe loading, size limits) and validated with pydantic; every problem is reported at once
with its location. Every row of a fixed design is then resolved and validated as a spec
before anything trains.

Example::

    name: toggles
    base: ../specs/spectral_unet_8.yaml        # path (relative to this file) or a mapping
    overrides: [train.steps=200]               # applied to the base first
    factors:
      conv: {path: vars.block, levels: [complex_resblock, dual_resblock]}
      loss:                                    # a bundle: each level sets several paths
        levels:
          pixel:   {diffusion.loss.domain: pixel, diffusion.loss.freq_weighting: uniform}
          fourier: {diffusion.loss.domain: fourier, diffusion.loss.freq_weighting: power_law}
    design: {type: taguchi, array: L4}         # grid | random | tpe (with trials, seed)
    repeats: 2                                 # training seeds per row: train.seed + r
    objective: {metric: FD-digits, sampler: dpmsolver++, steps: 20, direction: minimize}
    secondary: [{metric: spectral-RAPS-dist, sampler: dpmsolver++, steps: 20}]
    budget: {train_steps: 200, batch_size: 32, num_samples: 64, seeds: 1}
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from archspec.errors import Problem, SpecError, UserError
from evaluator.sweeps.schema import (  # noqa: F401 - the schema is part of this API
    SWEEP_VERSION, BudgetSpec, Design, Factor, LoadedSweep, Metric, Objective, Row, Sweep,
    _pydantic_problems, level_label,
)


def load_sweep(path: str | Path) -> LoadedSweep:
    """Read, validate and resolve a sweep file; :class:`UserError` lists every problem."""
    from archspec.loading import read_document

    data = read_document(path)
    return from_data(data, source=str(path), base_dir=Path(path).parent)


def from_data(data: dict[str, Any], source: str | None = None,
              base_dir: Path | None = None) -> LoadedSweep:
    try:
        sweep = Sweep.model_validate(data)
    except ValidationError as e:
        raise UserError(_pydantic_problems(e), source) from None
    base = _base_data(sweep, base_dir, source)
    problems = _path_problems(sweep, base)
    if problems:
        raise UserError(problems, source)
    loaded = LoadedSweep(sweep, base, source, rows=[])
    _design_rows(loaded)
    return loaded


def _base_data(sweep: Sweep, base_dir: Path | None, source: str | None) -> dict[str, Any]:
    from archspec.loading import read_document

    if isinstance(sweep.base, dict):
        return json.loads(json.dumps(sweep.base))
    p = Path(sweep.base)
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    try:
        return read_document(p)
    except SpecError as e:
        raise UserError([Problem("base", str(pr)) for pr in e.problems], source) from None


def _get(data: Any, keys: list[str]) -> tuple[bool, Any]:
    for k in keys:
        if not isinstance(data, dict) or k not in data:
            return False, None
        data = data[k]
    return True, data


def _path_problems(sweep: Sweep, base: dict[str, Any]) -> list[Problem]:
    """Unknown factor paths: the parent must exist in the base (after its overrides),
    or, for spec sections with defaults, be one of the spec model's fields."""
    from archspec.loading import apply_overrides

    try:
        data = apply_overrides(json.loads(json.dumps(base)), list(sweep.overrides))
    except SpecError as e:
        return [Problem("overrides", str(p)) for p in e.problems]
    out = []
    paths = [(f"factors.{name}", p) for name, f in sweep.factors.items()
             for i in range(len(f.labels())) for p in f.settings(i)]
    paths.append(("seed_path", sweep.seed_path))
    seen = set()
    for loc, p in paths:
        if (loc, p) in seen:
            continue
        seen.add((loc, p))
        msg = _check_path(data, p)
        if msg:
            out.append(Problem(loc, f"{p}: {msg}"))
    return out


def _check_path(data: dict[str, Any], path: str) -> str | None:
    from archspec.spec import Spec

    keys = path.split(".")
    if not all(keys):
        return "empty key in path"
    found, _ = _get(data, keys)
    if found:
        return None
    if keys[0] == "vars" and len(keys) == 2:  # a misspelt variable would change nothing
        have = ", ".join(sorted(data.get("vars") or {})) or "none"
        return f"no variable {keys[1]!r} in the base spec's vars (defined: {have})"
    # a section the base leaves to its defaults (diffusion.loss.domain) is still a path
    model: Any = Spec
    for i, k in enumerate(keys):
        if model is None or not hasattr(model, "model_fields"):
            break
        if k not in model.model_fields:
            ok, parent = _get(data, keys[:i])
            if ok and isinstance(parent, dict) and i == len(keys) - 1 and (
                    model.model_config.get("extra") == "allow" or keys[0] == "vars"):
                return None
            return f"unknown path (no {'.'.join(keys[:i + 1])!r} in the base spec)"
        ann = model.model_fields[k].annotation
        model = ann if isinstance(ann, type) else None
    ok, parent = _get(data, keys[:-1])
    if ok and not isinstance(parent, dict):
        return f"{'.'.join(keys[:-1])} is not a mapping"
    return None


def _design_rows(ls: LoadedSweep) -> None:
    from evaluator.sweeps import designs

    sw = ls.sweep
    n_levels = [len(f.labels()) for f in sw.factors.values()]
    if sw.design.type == "grid":
        ls.rows = designs.grid_rows(n_levels)
        return
    if sw.design.type != "taguchi":
        return
    try:
        oa = designs.get_array(sw.design.array)
    except ValueError as e:
        raise UserError([Problem("design.array", str(e))], ls.source) from None
    names = ls.factor_names
    if len(names) > len(oa.levels):
        raise UserError([Problem("factors", f"{len(names)} factors, but {oa.describe()} has "
                                 f"only {len(oa.levels)} columns; choose a larger array")],
                        ls.source)
    try:
        cols = designs.assign_columns(oa, n_levels, [f.column for f in sw.factors.values()])
    except designs.AssignmentError as e:
        raise UserError([Problem(f"factors.{names[i]}", m) for i, m in e.problems],
                        ls.source) from None
    ls.rows, ls.array, ls.columns = designs.taguchi_rows(oa, cols), oa.name, cols


# ---- resolution -------------------------------------------------------------------------
def budget_of(sweep: Sweep):
    """The :class:`evaluator.pipeline.budgets.Budget`; a custom one is named by its settings'
    digest so that its results are stored (and reused) apart from other budgets."""
    from evaluator.pipeline.budgets import Budget, get_budget

    if isinstance(sweep.budget, str):
        return get_budget(sweep.budget)
    d = sweep.budget.model_dump()
    if d["reference"]:  # the default stays out of the digest: older sweeps keep their runs
        del d["reference"]
    digest = hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]
    return Budget(name=f"sweep-{digest}", **d)


def resolve(ls: LoadedSweep, labels: dict[str, str], repeat: int = 0) -> Any:
    """The validated spec (budget applied) for factor level labels and a repeat index.

    Raises :class:`SpecError` with the spec's problems."""
    from archspec import spec_from_dict
    from evaluator.pipeline.budgets import apply_budget

    sw = ls.sweep
    overrides = list(sw.overrides)
    for name, label in labels.items():
        f = sw.factors[name]
        i = f.labels().index(label)
        overrides += [f"{p}={json.dumps(v)}" for p, v in f.settings(i).items()]
    data = json.loads(json.dumps(ls.base))
    data = _set_defaults_parents(data, overrides)
    spec = spec_from_dict(data, overrides)
    if repeat:
        from archspec import canonical

        found, seed = _get(canonical(spec), sw.seed_path.split("."))
        if not found or not isinstance(seed, int) or isinstance(seed, bool):
            raise SpecError([Problem("seed_path", f"{sw.seed_path} is not an integer in "
                                     f"the resolved spec ({seed!r})")])
        spec = spec_from_dict(data, overrides + [f"{sw.seed_path}={seed + repeat}"])
    spec = apply_budget(spec, budget_of(sw))
    _check_loss(spec)
    return spec


def _set_defaults_parents(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Create the mappings an override's parent needs when the base leaves the section
    to its defaults (``diffusion.loss`` absent), so the override can set it."""
    for text in overrides:
        keys = text.split("=", 1)[0].strip().split(".")
        node = data
        for k in keys[:-1]:
            if k not in node:
                node[k] = {}
            node = node[k]
            if not isinstance(node, dict):
                break
    return data


def _check_loss(spec: Any) -> None:
    """The loss settings the trainer would refuse (e.g. a frequency weighting with a
    pixel-domain loss), found here with a zero batch instead of after training starts."""
    import torch

    from evaluator.diffusion.losses import diffusion_loss
    from evaluator.diffusion.schedules import NoiseSchedule

    loss = spec.diffusion.loss
    if loss.freq_weighting == "snr":
        return  # needs the data spectrum; the trainer computes it
    c, s = spec.image.channels, spec.image.size
    z = torch.zeros(1, c, s, s)
    try:
        diffusion_loss(z, z, torch.zeros(1, dtype=torch.long),
                       NoiseSchedule.from_spec(spec.diffusion), loss, spec.diffusion.prediction)
    except ValueError as e:
        raise SpecError([Problem("diffusion.loss", str(e))]) from None


MAX_OPEN_CHECK = 256


def check_combinations(ls: LoadedSweep) -> list[list[int]]:
    """What to validate up front: the rows of a fixed design; for random / TPE every
    combination when there are at most MAX_OPEN_CHECK, else each level of each factor
    with the others at their first level."""
    from evaluator.sweeps.designs import grid_rows

    if ls.fixed:
        return ls.rows
    n_levels = [len(f.labels()) for f in ls.sweep.factors.values()]
    if math.prod(n_levels) <= MAX_OPEN_CHECK:
        return grid_rows(n_levels)
    out = [[0] * len(n_levels)]
    for j, k in enumerate(n_levels):
        out += [[lv if i == j else 0 for i in range(len(n_levels))] for lv in range(1, k)]
    return out


def resolve_rows(ls: LoadedSweep, repeat: int = 0) -> list[Row]:
    """Every row to check (see :func:`check_combinations`) resolved and validated, the
    problems collected per row."""
    from evaluator.store.rundir import hash_spec

    out = []
    for i, idx in enumerate(check_combinations(ls)):
        row = Row(i, ls.labels_of(idx))
        try:
            row.spec = resolve(ls, row.levels, repeat)
            row.spec_hash = hash_spec(row.spec)
        except SpecError as e:
            row.problems = [str(p) for p in e.problems]
        out.append(row)
    return out


def check_rows(ls: LoadedSweep) -> list[Row]:
    """Resolve every row; :class:`UserError` naming each invalid row and its levels."""
    rows = resolve_rows(ls)
    problems = []
    for r in rows:
        lv = ", ".join(f"{k}={v}" for k, v in r.levels.items())
        problems += [Problem(f"row {r.index + 1} ({lv})", p) for p in r.problems]
    if problems:
        raise UserError(problems, ls.source)
    _check_objective_sampler(ls, rows)
    return rows


def _check_objective_sampler(ls: LoadedSweep, rows: list[Row]) -> None:
    """The objective's (sampler, steps) must be in every row's evaluation plan."""
    from evaluator.pipeline.budgets import check_samplers, sampler_plan

    budget = budget_of(ls.sweep)
    problems = []
    for m, loc in [(ls.sweep.objective, "objective"),
                   *[(s, f"secondary[{i}]") for i, s in enumerate(ls.sweep.secondary)]]:
        if m.sampler is None:
            continue
        for r in rows[:1] if rows else []:
            check_samplers(r.spec, budget)
            plan = sampler_plan(r.spec, budget)
            if (m.sampler, m.steps) not in plan:
                problems.append(Problem(loc, f"({m.sampler}, {m.steps}) is not evaluated "
                                        f"under this budget; evaluated: {plan}"))
    if problems:
        raise UserError(problems, ls.source)
