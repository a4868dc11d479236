"""Results tab helpers: table columns, CSV, and the sweep view's wiring to the sweeps
package (faked here: its study format belongs to evaluator.sweeps)."""
from __future__ import annotations

import csv
import sys
import types

import plotly.graph_objects as go

from app.gui.results import sweep_view, table, write_csv


def test_table_and_csv_round_trip(tmp_path):
    rows = [{"name": "a", "hash": "h1", "status": "finished", "params": 10, "loss_drop": 0.51234,
             "best FD-digits ddim": 3.0, "path": "/x/a"},
            {"name": "b", "hash": "h2", "status": "failed", "path": "/x/b"}]
    cols, values = table(rows)
    assert cols[:3] == ["name", "hash", "status"] and cols[-2:] == ["best FD-digits ddim", "path"]
    assert values[0][cols.index("loss_drop")] == 0.5123 and values[1][cols.index("params")] == ""
    with open(write_csv(cols, values), newline="") as f:
        back = list(csv.reader(f))
    assert back[0] == cols and back[2][0] == "b"


def test_sweep_view_without_package_or_study(tmp_path, monkeypatch):
    msg, a, b = sweep_view(tmp_path)
    assert "no sweep study" in msg and a is None and b is None


def test_sweep_view_uses_the_sweeps_package(tmp_path, monkeypatch):
    calls = []
    study = types.ModuleType("evaluator.sweeps.study")
    analysis = types.ModuleType("evaluator.sweeps.analysis")
    found: list[dict] = []
    study.list_studies = lambda root: found
    fig_me, fig_pc = go.Figure(), go.Figure()

    def analyze(name, storage):
        calls.append((name, storage))
        return {}, {"main_effects": fig_me, "parallel": fig_pc, "sn": go.Figure()}

    analysis.analyze = analyze
    pkg = types.ModuleType("evaluator.sweeps")
    for name, mod in (("evaluator.sweeps", pkg), ("evaluator.sweeps.study", study),
                      ("evaluator.sweeps.analysis", analysis)):
        monkeypatch.setitem(sys.modules, name, mod)
    assert "no sweep study" in sweep_view(tmp_path)[0]
    found.append({"name": "l9", "storage": str(tmp_path / "sweeps/l9/journal.log"),
                  "n_trials": 9})
    msg, a, b = sweep_view(tmp_path)
    assert "`l9` (9 trials" in msg and a is fig_me and b is fig_pc
    assert calls == [("l9", str(tmp_path / "sweeps/l9/journal.log"))]


def test_graph_figure_colours_unet_by_stages_and_hovers_honestly():
    from app.gui.figures import graph_figure
    from archspec import load_spec
    from archspec.graph import spec_graph
    from tests.conftest import SPECS

    spatial = graph_figure(spec_graph(load_spec(SPECS / "tiny_unet_8.yaml")))
    spectral = graph_figure(spec_graph(load_spec(SPECS / "spectral_unet_8.yaml")))
    names = lambda f: {t.name for t in f.data if t.name}  # noqa: E731
    assert "real stages" in names(spatial) and "complex stages" in names(spectral)
    ex = graph_figure(spec_graph(load_spec(SPECS / "tiny_unet_8.yaml"), expand_unet=True))
    hovers = [h for t in ex.data for h in (t.hovertext or []) if "enc0.0" in h]
    assert hovers and "counted for the whole UNet" in hovers[0] and " 0 params" not in hovers[0]


def test_diverged_panel_is_flagged_not_settled(tmp_path):
    import torch

    from app.gui.side_by_side import render_step
    from archspec import spec_from_dict
    from evaluator.store.rundir import RunDir
    from evaluator.pipeline.side_by_side import RunTrajectory, band_energy_per_step
    from tests.evaluator.helpers import mini_spec

    run = RunDir.create(spec_from_dict(mini_spec()), tmp_path)
    torch.manual_seed(0)
    calm = [torch.randn(4, 1, 8, 8) * 0.5 for _ in range(3)]
    wild = [x * 10 ** (3 * (i + 1)) for i, x in enumerate(calm)]   # energy x 1e18 at the end

    def traj(x0):
        return RunTrajectory(run=run, name="mini", images=x0[-1], x0=x0, xt=x0, nfe=3,
                             ms_per_nfe=1.0, settings={"seed": 0}, dataset="digits",
                             band_energy=band_energy_per_step(x0, 3))

    out = render_step([traj(wild), traj(calm)], 2)
    wild_head, calm_head = out[0]["value"], out[5]["value"]
    assert "⚠ diverged" in wild_head and "the samples exploded" in wild_head
    assert "settle (share" not in wild_head
    assert "diverged" not in calm_head and "bands settle" in calm_head
