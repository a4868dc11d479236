"""evaluator.store.runlock: one owner per run folder, across threads and CLI processes."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from archspec import spec_from_dict
from evaluator.store.checkpoints import load_checkpoint
from evaluator.store.rundir import RunDir
from evaluator.store.runlock import OWNER_NAME, RunBusy, hold_run
from tests.evaluator.helpers import mini_spec

REPO = Path(__file__).resolve().parents[2]
STEPS = 30

# The real `archsearch` CLI in a fresh interpreter, one torch thread (bit-identical
# weights); each optimizer step slowed by DELAY s, and with HANG > 0 stuck for good before
# step HANG (so a test acts while it holds the run, whatever the machine's load).
_DRIVER = """
import sys, time, torch
torch.set_num_threads(1)
delay, hang = float(sys.argv[1]), int(sys.argv[2])
if delay or hang:
    orig, n = torch.optim.AdamW.step, [0]
    def slow(self, *a, **k):
        n[0] += 1
        while hang and n[0] >= hang:
            time.sleep(1)
        time.sleep(delay)
        return orig(self, *a, **k)
    torch.optim.AdamW.step = slow
from app.cli import main
sys.exit(main(sys.argv[3:]))
"""


@pytest.fixture
def spec_file(tmp_path):
    p = tmp_path / "mini.yaml"
    p.write_text(yaml.safe_dump(mini_spec(train={"steps": STEPS, "batch_size": 4,
                                                 "checkpoint_every": 5})))
    return p


def _cli(tmp_path, delay, *args, stderr=subprocess.PIPE, hang=0):
    driver = tmp_path / "driver.py"
    driver.write_text(_DRIVER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(driver), str(delay), str(hang), *args], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)


def _train_args(spec_file, out, *extra):
    return ["train", str(spec_file), "--out", str(out), "--device", "cpu", "--no-progress",
            *extra]


def _run_dir(out: Path, timeout=120.0) -> RunDir:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = list(out.glob("runs/*/*/spec.resolved.json"))
        if found:
            return RunDir(found[0].parent)
        time.sleep(0.05)
    raise AssertionError(f"no run folder under {out}")


def _wait_for(pred, timeout=120.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# ---- in one process ---------------------------------------------------------------------
def test_a_held_run_is_refused_without_waiting_and_names_its_holder(tmp_path):
    held, release = threading.Event(), threading.Event()

    def holder():
        with hold_run(tmp_path, "test holder"):
            held.set()
            release.wait(30)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert held.wait(30)
        owner = json.loads((tmp_path / OWNER_NAME).read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        with pytest.raises(RunBusy, match=rf"held by pid {os.getpid()} on host "
                                          rf"{socket.gethostname()} since .*test holder"):
            with hold_run(tmp_path, "second", wait=False):
                pass
    finally:
        release.set()
        t.join()
    assert not (tmp_path / OWNER_NAME).exists()  # released: nobody named
    with hold_run(tmp_path, "after", wait=False) as waited:
        assert waited is False


def test_a_waiter_says_whom_it_waits_for_and_gets_the_run_after_release(tmp_path):
    held, lines, order = threading.Event(), [], []

    def holder():
        with hold_run(tmp_path, "first"):
            held.set()
            time.sleep(0.6)
            order.append("first done")

    t = threading.Thread(target=holder)
    t.start()
    assert held.wait(30)
    with hold_run(tmp_path, "second", on_wait=lines.append) as waited:
        order.append("second in")
        with hold_run(tmp_path, "nested in the same thread", wait=False) as again:
            assert again is False  # re-entrant: not a second owner
    t.join()
    assert waited and order == ["first done", "second in"]
    assert len(lines) == 1 and lines[0].startswith(f"waiting for run {tmp_path} held by pid "
                                                   f"{os.getpid()}")


# ---- CLI processes ----------------------------------------------------------------------
def test_two_cli_trainings_of_one_run_train_it_once_and_both_succeed(tmp_path, spec_file):
    out = tmp_path / "R"
    a = _cli(tmp_path, 0.03, *_train_args(spec_file, out))
    b = _cli(tmp_path, 0.03, *_train_args(spec_file, out))
    (oa, ea), (ob, eb) = a.communicate(timeout=300), b.communicate(timeout=300)
    assert a.returncode == 0 and b.returncode == 0, (ea, eb)
    run = _run_dir(out)
    assert [r["step"] for r in run.losses()] == list(range(1, STEPS + 1))
    log = run.log_file.read_text().splitlines()
    assert sum(" start: " in x or " resume at step " in x for x in log) == 1, log
    assert sum(" finished at step " in x for x in log) == 1, log
    waits = [e for e in (ea, eb) if "waiting for run" in e]
    assert len(waits) == 1 and "held by pid" in waits[0]
    assert sum("reused" in o for o in (oa, ob)) == 1


def test_no_wait_refuses_and_a_waiter_resumes_a_sigkilled_holder_bit_identically(
        tmp_path, spec_file):
    out = tmp_path / "R"
    holder = _cli(tmp_path, 0.02, *_train_args(spec_file, out), hang=13)  # ckpts 5, 10
    run = _run_dir(out)
    _wait_for(lambda: run.checkpoint_file.exists(), what="the holder's first checkpoint")
    owner = json.loads((run.path / OWNER_NAME).read_text())
    assert owner["pid"] == holder.pid

    refused = _cli(tmp_path, 0, *_train_args(spec_file, out, "--no-wait"))
    _, err = refused.communicate(timeout=120)
    assert refused.returncode == 3
    assert err.strip().splitlines() == [
        f"run {run.path} held by pid {holder.pid} on host {socket.gethostname()} since "
        f"{owner['since']} (archsearch train); not waiting (--no-wait)"]

    err_file = tmp_path / "waiter.err"
    with open(err_file, "w") as ef:
        waiter = _cli(tmp_path, 0, *_train_args(spec_file, out), stderr=ef)
        _wait_for(lambda: "waiting for run" in err_file.read_text(), what="the waiter")
        _wait_for(lambda: load_checkpoint(run.checkpoint_file)["step"] == 10,
                  what="the holder's checkpoint at step 10")
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(30)
        killed_at = load_checkpoint(run.checkpoint_file)["step"]
        assert killed_at == 10
        assert waiter.wait(300) == 0, err_file.read_text()
    assert f"resume at step {killed_at}" in run.log_file.read_text()
    assert [r["step"] for r in run.losses()] == list(range(1, STEPS + 1))

    # an undisturbed run of the same spec, in a fresh interpreter like the others
    ref = _cli(tmp_path, 0, *_train_args(spec_file, tmp_path / "ref"))
    assert ref.wait(300) == 0
    ca = load_checkpoint(_run_dir(tmp_path / "ref").checkpoint_file)
    cb = load_checkpoint(run.checkpoint_file)
    for part in ("model", "ema"):
        assert ca[part].keys() == cb[part].keys()
        for k in ca[part]:
            assert torch.equal(ca[part][k], cb[part][k]), (part, k)
    assert ca["step"] == cb["step"] == STEPS


# ---- where flock is refused: the lease with a heartbeat --------------------------------------
@pytest.fixture
def no_flock(monkeypatch):
    import errno
    import fcntl

    from evaluator.store import lease

    def refuse(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", refuse)
    monkeypatch.setattr(lease, "HEARTBEAT_S", 0.1)
    monkeypatch.setattr(lease, "STALE_S", 1.0)
    return lease


def test_without_flock_a_lease_excludes_and_its_heartbeat_keeps_it(tmp_path, no_flock):
    held, lines, events = threading.Event(), [], []

    def holder():
        with hold_run(tmp_path, "lease holder"):
            held.set()
            time.sleep(2.5)  # > STALE_S: only the heartbeat keeps the waiter out
            events.append("released")

    t = threading.Thread(target=holder)
    t.start()
    assert held.wait(30)
    with pytest.raises(RunBusy, match=rf"held by pid {os.getpid()} .*lease holder, lease"):
        with hold_run(tmp_path, "second", wait=False):
            pass
    with hold_run(tmp_path, "waiter", on_wait=lines.append) as waited:
        events.append("waiter in")
    t.join()
    assert waited and events == ["released", "waiter in"]
    assert len(lines) == 1 and "waiting for run" in lines[0]
    assert not (tmp_path / no_flock.LEASE_NAME).exists()


def test_without_flock_a_dead_holder_s_lease_goes_stale_and_is_taken_over(tmp_path, no_flock):
    (tmp_path / no_flock.LEASE_NAME).write_text(json.dumps(
        {"pid": 999999, "host": "gone", "since": "then", "what": "dead", "token": "t",
         "beat": 7}))
    t0 = time.monotonic()
    with hold_run(tmp_path, "next", on_wait=lambda m: None) as waited:
        assert waited and time.monotonic() - t0 >= 1.0
        assert json.loads((tmp_path / no_flock.LEASE_NAME).read_text())["pid"] == os.getpid()


# ---- other writers into a run folder ----------------------------------------------------------
@pytest.mark.slow
def test_sample_waits_while_the_run_is_held_and_refuses_with_no_wait(tmp_path, spec_file):
    from evaluator.training.loop import train

    res = train(spec_from_dict(yaml.safe_load(spec_file.read_text())), root=tmp_path / "R",
                device="cpu", progress=False)
    run = res.run
    args = ["sample", str(run.path), "--steps", "2", "--n", "4", "--device", "cpu",
            "--no-progress"]
    grid, err_file = run.samples_file("ddim", 2), tmp_path / "sample.err"
    with hold_run(run.path, "archsearch train"):  # as a training of this run would
        refused = _cli(tmp_path, 0, *args, "--no-wait")
        assert refused.wait(120) == 3
        assert "(archsearch train); not waiting (--no-wait)" in refused.stderr.read()
        with open(err_file, "w") as ef:
            waiter = _cli(tmp_path, 0, *args, stderr=ef)
            _wait_for(lambda: "waiting for run" in err_file.read_text(), what="the waiter")
            time.sleep(0.5)
            assert not grid.exists() and waiter.poll() is None  # nothing written meanwhile
    assert waiter.wait(120) == 0, err_file.read_text()
    assert grid.is_file() and "sampled 4 with ddim x 2 steps" in run.log_file.read_text()
    with hold_run(run.path, "after", wait=False):
        pass  # released by the sampler
