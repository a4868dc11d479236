"""The ``unet`` composite: a whole (spatial, spectral or hybrid) UNet from a few parameters.

The layout follows the DDPM/ADM UNet (Ronneberger et al. 2015, "U-Net"; Ho et al. 2020;
Dhariwal & Nichol 2021) but is domain-generic: the encoder and decoder stage blocks are
registry names, and the domain each stage works in is the first domain its block takes.
A spectral encoder (``complex_resblock``) with a spatial decoder (``resblock``) gives a
hybrid UNet; the input, skip connections and decoder output are converted between domains
with the orthonormal adapters of :mod:`blocks.adapters`.

Structure, for L levels of widths ``channels * channel_mult[l]``::

    x -> convert(real -> enc)
      level l = 0..L-1:  blocks_per_level x [stage block (+ attention)], skip after each;
                         then (l < L-1) the encoder domain's downsampler
      middle:            stage block (+ attention) + stage block, in the encoder domain
      convert(enc -> dec)
      level l = L-1..0:  blocks_per_level x [concat(x, convert(skip)) -> stage block
                         (+ attention)]; then (l > 0) the decoder domain's upsampler
      convert(dec -> real) -> GroupNorm - SiLU - conv3x3 (zero init) -> out_channels
      (or, with ``head``, e.g. ``spectral_head``: decoder domain -> head block -> real)

Each half is a *stage description* made of registered block names and their parameters,
not a set of per-role flags (spec_version 2; v1's flags are rewritten by the upgrade chain)::

    encoder: {block: complex_resblock, params: {norm: batch, act: modrelu},
              attention: {block: lowrank_spectral, params: {modes: 2}},
              resample: complex_conv_down}          # default: the domain's own downsampler
    decoder: {block: resblock, attention: self_attention}   # default: the encoder's again
    head:    {block: spectral_head, params: {zero_init: true}}

A bare name is short for ``{block: NAME}``. The encoder's description also covers the
middle; a decoder left out repeats the encoder's, with the upsampler that pairs with its
downsampler. ``attention_levels`` and ``mid_attention`` place the attention a half
declares (asking for attention from a half without one is an error). A fully
frequency-native UNet keeps its output in the spectrum with a ``head`` such as
``spectral_head`` (``dual_head`` for the dual ablation): the decoder output is projected
to the image channels and inverted by the head's own Hermitian projection and ``irfft2``.
Spectral attention blocks exist only for the ``complex`` domain; in ``dual`` stages the
unet runs them between the exact, parameter-free ``from_dual``/``to_dual`` adapters
(``Stage.att_into``/``att_back``), so a dual spec can name the same attention block as its
complex twin and the two models hold the same state dict but for the head.
"""
from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, model_validator
from torch import nn

from blocks.adapters import concat_domain, convert, spec_for
from blocks.core import BlockEntry, BlockParams, TensorSpec, get_block, register_block
from blocks.spatial import group_norm, zero_

# Per stage domain: (downsampler, upsampler) block names. The complex/dual ones halve or
# double the implied spatial size by cropping or zero-padding the spectrum.
RESAMPLE: dict[str, tuple[str, str]] = {
    "real": ("downsample", "upsample"),
    "complex": ("spectral_down", "spectral_up"),
    "dual": ("dual_down", "dual_up"),
}
# The upsampler a decoder that repeats the encoder gets for the encoder's downsampler.
UP_OF: dict[str, str] = {d: u for d, u in RESAMPLE.values()} | {
    "complex_conv_down": "complex_conv_up"}


Params = dict[str, int | float | bool | str]
# spec_version 1 fields (the upgrade chain rewrites them into stage descriptions)
V1_FIELDS = ("attention", "encoder_attention", "decoder_attention", "attention_params",
             "stage_params", "decoder_params", "head_params")


class Part(BlockParams):
    """A registered block and its parameters; a bare name is short for ``{block: NAME}``."""

    block: str = Field(min_length=1, description="registered block name")
    params: Params = Field(default_factory=dict, description="the block's parameters "
                           "(the unet fills in channels, groups, widths it knows)")

    @model_validator(mode="before")
    @classmethod
    def _name_alone(cls, v: Any) -> Any:
        return {"block": v} if isinstance(v, str) else v


class StagePart(Part):
    """One half of the UNet: its stage block, the attention its stages get where the unet
    places attention, and its resampler (the encoder's downsampler or the decoder's
    upsampler; default: the stage domain's own, e.g. spectral pooling for complex)."""

    attention: Part | None = Field(None, description="attention block, e.g. self_attention")
    resample: Part | None = Field(None, description="encoder: downsampler, decoder: "
                                  "upsampler (e.g. complex_conv_down / complex_conv_up)")


