"""evaluator.pipeline.jobs: background jobs, one per device, cancellation leaves a resumable run."""
from __future__ import annotations

import time

import pytest
import torch
import yaml

from archspec import spec_from_dict
from archspec.errors import UserError
from evaluator.pipeline.jobs import JobQueue
from evaluator.store.rundir import RunDir
from evaluator.store.checkpoints import load_checkpoint
from evaluator.training.loop import train
from tests.evaluator.helpers import mini_spec

STEPS = 400


@pytest.fixture
def long_spec(tmp_path):
    data = mini_spec(train={"steps": STEPS, "batch_size": 4, "checkpoint_every": 1000})
    p = tmp_path / "long.yaml"
    p.write_text(yaml.safe_dump(data))
    return p, data


def _wait(pred, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_cancel_leaves_resumable_run_that_resumes_exactly(tmp_path, long_spec):
    path, data = long_spec
    q = JobQueue(tmp_path / "res")
    job = q.submit([str(path)], budget="full", device="cpu", evaluate=False)
    assert _wait(lambda: q.get(job.id)["step"] >= 5)
    assert q.cancel(job.id)
    snap = q.wait(job.id)
    assert snap["state"] == "cancelled" and "resumable" in snap["message"]
    run = RunDir.open(snap["runs"][0])
    st = run.status()
    assert st["status"] == "cancelled" and st["resumable"] is True
    stopped = st["step"]
    assert 5 <= stopped < STEPS
    assert load_checkpoint(run.checkpoint_file)["step"] == stopped  # checkpoint at the stop
    assert len(run.losses()) == stopped
    # resuming finishes with the weights of an uninterrupted run
    spec = spec_from_dict(data)
    res = train(spec, run=run, device="cpu", resume=True, progress=False)
    assert res.status == "finished" and run.status()["resumable"] is False
    ref = train(spec_from_dict(data), root=tmp_path / "ref", device="cpu", progress=False)
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, res.model.state_dict()[k]), k
    assert len(run.losses()) == STEPS


def test_one_job_at_a_time_per_device_and_queued_cancel(tmp_path, long_spec):
    path, _ = long_spec
    q = JobQueue(tmp_path / "res")
    first = q.submit([str(path)], budget="full", evaluate=False)
    second = q.submit([str(path)], budget="full", evaluate=False)
    assert _wait(lambda: q.get(first.id)["state"] == "running")
    assert q.get(second.id)["state"] == "queued"
    assert [j["id"] for j in q.snapshot()] == [first.id, second.id]
    assert q.cancel(second.id) and q.get(second.id)["state"] == "cancelled"
    assert q.cancel(first.id)
    assert q.wait(first.id)["state"] == "cancelled"
    time.sleep(0.2)
    assert q.get(second.id)["step"] == 0  # never ran
    assert not q.cancel(first.id)  # already over


def test_submit_bad_input(tmp_path):
    q = JobQueue(tmp_path)
    with pytest.raises(UserError, match="choose at least one spec"):
        q.submit([])
    with pytest.raises(UserError, match="no such spec file"):
        q.submit([str(tmp_path / "none.yaml")])
    (tmp_path / "s.yaml").write_text("x: 1")
    with pytest.raises(UserError, match="unknown budget"):
        q.submit([str(tmp_path / "s.yaml")], budget="huge")


def test_failing_job_reports_its_error(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: bad\n")
    q = JobQueue(tmp_path / "res")
    snap = q.wait(q.submit([str(p)], evaluate=False).id)
    assert snap["state"] == "failed" and "image: required" in snap["message"]
