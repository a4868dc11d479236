"""benchmarks/gpu_check.{py,sh}: argument handling, the no-CUDA message, the table.

A real run trains two 32x32 models and an extractor (minutes on these CPUs), so it is not
run here; docs/gpu.md gives the smoke command.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _driver():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks/gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gpu_check = _driver()


def test_cuda_unavailable_is_one_line_exit_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--device", "cuda", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("gpu_check: --device cuda: CUDA is not available here")
    assert not (tmp_path / "gpu_check.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_shell_wrapper_refuses_cuda_before_installing(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)}
    r = subprocess.run(["bash", str(ROOT / "benchmarks/gpu_check.sh"), "--wheels",
                        str(tmp_path / "none")], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"gpu_check: --device cuda: CUDA is not available here (python: {sys.executable}); "
        "use --device cpu for a smoke run"]


def test_every_bad_argument_reported_at_once(capsys, tmp_path):
    rc = gpu_check.main(["--device", "cpu", "--steps", "1", "--samples", "0",
                         str(tmp_path / "missing.yaml"), "--out", str(tmp_path)])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["gpu_check: --steps: expected an integer >= 2, got 1",
                   "gpu_check: --samples: expected an integer >= 2, got 0",
                   f"gpu_check: {tmp_path / 'missing.yaml'}: no such spec file"]


def test_defaults_are_the_two_32x32_specs_on_cuda(monkeypatch):
    monkeypatch.setenv("OUT", "/somewhere/out")
    a = gpu_check.parse([])
    assert a.device == "cuda" and a.out == "/somewhere/out"
    assert all((ROOT / s).is_file() for s in a.specs) and len(a.specs) == 2


def test_spec_overrides_set_the_checked_samplers():
    args = argparse.Namespace(steps=7, batch_size=16, samples=32)
    spec = gpu_check.load(str(ROOT / gpu_check.SPECS[1]), args)
    assert (spec.train.steps, spec.train.batch_size) == (7, 16)
    assert spec.evaluate.num_samples == 32 and list(spec.evaluate.seeds) == [0]
    assert [(s.name, list(s.steps)) for s in spec.evaluate.samplers] == [
        (n, [k]) for n, k in gpu_check.SAMPLERS]


def test_table_ratios_are_second_over_first():
    rows = {"a": {"train_ms_per_step": 4.0, "profile_step_ms": 2.0,
                  "ms_per_nfe dpmsolver++ 20": 1.0, "ms_per_nfe ddim 50": 0.5},
            "b": {"train_ms_per_step": 6.0, "profile_step_ms": 5.0,
                  "ms_per_nfe dpmsolver++ 20": 3.0, "ms_per_nfe ddim 50": 0.25}}
    env = {"device": "X", "torch": "t", "cuda": None, "commit": "abc", "dirty": False}
    args = argparse.Namespace(steps=2, batch_size=4, warmup=0, repeats=1, samples=8)
    lines = gpu_check.table(rows, env, args, "FD-x").splitlines()
    ratio = lines[-1].split()
    assert ratio[:5] == ["b/a", "1.5", "2.5", "3", "0.5"]
    assert "FD-x (in-project extractor, not FID), N=8" in lines[1]


def test_fd_of_reads_the_evaluation_rows():
    ev = {"results": [{"sampler": "ddim", "steps": 50, "metrics": {
        "KD-x": {"mean": 0.1, "status": "ok"},
        "FD-x": {"mean": 12.5, "status": "ok", "n": 8, "weights_sha256": "s"}}}]}
    assert gpu_check.fd_of(ev)["ddim 50"] == {"metric": "FD-x", "value": 12.5, "status": "ok",
                                              "reason": None, "n": 8,
                                              "extractor_sha256": "s"}


def test_commit_comes_from_git_or_the_caller(monkeypatch):
    monkeypatch.setenv("GPU_CHECK_COMMIT", "abc1234")
    assert gpu_check._commit(lambda *a: None) == {
        "commit": "abc1234", "commit_source": "GPU_CHECK_COMMIT", "dirty": None}
    fake = {("rev-parse", "HEAD"): "f00d", ("status", "--porcelain", "--untracked-files=no"): ""}
    assert gpu_check._commit(lambda *a: fake[a] or None) == {
        "commit": "f00d", "commit_source": "git", "dirty": False}
