"""Evaluation progress reaches a job's queue row (it used to show none)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from evaluator.pipeline.jobs import Job, JobQueue

pytestmark = pytest.mark.slow  # trains and evaluates a tiny run (~15 s)


def test_on_setting_moves_the_job_and_restores_the_training_steps():
    job = Job(id="j", specs=[], budget="quick", device="cpu", evaluate=True, overrides=[],
              phase="evaluate mini", step=30, total=30)
    cb = JobQueue._on_setting(job, SimpleNamespace(name="mini"))
    cb(0, 2, "ddim 5 steps")
    assert (job.step, job.total, job.phase) == (0, 2, "evaluate mini: setting 1/2, ddim 5 steps")
    cb(1, 2, "ddpm 50 steps")
    assert job.phase.endswith("setting 2/2, ddpm 50 steps")
    cb(2, 2, "done")
    assert (job.step, job.total, job.phase) == (30, 30, "evaluate mini: scored")


def test_evaluate_run_reports_each_setting(tmp_path):
    from archspec import spec_from_dict
    from evaluator.pipeline.budgets import Budget
    from evaluator.pipeline.evaluate import evaluate_run
    from evaluator.training.loop import train
    from tests.evaluator.helpers import mini_spec

    run = train(spec_from_dict(mini_spec()), root=tmp_path, device="cpu", progress=False).run
    seen = []
    out = evaluate_run(run, Budget("tiny", num_samples=4, seeds=1, steps_per_sampler=1), "cpu",
                       on_setting=lambda *a: seen.append(a))
    settings = [f"{r['sampler']} {r['steps']} steps" for r in out["results"]]
    n = len(settings)
    assert seen == [*[(i, n, s) for i, s in enumerate(settings)], (n, n, "done")]
