"""Reports: Markdown + one self-contained HTML (inline plotly.js, embedded PNGs)."""
from __future__ import annotations

import base64
import re

import pytest
import torch

from archspec import spec_from_dict
from archspec.errors import UserError
from evaluator.report.images import save_grid
from evaluator.report.writers import collect, report
from evaluator.store.rundir import RunDir
from tests.evaluator.conftest import copy_run


def _spec(name: str, width: int):
    return spec_from_dict({
        "name": name, "image": {"channels": 1, "size": 8},
        "model": {"nodes": {"x": {"block": "input"}, "t": {"block": "timestep"},
                            "temb": {"block": "time_embedding", "in": ["t"], "dim": width},
                            "eps": {"block": "resblock", "in": ["x", "temb"], "channels": 1}},
                  "output": "eps"}})


def fake_run(root, name, evaluated_run):
    """A copy of the session's evaluated run (tests/evaluator/conftest.py) named ``name``,
    plus a grid that ``archsearch sample`` wrote."""
    run = copy_run(evaluated_run, root, name)
    # a grid from `archsearch sample`: not an evaluated result, so never in the report
    save_grid(torch.zeros(4, 1, 8, 8), run.samples_file("ddim", 5))
    return run


def _results(run):
    return run.metrics()["eval"]["quick"]["results"]


def test_report_writes_markdown_and_self_contained_html(tmp_path, evaluated_run):
    a = fake_run(tmp_path, "spatial", evaluated_run)
    fake_run(tmp_path, "spectral", evaluated_run)
    md, page = report(tmp_path)
    assert md == tmp_path / "report.md" and page == tmp_path / "report.html"
    text = md.read_text()
    assert "| spatial |" in text and "| spectral | ddpm (ref) | 50 |" in text
    fid = _results(a)[0]["metrics"]["FID"]
    assert fid["mean"] is None and f"FID: {fid['reason']}" in text
    fd = _results(a)[0]["metrics"]["FD-digits"]["mean"]
    assert f"{fd:.4g}" in text
    assert "(runs/spatial/" in text and "eval_quick_ddim_5.png)" in text
    assert "samples_ddim_5.png" not in text
    html = page.read_text()
    # self-contained: no external scripts, styles or images
    assert not re.search(r"<script[^>]+src=", html)
    assert not re.search(r"<link[^>]+href=\"?https?:", html)
    assert not re.search(r"<img[^>]+src=\"(?!data:)", html)
    assert "Plotly.newPlot" in html and len(html) > 1_000_000  # plotly.js inline
    # the embedded grid is the run's PNG, byte for byte
    png = base64.b64encode(a.eval_grid_file("quick", "ddim", 5).read_bytes()).decode()
    assert f"data:image/png;base64,{png}" in html
    assert base64.b64encode(a.samples_file("ddim", 5).read_bytes()).decode() not in html
    assert html.count("Plotly.newPlot") == 4  # quality vs NFE, loss, spectra, band error
    assert "FD-digits vs NFE" in html


def test_report_of_a_single_run_folder(tmp_path, evaluated_run):
    run = fake_run(tmp_path, "solo", evaluated_run)
    md, page = report(run.path, out=tmp_path / "rep")
    assert md.parent == tmp_path / "rep" and page.is_file()
    assert [r.path for r in collect(run.path)] == [run.path]


def test_report_rejects_bad_folders(tmp_path):
    with pytest.raises(UserError, match="no such results folder"):
        report(tmp_path / "missing")
    with pytest.raises(UserError, match="no runs found"):
        report(tmp_path)


def test_report_handles_runs_without_evaluation(tmp_path):
    run = RunDir.create(_spec("bare", 16), tmp_path)
    run.set_status("failed", reason="non-finite loss at step 4")
    md, page = report(tmp_path)
    assert "failed (non-finite loss at step 4)" in md.read_text()
    assert "Plotly.newPlot" in page.read_text()


def test_report_shows_stability_warnings(tmp_path, evaluated_run):
    calm = fake_run(tmp_path, "calm", evaluated_run)
    hot = fake_run(tmp_path, "hot", evaluated_run)
    assert calm.read_metrics().train.stability.warnings == []  # a calm 30-step run
    msg = "spectral node 'eps': gradient norm grew 31.0x (from 0.1 at step 120 to 3.1 at step 300)"
    train = hot.metrics()["train"]
    train["stability"]["warnings"] = [{"message": msg}]
    hot.update_metrics("train", train)
    md, page = report(tmp_path)
    text = md.read_text()
    assert "Stability warnings" in text and f"WARNING: hot ({hot.hash[:8]}): {msg}" in text
    assert "calm (" not in text.split("Stability warnings")[1].split("## ")[0]
    assert "Stability warnings" in page.read_text() and "grew 31.0x" in page.read_text()
    train["stability"]["warnings"] = []
    hot.update_metrics("train", train)
    assert "Stability warnings" not in report(tmp_path)[0].read_text()


def test_report_shows_which_bands_each_model_gets_wrong(tmp_path, evaluated_run):
    run = fake_run(tmp_path, "spectral", evaluated_run)
    ev = run.metrics()["eval"]
    rows = ev["quick"]["results"]
    assert all("band_error" in r for r in rows)  # the pipeline stores one per setting
    for r in rows[1:]:
        del r["band_error"]
    # two bands with known errors instead of the measured ones
    rows[0]["band_error"].update(band_edges=[0, 0.25, 0.5], log10_ratio=[0.05, -1.5],
                                 abs_error=[0.05, 1.5], per_seed=[[0.05, -1.5]], seeds=[0],
                                 n=16)
    run.update_metrics("eval", ev)
    md, page = report(tmp_path)
    text = md.read_text()
    assert "## Per-band error" in text
    assert "| spectral | ddim | 5 | 16 | 0 | +0.05 | -1.50 | 0.25-0.5 (-1.50) |" in text
    html_text = page.read_text()
    assert "Per-band error: log10(sample \\u002f data energy)" in html_text  # plotly JSON
    assert "<td>0.25-0.5 (-1.50)</td>" in html_text


def test_report_without_band_errors_has_no_band_section(tmp_path, evaluated_run):
    run = fake_run(tmp_path, "spatial", evaluated_run)
    ev = run.metrics()["eval"]
    for r in ev["quick"]["results"]:
        del r["band_error"]
    run.update_metrics("eval", ev)
    md, page = report(tmp_path)
    assert "Per-band error" not in md.read_text() and "Per-band error" not in page.read_text()
