"""Quality metrics: FID/KID (torch-fidelity), in-project FD/KD, LPIPS (lpips), spectral stats.

Importing this package is cheap: the heavy libraries (torch-fidelity, lpips, torchvision)
are imported by the submodules, which the registry entries load on first call.

Every metric returns result dicts of one shape (the caller adds seeds and sampler settings)::

    {"metric": "FD-digits", "value": 1.23 | None, "status": "ok" | "unavailable",
     "reason": None | "unavailable: ...", "n": 1000, "extractor": "...",
     "weights_sha256": "..." | None, ...extra keys per metric}

A metric whose weights are missing reports ``status="unavailable"`` with the path it
looked at; it never substitutes another network silently.

>>> from evaluator.measure.registry import METRICS
>>> METRICS.names()                                       # doctest: +SKIP
>>> METRICS.get("spectral").factory(samples, data)       # doctest: +SKIP

A new metric is one decorated function (see :func:`register_metric`); ``evaluate``'s
table and the report take their columns from the registry.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from blocks.registry import Registry


def result(metric: str, value: float | None, *, n: int, extractor: str | None = None,
           weights_sha256: str | None = None, status: str = "ok", reason: str | None = None,
           **extra: Any) -> dict[str, Any]:
    """One metric result in the common shape; ``extra`` keys are appended."""
    if status not in ("ok", "unavailable"):
        raise ValueError(f"status must be 'ok' or 'unavailable', got {status!r}")
    out: dict[str, Any] = {
        "metric": metric, "value": None if value is None else float(value), "status": status,
        "reason": reason, "n": int(n), "extractor": extractor, "weights_sha256": weights_sha256,
    }
    out.update(extra)
    return out


def unavailable(metric: str, reason: str, *, n: int, extractor: str | None = None,
                **extra: Any) -> dict[str, Any]:
    """A result for a metric that could not be computed; ``reason`` starts with ``unavailable:``."""
    if not reason.startswith("unavailable:"):
        reason = f"unavailable: {reason}"
    return result(metric, None, n=n, extractor=extractor, status="unavailable", reason=reason,
                  **extra)


# What `evaluate` can hand a metric, by the names a metric declares in ``inputs``.
INPUTS = {
    "samples": "(N, C, H, W) generated images in [-1, 1]",
    "reference": "(M, C, H, W) held-out data images in [-1, 1]",
    "reference_data": "the held-out ImageData (name, split, images)",
    "extractor": "the in-project feature extractor (keyword argument)",
}


@dataclass(frozen=True)
class Metric:
    """A registered metric: what it needs, what it returns, which table column it fills.

    Attributes:
        name: registry name.
        factory: ``fn(*positional inputs, **keyword inputs) -> result | list[result]``.
        inputs: names from :data:`INPUTS`, in call order; ``extractor`` is passed by keyword.
        columns: result names shown as columns of ``evaluate``'s table and the report
            (``<dataset>`` stands for the reference's dataset name); empty for none.
        weights: environment variable naming the local weights it needs, if any.
        evaluate: whether ``evaluate`` runs it on every sampler setting (False for
            metrics whose inputs evaluate cannot provide, e.g. paired images).
        doc: one line.
    """

    name: str
    factory: Callable[..., Any]
    inputs: tuple[str, ...]
    columns: tuple[str, ...] = ()
    weights: str | None = None
    evaluate: bool = True
    doc: str = ""


METRICS: Registry[Metric] = Registry("metric")


def register_metric(name: str, *, inputs: tuple[str, ...], columns: tuple[str, ...] = (),
                    weights: str | None = None, evaluate: bool = True,
                    doc: str | None = None) -> Callable:
    """Decorator registering ``fn`` as metric ``name`` (``doc``, default its docstring's
    first line, is the description). ``evaluate`` and the report pick it up from the registry: a new metric
    is one function with this decorator, in any module imported with the metrics."""
    unknown = [i for i in inputs if i not in INPUTS]
    if unknown:
        raise ValueError(f"metric {name!r}: unknown inputs {unknown} (known: {list(INPUTS)})")

    def deco(fn: Callable) -> Callable:
        line = doc or ((fn.__doc__ or "").strip().splitlines() or [""])[0]
        METRICS.add(name, Metric(name, fn, tuple(inputs), tuple(columns), weights, evaluate, line))
        return fn

    return deco


def _lazy(module: str, func: str) -> Callable[..., Any]:
    """A callable that imports ``evaluator.measure.<module>`` only when first called."""

    def call(*args: Any, **kwargs: Any) -> Any:
        fn = getattr(importlib.import_module(f"evaluator.measure.{module}"), func)
        return fn(*args, **kwargs)

    call.__name__ = func
    call.__qualname__ = f"{module}.{func}"
    return call


# The built-in metrics live in heavy modules (torch-fidelity, lpips), imported on first call.
# Each line is the metric's whole registration.
register_metric(
    "fd_kd", inputs=("samples", "reference_data", "extractor"),
    columns=("FD-<dataset>", "KD-<dataset>"),
    doc="FD-<dataset>/KD-<dataset> with the in-project extractor, by torch-fidelity.",
)(_lazy("features", "fd_kd"))
register_metric(
    "fid_kid", inputs=("samples", "reference"), columns=("FID", "KID"),
    weights="ARCHSEARCH_INCEPTION_WEIGHTS",
    doc="FID and KID with torch-fidelity's InceptionV3 (needs local Inception weights).",
)(_lazy("fidelity", "inception_fid_kid"))
register_metric(
    "lpips_diversity", inputs=("samples",), columns=("LPIPS-diversity",),
    weights="ARCHSEARCH_ALEXNET_WEIGHTS",
    doc="Mean LPIPS between random pairs of samples (higher = more diverse).",
)(_lazy("lpips_metric", "lpips_diversity"))
register_metric(
    "lpips", inputs=("samples", "reference"), weights="ARCHSEARCH_ALEXNET_WEIGHTS",
    evaluate=False,  # needs images paired with their targets, which evaluate does not have
    doc="LPIPS (AlexNet, v0.1) between paired images, e.g. x0 vs denoised x0-hat.",
)(_lazy("lpips_metric", "lpips_distance"))
register_metric(
    "spectral", inputs=("samples", "reference"), columns=("spectral-RAPS-dist",),
    doc="Radially averaged power spectrum and band-energy distances, samples vs data.",
)(_lazy("spectral", "spectral_metrics"))

__all__ = ["INPUTS", "METRICS", "Metric", "register_metric", "result", "unavailable"]
