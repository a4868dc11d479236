"""``archsearch study``: bad input answers one line per problem and exit 2; the dry run
lists the sweeps with the estimate; status and report need a started study."""
from __future__ import annotations

from app.cli import main
from tests.evaluator.study_helpers import tiny_study, write_study


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_missing_study_file_is_one_line_and_exit_2(capsys, tmp_path):
    code, _, err = _run(capsys, "study", "run", str(tmp_path / "nope.yaml"))
    assert code == 2 and err.strip() == f"{tmp_path / 'nope.yaml'}: no such study file"


def test_every_problem_of_a_bad_study_file_has_its_path(capsys, tmp_path):
    data = tiny_study(extra=1)
    data["budgets"]["cpu"]["train_steps"] = 0
    p = write_study(tmp_path, data)
    code, _, err = _run(capsys, "study", "run", str(p), "--dry-run")
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err
    assert f"{p}: extra: unknown key" in lines
    assert any(x.startswith(f"{p}: budgets.cpu.train_steps: ") for x in lines)


def test_unknown_budget_and_negative_workers_are_refused(capsys, tmp_path):
    p = write_study(tmp_path)
    code, _, err = _run(capsys, "study", "run", str(p), "--budget", "gpu", "--dry-run")
    assert code == 2 and "--budget: unknown budget 'gpu' (the study has cpu)" in err
    code, _, err = _run(capsys, "study", "run", str(p), "--workers", "-1")
    assert code == 2 and "--workers: must be >= 0" in err


def test_status_and_report_before_a_run_say_what_to_do(capsys, tmp_path):
    p = write_study(tmp_path)
    for cmd in ("status", "report"):
        code, _, err = _run(capsys, "study", cmd, str(p), "--out", str(tmp_path / "r"))
        assert code == 2 and "no study journal here (run `archsearch study run` first" in err


def test_workers_0_creates_and_enqueues_and_status_counts(capsys, tmp_path):
    p = write_study(tmp_path)
    out = str(tmp_path / "r")
    code, stdout, _ = _run(capsys, "study", "run", str(p), "--out", out, "--workers", "0")
    assert code == 0 and "6 sweep(s)" in stdout and "enqueued 20 trial(s)" in stdout
    code, stdout, _ = _run(capsys, "study", "run", str(p), "--out", out, "--workers", "0")
    assert code == 0 and "enqueued 0 trial(s)" in stdout  # resumed, nothing twice
    code, stdout, _ = _run(capsys, "study", "status", str(p), "--out", out)
    assert code == 0 and "tiny.cpu: 0/20 done, 0 failed" in stdout
    # a report before anything finished says so instead of failing
    code, stdout, err = _run(capsys, "study", "report", str(p), "--out", out)
    assert code == 0, err
    md = (tmp_path / "r" / "studies" / "tiny" / "cpu" / "study.md").read_text()
    assert md.count("**Answer (inconclusive).**") == 4 and "(0/4 finished, 0 failed)" in md
    # the same name with another definition in the same storage is refused
    data = tiny_study()
    data["experiments"]["nfe"]["seeds"] = 3
    write_study(tmp_path, data)
    code, _, err = _run(capsys, "study", "run", str(p), "--out", out, "--workers", "0")
    assert code == 2 and "already exists in this storage with a different definition" in err
