"""Canonical form and hash: stable across key order, YAML vs JSON, formatting, vars."""
from __future__ import annotations

import json

import pytest
import yaml

from archspec import SPEC_VERSION, SpecError, canonical, load_spec, spec_from_dict, spec_hash
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
    assert new.spec_version == SPEC_VERSION and new.model.nodes["f"].in_ == ["x"]
    cur = spec_from_dict(parse_text(MINIMAL, "yaml"))
    assert canonical(new)["model"] == canonical(cur)["model"]


def test_newer_version_refused():
    data = parse_text(MINIMAL, "yaml")
    data["spec_version"] = 99
    with pytest.raises(SpecError, match=f"spec_version: version 99 is newer than this toolkit's {SPEC_VERSION}"):
        spec_from_dict(data)


# v1 bodies of two examples as they were committed before the unet became stage descriptions
V1_HYBRID = """
spec_version: 1
name: hybrid_unet_8
vars: {width: 26, encoder: complex_resblock, decoder: resblock,
       encoder_attention: radial_band_attention, decoder_attention: self_attention}
image: {channels: 1, size: 8}
model:
  nodes:
    x:    {block: input}
    t:    {block: timestep}
    temb: {block: time_embedding, in: [t], dim: 128}
    eps:  {block: unet, in: [x, temb], channels: "${vars.width}", channel_mult: [1, 2],
           attention_levels: [1], encoder: "${vars.encoder}", decoder: "${vars.decoder}",
           encoder_attention: "${vars.encoder_attention}",
           decoder_attention: "${vars.decoder_attention}"}
  output: eps
"""
V1_LOWRANK = """
spec_version: 1
name: spectral_lowrank_8
image: {channels: 1, size: 8}
model:
  nodes:
    x:    {block: input}
    t:    {block: timestep}
    temb: {block: time_embedding, in: [t], dim: 128}
    eps:  {block: unet, in: [x, temb], channels: 24, channel_mult: [1, 2],
           attention_levels: [1], encoder: complex_resblock, attention: lowrank_spectral,
           attention_params: {modes: 2}, head: spectral_head, head_params: {zero_init: true},
           stage_params: {norm: batch}}
  output: eps
"""


@pytest.mark.parametrize("text,expect", [
    (V1_HYBRID, {"mid_attention": True, "decoder": {
        "block": "resblock", "params": {}, "resample": None,
        "attention": {"block": "self_attention", "params": {}}}}),
    (V1_LOWRANK, {"mid_attention": True, "decoder": None,
                  "head": {"block": "spectral_head", "params": {"zero_init": True}},
                  "encoder": {"block": "complex_resblock", "params": {"norm": "batch"},
                              "resample": None,
                              "attention": {"block": "lowrank_spectral",
                                            "params": {"modes": 2}}}}),
])
def test_v1_unet_flags_upgrade_to_stage_descriptions(text, expect):
    new = spec_from_dict(parse_text(text, "yaml"))
    eps = canonical(new)["model"]["nodes"]["eps"]
    assert new.spec_version == 2 == SPEC_VERSION
    assert {k: eps[k] for k in expect} == expect


def test_v1_hybrid_example_is_the_v2_example():
    """The committed v2 example (as it was before the issue-8 defaults) and its v1
    original: one architecture hash, bit-identical weights (the v1 text carries the model
    only)."""
    import torch

    from archspec import arch_hash, build_model, load_spec

    old = spec_from_dict(parse_text(V1_HYBRID, "yaml"))
    new = load_spec("examples/ablations/hybrid_unet_8_previous.yaml")
    assert arch_hash(old) == arch_hash(new)
    torch.manual_seed(0)
    a = build_model(old).state_dict()
    torch.manual_seed(0)
    b = build_model(new).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_v1_head_params_without_a_head_is_located():
    data = parse_text(V1_LOWRANK.replace("head: spectral_head, ", ""), "yaml")
    with pytest.raises(SpecError, match="model.nodes.eps.head_params: needs a head block"):
        spec_from_dict(data)


def test_v1_fields_in_a_v2_spec_say_how_to_fix_them():
    data = parse_text(V1_LOWRANK.replace("spec_version: 1", "spec_version: 2"), "yaml")
    with pytest.raises(SpecError, match="attention, attention_params, stage_params, "
                                        "head_params: spec_version 1 field"):
        spec_from_dict(data)


# ---- unet stage params are canonical ------------------------------------------------------
def _spectral_unet(encoder, head, **eps) -> dict:
    """A small spectral unet spec; ``encoder``/``head`` are its stage descriptions."""
    return {"name": "stage_params", "image": {"channels": 1, "size": 8},
            "model": {"nodes": {
                "x": {"block": "input"}, "t": {"block": "timestep"},
                "temb": {"block": "time_embedding", "in": ["t"], "dim": 16},
                "eps": {"block": "unet", "in": ["x", "temb"], "channels": 4, "groups": 2,
                        "channel_mult": [1, 2], "attention_levels": [1], "encoder": encoder,
                        "head": head, **eps}},
                "output": "eps"}}


BARE = _spectral_unet({"block": "complex_resblock", "attention": "radial_band_attention",
                       "resample": "spectral_down"}, "spectral_head")
# the same unet with block defaults written out: in the stage block, its attention, its
# downsampler (which the decoder's upsampler repeats) and the head
WRITTEN = _spectral_unet(
    {"block": "complex_resblock", "params": {"act": "crelu", "norm": "group", "mode": "block"},
     "attention": {"block": "radial_band_attention", "params": {"bands": 8}},
     "resample": {"block": "spectral_down", "params": {"preserve": "amplitude"}}},
    {"block": "spectral_head", "params": {"zero_init": False, "bias": True, "act": "none"}})


