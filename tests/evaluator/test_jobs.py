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


# ---- restarts: the journal in the results root -------------------------------------------
def _budgeted(path):
    from archspec import load_spec
    from evaluator.pipeline.budgets import apply_budget, get_budget

    return apply_budget(load_spec(path), get_budget("full"))


def _crash_mid_job(root, path, stop_at):
    """What an app killed mid-job leaves: a run stopped at a checkpoint, still marked
    running, and a journal whose last word on the job is 'running' (no live owner)."""
    from evaluator.pipeline.journal import JobJournal
    from evaluator.training.loop import Cancelled

    def stop(step, loss):
        if step == stop_at:
            raise Cancelled("simulated crash")

    res = train(_budgeted(path), root=root, device="cpu", progress=False, on_step=stop)
    res.run.set_status("running")
    journal = JobJournal(root)
    jid, _ = journal.claim_id(1)
    journal.append({"id": jid, "specs": [str(path)], "budget": "full", "device": "cpu",
                    "evaluate": False, "overrides": [], "state": "running",
                    "phase": "train mini", "message": "", "step": stop_at, "runs": [],
                    "submitted": time.time()})
    with open(journal.path, "a") as f:
        f.write('{"id": "job9", "state": "runn')  # a torn last line from the crash
    return jid, res.run


def test_jobs_survive_a_restart_and_an_interrupted_job_resumes_from_its_checkpoint(tmp_path):
    root = tmp_path / "res"
    p = tmp_path / "mini.yaml"
    data = mini_spec(train={"steps": 20, "batch_size": 4, "checkpoint_every": 5})
    p.write_text(yaml.safe_dump(data))
    crashed, run = _crash_mid_job(root, p, stop_at=10)
    q1 = JobQueue(root)
    assert q1.get(crashed)["state"] == "interrupted" and q1.get(crashed)["resumable"]
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(mini_spec(train={"steps": 6, "batch_size": 4})))
    done = q1.submit([str(other)], budget="full", device="cpu", evaluate=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\n")
    failed = q1.submit([str(bad)], evaluate=False)
    assert len({crashed, done.id, failed.id}) == 3
    assert q1.wait(done.id)["state"] == "finished" and q1.wait(failed.id)["state"] == "failed"

    q2 = JobQueue(root)  # the app restarted: everything is listed again
    snap = {j["id"]: j for j in q2.snapshot()}
    assert snap[done.id]["state"] == "finished" and snap[done.id]["runs"]
    assert snap[failed.id]["state"] == "failed" and "image: required" in \
        snap[failed.id]["message"]
    assert snap[crashed]["state"] == "interrupted" and "resumable" in snap[crashed]["message"]
    assert "job9" not in snap  # the torn line is skipped
    assert not q2.resume(done.id)  # only an interrupted (or cancelled) job resumes
    assert q2.resume(crashed)
    assert q2.wait(crashed)["state"] == "finished"
    assert f"resume at step 10" in run.log_file.read_text()
    assert [r["step"] for r in run.losses()] == list(range(1, 21))
    ref = train(spec_from_dict(data), root=tmp_path / "ref", device="cpu", progress=False)
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, load_checkpoint(run.checkpoint_file)["model"][k]), k
    assert {j["id"]: j["state"] for j in JobQueue(root).snapshot()}[crashed] == "finished"


def test_auto_resume_and_two_app_instances_never_run_one_job_twice(tmp_path):
    root = tmp_path / "res"
    p = tmp_path / "mini.yaml"
    p.write_text(yaml.safe_dump(mini_spec(train={"steps": STEPS, "batch_size": 4,
                                                 "checkpoint_every": 1000})))
    crashed, run = _crash_mid_job(root, p, stop_at=3)
    a = JobQueue(root, auto_resume=True)  # resumes on its own
    assert _wait(lambda: a.get(crashed)["state"] == "running" and a.get(crashed)["step"] > 3)
    b = JobQueue(root)  # a second app on the same root sees it running, not interrupted
    assert b.get(crashed)["state"] == "running"
    assert not b.resume(crashed)
    assert a.cancel(crashed)
    assert a.wait(crashed)["state"] == "cancelled"
    assert _wait(lambda: b.get(crashed) is not None and
                 {j["id"]: j for j in b.snapshot()}[crashed]["state"] == "cancelled")
    log = run.log_file.read_text()
    assert log.count("resume at step") == 1  # one instance resumed it, once
