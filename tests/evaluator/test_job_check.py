"""A job checked before it is queued: every problem at once, budget caps said."""
from __future__ import annotations

import yaml

from evaluator.pipeline.job_check import check_job, finished_run
from tests.evaluator.helpers import mini_spec


def test_every_problem_of_every_spec(tmp_path):
    p = tmp_path / "a.yaml"
    p.write_text(yaml.safe_dump(mini_spec()))
    probs, notes = check_job([str(p), str(tmp_path / "gone.yaml")],
                             ["train.stepz=3", "train.batch_size=abc"], "quick", tmp_path)
    assert any("stepz" in x for x in probs) and any("batch_size" in x for x in probs)
    assert any("gone.yaml: no such spec file" in x for x in probs)
    assert check_job([], [], "quick", tmp_path)[0] == ["specs: choose at least one spec"]
    assert "unknown budget" in check_job([str(p)], [], "huge", tmp_path)[0][0]


def test_budget_caps_are_said(tmp_path):
    p = tmp_path / "a.yaml"
    p.write_text(yaml.safe_dump(mini_spec()))
    probs, notes = check_job([str(p)], ["train.steps=700"], "quick", tmp_path)
    assert probs == [] and notes == [
        "a.yaml: the quick budget caps train.steps 700 -> 600 (choose the full budget to "
        "train as asked)"]
    assert check_job([str(p)], ["train.steps=700"], "full", tmp_path) == ([], [])


def test_finished_run_is_found(tmp_path):
    from archspec import spec_from_dict
    from evaluator.store.rundir import RunDir

    spec = spec_from_dict(mini_spec())
    assert finished_run(spec, tmp_path) is None
    run = RunDir.create(spec, tmp_path)
    run.set_status("finished", step=30)
    assert finished_run(spec, tmp_path) == (str(run.path), 30)
