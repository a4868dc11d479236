"""The Optuna study behind a sweep: enqueueing, workers and trials.

The study is the source of truth. It holds the whole sweep definition (base spec
inlined) as a study user attribute, so a worker anywhere needs only the storage URL and the
study name. Each row x repeat of a fixed design (taguchi, grid) is enqueued once with
``enqueue_trial``; workers run them with :class:`EnqueuedOnlySampler`, which refuses to
invent parameters. A trial trains and evaluates the row's resolved spec through
``evaluator.pipeline.evaluate.run_spec``: runs are keyed by spec hash,
so an identical spec reuses the finished run.

Storages (:mod:`evaluator.sweeps.storage`, re-exported here): Optuna's journal file by
default, or an RDB URL (``postgresql://user@host/db``) for workers on several machines, whose
results root must then be shared (NFS or similar).

A worker killed mid-trial stops beating; the next worker that looks fails the stale trial
and Optuna's retry callback (``RetryFailedTrialCallback``, renamed
``RetryHeartbeatStaleTrialCallback`` in 4.9) enqueues it again (training resumes from the run's last
checkpoint). Before a trial runs, a worker checks that no other trial of the same row and
repeat is complete or running with a lower number, so none completes twice.
"""
from __future__ import annotations

import math
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from archspec.errors import UserError
from evaluator.sweeps.spec import LoadedSweep, budget_of, from_data, resolve
from evaluator.sweeps.storage import (  # noqa: F401 - storages are part of this API
    HEARTBEAT_S, RECONNECT_S, HeartbeatJournalStorage, ReconnectingRDBStorage, StorageLost,
    default_storage, is_rdb, make_storage,
)

SWEEP_ATTR = "sweep"
OUT_ATTR = "results_root"
GRACE_S = 30
POLL_S = 1.0

optuna.logging.set_verbosity(optuna.logging.WARNING)
# heartbeats and their retry callback are marked experimental; they are what we need
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def list_studies(out: str | Path = "results") -> list[dict[str, Any]]:
    """The sweeps with a journal under a results root: name, storage path, trial counts."""
    out_list = []
    for p in sorted((Path(out) / "sweeps").glob("*/journal.log")):
        storage = make_storage(str(p))
        for s in optuna.get_all_study_summaries(storage, include_best_trial=False):
            out_list.append({"name": s.study_name, "storage": str(p),
                             "n_trials": s.n_trials})
    return out_list


# ---- study ------------------------------------------------------------------------------
def load_study(name: str, storage: Any) -> tuple[optuna.Study, LoadedSweep]:
    """The study and its sweep definition (from the study's user attributes)."""
    try:
        study = optuna.load_study(study_name=name, storage=storage,
                                  sampler=optuna.samplers.RandomSampler())
    except KeyError:
        raise UserError(f"no sweep study named {name!r} in this storage") from None
    data = study.user_attrs.get(SWEEP_ATTR)
    if data is None:
        raise UserError(f"study {name!r} is not a sweep (no {SWEEP_ATTR!r} user attribute)")
    ls = from_data(data, source=f"study {name}")
    study.sampler = make_sampler(ls)
    return study, ls


def make_sampler(ls: LoadedSweep) -> optuna.samplers.BaseSampler:
    d = ls.sweep.design
    if d.type == "tpe":
        return optuna.samplers.TPESampler(seed=d.seed)
    if d.type == "random":
        return optuna.samplers.RandomSampler(seed=d.seed)
    return EnqueuedOnlySampler()


class NoWaitingTrial(RuntimeError):
    """A fixed-design worker asked for parameters that were not enqueued."""


class EnqueuedOnlySampler(optuna.samplers.RandomSampler):
    """Takes only enqueued parameters (Optuna fixes those before sampling is asked)."""

    def sample_independent(self, study, trial, param_name, param_distribution):  # noqa: ANN001
        raise NoWaitingTrial(f"parameter {param_name!r} was not enqueued")


def create_or_resume(ls: LoadedSweep, storage: Any, out: str | Path) -> optuna.Study:
    """Create the study (or reopen it, checking it holds the same sweep)."""
    direction = ls.sweep.objective.direction
    study = optuna.create_study(study_name=ls.sweep.name, storage=storage,
                                direction=direction, sampler=make_sampler(ls),
                                load_if_exists=True)
    data = ls.to_data()
    old = study.user_attrs.get(SWEEP_ATTR)
    if old is None:
        study.set_user_attr(SWEEP_ATTR, data)
        study.set_user_attr(OUT_ATTR, str(Path(out).resolve()))
    elif old != data:
        raise UserError(f"a study named {ls.sweep.name!r} already exists in this storage with "
                        "a different sweep definition; rename the sweep or use another "
                        "storage")
    return study


