"""Pydantic models of a spec: image, model graph, diffusion, training and evaluation.

Every section forbids extra keys. Block parameters sit beside ``block`` and ``in`` on a
node and are validated by the block's own parameter model in :mod:`archspec.validate`.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from archspec.choices import CLIP_POLICIES, PREDICTIONS
from blocks.core import FiniteFloat

SPEC_VERSION = 2
MAX_NODES = 1000        # a U-Net is ~100 nodes; the bound keeps validation time bounded
MAX_ID = 64             # node id length; ids name modules and appear in every message


class Strict(BaseModel):
    # strict: "32" and true are not 32 and 1; floats must be finite (FiniteFloat below
    # says so per field as well, for the JSON Schema and for readers)
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class ImageSpec(Strict):
    """Shape of the images the model denoises."""

    channels: int = Field(ge=1, le=64, description="image channels (1 grey, 3 RGB)")
    size: int = Field(ge=2, le=1024, description="height = width in pixels")


class NodeSpec(BaseModel):
    """One node: a registered block, the nodes it reads, and the block's parameters."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, strict=True)

    block: str = Field(description="registered block name (see `archsearch blocks`)")
    in_: list[str] = Field(default_factory=list, alias="in",
                           description="ids of the nodes this node reads, in order")

    @property
    def params(self) -> dict[str, Any]:
        """The block parameters: every key but ``block`` and ``in``."""
        return dict(self.model_extra or {})


class ModelSpec(Strict):
    nodes: dict[str, NodeSpec] = Field(min_length=1, max_length=MAX_NODES,
                                       description="node id -> node")
    output: str = Field(description="id of the node whose value the model returns")


class LossSpec(Strict):
    """Training loss: domain and weighting by timestep and by frequency."""

    domain: Literal["pixel", "fourier"] = "pixel"
    time_weighting: Literal["uniform", "min_snr", "p2"] = "uniform"
    min_snr_gamma: FiniteFloat = Field(5.0, gt=0)
    p2_gamma: FiniteFloat = Field(1.0, ge=0)
    p2_k: FiniteFloat = Field(1.0, gt=0)
    freq_weighting: Literal["uniform", "power_law", "snr"] = "uniform"
    power_law_alpha: FiniteFloat = Field(1.0, ge=0, le=8)


class IsotropicProcess(Strict):
    """White noise, the same schedule at every frequency (Ho et al. 2020)."""

    kind: Literal["isotropic"] = "isotropic"


class EqualSNRProcess(Strict):
    """Noise coloured by the training data's power spectrum, so every frequency's SNR
    follows the one schedule (Falck et al. 2025, "A Fourier Space Perspective on
    Diffusion Models")."""

    kind: Literal["equal_snr"]
    floor: FiniteFloat = Field(1e-3, gt=0, le=1, description="lower bound on a bin's "
                               "noise variance relative to the mean (keeps S_t > 0 where "
                               "the data has no power)")


class BlurringProcess(Strict):
    """Heat dissipation plus white noise (Hoogeboom & Salimans 2022, "Blurring Diffusion
    Models"), in the periodic (Fourier) basis."""

    kind: Literal["blurring"]
    sigma_blur_max: FiniteFloat = Field(20.0, gt=0, le=1000, description="std (pixels) of "
                                        "the Gaussian blur at the last timestep")
    min_scale: FiniteFloat = Field(1e-3, ge=1e-6, lt=1, description="d_min: the smallest "
                                   "signal attenuation of any frequency (keeps A_t > 0)")


ProcessSpec = Annotated[IsotropicProcess | EqualSNRProcess | BlurringProcess,
                        Field(discriminator="kind")]


class DiffusionSpec(Strict):
    schedule: Literal["linear", "cosine"] = "cosine"
    timesteps: int = Field(1000, ge=2, le=100_000)
    prediction: Literal[PREDICTIONS] = "epsilon"
    loss: LossSpec = Field(default_factory=LossSpec)
    process: ProcessSpec = Field(
        default_factory=IsotropicProcess, description="forward process x_t = A_t x0 + "
        "S_t eps, A_t and S_t diagonal in the orthonormal Fourier basis: {kind: isotropic "
        "| equal_snr | blurring, ...parameters}")


