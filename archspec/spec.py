"""Pydantic models of a spec: image, model graph, diffusion, training and evaluation.

Every section forbids extra keys. Block parameters sit beside ``block`` and ``in`` on a
node and are validated by the block's own parameter model in :mod:`archspec.validate`.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

SPEC_VERSION = 1


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageSpec(Strict):
    """Shape of the images the model denoises."""

    channels: int = Field(ge=1, le=64, description="image channels (1 grey, 3 RGB)")
    size: int = Field(ge=2, le=1024, description="height = width in pixels")


class NodeSpec(BaseModel):
    """One node: a registered block, the nodes it reads, and the block's parameters."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    block: str = Field(description="registered block name (see `archsearch blocks`)")
    in_: list[str] = Field(default_factory=list, alias="in",
                           description="ids of the nodes this node reads, in order")

    @property
    def params(self) -> dict[str, Any]:
        """The block parameters: every key but ``block`` and ``in``."""
        return dict(self.model_extra or {})


class ModelSpec(Strict):
    nodes: dict[str, NodeSpec] = Field(min_length=1, description="node id -> node")
    output: str = Field(description="id of the node whose value the model returns")


class LossSpec(Strict):
    """Training loss: domain and weighting by timestep and by frequency."""

    domain: Literal["pixel", "fourier"] = "pixel"
    time_weighting: Literal["uniform", "min_snr", "p2"] = "uniform"
    min_snr_gamma: float = Field(5.0, gt=0)
    p2_gamma: float = Field(1.0, ge=0)
    p2_k: float = Field(1.0, gt=0)
    freq_weighting: Literal["uniform", "power_law", "snr"] = "uniform"
    power_law_alpha: float = Field(1.0, ge=0, le=8)


class DiffusionSpec(Strict):
    schedule: Literal["linear", "cosine"] = "cosine"
    timesteps: int = Field(1000, ge=2, le=100_000)
    prediction: Literal["epsilon", "x0", "v"] = "epsilon"
    loss: LossSpec = Field(default_factory=LossSpec)


class TrainSpec(Strict):
    dataset: str = "digits"
    steps: int = Field(2000, ge=1, le=10_000_000)
    batch_size: int = Field(128, ge=1, le=65_536)
    lr: float = Field(2.0e-4, gt=0, le=1.0)
    weight_decay: float = Field(0.0, ge=0)
    ema: float = Field(0.999, ge=0, lt=1)
    grad_clip: float | None = Field(1.0, gt=0)
    seed: int = Field(0, ge=0)
    checkpoint_every: int = Field(500, ge=1)


class SamplerSpec(Strict):
    name: str = Field(description="registered sampler (ddpm, ddim, dpmsolver++, ...)")
    steps: list[int] = Field(min_length=1, description="numbers of sampling steps")


def _default_samplers() -> list[SamplerSpec]:
    return [SamplerSpec(name="ddim", steps=[10, 20, 50]),
            SamplerSpec(name="dpmsolver++", steps=[10, 20])]


class EvaluateSpec(Strict):
    num_samples: int = Field(1000, ge=1, le=1_000_000)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    clip: Literal["none", "clip", "dynamic"] = Field(
        "clip", description="x0 clipping policy, identical for every sampler compared")
    samplers: list[SamplerSpec] = Field(default_factory=_default_samplers)


class Spec(Strict):
    """A whole pipeline: architecture, diffusion, training and evaluation."""

    spec_version: int = Field(SPEC_VERSION, description="spec format version")
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    image: ImageSpec
    vars: dict[str, Any] = Field(default_factory=dict,
                                 description="values referenced as ${vars.NAME}")
    model: ModelSpec
    diffusion: DiffusionSpec = Field(default_factory=DiffusionSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    evaluate: EvaluateSpec = Field(default_factory=EvaluateSpec)

    # Filled by validation: per-node output TensorSpec, parameter counts, source path.
    _shapes: dict = PrivateAttr(default_factory=dict)
    _param_counts: dict = PrivateAttr(default_factory=dict)
    _params: dict = PrivateAttr(default_factory=dict)
    _domains: dict = PrivateAttr(default_factory=dict)
    _order: list = PrivateAttr(default_factory=list)
    _source: str | None = PrivateAttr(default=None)