def distributions(ls: LoadedSweep) -> dict[str, Any]:
    from optuna.distributions import CategoricalDistribution

    d = {f: CategoricalDistribution(ls.sweep.factors[f].labels()) for f in ls.factor_names}
    if ls.fixed:
        d["row"] = CategoricalDistribution(list(range(len(ls.rows))))
        d["repeat"] = CategoricalDistribution(list(range(ls.sweep.repeats)))
    return d


def key_of(t: optuna.trial.FrozenTrial) -> tuple[int, int] | None:
    """(row, repeat) of a fixed-design trial, None for others (and skipped asks)."""
    p = t.params or t.system_attrs.get("fixed_params") or {}
    if "row" not in p:
        return None
    return int(p["row"]), int(p.get("repeat", 0))


def estimate_seconds(model: Any, spec: Any, budget: Any) -> tuple[float, float]:
    """(train, sampling) seconds of one trial on this machine now: the profiled train-step
    time x steps, and forward time per sample x samples x model calls of the evaluation
    plan x seeds (metrics, start-up and the reuse of an unchanged run not included)."""
    from evaluator.pipeline.budgets import eval_settings
    from evaluator.measure.profile import profile_model

    c, s = spec.image.channels, spec.image.size
    b = spec.train.batch_size
    p = profile_model(spec.name, model, (c, s, s), batch_size=b, repeats=3)
    st = eval_settings(spec, budget)
    nfe = sum(steps for _, steps in st["plan"])
    sample_s = p.fwd_ms / 1000 / b * st["num_samples"] * nfe * len(st["seeds"])
    return p.train_step_ms / 1000 * spec.train.steps, sample_s


def row_costs(ls: LoadedSweep) -> dict[int, float]:
    """Estimated seconds per design row (rows with the same spec share one profile)."""
    from archspec import build_model
    from evaluator.store.rundir import hash_spec

    cache: dict[str, float] = {}
    out = {}
    for i, idx in enumerate(ls.rows):
        spec = resolve(ls, ls.labels_of(idx))
        key = hash_spec(spec)
        if key not in cache:
            cache[key] = sum(estimate_seconds(build_model(spec), spec, budget_of(ls.sweep)))
        out[i] = cache[key]
    return out


def enqueue_missing(study: optuna.Study, ls: LoadedSweep, retry_failed: bool = False,
                    costs: Callable[[], dict[int, float]] | None = None) -> int:
    """Enqueue each (row, repeat) that is not complete, waiting or running; returns how
    many. Failed ones (NaN loss, error) are enqueued again only with ``retry_failed``.

    Workers take waiting trials in the order they were enqueued. With ``costs`` (called
    only when something is missing; estimated seconds per row, e.g. :func:`row_costs`)
    the longest rows go first, so that parallel workers do not end on one long trial
    while the others idle (LPT scheduling)."""
    if not ls.fixed:
        return 0
    have: dict[tuple[int, int], set[TrialState]] = {}
    failed: set[tuple[int, int]] = set()  # failed with a reason (NaN loss, error)
    for t in study.get_trials(deepcopy=False):
        k = key_of(t)
        if k is None or t.user_attrs.get("skipped"):
            continue
        have.setdefault(k, set()).add(t.state)
        if t.state == TrialState.FAIL and t.user_attrs.get("fail_reason"):
            failed.add(k)
    keep = {TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING}
    # a trial interrupted (Ctrl-C) or lost past its retries has no reason: run it again
    missing = [(i, r) for i in range(len(ls.rows)) for r in range(ls.sweep.repeats)
               if not (have.get((i, r), set()) & keep
                       or ((i, r) in failed and not retry_failed))]
    if missing and costs is not None:
        cost = costs()
        missing.sort(key=lambda k: -cost.get(k[0], 0.0))  # stable: repeats stay in order
    for i, r in missing:
        study.enqueue_trial({"row": i, "repeat": r, **ls.labels_of(ls.rows[i])},
                            user_attrs={"row": i, "repeat": r}, skip_if_exists=False)
    return len(missing)


# ---- trials -----------------------------------------------------------------------------
class TrialFailed(RuntimeError):
    pass


