"""``archsearch train | sample | evaluate | report``: exit codes, messages, light imports."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from app.cli import main
from app.cli import COMMANDS
from evaluator.runs import RunDir
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
    import evaluator.train as train_mod

    class Failed:
        status, step, reason, metrics = "failed", 4, "non-finite loss at step 4 (nan)", {}
        run = RunDir(tmp_path)

    monkeypatch.setattr(train_mod, "train", lambda *a, **k: Failed())
    assert main(["train", str(spec_file), "--out", str(tmp_path), "--device", "cpu"]) == 1
    assert "failed: non-finite loss at step 4" in capsys.readouterr().err
