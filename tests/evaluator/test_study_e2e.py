"""A tiny study end to end (2 pipelines x 2 seeds x 24 steps on synthetic8), its report,
and a study killed mid-run (in training or in evaluation) that resumes without retraining
or duplicating anything."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from optuna.trial import TrialState

from evaluator.study import engine
from evaluator.sweeps.study import key_of, load_study, make_storage
from tests.evaluator.study_helpers import start_study, tiny_study, write_study
from tests.evaluator.sweep_helpers import ROOT, cli


def _checkpoints(out: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in out.rglob("checkpoint.pt")}


@pytest.mark.slow
def test_a_tiny_study_runs_end_to_end_and_reports_every_question(tiny_study_run):
    path, out, url = tiny_study_run  # 20 trials run by one worker (the fixture checks it)
    storage = make_storage(url, heartbeat=1)
    rows = engine.status(storage, "tiny.cpu")
    assert sum(r["done"] for r in rows) == 20 and not any(r["failed"] for r in rows)
    before = _checkpoints(out)
    t0 = time.time()
    r = cli("study", "report", str(path), "--budget", "cpu", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert time.time() - t0 < 30
    assert _checkpoints(out) == before  # nothing trained again
    d = out / "studies" / "tiny" / "cpu"
    md = (d / "study.md").read_text()
    for q in ("Q1: Fewer steps?", "Q2: Stability?", "Q3: Weighting per timestep?",
              "Q4: Robust?"):
        assert f"## {q}" in md
    assert md.count("**Answer (") == 4 and md.count("**What the evidence does not show.**") == 4
    assert "FD-synthetic8" in md and "N=16" in md and "training seeds [0, 1]" in md
    page = (d / "study.html").read_text()
    assert page.count("<h2>") == 4 and "<script src" not in page
    assert "Plotly.newPlot" in page and "plotly.js v" in page.lower() or "plotly" in page


def _worker(path: Path, out: Path, url: str, **popen: object) -> subprocess.Popen:
    """One ``study worker`` process, one thread, heartbeat every second, output dropped."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "study", "worker", str(path), "--out", str(out),
         "--storage", url, "--device", "cpu", "--heartbeat", "1", "--threads", "1"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)


@pytest.mark.slow
def test_a_killed_study_resumes_without_retraining_or_duplicating(tmp_path):
    data = tiny_study(questions={"q1": tiny_study()["questions"]["q1"]},
                      experiments={"nfe": tiny_study()["experiments"]["nfe"]})
    data["budgets"]["cpu"]["train_steps"] = 150
    path, out = write_study(tmp_path, data), tmp_path / "results"
    url, storage = start_study(path, out)
    victim = _worker(path, out, url)
    names = [f"tiny.cpu.nfe.{p}" for p in ("spatial", "spectral")]
    end, killed = time.time() + 300, False
    try:
        while time.time() < end and not killed:
            ts = [t for n in names for t in load_study(n, storage)[0].get_trials()]
            done = [t for t in ts if t.state == TrialState.COMPLETE]
            if done and any(t.state == TrialState.RUNNING for t in ts):
                os.kill(victim.pid, signal.SIGKILL)
                killed = True
            time.sleep(0.2)
    finally:
        victim.kill()
        victim.wait()
    assert killed, "never saw a finished trial next to a running one"
    finished = {t.user_attrs["run"] for n in names for t in load_study(n, storage)[0]
                .get_trials(states=(TrialState.COMPLETE,))}
    stamps = {k: v for k, v in _checkpoints(out).items() if str(Path(k).parent) in finished}
    assert stamps
    r = cli("study", "run", str(path), "--out", str(out), "--workers", "1",
            "--heartbeat", "1", "--device", "cpu")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    after = _checkpoints(out)
    assert all(after[k] == v for k, v in stamps.items())  # finished runs not retrained
    for n in names:
        trials = load_study(n, storage)[0].get_trials()
        complete = Counter(key_of(t) for t in trials if t.state == TrialState.COMPLETE)
        assert sorted(complete) == [(0, 0), (1, 0)] and set(complete.values()) == {1}
    failed = [t for n in names for t in load_study(n, storage)[0].get_trials()
              if t.state == TrialState.FAIL]
    assert len(failed) == 1  # the killed trial, retried once


def _evaluating(out: Path) -> Path | None:
    """The first run folder whose ``status.json`` says it is being evaluated."""
    from evaluator.store.atomic import read_json

    for f in out.glob("runs/*/*/status.json"):
        if str(read_json(f, default={}, kind=dict).get("phase", "")).startswith("evaluating"):
            return f.parent
    return None


def _kill_when_evaluating(victim: subprocess.Popen, out: Path, timeout: float) -> Path:
    end = time.time() + timeout
    while time.time() < end and victim.poll() is None:
        run = _evaluating(out)
        if run is not None:
            os.killpg(victim.pid, signal.SIGKILL)  # the worker and anything it started
            victim.wait()
            return run
        time.sleep(0.02)
    raise AssertionError(f"no run was seen evaluating (worker exit {victim.poll()})")


def _free(run: Path) -> bool:
    """True when a new process could take the run lock at once (no waiting)."""
    from evaluator.store.runlock import RunBusy, hold_run

    try:
        with hold_run(run, "test probe", wait=False):
            return True
    except RunBusy:
        return False


@pytest.mark.slow
def test_a_study_killed_while_evaluating_resumes_without_retraining(tmp_path):
    from evaluator.store.rundir import RunDir

    data = tiny_study(questions={"q1": tiny_study()["questions"]["q1"]},
                      experiments={"nfe": {"pipelines": ["spatial"], "seeds": 2}})
    path, out = write_study(tmp_path, data), tmp_path / "results"
    url, storage = start_study(path, out)
    victim = _worker(path, out, url, start_new_session=True)
    try:
        killed = RunDir(_kill_when_evaluating(victim, out, timeout=240))
    finally:
        if victim.poll() is None:
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait()
    assert "eval" not in killed.metrics()  # killed before its evaluation was stored
    assert _free(killed.path)  # the kernel dropped the dead worker's lock
    ckpt, losses = killed.checkpoint_file, killed.loss_file.read_bytes()
    stamp = (ckpt.stat().st_mtime_ns, ckpt.read_bytes())
    r = cli("study", "run", str(path), "--out", str(out), "--workers", "1",
            "--heartbeat", "1", "--device", "cpu")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert (ckpt.stat().st_mtime_ns, ckpt.read_bytes()) == stamp  # not trained again
    assert killed.loss_file.read_bytes() == losses  # no step logged twice
    assert "phase" not in killed.status() and killed.read_metrics().eval  # evaluated, valid
    trials = load_study("tiny.cpu.nfe.spatial", storage)[0].get_trials()
    complete = Counter(key_of(t) for t in trials if t.state == TrialState.COMPLETE)
    # every cell exactly once
    assert sorted(complete) == [(0, 0), (1, 0)] and set(complete.values()) == {1}
    assert sum(t.state == TrialState.FAIL for t in trials) == 1  # the killed one, retried
    runs = [RunDir(p.parent) for p in out.glob("runs/*/*/spec.resolved.json")]
    assert len(runs) == 2 and all(_free(x.path) for x in runs)
    for x in runs:
        steps = [rec["step"] for rec in x.losses()]
        assert len(steps) == len(set(steps)) == x.status()["step"]