def metric_value(metrics: dict[str, Any], m: Any, budget: str) -> float:
    """A metric from a run's metrics.json; :class:`TrialFailed` says why it is missing."""
    if m.sampler is not None:
        rows = metrics.get("eval", {}).get(budget, {}).get("results", [])
        row = next((r for r in rows if r["sampler"] == m.sampler and r["steps"] == m.steps),
                   None)
        if row is None:
            raise TrialFailed(f"{m.key}: no evaluation at ({m.sampler}, {m.steps})")
        e = row["metrics"].get(m.metric)
        if e is None:
            raise TrialFailed(f"{m.key}: no metric {m.metric!r}; have "
                              f"{', '.join(sorted(row['metrics']))}")
        v = e.get("mean")
        if v is None:
            raise TrialFailed(f"{m.key}: {e.get('status')}: {e.get('reason')}")
        return float(v)
    node: Any = metrics
    for k in m.metric.split("."):
        if not isinstance(node, dict) or k not in node:
            raise TrialFailed(f"{m.key}: not in metrics.json")
        node = node[k]
    if not isinstance(node, (int, float)) or isinstance(node, bool):
        raise TrialFailed(f"{m.key}: not a number ({node!r})")
    return float(node)


def run_config(ls: LoadedSweep, labels: dict[str, str], repeat: int, out: str | Path,
               device: str) -> dict[str, Any]:
    """Train (or reuse) and evaluate one configuration; the values and user attributes."""
    from evaluator.pipeline.evaluate import run_spec
    from evaluator.store.rundir import hash_spec

    t0 = time.time()
    spec = resolve(ls, labels, repeat)
    budget = budget_of(ls.sweep)
    attrs: dict[str, Any] = {"spec_hash": hash_spec(spec), "levels": labels, "repeat": repeat}
    t1 = time.time()
    # objectives read from training metrics alone (train.loss_last) need no sampling
    needs_eval = any(m.sampler for m in [ls.sweep.objective, *ls.sweep.secondary])
    r = run_spec(spec, budget, out, device=device, evaluate=needs_eval, reuse_eval=True)
    attrs["run"] = str(r.run.path)
    if r.status != "finished":
        raise TrialFailed(f"training {r.status}: {r.reason}")
    t2, t3 = r.t_trained, r.t_evaluated
    attrs["reused_eval"] = r.had_eval
    metrics = r.run.metrics()
    value = metric_value(metrics, ls.sweep.objective, budget.name)
    if not math.isfinite(value):
        raise TrialFailed(f"{ls.sweep.objective.key} is {value}")
    secondary = {}
    for m in ls.sweep.secondary:
        try:
            secondary[m.key] = metric_value(metrics, m, budget.name)
        except TrialFailed as e:
            secondary[m.key] = None
            attrs.setdefault("secondary_missing", []).append(str(e))
    attrs.update(value=value, metrics={ls.sweep.objective.key: value, **secondary},
                 timing={"t_start": t0, "t_resolved": t1, "t_trained": t2, "t_evaluated": t3,
                         "train_s": t2 - t1, "eval_s": t3 - t2})
    return attrs


class Objective:
    """The trial function: one row x repeat (fixed designs) or one sampled combination
    with every repeat (random / tpe; the value is their mean)."""

    def __init__(self, ls: LoadedSweep, out: str | Path, device: str = "cpu") -> None:
        self.ls, self.out, self.device = ls, out, device
        self.dists = distributions(ls)

    def __call__(self, trial: optuna.Trial) -> float:
        t0 = time.time()
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        try:
            params = {k: trial.suggest_categorical(k, d.choices) for k, d in self.dists.items()}
        except NoWaitingTrial:
            trial.set_user_attr("skipped", "no waiting trial left (another worker took it)")
            raise optuna.TrialPruned() from None
        labels = {f: params[f] for f in self.ls.factor_names}
        if self.ls.fixed:
            dup = self._duplicate(trial, (params["row"], params["repeat"]))
            if dup is not None:
                trial.set_user_attr("skipped", f"duplicate of trial {dup}")
                raise optuna.TrialPruned()
            repeats = [params["repeat"]]
        else:
            repeats = list(range(self.ls.sweep.repeats))
        try:
            results = [run_config(self.ls, labels, r, self.out, self.device) for r in repeats]
        except StorageLost:
            raise  # the trial stays RUNNING, goes stale and is retried elsewhere
        except Exception as e:  # noqa: BLE001 - recorded on the trial; the sweep goes on
            trial.set_user_attr("fail_reason", f"{type(e).__name__}: {e}"[:2000])
            raise
        value = sum(r["value"] for r in results) / len(results)
        first = results[0]
        for k in ("spec_hash", "run", "metrics", "levels", "reused_eval"):
            trial.set_user_attr(k, first[k])
        if len(results) > 1:
            trial.set_user_attr("repeat_values", [r["value"] for r in results])
            trial.set_user_attr("runs", [r["run"] for r in results])
        timing = _timing(results, t0)
        trial.set_user_attr("timing", timing)
        return value

    def _duplicate(self, trial: optuna.Trial, key: tuple[int, int]) -> int | None:
        for t in trial.study.get_trials(deepcopy=False,
                                        states=(TrialState.COMPLETE, TrialState.RUNNING)):
            if t.number == trial.number or key_of(t) != key:
                continue
            if t.state == TrialState.COMPLETE or t.number < trial.number:
                return t.number
        return None


