"""Workers on a real PostgreSQL server (the multi-machine storage), started here: two
workers, a server restart in mid-sweep, and other tools opening the study by its URL."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from evaluator.sweeps.study import load_study, make_storage
from tests.evaluator.pg_server import find_bin, postgres_server
from tests.evaluator.sweep_helpers import (
    _env, cli, completed_keys, spawn_worker, tiny_sweep, wait_all, wait_running, write_sweep,
)

ALL_L4 = [(0, 0), (1, 0), (2, 0), (3, 0)]
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def pg():
    if find_bin() is None:
        pytest.skip("no PostgreSQL binaries (apt-get install postgresql); "
                    "the RDB storage test needs a real server")
    with postgres_server() as srv:
        yield srv


@pytest.fixture
def pg_url(pg):
    return pg.url


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
    assert completed_keys(study) == ALL_L4
    assert not study.get_trials(states=(TrialState.FAIL, TrialState.RUNNING))
    runs = {t.user_attrs["run"] for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert len(runs) == 4 and all(str(out) in r for r in runs)
    r = cli("sweep", "status", "tiny_l4", "--storage", pg_url)
    assert r.returncode == 0 and "done 4" in r.stdout


def test_other_tools_open_the_study_with_the_url_form_the_readme_gives(tmp_path, pg):
    # the README's example for other tools, with this server's user, host and port
    readme_url = re.search(r"optuna-dashboard (postgresql://[^\s`]+)", README.read_text()).group(1)
    assert readme_url == "postgresql://USER:PASSWORD@DBHOST:5432/sweeps"
    url = (readme_url.replace("USER:PASSWORD", "postgres:unused")  # trust auth
           .replace("DBHOST:5432", f"127.0.0.1:{pg.port}"))
    p = write_sweep(tmp_path, tiny_sweep(name="readme_url"))
    r = cli("sweep", "run", str(p), "--workers", "0", "--storage", url,
            "--out", str(tmp_path / "results"))
    assert r.returncode == 0, r.stderr[-3000:]
    # a plain interpreter that knows nothing of the project, as optuna-dashboard would be
    code = ("import optuna, sys; s = optuna.load_study(study_name='readme_url', "
            "storage=sys.argv[1]); print(len(s.trials), s.trials[0].state.name, "
            "s.user_attrs['results_root'])")
    r = subprocess.run([sys.executable, "-c", code, url], cwd=tmp_path, env=_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == ["4", "WAITING", str((tmp_path / "results").resolve())]


@pytest.mark.slow
def test_a_server_restart_mid_sweep_loses_no_row_and_prints_no_traceback(tmp_path, pg):
    p = write_sweep(tmp_path, tiny_sweep(steps=40, name="restart_l4"))
    out = tmp_path / "results"
    r = cli("sweep", "run", str(p), "--workers", "0", "--storage", pg.url, "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    logs = [tmp_path / "patient.log", tmp_path / "impatient.log"]
    # one worker waits for the database; the other gives up after 1 s and must say so
    procs = [spawn_worker(pg.url, "restart_l4", out, log=logs[0], extra=("--reconnect", "60")),
             spawn_worker(pg.url, "restart_l4", out, log=logs[1], extra=("--reconnect", "1"))]
    assert wait_running(make_storage(pg.url), "restart_l4") is not None
    pg.stop()
    time.sleep(4)
    pg.start()
    codes = wait_all(procs, timeout=400)
    text = [log.read_text() for log in logs]
    assert codes[0] == 0, text[0][-3000:]
    assert "reconnecting for up to 60 s" in text[0] and "is back after" in text[0]
    assert codes[1] in (0, 2), text[1][-3000:]
    if codes[1] == 2:  # the one line saying why, after the one line saying it lost the server
        assert text[1].splitlines()[-1].startswith("storage postgresql://")
        assert "unreachable for" in text[1].splitlines()[-1]
    assert not any("Traceback" in t or "Exception in thread" in t for t in text), text
    # restart the workers (as an operator would): they finish whatever is left
    again = spawn_worker(pg.url, "restart_l4", out, log=tmp_path / "again.log")
    assert wait_all([again], timeout=400) == [0], (tmp_path / "again.log").read_text()[-3000:]
    study, _ = load_study("restart_l4", make_storage(pg.url))
    assert completed_keys(study) == ALL_L4  # every row once, none twice
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))


def test_an_unreachable_database_is_one_line_not_a_traceback(tmp_path):
    p = write_sweep(tmp_path, tiny_sweep())
    r = cli("sweep", "run", str(p), "--workers", "0", "--storage",
            "postgresql://nobody:secret@127.0.0.1:1/none")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "secret" not in lines[0] and "storage" in lines[0]


def test_a_missing_psycopg_is_one_line_saying_what_to_install(monkeypatch):
    import importlib.util

    from archspec.errors import UserError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "psycopg" else real(name, *a))
    with pytest.raises(UserError, match=r"PostgreSQL needs psycopg 3: pip install "
                                        r"'psycopg\[binary\]'") as e:
        make_storage("postgresql://u:secret@127.0.0.1:1/db")
    assert "secret" not in str(e.value) and len(e.value.lines()) == 1
