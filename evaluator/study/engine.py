"""Running a study on the sweep engine: one Optuna storage per study and budget, one
Optuna study per sweep (experiment x pipeline) and a registry study holding the plan.

Workers need only the storage URL and the registry name (``<study>.<budget>``): the plan
(sweep names and each sweep's probes) and every sweep definition live in the storage.
A worker takes waiting trials sweep by sweep; each trial trains (or reuses, by spec hash)
and evaluates its run through the sweep engine's :class:`~evaluator.sweeps.study.Objective`,
then runs the study's probes (clip policies, per-timestep band error), which are stored
in the run folder under a digest of their settings and reused when present. Heartbeats,
retries of a killed worker's trial and the no-duplicate check are the sweep engine's.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from archspec.errors import UserError
from evaluator.sweeps import study as sw_study
from evaluator.sweeps.spec import budget_of

PLAN_ATTR = "study_plan"


def default_storage(out: str | Path, study: str, budget: str) -> str:
    return str(Path(out) / "studies" / study / budget / "journal.log")


def study_dir(out: str | Path, study: str, budget: str) -> Path:
    return Path(out) / "studies" / study / budget


def registry_name(study: str, budget: str) -> str:
    return f"{study}.{budget}"


def create_or_resume(ls: Any, budget: str, plan: list[dict], storage: Any,
                     out: str | Path) -> dict[str, optuna.Study]:
    """Create (or reopen) the registry and every sweep's study; refuse a changed plan."""
    reg = optuna.create_study(study_name=registry_name(ls.study.name, budget),
                              storage=storage, load_if_exists=True)
    data = {"budget": budget, "study": ls.to_data(), "results_root": str(Path(out).resolve()),
            "sweeps": [{"name": p["name"], "experiment": p["experiment"],
                        "pipeline": p["pipeline"], "probes": p["probes"]} for p in plan],
            "commit": commit()}
    old = reg.user_attrs.get(PLAN_ATTR)
    if old is None:
        reg.set_user_attr(PLAN_ATTR, data)
    elif old["sweeps"] != data["sweeps"] or old["study"] != data["study"]:
        raise UserError(f"study {ls.study.name!r} ({budget}) already exists in this storage "
                        "with a different definition; rename the study or use another "
                        "storage (--storage)")
    return {p["name"]: sw_study.create_or_resume(p["sweep"], storage, out) for p in plan}


def enqueue_missing(studies: dict[str, optuna.Study], plan: list[dict],
                    retry_failed: bool = False) -> int:
    return sum(sw_study.enqueue_missing(studies[p["name"]], p["sweep"], retry_failed)
               for p in plan)


def load_plan(storage: Any, name: str) -> dict[str, Any]:
    try:
        reg = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise UserError(f"no study named {name!r} in this storage (run `archsearch study "
                        "run` first)") from None
    data = reg.user_attrs.get(PLAN_ATTR)
    if data is None:
        raise UserError(f"{name!r} is not a study registry")
    return data


class StudyObjective(sw_study.Objective):
    """The sweep engine's trial, then the sweep's probes on the trained run."""

    def __init__(self, ls: Any, out: Any, device: str, probes: dict[str, Any]) -> None:
        super().__init__(ls, out, device)
        self.probes = probes

    def __call__(self, trial: optuna.Trial) -> float:
        value = super().__call__(trial)
        if self.probes:
            from evaluator.study.probes import run_probes

            try:
                run_probes(trial.user_attrs["run"], self.probes, self.device)
            except Exception as e:  # noqa: BLE001 - recorded on the trial, like training
                trial.set_user_attr("fail_reason", f"probe: {type(e).__name__}: {e}"[:2000])
                raise
        return value


def work(name: str, storage_url: str, out: str | Path | None = None, device: str = "cpu",
         heartbeat: int = sw_study.HEARTBEAT_S, max_trials: int | None = None) -> int:
    """Run waiting trials of every sweep of the study until none is waiting or running."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.storages import fail_stale_trials

    storage = sw_study.make_storage(storage_url, heartbeat)
    data = load_plan(storage, name)
    out = out or data["results_root"]
    sweeps = []
    for s in data["sweeps"]:
        st, loaded = sw_study.load_study(s["name"], storage)
        sweeps.append((st, loaded, StudyObjective(loaded, out, device, s["probes"])))
    ran = 0
    while max_trials is None or ran < max_trials:
        busy, took = False, False
        for st, loaded, objective in sweeps:
            fail_stale_trials(st)
            waiting, running, _ = sw_study.open_trials(st, loaded)
            busy |= bool(running)
            if not waiting:
                continue
            try:
                st.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=False,
                            show_progress_bar=False)
            except UpdateFinishedTrialError:
                pass  # judged stale and retried elsewhere; the retry reuses the run
            ran, took = ran + 1, True
            break
        if not took:
            if not busy:
                break
            time.sleep(sw_study.POLL_S)  # a running trial may yet go stale and come back
    return ran


def status(storage: Any, name: str) -> list[dict[str, Any]]:
    """Per sweep: experiment, pipeline and the sweep engine's counts."""
    data = load_plan(storage, name)
    out = []
    for s in data["sweeps"]:
        st, loaded = sw_study.load_study(s["name"], storage)
        out.append({**{k: s[k] for k in ("name", "experiment", "pipeline")},
                    **sw_study.status(st, loaded)})
    return out


def trials(storage: Any, name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The plan and one record per design cell: its latest trial's state and attributes
    (complete ones preferred), so a retried trial counts once."""
    data = load_plan(storage, name)
    out = []
    for s in data["sweeps"]:
        st, loaded = sw_study.load_study(s["name"], storage)
        budget_name = budget_of(loaded.sweep).name
        best: dict[Any, Any] = {}
        for t in st.get_trials(deepcopy=False):
            k = sw_study.key_of(t)
            if k is None or t.user_attrs.get("skipped") or t.state in (
                    TrialState.WAITING, TrialState.RUNNING):
                continue
            if k not in best or best[k].state != TrialState.COMPLETE:
                best[k] = t
        for t in best.values():
            out.append({"sweep": s["name"], "experiment": s["experiment"],
                        "pipeline": s["pipeline"], "cell": t.params.get("cell"),
                        "state": t.state.name, "value": t.value,
                        "run": t.user_attrs.get("run"), "spec_hash": t.user_attrs.get("spec_hash"),
                        "fail_reason": t.user_attrs.get("fail_reason"),
                        "probes": s["probes"], "number": t.number,
                        "budget_name": budget_name})
    return data, out


def commit() -> str | None:
    """The git commit of this checkout (with ``+dirty`` when it has changes), if any."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+dirty" if dirty.strip() else "")) or None


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
