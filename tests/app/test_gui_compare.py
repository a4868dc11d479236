"""The comparison endpoints through gradio_client: the NFE sweep, checkpoint choice, the
band table, and what keeps a result trustworthy (bad input keeps the last good result,
removed runs disappear, lists follow the results root)."""
from __future__ import annotations

import json

import pytest

gradio_client = pytest.importorskip("gradio_client")

from app.gui.side_by_side import PER_PANEL as P  # noqa: E402
from tests.app.test_gui import _png, _value  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(served_app):
    return gradio_client.Client(served_app[0], verbose=False)


def _paths(served_app):
    return [str(r.path) for r in served_app[2]]


def test_nfe_sweep_matches_core_and_second_click_is_cached(client, served_app):
    from evaluator.pipeline.nfe_sweep import nfe_sweep

    paths = _paths(served_app)
    fig, table, caption = client.predict(paths, "ddim", "2, 4", 8, 1, "spec",
                                         api_name="/nfe_sweep")
    assert "N=8" in caption and "noise seed 1" in caption and "0/4 points from the cache" \
        in caption
    traces = json.loads(fig["plot"])["data"]
    assert [t["name"] for t in traces] == ["mini_a (final)", "mini_b (final)"]
    # the core, asked again here, answers from the cache with the same numbers
    core = nfe_sweep(paths, sampler="ddim", steps=[2, 4], seed=1, n=8)
    for t, r in zip(traces, core["runs"]):
        assert all(p["cached"] for p in r["points"])
        assert t["y"] == pytest.approx([p["FD-digits"] for p in r["points"]])
        assert t["x"] == [p["nfe"] for p in r["points"]]
    _fig, table2, caption2 = client.predict(paths, "ddim", "2, 4", 8, 1, "spec",
                                            api_name="/nfe_sweep")
    assert "4/4 points from the cache" in caption2 and table2.count("cache") >= 4


def test_nfe_sweep_bad_input_is_a_message(client, served_app):
    fig, table, msg = client.predict(_paths(served_app), "ddim", "5, zero", 8, 1.5, "spec",
                                     api_name="/nfe_sweep")
    assert "'zero'" in msg and "seed: 1.5 is not a whole number" in msg


def test_checkpoint_choice_samples_the_snapshot(client, served_app):
    import torch

    from evaluator.diffusion.schedules import NoiseSchedule
    from evaluator.pipeline.nfe_sweep import models_for
    from evaluator.diffusion.samplers import sample
    from evaluator.report.images import image_grid

    paths = _paths(served_app)
    out = client.predict(paths, "final", "final", "final", "final", api_name="/checkpoints")
    ck_a, ck_b, conv = out[0], out[1], out[4]
    assert [c[1] for c in ck_a["choices"]] == ["final", "10", "20", "30"]
    assert [c[1] for c in ck_b["choices"]] == ["final"]   # mini_b keeps no snapshots
    names = [t.get("name") for t in json.loads(conv["plot"])["data"]]
    assert any(n and n.startswith("mini_a") for n in names)
    got = client.predict(paths, "ddim", 3, 0, 4, "spec", "10", "final", "final", "final",
                         api_name="/side_by_side")
    assert "@ snapshot step 10" in _value(got[2])
    (model, spec), = models_for(paths[:1], ["10"], "cpu", {}).values()
    ref = sample(model, NoiseSchedule.from_spec(spec.diffusion), sampler="ddim", steps=3, n=4,
                 shape=(1, 8, 8), seed=0, clip=spec.evaluate.clip,
                 prediction=spec.diffusion.prediction, return_trajectory=True)
    x0 = _png(_value(got[2 + 2]))
    assert (x0 == image_grid(ref.trajectory[-1], scale=1)).all()
    final = client.predict(paths, "ddim", 3, 0, 4, "spec", api_name="/side_by_side")
    assert not (_png(_value(final[2 + 2])) == x0).all()
    assert torch.isfinite(ref.images).all()


def test_band_table_rows_match_the_core(client, served_app):
    from evaluator.report.compare import band_rows
    from evaluator.pipeline.side_by_side import sample_side_by_side

    paths = _paths(served_app)
    client.predict(paths, "ddim", 4, 2, 8, "spec", api_name="/side_by_side")
    table, chart = client.predict(2, api_name="/band_table")
    trajs = sample_side_by_side(paths, sampler="ddim", steps=4, seed=2, n=8)
    ref = band_rows(trajs, 2)
    assert "settle b0" in table and "b0 0-0.167 c/px" in table
    for r in ref["rows"]:
        assert r["run"] in table and f"{r['log10_ratio'][0]:+.2f}" in table
    bars = json.loads(chart["plot"])["data"]
    assert len(bars) == 2 and bars[0]["y"] == pytest.approx(ref["rows"][0]["log10_ratio"])


def test_out_of_range_keeps_the_last_result(client, served_app):
    paths = _paths(served_app)
    good = client.predict(paths, "ddim", 3, 0, 4, "spec", api_name="/side_by_side")
    assert good[-1] == ""
    for steps, n, seed, want in ((0, 4, 0, "steps: 0 is out of range 1..1000"),
                                 (5000, 4, 0, "steps: 5000 is out of range"),
                                 (3, 100000, 0, "samples: 100000 is out of range 1..256"),
                                 (3, 4, 1.5, "seed: 1.5 is not a whole number")):
        bad = client.predict(paths, "ddim", steps, seed, n, "spec", api_name="/side_by_side")
        assert want in bad[-1]
        # every output is a skip: nothing shown before is replaced or blanked
        assert all(isinstance(x, dict) and x.get("__type__") == "update" and "value" not in x
                   and "value" not in x.get("props", {}) for x in bad[:-1])
    # the trajectory kept is the good one: the slider still shows its 3 steps
    got = client.predict(2, api_name="/show_step")
    assert "step 2/3" in _value(got[0])


def test_removed_run_leaves_panels_and_summary(client, served_app):
    paths = _paths(served_app)
    client.predict(paths, "ddim", 3, 0, 4, "spec", api_name="/side_by_side")
    out = client.predict(paths[:1], 3, api_name="/prune_panels")
    summary, panels = out[0], out[1:]
    assert "shared by all 1 runs" in summary
    assert panels[0]["visible"] is True and panels[P]["visible"] is False
    got = client.predict(2, api_name="/show_step")   # the slider moves the kept panel only
    assert got[P]["visible"] is False and "mini_a" in _value(got[0])


def test_lists_follow_the_results_root(client, served_app):
    import shutil

    from archspec import spec_from_dict
    from evaluator.training.loop import train
    from tests.evaluator.helpers import mini_spec

    root = served_app[3]
    before = client.predict([], [], api_name="/refresh_lists")
    n_before = len(before[0]["choices"])
    data = mini_spec(train={"steps": 3, "batch_size": 4})
    data["name"] = "late_run"
    run = train(spec_from_dict(data), root=root, device="cpu", progress=False).run
    try:
        after = client.predict([], [], api_name="/refresh_lists")
        labels = [c[0] for c in after[0]["choices"]]
        assert len(labels) == n_before + 1 and any(lb.startswith("late_run/") for lb in labels)
        (ws := root / "specs").mkdir(exist_ok=True)
        (ws / "fresh.yaml").write_text("name: fresh\n")
        specs = client.predict([], [], api_name="/refresh_lists")[4]["choices"]
        assert "workspace/fresh.yaml" in [c[0] for c in specs]   # reaches the train tab
    finally:
        shutil.rmtree(run.path.parent)
        (root / "specs" / "fresh.yaml").unlink(missing_ok=True)
