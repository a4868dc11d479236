"""Evaluation orchestration: budgets, sampler plans, statistics, and one real small run."""
from __future__ import annotations

import json
import math
import statistics

import pytest

from archspec import spec_from_dict, spec_hash
from archspec.errors import UserError
from evaluator.measure.stats import mean_ci
from evaluator.pipeline.budgets import (BUDGETS, Budget, apply_budget, check_samplers,
                                        eval_settings, sampler_plan)
from evaluator.pipeline.evaluate import evaluate
from evaluator.report.tables import format_table
from evaluator.store.atomic import read_json
from evaluator.store.rundir import RunDir
from tests.evaluator.helpers import evaluate_in, mini_spec

MINI = mini_spec()


def mini(**over):
    data = json.loads(json.dumps(MINI))
    for k, v in over.items():
        data[k].update(v)
    return spec_from_dict(data)


def test_mean_ci_matches_the_t_table():
    vals = [1.0, 2.0, 4.0]
    out = mean_ci(vals)
    # t_{0.975, 2} = 4.3027 (standard t-table value)
    half = 4.302652729911275 * statistics.stdev(vals) / math.sqrt(3)
    assert out["mean"] == pytest.approx(7 / 3) and out["ci95"] == pytest.approx(half)
    assert mean_ci([5.0]) == {"mean": 5.0, "ci95": None, "n_seeds": 1}
    assert mean_ci([None, float("nan")])["mean"] is None


def test_quick_plan_caps_steps_and_always_ends_with_the_ddpm_reference():
    spec = mini(evaluate={"samplers": [{"name": "ddim", "steps": [50, 10, 20, 5]},
                                       {"name": "ddpm", "steps": [50]}]})
    assert sampler_plan(spec, BUDGETS["quick"]) == [("ddim", 5), ("ddim", 10), ("ddpm", 50)]
    assert sampler_plan(spec, BUDGETS["full"]) == [("ddim", 5), ("ddim", 10), ("ddim", 20),
                                                   ("ddim", 50), ("ddpm", 50)]


def test_budget_caps_training_and_changes_the_hash():
    spec = mini(train={"steps": 5000, "batch_size": 256})
    q = apply_budget(spec, BUDGETS["quick"])
    quick = BUDGETS["quick"]
    assert (q.train.steps, q.train.batch_size) == (quick.train_steps, quick.batch_size) == (600, 64)
    assert spec_hash(q) != spec_hash(spec)
    small = mini()
    assert apply_budget(small, BUDGETS["quick"]) is small  # already within the budget
    assert apply_budget(spec, BUDGETS["full"]) is spec


def test_unknown_sampler_is_a_user_error():
    spec = mini()
    bad = spec.model_copy(update={"evaluate": spec.evaluate.model_copy(update={
        "samplers": [spec.evaluate.samplers[0].model_copy(update={"name": "ddimm"})]})})
    with pytest.raises(UserError, match=r"unknown sampler 'ddimm' \(did you mean 'ddim'"):
        check_samplers(bad, BUDGETS["full"])


def test_format_table_marks_failures_and_reference():
    rows = [{"pipeline": "a", "status": "failed", "reason": "non-finite loss at step 3"},
            {"pipeline": "b", "status": "ok", "sampler": "ddpm", "steps": 50, "nfe": 50,
             "n": 8, "reference": True, "ms_per_nfe": {"mean": 2.0, "ci95": None},
             "metrics": {"FD-digits": {"mean": 12.5, "ci95": 1.25}}}]
    table = format_table(rows)
    assert "failed: non-finite loss at step 3" in table
    assert "ddpm (ref)" in table and "12.5 +- 1.2" in table and "FD-digits" in table


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    spec_file, rows = evaluate_in(root, MINI)
    return root, spec_file, rows


