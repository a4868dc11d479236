"""The example specs: they validate, assemble, train (forward + backward), stay parameter-fair.

Fairness: the research question compares spatial and spectral pipelines *at matched
parameters*, so every example must stay within +-10% of the spatial baseline of its image
size (``tiny_unet_<size>.yaml``). The dual ablation must be its spectral twin with block
names changed and nothing else, so that any difference in results is the arithmetic's.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import blocks
from archspec import build_model, load_spec
from blocks.twins import NAMES as TWIN_NAMES
from blocks.adapters import FromDual, from_dual, to_dual
from blocks.attention import GlobalFilter, LowRankSpectral
from blocks.core import TensorSpec
from blocks.dual import DualConv2d
from blocks.heads import SpectralHead
from blocks.spectral import hermitian_project
from blocks.unet import UNet

SPECS = Path(__file__).resolve().parents[1] / "examples" / "specs"
SPEC_FILES = sorted(SPECS.glob("*.yaml"))
IDS = [p.stem for p in SPEC_FILES]
FAIR = 0.10  # relative tolerance on parameter counts

# complex block -> dual twin: the twin registration table, plus the output heads.
TWINS = {TWIN_NAMES["complex"][k]: TWIN_NAMES["dual"][k] for k in TWIN_NAMES["complex"]}
TWINS["spectral_head"] = "dual_head"


@functools.lru_cache(maxsize=None)
def _spec(path: Path):
    return load_spec(path)


def _model(path: Path, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(_spec(path))


@functools.lru_cache(maxsize=None)
def _param_count(path: Path) -> int:
    return _n_params(_model(path))


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_examples_present() -> None:
    names = set(IDS)
    for size in (8, 32):
        expected = {f"tiny_unet_{size}", f"spectral_unet_{size}", f"hybrid_unet_{size}",
                    f"dual_unet_{size}"} | {f"spectral_{v}_{size}" for v in
                                             ("bandlimited", "lowrank", "nystrom", "gfilter")}
        # spectral_unet_<size> is the radial-band attention variant
        assert expected <= names, sorted(expected - names)


@pytest.mark.parametrize("path", SPEC_FILES, ids=IDS)
def test_spec_validates_and_is_named_after_its_file(path: Path) -> None:
    spec = _spec(path)
    assert spec.name == path.stem
    assert spec.image.size in (8, 32)
    assert path.read_text().startswith("# yaml-language-server: $schema=../../spec.schema.json")


@pytest.mark.parametrize("path", SPEC_FILES, ids=IDS)
def test_forward_backward_and_every_parameter_gets_a_gradient(path: Path) -> None:
    spec = _spec(path)
    model = _model(path)
    c, s = spec.image.channels, spec.image.size
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, c, s, s, generator=g)
    t = torch.randint(0, spec.diffusion.timesteps, (2,), generator=g)
    out = model(x, t)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    # a loss that reaches every output entry, like the epsilon MSE
    torch.nn.functional.mse_loss(out, torch.randn(out.shape, generator=g)).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not bad, bad


@pytest.mark.parametrize("path", SPEC_FILES, ids=IDS)
def test_parameter_count_is_fair(path: Path) -> None:
    size = _spec(path).image.size
    n, base = _param_count(path), _param_count(SPECS / f"tiny_unet_{size}.yaml")
    assert abs(n / base - 1) <= FAIR, (
        f"{path.stem}: {n:,} parameters vs {base:,} for tiny_unet_{size} "
        f"({n / base - 1:+.1%}); tune vars.width")


def _rename(obj: Any, names: dict[str, str]) -> Any:
    """Block names replaced by their twins (not parameter values such as act: modrelu)."""
    if isinstance(obj, dict):
        return {k: v if k == "params" else _rename(v, names) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rename(v, names) for v in obj]
    return names.get(obj, obj) if isinstance(obj, str) else obj


@pytest.mark.parametrize("size", [8, 32])
def test_dual_spec_is_the_spectral_spec_with_dual_block_names(size: int) -> None:
    spectral = yaml.safe_load((SPECS / f"spectral_unet_{size}.yaml").read_text())
    dual = yaml.safe_load((SPECS / f"dual_unet_{size}.yaml").read_text())
    renamed = _rename(spectral, TWINS)
    assert renamed != spectral  # the spectral spec does name complex blocks
    for key in ("name", "description"):
        renamed.pop(key), dual.pop(key)
    assert renamed == dual


@pytest.mark.parametrize("size", [8, 32])
def test_dual_model_is_the_spectral_model_in_real_arithmetic(size: int) -> None:
    """Same state dict but the head; spectral weights in the dual model give its output."""
    spectral, dual = (_model(SPECS / f"{k}_unet_{size}.yaml") for k in ("spectral", "dual"))
    s_unet, d_unet = spectral.node_modules["eps"], dual.node_modules["eps"]
    assert isinstance(s_unet, UNet) and isinstance(d_unet, UNet)
    assert (s_unet.enc_domain, d_unet.enc_domain) == ("complex", "dual")
    assert any(isinstance(m, DualConv2d) for m in dual.modules())
    # the spectral attention has no dual twin: it runs between the exact adapters
    assert any(isinstance(s.att_into, FromDual) for s in d_unet.down if s.attention)
    body = {k: v.shape for k, v in spectral.state_dict().items() if ".head." not in k}
    assert body == {k: v.shape for k, v in dual.state_dict().items() if ".head." not in k}
    assert not [p for p in dual.parameters() if p.is_complex()]

    dual.load_state_dict({k: v for k, v in spectral.state_dict().items() if ".head." not in k},
                         strict=False)
    w = torch.view_as_complex(s_unet.head.weight.detach())  # (O, C) complex
    block = torch.cat([torch.cat([w.real, -w.imag], 1), torch.cat([w.imag, w.real], 1)], 0)
    with torch.no_grad():  # the complex 1x1 map as a real block matrix on [re; im]
        d_unet.head.proj.weight.copy_(block[:, :, None, None])
        d_unet.head.bias.copy_(s_unet.head.bias)
    img = _spec(SPECS / f"spectral_unet_{size}.yaml").image
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, img.channels, img.size, img.size, generator=g)
    t = torch.tensor([10, 700])
    torch.testing.assert_close(dual(x, t), spectral(x, t), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size", [8, 32])
def test_variants_differ_from_spectral_unet_only_in_attention_and_width(size: int) -> None:
    base = yaml.safe_load((SPECS / f"spectral_unet_{size}.yaml").read_text())
    for path in SPECS.glob(f"spectral_*_{size}.yaml"):
        variant = yaml.safe_load(path.read_text())
        for d in (base, variant):
            for key in ("name", "description"):
                d.pop(key, None)
            d["vars"] = {k: v for k, v in d["vars"].items() if k not in ("width", "attention")}
            enc = d["model"]["nodes"]["eps"]["encoder"]
            if isinstance(enc["attention"], dict):  # attention with its params (lowrank)
                enc["attention"] = enc["attention"]["block"]
        assert variant == base, path.stem


# --------------------------------------------------------------------------- unet options the
# spectral examples rely on (head, attention params, complex attention in dual stages)

EMB = TensorSpec("embed", (16,))


def _unet(**params: Any) -> UNet:
    params = {"channels": 4, "channel_mult": [1, 2], "groups": 2, **params}
    return blocks.build("unet", params, [TensorSpec("real", (1, 8, 8)), EMB])


def test_unet_head_block_keeps_the_decoder_output_in_its_domain() -> None:
    net = _unet(encoder={"block": "complex_resblock", "attention": "radial_band_attention"},
                attention_levels=[1], mid_attention=True, head="spectral_head")
    assert isinstance(net.to_real, torch.nn.Identity) and isinstance(net.head, SpectralHead)
    # irfft2 of a Hermitian spectrum: the head's output is what its input spectrum encodes
    z = torch.randn(2, 4, 8, 5, dtype=torch.complex64)
    y = torch.einsum("bchw,oc->bohw", z, torch.view_as_complex(net.head.weight.detach()))
    ref = torch.fft.irfft2(hermitian_project(y, 8), s=(8, 8), norm="ortho")
    torch.testing.assert_close(net.head(z), ref + net.head.bias[:, None, None])


def test_unet_head_must_take_the_decoder_domain() -> None:
    with pytest.raises(ValueError, match="head 'spectral_head' must take the decoder domain "
                                         "'real'"):
        _unet(head="spectral_head")
    with pytest.raises(ValueError, match="head 'rfft2' must take the decoder domain"):
        _unet(head="rfft2")


def _lowrank(**params: Any) -> dict[str, Any]:
    return {"block": "complex_resblock",
            "attention": {"block": "lowrank_spectral", "params": params}}


def test_unet_attention_params_reach_every_attention_block() -> None:
    net = _unet(encoder=_lowrank(modes=2, rank=3), attention_levels=[1], mid_attention=True)
    mods = [m for m in net.modules() if isinstance(m, LowRankSpectral)]
    assert len(mods) == 3 and all(m.modes == 2 for m in mods)  # encoder, middle, decoder
    with pytest.raises(ValueError, match="modes=4 needs 2\\*modes <= H"):
        _unet(encoder=_lowrank(), attention_levels=[1], mid_attention=True)
    with pytest.raises(ValueError, match="extra"):
        _unet(encoder=_lowrank(mode=2), mid_attention=True)


def test_unet_complex_attention_in_dual_stages_runs_between_exact_adapters() -> None:
    net = _unet(encoder={"block": "dual_resblock", "attention": "global_filter"},
                mid_attention=True, head="dual_head")
    stage = net.mid[0]
    assert isinstance(stage.attention, GlobalFilter) and isinstance(stage.att_into, FromDual)
    x = torch.randn(2, 2 * 8, 4, 3)  # dual (2C, H, W') at the 4x4 bottom
    e = torch.randn(2, 16)
    with torch.no_grad():
        stage.attention.filter.normal_()
        h = stage.block(x, e)
        ref = to_dual(stage.attention(from_dual(h), e))
        torch.testing.assert_close(stage(x, e), ref)
    with pytest.raises(ValueError, match="encoder attention 'self_attention' takes 'real'"):
        _unet(encoder={"block": "dual_resblock", "attention": "self_attention"},
              mid_attention=True)
