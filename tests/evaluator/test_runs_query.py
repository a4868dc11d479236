"""evaluator.store.queries.query_runs / eval_rows: the runs table of the app."""
from __future__ import annotations

from archspec import spec_from_dict
from evaluator.store.queries import eval_rows, query_runs
from evaluator.store.rundir import RunDir
from tests.evaluator.helpers import mini_spec


def _row(sampler, steps, fd):
    return {"sampler": sampler, "steps": steps, "nfe": steps, "n": 32, "seeds": [0],
            "ms_per_nfe": {"mean": 1.5},
            "metrics": {"FD-digits": {"mean": fd, "status": "ok"},
                        "FID": {"mean": None, "status": "unavailable"}}}


def _make(root, name, steps, drop, sps, fds, status="finished"):
    data = mini_spec(train={"steps": steps})
    data["name"] = name
    run = RunDir.create(spec_from_dict(data), root)
    run.update_metrics("train", {"steps": steps, "loss_drop": drop, "steps_per_second": sps,
                                 "params": 100 + steps})
    if fds:
        run.update_metrics("eval", {"quick": {"results": [_row(*f) for f in fds]}})
    run.set_status(status)
    return run


def test_query_filters_sorts_and_reports_best_fd(tmp_path):
    _make(tmp_path, "alpha", 10, 0.5, 20.0, [("ddim", 5, 9.0), ("ddim", 10, 7.0),
                                             ("ddpm", 50, 3.0)])
    _make(tmp_path, "beta", 20, 0.7, None, [("ddim", 5, 4.0)])
    _make(tmp_path, "gamma", 30, 0.1, 5.0, [], status="failed")
    rows = query_runs(tmp_path)
    assert [r["name"] for r in rows] == ["alpha", "beta", "gamma"]
    a = rows[0]
    assert a["best FD-digits ddim"] == 7.0 and a["best FD-digits ddpm"] == 3.0
    assert a["dataset"] == "digits" and a["params"] == 110 and a["status"] == "finished"
    assert [r["name"] for r in query_runs(tmp_path, sort_by="loss_drop", descending=True)] \
        == ["beta", "alpha", "gamma"]
    # rows without the sort value come last, either direction
    assert [r["name"] for r in query_runs(tmp_path, sort_by="steps_per_s")][-1] == "beta"
    assert [r["name"] for r in query_runs(tmp_path, sort_by="steps_per_s",
                                          descending=True)][-1] == "beta"
    assert [r["name"] for r in query_runs(tmp_path, text="ET")] == ["beta"]
    assert [r["name"] for r in query_runs(tmp_path, status="failed")] == ["gamma"]
    assert query_runs(tmp_path / "none") == []


def test_eval_rows(tmp_path):
    run = _make(tmp_path, "alpha", 10, 0.5, 20.0, [("ddim", 5, 9.0)])
    (r,) = eval_rows(run)
    assert r["budget"] == "quick" and r["FD-digits"] == 9.0 and r["FID"] == "unavailable"
    assert r["nfe"] == 5 and r["ms_per_nfe"] == 1.5 and r["n"] == 32
