"""Faults lose nothing: a write that fails (full disk, file-size limit, read-only root) stops
the run with a one-line reason in status.json, no traceback, and a loadable last checkpoint."""
from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from archspec import spec_from_dict
from archspec.errors import UserError
from evaluator.pipeline.budgets import get_budget
from evaluator.pipeline.evaluate import run_spec
from evaluator.store import atomic, checkpoints, snapshots
from evaluator.store.checkpoints import load_checkpoint
from evaluator.store.rundir import RunDir
from evaluator.store.runlock import WriteFailed
from tests.evaluator.helpers import mini_spec

REPO = Path(__file__).resolve().parents[2]
FULL = get_budget("full")
ENOSPC = os.strerror(errno.ENOSPC)


class _Full:
    """A file that takes ``room`` bytes, then fails like a full disk."""

    def __init__(self, f, room: int) -> None:
        self._f, self._room = f, room

    def write(self, b):
        if len(b) > self._room:
            raise OSError(errno.ENOSPC, ENOSPC)
        self._room -= len(b)
        return self._f.write(b)

    def __getattr__(self, k):
        return getattr(self._f, k)


def _disk_fills(monkeypatch, name: str, after: int, room: int = 100):
    """Writes of files called ``name`` (``*``: every file) fail after ``after`` good ones."""
    original, count = atomic.atomic_write, [0]

    def faulty(path, write, mode="wb"):
        if name in ("*", Path(path).name) or Path(path).parent.name == name:
            count[0] += 1
            if count[0] > after:
                return original(path, lambda f: write(_Full(f, room)), mode)
        return original(path, write, mode)

    for mod in (atomic, checkpoints, snapshots):
        monkeypatch.setattr(mod, "atomic_write", faulty)
    return count


def _spec(**train):
    return spec_from_dict(mini_spec(train={"steps": 20, "batch_size": 4, "checkpoint_every": 5,
                                           **train}))


def _assert_stopped(run: RunDir, file: str, ckpt_step: int) -> None:
    st = run.status()
    assert st["status"] == "failed" and st["resumable"] is True
    assert st["reason"].startswith("write failed: ") and file in st["reason"]
    assert ENOSPC in st["reason"] and "\n" not in st["reason"]
    ck = torch.load(run.checkpoint_file, weights_only=True)  # intact and loadable
    assert ck["step"] == ckpt_step
    assert not list(run.path.rglob("*.tmp"))  # no half-written temporaries left


def test_a_full_disk_at_a_checkpoint_keeps_the_last_one_and_resumes(tmp_path, monkeypatch):
    count = _disk_fills(monkeypatch, "checkpoint.pt", after=2)  # steps 5, 10 written
    with pytest.raises(WriteFailed, match=r"write failed: .*checkpoint\.pt: .*last checkpoint "
                                          r"is intact"):
        run_spec(_spec(), FULL, tmp_path, device="cpu", evaluate=False)
    assert count[0] == 3
    run = RunDir.create(_spec(), tmp_path)
    _assert_stopped(run, "checkpoint.pt", 10)
    monkeypatch.undo()  # space freed: the run resumes where the last checkpoint left it
    r = run_spec(_spec(), FULL, tmp_path, device="cpu", evaluate=False)
    assert r.status == "finished" and "resume at step 10" in run.log_file.read_text()
    assert [x["step"] for x in run.losses()] == list(range(1, 21))


def test_a_full_disk_at_metrics_json_fails_the_run_with_its_reason(tmp_path, monkeypatch):
    _disk_fills(monkeypatch, "metrics.json", after=0)
    with pytest.raises(WriteFailed, match=r"metrics\.json"):
        run_spec(_spec(), FULL, tmp_path, device="cpu", evaluate=False)
    _assert_stopped(RunDir.create(_spec(), tmp_path), "metrics.json", 20)


def test_a_full_disk_at_a_snapshot_fails_the_run_with_its_reason(tmp_path, monkeypatch):
    spec = spec_from_dict(mini_spec(
        train={"steps": 20, "batch_size": 4, "checkpoint_every": 5},
        evaluate={"convergence": {"every": 5, "sampler": "ddim", "steps": 5,
                                  "num_samples": 8, "seed": 0}}))
    _disk_fills(monkeypatch, "snapshots", after=1)  # ema at step 5 written, step 10 not
    with pytest.raises(WriteFailed, match=r"ema_00000010\.pt"):
        run_spec(spec, FULL, tmp_path, device="cpu", evaluate=False)
    run = RunDir.create(spec, tmp_path)
    _assert_stopped(run, "ema_00000010.pt", 10)
    snap = torch.load(run.path / "snapshots" / "ema_00000005.pt", weights_only=True)
    assert snap["step"] == 5


