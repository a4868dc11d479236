"""The Gradio app driven through gradio_client: every named endpoint the README lists, on
two tiny runs trained once for the module (fixture ``served_app`` in conftest.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")

from app.gui.side_by_side import PER_PANEL as P  # noqa: E402
from tests.conftest import SPECS  # noqa: E402

GOOD = (SPECS / "tiny_unet_8.yaml").read_text()
pytestmark = pytest.mark.slow  # the shared fixture trains, evaluates and launches (~40 s)


@pytest.fixture(scope="module")
def client(served_app):
    return gradio_client.Client(served_app[0], verbose=False)


def _value(x):
    return x["value"] if isinstance(x, dict) and "__type__" in x else x


def _png(src) -> np.ndarray:
    """A PNG file's pixels, or those of the data-URI ``<img>`` in an HTML panel."""
    if isinstance(src, str) and src.lstrip().startswith("<"):
        import base64
        import io
        import re

        (b64,) = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', src)
        src = io.BytesIO(base64.b64decode(b64))
    return np.asarray(Image.open(src).convert("RGB"))


def test_named_endpoints(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    want = {"/validate", "/diff", "/profile", "/side_by_side", "/show_step", "/grid_png",
            "/runs", "/save", "/load_spec", "/submit_job", "/cancel_job", "/jobs", "/sweep"}
    assert want <= names, want - names


def test_binds_localhost(served_app):
    assert served_app[0].startswith("http://127.0.0.1:")


def test_validate_good_and_bad(client):
    md, problems, _fig = client.predict(GOOD, False, api_name="/validate")
    assert problems == [] and "valid" in md and "tiny_unet_8" in md
    lines = GOOD.splitlines()
    bad_line = next(i for i, ln in enumerate(lines) if "eps:" in ln) + 1
    bad = GOOD.replace("channel_mult: [1, 2]", "channel_mult: [1, 2], chanels: 3")
    bad = bad.replace("dataset: digits", "dataset: digitz")
    md, problems, _ = client.predict(bad, False, api_name="/validate")
    by_loc = {p["loc"]: p for p in problems}
    assert set(by_loc) == {"model.nodes.eps.chanels", "train.dataset"}
    assert "did you mean 'channels'" in by_loc["model.nodes.eps.chanels"]["msg"]
    # the line of the offending key in the text, found independently here
    assert by_loc["model.nodes.eps.chanels"]["line"] in (bad_line, bad_line + 1)
    assert "chanels" in bad.splitlines()[by_loc["model.nodes.eps.chanels"]["line"] - 1]
    assert "digitz" in bad.splitlines()[by_loc["train.dataset"]["line"] - 1]
    assert "2 problem(s)" in md


def test_validate_unparsable_text_gives_line(client):
    _md, problems, _ = client.predict("name: x\nimage: [1,\n", False, api_name="/validate")
    assert len(problems) == 1 and problems[0]["line"] == 3
    assert "invalid YAML" in problems[0]["msg"]


def test_graph_expands_unet(client):
    _md, _p, fig = client.predict(GOOD, True, api_name="/graph")
    assert "eps.enc0.0" in fig["plot"] and "eps.mid0" in fig["plot"]
    _md, _p, fig = client.predict(GOOD, False, api_name="/validate")
    assert "eps.enc0.0" not in fig["plot"]


def test_diff_finds_changed_parameter(client, tmp_path):
    b = tmp_path / "wider.yaml"
    b.write_text(GOOD.replace("width: 32", "width: 48"))
    text, d = client.predict(str(SPECS / "tiny_unet_8.yaml"), str(b), api_name="/diff")
    changed = {c["loc"]: (c["a"], c["b"]) for c in d["nodes"]["changed"]["eps"]}
    assert changed["channels"] == (32, 48)
    assert "~ model.nodes.eps.channels: 32 -> 48" in text
    assert d["params"]["delta"] > 0 and d["measures"]["flops"]["delta"] > 0


def test_profile(client):
    r = client.predict(GOOD, api_name="/profile")
    from archspec import load_spec
    spec = load_spec(SPECS / "tiny_unet_8.yaml")
    assert r["params"] == spec.validated.total_params
    assert r["flops"] > 0 and r["fwd_bwd_ms"] > 0 and r["image"] == [1, 8, 8]


def test_side_by_side_and_slider(client, served_app):
    """Same initial noise, right shapes, NFE-long trajectories, slider k shows step k."""
    import torch

    from evaluator.diffusion.schedules import NoiseSchedule
    from evaluator.diffusion.samplers import sample
    from evaluator.store.checkpoints import load_trained
    from evaluator.report.images import image_grid

    runs = served_app[2]
    paths = [str(r.path) for r in runs]
    steps, n = 5, 4
    out = client.predict(paths, "ddim", steps, 3, n, "spec", api_name="/side_by_side")
    slider, info = out[0], out[1]  # the session state is not part of the API
    assert slider["maximum"] == steps  # ddim: one model call per step
    assert "shared by all 2 runs" in info
    panels = [out[2 + P * i: 2 + P * (i + 1)] for i in range(4)]
    assert [p[0]["visible"] for p in panels] == [True, True, False, False]
    # independent reference: sample each run here with the same settings
    refs = []
    for r in runs:
        model, spec = load_trained(r, "cpu")
        res = sample(model, NoiseSchedule.from_spec(spec.diffusion), sampler="ddim",
                     steps=steps, n=n, shape=(1, 8, 8), seed=3, clip=spec.evaluate.clip,
                     prediction=spec.diffusion.prediction, return_trajectory=True)
        assert len(res.trajectory) == len(res.xt_trajectory) == res.nfe == steps
        refs.append(res)
    for k in (1, 3, steps):
        got = client.predict(k, api_name="/show_step")
        for i, ref in enumerate(refs):
            xt, x0 = _png(_value(got[P * i + 1])), _png(_value(got[P * i + 2]))
            assert xt.shape == image_grid(ref.xt_trajectory[k - 1], scale=1).shape
            assert np.array_equal(xt, image_grid(ref.xt_trajectory[k - 1], scale=1))
            assert np.array_equal(x0, image_grid(ref.trajectory[k - 1], scale=1))
            skip = got[P * i + 4]  # metrics unchanged: not re-sent (an update with no value)
            assert skip["__type__"] == "update" and "value" not in skip
            assert "value" not in skip.get("props", {})
            assert f"step {k}/{steps}" in _value(got[P * i])
        if k == 1:  # the very first x_t is the shared initial noise
            assert np.array_equal(_png(_value(got[1])), _png(_value(got[P + 1])))
    # different steps show different predictions; the two models differ
    s1, s3 = client.predict(1, api_name="/show_step"), client.predict(3, api_name="/show_step")
    assert not np.array_equal(_png(_value(s1[2])), _png(_value(s3[2])))
    assert not torch.equal(refs[0].trajectory[-1], refs[1].trajectory[-1])
    grid = client.predict(3, api_name="/grid_png")
    assert Path(grid).suffix == ".png" and _png(grid).shape[0] > 2 * xt.shape[0]


def test_panel_header_shows_metrics_json(client, served_app):
    runs = served_app[2]
    out = client.predict([str(r.path) for r in runs], "ddim", 2, 0, 2, "spec",
                         api_name="/side_by_side")
    head_a, head_b = _value(out[2 + P - 1]), _value(out[2 + 2 * P - 1])  # metrics, last
    fd = runs[0].metrics()["eval"]["quick"]["results"][0]["metrics"]["FD-digits"]["mean"]
    assert "FD-digits" in head_a and f"{fd:.4g}" in head_a and "N=32" in head_a
    assert "no evaluation in metrics.json" in head_b


def test_runs_table_lists_both(client, served_app):
    table, csv_path = client.predict("", "", "name", False, api_name="/runs")
    col = table["headers"].index
    names = [row[col("name")] for row in table["data"]]
    assert names == ["mini_a", "mini_b"]
    assert [row[col("status")] for row in table["data"]] == ["finished", "finished"]
    best = [row[col("best FD-digits ddim")] for row in table["data"]]
    assert isinstance(best[0], float) and best[1] in ("", None)
    plots = client.predict("", "", api_name="/results_plots")
    import json

    names = {t.get("name") for t in json.loads(plots[0]["plot"])["data"]}
    assert len(plots) == 4 and {"mini_a / ddim", "mini_a / ddpm"} <= names
    text = Path(csv_path).read_text()
    assert text.splitlines()[0].startswith("name,hash,status") and "mini_b" in text
    table, _ = client.predict("mini_b", "", "name", False, api_name="/runs")
    assert [r[0] for r in table["data"]] == ["mini_b"]


def test_job_submit_progress_cancel_resumable(client, served_app, tmp_path):
    import time

    import yaml

    from evaluator.store.rundir import RunDir
    from tests.evaluator.helpers import mini_spec

    p = tmp_path / "job.yaml"
    p.write_text(yaml.safe_dump(mini_spec(train={"steps": 5000, "batch_size": 4})))
    msg, job_id, _timer = client.predict([str(p)], "digits", "full", "cpu", False, "",
                                         api_name="/submit_job")
    assert job_id in msg
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        table, _curve, _timer = client.predict(job_id, api_name="/jobs")
        row = next(r for r in table["data"] if r[0] == job_id)
        if row[1] == "running" and int(row[4]) >= 3:
            break
        time.sleep(0.2)
    assert "stays resumable" in client.predict(job_id, api_name="/cancel_job")
    job = served_app[1].ctx.jobs.wait(job_id, timeout=60)
    assert job["state"] == "cancelled"
    st = RunDir.open(job["runs"][0]).status()
    assert st["status"] == "cancelled" and st["resumable"] is True


def test_sweep_view_says_nothing_to_show(client):
    msg, _a, _b = client.predict(api_name="/sweep")
    assert "no sweep study" in msg


def test_save_refuses_escape_and_saves_inside(client, served_app):
    root = served_app[3]
    with pytest.raises(Exception, match=r"'\.\.' is refused"):
        client.predict(GOOD, "../escape.yaml", api_name="/save")
    assert not (root / "escape.yaml").exists()
    with pytest.raises(Exception, match="absolute paths are refused"):
        client.predict(GOOD, "/tmp/x.yaml", api_name="/save")
    msg, _ = client.predict(GOOD, "mine", api_name="/save")
    assert (root / "specs" / "mine.yaml").read_text() == GOOD and "saved" in msg


def test_errors_are_messages_and_app_keeps_running(client, served_app):
    with pytest.raises(Exception, match="no such file"):
        client.predict(str(SPECS / "tiny_unet_8.yaml"), "nope.yaml", api_name="/diff")
    fresh = gradio_client.Client(served_app[0], verbose=False)  # new session: no trajectory
    with pytest.raises(Exception, match="sample first"):
        fresh.predict(2, api_name="/show_step")
    _md, problems, _ = client.predict(GOOD, False, api_name="/validate")
    assert problems == []
