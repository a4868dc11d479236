"""evaluator.store.queries.query_runs / eval_rows: the runs table of the app, read from
copies of one real evaluated run (tests/evaluator/conftest.py)."""
from __future__ import annotations

import json

from evaluator.store.queries import eval_rows, query_runs
from tests.evaluator.conftest import copy_run


def _copy(run, root, name, drop, sps, evaluated=True, status="finished"):
    """A copy of the evaluated run under ``name`` with its own training numbers."""
    c = copy_run(run, root, name)
    c.update_metrics("train", {**c.metrics()["train"], "loss_drop": drop,
                               "steps_per_second": sps})
    if not evaluated:
        data = json.loads(c.metrics_file.read_text())
        del data["eval"]
        c.metrics_file.write_text(json.dumps(data))
    c.set_status(status)
    return c


def _best_fd(raw: dict) -> dict[str, float]:
    """Lowest FD-digits mean per sampler, straight from the stored JSON."""
    best: dict[str, float] = {}
    for r in raw["eval"]["quick"]["results"]:
        v = r["metrics"]["FD-digits"]["mean"]
        best[r["sampler"]] = min(best.get(r["sampler"], v), v)
    return best


def test_query_filters_sorts_and_reports_best_fd(evaluated_run, tmp_path):
    _copy(evaluated_run, tmp_path, "alpha", 0.5, 20.0)
    _copy(evaluated_run, tmp_path, "beta", 0.7, None)
    _copy(evaluated_run, tmp_path, "gamma", 0.1, 5.0, evaluated=False, status="failed")
    raw = json.loads(evaluated_run.metrics_file.read_text())
    rows = query_runs(tmp_path)
    assert [r["name"] for r in rows] == ["alpha", "beta", "gamma"]
    a = rows[0]
    best = _best_fd(raw)
    assert set(best) == {"ddim", "ddpm"}
    for sampler, v in best.items():
        assert a[f"best FD-digits {sampler}"] == v
    assert "best FD-digits ddim" not in rows[2]  # not evaluated
    assert a["dataset"] == "digits" and a["status"] == "finished"
    assert a["params"] == raw["train"]["params"] == raw["eval"]["quick"]["speed"]["params"]
    assert a["steps"] == 30 and a["steps_per_s"] == 20.0
    assert [r["name"] for r in query_runs(tmp_path, sort_by="loss_drop", descending=True)] \
        == ["beta", "alpha", "gamma"]
    # rows without the sort value come last, either direction
    assert [r["name"] for r in query_runs(tmp_path, sort_by="steps_per_s")][-1] == "beta"
    assert [r["name"] for r in query_runs(tmp_path, sort_by="steps_per_s",
                                          descending=True)][-1] == "beta"
    assert [r["name"] for r in query_runs(tmp_path, text="ET")] == ["beta"]
    assert [r["name"] for r in query_runs(tmp_path, status="failed")] == ["gamma"]
    assert query_runs(tmp_path / "none") == []


def test_eval_rows(evaluated_run):
    raw = json.loads(evaluated_run.metrics_file.read_text())["eval"]["quick"]
    rows = eval_rows(evaluated_run)
    assert [(r["sampler"], r["steps"]) for r in rows] == [tuple(p) for p in
                                                          raw["settings"]["plan"]]
    for row, stored in zip(rows, raw["results"]):
        assert row["budget"] == "quick" and row["n"] == 32 and row["seeds"] == [0]
        assert row["nfe"] == stored["nfe"] and row["ms_per_nfe"] == stored["ms_per_nfe"]["mean"]
        for metric, v in stored["metrics"].items():
            want = v["mean"] if v["mean"] is not None else v["status"]
            assert row[metric] == want or (want != want and row[metric] != row[metric])
    # a metric that could not be computed shows its status, not a number
    unavailable = [m for m, v in raw["results"][0]["metrics"].items() if v["mean"] is None]
    for m in unavailable:
        assert isinstance(rows[0][m], str)
