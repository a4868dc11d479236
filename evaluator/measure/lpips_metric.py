"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric") through the ``lpips`` package, AlexNet trunk, v0.1 linear layers.

``lpips.LPIPS(pretrained=True)`` would fetch the AlexNet trunk from torchvision's download
URL and load its linear layers non-strictly, so a wrong file would go unnoticed. Here the
trunk is built random (``pnet_rand=True``, no download) and both weight files are loaded by
this module with every key and shape checked:

- AlexNet trunk: torchvision's ImageNet state dict (``features.N.weight`` ...), from the
  ``weights`` argument, ``$ARCHSEARCH_ALEXNET_WEIGHTS``, or torch hub's checkpoint folder
  (``alexnet-owt-7be5be79.pth``, where torchvision puts its download).
- linear layers: ``lpips/weights/v0.1/alex.pth`` shipped inside the lpips wheel.

Missing or mismatching weights give ``status="unavailable"`` and the reason; never a
substitute. Images below ``resize_below`` px (AlexNet's 11x11 stride-4 stem leaves almost
nothing of 8x8 images) are upsampled bilinearly to ``resize_to`` and the result says so.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from evaluator.measure.registry import result, unavailable
from evaluator.store.cache import file_sha256

ALEXNET_ENV = "ARCHSEARCH_ALEXNET_WEIGHTS"
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's IMAGENET1K_V1 file name
EXTRACTOR = "lpips-v0.1-alex"


class LPIPSConfig(BaseModel):
    """Where the weights are and how images are prepared."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weights: str | None = None  # AlexNet trunk; None: env var, then torch hub's folder
    lin_weights: str | None = None  # None: the v0.1 file shipped in the lpips wheel
    resize_below: int = Field(32, ge=1)
    resize_to: int = Field(64, ge=32)
    batch_size: int = Field(64, gt=0)
    device: str = "cpu"


class WeightsUnavailable(RuntimeError):
    """Weights missing or not matching; ``str(err)`` starts with ``unavailable:``."""


def find_alexnet_weights(weights: str | os.PathLike | None = None) -> tuple[Path | None, Path]:
    """``(found file or None, the path looked at)``: argument, env var, else torch hub."""
    if weights is not None:
        path = Path(weights)
    elif os.environ.get(ALEXNET_ENV):
        path = Path(os.environ[ALEXNET_ENV])
    else:
        path = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE
    return (path if path.is_file() else None), path


def _default_lin_path() -> Path:
    import lpips

    return Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"


def _read_state_dict(path: Path, what: str) -> dict[str, torch.Tensor]:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsUnavailable(f"unavailable: {what} at {path} could not be loaded "
                                 f"({type(err).__name__}: {str(err).splitlines()[0][:200]})")
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsUnavailable(f"unavailable: {what} at {path} is not a state dict of tensors")
    return sd


def _check_keys(target: dict[str, torch.Tensor], given: dict[str, torch.Tensor], path: Path,
                what: str) -> None:
    """Every target key must be given with the same shape (lpips itself loads non-strictly)."""
    missing = sorted(set(target) - set(given))
    wrong = sorted(k for k in set(target) & set(given) if target[k].shape != given[k].shape)
    if missing or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:6]}{' ...' if len(missing) > 6 else ''}")
        if wrong:
            parts.append("wrong shapes " + ", ".join(
                f"{k} {tuple(given[k].shape)} != {tuple(target[k].shape)}" for k in wrong[:4]))
        raise WeightsUnavailable(f"unavailable: {what} at {path} do not match: "
                                 + "; ".join(parts))


def _trunk_key_map(model: torch.nn.Module) -> dict[str, str]:
    """lpips trunk key -> torchvision key: ``net.slice2.3.weight`` <- ``features.3.weight``.

    lpips copies torchvision's ``features`` layers into slices under their original index.
    """
    return {k: "features." + k.split(".", 2)[2] for k in model.state_dict() if k.startswith("net.")}


_MODELS: dict[tuple[str, str, str, str], tuple[torch.nn.Module, dict[str, Any]]] = {}


def load_lpips(cfg: LPIPSConfig | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The checked ``lpips.LPIPS`` model (eval, on ``cfg.device``) and what to record.

    Raises:
        WeightsUnavailable: a weights file is missing, unreadable or does not match.
    """
    import lpips

    cfg = cfg or LPIPSConfig()
    path, looked = find_alexnet_weights(cfg.weights)
    if path is None:
        hint = "" if cfg.weights else f" (pass weights or set {ALEXNET_ENV})"
        raise WeightsUnavailable(f"unavailable: AlexNet weights not found at {looked}{hint}")
    lin_path = Path(cfg.lin_weights) if cfg.lin_weights else _default_lin_path()
    if not lin_path.is_file():
        raise WeightsUnavailable(f"unavailable: LPIPS linear weights not found at {lin_path}")
    key = (str(path.resolve()), file_sha256(path), file_sha256(lin_path), cfg.device)
    if key in _MODELS:
        return _MODELS[key]
    with warnings.catch_warnings():  # lpips passes torchvision's deprecated pretrained=False
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net="alex", version="0.1", pretrained=False, pnet_rand=True,
                            verbose=False)
    own = model.state_dict()
    lin = _read_state_dict(lin_path, "LPIPS linear weights")
    _check_keys({k: v for k, v in own.items() if re.match(r"lin\d+\.", k)}, lin, lin_path,
                "LPIPS linear weights")
    trunk = _read_state_dict(path, "AlexNet weights")
    kmap = _trunk_key_map(model)
    _check_keys({kmap[k]: own[k] for k in kmap}, trunk, path, "AlexNet weights")
    model.load_state_dict({**lin, **{k: trunk[v] for k, v in kmap.items()}}, strict=False)
    model = model.to(cfg.device).eval().requires_grad_(False)
    info = {"weights_sha256": key[1], "lin_weights_sha256": key[2], "weights_path": str(path),
            "lin_weights_path": str(lin_path)}
    _MODELS[key] = (model, info)
    return model, info


