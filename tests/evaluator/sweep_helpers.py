"""Tiny sweeps and worker processes shared by the sweep tests."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tests.evaluator.helpers import mini_spec

ROOT = Path(__file__).resolve().parents[2]


def tiny_sweep(steps: int = 4, **over: Any) -> dict[str, Any]:
    """An L4 over three two-level factors of the mini spec; objective from training
    metrics (no sampling), so a trial takes well under a second once warm."""
    base = mini_spec(train={"steps": steps, "batch_size": 8, "checkpoint_every": 2})
    data: dict[str, Any] = {
        "name": "tiny_l4", "base": base,
        "factors": {
            "lr": {"path": "train.lr", "levels": [0.001, 0.002]},
            "tw": {"path": "diffusion.loss.time_weighting", "levels": ["uniform", "min_snr"]},
            "loss": {"levels": {
                "pixel": {"diffusion.loss.domain": "pixel",
                          "diffusion.loss.freq_weighting": "uniform"},
                "fourier": {"diffusion.loss.domain": "fourier",
                            "diffusion.loss.freq_weighting": "power_law"}}},
        },
        "design": {"type": "taguchi", "array": "L4"},
        "objective": {"metric": "train.loss_last"},
        "secondary": [{"metric": "train.loss_drop"}],
        "budget": "full",
    }
    data.update(copy.deepcopy(over))
    return data


def write_sweep(tmp: Path, data: dict[str, Any], name: str = "sweep.yaml") -> Path:
    p = Path(tmp) / name
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``archsearch ARGS`` in a fresh interpreter (one thread), output captured."""
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def _env() -> dict[str, str]:
    # the project first, then whatever the caller's path holds (e.g. a driver folder)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def spawn(*args: str, log: Path | None = None) -> subprocess.Popen:
    """``archsearch ARGS`` started in the background, output to ``log``."""
    sink = open(log, "w") if log else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=_env(),
                            stdout=sink, stderr=subprocess.STDOUT)


def spawn_worker(storage: str, study: str, out: Path, heartbeat: int = 1,
                 log: Path | None = None, extra: tuple[str, ...] = ()) -> subprocess.Popen:
    return spawn("sweep", "worker", "--storage", storage, "--study", study, "--out", str(out),
                 "--threads", "1", "--device", "cpu", "--heartbeat", str(heartbeat), *extra,
                 log=log)


def wait_all(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    end = time.time() + timeout
    for p in procs:
        try:
            p.wait(timeout=max(1.0, end - time.time()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    return [p.returncode for p in procs]


def completed_keys(study: Any) -> list[tuple[int, int]]:
    """(row, repeat) of every COMPLETE trial, duplicates kept."""
    from optuna.trial import TrialState

    from evaluator.sweeps.study import key_of

    return sorted(key_of(t) for t in study.get_trials(states=(TrialState.COMPLETE,)))


def wait_running(storage: Any, study: str, timeout: float = 120, skip: tuple[int, ...] = (),
                 pid: int | None = None) -> tuple[int, int] | None:
    """(trial number, worker pid) of the first RUNNING trial whose worker has recorded
    itself (worker ``pid`` if given), or None after ``timeout`` s; trials numbered in
    ``skip`` are ignored."""
    import optuna
    from optuna.trial import TrialState

    end = time.time() + timeout
    while time.time() < end:
        s = optuna.load_study(study_name=study, storage=storage)
        for t in s.get_trials(states=(TrialState.RUNNING,)):
            w = t.user_attrs.get("worker", "")
            if w and t.number not in skip and (pid is None or w.endswith(f":{pid}")):
                return t.number, int(w.rsplit(":", 1)[1])
        time.sleep(0.2)
    return None
