"""Run store: folder layout keyed by name/hash, resolved spec, status, atomic JSON."""
from __future__ import annotations

import json

import pytest
import yaml

from archspec import canonical, spec_from_dict, spec_hash
from archspec.errors import UserError
from evaluator.store.atomic import read_json, write_json
from evaluator.store.rundir import RunDir, list_runs


def mini_spec(name: str = "mini", **train):
    return spec_from_dict({
        "name": name, "image": {"channels": 1, "size": 8},
        "model": {"nodes": {"x": {"block": "input"}, "t": {"block": "timestep"},
                            "temb": {"block": "time_embedding", "in": ["t"], "dim": 16},
                            "eps": {"block": "resblock", "in": ["x", "temb"], "channels": 1}},
                  "output": "eps"},
        "diffusion": {"timesteps": 50}, "train": {"steps": 5, "batch_size": 8, **train}})


def test_create_lays_out_the_run_folder(tmp_path):
    spec = mini_spec()
    run = RunDir.create(spec, tmp_path)
    assert run.path == tmp_path / "runs" / "mini" / spec_hash(spec)
    assert run.name == "mini" and run.hash == spec_hash(spec)
    stored = json.loads(run.spec_json.read_text())
    assert stored == canonical(spec)
    assert yaml.safe_load(run.spec_yaml.read_text()) == stored
    assert run.status()["status"] == "created"
    assert run.samples_file("dpmsolver++", 20).name == "samples_dpmsolver++_20.png"
    assert run.samples_file("a/b", 3).parent == run.path  # no path escapes


def test_create_reuses_the_folder_and_keeps_its_state(tmp_path):
    spec = mini_spec()
    run = RunDir.create(spec, tmp_path)
    run.set_status("finished", step=5)
    again = RunDir.create(spec, tmp_path)
    assert again.path == run.path and again.status()["status"] == "finished"


def test_different_training_setup_gets_its_own_folder(tmp_path):
    a = RunDir.create(mini_spec(), tmp_path)
    b = RunDir.create(mini_spec(steps=7), tmp_path)
    assert a.path.parent == b.path.parent and a.path != b.path
    assert [r.path for r in list_runs(tmp_path)] == sorted([a.path, b.path])


def test_stored_spec_reloads_to_the_same_hash(tmp_path):
    spec = mini_spec()
    run = RunDir.create(spec, tmp_path)
    assert spec_hash(run.load_spec()) == run.hash


def test_open_rejects_what_is_not_a_run(tmp_path):
    with pytest.raises(UserError, match="no such run folder"):
        RunDir.open(tmp_path / "nope")
    with pytest.raises(UserError, match=r"not a run folder \(no spec.resolved.json\)"):
        RunDir.open(tmp_path)
    run = RunDir.create(mini_spec(), tmp_path)
    assert RunDir.open(run.path) == run


def test_list_runs_of_an_empty_root(tmp_path):
    assert list_runs(tmp_path) == []


def test_status_transitions_drop_a_stale_reason(tmp_path):
    run = RunDir.create(mini_spec(), tmp_path)
    run.set_status("failed", reason="non-finite loss at step 3")
    assert run.status()["reason"] == "non-finite loss at step 3"
    run.set_status("running")
    assert "reason" not in run.status()
    with pytest.raises(ValueError, match="unknown run status"):
        run.set_status("exploded")


def test_metrics_sections_are_merged(tmp_path):
    run = RunDir.create(mini_spec(), tmp_path)
    run.update_metrics("train", {"steps": 5})
    run.update_metrics("eval", {})
    assert run.metrics() == {"version": 1, "train": {"steps": 5}, "eval": {}}


def test_write_json_is_atomic(tmp_path):
    p = tmp_path / "m.json"
    write_json(p, {"a": 1})

    class Bad:  # not serialisable: the write fails after the temp file was opened
        pass

    with pytest.raises(TypeError):
        write_json(p, {"a": Bad()})
    assert read_json(p) == {"a": 1}
    assert [q.name for q in tmp_path.iterdir()] == ["m.json"]


def test_losses_skip_a_torn_last_line(tmp_path):
    run = RunDir.create(mini_spec(), tmp_path)
    run.loss_file.write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "lo')
    assert run.losses() == [{"step": 1, "loss": 0.5}]


def test_log_appends_lines(tmp_path):
    run = RunDir.create(mini_spec(), tmp_path)
    run.log("one")
    run.log("two")
    lines = run.log_file.read_text().splitlines()
    assert [ln.split(" ", 2)[2] for ln in lines] == ["one", "two"]