def test_when_status_json_cannot_be_written_either_the_reason_goes_to_stderr(
        tmp_path, monkeypatch, capsys):
    run = RunDir.create(_spec(), tmp_path)
    # owner.json, status "running" and the checkpoint at step 5 fit; then nothing does
    _disk_fills(monkeypatch, "*", after=3, room=0)
    with pytest.raises(WriteFailed):
        run_spec(_spec(), FULL, tmp_path, device="cpu", evaluate=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert [x for x in err if "write failed" in x] == [
        f"{run.path}: write failed: {run.status_file}: {ENOSPC} "
        "(status.json could not be written either)"]
    assert torch.load(run.checkpoint_file, weights_only=True)["step"] == 5


def test_a_file_size_limit_stops_the_cli_without_a_traceback(tmp_path):
    """A real limit (``ulimit -f``) in a fresh ``archsearch train --resume``: the next
    checkpoint is larger than the limit; the CLI ignores SIGXFSZ, so the write fails with
    EFBIG."""
    from evaluator.training.loop import Cancelled, train

    data = mini_spec(train={"steps": 20, "batch_size": 4, "checkpoint_every": 5})
    spec_file = tmp_path / "mini.yaml"
    spec_file.write_text(yaml.safe_dump(data))

    def stop(step, loss):
        if step == 10:
            raise Cancelled("stop")

    run = train(spec_from_dict(data), root=tmp_path / "R", device="cpu", progress=False,
                on_step=stop).run
    limit = run.checkpoint_file.stat().st_size - 1

    def limit_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    p = subprocess.run([sys.executable, "-m", "app.cli", "train", str(spec_file), "--out",
                        str(tmp_path / "R"), "--resume", "--device", "cpu", "--no-progress"],
                       cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                       preexec_fn=limit_files, capture_output=True, text=True, timeout=300)
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr and "internal error" not in p.stderr
    assert p.stderr.strip().splitlines()[-1] == (
        f"{run.path}: write failed: {run.checkpoint_file}: {os.strerror(errno.EFBIG)}; "
        "the last checkpoint is intact (free space, then resume)")
    st = run.status()
    assert st["status"] == "failed" and "File too large" in st["reason"]
    assert torch.load(run.checkpoint_file, weights_only=True)["step"] == 10
    assert load_checkpoint(run.checkpoint_file)["step"] == 10


def test_a_full_disk_at_the_sweep_journal_is_one_line(tmp_path, monkeypatch, capsys):
    from optuna.storages.journal import JournalFileBackend

    from app.cli import main
    from tests.evaluator.sweep_helpers import tiny_sweep, write_sweep

    def full(self, logs):
        raise OSError(errno.ENOSPC, ENOSPC)

    monkeypatch.setattr(JournalFileBackend, "append_logs", full)
    code = main(["sweep", "run", str(write_sweep(tmp_path, tiny_sweep())), "--out",
                 str(tmp_path / "R"), "--workers", "0"])
    err = capsys.readouterr().err
    assert code == 1 and err.strip().splitlines() == [f"write failed: {ENOSPC}"]


def _read_only_root(tmp_path, monkeypatch):
    """A read-only folder: a real read-only tmpfs when this machine lets us mount one,
    else (tests run as root, which chmod does not stop) file creation made to fail with
    EROFS as the kernel would."""
    ro = tmp_path / "ro"
    ro.mkdir()
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)],
                           capture_output=True, timeout=10)
        mounted = r.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        mounted = False
    if not mounted:
        real = atomic.tempfile.mkstemp

        def refuse(*a, dir=None, **k):
            if dir is not None and Path(dir).resolve().is_relative_to(ro.resolve()):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS))
            return real(*a, dir=dir, **k)

        monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    return ro, mounted


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    ro, mounted = _read_only_root(tmp_path, monkeypatch)
    yield ro
    if mounted:
        subprocess.run(["umount", str(ro)], check=False, timeout=10)


def test_a_read_only_results_root_is_refused_at_start(tmp_path, read_only, capsys):
    from app.cli import main
    from evaluator.pipeline.jobs import JobQueue

    spec_file = tmp_path / "mini.yaml"
    spec_file.write_text(yaml.safe_dump(mini_spec()))
    for cmd in (["train", str(spec_file)], ["evaluate", str(spec_file)]):
        assert main([*cmd, "--out", str(read_only), "--device", "cpu", "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"{read_only}: results root is not "
                                                   "writable (Read-only file system)")
    with pytest.raises(UserError, match="results root is not writable"):
        JobQueue(read_only).submit([str(spec_file)], evaluate=False)
