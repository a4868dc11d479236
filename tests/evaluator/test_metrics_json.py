"""evaluator.store.metrics: the typed metrics.json, its upgrade, and checked writes."""
from __future__ import annotations

import json

import pytest

from archspec.errors import UserError
from evaluator.store.atomic import CorruptRunFile
from evaluator.store.metrics import (METRICS_VERSION, EvalMetrics, InvalidMetrics, RunMetrics,
                                     upgrade)
from tests.evaluator.conftest import copy_run


def test_model_round_trips_a_real_evaluated_run(evaluated_run):
    raw = json.loads(evaluated_run.metrics_file.read_text())
    assert raw["version"] == METRICS_VERSION
    m = evaluated_run.read_metrics()
    # the model holds every key the writers stored, nothing added or lost
    assert m.model_dump(mode="json", exclude_unset=True) == raw
    assert evaluated_run.metrics() == raw
    ev = m.eval["quick"]
    assert isinstance(ev, EvalMetrics)
    plan = [(r.sampler, r.steps) for r in ev.results]
    assert plan == [tuple(p) for p in raw["eval"]["quick"]["settings"]["plan"]]
    assert ("ddpm", 50) in plan and [r.reference for r in ev.results].count(True) == 1
    fd = ev.results[0].metrics["FD-digits"]
    assert fd.mean == raw["eval"]["quick"]["results"][0]["metrics"]["FD-digits"]["mean"]
    assert fd.n == 32 and ev.settings.num_samples == 32 and ev.results[0].seeds == [0]
    assert m.train.steps == 30 and m.train.params == ev.speed.params
    assert ev.results[0].band_error is not None
    assert len(ev.results[0].band_error.log10_ratio) == len(ev.results[0].band_error.band_edges) - 1
    assert m.best_eval() == ("quick", ev)


def test_a_version_less_file_is_upgraded_on_read(evaluated_run, tmp_path):
    run = copy_run(evaluated_run, tmp_path)
    raw = json.loads(run.metrics_file.read_text())
    old = {k: v for k, v in raw.items() if k != "version"}
    run.metrics_file.write_text(json.dumps(old))
    assert upgrade(old) == raw and list(upgrade(old))[0] == "version"
    assert run.metrics() == raw
    assert run.read_metrics().version == METRICS_VERSION
    # a write stores the upgraded file
    run.update_metrics("note", "x")
    assert json.loads(run.metrics_file.read_text()) == {**raw, "note": "x"}


def test_a_newer_version_or_invalid_file_names_its_path(evaluated_run, tmp_path):
    run = copy_run(evaluated_run, tmp_path)
    raw = json.loads(run.metrics_file.read_text())
    run.metrics_file.write_text(json.dumps({**raw, "version": METRICS_VERSION + 1}))
    with pytest.raises(CorruptRunFile, match=r"metrics\.json: invalid metrics \(version 2 is "
                                             "newer"):
        run.metrics()
    bad = json.loads(json.dumps(raw))
    bad["eval"]["quick"]["results"][0]["steps"] = "five"
    run.metrics_file.write_text(json.dumps(bad))
    with pytest.raises(CorruptRunFile, match=r"metrics\.json: invalid metrics "
                                             r"\(eval\.quick\.results\.0\.steps"):
        run.read_metrics()
    assert issubclass(CorruptRunFile, UserError)


def test_an_invalid_section_is_refused_on_write_and_the_file_is_unchanged(evaluated_run,
                                                                         tmp_path):
    run = copy_run(evaluated_run, tmp_path)
    before = run.metrics_file.read_bytes()
    ev = run.metrics()["eval"]
    del ev["quick"]["results"][0]["metrics"]["FD-digits"]["values"]
    with pytest.raises(InvalidMetrics, match=r"metrics\.json: refusing to write invalid "
                                             r"metrics \(eval\.quick\.results\.0\.metrics"
                                             r"\.FD-digits\.values: Field required"):
        run.update_metrics("eval", ev)
    with pytest.raises(InvalidMetrics, match=r"train\.steps"):
        run.update_metrics("train", {"steps": "many"})
    assert run.metrics_file.read_bytes() == before


def test_free_form_keys_are_kept(evaluated_run, tmp_path):
    # e.g. a frequency process recorded under train by another part of the toolkit
    run = copy_run(evaluated_run, tmp_path)
    train = {**run.metrics()["train"], "process": {"name": "x", "sha256": "ab" * 32}}
    run.update_metrics("train", train)
    assert run.read_metrics().train.process == train["process"]
    assert json.loads(run.metrics_file.read_text())["train"] == train


def test_an_empty_run_has_empty_metrics(tmp_path):
    from archspec import spec_from_dict
    from evaluator.store.rundir import RunDir
    from tests.evaluator.helpers import mini_spec

    run = RunDir.create(spec_from_dict(mini_spec()), tmp_path)
    assert run.metrics() == {} and run.read_metrics() == RunMetrics()
    assert run.read_metrics().best_eval() == (None, None)


def test_report_skips_and_lists_a_run_whose_metrics_do_not_fit(evaluated_run, tmp_path,
                                                               capsys):
    from app.cli import main

    good = copy_run(evaluated_run, tmp_path / "res", "good")
    bad = copy_run(evaluated_run, tmp_path / "res", "bad")
    data = json.loads(bad.metrics_file.read_text())
    data["train"]["steps"] = "thirty"  # valid JSON, not a valid metrics.json
    bad.metrics_file.write_text(json.dumps(data))
    assert main(["report", str(tmp_path / "res"), "--out", str(tmp_path / "rep")]) == 0
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"skipped: {bad.metrics_file}: invalid metrics (train.steps")
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "1 run(s)" in md and str(bad.metrics_file) in md and "| good |" in md
    assert good.metrics()["train"]["steps"] == 30
