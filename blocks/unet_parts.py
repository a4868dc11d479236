"""Building the parts of a ``unet``: stage domains, attention, resamplers and the head.

Each part is a registered block (:mod:`blocks.unet_params` describes them); here each is
checked against the domain it has to work in and built with what the unet knows for its
role (FILLS), its own parameters last. Errors name the inner block and its input, since the
assembler only knows the unet node.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from blocks.adapters import convert, spec_for
from blocks.core import BlockEntry, TensorSpec, get_block
from blocks.spatial import group_norm, zero_
from blocks.unet_params import FILLS, Part, StagePart, UNetParams

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


def stage_domain(entry: BlockEntry) -> str:
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


def takes_embed(entry: BlockEntry) -> bool:
    return len(entry.takes) >= 2 and entry.domain_at(1) == "embed"


def build_part(entry: BlockEntry, inputs: list[TensorSpec], params: dict[str, Any], role: str,
           **known: Any) -> nn.Module:
    """Build ``entry`` with what the unet knows for ``role`` (FILLS; where the block's
    model has the field), then the part's own ``params`` (all of them: an unknown key is
    the params model's error)."""
    fields = entry.params.model_fields
    kwargs = {k: v for k, v in known.items()
              if k in FILLS[role] and k in fields and v is not None}
    kwargs.update(params)
    try:
        p = entry.params(**kwargs)
        mod = entry.builder(p, inputs)
    except Exception as e:  # name the block: the assembler only knows the unet node
        raise ValueError(f"unet: its inner {entry.name!r} block (on {_shapes(inputs)}): "
                         f"{_reason(entry.name, e)}") from e
    # plain attributes (not in the state dict), for UNet.named_blocks and UNet.stages
    mod.block_name, mod.block_family, mod.block_params = entry.name, entry.family, p
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


def attention_entry(part: Part | None, domain: str, where: str) -> BlockEntry | None:
    """The attention entry for stages in ``domain``; complex and dual interchange exactly."""
    if part is None:
        return None
    entry = get_block(part.block)
    d = stage_domain(entry)
    if d != domain and {d, domain} != {"complex", "dual"}:
        off = "mid_attention: false" if where == "encoder" else "attention_levels: []"
        raise ValueError(f"unet: {where} attention {part.block!r} takes {d!r} but the {where} "
                         f"stages work in {domain!r}; set {where}.attention to a {domain} "
                         f"block, or {off}")
    return entry


def build_head(p: UNetParams, domain: str, c: int, c_out: int, size: tuple[int, int]
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
    head = build_part(entry, [spec_for(domain, c, size)], p.head.params, "head",
                  out_channels=c_out, size=size[1], groups=p.groups)
    return nn.Identity(), head


def decoder_of(p: UNetParams) -> StagePart:
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


def build_resampler(part: Part | None, domain: str, which: int, c: int,
               size: tuple[int, int]) -> nn.Module:
    """The stage domain's down- (0) or upsampler (1): ``part``, or the domain's default."""
    part = part or Part(block=RESAMPLE[domain][which])
    entry = get_block(part.block)
    role = ("encoder", "downsampler") if which == 0 else ("decoder", "upsampler")
    if not entry.takes or entry.domain_at(0) != domain or \
            entry.output_domain([domain]) != domain:
        raise ValueError(f"unet: {role[0]}.resample {part.block!r} must take and give the "
                         f"{role[0]} domain {domain!r}")
    return build_part(entry, [spec_for(domain, c, size)], part.params, "resample")


__all__ = ["RESAMPLE", "UP_OF", "attention_entry", "build_head", "build_part",
           "build_resampler", "decoder_of", "stage_domain", "takes_embed"]