def _prepare(x: torch.Tensor, cfg: LPIPSConfig) -> tuple[torch.Tensor, int | None]:
    """[-1, 1] (N, C, H, W) -> (N, 3, H', W') on the device, and the size resized to."""
    x = torch.as_tensor(x)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected images (N, 1 or 3, H, W), got shape {tuple(x.shape)}")
    x = x.float().to(cfg.device).clamp(-1, 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if min(x.shape[-2:]) < cfg.resize_below:
        return F.interpolate(x, size=(cfg.resize_to, cfg.resize_to), mode="bilinear",
                             align_corners=False), cfg.resize_to
    return x, None


@torch.no_grad()
def lpips_pairs(a: torch.Tensor, b: torch.Tensor, cfg: LPIPSConfig | None = None,
                ) -> tuple[torch.Tensor, dict[str, Any]]:
    """(N,) LPIPS between ``a[i]`` and ``b[i]`` plus the record info; may raise
    :class:`WeightsUnavailable`."""
    cfg = cfg or LPIPSConfig()
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"LPIPS needs pairs of equal shape, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    xa, resized = _prepare(a, cfg)
    xb, _ = _prepare(b, cfg)
    model, info = load_lpips(cfg)
    d = torch.cat([model(pa, pb).flatten() for pa, pb in
                   zip(xa.split(cfg.batch_size), xb.split(cfg.batch_size))])
    return d.cpu(), {**info, "resized_to": resized,
                     "input_size": list(torch.as_tensor(a).shape[-2:])}


def lpips_distance(a: torch.Tensor, b: torch.Tensor, cfg: LPIPSConfig | None = None,
                   ) -> dict[str, Any]:
    """Mean LPIPS between paired images, e.g. x0 and the denoised x0-hat at one t.

    Args:
        a, b: (N, C, H, W) in [-1, 1], C in {1, 3}, same shape.
        cfg: weights and resizing; default :class:`LPIPSConfig`.

    Returns:
        ``LPIPS`` result with ``std`` over pairs and ``resized_to`` (None if not resized).
    """
    n = int(torch.as_tensor(a).shape[0])
    try:
        d, info = lpips_pairs(a, b, cfg)
    except WeightsUnavailable as err:
        return unavailable("LPIPS", str(err), n=n, extractor=EXTRACTOR)
    return result("LPIPS", float(d.mean()), n=n, extractor=EXTRACTOR, **info,
                  std=float(d.std()) if n > 1 else 0.0)


def lpips_diversity(samples: torch.Tensor, n_pairs: int = 256, seed: int = 0,
                    cfg: LPIPSConfig | None = None) -> dict[str, Any]:
    """Mean LPIPS between ``n_pairs`` random pairs of distinct samples (higher = more diverse).

    Pairs ``(i, j)``, ``i != j``, are drawn with replacement from a generator seeded by
    ``seed``, so the same samples and seed give the same pairs.
    """
    samples = torch.as_tensor(samples)
    n = int(samples.shape[0])
    if n < 2:
        raise ValueError(f"diversity needs at least 2 samples, got {n}")
    gen = torch.Generator().manual_seed(seed)
    i = torch.randint(0, n, (n_pairs,), generator=gen)
    j = (i + torch.randint(1, n, (n_pairs,), generator=gen)) % n  # never equal to i
    try:
        d, info = lpips_pairs(samples[i], samples[j], cfg)
    except WeightsUnavailable as err:
        return unavailable("LPIPS-diversity", str(err), n=n, extractor=EXTRACTOR,
                           n_pairs=n_pairs, seed=seed)
    return result("LPIPS-diversity", float(d.mean()), n=n, extractor=EXTRACTOR, **info,
                  std=float(d.std()) if n_pairs > 1 else 0.0, n_pairs=n_pairs, seed=seed)
