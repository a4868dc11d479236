"""Validation layers: schema, blocks, graph, domains, shapes and memory, all errors at once."""
from __future__ import annotations

import pytest

from archspec import SpecError, load_spec, spec_from_dict
from archspec.loading import parse_text
from tests.conftest import MINIMAL


def _spec(**changes):
    data = parse_text(MINIMAL, "yaml")
    for path, value in changes.items():
        node = data
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return data


def _errors(data) -> list[str]:
    with pytest.raises(SpecError) as ei:
        spec_from_dict(data)
    return [str(p) for p in ei.value.problems]


def test_all_schema_errors_reported_together():
    data = _spec(image={"channels": 0, "size": "big"}, train={"stpes": 3},
                 diffusion={"schedule": "cosin"})
    errs = _errors(data)
    assert "image.channels: expected >= 1, got 0" in errs
    assert "image.size: must be an integer, got text 'big'" in errs
    assert any(e.startswith("train.stpes: unknown key (did you mean 'steps'?)") for e in errs)
    assert any(e.startswith("diffusion.schedule: expected 'linear' or 'cosine'") for e in errs)
    assert len(errs) == 4


def test_block_params_checked_by_block_model():
    data = _spec()
    data["model"]["nodes"]["c"] = {"block": "conv", "in": ["y"], "channels": -3, "kernal_size": 3}
    data["model"]["output"] = "c"
    errs = _errors(data)
    assert "model.nodes.c.channels: expected > 0, got -3" in errs
    assert any(e.startswith("model.nodes.c.kernal_size: unknown key (did you mean "
                            "'kernel_size'?)") for e in errs)


def test_unknown_block_suggests_close_match():
    data = _spec()
    data["model"]["nodes"]["f"]["block"] = "rfft"
    (err,) = _errors(data)
    assert err.startswith("model.nodes.f.block: unknown block 'rfft' (did you mean 'rfft2'")


def test_unknown_input_and_output():
    data = _spec()
    data["model"]["nodes"]["y"]["in"] = ["ff"]
    data["model"]["output"] = "why"
    errs = _errors(data)
    assert "model.nodes.y.in[0]: unknown node 'ff' (did you mean 'f'?)" in errs
    assert any(e.startswith("model.output: unknown node 'why'") for e in errs)


def test_cycle_is_reported_with_path():
    data = _spec()
    data["model"]["nodes"]["a"] = {"block": "add", "in": ["y", "b"]}
    data["model"]["nodes"]["b"] = {"block": "add", "in": ["a"]}
    data["model"]["output"] = "a"
    errs = _errors(data)
    assert any(e.startswith("model.nodes.") and "cycle: " in e
               and ("a -> b -> a" in e or "b -> a -> b" in e) for e in errs), errs


def test_unused_node_and_input_count():
    data = _spec()
    data["model"]["nodes"]["spare"] = {"block": "rfft2", "in": ["x"]}
    data["model"]["nodes"]["y2"] = {"block": "irfft2", "in": ["f", "f"]}
    errs = _errors(data)
    assert "model.nodes.y2.in: block 'irfft2' takes 1 inputs, got 2" in errs


def test_unused_node():
    data = _spec()
    data["model"]["nodes"]["spare"] = {"block": "rfft2", "in": ["x"]}
    assert _errors(data) == ["model.nodes.spare: unused: its value never reaches the output 'y'"]


def test_output_must_depend_on_input():
    data = _spec()
    data["model"]["nodes"]["t"] = {"block": "timestep"}
    data["model"]["nodes"]["e"] = {"block": "time_embedding", "in": ["t"]}
    data["model"]["output"] = "e"
    errs = _errors(data)
    assert "model.output: 'e' does not depend on the input image" in errs


def test_exactly_one_input():
    data = _spec()
    data["model"]["nodes"]["x2"] = {"block": "input"}
    data["model"]["nodes"]["s"] = {"block": "add", "in": ["y", "x2"]}
    data["model"]["output"] = "s"
    assert "model.nodes: expected exactly one 'input' node, found 2: x, x2" in _errors(data)


def test_domain_mismatch_names_the_adapter():
    data = _spec()
    data["model"]["nodes"]["y"]["in"] = ["x"]       # irfft2 fed pixel space
    data["model"]["nodes"]["f"]["in"] = ["x"]
    data["model"]["nodes"]["z"] = {"block": "add", "in": ["y", "f"]}
    data["model"]["output"] = "y"
    del data["model"]["nodes"]["z"], data["model"]["nodes"]["f"]
    (err,) = _errors(data)
    assert err == ("model.nodes.y.in[0]: block 'irfft2' takes complex here, but 'x' gives "
                   "real; insert rfft2 (or fft2) between them")


def test_output_must_be_real_pixel_space():
    data = _spec()
    data["model"]["output"] = "f"
    del data["model"]["nodes"]["y"]
    (err,) = _errors(data)
    assert err == "model.output: 'f' gives complex, the model must return pixel space (real); insert irfft2 (or ifft2)"


