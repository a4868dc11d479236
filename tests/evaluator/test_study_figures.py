"""Every figure of a study report can be read alone: a legend (a heatmap's is its titled
colour bar), named traces and titled axes."""
from __future__ import annotations

import pytest


@pytest.mark.slow  # the shared tiny study trains once per session
def test_every_study_figure_has_a_legend_and_axis_titles(tiny_study_run):
    from evaluator.study.collect import collect
    from evaluator.study.figures import figures
    from evaluator.study.report import sections
    from evaluator.sweeps.study import make_storage

    plan, tables = collect(make_storage(tiny_study_run[2]), "tiny.cpu")
    figs = [(s["key"], f) for s in sections(plan, tables)
            for f in figures(s, "FD-synthetic8")]
    assert {k for k, _ in figs} == {"q1", "q2", "q3", "q4"}
    for key, f in figs:
        if any(t.type == "heatmap" for t in f.data):
            assert f.layout.coloraxis.colorbar.title.text, key
        else:
            assert f.layout.showlegend and all(t.name for t in f.data), key
        assert f.layout.xaxis.title.text and f.layout.yaxis.title.text, key
        assert "FD-synthetic8" in (f.layout.yaxis.title.text + f.layout.title.text) \
            or key == "q3", key