def _timing(results: list[dict[str, Any]], t0: float) -> dict[str, Any]:
    """Train / eval seconds and the overhead inside the objective (resolution, storage
    writes): the rest of a trial's wall time is Optuna's ask/tell, read from its
    datetime_start/complete."""
    train = sum(r["timing"]["train_s"] for r in results)
    ev = sum(r["timing"]["eval_s"] for r in results)
    t_end = time.time()
    return {"t_objective_start": t0, "t_objective_end": t_end, "train_s": train,
            "eval_s": ev, "objective_overhead_s": (t_end - t0) - train - ev}


# ---- workers ----------------------------------------------------------------------------
def open_trials(study: optuna.Study, ls: LoadedSweep) -> tuple[int, int, int]:
    """(waiting, running, counted) trials of the design (skipped asks excluded)."""
    waiting = running = counted = 0
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("skipped") or (ls.fixed and key_of(t) is None):
            continue
        waiting += t.state == TrialState.WAITING
        running += t.state == TrialState.RUNNING
        counted += t.state != TrialState.WAITING
    return waiting, running, counted


def work(name: str, storage_url: str, out: str | Path | None = None, device: str = "cpu",
         heartbeat: int = HEARTBEAT_S, grace: int | None = None,
         max_trials: int | None = None, reconnect: float = RECONNECT_S) -> int:
    """Run trials until the design is done; returns how many this worker ran. An RDB
    storage lost for longer than ``reconnect`` seconds raises :class:`StorageLost`."""
    from optuna.storages import fail_stale_trials

    storage = make_storage(storage_url, heartbeat, grace, reconnect)
    study, ls = load_study(name, storage)
    out = out or study.user_attrs.get(OUT_ATTR, "results")
    objective = Objective(ls, out, device)
    ran = 0
    while max_trials is None or ran < max_trials:
        fail_stale_trials(study)
        waiting, running, counted = open_trials(study, ls)
        if ls.fixed:
            if not waiting:
                if not running:
                    break
                time.sleep(POLL_S)  # a running trial may yet go stale and come back
                continue
        elif counted >= ls.sweep.design.trials:
            break
        try:
            study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=False,
                           show_progress_bar=False)
        except UpdateFinishedTrialError:
            # this worker stalled past the grace period and its trial was failed and
            # retried elsewhere; the retry reuses the run by spec hash, so move on
            pass
        except Exception:
            # past the reconnect window Optuna's own clean-up fails too (and may raise
            # something else); the storage knows why the worker stops
            if getattr(storage, "gave_up", None):
                raise StorageLost(storage.gave_up) from None
            raise
        ran += 1
    return ran


def status(study: optuna.Study, ls: LoadedSweep) -> dict[str, Any]:
    """Rows done / running / failed / waiting (latest trial per row x repeat)."""
    per_key: dict[Any, optuna.trial.FrozenTrial] = {}
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("skipped"):
            continue
        k = key_of(t) if ls.fixed else t.number
        if k is None:
            continue
        prev = per_key.get(k)
        if prev is None or prev.state != TrialState.COMPLETE:
            per_key[k] = t
    counts = {"done": 0, "running": 0, "failed": 0, "waiting": 0}
    names = {TrialState.COMPLETE: "done", TrialState.RUNNING: "running",
             TrialState.FAIL: "failed", TrialState.WAITING: "waiting"}
    for t in per_key.values():
        counts[names.get(t.state, "failed")] += 1
    total = (len(ls.rows) * ls.sweep.repeats if ls.fixed else ls.sweep.design.trials)
    counts["not_enqueued"] = max(0, total - len(per_key)) if ls.fixed else 0
    if not ls.fixed:
        counts["waiting"] += max(0, total - len(per_key))
    counts["total"] = total
    counts["failures"] = [(t.number, t.user_attrs.get("levels") or t.params,
                           t.user_attrs.get("fail_reason", "worker lost or interrupted"))
                          for t in per_key.values() if t.state == TrialState.FAIL]
    return counts