def test_evaluate_trains_samples_and_measures(evaluated):
    root, _, rows = evaluated
    assert [(r["sampler"], r["steps"]) for r in rows] == [("ddim", 5), ("ddim", 10),
                                                          ("ddpm", 50)]
    run = RunDir.open(rows[0]["run"])
    assert run.status()["status"] == "finished"
    for r in rows:
        assert r["n"] == 32 and r["seeds"] == [0, 1] and r["settings"]["clip"] == "clip"
        fd = r["metrics"]["FD-digits"]
        assert fd["status"] == "ok" and len(fd["values"]) == 2 and fd["n"] == 32
        assert fd["mean"] == pytest.approx(sum(fd["values"]) / 2)
        assert fd["ci95"] is not None and fd["weights_sha256"]
        assert r["metrics"]["FID"]["status"] == "unavailable"
        assert r["metrics"]["FID"]["reason"].startswith("unavailable:")
        assert run.eval_grid_file("full", r["sampler"], r["steps"]).is_file()
    assert rows[-1]["reference"] and rows[-1]["nfe"] == 50
    ev = run.metrics()["eval"]["full"]
    assert ev["speed"]["params"] > 0 and ev["speed"]["train_steps_per_second"] > 0
    spectra = read_json(run.spectra_file)
    assert set(spectra) == {"data", "ddim_5", "ddim_10", "ddpm_50"}
    assert sum(spectra["data"]["band_shares"]) == pytest.approx(1.0)


def test_evaluate_reuses_a_finished_run(evaluated, monkeypatch):
    root, spec_file, rows = evaluated
    import evaluator.training.loop as train_mod

    def no_training(*a, **k):
        raise AssertionError("a finished run must not be trained again")

    monkeypatch.setattr(train_mod, "train", no_training)
    from evaluator.pipeline.evaluate import ensure_trained
    from archspec import load_spec
    run = ensure_trained(load_spec(spec_file), root / "results", "cpu", False)
    assert str(run.path) == rows[0]["run"]
    assert "reused finished run" in run.log_file.read_text()


def test_evaluate_rejects_missing_spec_and_bad_budget(tmp_path):
    with pytest.raises(UserError, match="no such spec file"):
        evaluate([tmp_path / "nope.yaml"], out=tmp_path)
    with pytest.raises(UserError, match="unknown budget 'huge'"):
        evaluate([], budget="huge", out=tmp_path)


def test_a_budget_caps_only_what_it_names():
    spec = mini(evaluate={"num_samples": 32, "seeds": [3, 4, 5]})
    tiny = eval_settings(spec, Budget("tiny", num_samples=4, seeds=1))
    assert (tiny["num_samples"], tiny["seeds"]) == (4, [3])
    assert tiny["plan"] == [["ddim", 5], ["ddim", 10], ["ddpm", 50]]  # steps not capped
    whole = eval_settings(spec, Budget("all"))
    assert (whole["num_samples"], whole["seeds"]) == (32, [3, 4, 5])
    screen = eval_settings(spec, Budget("screen", reference=False))
    assert screen["plan"] == [["ddim", 5], ["ddim", 10]]  # no DDPM at T: a screening budget


def test_evaluate_table_columns_come_from_the_metric_registry(evaluated, monkeypatch):
    _, _, rows = evaluated
    table = format_table(rows)
    header = table.splitlines()[0].split()
    # FD/KD and the spectral distance have values; FID/KID and LPIPS-diversity are
    # unavailable (no Inception or AlexNet weights in tests), so each becomes a note line
    # with its reason instead of an empty column
    assert header[5:-1] == ["FD-digits", "KD-digits", "spectral-RAPS-dist"]
    lines = table.splitlines()
    for name in ("FID", "KID", "LPIPS-diversity"):
        assert any(line.startswith(f"{name}: unavailable:") for line in lines), name
    # a metric registered later gets its column without touching evaluate
    from evaluator.measure.registry import METRICS, register_metric

    register_metric("test_mean", inputs=("samples",), columns=("sample-mean",))(
        lambda samples: {"metric": "sample-mean", "value": float(samples.mean()),
                         "status": "ok", "n": len(samples)})
    try:
        import torch

        from evaluator.measure.quality import quality_metrics
        from evaluator.report.tables import metric_columns
        x = torch.full((4, 1, 8, 8), 0.25)
        res = {m["metric"]: m for m in quality_metrics(x, torch.zeros(4, 1, 8, 8), None)}
        assert res["sample-mean"]["value"] == pytest.approx(0.25)
        row = {"metrics": {"sample-mean": {"mean": 0.25}}}
        assert metric_columns([row]) == ["sample-mean"]
    finally:
        METRICS.remove("test_mean")


