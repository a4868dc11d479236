"""Reports: Markdown + one self-contained HTML (inline plotly.js, embedded PNGs)."""
from __future__ import annotations

import base64
import json
import re

import pytest
import torch

from archspec import spec_from_dict
from archspec.errors import UserError
from evaluator.report.images import save_grid
from evaluator.report.writers import collect, report
from evaluator.store.atomic import write_json
from evaluator.store.rundir import RunDir


def _spec(name: str, width: int):
    return spec_from_dict({
        "name": name, "image": {"channels": 1, "size": 8},
        "model": {"nodes": {"x": {"block": "input"}, "t": {"block": "timestep"},
                            "temb": {"block": "time_embedding", "in": ["t"], "dim": width},
                            "eps": {"block": "resblock", "in": ["x", "temb"], "channels": 1}},
                  "output": "eps"}})


def _row(name, sampler, steps, fd):
    return {"pipeline": name, "sampler": sampler, "steps": steps, "nfe": steps, "n": 16,
            "seeds": [0], "reference": sampler == "ddpm", "ms_per_nfe": {"mean": 1.0},
            "settings": {}, "metrics": {
                "FD-digits": {"mean": fd, "ci95": None, "status": "ok", "values": [fd]},
                "FID": {"mean": None, "status": "unavailable",
                        "reason": "unavailable: Inception weights not found at /x"}}}


def fake_run(root, name, width, fd):
    run = RunDir.create(_spec(name, width), root)
    run.loss_file.write_text("".join(json.dumps({"step": i, "loss": 1.0 / i}) + "\n"
                                     for i in range(1, 21)))
    run.update_metrics("train", {"steps": 20, "loss_drop": 0.5, "steps_per_second": 3.0})
    run.update_metrics("eval", {"quick": {"results": [_row(name, "ddim", 5, fd),
                                                      _row(name, "ddpm", 50, fd / 2)],
                                          "speed": {"params": 123}}})
    write_json(run.spectra_file, {"data": {"band_shares": [0.7, 0.3], "band_edges": [0, .25, .5]},
                                  "ddim_5": {"band_shares": [0.6, 0.4]}})
    save_grid(torch.linspace(-1, 1, 4 * 64).view(4, 1, 8, 8), run.eval_grid_file("quick", "ddim", 5))
    # a grid from `archsearch sample`: not an evaluated result, so never in the report
    save_grid(torch.zeros(4, 1, 8, 8), run.samples_file("ddim", 5))
    run.set_status("finished")
    return run


def test_report_writes_markdown_and_self_contained_html(tmp_path):
    a = fake_run(tmp_path, "spatial", 16, 40.0)
    fake_run(tmp_path, "spectral", 32, 20.0)
    md, page = report(tmp_path)
    assert md == tmp_path / "report.md" and page == tmp_path / "report.html"
    text = md.read_text()
    assert "| spatial |" in text and "| spectral | ddpm (ref) | 50 |" in text
    assert "FID: unavailable: Inception weights not found at /x" in text
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
    assert html.count("Plotly.newPlot") == 3  # quality vs NFE, loss, spectra
    assert "FD-digits vs NFE" in html


def test_report_of_a_single_run_folder(tmp_path):
    run = fake_run(tmp_path, "solo", 16, 10.0)
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


def test_report_shows_stability_warnings(tmp_path):
    calm = fake_run(tmp_path, "calm", 16, 10.0)
    hot = fake_run(tmp_path, "hot", 32, 20.0)
    calm.update_metrics("train", {"steps": 20, "stability": {"warnings": []}})
    msg = "spectral node 'eps': gradient norm grew 31.0x (from 0.1 at step 120 to 3.1 at step 300)"
    hot.update_metrics("train", {"steps": 20, "stability": {"warnings": [{"message": msg}]}})
    md, page = report(tmp_path)
    text = md.read_text()
    assert "Stability warnings" in text and f"WARNING: hot ({hot.hash[:8]}): {msg}" in text
    assert "calm (" not in text.split("Stability warnings")[1].split("## ")[0]
    assert "Stability warnings" in page.read_text() and "grew 31.0x" in page.read_text()
    for run in (hot,):
        run.update_metrics("train", {"steps": 20})
    assert "Stability warnings" not in report(tmp_path)[0].read_text()


def test_report_shows_which_bands_each_model_gets_wrong(tmp_path):
    run = fake_run(tmp_path, "spectral", 16, 20.0)
    ev = run.metrics()["eval"]
    ev["quick"]["results"][0]["band_error"] = {
        "band_edges": [0, 0.25, 0.5], "log10_ratio": [0.05, -1.5], "abs_error": [0.05, 1.5],
        "seeds": [0], "n": 16}
    run.update_metrics("eval", ev)
    md, page = report(tmp_path)
    text = md.read_text()
    assert "## Per-band error" in text
    assert "| spectral | ddim | 5 | 16 | 0 | +0.05 | -1.50 | 0.25-0.5 (-1.50) |" in text
    html_text = page.read_text()
    assert "Per-band error: log10(sample \\u002f data energy)" in html_text  # plotly JSON
    assert "<td>0.25-0.5 (-1.50)</td>" in html_text


def test_report_without_band_errors_has_no_band_section(tmp_path):
    fake_run(tmp_path, "spatial", 16, 40.0)
    md, page = report(tmp_path)
    assert "Per-band error" not in md.read_text() and "Per-band error" not in page.read_text()
