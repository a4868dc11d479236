"""The typed ``metrics.json`` of a run: what training and each evaluation recorded.

Layout (version :data:`METRICS_VERSION`)::

    {"version": 1,
     "train": {loss_first, loss_last, loss_drop, steps, seconds, steps_per_second,
               device, params, batch_size, seed, init_from, stability, ...},
     "eval": {<budget>: {"settings": {budget, num_samples, seeds, clip, plan},
                         "results": [one row per (sampler, steps)],
                         "speed": {...}, "timing": {...}, "convergence": [...]}}}

The structure is typed; leaves whose content is free-form (a metric's details, sampler
settings, per-process records that other parts add to ``train``) allow extra keys, so a
writer may add a field without a version bump. A file written before versions existed
goes through :func:`upgrade`. The on-disk JSON is the writer's own dict (plus
``version``): the model checks it, it never re-orders or fills in a file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, ValidationError

from evaluator.store.atomic import CorruptRunFile, _json_default

METRICS_VERSION = 1

# int or float as stored (an int FLOP count stays an int when read through the model)
Number = Optional[Union[int, float]]


class _Open(BaseModel):
    """A record whose known fields are typed and whose other keys are kept as they are."""

    model_config = ConfigDict(extra="allow")


class Stability(_Open):
    factor: Number = None
    window: Optional[int] = None
    warmup: Optional[int] = None
    warnings: list[dict[str, Any]] = []


class InitFrom(_Open):
    source: str
    source_hash: str
    copied: list[str] = []
    not_copied: list[dict[str, Any]] = []


class TrainMetrics(_Open):
    """``train``: written by the training loop when it stops (``init_from`` may be there
    alone while a warm-started run trains). Extra keys (e.g. ``process``) are kept."""

    loss_first: Number = None
    loss_last: Number = None
    loss_drop: Number = None
    loss_window: Optional[int] = None
    steps: Optional[int] = None
    steps_this_session: Optional[int] = None
    seconds: Number = None
    steps_per_second: Number = None
    device: Optional[str] = None
    params: Optional[int] = None
    batch_size: Optional[int] = None
    seed: Optional[int] = None
    init_from: Optional[InitFrom] = None
    stability: Optional[Stability] = None


class MeanCI(_Open):
    """:func:`evaluator.measure.stats.mean_ci`."""

    mean: Number = None
    ci95: Number = None
    n_seeds: int = 0


class MetricResult(MeanCI):
    """One metric of one sampler setting: its value per seed and mean +- CI."""

    values: list[Number]
    status: Optional[str] = None
    reason: Optional[str] = None
    n: Optional[int] = None
    extractor: Optional[str] = None
    weights_sha256: Optional[str] = None


class BandError(_Open):
    band_edges: list[float]
    log10_ratio: list[Number]
    abs_error: list[Number]
    per_seed: list[list[Number]]
    seeds: list[int]
    n: Optional[int] = None
    reference_n: Optional[int] = None
    unit: str


class SettingResult(_Open):
    """One row of an evaluation: a (sampler, steps) setting over every seed."""

    pipeline: str
    sampler: str
    steps: int
    nfe: int
    n: int
    seeds: list[int]
    ms_per_nfe: MeanCI
    reference: bool
    settings: dict[str, Any]
    metrics: dict[str, MetricResult]
    band_error: Optional[BandError] = None


class EvalSettings(_Open):
    budget: str
    num_samples: int
    seeds: list[int]
    clip: Any = None
    plan: list[tuple[str, int]]


class Speed(_Open):
    params: Optional[int] = None
    flops_per_sample: Number = None
    flops_note: Optional[str] = None
    train_steps_per_second: Number = None
    device: Optional[str] = None


class Timing(_Open):
    eval_seconds: float
    metric_seconds: float
    train_seconds: Number = None
    metric_fraction_of_train: Number = None


class ConvergencePoint(_Open):
    """One EMA snapshot's score; the metric values (``FD-<dataset>``...) are extra keys."""

    step: int
    n: int
    seed: int
    sampler: str
    steps: int
    clip: Any = None
    settings: dict[str, Any] = {}
    reasons: Optional[dict[str, Optional[str]]] = None

    def value(self, metric: str) -> float | None:
        """The snapshot's ``metric`` (``FD-<dataset>``...), None when absent or failed."""
        return (self.model_extra or {}).get(metric)


class EvalMetrics(_Open):
    """``eval[<budget>]``: written by :func:`evaluator.pipeline.evaluate.evaluate_run`."""

    settings: EvalSettings
    results: list[SettingResult]
    speed: Optional[Speed] = None
    timing: Optional[Timing] = None
    convergence: Optional[list[ConvergencePoint]] = None


class RunMetrics(BaseModel):
    """A run's whole ``metrics.json``; unknown top-level sections are kept."""

    model_config = ConfigDict(extra="allow")

    version: int = METRICS_VERSION
    train: Optional[TrainMetrics] = None
    eval: dict[str, EvalMetrics] = {}

    def best_eval(self, preference: tuple[str, ...] = ("full", "quick")
                  ) -> tuple[str | None, EvalMetrics | None]:
        """(budget, evaluation), preferring the budgets in ``preference`` in order."""
        for b in (*preference, *sorted(self.eval)):
            if b in self.eval:
                return b, self.eval[b]
        return None, None


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` in the current layout. Version-less files (before versions existed) have
    the same sections: they only gain ``version``; a newer version is refused."""
    version = data.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"version: expected an integer, got {version!r}")
    if version > METRICS_VERSION:
        raise ValueError(f"version {version} is newer than this toolkit's "
                         f"{METRICS_VERSION}: update the toolkit to read it")
    if version == 0:
        data = {"version": METRICS_VERSION, **{k: v for k, v in data.items() if k != "version"}}
    return data


def _problems(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
                     for err in e.errors()[:5])


class InvalidMetrics(ValueError):
    """Metrics a writer produced that do not fit :class:`RunMetrics`; nothing was written."""


def checked(data: dict[str, Any], path: Path, writing: bool = False
            ) -> tuple[dict[str, Any], RunMetrics]:
    """(plain JSON dict, model) of ``data`` upgraded and validated.

    The dict is ``data`` as JSON would store it (numpy scalars, paths converted), so what
    is validated is exactly what is written or was read.

    Raises:
        CorruptRunFile: naming ``path``, when stored ``data`` does not fit the model.
        InvalidMetrics: naming ``path``, when ``data`` to be written does not (``writing``).
    """
    try:
        plain = json.loads(json.dumps(data, default=_json_default))
        plain = upgrade(plain)
        return plain, RunMetrics.model_validate(plain)
    except ValidationError as e:
        what = _problems(e)
    except (TypeError, ValueError) as e:
        what = str(e)
    if writing:
        raise InvalidMetrics(f"{path}: refusing to write invalid metrics ({what})")
    raise CorruptRunFile(path, f"invalid metrics ({what})")
