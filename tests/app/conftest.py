"""A results root with two tiny trained runs and the app serving it on a free port,
shared by the app tests (trained and launched once per session)."""
from __future__ import annotations

import os
import socket

import pytest

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_runs(root):
    """Train two tiny digits runs (30 steps) that differ in their embedding width; the
    first keeps EMA snapshots every 10 steps (a convergence curve once evaluated)."""
    from tests.evaluator.helpers import train_mini

    snapshots = {"convergence": {"every": 10, "sampler": "ddim", "steps": 3,
                                 "num_samples": 16}}
    return [train_mini(root, "mini_a", 16, steps=30, batch_size=16, evaluate=snapshots),
            train_mini(root, "mini_b", 8, steps=30, batch_size=16)]


def four_runs(root):
    """:func:`two_runs` and two more (wider time embeddings): four panels' worth."""
    from tests.evaluator.helpers import train_mini

    return two_runs(root) + [train_mini(root, name, dim, steps=30, batch_size=16)
                             for name, dim in (("mini_c", 24), ("mini_d", 32))]


@pytest.fixture(scope="session")
def served_app(tmp_path_factory):
    """(url, demo, runs, root): the app on 127.0.0.1:<free port>; the first run is also
    evaluated (quick budget), the second only trained."""
    from app.gui import build_app, launch

    from evaluator.pipeline.budgets import get_budget
    from evaluator.pipeline.evaluate import evaluate_run

    root = tmp_path_factory.mktemp("app-results")
    runs = two_runs(root)
    evaluate_run(runs[0], get_budget("quick"), "cpu")  # metrics.json as `make demo` writes
    demo = build_app(root)
    _, url = launch(demo, "127.0.0.1", free_port(), block=False)
    yield url, demo, runs, root
    demo.close()
