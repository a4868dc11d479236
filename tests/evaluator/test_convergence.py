"""Convergence curves: EMA snapshots every K steps, scored after training, in the report."""
from __future__ import annotations

import math

import pytest
import torch

from archspec import spec_from_dict
from archspec.errors import SpecError, UserError
from evaluator.report.writers import report
from evaluator.store.rundir import RunDir
from evaluator.store.snapshots import list_snapshots, load_snapshot
from evaluator.store.checkpoints import load_checkpoint
from tests.evaluator.helpers import evaluate_in, mini_spec

CONV = {"every": 8, "sampler": "ddim", "steps": 5, "num_samples": 24, "seed": 3}


@pytest.fixture(scope="module")
def converged(tmp_path_factory):
    root = tmp_path_factory.mktemp("conv")
    data = mini_spec(train={"steps": 20}, evaluate={"convergence": CONV, "seeds": [0]})
    _, rows = evaluate_in(root, data)
    return root, RunDir.open(rows[0]["run"])


def test_snapshots_are_kept_every_k_steps_and_at_the_end(converged):
    _, run = converged
    assert [s for s, _ in list_snapshots(run)] == [8, 16, 20]
    snap = load_snapshot(list_snapshots(run)[-1][1])
    # the last snapshot is the final EMA, the weights evaluate samples with
    ema = load_checkpoint(run.checkpoint_file)["ema"]
    assert snap["spec_hash"] == run.hash and snap["step"] == 20
    for k, v in ema.items():
        torch.testing.assert_close(snap["ema"][k], v, rtol=0, atol=0)


def test_convergence_scores_every_snapshot_with_its_settings(converged):
    _, run = converged
    curve = run.metrics()["eval"]["full"]["convergence"]
    assert [p["step"] for p in curve] == [8, 16, 20]
    for p in curve:
        assert math.isfinite(p["FD-digits"]) and p["FD-digits"] >= 0
        assert (p["n"], p["seed"], p["sampler"], p["steps"]) == (24, 3, "ddim", 5)
        assert p["clip"] == "clip" and p["settings"]["steps"] == 5  # the spec default
    # different weights give different distances (not one number copied three times)
    assert len({p["FD-digits"] for p in curve}) == 3


def test_report_shows_the_convergence_chart_and_table(converged, tmp_path):
    root, run = converged
    md, page = report(root / "results", out=tmp_path)
    text = md.read_text()
    assert "## Convergence" in text and "| mini | 16 |" in text
    assert "Convergence: FD-digits of EMA snapshots vs training step" in page.read_text()


def test_convergence_is_off_by_default_and_keeps_hashes():
    spec = spec_from_dict(mini_spec())
    assert spec.evaluate.convergence is None
    from archspec import canonical, spec_hash
    assert "convergence" not in canonical(spec)["evaluate"]
    on = spec_from_dict(mini_spec(evaluate={"convergence": CONV}))
    assert spec_hash(on) != spec_hash(spec)


@pytest.mark.parametrize("conv, loc", [
    ({"every": 0}, "evaluate.convergence.every"),
    ({"every": 5, "sampler": "dpmsolver"}, "evaluate.convergence.sampler"),
    ({"every": 5, "steps": 51}, "evaluate.convergence.steps"),
    ({"every": 5, "bogus": 1}, "evaluate.convergence.bogus"),
])
def test_bad_convergence_settings_are_located(conv, loc):
    with pytest.raises((SpecError, UserError)) as e:
        spec_from_dict(mini_spec(evaluate={"convergence": conv}))
    assert any(str(p).startswith(loc) for p in e.value.problems), e.value.problems


def test_a_foreign_or_damaged_snapshot_is_refused(tmp_path):
    from evaluator.store.atomic import CorruptRunFile
    bad = tmp_path / "ema_00000001.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(CorruptRunFile):
        load_snapshot(bad)
