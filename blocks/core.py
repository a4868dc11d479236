"""Block registry: every block a spec can name, with its parameter model and domains.

A block is registered with a *builder*: ``builder(params, inputs) -> nn.Module`` where
``params`` is the validated pydantic model and ``inputs`` the :class:`TensorSpec` of each
input (domain and per-sample shape). The module is called as ``module(*tensors)``.

Domains (what flows along an edge):

- ``real``    (B, C, H, W) float: pixel-space feature maps
- ``complex`` (B, C, H, W') complex64: spectra (W' = W//2+1 after ``rfft2``)
- ``dual``    (B, 2C, H, W') float: real and imaginary parts stacked on channels
- ``time``    (B,) diffusion timestep
- ``embed``   (B, D) float: conditioning vectors (time embeddings)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Callable

from pydantic import AllowInfNan, BaseModel, ConfigDict, Strict

from blocks.registry import Registry, RegistryError

DOMAINS = ("real", "complex", "dual", "time", "embed")

# Which registered adapter(s) turn one domain into another; used in error messages.
ADAPTERS: dict[tuple[str, str], str] = {
    ("real", "complex"): "rfft2 (or fft2)",
    ("complex", "real"): "irfft2 (or ifft2)",
    ("complex", "dual"): "to_dual",
    ("dual", "complex"): "from_dual",
    ("real", "dual"): "rfft2 then to_dual",
    ("dual", "real"): "from_dual then irfft2",
    ("time", "embed"): "time_embedding",
}


# The one float type of specs and block parameters: a real number that is finite (NaN and
# inf would only surface later as a NaN model output), given as a number (not "1.5", not
# true). Integers are accepted, they are numbers.
FiniteFloat = Annotated[float, Strict(), AllowInfNan(False)]


class BlockParams(BaseModel):
    """Base for block parameter models: extra keys are an error, models are frozen.

    Types are strict (``"32"`` and ``true`` are not 32 and 1) and floats must be finite,
    for every field of every subclass, so a block file declares plain ``int``/``float``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def odd_kernel(k: int) -> int:
    """Validator for ``kernel_size`` fields: 'same' padding needs an odd kernel."""
    if k % 2 == 0:
        raise ValueError("kernel_size must be odd for 'same' padding")
    return k


class NoParams(BlockParams):
    """A block without parameters."""


@dataclass(frozen=True)
class TensorSpec:
    """What flows along an edge: its domain and per-sample shape (no batch dim)."""

    domain: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class BlockEntry:
    """A registered block.

    Attributes:
        name: registry name used in specs.
        params: pydantic model validating the node's parameters.
        takes: input domains in order; ``"x?"`` marks an optional input, ``"x*"`` one or
            more inputs of that domain, ``"any"`` any domain.
        gives: output domain, or ``"same"`` for the domain of the first input.
        builder: ``(params, inputs: list[TensorSpec]) -> nn.Module``.
        family: block family (``spatial``, ``complex``, ...), for listings.
        doc: one-line description.
        example: ``(params, inputs)``, one small valid configuration: what
            ``profile --blocks`` times and the registry-wide tests build. ``None`` means
            default parameters on :func:`default_inputs`.
        twin: the registered block computing the same function in the other spectral
            layout (``complex_conv`` <-> ``dual_conv``), with the same parameter model.
        source: ``module:function`` of the builder, or the entry point that loaded it.
    """

    name: str
    params: type[BlockParams]
    takes: tuple[str, ...]
    gives: str
    builder: Callable[[Any, list[TensorSpec]], Any]
    family: str
    doc: str
    example: tuple[dict, tuple[TensorSpec, ...]] | None = None
    twin: str | None = None
    source: str = ""

    def example_config(self) -> tuple[dict[str, Any], list[TensorSpec]]:
        """``(params, inputs)`` to build this block with: its example, else defaults."""
        if self.example is not None:
            return dict(self.example[0]), list(self.example[1])
        return {}, default_inputs(self.takes)

    def input_range(self) -> tuple[int, int | None]:
        """(min, max) number of inputs; max is None for variadic blocks."""
        lo = sum(1 for d in self.takes if not d.endswith(("?", "*")))
        hi = None if any(d.endswith("*") for d in self.takes) else len(self.takes)
        return lo, hi

    def domain_at(self, i: int) -> str:
        """Domain accepted at input position ``i`` (``any`` accepts everything)."""
        if i < len(self.takes):
            return self.takes[i].rstrip("?*")
        return self.takes[-1].rstrip("?*")  # variadic tail

    def output_domain(self, in_domains: list[str]) -> str:
        return in_domains[0] if self.gives == "same" else self.gives


