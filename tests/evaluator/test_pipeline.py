"""evaluator.pipeline.evaluate.run_spec: `archsearch evaluate`, the app's jobs and sweep
trials share one reuse rule (a finished run is never trained again; a stored evaluation is
reused when asked to)."""
from __future__ import annotations

import pytest
import yaml

from archspec import canonical, load_spec, spec_hash
from evaluator.pipeline import evaluate as ev_mod
from evaluator.pipeline.budgets import get_budget
from evaluator.pipeline.jobs import JobQueue
from evaluator.sweeps.spec import from_data, resolve
from evaluator.sweeps.study import metric_value, run_config
from evaluator.training import loop
from tests.evaluator.helpers import mini_spec

LEVELS = {"tw": "uniform"}


def _sweep() -> dict:
    base = mini_spec(train={"steps": 10, "batch_size": 8, "checkpoint_every": 5},
                     diffusion={"timesteps": 20},
                     evaluate={"num_samples": 16, "seeds": [0],
                               "samplers": [{"name": "ddim", "steps": [2]}]})
    return {"name": "reuse", "base": base,
            "factors": {"tw": {"path": "diffusion.loss.time_weighting",
                               "levels": ["uniform", "min_snr"]}},
            "design": {"type": "grid"}, "budget": "full",
            "objective": {"metric": "spectral-RAPS-dist", "sampler": "ddim", "steps": 2}}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One trained and evaluated run, and a spec file with the same hash."""
    root = tmp_path_factory.mktemp("pipeline")
    ls = from_data(_sweep())
    spec = resolve(ls, LEVELS, 0)
    spec_file = root / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(canonical(spec), sort_keys=False))
    assert spec_hash(load_spec(spec_file)) == spec_hash(spec)
    out = root / "results"
    first = ev_mod.run_spec(spec, get_budget("full"), out, device="cpu")
    assert first.status == "finished" and first.evaluated and not first.reused_run
    return ls, spec_file, out, first.run


@pytest.fixture
def counted(monkeypatch):
    """Training refuses to run; evaluations are counted (and return the stored one)."""
    calls = []

    def no_training(*a, **k):
        raise AssertionError("a finished run was trained again")

    def evaluate_run(run, budget, *a, **k):
        calls.append(budget.name)
        return run.metrics()["eval"][budget.name]

    monkeypatch.setattr(loop, "train", no_training)
    monkeypatch.setattr(ev_mod, "evaluate_run", evaluate_run)
    return calls


def _job(out, spec_file, **kw):
    q = JobQueue(out)
    snap = q.wait(q.submit([str(spec_file)], budget="full", device="cpu", **kw).id, 120)
    assert snap["state"] == "finished", snap["message"]
    return snap


def test_all_three_reuse_a_finished_run_and_its_evaluation(finished, counted):
    ls, spec_file, out, run = finished
    before = run.metrics()
    stored = before["eval"]["full"]
    rows = ev_mod.evaluate([spec_file], "full", out, device="cpu", progress=False,
                           reuse_eval=True)
    assert rows == [{**r, "status": "ok", "run": str(run.path)} for r in stored["results"]]
    snap = _job(out, spec_file, reuse_eval=True)
    assert snap["runs"] == [str(run.path)]
    attrs = run_config(ls, LEVELS, 0, out, "cpu")
    assert attrs["run"] == str(run.path) and attrs["reused_eval"] is True
    assert attrs["value"] == metric_value(before, ls.sweep.objective, "full")
    assert counted == []                       # nobody sampled or measured again
    assert run.metrics() == before             # and nothing was rewritten


def test_by_default_evaluate_and_jobs_evaluate_again_and_sweeps_reuse(finished, counted):
    ls, spec_file, out, run = finished
    ev_mod.evaluate([spec_file], "full", out, device="cpu", progress=False)
    assert counted == ["full"]
    _job(out, spec_file)
    assert counted == ["full", "full"]
    run_config(ls, LEVELS, 0, out, "cpu")
    assert counted == ["full", "full"]


def test_training_only_leaves_the_evaluation_alone(finished, counted):
    _, spec_file, out, run = finished
    r = ev_mod.run_spec(load_spec(spec_file), get_budget("full"), out, device="cpu",
                        evaluate=False)
    assert r.reused_run and r.had_eval and not r.evaluated and r.evaluation is None
    assert counted == []