class UNetParams(BlockParams):
    channels: int = Field(gt=0, le=4096, description="base width (channels of level 0)")
    channel_mult: list[int] = Field(default_factory=lambda: [1, 2], min_length=1, max_length=8,
                                    description="width multiplier per level")
    blocks_per_level: int = Field(1, ge=1, le=8)
    attention_levels: list[int] = Field(default_factory=list,
                                        description="levels whose stage blocks get attention")
    mid_attention: bool = Field(False, description="attention in the first middle stage")
    encoder: StagePart = Field(default_factory=lambda: StagePart(block="resblock"),
                               description="encoder (and middle) stages")
    decoder: StagePart | None = Field(None, description="decoder stages; default: encoder "
                                      "(then with the domain's upsampler)")
    head: Part | None = Field(None, description="output head taking the decoder domain and "
                              "giving real (spectral_head, dual_head); default: to pixels, "
                              "then GroupNorm - SiLU - conv3x3 (zero init)")
    out_channels: int | None = Field(None, gt=0, le=4096, description="default: input channels")
    groups: int = Field(8, gt=0, le=1024)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    @model_validator(mode="before")
    @classmethod
    def _v1(cls, v: Any) -> Any:
        old = [k for k in V1_FIELDS if isinstance(v, dict) and k in v]
        if old:
            raise ValueError(f"{', '.join(old)}: spec_version 1 field(s); set spec_version: 1 "
                             "to have them upgraded, or describe the stages with encoder: "
                             "{block, params, attention, resample} (see the README)")
        return v

    @model_validator(mode="after")
    def _check(self) -> "UNetParams":
        if any(m <= 0 for m in self.channel_mult):
            raise ValueError(f"channel_mult entries must be > 0, got {self.channel_mult}")
        bad = [a for a in self.attention_levels if not 0 <= a < len(self.channel_mult)]
        if bad:
            raise ValueError(f"attention_levels {bad} out of range for "
                             f"{len(self.channel_mult)} levels (0..{len(self.channel_mult) - 1})")
        where = [w for w, on in (("attention_levels", self.attention_levels),
                                 ("mid_attention", self.mid_attention)) if on]
        if where and self.encoder.attention is None:
            raise ValueError(f"{' and '.join(where)} need encoder.attention (e.g. "
                             "self_attention, radial_band_attention)")
        if self.attention_levels and self.decoder is not None and \
                self.decoder.attention is None:
            raise ValueError("attention_levels need decoder.attention when a decoder is given")
        return self


def _stage_domain(entry: BlockEntry) -> str:
    if not entry.takes:
        raise ValueError(f"block {entry.name!r} takes no input and cannot be a UNet stage")
    d = entry.domain_at(0)
    if d not in RESAMPLE:
        raise ValueError(f"block {entry.name!r} takes {d!r}; a UNet stage must take "
                         f"one of {sorted(RESAMPLE)}")
    if entry.output_domain([d]) != d:
        raise ValueError(f"block {entry.name!r} takes {d!r} but gives "
                         f"{entry.output_domain([d])!r}; a UNet stage must keep its domain")
    return d


def _takes_embed(entry: BlockEntry) -> bool:
    return len(entry.takes) >= 2 and entry.domain_at(1) == "embed"


def _build(entry: BlockEntry, inputs: list[TensorSpec], extra: dict[str, Any] | None = None,
           **candidates: Any) -> nn.Module:
    """Build ``entry`` passing the candidate params its model declares, then ``extra``
    (all of them: an unknown key is the params model's error)."""
    fields = entry.params.model_fields
    kwargs = {k: v for k, v in candidates.items() if k in fields and v is not None}
    kwargs.update(extra or {})
    try:
        mod = entry.builder(entry.params(**kwargs), inputs)
    except Exception as e:  # name the block: the assembler only knows the unet node
        raise ValueError(f"unet: its inner {entry.name!r} block (on {_shapes(inputs)}): "
                         f"{_reason(entry.name, e)}") from e
    # plain attributes (not in the state dict): let UNet.named_blocks report the family
    mod.block_name, mod.block_family = entry.name, entry.family
    return mod


def _shapes(inputs: list[TensorSpec]) -> str:
    return ", ".join(f"{s.domain} {'x'.join(map(str, s.shape))}" for s in inputs)


