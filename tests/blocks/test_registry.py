"""Registry-wide checks: every registered block builds, runs and trains.

Each block's registration carries one small configuration (``example``); a block without
one is tried with default parameters on :func:`blocks.core.default_inputs`, so a new block
is checked the moment it is registered. Plugin blocks go through the same
:func:`check_block` (tests/blocks/test_plugins.py).
"""
from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

import blocks
from blocks import BLOCKS, RegistryError, TensorSpec
from blocks.registry import Registry

IO = {"input", "timestep"}


def _tensor(spec: TensorSpec, batch: int, gen: torch.Generator) -> torch.Tensor:
    shape = (batch, *spec.shape)
    if spec.domain == "time":
        return torch.randint(0, 1000, shape, generator=gen).float()
    if spec.domain == "complex":
        return torch.complex(torch.randn(shape, generator=gen), torch.randn(shape, generator=gen))
    return torch.randn(shape, generator=gen)


def check_block(name: str) -> None:
    """Build ``name`` from its registered example, run it, check dtype, shape against
    meta-device inference, finiteness, and that every parameter receives a gradient."""
    entry = blocks.get(name)
    params, in_specs = entry.example_config()
    torch.manual_seed(0)
    module = blocks.build(name, params, in_specs).train()
    gen = torch.Generator().manual_seed(0)
    xs = [_tensor(s, 3, gen) for s in in_specs]
    for x, s in zip(xs, in_specs):
        if s.domain != "time":
            x.requires_grad_(True)
    y = module(*xs)
    dom = entry.output_domain([s.domain for s in in_specs])
    # dtype follows the declared domain
    assert y.is_complex() == (dom == "complex"), (name, y.dtype)
    assert y.dtype in (torch.float32, torch.complex64)
    assert torch.isfinite(torch.view_as_real(y) if y.is_complex() else y).all()
    # shape agrees with meta-device inference (what the validator reports)
    with torch.device("meta"):
        meta_mod = blocks.build(name, params, in_specs)
        meta_y = meta_mod(*[torch.empty_like(x, device="meta") for x in xs])
    assert meta_y.shape == y.shape and meta_y.dtype == y.dtype
    # every parameter receives a gradient
    loss = (y.abs() ** 2).mean() if y.is_complex() else (y ** 2).mean() + y.mean()
    loss.backward()
    missing = [n for n, p in module.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{name}: no gradient for {missing}"
    assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)


def check_documented_and_strict(name: str) -> None:
    entry = blocks.get(name)
    assert entry.doc, f"{name}: the builder needs a one-line docstring"
    assert entry.family
    assert entry.params.model_config.get("extra") == "forbid"
    with pytest.raises(ValidationError):
        entry.params(**{**entry.example_config()[0], "no_such_param": 1})


@pytest.mark.parametrize("name", [n for n in BLOCKS.names() if n not in IO])
def test_every_block_builds_runs_and_trains(name):
    check_block(name)


@pytest.mark.parametrize("name", BLOCKS.names())
def test_every_block_is_documented_and_strict(name):
    check_documented_and_strict(name)


@pytest.mark.parametrize("name", [n for n in BLOCKS.names() if blocks.get(n).twin])
def test_twins_point_at_each_other_and_share_parameters(name):
    e = blocks.get(name)
    twin = blocks.get(e.twin)
    assert twin.twin == name and twin.params is e.params
    assert {e.gives, twin.gives} == {"complex", "dual"}


def test_registry_rejects_duplicates_and_suggests():
    reg: Registry[int] = Registry("thing")
    reg.add("alpha", 1)
    with pytest.raises(RegistryError, match="thing 'alpha' is already registered"):
        reg.add("alpha", 2)
    with pytest.raises(RegistryError, match=r"unknown thing 'alpah' \(did you mean 'alpha'\?\)"):
        reg.get("alpah")
    assert reg.names() == ["alpha"] and "alpha" in reg and len(reg) == 1