def test_report_of_real_evaluate_output_embeds_only_evaluated_grids(evaluated, tmp_path):
    import base64

    from app.cli import main
    from evaluator.report.tables import fmt_metric
    from evaluator.report.writers import report

    root, _, rows = evaluated
    run = RunDir.open(rows[0]["run"])
    grids = [run.eval_grid_file("full", r["sampler"], r["steps"]) for r in rows]
    before = [g.read_bytes() for g in grids]
    # `archsearch sample` writes its own grid, never over the ones evaluate wrote
    assert main(["sample", str(run.path), "--sampler", "ddim", "--steps", "5", "--n", "4",
                 "--seed", "7", "--device", "cpu", "--no-progress"]) == 0
    assert [g.read_bytes() for g in grids] == before
    sampled = run.samples_file("ddim", 5)
    assert sampled.is_file() and sampled not in run.eval_grid_files()

    md, page = report(root / "results", out=tmp_path)
    text = md.read_text()
    for r in rows:
        label = r["sampler"] + (" (ref)" if r["reference"] else "")
        fd = fmt_metric(r["metrics"]["FD-digits"])
        assert f"| mini | {label} | {r['steps']} | {r['nfe']} | 32 | 0,1 | {fd} |" in text
    assert "FID: unavailable:" in text
    html = page.read_text()
    for g in grids:
        assert f"data:image/png;base64,{base64.b64encode(g.read_bytes()).decode()}" in html
    assert base64.b64encode(sampled.read_bytes()).decode() not in html
    assert "FD-digits vs NFE" in html


def test_evaluate_shows_one_bar_over_settings_including_the_ddpm_reference(evaluated, capsys):
    from evaluator.pipeline.evaluate import evaluate_run

    _, _, rows = evaluated
    run = RunDir.open(rows[0]["run"])
    tiny = Budget("tiny", num_samples=4, seeds=1, steps_per_sampler=1)
    out = evaluate_run(run, tiny, "cpu", progress=True)
    assert [(r["sampler"], r["steps"]) for r in out["results"]] == [("ddim", 5), ("ddpm", 50)]
    err = capsys.readouterr().err
    assert "evaluate mini" in err and "2/2" in err  # the outer bar counted both settings
    assert "ddpm 50 steps" in err  # the outer bar names the setting it is on
    assert "ddpm 50 steps, 1 batch(es)" in err and "/50 [" in err  # the reference's own bar
    assert run.eval_grid_file("tiny", "ddpm", 50).is_file()


def test_every_evaluated_setting_records_its_per_band_error(evaluated):
    from evaluator.pipeline.budgets import Budget
    from evaluator.pipeline.evaluate import evaluate_run
    from evaluator.measure.spectral import band_errors

    run = RunDir.open(evaluated[2][0]["run"])
    for r in evaluated[2]:  # the fixture's full evaluation: two seeds per setting
        be = r["band_error"]
        assert be["seeds"] == [0, 1] and be["n"] == 32 and len(be["per_seed"]) == 2
        assert len(be["log10_ratio"]) == len(be["band_edges"]) - 1
        assert be["log10_ratio"] == pytest.approx([sum(c) / 2 for c in zip(*be["per_seed"])])
    # spectra.json holds the latest evaluation's seed-0 statistics: evaluate once more
    # (small, one seed) and check each stored error against them
    out = evaluate_run(run, Budget("bands", num_samples=8, seeds=1), device="cpu")
    spectra = read_json(run.spectra_file)
    for r in out["results"]:
        seed0 = band_errors(spectra[f"{r['sampler']}_{r['steps']}"], spectra["data"])
        assert r["band_error"]["log10_ratio"] == pytest.approx(seed0["log10_ratio"])
        assert r["band_error"]["n"] == 8
