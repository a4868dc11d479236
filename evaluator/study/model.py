"""The study file: questions, pipelines, datasets, seeds, sampler grid, experiments,
analyses and budgets; validated with pydantic (extra keys forbidden) and compiled into
sweep definitions that the sweep engine (:mod:`evaluator.sweeps`) runs.

One experiment x pipeline x budget is one sweep. Its design is compiled into a single
bundle factor ``cell`` whose levels are the experiment's design rows crossed with the
training seeds (each level sets the factor paths and ``train.seed``), so the sweep engine
runs a full grid, an orthogonal array (``taguchi``) or a seed-rotated fraction (``latin``:
each factor combination once, seed = sum of level indices mod the number of seeds) with
the same machinery. Budget settings (steps, batch, N, noise seeds, sampler grid) become
spec overrides, so two experiments asking for the same training reuse one run by spec hash.

An experiment may train on another dataset than its budget's (``dataset:``), one that each
budget declares under ``extra_datasets`` (its image size, and its own training length
where given) and for which each of its pipelines names a spec (``specs_for``). Left out,
nothing of a study changes: the stored definition and every spec hash stay as before.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from archspec.errors import Problem, SpecError, UserError
from evaluator.sweeps.spec import Factor, _pydantic_problems

STUDY_VERSION = 1
ANALYSES = ("q1_nfe", "q2_stability", "q3_weighting", "q4_robustness", "ablation")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SamplerSetting(_Strict):
    name: str = Field(min_length=1)
    steps: list[int] = Field(min_length=1)


class SamplerGrid(_Strict):
    """The fair-comparison grid: every sampler at every NFE, plus the reference."""

    names: list[str] = Field(min_length=1)
    nfe: list[int] = Field(min_length=1)
    reference: SamplerSetting

    def settings(self) -> list[dict[str, Any]]:
        return [{"name": n, "steps": sorted(self.nfe)} for n in self.names] + [
            self.reference.model_dump()]


class Pipeline(_Strict):
    role: Literal["spatial", "spectral", "hybrid", "dual"]
    spec: dict[str, str] = Field(description="budget -> spec file (relative to the study)")
    specs_for: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="extra dataset -> budget -> spec file, for "
        "experiments that train on a dataset other than the budget's")
    overrides: list[str] = Field(default_factory=list)
    description: str = ""


class Convergence(_Strict):
    every: int = Field(ge=1)
    sampler: str = "dpmsolver++"
    steps: int = Field(20, ge=1)
    num_samples: int = Field(128, ge=1)


class BandProbe(_Strict):
    """Per-timestep denoising error on held-out data (Q3)."""

    num_images: int = Field(128, ge=1)
    t_bins: int = Field(10, ge=1, le=100)
    bands: int = Field(4, ge=1, le=64)
    seed: int = Field(0, ge=0)


class ExtraDataset(_Strict):
    """Another dataset experiments may name under a budget: its image size and, where
    given, its own training and evaluation sizes (default: the budget's)."""

    image_size: int = Field(ge=1)
    train_steps: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    num_samples: int | None = Field(None, ge=1)


class Budget(_Strict):
    description: str = ""
    dataset: str = Field(min_length=1)
    image_size: int = Field(ge=1)
    train_steps: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    num_samples: int = Field(ge=1)
    noise_seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    convergence: Convergence
    band_probe: BandProbe = Field(default_factory=BandProbe)
    reference: bool = Field(True, description="false: never add DDPM at T (screening)")
    estimate_hours: float | None = Field(None, description="the dry-run estimate, noted")
    extra_datasets: dict[str, ExtraDataset] = Field(
        default_factory=dict, description="datasets experiments may train on besides "
        "`dataset` (FD-<dataset> each)")


class Design(_Strict):
    type: Literal["grid", "taguchi", "latin"] = "grid"
    array: str | None = None

    @model_validator(mode="after")
    def _check(self) -> "Design":
        if (self.type == "taguchi") != (self.array is not None):
            raise ValueError("'array' is required for taguchi designs and only for them")
        return self


class ClipProbe(_Strict):
    """FD of a trained run under other x0 clip policies (no retraining)."""

    policies: list[Literal["none", "clip", "dynamic"]] = Field(min_length=2)
    samplers: list[SamplerSetting] = Field(min_length=1)


class Experiment(_Strict):
    description: str = ""
    pipelines: list[str] = Field(min_length=1)
    factors: dict[str, Factor] = Field(default_factory=dict)
    design: Design = Field(default_factory=Design)
    design_for: dict[str, Design] = Field(default_factory=dict,
                                          description="budget -> design (fractional on CPU)")
    seeds: int | None = Field(None, ge=1, description="default: the study's seeds")
    samplers: Literal["grid"] | list[SamplerSetting] = "grid"
    reference: bool = Field(False, description="add DDPM at T (the grid has it already)")
    convergence: bool = False
    clip_probe: ClipProbe | None = None
    band_probe: bool = False
    overrides: list[str] = Field(default_factory=list)
    dataset: str | None = Field(None, min_length=1, description="default: the budget's "
                                "dataset; else one of each budget's extra_datasets")

    def design_of(self, budget: str) -> Design:
        return self.design_for.get(budget, self.design)


class Question(_Strict):
    text: str = Field(min_length=1)
    analysis: Literal[ANALYSES]
    experiments: list[str] = Field(min_length=1)
    settings: dict[str, Any] = Field(default_factory=dict)


class Study(_Strict):
    study_version: int = STUDY_VERSION
    name: str = Field(min_length=1, max_length=60, pattern=r"^[A-Za-z0-9_\-]+$")
    description: str = ""
    questions: dict[str, Question] = Field(min_length=1)
    pipelines: dict[str, Pipeline] = Field(min_length=1)
    datasets: dict[str, str] = Field(description="budget -> dataset (FD-<dataset>)")
    seeds: list[int] = Field(min_length=3, description="training seeds (>= 3)")
    samplers: SamplerGrid
    experiments: dict[str, Experiment] = Field(min_length=1)
    budgets: dict[str, Budget] = Field(min_length=1)


class LoadedStudy:
    """A validated study with each pipeline's spec data per budget."""

    def __init__(self, study: Study, specs: dict[tuple[str, str], dict], source: str | None):
        self.study, self.specs, self.source = study, specs, source

    def spec_of(self, pipeline: str, budget: str, experiment: str) -> dict:
        """The spec data ``pipeline`` trains from in ``experiment`` under ``budget``."""
        ds = self.study.experiments[experiment].dataset
        if ds is None or ds == self.study.budgets[budget].dataset:
            return self.specs[(pipeline, budget)]
        return self.specs[(pipeline, f"{budget}@{ds}")]

    def to_data(self) -> dict[str, Any]:
        return {"study": _without_unset_extensions(self.study.model_dump(mode="json")),
                "specs": {f"{p}@{b}": d for (p, b), d in self.specs.items()}}


def _without_unset_extensions(d: dict[str, Any]) -> dict[str, Any]:
    """The study's dump less the per-experiment dataset fields where unused, so a study
    that does not use them is stored exactly as before they existed (an unchanged stored
    definition is what lets a running study resume)."""
    for e in d["experiments"].values():
        if e.get("dataset") is None:
            e.pop("dataset", None)
    for b in d["budgets"].values():
        if not b.get("extra_datasets"):
            b.pop("extra_datasets", None)
    for p in d["pipelines"].values():
        if not p.get("specs_for"):
            p.pop("specs_for", None)
    return d


def from_data(data: dict[str, Any]) -> LoadedStudy:
    """Restore :meth:`LoadedStudy.to_data` (stored in the Optuna storage); a dataset
    spec's key is ``pipeline@budget@dataset``."""
    specs = {tuple(k.split("@", 1)): v for k, v in data["specs"].items()}
    return LoadedStudy(Study.model_validate(data["study"]), specs, "stored study")


def dataset_of(ls: LoadedStudy, experiment: str, budget: str) -> str:
    """The dataset ``experiment`` trains on under ``budget`` (FD-<dataset>)."""
    return ls.study.experiments[experiment].dataset or ls.study.budgets[budget].dataset


def sizes(ls: LoadedStudy, experiment: str, budget: str) -> dict[str, Any]:
    """dataset, image_size, train_steps, batch_size, num_samples of ``experiment``."""
    b = ls.study.budgets[budget]
    out = {"dataset": b.dataset, "image_size": b.image_size, "train_steps": b.train_steps,
           "batch_size": b.batch_size, "num_samples": b.num_samples}
    ds = dataset_of(ls, experiment, budget)
    extra = b.extra_datasets.get(ds) if ds != b.dataset else None
    if extra is not None:
        out.update({"dataset": ds, **{k: v for k, v in extra.model_dump().items()
                                      if v is not None}})
    return out


def load_study_file(path: str | Path) -> LoadedStudy:
    """Read and validate a study file; :class:`UserError` lists every problem."""
    from archspec.loading import read_document

    source = str(path)
    data = read_document(path)
    try:
        study = Study.model_validate(data)
    except ValidationError as e:
        raise UserError(_pydantic_problems(e), source) from None
    problems = _reference_problems(study) + _dataset_problems(study)
    specs: dict[tuple[str, str], dict] = {}
    for pname, p in study.pipelines.items():
        for b in study.budgets:
            if b not in p.spec:
                problems.append(Problem(f"pipelines.{pname}.spec", f"no spec for budget {b!r}"))
                continue
            problems += _read_spec(specs, (pname, b), Path(path).parent / p.spec[b],
                                   f"pipelines.{pname}.spec.{b}", study.budgets[b].image_size,
                                   f"budget {b!r}")
        for ds, per_budget in p.specs_for.items():
            for b, f in per_budget.items():
                extra = study.budgets[b].extra_datasets.get(ds) if b in study.budgets else None
                if extra is not None:  # else a problem _dataset_problems names
                    problems += _read_spec(specs, (pname, f"{b}@{ds}"), Path(path).parent / f,
                                           f"pipelines.{pname}.specs_for.{ds}.{b}",
                                           extra.image_size, f"budgets.{b}.extra_datasets.{ds}")
    if problems:
        raise UserError(problems, source)
    return LoadedStudy(study, specs, source)


def _read_spec(specs: dict, key: tuple[str, str], f: Path, loc: str, size: int,
               owner: str) -> list[Problem]:
    """Read one spec file into ``specs[key]``; its problems (unreadable, wrong size)."""
    from archspec.loading import read_document

    try:
        specs[key] = read_document(f)  # an absolute path stays absolute under `/`
    except SpecError as e:
        return [Problem(loc, str(pr)) for pr in e.problems]
    got = (specs[key].get("image") or {}).get("size")
    if got != size:
        return [Problem(loc, f"image size {got}, but {owner} is {size}")]
    return []


def _dataset_problems(s: Study) -> list[Problem]:
    """Experiments on an extra dataset: declared by every budget, a spec per pipeline,
    and questions that compare experiments on one dataset only (one FD-<dataset>)."""
    out = []
    for pn, p in s.pipelines.items():
        for ds, per_budget in p.specs_for.items():
            for b in per_budget:
                if b not in s.budgets:
                    out.append(Problem(f"pipelines.{pn}.specs_for.{ds}", f"unknown budget {b!r}"))
                elif ds not in s.budgets[b].extra_datasets:
                    out.append(Problem(f"pipelines.{pn}.specs_for.{ds}", f"budget {b!r} "
                                       f"declares no extra dataset {ds!r}"))
    for en, e in s.experiments.items():
        if e.dataset is None:
            continue
        for b, bd in s.budgets.items():
            if e.dataset == bd.dataset:
                continue
            if e.dataset not in bd.extra_datasets:
                out.append(Problem(f"experiments.{en}.dataset", f"budget {b!r} declares no "
                                   f"extra dataset {e.dataset!r} (budgets.{b}.extra_datasets)"))
                continue
            out += [Problem(f"pipelines.{p}.specs_for", f"no spec for dataset {e.dataset!r} "
                            f"under budget {b!r} (experiment {en!r} trains on it)")
                    for p in e.pipelines if p in s.pipelines
                    and b not in s.pipelines[p].specs_for.get(e.dataset, {})]
    for qn, q in s.questions.items():
        for b, bd in s.budgets.items():
            found = {s.experiments[x].dataset or bd.dataset for x in q.experiments
                     if x in s.experiments}
            if len(found) > 1:
                out.append(Problem(f"questions.{qn}.experiments", "experiments on different "
                                   f"datasets under budget {b!r} ({', '.join(sorted(found))}); "
                                   "ask one question per dataset"))
    return out


def _reference_problems(s: Study) -> list[Problem]:
    out = []
    for b in s.budgets:
        if b not in s.datasets:
            out.append(Problem("datasets", f"no dataset for budget {b!r}"))
        elif s.datasets[b] != s.budgets[b].dataset:
            out.append(Problem(f"budgets.{b}.dataset", f"{s.budgets[b].dataset!r} is not "
                               f"datasets.{b} ({s.datasets[b]!r})"))
    for en, e in s.experiments.items():
        out += [Problem(f"experiments.{en}.pipelines", f"unknown pipeline {p!r}")
                for p in e.pipelines if p not in s.pipelines]
        out += [Problem(f"experiments.{en}.design_for", f"unknown budget {b!r}")
                for b in e.design_for if b not in s.budgets]
        if e.seeds is not None and e.seeds > len(s.seeds):
            out.append(Problem(f"experiments.{en}.seeds", f"{e.seeds} > the {len(s.seeds)} "
                               "seeds the study declares"))
    for qn, q in s.questions.items():
        out += [Problem(f"questions.{qn}.experiments", f"unknown experiment {x!r}")
                for x in q.experiments if x not in s.experiments]
    return out


# ---- compilation into sweeps ----------------------------------------------------------
def sweep_name(study: str, budget: str, experiment: str, pipeline: str) -> str:
    return f"{study}.{budget}.{experiment}.{pipeline}"


def cells(ls: LoadedStudy, experiment: str, budget: str) -> list[dict[str, Any]]:
    """The design's rows x seeds: ``{levels: {factor: label}, seed, settings}`` each."""
    from evaluator.sweeps import designs

    e = ls.study.experiments[experiment]
    seeds = ls.study.seeds[: e.seeds or len(ls.study.seeds)]
    names = list(e.factors)
    n_levels = [len(f.labels()) for f in e.factors.values()]
    d = e.design_of(budget)
    if not names:
        rows: list[list[int]] = [[]]
    elif d.type == "taguchi":
        oa = designs.get_array(d.array)
        cols = designs.assign_columns(oa, n_levels, [f.column for f in e.factors.values()])
        rows = designs.taguchi_rows(oa, cols)
    else:
        rows = designs.grid_rows(n_levels)
    out = []
    for idx in rows:
        use = ([seeds[sum(idx) % len(seeds)]] if d.type == "latin" else seeds)
        for seed in use:
            levels = {n: e.factors[n].labels()[i] for n, i in zip(names, idx)}
            settings: dict[str, Any] = {}
            for n, i in zip(names, idx):
                settings.update(e.factors[n].settings(i))
            settings["train.seed"] = seed
            out.append({"levels": levels, "seed": seed, "settings": settings})
    return out


def cell_label(cell: dict[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in cell["levels"].items()] + [f"seed={cell['seed']}"]
    return ",".join(parts)


def sampler_settings(ls: LoadedStudy, experiment: str) -> list[dict[str, Any]]:
    e = ls.study.experiments[experiment]
    if e.samplers == "grid":
        return ls.study.samplers.settings()
    return [s.model_dump() for s in e.samplers]


def budget_overrides(ls: LoadedStudy, experiment: str, budget: str) -> list[str]:
    """The spec overrides a budget and an experiment apply to every pipeline's spec."""
    b, e = ls.study.budgets[budget], ls.study.experiments[experiment]
    z = sizes(ls, experiment, budget)
    conv = (json.dumps(b.convergence.model_dump()) if e.convergence else "null")
    return [f"train.dataset={z['dataset']}", f"train.steps={z['train_steps']}",
            f"train.batch_size={z['batch_size']}", f"evaluate.num_samples={z['num_samples']}",
            f"evaluate.seeds={json.dumps(b.noise_seeds)}",
            f"evaluate.samplers={json.dumps(sampler_settings(ls, experiment))}",
            f"evaluate.convergence={conv}", *e.overrides]


def sweep_data(ls: LoadedStudy, experiment: str, pipeline: str, budget: str) -> dict:
    """The sweep definition (plain data) of one experiment x pipeline under a budget."""
    s, e = ls.study, ls.study.experiments[experiment]
    cs = cells(ls, experiment, budget)
    first = sampler_settings(ls, experiment)[0]
    metric = f"FD-{dataset_of(ls, experiment, budget)}"
    return {"name": sweep_name(s.name, budget, experiment, pipeline),
            "description": e.description, "base": ls.spec_of(pipeline, budget, experiment),
            "overrides": budget_overrides(ls, experiment, budget)
            + list(s.pipelines[pipeline].overrides),
            "factors": {"cell": {"levels": {cell_label(c): c["settings"] for c in cs}}},
            "design": {"type": "grid"}, "repeats": 1,
            "objective": {"metric": metric, "sampler": first["name"],
                          "steps": min(first["steps"]), "direction": "minimize"},
            "budget": {"reference": (e.reference or e.samplers == "grid")
                       and s.budgets[budget].reference}}


def probes_of(ls: LoadedStudy, experiment: str, budget: str) -> dict[str, Any]:
    """What a trial measures besides the sweep's evaluation (stored per run)."""
    e, b = ls.study.experiments[experiment], ls.study.budgets[budget]
    out: dict[str, Any] = {}
    if e.clip_probe is not None:
        out["clip"] = {"policies": list(e.clip_probe.policies),
                       "samplers": [[s.name, n] for s in e.clip_probe.samplers
                                    for n in s.steps],
                       "num_samples": sizes(ls, experiment, budget)["num_samples"],
                       "seeds": list(b.noise_seeds)}
    if e.band_probe:
        out["band"] = b.band_probe.model_dump()
    return out


def plan(ls: LoadedStudy, budget: str, check: bool = True) -> list[dict[str, Any]]:
    """Every sweep of the study under ``budget``: name, experiment, pipeline, data, probes.

    Raises :class:`UserError` with every row that does not resolve into a valid spec
    (``check=False``: the sweep files only, no row resolved)."""
    from evaluator.sweeps.spec import check_rows
    from evaluator.sweeps.spec import from_data as sweep_from_data

    if budget not in ls.study.budgets:
        raise UserError(f"--budget: unknown budget {budget!r} (the study has "
                        f"{', '.join(ls.study.budgets)})")
    out, problems = [], []
    for en, e in ls.study.experiments.items():
        for p in e.pipelines:
            loc = f"experiments.{en} ({p}, {budget})"
            try:
                data = sweep_data(ls, en, p, budget)
                sw = sweep_from_data(data, source=loc)
                if check:
                    check_rows(sw)
            except UserError as err:
                problems += [Problem(loc, str(pr)) for pr in err.problems]
                continue
            except ValueError as err:  # design assignment
                problems.append(Problem(loc, str(err)))
                continue
            out.append({"name": data["name"], "experiment": en, "pipeline": p,
                        "data": data, "probes": probes_of(ls, en, budget), "sweep": sw})
    if problems:
        raise UserError(problems, ls.source)
    return out