def _reason(name: str, e: Exception) -> str:
    """One line: a parameter model's errors by field, else the message without the block
    name repeated (``conv: conv: ...``)."""
    from pydantic import ValidationError

    if isinstance(e, ValidationError):
        return "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg'][:1].lower()}"
                         f"{err['msg'][1:]}" for err in e.errors()[:3])
    text = " ".join(str(e).split())
    return text[len(name) + 2:] if text.startswith(f"{name}: ") else text


class Stage(nn.Module):
    """A stage block, optionally fed the embedding, optionally followed by attention.

    ``att_into``/``att_back`` run the attention in another domain (complex attention in
    dual stages); they hold no parameters, so the state dict matches the complex twin's.
    """

    def __init__(self, *, block: nn.Module, attention: nn.Module | None, use_emb: bool,
                 attention_emb: bool = False, att_into: nn.Module | None = None,
                 att_back: nn.Module | None = None) -> None:
        super().__init__()
        self.block = block
        self.attention = attention
        self.use_emb = use_emb
        self.attention_emb = attention_emb
        self.att_into = att_into or nn.Identity()
        self.att_back = att_back or nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = self.block(x, emb) if self.use_emb else self.block(x)
        if self.attention is None:
            return x
        a = self.att_into(x)
        a = self.attention(a, emb) if self.attention_emb else self.attention(a)
        return self.att_back(a)


