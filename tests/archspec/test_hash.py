"""Canonical form and hash: stable across key order, YAML vs JSON, formatting, vars."""
from __future__ import annotations

import json

import pytest
import yaml

from archspec import SpecError, canonical, load_spec, spec_from_dict, spec_hash
from archspec.loading import parse_text
from tests.conftest import MINIMAL, SPECS


def _reverse_keys(obj):
    if isinstance(obj, dict):
        return {k: _reverse_keys(obj[k]) for k in reversed(list(obj))}
    if isinstance(obj, list):
        return [_reverse_keys(v) for v in obj]
    return obj


def test_hash_stable_across_order_format_and_yaml_vs_json(write_spec):
    src = SPECS / "tiny_unet_8.yaml"
    base = load_spec(src)
    data = yaml.safe_load(src.read_text())
    as_json = write_spec(json.dumps(_reverse_keys(data), indent=7), "s.json")
    as_flow = write_spec(yaml.safe_dump(_reverse_keys(data), default_flow_style=True), "s.yaml")
    assert spec_hash(load_spec(as_json)) == spec_hash(base)
    assert spec_hash(load_spec(as_flow)) == spec_hash(base)


def test_defaults_and_vars_do_not_change_hash(write_spec):
    literal = (SPECS / "tiny_unet_8.yaml").read_text()
    for old, new in [('"${vars.width}"', "32"), ('"${vars.block}"', "resblock"),
                     ("vars: {width: 32, block: resblock}", ""),
                     ("channel_mult: [1, 2]", "channel_mult: [1, 2], blocks_per_level: 1")]:
        assert literal.count(old) == 1, f"the example no longer contains {old!r}"
        literal = literal.replace(old, new)
    assert "${vars." not in literal and "blocks_per_level" in literal
    assert spec_hash(load_spec(write_spec(literal))) == spec_hash(load_spec(SPECS / "tiny_unet_8.yaml"))


def test_hash_changes_with_a_parameter():
    a = load_spec(SPECS / "tiny_unet_8.yaml")
    b = load_spec(SPECS / "tiny_unet_8.yaml", overrides=["vars.width=16"])
    c = load_spec(SPECS / "tiny_unet_8.yaml", overrides=["train.seed=1"])
    assert len({spec_hash(a), spec_hash(b), spec_hash(c)}) == 3
    assert canonical(b)["model"]["nodes"]["eps"]["channels"] == 16


def test_canonical_round_trips():
    spec = load_spec(SPECS / "tiny_unet_8_graph.yaml")
    again = spec_from_dict(canonical(spec))
    assert canonical(again) == canonical(spec)
    assert spec_hash(again) == spec_hash(spec)


def test_overrides_by_dotted_path():
    spec = load_spec(SPECS / "tiny_unet_8_graph.yaml",
                     overrides=["model.nodes.e1.channels=48", "train.lr=1e-3"])
    assert spec.validated.shapes["e1"].shape == (48, 8, 8)
    assert spec.train.lr == 1e-3


def test_bad_overrides():
    with pytest.raises(SpecError, match="model.nodes.nope: override 'model.nodes.nope.c=1': no such mapping"):
        load_spec(SPECS / "tiny_unet_8.yaml", overrides=["model.nodes.nope.c=1"])
    with pytest.raises(SpecError, match="expected PATH=VALUE"):
        load_spec(SPECS / "tiny_unet_8.yaml", overrides=["train.lr"])


def test_unknown_var():
    data = parse_text(MINIMAL, "yaml")
    data["model"]["nodes"]["y"]["size"] = "${vars.sz}"
    with pytest.raises(SpecError, match=r"model.nodes.y.size: unknown variable 'sz' in "
                                        r"'\$\{vars.sz\}'; defined: none"):
        spec_from_dict(data)


def test_var_interpolated_in_string():
    data = parse_text(MINIMAL, "yaml")
    data["vars"] = {"tag": "v2"}
    data["description"] = "run ${vars.tag} of ${vars.tag}"
    assert spec_from_dict(data).description == "run v2 of v2"


def test_upgrade_from_synthetic_v0():
    v0 = {"spec_version": 0, "name": "old", "image": {"channels": 1, "size": 8},
          "graph": {"nodes": {"x": {"block": "input"},
                              "f": {"block": "rfft2", "inputs": ["x"]},
                              "y": {"block": "irfft2", "inputs": ["f"]}},
                    "output": "y"}}
    new = spec_from_dict(v0)
    assert new.spec_version == 1 and new.model.nodes["f"].in_ == ["x"]
    cur = spec_from_dict(parse_text(MINIMAL, "yaml"))
    assert canonical(new)["model"] == canonical(cur)["model"]


def test_newer_version_refused():
    data = parse_text(MINIMAL, "yaml")
    data["spec_version"] = 99
    with pytest.raises(SpecError, match="spec_version: version 99 is newer than this toolkit's 1"):
        spec_from_dict(data)
