"""Train, editor and results tabs through gradio_client: a job is checked before it is
queued, finished runs say so, saves never overwrite silently, the results table names
its step counts and sorts by FD."""
from __future__ import annotations

import pytest

gradio_client = pytest.importorskip("gradio_client")

from tests.conftest import SPECS  # noqa: E402

GOOD = (SPECS / "tiny_unet_8.yaml").read_text()
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(served_app):
    return gradio_client.Client(served_app[0], verbose=False)


def test_submit_shows_every_problem_and_queues_nothing(client, served_app):
    before = len(served_app[1].ctx.jobs.snapshot())
    msg, job_id, _t = client.predict([str(SPECS / "tiny_unet_8.yaml")], "(spec's)", "quick",
                                     "cpu", False, "train.stepz=200\ntrain.steps=abc", None,
                                     api_name="/submit_job")
    assert "not queued" in msg and "stepz" in msg and "abc" in msg
    assert len(served_app[1].ctx.jobs.snapshot()) == before
    msg, *_ = client.predict([str(SPECS / "tiny_unet_8.yaml")], "(spec's)", "quick", "cpu",
                             False, "", 2.5, api_name="/submit_job")
    assert "train steps: 2.5 is not a whole number" in msg
    msg, *_ = client.predict([str(SPECS / "tiny_unet_8.yaml")], "(spec's)", "quick", "cpu",
                             False, "train.stepz=1", 0, api_name="/submit_job")
    assert "stepz" in msg and "train steps" not in msg     # 0 = the spec's own steps
    assert len(served_app[1].ctx.jobs.snapshot()) == before


def test_resubmitting_a_finished_spec_says_so(client, served_app):
    run = served_app[2][0]
    msg, job_id, _t = client.predict([str(run.spec_yaml)], "(spec's)", "full", "cpu", False,
                                     "", None, api_name="/submit_job")
    assert "already trained" in msg and str(run.path) in msg
    job = served_app[1].ctx.jobs.wait(job_id, timeout=60)
    assert job["state"] == "finished"
    table, _curve, _timer = client.predict(job_id, api_name="/jobs")
    cols = table["headers"]
    row = next(r for r in table["data"] if r[0] == job_id)
    assert row[cols.index("run folder")] == str(run.path)
    assert (int(row[cols.index("step")]), int(row[cols.index("total")])) == (30, 30)


def test_save_refuses_to_overwrite_and_warns_when_invalid(client, served_app):
    ws = served_app[3] / "specs"
    msg, _ = client.predict(GOOD, "keep.yaml", False, api_name="/save")
    assert "saved" in msg and "problem" not in msg
    msg, _ = client.predict("name: other\n", "keep.yaml", False, api_name="/save")
    assert "not saved" in msg and (ws / "keep.yaml").read_text() == GOOD
    msg, _ = client.predict("name: other\n", "keep.yaml", True, api_name="/save")
    assert "saved" in msg and "problem(s)" in msg
    assert (ws / "keep.yaml").read_text() == "name: other\n"


def test_profile_table_rounds():
    from app.gui.editor import profile_table

    md = profile_table({"params": 12345, "fwd_bwd_ms": 17.286385000033988, "threads": 2,
                        "peak_mem_mb": 3.14159265, "image": [1, 8, 8]})
    assert "| parameters | 12,345 |" in md and "| forward+backward (ms, median) | 17.29 |" in md
    assert "17.2863" not in md and "| peak_mem_mb | 3.142 |" in md


def test_results_table_names_step_counts_and_sorts_by_fd(client, served_app):
    from evaluator.store.queries import eval_rows

    table, _csv = client.predict("", "", "name", True, api_name="/runs")
    cols = table["headers"]
    fd_cols = [c for c in cols if c.startswith("FD-") and "@" in c]
    want = {f"FD-digits {r['sampler']}@{r['steps']}": r["FD-digits"]
            for r in eval_rows(served_app[2][0]) if isinstance(r.get("FD-digits"), float)}
    assert set(fd_cols) == set(want)
    names = [r[cols.index("name")] for r in table["data"]]
    assert names == sorted(names, reverse=True) and {"mini_a", "mini_b"} <= set(names)
    col = fd_cols[0]
    table, _ = client.predict("", "", col, True, api_name="/runs")
    first = table["data"][0]
    assert first[cols.index("name")] == "mini_a"          # the run without FD sorts last
    assert first[table["headers"].index(col)] == pytest.approx(round(want[col], 4))


def test_sweep_section_hides_its_plots_without_a_study(client):
    msg, a, b = client.predict(api_name="/sweep")
    assert "no sweep study" in msg and "nothing to draw" in msg
    assert a["visible"] is False and b["visible"] is False
