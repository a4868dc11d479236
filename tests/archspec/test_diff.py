"""archspec.diff and ``archsearch diff``: what changed between two specs."""
from __future__ import annotations

import json

import pytest
import yaml

from app.cli import main
from archspec import build_model, load_spec
from archspec.diff import diff_specs, format_diff, is_empty, load_for_diff
from tests.conftest import SPECS

TINY = SPECS / "tiny_unet_8.yaml"


def _n_params(spec) -> int:
    return sum(p.numel() for p in build_model(spec).parameters())


def test_same_spec_has_no_differences():
    d = diff_specs(load_spec(TINY), load_spec(TINY))
    assert is_empty(d) and d["params"]["delta"] == 0 and d["same_architecture"]
    assert "no differences" in format_diff(d)


def test_changed_parameter_and_param_delta(write_spec):
    wider = write_spec(TINY.read_text().replace("width: 32", "width: 40"), "wider.yaml")
    a, b = load_spec(TINY), load_spec(wider)
    d = diff_specs(a, b)
    changes = {c["loc"]: (c["a"], c["b"]) for c in d["nodes"]["changed"]["eps"]}
    assert changes == {"channels": (32, 40)}  # vars resolved: the change shows where it acts
    assert {c["loc"] for c in d["settings"]} == {"vars.width"}
    # independent count: build both models
    assert d["params"]["delta"] == _n_params(b) - _n_params(a)
    assert d["params"]["per_node"] == {"eps": d["params"]["delta"]}
    assert not d["same_architecture"]


def test_nodes_added_and_removed(write_spec):
    base = {"name": "g", "image": {"channels": 1, "size": 8},
            "model": {"nodes": {"x": {"block": "input"}, "f": {"block": "rfft2", "in": ["x"]},
                                "y": {"block": "irfft2", "in": ["f"]}}, "output": "y"}}
    other = json.loads(json.dumps(base))
    nodes = other["model"]["nodes"]
    nodes["y2"] = nodes.pop("y")
    other["model"]["output"] = "y2"
    a = load_spec(write_spec(yaml.safe_dump(base), "a.yaml"))
    b = load_spec(write_spec(yaml.safe_dump(other), "b.yaml"))
    d = diff_specs(a, b)
    assert d["nodes"]["added"] == {"y2": "irfft2"}
    assert d["nodes"]["removed"] == {"y": "irfft2"}
    assert {"loc": "model.output", "a": "y", "b": "y2", "kind": "changed"} in d["settings"]
    text = format_diff(d)
    assert "+ model.nodes.y2 (irfft2)" in text and "- model.nodes.y (irfft2)" in text


def test_measure_is_reported_with_delta():
    a, b = load_spec(TINY), load_spec(SPECS / "spectral_unet_8.yaml")
    d = diff_specs(a, b, measure=lambda s: {"flops": len(s.name)})
    assert d["measures"]["flops"] == {"a": 11, "b": 15, "delta": 4}


def test_run_folder_is_accepted(tmp_path):
    from evaluator.store.rundir import RunDir

    run = RunDir.create(load_spec(TINY), tmp_path)
    d = diff_specs(load_for_diff(run.path), load_spec(TINY))
    assert is_empty(d)


def test_cli_text_json_and_exit_codes(tmp_path, capsys):
    wider = tmp_path / "wider.yaml"
    wider.write_text(TINY.read_text().replace("width: 32", "width: 40"))
    assert main(["diff", str(TINY), str(TINY), "--no-flops"]) == 0
    assert "no differences" in capsys.readouterr().out
    assert main(["diff", str(TINY), str(wider)]) == 1
    out = capsys.readouterr().out
    assert "~ model.nodes.eps.channels: 32 -> 40" in out and "flops:" in out
    assert main(["diff", str(TINY), str(wider), "--json", "--no-flops"]) == 1
    d = json.loads(capsys.readouterr().out)
    assert d["nodes"]["changed"]["eps"][0]["loc"] == "channels"
    assert main(["diff", str(TINY), str(tmp_path / "none.yaml")]) == 2
    err = capsys.readouterr().err
    assert "none.yaml: no such file" in err and "Traceback" not in err
    assert main(["diff", str(TINY), str(tmp_path)]) == 2
    assert "neither a spec file nor a run folder" in capsys.readouterr().err


def test_absent_and_null_are_no_change():
    from archspec.diff import _changes

    a = {"model": {"nodes": {"eps": {"block": "unet", "head": None}}}}
    b = {"model": {"nodes": {"eps": {"block": "unet"}}}}
    assert _changes(a, b) == []
    assert _changes({"x": {}}, {}) == []
    got = _changes({"x": 1, "y": None}, {"x": 2, "y": 3})
    assert [(c["loc"], c["a"], c["b"]) for c in got] == [("x", 1, 2), ("y", None, 3)]