def test_shape_mismatch_reported_by_node():
    data = _spec()
    data["model"]["nodes"]["c"] = {"block": "conv", "in": ["x"], "channels": 4}
    data["model"]["nodes"]["s"] = {"block": "add", "in": ["y", "c"]}
    data["model"]["output"] = "s"
    (err,) = _errors(data)
    assert err.startswith("model.nodes.s: add: ")
    assert "[(1, 8, 8), (4, 8, 8)]" in err


def test_output_shape_must_match_image():
    data = _spec()
    data["model"]["nodes"]["c"] = {"block": "conv", "in": ["y"], "channels": 2}
    data["model"]["output"] = "c"
    (err,) = _errors(data)
    assert err == "model.output: 'c' gives shape (2, 8, 8), expected (1, 8, 8) to match image"


def test_huge_sizes_rejected_before_allocation(monkeypatch, image_folder):
    data = _spec(image={"channels": 3, "size": 1024})
    data["model"]["nodes"]["c"] = {"block": "conv", "in": ["y"], "channels": 4096}
    data["model"]["nodes"]["d"] = {"block": "conv", "in": ["c"], "channels": 3}
    data["model"]["output"] = "d"
    data["train"] = {"batch_size": 4096, "dataset": "folder", "data_root": str(image_folder)}
    (err,) = _errors(data)
    assert err.startswith("model: estimated training memory ")
    assert "exceeds the budget of 16.0 GiB" in err
    monkeypatch.setenv("ARCHSEARCH_MEMORY_BUDGET_GB", "100000")
    spec = spec_from_dict(data)  # same spec fits a larger stated budget
    assert spec.validated.shapes["c"].shape == (4096, 1024, 1024)


def test_channels_upper_bound():
    data = _spec()
    data["model"]["nodes"]["c"] = {"block": "conv", "in": ["y"], "channels": 10**9}
    data["model"]["output"] = "c"
    assert _errors(data) == ["model.nodes.c.channels: expected <= 4096, got 1000000000"]


def test_node_ids_are_identifiers():
    data = _spec()
    data["model"]["nodes"]["bad.id"] = {"block": "rfft2", "in": ["x"]}
    errs = _errors(data)
    assert any(e.startswith("model.nodes.bad.id: node ids are identifiers") for e in errs)


@pytest.mark.parametrize("path", ["tiny_unet_8.yaml", "tiny_unet_8_graph.yaml",
                                  "tiny_unet_32.yaml", "tiny_unet_32_graph.yaml"])
def test_spatial_examples_validate(path):
    from tests.conftest import SPECS

    spec = load_spec(SPECS / path)
    out = spec.validated.shapes[spec.model.output]
    assert out.domain == "real"
    assert out.shape == (spec.image.channels, spec.image.size, spec.image.size)


def test_dataset_and_sampler_names_checked():
    data = _spec(train={"dataset": "digitz"},
                 evaluate={"clip": "dynamic", "samplers": [{"name": "ddim", "steps": [10]},
                                                          {"name": "dpmsolver", "steps": [5]},
                                                          {"name": "euler", "steps": [5]}]})
    errs = _errors(data)
    assert any(e.startswith("train.dataset: unknown dataset 'digitz' (did you mean 'digits'")
               for e in errs)
    assert any(e.startswith("evaluate.samplers[1].name: unknown sampler 'dpmsolver' (did you "
                            "mean 'dpmsolver++'") for e in errs)
    assert any(e.startswith("evaluate.samplers[2].name: sampler 'euler' cannot apply clip "
                            "policy 'dynamic'") for e in errs)
    assert len(errs) == 3


def test_frequency_weighting_needs_fourier_loss():
    data = _spec(diffusion={"loss": {"domain": "pixel", "freq_weighting": "power_law"}})
    assert _errors(data) == ["diffusion.loss.freq_weighting: 'power_law' weights frequencies, "
                             "so it needs diffusion.loss.domain: fourier"]


def test_cpu_fast_path_and_meta_path_agree(monkeypatch):
    """Small specs infer shapes on the CPU; the meta path must give the same answer."""
    import archspec.validate as v
    from tests.conftest import SPECS

    for name in ("tiny_unet_8_graph.yaml", "spectral_unet_8.yaml", "hybrid_unet_32.yaml"):
        fast = load_spec(SPECS / name)
        assert v.inference_device(fast, fast.validated.params) == "cpu"
        monkeypatch.setattr(v, "FAST_MAX_WIDTH", 0)
        slow = load_spec(SPECS / name)
        assert v.inference_device(slow, slow.validated.params) == "meta"
        monkeypatch.undo()
        assert slow.validated.shapes == fast.validated.shapes and slow.validated.param_counts == fast.validated.param_counts


def test_large_specs_take_the_meta_path(image_folder):
    import archspec.validate as v

    data = _spec(image={"channels": 3, "size": 256},
                 train={"dataset": "folder", "data_root": str(image_folder)})
    spec = spec_from_dict(data)
    assert v.inference_device(spec, spec.validated.params) == "meta"
