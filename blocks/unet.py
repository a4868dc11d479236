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

A built unet describes itself: :meth:`UNet.stages` lists every stage in run order (id,
block and its parameters, domain, shape, parameter count) and ``UNet.skips`` its skip
connections; :func:`describe_unet` gives the same without allocating weights. The graph
view and the stability monitor read these, never the builder's internals. Stage
parameters are canonical (:mod:`blocks.unet_params`): a default written out is left out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from blocks.adapters import concat_domain, convert, spec_for
from blocks.core import BlockEntry, TensorSpec, get_block, register_block
from blocks.unet_params import FILLS, Part, StagePart, UNetParams
from blocks.unet_parts import (RESAMPLE, attention_entry, build_head, build_part,
                               build_resampler, decoder_of, stage_domain, takes_embed)

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


@dataclass(frozen=True)
class Slot:
    """Where a stage sits in the U, recorded while the unet is built.

    Attributes:
        id: ``stem``, ``enc<l>.<i>``, ``down<l>``, ``mid<i>``, ``dec<l>.<i>``, ``up<l>``,
            ``head``.
        paths: the submodules whose parameters are the stage's (the stage first, then the
            parameter-free converters that run with it), e.g. ``("down.0",
            "skip_converters.0")``: every submodule of the unet is in exactly one slot.
        domain: domain of the stage's output (``real`` for the head).
        shape: (channels, H, W) of that output on the implied image grid.
        depth: the level (resamplers half-way between two), so drawings can make the U.
        what: how to call a stage that is no registry block (the stem, the default head).
    """

    id: str
    paths: tuple[str, ...]
    domain: str
    shape: tuple[int, ...]
    depth: float
    what: str = ""


@dataclass(frozen=True)
class StageInfo:
    """One stage of a built unet (:meth:`UNet.stages`); ``id``, ``domain``, ``shape`` and
    ``depth`` as in :class:`Slot`.

    Attributes:
        block: registry name of the stage's block ('' for the stem and the default head).
        params: that block's validated parameters, what the unet filled in included.
        attention: registry name of the stage's attention block, or None.
        attention_params: its validated parameters (empty without attention).
        n_params: trainable parameters of the stage (its attention and converters
            included); the stages' counts add up to the unet's.
        label: ``block + attention``, or what the stage is (``to complex``).
    """

    id: str
    block: str
    params: dict[str, Any]
    attention: str | None
    attention_params: dict[str, Any]
    domain: str
    shape: tuple[int, ...]
    depth: float
    n_params: int
    label: str


def _family(m: nn.Module) -> str:
    return getattr(m, "block_family", "")


