"""Assembly: the graph model computes what its nodes compute, in order."""
from __future__ import annotations

import torch

from archspec import build_model, load_spec, spec_from_dict
from archspec.loading import parse_text
from tests.conftest import MINIMAL, SPECS


def test_fft_round_trip_model_is_identity():
    model = build_model(spec_from_dict(parse_text(MINIMAL, "yaml")))
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(model(x, torch.zeros(4)), x, rtol=0, atol=1e-5)


def test_graph_equals_hand_wiring():
    """The assembled model equals calling its node modules by hand."""
    spec = load_spec(SPECS / "tiny_unet_8_graph.yaml")
    torch.manual_seed(0)
    model = build_model(spec).eval()
    m = model.node_modules
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([1, 500, 999])
    temb = m["temb"](t)
    e1 = m["e1"](m["stem"](x), temb)
    a2 = m["a2"](m["e2"](m["down"](e1), temb))
    m2 = m["m2"](m["ma"](m["m1"](a2, temb)), temb)
    d2 = m["da2"](m["d2"](m["cat2"](m2, a2), temb))
    d1 = m["d1"](m["cat1"](m["up"](d2), e1), temb)
    ref = m["eps"](m["act"](m["norm"](d1)))
    torch.testing.assert_close(model(x, t), ref)


def test_examples_build_with_inferred_parameter_counts():
    for path in sorted(SPECS.glob("tiny_unet_*.yaml")):
        spec = load_spec(path)
        model = build_model(spec)
        real = sum(p.numel() for p in model.parameters())
        assert real == spec.validated.total_params, path.name


def test_scalar_timestep_broadcasts():
    spec = load_spec(SPECS / "tiny_unet_8.yaml")
    torch.manual_seed(0)
    model = build_model(spec).eval()
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(model(x, torch.tensor(10)), model(x, torch.tensor([10, 10])))
