"""Two workers on a real PostgreSQL server (the multi-machine storage), started here."""
from __future__ import annotations

import pytest
from optuna.trial import TrialState

from evaluator.sweeps.study import load_study, make_storage
from tests.evaluator.pg_server import find_bin, postgres_server
from tests.evaluator.sweep_helpers import (
    cli, completed_keys, spawn_worker, tiny_sweep, wait_all, write_sweep,
)


@pytest.fixture(scope="module")
def pg_url():
    if find_bin() is None:
        pytest.skip("no PostgreSQL binaries (apt-get install postgresql); "
                    "the RDB storage test needs a real server")
    with postgres_server() as url:
        yield url


@pytest.mark.slow
def test_two_workers_on_postgres_complete_an_l4_each_row_exactly_once(tmp_path, pg_url):
    p = write_sweep(tmp_path, tiny_sweep())
    out = tmp_path / "results"
    # create and enqueue only (as on the coordinating machine), then two workers join
    r = cli("sweep", "run", str(p), "--workers", "0", "--storage", pg_url, "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"sweep worker --storage {pg_url} --study tiny_l4" in r.stdout
    procs = [spawn_worker(pg_url, "tiny_l4", out, log=tmp_path / f"w{i}.log") for i in range(2)]
    codes = wait_all(procs, timeout=400)
    assert codes == [0, 0], (tmp_path / "w0.log").read_text()[-3000:]
    study, _ = load_study("tiny_l4", make_storage(pg_url))
    assert completed_keys(study) == [(0, 0), (1, 0), (2, 0), (3, 0)]
    assert not study.get_trials(states=(TrialState.FAIL, TrialState.RUNNING))
    runs = {t.user_attrs["run"] for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert len(runs) == 4 and all(str(out) in r for r in runs)
    r = cli("sweep", "status", "tiny_l4", "--storage", pg_url)
    assert r.returncode == 0 and "done 4" in r.stdout


def test_an_unreachable_database_is_one_line_not_a_traceback(tmp_path):
    p = write_sweep(tmp_path, tiny_sweep())
    r = cli("sweep", "run", str(p), "--workers", "0", "--storage",
            "postgresql://nobody:secret@127.0.0.1:1/none")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "secret" not in lines[0] and "storage" in lines[0]