class TrainSpec(Strict):
    dataset: str = Field("digits", description="registered dataset (digits, synthetic8, "
                         "patches32, cifar10, folder)")
    data_root: str | None = Field(None, description="data folder for datasets that read "
                                  "files (folder, cifar10); checked by validate")
    steps: int = Field(2000, ge=1, le=10_000_000)
    batch_size: int = Field(128, ge=1, le=65_536)
    lr: FiniteFloat = Field(2.0e-4, gt=0, le=1.0)
    weight_decay: FiniteFloat = Field(0.0, ge=0)
    ema: FiniteFloat = Field(0.999, ge=0, lt=1)
    grad_clip: FiniteFloat | None = Field(1.0, gt=0)
    seed: int = Field(0, ge=0, lt=2**63)
    checkpoint_every: int = Field(500, ge=1, le=10_000_000)
    init_from: str | None = Field(
        None, min_length=1, description="a finished run folder: initialise the model from "
        "its EMA weights where parameter names and shapes match (warm start); the rest "
        "keeps the seeded init")


class SamplerSpec(Strict):
    name: str = Field(description="registered sampler (ddpm, ddim, dpmsolver++, ...)")
    steps: list[Annotated[int, Field(ge=1)]] = Field(
        min_length=1, max_length=64, description="numbers of sampling steps, each in "
        "1..diffusion.timesteps")


def _default_samplers() -> list[SamplerSpec]:
    return [SamplerSpec(name="ddim", steps=[10, 20, 50]),
            SamplerSpec(name="dpmsolver++", steps=[10, 20])]


class ConvergenceSpec(Strict):
    """Score EMA snapshots along training: FD against training step (opt-in)."""

    every: int = Field(ge=1, le=10_000_000, description="keep an EMA snapshot every this "
                       "many training steps (and at the last step)")
    sampler: str = Field("dpmsolver++", description="a cheap registered sampler")
    steps: int = Field(20, ge=1, description="sampling steps, 1..diffusion.timesteps")
    num_samples: int = Field(256, ge=1, le=1_000_000)
    seed: int = Field(0, ge=0, lt=2**63)


class EvaluateSpec(Strict):
    num_samples: int = Field(1000, ge=1, le=1_000_000)
    seeds: list[Annotated[int, Field(ge=0, lt=2**63)]] = Field(
        default_factory=lambda: [0], min_length=1, max_length=1024)
    clip: Literal[CLIP_POLICIES] = Field(
        "clip", description="x0 clipping policy, identical for every sampler compared")
    samplers: list[SamplerSpec] = Field(default_factory=_default_samplers)
    convergence: ConvergenceSpec | None = Field(
        None, description="opt-in: score EMA snapshots every K training steps")


class Spec(Strict):
    """A whole pipeline: architecture, diffusion, training and evaluation."""

    spec_version: int = Field(SPEC_VERSION, description="spec format version")
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$",
                      description="run folder name: letters, digits, '_', '.', '-'; "
                      "not starting with '.' or '-'")
    description: str = ""
    image: ImageSpec
    vars: dict[str, Any] = Field(default_factory=dict,
                                 description="values referenced as ${vars.NAME}")
    model: ModelSpec
    diffusion: DiffusionSpec = Field(default_factory=DiffusionSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    evaluate: EvaluateSpec = Field(default_factory=EvaluateSpec)

    # Filled by validation (archspec.ensure_validated); read it through `validated`.
    _validated: Any = PrivateAttr(default=None)

    @property
    def validated(self) -> "ValidatedSpec":
        """What validation found: build order, shapes, parameters, domains, source."""
        # Looked up, not imported: archspec.validate imports this module, and a package's
        # modules are always loaded after the package itself.
        return sys.modules["archspec"].ensure_validated(self)._validated


@dataclass(frozen=True)
class ValidatedSpec:
    """The facts validation established about a spec, for assembly, ``show``, ``profile``
    and the evaluator (``spec.validated``; all node-keyed dicts follow ``order``).

    Attributes:
        order: node ids in build order: topological, ties broken by node id, so that two
            specs with equal hashes build their modules in the same order (same weights).
        params: node id -> the block's validated parameter model.
        domains: node id -> output domain (``real``, ``complex``, ``dual``, ...).
        shapes: node id -> ``blocks.TensorSpec`` of its output (per sample, no batch).
        param_counts: node id -> trainable parameters (0 for io nodes).
        source: the file the spec was read from, or None.
    """

    order: tuple[str, ...]
    params: dict[str, Any]
    domains: dict[str, str]
    shapes: dict[str, Any]
    param_counts: dict[str, int]
    source: str | None = None

    @property
    def total_params(self) -> int:
        return sum(self.param_counts.values())
