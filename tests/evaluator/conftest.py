"""One tiny evaluated run shared by the test session: the report, query and metrics tests
read what the pipeline really writes, not hand-written rows."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def evaluated_run(tmp_path_factory):
    """A finished mini run (30 steps) evaluated under the quick budget on the CPU (ddim 5
    and 10, ddpm 50, N=32, seed 0), as ``archsearch evaluate`` leaves it. Read only:
    tests that change it use :func:`copy_run`."""
    from archspec import spec_from_dict
    from evaluator.pipeline.budgets import get_budget
    from evaluator.pipeline.evaluate import evaluate_run
    from evaluator.training.loop import train
    from tests.evaluator.helpers import mini_spec

    root = tmp_path_factory.mktemp("evaluated")
    res = train(spec_from_dict(mini_spec()), root=root, device="cpu", progress=False)
    assert res.status == "finished"
    evaluate_run(res.run, get_budget("quick"), "cpu")
    return res.run


def copy_run(run, root: Path, name: str | None = None):
    """A copy of ``run`` under ``root/runs/<name>/<hash>`` (its stored spec renamed), to
    change without touching the shared run."""
    import json

    from evaluator.store.rundir import RunDir

    name = name or run.name
    dst = Path(root) / "runs" / name / run.hash
    shutil.copytree(run.path, dst)
    if name != run.name:
        for f in ("spec.resolved.json",):
            data = json.loads((dst / f).read_text())
            data["name"] = name
            (dst / f).write_text(json.dumps(data))
        text = (dst / "spec.resolved.yaml").read_text()
        (dst / "spec.resolved.yaml").write_text(text.replace(f"name: {run.name}\n",
                                                             f"name: {name}\n", 1))
    copy = RunDir(dst)
    evals = copy.metrics().get("eval", {})
    for ev in evals.values():
        for row in ev["results"]:
            row["pipeline"] = name  # as evaluate writes it for a spec of this name
    if evals:
        copy.update_metrics("eval", evals)
    return copy