def _weights(spec):
    import torch

    from archspec import build_model

    torch.manual_seed(0)
    return build_model(spec).state_dict()


def test_a_stage_default_written_out_hashes_as_left_out():
    """The issue's case (encoder: {block: complex_resblock, params: {act: crelu}}) and the
    other parts: same canonical form, spec hash and arch hash, and the same weights."""
    import torch

    from archspec import arch_hash

    bare, written = spec_from_dict(BARE), spec_from_dict(WRITTEN)
    assert canonical(written)["model"] == canonical(bare)["model"]
    assert spec_hash(written) == spec_hash(bare) and arch_hash(written) == arch_hash(bare)
    a, b = _weights(bare), _weights(written)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_default_padding_written_out_hashes_as_left_out():
    """``padding: zeros`` (a default that the params' serializer leaves out) is dropped like
    any other default, so a study's ``zeros`` level reuses the example's runs; the other
    paddings still change the hash."""
    def with_padding(pad):
        return spec_from_dict(_spectral_unet(
            {"block": "complex_resblock", "params": {"padding": pad},
             "attention": "radial_band_attention", "resample": "spectral_down"},
            "spectral_head"))

    bare = spec_from_dict(BARE)
    assert canonical(with_padding("zeros"))["model"] == canonical(bare)["model"]
    assert spec_hash(with_padding("zeros")) == spec_hash(bare)
    hashes = {spec_hash(with_padding(p)) for p in ("zeros", "circular", "hermitian")}
    assert len(hashes) == 3
    enc = canonical(with_padding("hermitian"))["model"]["nodes"]["eps"]["encoder"]
    assert enc["params"] == {"padding": "hermitian"}


def test_stage_params_that_change_the_unet_still_change_the_hash():
    """Only defaults go: a non-default value stays, and so does a value the unet would
    otherwise fill in (the encoder's own groups override the unet's groups: 2), even when it
    equals the block's default of 8."""
    from archspec import arch_hash

    bare = spec_from_dict(BARE)
    act = spec_from_dict(_spectral_unet({"block": "complex_resblock", "params": {"act": "zrelu"},
                                         "attention": "radial_band_attention"}, "spectral_head"))
    groups = spec_from_dict(_spectral_unet({"block": "complex_resblock",
                                            "params": {"groups": 8, "dropout": 0},
                                            "attention": "radial_band_attention"},
                                           "spectral_head"))
    enc = canonical(groups)["model"]["nodes"]["eps"]["encoder"]
    assert enc["params"] == {"groups": 8, "dropout": 0.0}
    assert isinstance(enc["params"]["dropout"], float)
    assert len({arch_hash(bare), arch_hash(act), arch_hash(groups)}) == 3
    assert canonical(act)["model"]["nodes"]["eps"]["encoder"]["params"] == {"act": "zrelu"}


def test_canonical_stage_params_round_trip():
    written = spec_from_dict(WRITTEN)
    again = spec_from_dict(canonical(written))
    assert canonical(again) == canonical(written) and spec_hash(again) == spec_hash(written)


def test_rehash_rekeys_a_resolved_spec_stored_before_stage_params_were_canonical():
    """An older toolkit stored the stage params as written; rehash gives the hash the same
    spec has now, leaves the stored dict alone, and keeps unaffected specs' hashes."""
    import copy

    from archspec import arch_hash, rehash

    bare, written = spec_from_dict(BARE), spec_from_dict(WRITTEN)
    old = canonical(written)
    old["model"]["nodes"]["eps"].update(copy.deepcopy(WRITTEN["model"]["nodes"]["eps"]))
    assert old["model"]["nodes"]["eps"]["encoder"]["params"]["act"] == "crelu"  # as stored
    kept = copy.deepcopy(old)
    assert rehash(old) == spec_hash(bare) and rehash(old, arch=True) == arch_hash(bare)
    assert old == kept
    example = load_spec(SPECS / "hybrid_unet_8.yaml")
    assert rehash(canonical(example)) == spec_hash(example)
    broken = copy.deepcopy(old)
    broken["model"]["nodes"]["eps"]["encoder"]["block"] = 7
    with pytest.raises(SpecError, match="model.nodes.eps.encoder"):
        rehash(broken)


def test_default_forward_process_keeps_existing_hashes():
    # c72359fe5a20dae7: tiny_unet_8's hash before diffusion.process existed; the default
    # (isotropic) process is left out of the canonical form so no run changes identity
    spec = load_spec(SPECS / "tiny_unet_8.yaml")
    assert spec_hash(spec) == "c72359fe5a20dae7"
    assert "process" not in canonical(spec)["diffusion"]
    explicit = load_spec(SPECS / "tiny_unet_8.yaml",
                         overrides=["diffusion.process={kind: isotropic}"])
    blurred = load_spec(SPECS / "tiny_unet_8.yaml",
                        overrides=["diffusion.process={kind: blurring}"])
    assert explicit.diffusion.process.kind == "isotropic"
    assert spec_hash(explicit) == spec_hash(spec)
    assert canonical(blurred)["diffusion"]["process"] == {
        "kind": "blurring", "sigma_blur_max": 20.0, "min_scale": 0.001}
    assert spec_hash(blurred) != spec_hash(spec)
    assert spec_hash(spec_from_dict(canonical(blurred))) == spec_hash(blurred)