class UNet(nn.Module):
    """Encoder/decoder with skip connections; see the module docstring for the layout.

    Args:
        enc_domain: domain of the encoder and middle stages.
        dec_domain: domain of the decoder stages.
        stem: converter real -> enc_domain.
        down: encoder stages, level by level.
        downsamplers: one per level but the last.
        mid: the middle stages.
        bridge: converter enc_domain -> dec_domain at the bottom.
        skip_converters: one per skip, in push order, enc_domain -> dec_domain.
        up: decoder stages, in the order they run.
        upsamplers: one per level but level 0, in the order they run.
        to_real: converter dec_domain -> real at full size (identity with a head block).
        head: GroupNorm - SiLU - conv to the output channels, or a head block taking
            dec_domain (e.g. spectral_head).
        blocks_per_level: stages per level.
    """

    def __init__(self, *, enc_domain: str, dec_domain: str, stem: nn.Module,
                 down: nn.ModuleList, downsamplers: nn.ModuleList, mid: nn.ModuleList,
                 bridge: nn.Module, skip_converters: nn.ModuleList, up: nn.ModuleList,
                 upsamplers: nn.ModuleList, to_real: nn.Module, head: nn.Module,
                 blocks_per_level: int) -> None:
        super().__init__()
        self.enc_domain, self.dec_domain = enc_domain, dec_domain
        self.stem, self.down, self.downsamplers = stem, down, downsamplers
        self.mid, self.bridge, self.skip_converters = mid, bridge, skip_converters
        self.up, self.upsamplers, self.to_real, self.head = up, upsamplers, to_real, head
        self.blocks_per_level = blocks_per_level

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        n = self.blocks_per_level
        h = self.stem(x)  # (B, C_in, H, W) real -> encoder domain
        skips = []
        for i, stage in enumerate(self.down):
            h = stage(h, emb)
            skips.append(self.skip_converters[i](h))  # decoder domain
            if i % n == n - 1 and i // n < len(self.downsamplers):
                h = self.downsamplers[i // n](h)
        for stage in self.mid:
            h = stage(h, emb)
        h = self.bridge(h)  # encoder -> decoder domain
        for i, stage in enumerate(self.up):
            h = stage(concat_domain(self.dec_domain, [h, skips.pop()]), emb)
            if i % n == n - 1 and i // n < len(self.upsamplers):
                h = self.upsamplers[i // n](h)
        return self.head(self.to_real(h))  # (B, C_out, H, W) real

    def named_blocks(self) -> list[tuple[str, nn.Module, str]]:
        """(stage id, module, block family) of every registry block inside, in run order.

        Ids follow :func:`archspec.graph.unet_stages` (``enc0.1``, ``down0``, ``mid1``,
        ``dec1.0``, ``up1``, ``head``); a stage's attention block gets ``.att``. Stability
        monitoring hooks the spectral ones.
        """
        n, levels = self.blocks_per_level, len(self.downsamplers) + 1
        ids = [f"enc{i // n}.{i % n}" for i in range(len(self.down))]
        ids += [f"mid{i}" for i in range(len(self.mid))]
        ids += [f"dec{levels - 1 - i // n}.{i % n}" for i in range(len(self.up))]
        out = []
        for sid, stage in zip(ids, [*self.down, *self.mid, *self.up]):
            out.append((sid, stage.block, getattr(stage.block, "block_family", "")))
            if stage.attention is not None:
                out.append((f"{sid}.att", stage.attention,
                            getattr(stage.attention, "block_family", "")))
        for lvl, m in enumerate(self.downsamplers):
            out.append((f"down{lvl}", m, getattr(m, "block_family", "")))
        for j, m in enumerate(self.upsamplers):
            out.append((f"up{levels - 1 - j}", m, getattr(m, "block_family", "")))
        out.append(("head", self.head, getattr(self.head, "block_family", "")))
        return out


def _attention(part: Part | None, domain: str, where: str) -> BlockEntry | None:
    """The attention entry for stages in ``domain``; complex and dual interchange exactly."""
    if part is None:
        return None
    entry = get_block(part.block)
    d = _stage_domain(entry)
    if d != domain and {d, domain} != {"complex", "dual"}:
        off = "mid_attention: false" if where == "encoder" else "attention_levels: []"
        raise ValueError(f"unet: {where} attention {part.block!r} takes {d!r} but the {where} "
                         f"stages work in {domain!r}; set {where}.attention to a {domain} "
                         f"block, or {off}")
    return entry


def _head(p: UNetParams, domain: str, c: int, c_out: int, size: tuple[int, int]
          ) -> tuple[nn.Module, nn.Module]:
    """(to_real, head): the default pixel-space head, or the ``head`` block on ``domain``."""
    if p.head is None:
        return convert(domain, "real", size=size), nn.Sequential(
            group_norm(c, p.groups), nn.SiLU(), zero_(nn.Conv2d(c, c_out, 3, padding=1)))
    entry = get_block(p.head.block)
    takes = entry.domain_at(0) if entry.takes else None
    if takes != domain or entry.output_domain([domain]) != "real":
        raise ValueError(f"unet: head {p.head.block!r} must take the decoder domain {domain!r} "
                         f"and give 'real', but takes {takes!r} and gives "
                         f"{entry.output_domain([takes or domain])!r}")
    head = _build(entry, [spec_for(domain, c, size)], p.head.params, out_channels=c_out,
                  size=size[1], groups=p.groups)
    return nn.Identity(), head


def _decoder(p: UNetParams) -> StagePart:
    """The decoder's description: as given, else the encoder's with the upsampler that
    pairs with the encoder's downsampler."""
    if p.decoder is not None:
        return p.decoder
    down = p.encoder.resample
    if down is None:
        return p.encoder
    if down.block not in UP_OF:
        raise ValueError(f"unet: no known upsampler pairs with encoder.resample "
                         f"{down.block!r}; give the decoder (with its resample) explicitly")
    return p.encoder.model_copy(update={"resample": Part(block=UP_OF[down.block],
                                                          params=down.params)})


def _resampler(part: Part | None, domain: str, which: int, c: int,
               size: tuple[int, int]) -> nn.Module:
    """The stage domain's down- (0) or upsampler (1): ``part``, or the domain's default."""
    part = part or Part(block=RESAMPLE[domain][which])
    entry = get_block(part.block)
    role = ("encoder", "downsampler") if which == 0 else ("decoder", "upsampler")
    if not entry.takes or entry.domain_at(0) != domain or \
            entry.output_domain([domain]) != domain:
        raise ValueError(f"unet: {role[0]}.resample {part.block!r} must take and give the "
                         f"{role[0]} domain {domain!r}")
    return _build(entry, [spec_for(domain, c, size)], part.params)


def build_unet(p: UNetParams, x: TensorSpec, emb: TensorSpec) -> UNet:
    """Assemble a :class:`UNet` for input ``x`` (C, H, W) and embedding ``emb`` (D,)."""
    if len(x.shape) != 3:
        raise ValueError(f"unet expects a (C, H, W) image, got shape {x.shape}")
    c_in, height, width = x.shape
    levels = len(p.channel_mult)
    f = 2 ** (levels - 1)
    if height % f or width % f:
        raise ValueError(f"unet: image size {height}x{width} is not divisible by 2**(levels-1)"
                         f" = {f} for {levels} levels")
    enc, dec = p.encoder, _decoder(p)
    enc_e, dec_e = get_block(enc.block), get_block(dec.block)
    enc_d, dec_d = _stage_domain(enc_e), _stage_domain(dec_e)
    for d in (enc_d, dec_d):
        if d != "real" and (height != width):
            raise ValueError(f"unet: {d} stages need a square image, got {height}x{width}")
    att_lvls = set(p.attention_levels)
    need_att = bool(att_lvls) or p.mid_attention
    enc_a = _attention(enc.attention, enc_d, "encoder") if need_att else None
    dec_a = _attention(dec.attention, dec_d, "decoder") if att_lvls else None

    common = {"groups": p.groups, "dropout": p.dropout}

    def stage(half: StagePart, entry: BlockEntry, att: BlockEntry | None, domain: str,
              c_in_: int, c_out: int, size: tuple[int, int], with_att: bool) -> Stage:
        use_emb = _takes_embed(entry)
        inputs = [spec_for(domain, c_in_, size)] + ([emb] if use_emb else [])
        block = _build(entry, inputs, half.params, channels=c_out, width=size[1], **common)
        if not (with_att and att is not None):
            return Stage(block=block, attention=None, use_emb=use_emb)
        a_emb, a_dom = _takes_embed(att), att.domain_at(0)
        a_in = [spec_for(a_dom, c_out, size)] + ([emb] if a_emb else [])
        a = _build(att, a_in, half.attention.params, channels=c_out, groups=p.groups,
                   width=size[1])
        return Stage(block=block, attention=a, use_emb=use_emb, attention_emb=a_emb,
                     att_into=convert(domain, a_dom, size=size),
                     att_back=convert(a_dom, domain, size=size))

    widths = [p.channels * m for m in p.channel_mult]
    sizes = [(height // 2 ** lvl, width // 2 ** lvl) for lvl in range(levels)]
    down, downsamplers, skip_conv, skip_ch = nn.ModuleList(), nn.ModuleList(), nn.ModuleList(), []
    c = c_in
    for lvl in range(levels):
        for _ in range(p.blocks_per_level):
            down.append(stage(enc, enc_e, enc_a, enc_d, c, widths[lvl], sizes[lvl],
                              lvl in att_lvls))
            c = widths[lvl]
            skip_conv.append(convert(enc_d, dec_d, size=sizes[lvl]))
            skip_ch.append(c)
        if lvl < levels - 1:
            downsamplers.append(_resampler(enc.resample, enc_d, 0, c, sizes[lvl]))

    bottom = sizes[-1]
    mid = nn.ModuleList([stage(enc, enc_e, enc_a, enc_d, c, c, bottom, p.mid_attention),
                         stage(enc, enc_e, enc_a, enc_d, c, c, bottom, False)])

    up, upsamplers = nn.ModuleList(), nn.ModuleList()
    for lvl in reversed(range(levels)):
        for _ in range(p.blocks_per_level):
            c_cat = c + skip_ch.pop()
            up.append(stage(dec, dec_e, dec_a, dec_d, c_cat, widths[lvl], sizes[lvl],
                            lvl in att_lvls))
            c = widths[lvl]
        if lvl > 0:
            upsamplers.append(_resampler(dec.resample, dec_d, 1, c, sizes[lvl]))

    to_real, head = _head(p, dec_d, c, p.out_channels or c_in, sizes[0])
    return UNet(enc_domain=enc_d, dec_domain=dec_d, stem=convert("real", enc_d, size=sizes[0]),
                down=down, downsamplers=downsamplers, mid=mid,
                bridge=convert(enc_d, dec_d, size=bottom), skip_converters=skip_conv, up=up,
                upsamplers=upsamplers, to_real=to_real, head=head,
                blocks_per_level=p.blocks_per_level)


@register_block("unet", params=UNetParams, takes=("real", "embed"), gives="real",
                family="composite",
                example=({"channels": 8, "channel_mult": [1, 2], "attention_levels": [1],
                          "groups": 4,
                          "encoder": {"block": "resblock", "attention": "self_attention"}},
                         [TensorSpec("real", (1, 8, 8)), TensorSpec("embed", (16,))]))
def _unet(p: UNetParams, inputs: list[TensorSpec]) -> nn.Module:
    """UNet composite (DDPM/ADM layout) with registry-chosen, any-domain stage blocks."""
    if len(inputs) != 2 or len(inputs[1].shape) != 1:
        raise ValueError(f"unet takes an image and a (D,) embedding, got {inputs}")
    return build_unet(p, inputs[0], inputs[1])



__all__ = ["RESAMPLE", "Part", "Stage", "StagePart", "UNet", "UNetParams", "build_unet"]