def test_block_registry_duplicate_name_is_an_error():
    with pytest.raises(RegistryError, match="block 'rfft2' is already registered"):
        blocks.register_block("rfft2", takes=("real",), gives="complex", family="x")(lambda p, i: None)


def test_unknown_domain_refused():
    with pytest.raises(ValueError, match="unknown domain 'spectral'"):
        blocks.register_block("zzz", takes=("spectral",), gives="real", family="x")


def test_registry_lists_what_was_registered_and_nothing_else():
    reg: Registry[int] = Registry("thing")
    for n in ("b", "c", "a"):
        reg.add(n, ord(n))
    assert reg.names() == ["a", "b", "c"] and list(reg) == ["a", "b", "c"]
    assert reg.items() == [("a", 97), ("b", 98), ("c", 99)]
    assert reg.remove("b") == 98 and "b" not in reg and len(reg) == 2
    with pytest.raises(RegistryError, match="unknown thing 'b'"):
        reg.remove("b")


def test_first_use_hook_runs_once_and_a_failure_repeats():
    reg: Registry[int] = Registry("thing")
    calls = []

    def hook():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("plugin broke")
        reg.add("late", 1)

    reg.add("early", 0)
    reg.when_first_used(hook)
    assert calls == []  # adding does not trigger it
    with pytest.raises(RuntimeError, match="plugin broke"):
        reg.names()
    assert reg.names() == ["early", "late"] and reg.names() == ["early", "late"]
    assert calls == [1, 1]


def test_a_block_registered_from_a_new_module_is_checked_like_the_others(tmp_path, monkeypatch):
    (tmp_path / "my_blocks.py").write_text(BLOCK_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    importlib.import_module("my_blocks")
    try:
        e = blocks.get("test_half_gain")
        assert e.source == "my_blocks:_half_gain" and e.example[0] == {"gain": 0.25}
        check_block("test_half_gain")
        check_documented_and_strict("test_half_gain")
        y = blocks.build("test_half_gain", {"gain": 0.25}, [TensorSpec("real", (2, 4, 4))])(
            torch.ones(1, 2, 4, 4))
        assert torch.allclose(y, torch.full_like(y, 0.25))
    finally:
        BLOCKS.remove("test_half_gain")
        monkeypatch.delitem(__import__("sys").modules, "my_blocks")


# The whole recipe for a new block: one module, one decorator (README "Extending").
BLOCK_MODULE = '''
import torch
from pydantic import Field
from torch import nn

from blocks import BlockParams, TensorSpec, register_block


class GainParams(BlockParams):
    gain: float = Field(0.5, description="initial gain")


class Gain(nn.Module):
    def __init__(self, *, channels: int, gain: float) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.full((channels, 1, 1), gain))

    def forward(self, x):
        return x * self.gain  # (B, C, H, W)


@register_block("test_half_gain", params=GainParams, takes=("real",), gives="real",
                family="test", example=({"gain": 0.25}, [TensorSpec("real", (3, 8, 8))]))
def _half_gain(p, inputs):
    """Learned per-channel gain (a test block)."""
    return Gain(channels=inputs[0].shape[0], gain=p.gain)
'''


def test_registry_lists_params_and_domains():
    e = blocks.get("rfft2")
    assert e.takes == ("real",) and e.gives == "complex"
    assert e.params is blocks.NoParams
    assert e.source == "blocks.adapters:_rfft2"


def test_blocks_listing_shows_twins_and_sources(capsys):
    import json

    from app.cli import main

    assert main(["blocks", "--json"]) == 0
    listing = {b["block"]: b for b in json.loads(capsys.readouterr().out)}
    assert listing["complex_conv"]["twin"] == "dual_conv"
    assert listing["dual_conv"]["twin"] == "complex_conv" and listing["conv"]["twin"] is None
    assert listing["complex_conv"]["source"] == "blocks.twins:_complex_conv"
    assert main(["blocks", "--family", "dual"]) == 0
    out = capsys.readouterr().out
    assert "twin: complex_resblock" in out and "from:" not in out  # built-ins say no origin