def _params_of(m: nn.Module | None) -> dict[str, Any]:
    p = getattr(m, "block_params", None)
    return p.model_dump(mode="json") if p is not None else {}


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
        layout: where each stage sits, in run order (:class:`Slot`).
        skips: (encoder stage id, decoder stage id) of each skip, in the order the decoder
            takes them.
    """

    def __init__(self, *, enc_domain: str, dec_domain: str, stem: nn.Module,
                 down: nn.ModuleList, downsamplers: nn.ModuleList, mid: nn.ModuleList,
                 bridge: nn.Module, skip_converters: nn.ModuleList, up: nn.ModuleList,
                 upsamplers: nn.ModuleList, to_real: nn.Module, head: nn.Module,
                 blocks_per_level: int, layout: tuple[Slot, ...] = (),
                 skips: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__()
        self.enc_domain, self.dec_domain = enc_domain, dec_domain
        self.stem, self.down, self.downsamplers = stem, down, downsamplers
        self.mid, self.bridge, self.skip_converters = mid, bridge, skip_converters
        self.up, self.upsamplers, self.to_real, self.head = up, upsamplers, to_real, head
        self.blocks_per_level = blocks_per_level
        self.layout, self.skips = tuple(layout), tuple(skips)

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

    def stages(self) -> list[StageInfo]:
        """Every stage in run order, with its block, parameters, domain, shape and
        parameter count: the public description the graph view and tools read."""
        return [self._info(slot) for slot in self.layout]

    def _info(self, slot: Slot) -> StageInfo:
        mods = [self.get_submodule(path) for path in slot.paths]
        block, att = (mods[0].block, mods[0].attention) if isinstance(mods[0], Stage) \
            else (mods[0], None)
        name = getattr(block, "block_name", "")
        att_name = getattr(att, "block_name", None) if att is not None else None
        label = (name + (f" + {att_name}" if att_name else "")) if name else slot.what
        return StageInfo(id=slot.id, block=name, params=_params_of(block), attention=att_name,
                         attention_params=_params_of(att), domain=slot.domain,
                         shape=slot.shape, depth=slot.depth,
                         n_params=sum(p.numel() for m in mods for p in m.parameters()),
                         label=label)

    def named_blocks(self) -> list[tuple[str, nn.Module, str]]:
        """(stage id, module, block family) of every registry block inside: the stage
        blocks in run order (a stage's attention block gets ``<id>.att``), then the
        down- and upsamplers, then the head. Ids as in :meth:`stages`. Stability
        monitoring hooks the spectral ones."""
        stages, others = [], []
        for slot in self.layout[1:]:  # the stem is a converter, no block
            m = self.get_submodule(slot.paths[0])
            if not isinstance(m, Stage):
                others.append((slot.id, m, _family(m)))
                continue
            stages.append((slot.id, m.block, _family(m.block)))
            if m.attention is not None:
                stages.append((f"{slot.id}.att", m.attention, _family(m.attention)))
        head = [o for o in others if o[0] == "head"]
        return stages + [o for o in others if o[0] != "head"] + head


class _Builder:
    """Builds a :class:`UNet` half by half, recording each stage's :class:`Slot`.

    Modules are made in a fixed order (encoder level by level, middle, decoder, head),
    which fixes the draws from the random stream and so the initial weights.
    """

    def __init__(self, p: UNetParams, x: TensorSpec, emb: TensorSpec) -> None:
        if len(x.shape) != 3:
            raise ValueError(f"unet expects a (C, H, W) image, got shape {x.shape}")
        c_in, height, width = x.shape
        levels = len(p.channel_mult)
        f = 2 ** (levels - 1)
        if height % f or width % f:
            raise ValueError(f"unet: image size {height}x{width} is not divisible by "
                             f"2**(levels-1) = {f} for {levels} levels")
        self.p, self.emb, self.c_in = p, emb, c_in
        self.enc, self.dec = p.encoder, decoder_of(p)
        self.enc_e, self.dec_e = get_block(self.enc.block), get_block(self.dec.block)
        self.enc_d, self.dec_d = stage_domain(self.enc_e), stage_domain(self.dec_e)
        for d in (self.enc_d, self.dec_d):
            if d != "real" and (height != width):
                raise ValueError(f"unet: {d} stages need a square image, got {height}x{width}")
        self.att_lvls = set(p.attention_levels)
        need_att = bool(self.att_lvls) or p.mid_attention
        self.enc_a = attention_entry(self.enc.attention, self.enc_d, "encoder") if need_att \
            else None
        self.dec_a = attention_entry(self.dec.attention, self.dec_d, "decoder") if self.att_lvls \
            else None
        self.widths = [p.channels * m for m in p.channel_mult]
        self.sizes = [(height // 2 ** lvl, width // 2 ** lvl) for lvl in range(levels)]
        self.slots = [Slot("stem", ("stem",), self.enc_d, (c_in, height, width), 0,
                           f"to {self.enc_d}")]
        self.skips: list[tuple[str, str]] = []

    def stage(self, half: StagePart, entry: BlockEntry, att: BlockEntry | None, domain: str,
              c_in: int, c_out: int, size: tuple[int, int], with_att: bool) -> Stage:
        p, emb = self.p, self.emb
        use_emb = takes_embed(entry)
        inputs = [spec_for(domain, c_in, size)] + ([emb] if use_emb else [])
        block = build_part(entry, inputs, half.params, "stage", channels=c_out, width=size[1],
                       groups=p.groups, dropout=p.dropout)
        if not (with_att and att is not None):
            return Stage(block=block, attention=None, use_emb=use_emb)
        a_emb, a_dom = takes_embed(att), att.domain_at(0)
        a_in = [spec_for(a_dom, c_out, size)] + ([emb] if a_emb else [])
        a = build_part(att, a_in, half.attention.params, "attention", channels=c_out,
                   groups=p.groups, width=size[1])
        return Stage(block=block, attention=a, use_emb=use_emb, attention_emb=a_emb,
                     att_into=convert(domain, a_dom, size=size),
                     att_back=convert(a_dom, domain, size=size))

    def encoder(self) -> tuple[nn.ModuleList, nn.ModuleList, nn.ModuleList]:
        """(stages, downsamplers, skip converters), level by level."""
        down, downsamplers, skip_conv = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        c, last = self.c_in, len(self.widths) - 1
        for lvl, (wd, size) in enumerate(zip(self.widths, self.sizes)):
            for i in range(self.p.blocks_per_level):
                k = len(down)
                down.append(self.stage(self.enc, self.enc_e, self.enc_a, self.enc_d, c, wd,
                                       size, lvl in self.att_lvls))
                c = wd
                skip_conv.append(convert(self.enc_d, self.dec_d, size=size))
                self.slots.append(Slot(f"enc{lvl}.{i}", (f"down.{k}", f"skip_converters.{k}"),
                                       self.enc_d, (wd, *size), lvl))
            if lvl < last:
                downsamplers.append(build_resampler(self.enc.resample, self.enc_d, 0, c, size))
                self.slots.append(Slot(f"down{lvl}", (f"downsamplers.{lvl}",), self.enc_d,
                                       (wd, size[0] // 2, size[1] // 2), lvl + 0.5))
        return down, downsamplers, skip_conv

    def middle(self) -> nn.ModuleList:
        c, bottom, depth = self.widths[-1], self.sizes[-1], len(self.widths)
        mid = nn.ModuleList([
            self.stage(self.enc, self.enc_e, self.enc_a, self.enc_d, c, c, bottom,
                       self.p.mid_attention),
            self.stage(self.enc, self.enc_e, self.enc_a, self.enc_d, c, c, bottom, False)])
        self.slots.append(Slot("mid0", ("mid.0",), self.enc_d, (c, *bottom), depth))
        self.slots.append(Slot("mid1", ("mid.1", "bridge"), self.enc_d, (c, *bottom), depth))
        return mid

    def decoder(self) -> tuple[nn.ModuleList, nn.ModuleList]:
        """(stages, upsamplers) in the order they run; each stage takes the skip pushed
        last."""
        up, upsamplers = nn.ModuleList(), nn.ModuleList()
        pushed = [s.id for s in self.slots if s.id.startswith("enc")]
        c = self.widths[-1]
        for lvl in reversed(range(len(self.widths))):
            wd, size = self.widths[lvl], self.sizes[lvl]
            for i in range(self.p.blocks_per_level):
                k = len(up)
                up.append(self.stage(self.dec, self.dec_e, self.dec_a, self.dec_d, c + wd, wd,
                                     size, lvl in self.att_lvls))  # skip: wd channels
                c = wd
                self.skips.append((pushed.pop(), f"dec{lvl}.{i}"))
                self.slots.append(Slot(f"dec{lvl}.{i}", (f"up.{k}",), self.dec_d, (wd, *size),
                                       lvl))
            if lvl > 0:
                self.slots.append(Slot(f"up{lvl}", (f"upsamplers.{len(upsamplers)}",),
                                       self.dec_d, (wd, size[0] * 2, size[1] * 2), lvl - 0.5))
                upsamplers.append(build_resampler(self.dec.resample, self.dec_d, 1, c, size))
        return up, upsamplers

    def build(self) -> UNet:
        down, downsamplers, skip_conv = self.encoder()
        mid = self.middle()
        up, upsamplers = self.decoder()
        c_out, (h, w) = self.p.out_channels or self.c_in, self.sizes[0]
        to_real, head = build_head(self.p, self.dec_d, self.widths[0], c_out, (h, w))
        self.slots.append(Slot("head", ("head", "to_real"), "real", (c_out, h, w), 0,
                               "GroupNorm-SiLU-conv"))
        return UNet(enc_domain=self.enc_d, dec_domain=self.dec_d,
                    stem=convert("real", self.enc_d, size=(h, w)), down=down,
                    downsamplers=downsamplers, mid=mid,
                    bridge=convert(self.enc_d, self.dec_d, size=self.sizes[-1]),
                    skip_converters=skip_conv, up=up, upsamplers=upsamplers, to_real=to_real,
                    head=head, blocks_per_level=self.p.blocks_per_level,
                    layout=tuple(self.slots), skips=tuple(self.skips))


def build_unet(p: UNetParams, x: TensorSpec, emb: TensorSpec) -> UNet:
    """Assemble a :class:`UNet` for input ``x`` (C, H, W) and embedding ``emb`` (D,)."""
    return _Builder(p, x, emb).build()


def stage_domains(p: UNetParams) -> tuple[str, str]:
    """(encoder, decoder) domain: where the unet's stages compute, without building it."""
    return (stage_domain(get_block(p.encoder.block)),
            stage_domain(get_block(decoder_of(p).block)))


def describe_unet(p: UNetParams, x: TensorSpec, emb: TensorSpec
                  ) -> tuple[list[StageInfo], list[tuple[str, str]]]:
    """(stages in run order, skips) of the unet ``p`` builds for ``x`` and ``emb``
    (see :meth:`UNet.stages`), built on the meta device: no weights are allocated and
    no random numbers drawn."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        net = build_unet(p, x, emb)
    return net.stages(), list(net.skips)


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


__all__ = ["FILLS", "RESAMPLE", "Part", "Slot", "Stage", "StageInfo", "StagePart", "UNet",
           "UNetParams", "build_unet", "describe_unet", "stage_domains"]
