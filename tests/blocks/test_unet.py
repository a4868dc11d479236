"""The ``unet`` composite: shapes, gradients, parameter counts, attention placement, domains."""
from __future__ import annotations


import pytest
import torch
from pydantic import ValidationError
from torch import nn

import blocks
from blocks.adapters import IRFFT2, RFFT2
from blocks.core import TensorSpec
from blocks.spatial import SelfAttention
from blocks.unet import UNet

EXAMPLES = {"unet": blocks.get("unet").example_config()}

EMB = TensorSpec("embed", (16,))


def _unet(shape: tuple[int, int, int], **params) -> UNet:
    params.setdefault("groups", 4)
    params.setdefault("encoder", {"block": "resblock", "attention": "self_attention"})
    return blocks.build("unet", params, [TensorSpec("real", shape), EMB])


def _inputs(shape: tuple[int, ...], batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, *shape, generator=g), torch.randn(batch, 16, generator=g)


def _randomize(mod: nn.Module) -> None:
    """Random values for every parameter, so zero-initialised layers pass gradients on."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in mod.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))


def _n_params(mod: nn.Module) -> int:
    return sum(p.numel() for p in mod.parameters())


def _assert_all_grads(mod: nn.Module, nonzero: bool) -> None:
    for name, p in mod.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        if nonzero:
            assert p.grad.abs().sum() > 0, name


def test_two_level_real_unet_on_8x8() -> None:
    net = _unet((1, 8, 8), channels=8, channel_mult=[1, 2], attention_levels=[1])
    x, e = _inputs((1, 8, 8))
    out = net(x, e)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.all(out == 0)  # zero-initialised output conv (ADM)
    _randomize(net)
    out = net(x, e)
    assert torch.isfinite(out).all() and out.abs().sum() > 0
    out.pow(2).sum().backward()
    _assert_all_grads(net, nonzero=True)


def test_three_level_real_unet_on_32x32() -> None:
    net = _unet((3, 32, 32), channels=8, channel_mult=[1, 2, 2], blocks_per_level=2,
                attention_levels=[2], dropout=0.1)
    x, e = _inputs((3, 32, 32))
    out = net(x, e)
    assert out.shape == x.shape
    out.sum().backward()
    _assert_all_grads(net, nonzero=False)
    assert len(net.downsamplers) == 2 and len(net.upsamplers) == 2
    assert len(net.down) == len(net.up) == 6


def test_meta_device_matches_cpu() -> None:
    params = {"channels": 8, "channel_mult": [1, 2, 2], "attention_levels": [1], "groups": 4,
              "out_channels": 2, "encoder": {"block": "resblock", "attention": "self_attention"}}
    specs = [TensorSpec("real", (3, 16, 16)), EMB]
    with torch.device("meta"):
        meta = blocks.build("unet", params, specs)(torch.empty(2, 3, 16, 16), torch.empty(2, 16))
    cpu = blocks.build("unet", params, specs)(*_inputs((3, 16, 16)))
    assert meta.shape == cpu.shape == (2, 2, 16, 16)


# The layout documented in blocks/unet.py, counted by hand from the layer formulas.
def _rb(cin: int, cout: int, emb: int = 16) -> int:  # resblock, FiLM conditioning
    n = 2 * cin + 9 * cin * cout + cout + emb * 2 * cout + 2 * cout + 2 * cout \
        + 9 * cout * cout + cout
    return n + (cin * cout + cout if cin != cout else 0)


def _att(c: int) -> int:  # GroupNorm + qkv 1x1 + output 1x1
    return 2 * c + 3 * c * c + 3 * c + c * c + c


def _conv3(cin: int, cout: int) -> int:
    return 9 * cin * cout + cout


def _expected_two_level(cin: int, c: int) -> int:
    c2 = 2 * c
    encoder = _rb(cin, c) + _conv3(c, c) + _rb(c, c2) + _att(c2)
    middle = _rb(c2, c2) + _att(c2) + _rb(c2, c2)
    decoder = _rb(c2 + c2, c2) + _att(c2) + _conv3(c2, c2) + _rb(c2 + c, c)
    head = 2 * c + _conv3(c, cin)
    return encoder + middle + decoder + head


@pytest.mark.parametrize("channels", [8, 16, 32])
def test_param_count_matches_layout(channels: int) -> None:
    net = _unet((3, 8, 8), channels=channels, channel_mult=[1, 2], attention_levels=[1],
                mid_attention=True)
    assert _n_params(net) == _expected_two_level(3, channels)


def test_param_count_grows_quadratically_with_width() -> None:
    counts = [_n_params(_unet((1, 8, 8), channels=c, channel_mult=[1, 2])) for c in (8, 16, 32)]
    assert counts[0] < counts[1] < counts[2]
    # Convolutions dominate, so doubling the width approaches 4x from below.
    assert 3.0 < counts[1] / counts[0] < 4.0 and 3.5 < counts[2] / counts[1] < 4.0


@pytest.mark.parametrize("levels,bpl,mid,expected", [
    ([], 1, False, 0), ([], 1, True, 1), ([1], 1, True, 3), ([0, 1], 2, True, 9),
    ([0, 2], 1, False, 4)])
def test_attention_where_asked(levels: list[int], bpl: int, mid: bool, expected: int) -> None:
    net = _unet((1, 8, 8), channels=8, channel_mult=[1, 2, 2], blocks_per_level=bpl,
                attention_levels=levels, mid_attention=mid)
    assert sum(isinstance(m, SelfAttention) for m in net.modules()) == expected
    for i, stage in enumerate(net.down):
        assert (stage.attention is not None) == (i // bpl in levels), i
    for i, stage in enumerate(net.up):
        assert (stage.attention is not None) == (2 - i // bpl in levels), i
    assert (net.mid[0].attention is not None) == mid and net.mid[1].attention is None


def test_stage_widths_follow_channel_mult() -> None:
    net = _unet((1, 8, 8), channels=4, channel_mult=[1, 3, 2], out_channels=5)
    widths = [s.block.conv1.out_channels for s in net.down]
    assert widths == [4, 12, 8]
    assert [s.block.conv1.in_channels for s in net.up] == [8 + 8, 8 + 12, 12 + 4]
    assert net.head[-1].out_channels == 5


def test_same_domain_converters_are_identity() -> None:
    net = _unet((1, 8, 8), channels=8, encoder="resblock", decoder="resblock")
    convs = [net.stem, net.bridge, net.to_real, *net.skip_converters]
    assert all(isinstance(m, nn.Identity) for m in convs)
    assert net.enc_domain == net.dec_domain == "real"


def test_stage_block_without_embedding() -> None:
    # conv takes no embedding and declares neither groups nor dropout: only channels is passed.
    net = _unet((1, 8, 8), channels=4, encoder="conv", mid_attention=False, groups=2)
    assert not any(s.use_emb for s in [*net.down, *net.mid, *net.up])
    x, e = _inputs((1, 8, 8))
    assert net(x, e).shape == x.shape


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"not divisible by 2\*\*\(levels-1\) = 4"):
        _unet((1, 10, 10), channels=8, channel_mult=[1, 2, 2])
    with pytest.raises(ValidationError, match=r"attention_levels \[2\] out of range"):
        _unet((1, 8, 8), channels=8, channel_mult=[1, 2], attention_levels=[2])
    with pytest.raises(ValidationError, match="extra"):
        _unet((1, 8, 8), channels=8, levels=2)
    with pytest.raises(KeyError, match="did you mean 'resblock'"):
        _unet((1, 8, 8), channels=8, encoder="resblok")
    with pytest.raises(ValueError, match="a UNet stage must keep its domain"):
        _unet((1, 8, 8), channels=8, encoder="rfft2")
    with pytest.raises(ValueError, match="a UNet stage must take one of"):
        _unet((1, 8, 8), channels=8, encoder="time_embedding")
    with pytest.raises(ValueError, match="not divisible by heads"):
        _unet((1, 8, 8), channels=6, channel_mult=[1], groups=2, mid_attention=True)
    with pytest.raises(ValidationError, match="attention_levels and mid_attention need "
                                              "encoder.attention"):
        _unet((1, 8, 8), channels=8, encoder="resblock", attention_levels=[1],
              mid_attention=True)
    with pytest.raises(ValidationError, match="attention_levels need decoder.attention"):
        _unet((1, 8, 8), channels=8, attention_levels=[1], decoder="resblock")
    with pytest.raises(ValidationError, match="stage_params: spec_version 1 field"):
        _unet((1, 8, 8), channels=8, stage_params={"norm": "batch"})


def test_example_builds() -> None:
    params, specs = EXAMPLES["unet"]
    assert blocks.get("unet").takes == ("real", "embed")
    out = blocks.build("unet", params, specs)(torch.randn(2, *specs[0].shape),
                                              torch.randn(2, *specs[1].shape))
    assert out.shape == (2, *specs[0].shape)


# --------------------------------------------------------------------------- spectral stages


@pytest.mark.parametrize("enc,dec,enc_d,dec_d", [
    ("complex_resblock", "resblock", "complex", "real"),
    ("resblock", "complex_resblock", "real", "complex"),
    ("dual_resblock", "dual_resblock", "dual", "dual"),
    ("complex_resblock", "dual_resblock", "complex", "dual"),
])
def test_spectral_and_hybrid_unets(enc: str, dec: str, enc_d: str, dec_d: str) -> None:
    params = {"channels": 4, "channel_mult": [1, 2], "encoder": enc, "decoder": dec,
              "mid_attention": False, "groups": 2}
    specs = [TensorSpec("real", (2, 8, 8)), EMB]
    net = blocks.build("unet", params, specs)
    assert (net.enc_domain, net.dec_domain) == (enc_d, dec_d)
    x, e = _inputs((2, 8, 8))
    out = net(x, e)
    assert out.shape == x.shape and out.dtype == torch.float32
    out.sum().backward()
    _assert_all_grads(net, nonzero=False)
    with torch.device("meta"):
        meta = blocks.build("unet", params, specs)(torch.empty(2, 2, 8, 8), torch.empty(2, 16))
    assert meta.shape == out.shape


def test_hybrid_converters() -> None:
    net = _unet((1, 8, 8), channels=4, encoder="complex_resblock", decoder="resblock",
                mid_attention=False, groups=2)
    assert isinstance(net.stem, RFFT2) and isinstance(net.bridge, IRFFT2)
    assert all(isinstance(m, IRFFT2) for m in net.skip_converters)
    assert isinstance(net.to_real, nn.Identity)


def test_real_attention_in_complex_stage_is_an_error() -> None:
    with pytest.raises(ValueError, match="encoder attention 'self_attention' takes 'real'"):
        _unet((1, 8, 8), channels=4, decoder="resblock", mid_attention=True,
              encoder={"block": "complex_resblock", "attention": "self_attention"})


def _resblocks(net: UNet, part: str) -> list[nn.Module]:
    return [s.block for s in getattr(net, part)]


def test_encoder_params_reach_every_stage_block() -> None:
    from blocks.complex import Cardioid, CReLU
    from blocks.complex_norm import ComplexBatchNorm2d, ComplexGroupNorm

    plain = _unet((1, 8, 8), channels=8, encoder="complex_resblock", attention_levels=[],
                  mid_attention=False)
    for b in _resblocks(plain, "down") + _resblocks(plain, "mid") + _resblocks(plain, "up"):
        assert isinstance(b.norm1, ComplexGroupNorm) and isinstance(b.act2, CReLU)
    net = _unet((1, 8, 8), channels=8, attention_levels=[], mid_attention=False,
                encoder={"block": "complex_resblock",
                         "params": {"norm": "batch", "act": "cardioid"}})
    blocks_ = _resblocks(net, "down") + _resblocks(net, "mid") + _resblocks(net, "up")
    assert len(blocks_) == 6
    for b in blocks_:
        assert isinstance(b.norm1, ComplexBatchNorm2d) and isinstance(b.norm2, ComplexBatchNorm2d)
        assert isinstance(b.act1, Cardioid) and isinstance(b.act2, Cardioid)
    x, e = _inputs((1, 8, 8))
    assert torch.isfinite(net(x, e)).all()


def test_a_decoder_description_has_its_own_params() -> None:
    from blocks.complex_norm import ComplexBatchNorm2d
    from blocks.spatial import ResBlock

    net = _unet((1, 8, 8), channels=8, attention_levels=[], mid_attention=False,
                encoder={"block": "complex_resblock", "params": {"norm": "batch"}},
                decoder={"block": "resblock", "params": {"scale_shift": False}})
    assert all(isinstance(b.norm1, ComplexBatchNorm2d) for b in _resblocks(net, "down"))
    assert all(isinstance(b, ResBlock) and not b.scale_shift for b in _resblocks(net, "up"))
    # the spatial decoder rejects the complex block's option, naming the inner block
    with pytest.raises(ValueError, match="inner 'resblock' block.*norm: extra inputs"):
        _unet((1, 8, 8), channels=8, encoder="complex_resblock", attention_levels=[],
              mid_attention=False, decoder={"block": "resblock", "params": {"norm": "batch"}})


def test_bad_stage_param_is_a_located_spec_error() -> None:
    from archspec import SpecError, load_spec

    with pytest.raises(SpecError) as info:
        load_spec("examples/specs/spectral_unet_8.yaml",
                  ["model.nodes.eps.encoder.params={nrm: batch}"])
    line = str(info.value)
    assert "model.nodes.eps:" in line and "complex_resblock" in line and "nrm" in line
    with pytest.raises(SpecError, match="model.nodes.eps.*act"):
        load_spec("examples/specs/spectral_unet_8.yaml",
                  ["model.nodes.eps.encoder.params={act: relu}"])


# --------------------------------------------------------------------------- resampling
def test_encoder_resample_gets_its_paired_upsampler_in_a_repeated_decoder() -> None:
    from blocks.resample import ComplexConvDown, ComplexConvUp
    from blocks.spectral_pool import SpectralDown, SpectralUp

    pooled = _unet((1, 8, 8), channels=4, encoder="complex_resblock", groups=2)
    assert isinstance(pooled.downsamplers[0], SpectralDown)
    assert isinstance(pooled.upsamplers[0], SpectralUp)
    net = _unet((1, 8, 8), channels=4, groups=2,
                encoder={"block": "complex_resblock", "resample": "complex_conv_down"})
    assert isinstance(net.downsamplers[0], ComplexConvDown)
    assert isinstance(net.upsamplers[0], ComplexConvUp)
    assert _n_params(net) == _n_params(pooled) + 2 * 4 * 4 * 9 + 2 * 4 + 2 * 8 * 8 * 16 + 2 * 8
    x, e = _inputs((1, 8, 8))
    _randomize(net)
    out = net(x, e)
    assert out.shape == x.shape
    out.pow(2).sum().backward()
    _assert_all_grads(net, nonzero=True)


def test_resample_errors() -> None:
    with pytest.raises(ValueError, match="encoder.resample 'downsample' must take and give "
                                         "the encoder domain 'complex'"):
        _unet((1, 8, 8), channels=4, groups=2,
              encoder={"block": "complex_resblock", "resample": "downsample"})
    with pytest.raises(ValueError, match="no known upsampler pairs with encoder.resample "
                                         "'complex_conv'"):
        _unet((1, 8, 8), channels=4, groups=2,
              encoder={"block": "complex_resblock", "resample": "complex_conv"})
    # explicit on both sides: any matching pair
    net = _unet((1, 8, 8), channels=4, groups=2,
                encoder={"block": "complex_resblock", "resample": "complex_conv_down"},
                decoder={"block": "complex_resblock", "resample": "spectral_up"})
    from blocks.spectral_pool import SpectralUp

    assert isinstance(net.upsamplers[0], SpectralUp)


def test_stages_describe_the_unet_and_own_every_weight_once() -> None:
    """UNet.stages, the public description the graph view reads: run order, ids, the
    blocks and their params as built, and every parameter in exactly one stage."""
    net = _unet((1, 8, 8), channels=8, channel_mult=[1, 2], blocks_per_level=2,
                attention_levels=[1], mid_attention=True)
    stages = {s.id: s for s in net.stages()}
    assert list(stages) == ["stem", "enc0.0", "enc0.1", "down0", "enc1.0", "enc1.1", "mid0",
                            "mid1", "dec1.0", "dec1.1", "up1", "dec0.0", "dec0.1", "head"]
    owned = [name for slot in net.layout for path in slot.paths
             for name, _ in net.get_submodule(path).named_parameters(prefix=path)]
    assert sorted(owned) == sorted(n for n, _ in net.named_parameters())
    assert sum(s.n_params for s in stages.values()) == _n_params(net)
    assert stages["enc0.0"].n_params == _n_params(net.down[0])
    assert stages["head"].n_params == _n_params(net.head) > 0
    s = stages["enc1.1"]
    assert (s.block, s.attention, s.label) == ("resblock", "self_attention",
                                               "resblock + self_attention")
    assert s.params["channels"] == 16 and s.params["groups"] == 4  # what the unet filled in
    assert s.attention_params == {"heads": 4, "groups": 4}
    assert (s.domain, s.shape, s.depth) == ("real", (16, 4, 4), 1)
    assert stages["mid1"].attention is None and stages["mid0"].attention == "self_attention"
    assert stages["up1"].shape == (16, 8, 8) and stages["down0"].block == "downsample"
    assert net.skips == (("enc1.1", "dec1.0"), ("enc1.0", "dec1.1"),
                         ("enc0.1", "dec0.0"), ("enc0.0", "dec0.1"))
    ids = {sid for sid, _, _ in net.named_blocks()}
    assert ids == {i for i in stages if i != "stem"} | {"enc1.0.att", "enc1.1.att",
                                                      "mid0.att", "dec1.0.att", "dec1.1.att"}


def test_describe_unet_builds_nothing_real() -> None:
    """The description is built on the meta device: same stages and counts as a real
    build, and the global random stream is left where it was."""
    from blocks.unet import describe_unet

    params = {"channels": 4, "groups": 2, "channel_mult": [1, 2], "attention_levels": [1],
              "encoder": {"block": "complex_resblock", "attention": "radial_band_attention"},
              "head": "spectral_head"}
    net = blocks.build("unet", params, [TensorSpec("real", (1, 8, 8)), EMB])
    torch.manual_seed(3)
    before = torch.rand(1)
    torch.manual_seed(3)
    stages, skips = describe_unet(blocks.get("unet").params(**params),
                                  TensorSpec("real", (1, 8, 8)), EMB)
    assert torch.equal(torch.rand(1), before)
    assert stages == net.stages() and skips == list(net.skips)
    assert {s.domain for s in stages if s.id not in ("stem", "head")} == {"complex"}
