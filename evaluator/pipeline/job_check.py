"""Checking a train/evaluate job before it is queued: every spec loaded with the job's
overrides (all problems, each located), what the budget changes, and which specs are
already trained. A job that would fail at once is never queued."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from archspec.errors import UserError


def check_job(specs: list[str], overrides: list[str], budget: str,
              root: str | Path) -> tuple[list[str], list[str]]:
    """(problems, notes) for a job: one line per problem (``SPEC: PATH: message``); notes
    say what the budget caps (``train.steps 700 -> 600``) and which spec's run already
    finished (submitting it again only evaluates; nothing is trained)."""
    from archspec import load_spec
    from evaluator.pipeline.budgets import apply_budget, get_budget

    problems: list[str] = []
    notes: list[str] = []
    if not specs:
        return ["specs: choose at least one spec"], []
    try:
        b = get_budget(budget)
    except UserError as e:
        return list(e.lines()), []
    for path in specs:
        if not Path(path).is_file():
            problems.append(f"{path}: no such spec file")
            continue
        try:
            spec = load_spec(path, overrides=overrides)
        except UserError as e:
            problems += list(e.lines())
            continue
        capped = apply_budget(spec, b)
        name = Path(path).name
        for key in ("steps", "batch_size"):
            want, got = getattr(spec.train, key), getattr(capped.train, key)
            if want != got:
                notes.append(f"{name}: the {budget} budget caps train.{key} {want} -> {got} "
                             "(choose the full budget to train as asked)")
        done = finished_run(capped, root)
        if done:
            notes.append(f"{name}: already trained in `{done[0]}` (finished at step "
                         f"{done[1]}); it will not train again, only be evaluated if asked")
    return problems, notes


def finished_run(spec: Any, root: str | Path) -> tuple[str, int] | None:
    """(folder, step) of the finished run of exactly this spec under ``root``, if any."""
    from evaluator.store.rundir import hash_spec
    from evaluator.store.atomic import read_json

    path = Path(root) / "runs" / spec.name / hash_spec(spec)
    st = read_json(path / "status.json", default={}) or {}
    if st.get("status") == "finished":
        return str(path), int(st.get("step") or spec.train.steps)
    return None


def run_step(folder: str) -> tuple[int | None, int | None]:
    """(step reached, total steps) recorded in a run folder's status and spec."""
    from evaluator.store.atomic import read_json

    st = read_json(Path(folder) / "status.json", default={}) or {}
    spec = read_json(Path(folder) / "spec.resolved.json", default={}) or {}
    return st.get("step"), (spec.get("train") or {}).get("steps")
