"""Registry-wide checks: every registered block builds, runs and trains.

Each family module may give one small configuration per block in ``EXAMPLES``; a block
without one is tried with default parameters and default-shaped inputs, so a new block is
checked the moment it is registered.
"""
from __future__ import annotations

import sys

import pytest
import torch
from pydantic import ValidationError

import blocks
from blocks import BLOCKS, RegistryError, TensorSpec
from blocks.registry import Registry

DEFAULT_SHAPES = {"real": (4, 8, 8), "complex": (4, 8, 5), "dual": (8, 8, 5),
                  "embed": (16,), "time": (), "any": (4, 8, 8)}
IO = {"input", "timestep"}


def _examples() -> dict:
    out = {}
    for name, mod in list(sys.modules.items()):
        if name.startswith("blocks.") and isinstance(getattr(mod, "EXAMPLES", None), dict):
            out.update(mod.EXAMPLES)
    return out


EXAMPLES = _examples()


def _config(name: str):
    if name in EXAMPLES:
        params, inputs = EXAMPLES[name]
        return dict(params), list(inputs)
    entry = blocks.get(name)
    inputs = []
    for d in entry.takes:
        if d.endswith("?"):
            continue
        dom = d.rstrip("*")
        dom = "real" if dom == "any" else dom
        inputs.append(TensorSpec(dom, DEFAULT_SHAPES[dom]))
    return {}, inputs


def _tensor(spec: TensorSpec, batch: int, gen: torch.Generator) -> torch.Tensor:
    shape = (batch, *spec.shape)
    if spec.domain == "time":
        return torch.randint(0, 1000, shape, generator=gen).float()
    if spec.domain == "complex":
        return torch.complex(torch.randn(shape, generator=gen), torch.randn(shape, generator=gen))
    return torch.randn(shape, generator=gen)


@pytest.mark.parametrize("name", [n for n in BLOCKS.names() if n not in IO])
def test_every_block_builds_runs_and_trains(name):
    entry = blocks.get(name)
    params, in_specs = _config(name)
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


@pytest.mark.parametrize("name", BLOCKS.names())
def test_every_block_is_documented_and_strict(name):
    entry = blocks.get(name)
    assert entry.doc, f"{name}: the builder needs a one-line docstring"
    assert entry.family
    assert entry.params.model_config.get("extra") == "forbid"
    with pytest.raises(ValidationError):
        entry.params(**{**_config(name)[0], "no_such_param": 1})


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


def test_registry_lists_params_and_domains():
    e = blocks.get("rfft2")
    assert e.takes == ("real",) and e.gives == "complex"
    assert "rfft2" in blocks.names() and len(blocks.names()) == len(BLOCKS)
