"""Quality metrics: FID/KID (torch-fidelity), in-project FD/KD, LPIPS (lpips), spectral stats.

Importing this package is cheap: the heavy libraries (torch-fidelity, lpips, torchvision)
are imported by the submodules, which the registry entries load on first call.

Every metric returns result dicts of one shape (the caller adds seeds and sampler settings)::

    {"metric": "FD-digits", "value": 1.23 | None, "status": "ok" | "unavailable",
     "reason": None | "unavailable: ...", "n": 1000, "extractor": "...",
     "weights_sha256": "..." | None, ...extra keys per metric}

A metric whose weights are missing reports ``status="unavailable"`` with the path it
looked at; it never substitutes another network silently.

>>> from evaluator.metrics import METRICS
>>> METRICS.names()                                       # doctest: +SKIP
>>> METRICS.get("spectral").factory(samples, data)       # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path
from typing import Any, Callable

from blocks.registry import Entry, Registry

METRICS: Registry[Entry] = Registry("metric")

CACHE_ENV = "ARCHSEARCH_CACHE"


def cache_root(root: str | os.PathLike | None = None) -> Path:
    """Cache folder: ``root`` if given, else ``$ARCHSEARCH_CACHE``, else ``~/.cache/archsearch``."""
    if root is not None:
        return Path(root)
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "archsearch"


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 hex digest of a file, memoised on (path, size, mtime) so big weights hash once."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _SHA_MEMO[key] = h.hexdigest()
    return _SHA_MEMO[key]


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


def _lazy(module: str, func: str) -> Callable[..., Any]:
    """A callable that imports ``evaluator.metrics.<module>`` only when first called."""

    def call(*args: Any, **kwargs: Any) -> Any:
        fn = getattr(importlib.import_module(f"evaluator.metrics.{module}"), func)
        return fn(*args, **kwargs)

    call.__name__ = func
    call.__qualname__ = f"{module}.{func}"
    return call


def _register(name: str, module: str, func: str, doc: str, **extra: Any) -> None:
    METRICS.add(name, Entry(name=name, factory=_lazy(module, func), doc=doc, extra=extra))


_register("fid_kid", "fidelity", "inception_fid_kid",
          "FID and KID with torch-fidelity's InceptionV3 (needs local Inception weights).",
          returns=["FID", "KID"])
_register("fd_kd", "features", "fd_kd",
          "FD-<dataset>/KD-<dataset> with the in-project extractor, computed by torch-fidelity.",
          returns=["FD-<dataset>", "KD-<dataset>"])
_register("lpips", "lpips_metric", "lpips_distance",
          "LPIPS (AlexNet, v0.1) between paired images, e.g. x0 vs denoised x0-hat.",
          returns=["LPIPS"])
_register("lpips_diversity", "lpips_metric", "lpips_diversity",
          "Mean LPIPS between random pairs of samples (higher = more diverse).",
          returns=["LPIPS-diversity"])
_register("spectral", "spectral", "spectral_metrics",
          "Radially averaged power spectrum and band-energy distances, samples vs data.",
          returns=["spectral-RAPS-dist", "spectral-band-SKL"])

__all__ = ["CACHE_ENV", "METRICS", "cache_root", "file_sha256", "result", "unavailable"]
