"""The Optuna study behind a sweep: workers, exactly-once rows, faults, resume, reuse."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from evaluator.sweeps.spec import from_data
from evaluator.sweeps.study import (
    create_or_resume, enqueue_missing, key_of, load_study, make_storage, status, work,
)
from tests.evaluator.sweep_helpers import (
    cli, completed_keys, spawn, spawn_worker, tiny_sweep, wait_all, wait_running, write_sweep,
)

ALL_L4 = [(0, 0), (1, 0), (2, 0), (3, 0)]


def _journal(tmp_path, name="tiny_l4"):
    return str(tmp_path / "sweeps" / name / "journal.log")


@pytest.mark.slow
def test_two_worker_processes_complete_an_l4_each_row_exactly_once(tmp_path):
    p = write_sweep(tmp_path, tiny_sweep())
    out = tmp_path / "results"
    r = cli("sweep", "run", str(p), "--workers", "2", "--out", str(out), "--device", "cpu")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "enqueued 4 trial(s)" in r.stdout and "done 4, running 0, failed 0" in r.stdout
    study, ls = load_study("tiny_l4", make_storage(_journal(out)))
    assert completed_keys(study) == ALL_L4
    done = study.get_trials(states=(TrialState.COMPLETE,))
    for t in done:
        a = t.user_attrs
        assert os.path.isdir(a["run"]) and a["spec_hash"] in a["run"]
        assert a["metrics"]["train.loss_last"] == t.value
        assert a["timing"]["train_s"] >= 0 and a["timing"]["objective_overhead_s"] >= 0
        assert a["levels"] == {f: t.params[f] for f in ls.factor_names}
    # a resumed sweep runs only what is missing: nothing here
    r = cli("sweep", "run", str(p), "--workers", "1", "--out", str(out), "--device", "cpu")
    assert r.returncode == 0 and "enqueued 0 trial(s)" in r.stdout
    assert "nothing left to run" in r.stdout
    assert completed_keys(load_study("tiny_l4", make_storage(_journal(out)))[0]) == ALL_L4
    r = cli("sweep", "status", "tiny_l4", "--out", str(out))
    assert r.returncode == 0 and "4/4" in r.stdout and "failed 0" in r.stdout


@pytest.mark.slow
def test_a_sigkilled_worker_s_trial_is_retried_by_another_worker(tmp_path):
    # the kill lands mid-trial: the worker is killed as soon as its first trial is
    # RUNNING, and a worker's first trial spends seconds importing before training
    p = write_sweep(tmp_path, tiny_sweep(steps=60))
    out = tmp_path / "results"
    r = cli("sweep", "run", str(p), "--workers", "0", "--out", str(out))
    assert r.returncode == 0, r.stderr
    url = _journal(out)
    victim = spawn_worker(url, "tiny_l4", out, heartbeat=1)
    storage = make_storage(url)
    end, killed = time.time() + 120, None
    while time.time() < end and killed is None:
        for t in optuna.load_study(study_name="tiny_l4", storage=storage).get_trials(
                states=(TrialState.RUNNING,)):
            if t.user_attrs.get("worker", "").endswith(f":{victim.pid}"):
                killed = t.number
        time.sleep(0.2)
    assert killed is not None, "the first worker never started a trial"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    survivor = spawn_worker(url, "tiny_l4", out, heartbeat=1, log=tmp_path / "w.log")
    assert wait_all([survivor], timeout=400) == [0], (tmp_path / "w.log").read_text()[-3000:]
    study = optuna.load_study(study_name="tiny_l4", storage=make_storage(url))
    trials = {t.number: t for t in study.get_trials()}
    assert trials[killed].state == TrialState.FAIL
    retry = [t for t in trials.values() if t.system_attrs.get("failed_trial") == killed]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].user_attrs["worker"].endswith(f":{survivor.pid}")
    assert key_of(retry[0]) == key_of(trials[killed])
    assert completed_keys(study) == ALL_L4  # every row once, none twice


def test_a_failed_trial_is_recorded_with_its_reason_and_the_sweep_goes_on(tmp_path,
                                                                           monkeypatch):
    import torch

    import evaluator.training.loop as train_mod

    real_train = train_mod.train

    def nan_for_fast_lr(spec, **kw):
        if spec.train.lr == 0.002:  # a real non-finite loss through the real loop
            kw["step_loss"] = lambda model, x0, t, noise: (model(x0, t) * float("nan")).mean()
        return real_train(spec, **kw)

    monkeypatch.setattr(train_mod, "train", nan_for_fast_lr)
    torch.set_num_threads(1)
    ls = from_data(tiny_sweep())
    url = _journal(tmp_path)
    study = create_or_resume(ls, make_storage(url), tmp_path)
    assert enqueue_missing(study, ls) == 4
    assert work("tiny_l4", url, out=tmp_path, device="cpu") == 4
    st = status(study, ls)
    assert (st["done"], st["failed"], st["waiting"], st["running"]) == (2, 2, 0, 0)
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert {t.params["lr"] for t in failed} == {"0.002"}
    assert all("training failed" in t.user_attrs["fail_reason"]
               and "non-finite" in t.user_attrs["fail_reason"].lower() for t in failed)
    # resuming leaves failed rows alone unless asked
    assert enqueue_missing(study, ls) == 0
    assert enqueue_missing(study, ls, retry_failed=True) == 2


def test_an_interrupted_trial_is_run_again_on_resume(tmp_path):
    ls = from_data(tiny_sweep())
    url = _journal(tmp_path)
    study = create_or_resume(ls, make_storage(url), tmp_path)
    enqueue_missing(study, ls)
    # Ctrl-C during a trial: Optuna records it as FAIL, with no reason of ours
    trial = study.ask()
    study.tell(trial, state=TrialState.FAIL)
    assert key_of(study.trials[trial.number]) == (0, 0)
    assert enqueue_missing(study, ls) == 1
    work("tiny_l4", url, out=tmp_path, device="cpu")
    assert completed_keys(study) == ALL_L4


def test_an_enqueued_duplicate_never_completes_twice(tmp_path):
    ls = from_data(tiny_sweep())
    url = _journal(tmp_path)
    study = create_or_resume(ls, make_storage(url), tmp_path)
    enqueue_missing(study, ls)
    # a second, racing `sweep run` enqueues row 0 again
    study.enqueue_trial({"row": 0, "repeat": 0, **ls.labels_of(ls.rows[0])})
    work("tiny_l4", url, out=tmp_path, device="cpu")
    assert completed_keys(study) == ALL_L4
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert len(pruned) == 1 and pruned[0].user_attrs["skipped"].startswith("duplicate of")


def test_identical_specs_reuse_the_finished_run(tmp_path):
    data = tiny_sweep()
    # two levels that resolve to the same spec (lr 0.001 twice, under different labels)
    data["factors"] = {"lr": {"levels": {"a": {"train.lr": 0.001}, "b": {"train.lr": 0.001}}}}
    data["design"] = {"type": "grid"}
    ls = from_data(data)
    url = _journal(tmp_path)
    study = create_or_resume(ls, make_storage(url), tmp_path)
    enqueue_missing(study, ls)
    work("tiny_l4", url, out=tmp_path, device="cpu")
    a, b = study.get_trials(states=(TrialState.COMPLETE,))
    assert a.user_attrs["spec_hash"] == b.user_attrs["spec_hash"]
    assert a.user_attrs["run"] == b.user_attrs["run"] and a.value == b.value
    log = open(os.path.join(a.user_attrs["run"], "log.txt")).read()
    assert "reused finished run" in log


def test_a_different_sweep_under_the_same_name_is_refused(tmp_path):
    from archspec.errors import UserError

    url = _journal(tmp_path)
    create_or_resume(from_data(tiny_sweep()), make_storage(url), tmp_path)
    with pytest.raises(UserError, match="different sweep definition"):
        create_or_resume(from_data(tiny_sweep(repeats=2)), make_storage(url), tmp_path)


@pytest.mark.parametrize("kind", ["random", "tpe"])
def test_open_ended_designs_run_their_trial_count(tmp_path, kind):
    data = tiny_sweep(design={"type": kind, "trials": 3, "seed": 1}, repeats=2)
    ls = from_data(data)
    url = _journal(tmp_path)
    study = create_or_resume(ls, make_storage(url), tmp_path)
    assert enqueue_missing(study, ls) == 0
    work("tiny_l4", url, out=tmp_path, device="cpu")
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 3 and status(study, ls)["done"] == 3
    for t in done:  # the value is the mean over the repeats, each its own run
        vals = t.user_attrs["repeat_values"]
        assert len(vals) == 2 and t.value == pytest.approx(sum(vals) / 2)
        assert len(set(t.user_attrs["runs"])) == 2


@pytest.mark.slow
def test_evaluation_objective_and_confirmation_run(tmp_path):
    """The full path: train + evaluate through evaluator.pipeline.evaluate, FD objective, analyze
    --confirm trains the best predicted combination."""
    data = tiny_sweep(objective={"metric": "spectral-RAPS-dist", "sampler": "ddim",
                                 "steps": 5},
                      secondary=[{"metric": "FD-digits", "sampler": "ddim", "steps": 5}])
    data["base"]["evaluate"] = {"num_samples": 16, "seeds": [0],
                                "samplers": [{"name": "ddim", "steps": [5]}]}
    data["base"]["diffusion"] = {"timesteps": 20}
    data["factors"] = {"tw": data["factors"]["tw"]}
    data["design"] = {"type": "grid"}
    p = write_sweep(tmp_path, data)
    out = tmp_path / "results"
    r = cli("sweep", "run", str(p), "--workers", "1", "--out", str(out), "--device", "cpu")
    assert r.returncode == 0, r.stderr[-3000:]
    study, ls = load_study("tiny_l4", make_storage(_journal(out)))
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        m = t.user_attrs["metrics"]
        assert set(m) == {"spectral-RAPS-dist@ddim:5", "FD-digits@ddim:5"}
        assert t.value == m["spectral-RAPS-dist@ddim:5"] and t.user_attrs["timing"]["eval_s"] > 0
    r = cli("sweep", "analyze", "tiny_l4", "--out", str(out), "--confirm", "--device", "cpu")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Main effects" in r.stdout and "ANOVA" in r.stdout and "confirmation:" in r.stdout
    assert "evaluation: N=16 samples per row, seeds [0]" in r.stdout  # every number's N
    assert (out / "sweeps" / "tiny_l4" / "analysis.html").is_file()
    from evaluator.sweeps.analysis import analyze

    res, _ = analyze("tiny_l4", _journal(out))
    conf = load_study("tiny_l4", make_storage(_journal(out)))[0].user_attrs["confirm"]
    assert conf["levels"] == res["best"]["levels"]
    assert conf["observed_mean"] == pytest.approx(sum(conf["values"]) / len(conf["values"]))
    assert conf["predicted_mean"] == pytest.approx(res["best"]["predicted_mean"])


def test_journal_heartbeat_marks_only_silent_trials_stale(tmp_path):
    storage = make_storage(str(tmp_path / "j.log"), heartbeat=1, grace=2)
    study = optuna.create_study(storage=storage, study_name="hb")
    quiet, beating = study.ask(), study.ask()
    sid = study._study_id
    storage.set_trial_system_attr(quiet._trial_id, "heartbeat", time.time() - 10)
    storage.record_heartbeat(beating._trial_id)
    assert storage._get_stale_trial_ids(sid) == [quiet._trial_id]
    from optuna.storages import fail_stale_trials

    fail_stale_trials(study)
    states = {t.number: t.state for t in study.get_trials()}
    assert states[quiet.number] == TrialState.FAIL and states[beating.number] == TrialState.RUNNING
    # the retry callback enqueued the stale trial again
    assert [t.system_attrs.get("failed_trial") for t in study.get_trials(
        states=(TrialState.WAITING,))] == [quiet.number]
    storage.record_heartbeat(quiet._trial_id)  # a late beat from the lost worker is harmless


def test_costs_enqueue_the_longest_rows_first_and_workers_take_them_in_that_order(tmp_path):
    from evaluator.sweeps.study import row_costs

    ls = from_data(tiny_sweep(repeats=2))
    costs = row_costs(ls)
    assert sorted(costs) == [0, 1, 2, 3] and all(c > 0 for c in costs.values())
    study = create_or_resume(ls, make_storage(_journal(tmp_path)), tmp_path)
    assert enqueue_missing(study, ls, costs=lambda: {0: 1.0, 1: 9.0, 2: 3.0, 3: 5.0}) == 8
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    assert [key_of(t) for t in sorted(waiting, key=lambda t: t.number)] == [
        (1, 0), (1, 1), (3, 0), (3, 1), (2, 0), (2, 1), (0, 0), (0, 1)]
    first = study.ask()  # what a worker gets next: the longest row
    assert key_of(study.trials[first.number]) == (1, 0)
    # nothing missing: the (profiling) cost estimate is not even asked for
    assert enqueue_missing(study, ls, costs=lambda: pytest.fail("profiled for nothing")) == 0


def _kill_mid_trial(storage, skip=(), pid=None) -> tuple[int, int]:
    """SIGKILL the worker (``pid``, or any) of the first RUNNING trial not in ``skip``;
    (trial, pid)."""
    found = wait_running(storage, "tiny_l4", timeout=180, skip=skip, pid=pid)
    assert found is not None, "no worker started a trial"
    os.kill(found[1], signal.SIGKILL)
    return found


@pytest.mark.slow
def test_a_worker_of_a_two_worker_sweep_killed_twice_loses_and_repeats_nothing(tmp_path):
    p = write_sweep(tmp_path, tiny_sweep(steps=60))
    out = tmp_path / "results"
    url = _journal(out)
    sweep = spawn("sweep", "run", str(p), "--workers", "2", "--out", str(out), "--device",
                  "cpu", "--heartbeat", "1", "--no-profile", log=tmp_path / "run.log")
    end = time.time() + 120
    while not os.path.exists(url) and time.time() < end:
        time.sleep(0.2)
    storage = make_storage(url)
    first = _kill_mid_trial(storage)
    # the operator starts a worker in its place; it is killed mid-trial too
    again = spawn_worker(url, "tiny_l4", out, heartbeat=1)
    second = _kill_mid_trial(storage, skip=(first[0],), pid=again.pid)
    again.wait()
    assert wait_all([sweep], timeout=500) == [0], (tmp_path / "run.log").read_text()[-3000:]
    log = (tmp_path / "run.log").read_text()
    assert "done 4, running 0, failed 0" in log and "Traceback" not in log
    study = optuna.load_study(study_name="tiny_l4", storage=make_storage(url))
    assert completed_keys(study) == ALL_L4  # every row once, no duplicate trial
    trials = {t.number: t for t in study.get_trials()}
    for killed, pid in (first, second):
        assert trials[killed].state == TrialState.FAIL
        retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == killed]
        assert len(retries) == 1 and not retries[0].user_attrs["worker"].endswith(f":{pid}")
    for run in {t.user_attrs["run"] for t in trials.values() if t.state == TrialState.COMPLETE}:
        events = [line.split(" ", 2)[-1] for line in
                  (Path(run) / "log.txt").read_text().splitlines()]
        done = [i for i, e in enumerate(events) if e.startswith("finished at step")]
        assert len(done) == 1, events  # trained to the end once, never again after that
        assert not any(e.startswith(("start", "resume at step")) for e in events[done[0]:])
        lines = (Path(run) / "loss.jsonl").read_text().splitlines()
        steps = [json.loads(x)["step"] for x in lines]
        assert sorted(set(steps)) == steps and len(steps) == 60