BLOCKS: Registry[BlockEntry] = Registry("block")

# Per-sample shapes of the default inputs of a block registered without an example.
DEFAULT_SHAPES: dict[str, tuple[int, ...]] = {
    "real": (4, 8, 8), "complex": (4, 8, 5), "dual": (8, 8, 5), "embed": (16,), "time": ()}


def default_inputs(takes: tuple[str, ...]) -> list[TensorSpec]:
    """One input per required domain in ``takes`` (``any`` -> real), of DEFAULT_SHAPES."""
    out = []
    for d in takes:
        if d.endswith("?"):
            continue
        dom = d.rstrip("*")
        dom = "real" if dom == "any" else dom
        out.append(TensorSpec(dom, DEFAULT_SHAPES[dom]))
    return out


def register_block(
    name: str,
    *,
    params: type[BlockParams] = NoParams,
    takes: tuple[str, ...],
    gives: str,
    family: str,
    example: tuple[dict, list[TensorSpec]] | None = None,
    twin: str | None = None,
) -> Callable:
    """Decorator registering a builder function under ``name``.

    Everything else needs comes from here: no central table lists blocks. The builder's
    docstring first line becomes the block's description.

    Args:
        example: ``(params, inputs)`` of one small valid configuration (see
            :class:`BlockEntry`); give one when default inputs do not fit the block.
        twin: name of the block's twin in the other spectral layout, if any.
    """
    for d in (*takes, gives):
        if d.rstrip("?*") not in (*DOMAINS, "any", "same"):
            raise ValueError(f"block {name!r}: unknown domain {d!r}")
    ex = None if example is None else (dict(example[0]), tuple(example[1]))

    def deco(fn: Callable) -> Callable:
        doc = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        BLOCKS.add(name, BlockEntry(name, params, tuple(takes), gives, fn, family, doc,
                                    example=ex, twin=twin,
                                    source=f"{fn.__module__}:{fn.__qualname__}"))
        return fn

    return deco


def get_block(name: str) -> BlockEntry:
    """The entry for ``name``; unknown names raise with close matches suggested."""
    return BLOCKS.get(name)


def build_block(name: str, params: dict[str, Any] | None = None,
                inputs: list[TensorSpec] | None = None):
    """Validate ``params`` with the block's model and build the module."""
    entry = get_block(name)
    return entry.builder(entry.params(**(params or {})), list(inputs or []))


def autocast_off(t):
    """Context disabling autocast for ``t``'s device, so FFTs and complex maths stay in
    float32. A no-op on the meta device (used for shape inference), where autocast fails."""
    import contextlib

    import torch

    if t.device.type == "meta":
        return contextlib.nullcontext()
    return torch.autocast(device_type=t.device.type, enabled=False)


def adapter_hint(src: str, dst: str) -> str:
    """How to get from domain ``src`` to ``dst``, for error messages."""
    a = ADAPTERS.get((src, dst))
    return f"; insert {a}" if a else ""


__all__ = [
    "ADAPTERS", "BLOCKS", "BlockEntry", "BlockParams", "DEFAULT_SHAPES", "DOMAINS", "FiniteFloat",
    "NoParams",
    "RegistryError", "TensorSpec", "adapter_hint", "autocast_off", "build_block",
    "default_inputs", "get_block", "odd_kernel", "register_block",
]
