"""The spec gate (issue 11): every class of bad spec is refused with located one-line
problems, equal hashes build equal models, and validation is the one gate."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from archspec import SpecError, build_model, load_spec, spec_from_dict, spec_hash
from archspec.loading import parse_text
from tests.conftest import MINIMAL, ROOT, SPECS

TINY = (SPECS / "tiny_unet_8.yaml").read_text()
GRAPH = (SPECS / "tiny_unet_8_graph.yaml").read_text()


def lines_of(path, overrides=None) -> list[str]:
    with pytest.raises(SpecError) as ei:
        load_spec(path, overrides)
    out = ei.value.lines()
    for line in out:  # the promise: one line each, located, nothing internal
        assert "\n" not in line and line.startswith(f"{path}: ")
        assert "Traceback" not in line and "TensorSpec(" not in line
    return [line[len(f"{path}: "):] for line in out]


def errors(data, overrides=None) -> list[str]:
    with pytest.raises(SpecError) as ei:
        spec_from_dict(data, overrides)
    return [str(p) for p in ei.value.problems]


def minimal(**sections) -> dict:
    data = parse_text(MINIMAL, "yaml")
    data.update(sections)
    return data


# ---- 1. values YAML/JSON can carry but a spec cannot ---------------------------------------
@pytest.mark.parametrize("value,tag", [("2024-05-01", "timestamp"), ("!!binary aGVsbG8=", "binary"),
                                       ("!!set {a, b}", "set")])
def test_non_json_yaml_values_are_located(write_spec, value, tag):
    (line,) = lines_of(write_spec(MINIMAL + f"description: {value}\n"))
    assert line.startswith(f"description: line 10: YAML type !!{tag} is not a spec value")


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_huge_integer_is_a_problem_not_a_crash(write_spec, fmt):
    big = "9" * 5000
    data = parse_text(MINIMAL, "yaml")
    text = (MINIMAL + f"description: {big}\n" if fmt == "yaml"
            else json.dumps(data)[:-1] + f', "description": {big}}}')
    (line,) = lines_of(write_spec(text, f"s.{fmt}"))
    assert "integer with 5000 digits is out of range" in line


def test_non_json_python_values_in_spec_from_dict():
    import datetime

    data = minimal(description=datetime.date(2024, 5, 1), vars={"s": {1, 2}, 3: "x"})
    errs = errors(data)
    assert "description: date is not a spec value (only text, numbers, true/false, null, " \
           "lists and mappings)" in errs
    assert any(e.startswith("vars.s: set is not a spec value") for e in errs)
    assert "vars: keys must be text, got 3" in errs


@pytest.mark.parametrize("graph,loc", [
    ("graph: [a, b]", "graph: version 0: expected a mapping with 'nodes' and 'output', got a list"),
    ("graph: {nodes: [x, y], output: y}",
     "graph.nodes: version 0: expected a mapping of node id -> node, got a list")])
def test_v0_with_list_graph(write_spec, graph, loc):
    (line,) = lines_of(write_spec(f"spec_version: 0\nname: v0\nimage: {{channels: 1, size: 8}}\n"
                                  f"{graph}\n"))
    assert line == loc


def test_v0_upgrader_refuses_a_v1_body(write_spec):
    text = MINIMAL.replace("spec_version: 1", "spec_version: 0")
    (line,) = lines_of(write_spec(text))
    assert line.startswith("model: a version-0 spec keeps its nodes under 'graph'")


# ---- 2. silently accepted before --------------------------------------------------------------
def test_duplicate_yaml_keys_give_the_second_line(write_spec):
    text = MINIMAL.replace("    y: {block: irfft2, in: [f]}\n",
                           "    y: {block: irfft2, in: [f]}\n    f: {block: rfft2, in: [x]}\n")
    text = text.replace("image: {channels: 1, size: 8}", "image: {channels: 1, size: 8, size: 4}")
    text += "name: other\n"
    got = lines_of(write_spec(text))
    assert "model.nodes.f: line 9: duplicate key 'f' (first at line 7)" in got
    assert "image.size: line 3: duplicate key 'size' (first at line 3)" in got
    assert "name: line 11: duplicate key 'name' (first at line 2)" in got
    assert len(got) == 3


def test_duplicate_json_keys(write_spec):
    text = '{"name": "a", "spec_version": 1, "name": "b"}'
    (line,) = lines_of(write_spec(text, "s.json"))
    assert line == "invalid JSON: duplicate key 'name' in the object with keys 'name', " \
                   "'spec_version'"


@pytest.mark.parametrize("key,value,msg", [
    ("channels", '"32"', "must be an integer, got text '32'"),
    ("channels", "true", "must be an integer, got true"),
    ("channels", "32.5", "must be an integer, got 32.5"),
    ("bias", "1", "must be true or false, got 1"),
    ("bias", '"yes"', "must be true or false, got text 'yes'"),
])
def test_block_params_are_strict(write_spec, key, value, msg):
    params = f"channels: {value}" if key == "channels" else f"channels: 32, {key}: {value}"
    text = GRAPH.replace('stem:  {block: conv, in: [x], channels: "${vars.width}"}',
                         f'stem:  {{block: conv, in: [x], {params}}}')
    assert lines_of(write_spec(text)) == [f"model.nodes.stem.{key}: {msg}"]


def test_spec_fields_are_strict():
    errs = errors(minimal(image={"channels": True, "size": "8"}, train={"steps": 10.0}))
    assert errs == ["image.channels: must be an integer, got true",
                    "image.size: must be an integer, got text '8'",
                    "train.steps: must be an integer, got 10.0"]


@pytest.mark.parametrize("where,field", [("train", "weight_decay"), ("train", "grad_clip"),
                                         ("train", "lr"), ("diffusion.loss", "p2_k")])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_spec_floats(where, field, bad):
    data = minimal()
    node = data
    for k in where.split("."):
        node = node.setdefault(k, {})
    node[field] = bad
    (err,) = errors(data)
    assert err == f"{where}.{field}: must be a finite number, got {bad!r}"


@pytest.mark.parametrize("block,field", [("modrelu", "bias_init"),
                                         ("time_embedding", "max_period")])
def test_non_finite_block_floats(write_spec, block, field):
    text = GRAPH.replace("temb:  {block: time_embedding, in: [t], dim: 128}",
                         f"temb:  {{block: time_embedding, in: [t], dim: 128, "
                         f"{'max_period: .nan' if field == 'max_period' else ''}}}")
    if block == "modrelu":
        text = MINIMAL.replace("    y: {block: irfft2, in: [f]}",
                               "    m: {block: modrelu, in: [f], bias_init: .inf}\n"
                               "    y: {block: irfft2, in: [m]}")
    (line,) = lines_of(write_spec(text))
    assert re.fullmatch(rf"model\.nodes\.\w+\.{field}: must be a finite number, got (nan|inf)",
                        line), line


@pytest.mark.parametrize("steps,msg", [
    (0, "evaluate.samplers[0].steps[0]: input should be greater than or equal to 1"),
    (-3, "evaluate.samplers[0].steps[0]: input should be greater than or equal to 1"),
    (1001, "evaluate.samplers[0].steps[0]: 1001 steps exceed diffusion.timesteps (1000); "
           "use 1..1000")])
def test_sampler_steps_within_timesteps(steps, msg):
    data = minimal(evaluate={"samplers": [{"name": "ddim", "steps": [steps]}]})
    (err,) = errors(data)
    assert err.startswith(msg.replace("input should be greater than or equal to 1",
                                      "expected >= 1")), err


def test_override_of_undefined_variable(write_spec):
    (line,) = lines_of(SPECS / "tiny_unet_8.yaml" if False else write_spec(TINY),
                       overrides=["vars.widht=64"])
    assert line == ("vars.widht: override 'vars.widht=64': no such variable (did you mean "
                    "'width'?); defined: block, width")


@pytest.mark.parametrize("image,said", [({"channels": 3, "size": 8}, "3 channels, 8x8 px"),
                                        ({"channels": 1, "size": 32}, "1 channel, 32x32 px")])
def test_image_must_match_the_dataset(image, said):
    errs = errors(minimal(image=image))
    assert errs[0] == (f"image: dataset 'digits' has images of 1 channel, 8x8 px, the spec "
                       f"says {said}; set image: {{channels: 1, size: 8}} or choose another "
                       "train.dataset")


def test_head_prediction_must_match_diffusion(write_spec):
    text = (SPECS / "spectral_unet_8.yaml").read_text()
    assert "prediction: epsilon" in text
    data = parse_text(text, "yaml")
    heads = [n for n, v in data["model"]["nodes"].items() if v["block"].endswith("_head")]
    if not heads:  # the head may sit inside the unet composite; add one explicitly
        data = minimal()
        data["model"]["nodes"]["y"] = {"block": "spectral_head", "in": ["f"], "predicts": "x0"}
        (err,) = errors(data)
    else:
        data["model"]["nodes"][heads[0]]["predicts"] = "x0"
        (err,) = errors(data)
    assert err.endswith(".predicts: the head predicts 'x0' but diffusion.prediction is "
                        "'epsilon'; make them agree")


@pytest.mark.parametrize("name", ["..", ".", "-rf", "a/b", "../up"])
def test_name_is_safe_as_a_folder(name):
    (err,) = errors(minimal(name=name))
    assert err.startswith("name: must be usable as a folder name")


# ---- 3. bounded work ----------------------------------------------------------------------------
def dense_cycle_spec(n: int = 14) -> str:
    ids = [f"n{i}" for i in range(n)]
    nodes = "".join(f"    {a}: {{block: add, in: [{', '.join(b for b in ids if b != a)}]}}\n"
                    for a in ids)
    return MINIMAL.replace("    x: {block: input}\n", "    x: {block: input}\n" + nodes)


def test_dense_cycle_validates_fast(write_spec):
    text = dense_cycle_spec()
    assert len(text.encode()) < 1500  # ~13! simple cycles: enumerating them never ends
    path = write_spec(text)
    import resource

    def cpu() -> float:  # CPU seconds of finished children: immune to a busy machine
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    t0 = cpu()
    r = subprocess.run([sys.executable, "-m", "app.cli", "validate", str(path)],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert cpu() - t0 < 5, "including start-up"
    assert r.returncode == 2
    cycles = [line for line in r.stderr.splitlines() if ": cycle: " in line]
    assert len(cycles) == 1  # one strongly connected component, one cycle shown
    assert re.search(r"model\.nodes\.n0: cycle: n0 -> n1 -> n0$", cycles[0]), cycles


def test_several_cycles_are_reported_up_to_five():
    data = minimal()
    nodes = data["model"]["nodes"]
    for i in range(7):
        nodes[f"a{i}"] = {"block": "add", "in": [f"b{i}", "x"]}
        nodes[f"b{i}"] = {"block": "add", "in": [f"a{i}", "x"]}
    cycles = [e for e in errors(data) if ": cycle: " in e]
    assert len(cycles) == 5


# ---- 4. equal hash, equal model -------------------------------------------------------------
def test_reordered_nodes_build_identical_weights():
    import torch

    data = parse_text(GRAPH, "yaml")
    nodes = data["model"]["nodes"]
    shuffled = dict(reversed(list(nodes.items())))
    assert list(shuffled) != list(nodes)
    other = {**data, "model": {**data["model"], "nodes": shuffled}}
    a, b = spec_from_dict(data), spec_from_dict(other)
    assert spec_hash(a) == spec_hash(b)
    assert a.validated.order == b.validated.order
    torch.manual_seed(0)
    ma = build_model(a).state_dict()
    torch.manual_seed(0)
    mb = build_model(b).state_dict()
    assert list(ma) == list(mb)
    assert all(torch.equal(ma[k], mb[k]) for k in ma)


def test_build_order_breaks_ties_by_node_id():
    data = minimal()
    data["model"]["nodes"] = {"x": {"block": "input"}, "zz": {"block": "rfft2", "in": ["x"]},
                              "aa": {"block": "rfft2", "in": ["x"]},
                              "s": {"block": "add", "in": ["zz", "aa"]},
                              "y": {"block": "irfft2", "in": ["s"]}}
    assert spec_from_dict(data).validated.order == ("aa", "x", "zz", "s", "y") or \
        spec_from_dict(data).validated.order == ("x", "aa", "zz", "s", "y")
    assert spec_from_dict(data).validated.order == ("x", "aa", "zz", "s", "y")


# ---- 5. messages ----------------------------------------------------------------------------------
def test_independent_layers_report_together():
    data = minimal(image={"channels": 1, "size": 1}, train={"stpes": 3})
    data["model"]["nodes"]["f"]["block"] = "rfft3"
    errs = errors(data)
    assert errs[:2] == ["image.size: expected >= 2, got 1",
                        "train.stpes: unknown key (did you mean 'steps'?); allowed: dataset, "
                        "data_root, steps, batch_size, lr, weight_decay, ema, grad_clip, seed, "
                        "checkpoint_every, init_from"]
    assert any(e.startswith("model.nodes.f.block: unknown block 'rfft3'") for e in errs)


def test_no_doubled_prefix_or_internals(write_spec):
    got = lines_of(write_spec(TINY), overrides=["model.nodes.eps.channels=3"])
    assert got == ["model.nodes.eps: unet: its inner 'self_attention' block (on real 6x4x4): "
                   "channels 6 not divisible by heads 4"]


def test_long_ids_are_truncated_and_the_limit_stated():
    data = minimal()
    long_id = "a" * 10_000
    data["model"]["nodes"][long_id] = {"block": "rfft2", "in": ["x"]}
    data["model"]["nodes"]["b" * 65] = {"block": "rfft2", "in": ["x"]}
    errs = errors(data)
    assert all(len(e) < 300 for e in errs), [len(e) for e in errs]
    assert any("node id is 10000 characters long; the limit is 64" in e for e in errs)
    assert any("node id is 65 characters long; the limit is 64" in e for e in errs)


def test_unknown_dataset_lists_the_known_ones():
    (err,) = errors(minimal(train={"dataset": "digitz"}))
    assert err.startswith("train.dataset: unknown dataset 'digitz' (did you mean 'digits'?)")
    assert err.endswith("known: cifar10, digits, folder, patches32, spectro32, synthetic8, "
                        "wav_folder")


def test_vars_referencing_vars_are_explained():
    data = minimal(vars={"a": 8, "b": "${vars.a}"})
    assert errors(data) == ["vars.b: a variable cannot reference another variable "
                            "(${vars...}); write its value"]


def test_yaml_boolean_keys_are_reported_as_written(write_spec):
    text = MINIMAL.replace("    y: {block: irfft2, in: [f]}", "    on: {block: irfft2, in: [f]}"
                           "\n    y: {block: irfft2, in: [f]}") + "train: {off: 3}\n"
    got = lines_of(write_spec(text))
    assert any(line.startswith("train.off: unknown key") for line in got), got
    assert "model.nodes.on: unused: its value never reaches the output 'y'" in got


# ---- validation is the one gate: data files, providers ------------------------------------
def test_folder_dataset_root_is_checked(image_folder, tmp_path):
    base = dict(image={"channels": 3, "size": 16})
    assert errors(minimal(**base, train={"dataset": "folder"})) == [
        "train.data_root: dataset 'folder' needs train.data_root: a folder of images"]
    (err,) = errors(minimal(**base, train={"dataset": "folder", "data_root": str(tmp_path / "no")}))
    assert err == f"train.data_root: {tmp_path / 'no'}: no such folder"
    (tmp_path / "empty").mkdir()
    (err,) = errors(minimal(**base, train={"dataset": "folder",
                                           "data_root": str(tmp_path / "empty")}))
    assert err.startswith("train.data_root: no images (.png")
    spec = spec_from_dict(minimal(**base, train={"dataset": "folder",
                                                 "data_root": str(image_folder)}))
    from evaluator.data.datasets import spec_dataset

    assert spec_dataset(spec, "train").images.shape[1:] == (3, 16, 16)


def test_cifar10_files_are_checked(tmp_path):
    (err,) = errors(minimal(image={"channels": 3, "size": 32},
                            train={"dataset": "cifar10", "data_root": str(tmp_path)}))
    assert err.startswith(f"train.data_root: cifar10 files not found in "
                          f"{tmp_path / 'cifar-10-batches-py'} (missing: data_batch_1")


def test_a_check_provider_that_fails_to_load_is_an_error(monkeypatch):
    import importlib.metadata as md

    import archspec.checks as checks

    broken = md.EntryPoint("broken", "evaluator.no_such_module:check", checks.GROUP)
    monkeypatch.setattr(checks, "_installed_entry_points", lambda: [broken])
    monkeypatch.setattr(checks, "_source_tree_entry_points", lambda: [])
    checks.providers.cache_clear()
    try:
        (err,) = errors(minimal())
        assert err.startswith("spec check provider 'broken' (evaluator.no_such_module:check) "
                              "failed to load: ModuleNotFoundError")
    finally:
        checks.providers.cache_clear()


def test_no_check_provider_is_an_error(monkeypatch):
    import archspec.checks as checks

    monkeypatch.setattr(checks, "_installed_entry_points", lambda: [])
    monkeypatch.setattr(checks, "_source_tree_entry_points", lambda: [])
    checks.providers.cache_clear()
    try:
        (err,) = errors(minimal())
        assert err.startswith("no spec check providers found (entry-point group "
                              "'archsearch.checks')")
    finally:
        checks.providers.cache_clear()


def test_the_evaluator_provider_is_declared_and_found():
    import archspec.checks as checks

    declared = {ep.name: ep.value for ep in checks._source_tree_entry_points()}
    assert declared == {"evaluator": "evaluator.pipeline.checks:check_spec"}
    found, problems = checks.providers()
    assert not problems and "evaluator" in dict(found)


def test_validated_spec_is_public():
    spec = load_spec(SPECS / "tiny_unet_8_graph.yaml")
    v = spec.validated
    assert v.order[0] in ("t", "x") and set(v.order) == set(spec.model.nodes)
    assert v.shapes["e1"].shape == (32, 8, 8) and v.domains["e1"] == "real"
    assert v.params["e1"].channels == 32 and v.total_params == sum(v.param_counts.values())
    assert v.source == str(SPECS / "tiny_unet_8_graph.yaml")
    model = build_model(spec)
    assert sum(p.numel() for p in model.parameters()) == v.total_params


def test_keys_with_line_breaks_stay_on_one_line(write_spec):
    """Found by the fuzzer: a key holding '\\r' split a problem over two lines."""
    got = lines_of(write_spec(MINIMAL + '? "a\\rb\\u2028c"\n: 1\n'))
    assert got == ["a\\rb\\u2028c: unknown key; allowed: spec_version, name, description, "
                   "image, vars, model, diffusion, train, evaluate"]
    errs = errors(minimal(spec_version={"\r": 10**40}))
    assert errs == ["spec_version.\\r: integer out of range"]


def test_defined_variable_names_stay_on_one_line():
    """Found by the fuzzer: a variable named '\\r0' split the 'defined:' list over two lines."""
    import yaml

    data = yaml.safe_load(MINIMAL)
    data["vars"] = {"\r0": None, **{f"v{i}": i for i in range(12)}}
    data["image"]["size"] = "${vars.size}"
    with pytest.raises(SpecError) as e:
        spec_from_dict(data)
    (line,) = [str(p) for p in e.value.problems]
    assert line == ("image.size: unknown variable 'size' in '${vars.size}'; defined: \\r0, "
                    "v0, v1, v10, v11, v2, v3, v4, v5, v6 and 3 more")


def test_unreadable_file_is_a_spec_error(write_spec, monkeypatch):
    from pathlib import Path

    path = write_spec(MINIMAL)

    def denied(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", denied)
    assert lines_of(path) == ["cannot read the file: Permission denied"]


# ---- the last spec-gate cases (adversarial specs written as a new user might) ------------
def test_output_that_is_the_input_node_is_refused_at_its_location(write_spec):
    """It validated as 'ok (0 parameters)' and would fail only in training; the nodes it
    leaves out are not reported as unused on top (one root cause, one line)."""
    text = MINIMAL.replace("  output: y", "  output: x")
    assert lines_of(write_spec(text)) == [
        "model.output: 'x' is the input node: the model would return its input unchanged "
        "and has no trainable parameters; set model.output to the node that makes the "
        "prediction"]
    with pytest.raises(SpecError, match=r"^model\.output: 'x' is the input node"):
        spec_from_dict({"name": "identity", "image": {"channels": 1, "size": 8},
                        "model": {"nodes": {"x": {"block": "input"}}, "output": "x"}})


@pytest.mark.parametrize("key", ["inputs", "input", "from"])
def test_inputs_written_under_another_key_hint_in(write_spec, key):
    """'inputs:' is an unknown key of the node: the hint names 'in', the allowed keys
    include the node's own, and the graph layer adds no consequences of the same slip."""
    text = MINIMAL.replace("y: {block: irfft2, in: [f]}", f"y: {{block: irfft2, {key}: [f]}}")
    assert lines_of(write_spec(text)) == [
        f"model.nodes.y.{key}: unknown key (did you mean 'in'?); allowed: block, in, size"]


def test_close_matches_for_unknown_node_keys_in_general():
    data = parse_text(GRAPH, "yaml")
    node = next(n for n in data["model"]["nodes"].values() if n["block"] == "conv")
    node["chanels"] = node.pop("channels")
    node["blok"] = 1
    errs = errors(data)
    assert any(re.search(r"\.chanels: unknown key \(did you mean 'channels'\?\); allowed: "
                         r"block, in, channels, kernel_size", e) for e in errs), errs
    assert any(re.search(r"\.blok: unknown key \(did you mean 'block'", e) for e in errs), errs


def test_cli_validate_says_one_line_per_problem_for_the_new_cases(write_spec):
    identity = write_spec(MINIMAL.replace("  output: y", "  output: x"), "identity.yaml")
    inputs = write_spec(MINIMAL.replace("in: [f]", "inputs: [f]"), "inputs.yaml")
    r = subprocess.run([sys.executable, "-m", "app.cli", "validate", str(identity),
                        str(inputs)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"{identity}: model.output: 'x' is the input node: the model would return its input "
        "unchanged and has no trainable parameters; set model.output to the node that makes "
        "the prediction",
        f"{inputs}: model.nodes.y.inputs: unknown key (did you mean 'in'?); allowed: block, "
        "in, size"]
