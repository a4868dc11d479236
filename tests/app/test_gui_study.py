"""The study tab: lists the stored studies, shows per question what ``study report``
writes (answers compared with the report's own ``study.json``), says how many trials are
pending in an unfinished study, and a hint, with no plot frames, when there is none."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.gui.common import Context
from app.gui.study_view import MAX_FIGS, MAX_SECTIONS, find_studies, load_view, show

SLOT = MAX_FIGS + 2  # head, figures, body per question


def _visible(out: list, i: int) -> list[bool]:
    """Visibility of question ``i``'s head, figures and body in :func:`show`'s outputs."""
    return [u["visible"] for u in out[1 + i * SLOT: 1 + (i + 1) * SLOT]]


def _report_numbers(url: str, tmp: Path) -> list[dict]:
    """What ``archsearch study report`` computes, through its own writer."""
    from evaluator.study.collect import collect
    from evaluator.study.report import write
    from evaluator.sweeps.study import make_storage

    write(*collect(make_storage(url), "tiny.cpu"), tmp)
    return json.loads((tmp / "study.json").read_text())


@pytest.mark.slow  # the shared tiny study trains 20 trials once per session (~3 min)
def test_study_view_lists_the_study_and_shows_the_reports_answers(tiny_study_run, tmp_path):
    _path, out, url = tiny_study_run
    assert find_studies(out, out / "specs") == [("tiny (cpu)", url)]
    view = load_view(url)
    assert "20/20 finished, 0 failed" in view.header and "pending" not in view.header
    want = _report_numbers(url, tmp_path)
    assert [s["key"] for s in view.sections] == [w["key"] for w in want] == [
        "q1", "q2", "q3", "q4"]
    for s, w in zip(view.sections, want):
        assert (s["verdict"], s["answer"]) == (w["verdict"], w["answer"])
        assert f"**Answer ({w['verdict']}).** {w['answer']}" in s["body"]
        assert "FD-synthetic8" in s["head"] + s["body"] and "N=16" in s["head"]
        assert "training seeds [0, 1]" in s["head"]
        assert s["figures"] and all(f.data for f in s["figures"])
    md = (tmp_path / "study.md").read_text()
    assert all(s["head"] in md and s["body"] in md for s in view.sections)
    ctx = Context(root=out, workspace=out / "specs")
    got = show(ctx, url)
    for i, s in enumerate(view.sections):
        assert _visible(got, i) == [True] + [k < len(s["figures"]) for k in
                                             range(MAX_FIGS)] + [True]
    assert not any(any(_visible(got, i)) for i in range(4, MAX_SECTIONS))


def test_unfinished_study_says_what_is_pending_without_empty_frames(tmp_path):
    from tests.evaluator.study_helpers import start_study, write_study

    url, _ = start_study(write_study(tmp_path), tmp_path / "results")  # nothing trained
    view = load_view(url)
    assert "0/20 finished" in view.header and "**20 of 20 trials pending**" in view.header
    assert [s["key"] for s in view.sections] == ["q1", "q2", "q3", "q4"]
    assert all(s["verdict"] == "inconclusive" and not s["figures"] for s in view.sections)
    got = show(Context(root=tmp_path / "results", workspace=tmp_path / "ws"), url)
    assert all(_visible(got, i) == [True] + [False] * MAX_FIGS + [True] for i in range(4))


def test_workspace_studies_are_listed_and_a_damaged_one_is_a_message(tmp_path):
    root, ws = tmp_path / "results", tmp_path / "ws"
    for base, name in ((root, "a"), (ws, "b")):
        (base / "studies" / name / "cpu").mkdir(parents=True)
        (base / "studies" / name / "cpu" / "journal.log").write_text("not a journal\n")
    found = find_studies(root, ws)
    assert [label for label, _ in found] == ["a (cpu)", "b (cpu) · workspace"]
    header = load_view(found[0][1]).header
    assert header.startswith("**could not read**") and "\n" not in header


def test_empty_results_root_shows_the_hint_and_no_plot(tmp_path):
    ctx = Context(root=tmp_path, workspace=tmp_path / "specs")
    assert find_studies(ctx.root, ctx.workspace) == []
    got = show(ctx, None)
    assert got[0].startswith("**no study**") and "archsearch study run" in got[0]
    assert "\n" not in got[0]
    assert not any(u["visible"] for u in got[1:])


@pytest.mark.slow  # the shared served app trains and evaluates two runs once (~40 s)
def test_study_endpoints_over_gradio_client(served_app, tmp_path):
    gradio_client = pytest.importorskip("gradio_client")
    from tests.evaluator.study_helpers import start_study, write_study

    url, demo, _runs, root = served_app
    client = gradio_client.Client(url, verbose=False)
    head = client.predict(None, api_name="/study")[0]
    assert head.startswith("**no study**") and str(root) in head
    assert client.predict(None, api_name="/refresh_studies")["choices"] == []
    ws = demo.ctx.workspace
    journal, _ = start_study(write_study(tmp_path), ws)  # a workspace study, not run
    listed = client.predict(None, api_name="/refresh_studies")
    assert listed["choices"] == [["tiny (cpu) · workspace", journal]]
    assert listed["value"] == journal
    out = client.predict(journal, api_name="/study")
    assert "**20 of 20 trials pending**" in out[0]
    assert out[1]["value"].startswith("## Q1: Fewer steps?") and out[1]["visible"]
