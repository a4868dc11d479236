"""``archsearch train | sample | evaluate | report``: exit codes, messages, light imports."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from app.cli import main
from app.cli import COMMANDS
from evaluator.store.rundir import RunDir
from tests.evaluator.helpers import mini_spec

REPO = Path(__file__).resolve().parents[2]
MINI = mini_spec(train={"batch_size": 8})


@pytest.fixture
def spec_file(tmp_path):
    p = tmp_path / "mini.yaml"
    p.write_text(yaml.safe_dump(MINI))
    return p


def test_module_imports_nothing_heavy():
    code = ("import sys, app.commands.runs; "
            "print(sorted(m for m in ('torch', 'diffusers', 'numpy', 'plotly') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"


def test_commands_table_resolves():
    """Every command in the table names an existing add/run pair."""
    import argparse
    import importlib

    for name, (module, add, run, _help) in COMMANDS.items():
        mod = importlib.import_module(module)
        getattr(mod, add)(argparse.ArgumentParser(prog=name))
        assert callable(getattr(mod, run)), name


def test_bad_input_exits_2_with_one_line(tmp_path, capsys):
    cases = [
        (["train", str(tmp_path / "none.yaml")], "none.yaml: no such spec file"),
        (["sample", str(tmp_path)], "not a run folder"),
        (["sample", str(tmp_path / "gone")], "no such run folder"),
        (["evaluate", str(tmp_path / "a.yaml"), "--out", str(tmp_path)], "no such spec file"),
        (["report", str(tmp_path / "nothing")], "no such results folder"),
    ]
    for argv, msg in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err


def test_train_rejects_zero_steps(spec_file, capsys):
    assert main(["train", str(spec_file), "--steps", "0"]) == 2
    assert "--steps must be >= 1" in capsys.readouterr().err


def test_sample_rejects_unknown_sampler_and_untrained_run(spec_file, tmp_path, capsys):
    from archspec import load_spec
    run = RunDir.create(load_spec(spec_file), tmp_path)
    assert main(["sample", str(run.path), "--sampler", "ddimm"]) == 2
    assert "unknown sampler 'ddimm' (did you mean 'ddim'" in capsys.readouterr().err
    assert main(["sample", str(run.path), "--sampler", "ddim", "--device", "cpu"]) == 2
    assert "no checkpoint.pt" in capsys.readouterr().err


def test_train_sample_report_round_trip(spec_file, tmp_path, capsys):
    out = tmp_path / "res"
    argv = ["train", str(spec_file), "--steps", "3", "--out", str(out), "--device", "cpu",
            "--no-progress", "--override", "train.lr=0.001"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    run_path = Path(text.split("run: ")[1].split()[0])
    run = RunDir.open(run_path)
    assert run.status()["status"] == "finished"
    assert run.load_spec().train.steps == 3 and run.load_spec().train.lr == 0.001
    assert "finished 3 steps" in text

    assert main(["sample", str(run_path), "--sampler", "ddim", "--steps", "2", "--n", "4",
                 "--device", "cpu", "--no-progress"]) == 0
    png = Path(capsys.readouterr().out.strip())
    assert png == run.samples_file("ddim", 2) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / "report.md"), str(out / "report.html")]


def test_failed_training_exits_1_with_the_reason(spec_file, tmp_path, monkeypatch, capsys):
    import evaluator.training.loop as train_mod

    class Failed:
        status, step, reason, metrics = "failed", 4, "non-finite loss at step 4 (nan)", {}
        run = RunDir(tmp_path)

    monkeypatch.setattr(train_mod, "train", lambda *a, **k: Failed())
    assert main(["train", str(spec_file), "--out", str(tmp_path), "--device", "cpu"]) == 1
    assert "failed: non-finite loss at step 4" in capsys.readouterr().err


# ---- run store faults: a damaged file is named, skipped by report, refused by resume -------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two finished 2-step runs under one results root: (root, run A, run B)."""
    root = tmp_path_factory.mktemp("store")
    runs = []
    for seed in (0, 1):
        p = root / f"s{seed}.yaml"
        p.write_text(yaml.safe_dump(mini_spec(train={"batch_size": 8, "steps": 2,
                                                     "checkpoint_every": 1, "seed": seed})))
        assert main(["train", str(p), "--out", str(root), "--device", "cpu",
                     "--no-progress"]) == 0
        runs.append(p)
    found = [RunDir(q.parent) for q in sorted((root / "runs").glob("*/*/spec.resolved.json"))]
    assert len(found) == 2
    return root, runs, found


CORRUPT = {"checkpoint.pt": lambda b: b[: len(b) // 2], "metrics.json": lambda b: b[:7],
           "status.json": lambda b: b"\x00\xff{not json"}


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_resume_refuses_a_damaged_file_and_leaves_it(trained, name, capsys):
    root, specs, runs = trained
    run = next(r for r in runs if r.load_spec().train.seed == 0)
    target = run.path / name
    good = target.read_bytes()
    try:
        target.write_bytes(CORRUPT[name](good))
        damaged = target.read_bytes()
        argv = ["train", str(specs[0]), "--out", str(root), "--device", "cpu", "--no-progress",
                "--resume", "--steps", "2"]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"{target}: ") and "Traceback" not in err[0]
        assert "restore or delete" in err[0]
        assert target.read_bytes() == damaged, "nothing is overwritten"
    finally:
        target.write_bytes(good)


@pytest.mark.parametrize("name", ["metrics.json", "status.json"])
def test_report_skips_and_lists_a_damaged_run(trained, name, tmp_path, capsys):
    root, _specs, runs = trained
    target = runs[1].path / name
    good = target.read_bytes()
    try:
        target.write_bytes(CORRUPT[name](good))
        assert main(["report", str(root), "--out", str(tmp_path)]) == 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"skipped: {target}: corrupt JSON")
        md = (tmp_path / "report.md").read_text()
        assert "1 run(s)" in md and "## Skipped runs" in md and str(target) in md
    finally:
        target.write_bytes(good)


def test_sample_names_a_damaged_checkpoint(trained, capsys):
    _root, _specs, runs = trained
    target = runs[0].checkpoint_file
    good = target.read_bytes()
    try:
        target.write_bytes(b"PK\x03\x04 not really a zip")
        assert main(["sample", str(runs[0].path), "--steps", "2", "--n", "2", "--device", "cpu",
                     "--no-progress"]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(f"{target}: truncated or corrupted checkpoint")
    finally:
        target.write_bytes(good)


def test_train_refuses_a_spec_its_dataset_does_not_fit(tmp_path, capsys):
    p = tmp_path / "rgb.yaml"
    p.write_text(yaml.safe_dump(mini_spec(train={"dataset": "digits"},
                                          image={"channels": 3, "size": 8})))
    assert main(["train", str(p), "--out", str(tmp_path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"{p}: image: dataset 'digits' has images of 1 channel, 8x8 px" in err
    assert not (tmp_path / "runs").exists(), "refused before anything was written"


def test_internal_error_is_one_line_with_a_traceback_file(spec_file, monkeypatch, capsys):
    import evaluator.training.loop as train_mod

    def boom(*a, **k):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(train_mod, "train", boom)
    assert main(["train", str(spec_file), "--device", "cpu"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("internal error in train (RuntimeError: boom second line); this is "
                           "a bug in archsearch")
    path = Path(line.split("Full traceback: ")[1])
    text = path.read_text()
    assert "Traceback (most recent call last)" in text and "RuntimeError: boom" in text
    path.unlink()
