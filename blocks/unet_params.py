"""Parameters of the ``unet`` composite: stage descriptions and their canonical form.

A unet is described by a few widths and, per half, a *stage description*: registered block
names and their parameters (see :mod:`blocks.unet` for the layout). The unet fills in what
it knows for each part (channels, groups, widths: FILLS); every other parameter is the
part's own, read through the block's own parameter model (:func:`canonical_params`), so a
spec that writes a default and one that leaves it out validate to the same parameters and
hash the same, as top-level node parameters do.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_validator

from blocks.core import BlockParams, get_block

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


# What the unet fills in for each kind of part (where the part's block has the field):
# channels, widths and groups it knows. A part's own params override these, so a value
# written for one of them always counts, even when it equals the block's default.
FILLS: dict[str, tuple[str, ...]] = {
    "stage": ("channels", "width", "groups", "dropout"),
    "attention": ("channels", "groups", "width"),
    "head": ("out_channels", "size", "groups"),
    "resample": (),
}


def canonical_params(block: str, params: dict[str, Any], role: str,
                     known: dict[str, Any] | None = None) -> dict[str, Any]:
    """``params`` of a unet part as the block's own parameter model reads them.

    Values take the model's types (``dropout: 0`` is ``0.0``), and a value equal to the
    field's default is left out unless the unet fills that field in for ``role`` (see
    FILLS), so writing a default and leaving it out describe the same unet (same hash).
    ``known`` stands in for required fields the unet fills in. Params the model refuses,
    or an unknown block, come back unchanged: building the unet reports them.
    """
    try:
        model = get_block(block).params
        fields = model.model_fields
        stand_in = {k: v for k, v in (known or {}).items()
                    if k in fields and k not in params and fields[k].is_required()}
        obj = model(**params, **stand_in)
        # attributes, not model_dump(): a serializer may leave a default out (padding)
        read = {k: getattr(obj, k) for k in fields}
    except Exception:  # noqa: BLE001 - reported, with its location, when the unet is built
        return dict(params)
    out = {}
    for k, raw in params.items():
        if k not in fields or type(read.get(k)) not in (int, float, bool, str):
            out[k] = raw  # an alias, or a value the model reads as a structure or an enum
        elif k in FILLS[role] or fields[k].is_required() or not _same(
                read[k], fields[k].get_default(call_default_factory=True)):
            out[k] = read[k]
    return out


def _same(a: Any, b: Any) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)  # True == 1 in Python


def _canonical_part(part: Any, role: str, known: dict[str, Any]) -> Any:
    """A part (bare name, mapping or model) with canonical params, nested parts too."""
    if isinstance(part, BaseModel):
        part = part.model_dump()
    if not isinstance(part, dict) or not isinstance(part.get("block"), str) or \
            not isinstance(part.get("params", {}), dict):
        return part  # a bare name has no params; a malformed part is the model's error
    out = dict(part)
    if part.get("params"):
        out["params"] = canonical_params(part["block"], part["params"], role, known)
    for key, sub in (("attention", "attention"), ("resample", "resample")):
        if part.get(key) is not None:
            out[key] = _canonical_part(part[key], sub, known)
    return out


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

    @model_validator(mode="before")
    @classmethod
    def _canonical(cls, v: Any) -> Any:
        """Stage params through each block's parameter model (see canonical_params)."""
        if not isinstance(v, dict):
            return v
        known = {k: v[k] if k in v else cls.model_fields[k].default
                 for k in ("channels", "groups", "dropout", "out_channels")}
        known = {k: x for k, x in known.items() if isinstance(x, (int, float))}
        v = dict(v)
        for key, role in (("encoder", "stage"), ("decoder", "stage"), ("head", "head")):
            if v.get(key) is not None:
                v[key] = _canonical_part(v[key], role, known)
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


__all__ = ["FILLS", "Part", "StagePart", "UNetParams", "V1_FIELDS", "canonical_params"]
