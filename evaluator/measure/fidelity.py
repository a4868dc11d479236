"""FID/KID through torch-fidelity, from in-memory image tensors.

torch-fidelity (Obukhov et al., https://github.com/toshas/torch-fidelity) computes FID
(Heusel et al. 2017) and KID (Binkowski et al. 2018) from a feature extractor registered
in its registry. This module feeds it two :class:`UInt8Images` datasets and turns its
output into the project's result dicts. :func:`fd_kd_with_extractor` is the shared core;
:func:`inception_fid_kid` is the standard InceptionV3 flavour, and the in-project extractor
(:mod:`evaluator.measure.features`) reuses the core under the names ``FD-<dataset>``.

Nothing here downloads: the Inception weights come from an explicit path, the env var
``ARCHSEARCH_INCEPTION_WEIGHTS`` or torch hub's checkpoint folder (where torch-fidelity's
own download would have put them), and the file is checked to exist before torch-fidelity
sees the path. Missing weights give ``status="unavailable"`` with the paths looked at.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from evaluator.measure.registry import result, unavailable
from evaluator.store.cache import cache_root as _cache_root
from evaluator.store.cache import file_sha256

INCEPTION_ENV = "ARCHSEARCH_INCEPTION_WEIGHTS"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's URL basename
INCEPTION_NAME = "inception-v3-compat"


def as_images(x: Any) -> torch.Tensor:
    """The (N, C, H, W) float tensor of an ``ImageData`` (``.images``) or a tensor."""
    images = x.images if hasattr(x, "images") else x
    images = torch.as_tensor(images)
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images (N, 1 or 3, H, W), got shape {tuple(images.shape)}")
    return images


def to_uint8_rgb(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float (N, C, H, W) -> uint8 (N, 3, H, W); grey images repeat their channel."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x


class UInt8Images(Dataset):
    """The dataset torch-fidelity reads: item i is a uint8 (3, H, W) tensor.

    Args:
        images: (N, C, H, W) float in [-1, 1], C in {1, 3}.
    """

    def __init__(self, images: torch.Tensor) -> None:
        self.data = to_uint8_rgb(as_images(images))  # (N, 3, H, W) uint8, converted once

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.data[i]


def content_key(data: torch.Tensor) -> str:
    """Short sha256 of a uint8 tensor's bytes: a cache key for a reference set."""
    return hashlib.sha256(data.contiguous().numpy().tobytes()).hexdigest()[:16]


def _check_weights_file(path: Path) -> str | None:
    """Why ``path`` cannot serve as a weights file, or None if it is a readable file."""
    if not path.exists():
        return "not found"
    if not path.is_file():
        return "is not a file"
    if not os.access(path, os.R_OK):
        return "is not readable"
    return None


def find_inception_weights(weights_path: str | os.PathLike | None = None,
                           ) -> tuple[Path | None, list[Path]]:
    """Locate the Inception weights: argument, ``$ARCHSEARCH_INCEPTION_WEIGHTS``, torch hub.

    An explicit argument or env var is the only place looked at (a wrong configured path
    must not be papered over by another file). Returns ``(found or None, paths looked at)``.
    """
    if weights_path is not None:
        candidates = [Path(weights_path)]
    elif os.environ.get(INCEPTION_ENV):
        candidates = [Path(os.environ[INCEPTION_ENV])]
    else:
        candidates = [Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE]
    for c in candidates:
        if _check_weights_file(c) is None:
            return c, candidates
    return None, candidates


def fd_kd_with_extractor(samples: Any, reference: Any, *, feature_extractor: str,
                         weights_path: str | os.PathLike, names: tuple[str, str],
                         extractor_label: str, reference_key: str | None = None,
                         cache_root: str | os.PathLike | None = None,
                         kid_subset_size: int = 1000, kid_subsets: int = 100, seed: int = 0,
                         batch_size: int = 64, feature_layer: str | None = None,
                         ) -> list[dict[str, Any]]:
    """Frechet and kernel distances between two image sets, computed by torch-fidelity.

    Args:
        samples: generated images, (N, C, H, W) float in [-1, 1] or an ``ImageData``.
        reference: real images, same form. Its features are cached by torch-fidelity
            under ``<cache_root>/fidelity`` keyed by ``reference_key`` (default: a hash of
            the uint8 reference images) and the weights' sha256.
        feature_extractor: a name registered with ``torch_fidelity.register_feature_extractor``.
        weights_path: weights file handed to the extractor (must exist).
        names: reported metric names, e.g. ``("FID", "KID")`` or ``("FD-digits", "KD-digits")``.
        extractor_label: what the results record as ``extractor``.
        kid_subset_size: KID subset size; lowered to the smaller set size if needed.
        feature_layer: the extractor's feature to use; None = its default for FID/KID.

    Returns:
        ``[fd_result, kd_result]``; KD also carries ``std`` over the KID subsets. FD is
        clipped at 0 (torch-fidelity's eigenvalue route can return -1e-20 for identical
        sets); KD is an unbiased estimate and may be slightly negative, so it is not.
    """
    import torch_fidelity  # heavy; only when a metric is computed

    weights_path = Path(weights_path)
    problem = _check_weights_file(weights_path)
    if problem is not None:
        raise FileNotFoundError(f"weights file {weights_path} {problem}")
    ds1, ds2 = UInt8Images(samples), UInt8Images(reference)
    n1, n2 = len(ds1), len(ds2)
    if min(n1, n2) < 2:
        raise ValueError(f"FD/KD need at least 2 images per set, got {n1} and {n2}")
    if ds1.data.shape[1:] != ds2.data.shape[1:]:
        raise ValueError(f"samples {tuple(ds1.data.shape[1:])} and reference "
                         f"{tuple(ds2.data.shape[1:])} differ in shape")
    sha = file_sha256(weights_path)
    subset = min(kid_subset_size, n1, n2)
    key = f"{reference_key or content_key(ds2.data)}-w{sha[:16]}"
    kwargs: dict[str, Any] = dict(
        input1=ds1, input2=ds2, fid=True, kid=True, feature_extractor=feature_extractor,
        feature_extractor_weights_path=str(weights_path), cuda=torch.cuda.is_available(),
        batch_size=batch_size, kid_subset_size=subset, kid_subsets=kid_subsets, rng_seed=seed,
        cache=True, cache_root=str(_cache_root(cache_root) / "fidelity"),
        input2_cache_name=key, verbose=False, save_cpu_ram=True, datasets_download=False,
    )
    if feature_layer is not None:
        kwargs.update(feature_layer_fid=feature_layer, feature_layer_kid=feature_layer)
    out = torch_fidelity.calculate_metrics(**kwargs)
    common = dict(n=n1, extractor=extractor_label, weights_sha256=sha, reference_n=n2,
                  weights_path=str(weights_path), reference_cache_key=key,
                  feature_layer=feature_layer or "default")
    return [
        result(names[0], max(0.0, out[torch_fidelity.KEY_METRIC_FID]), **common),
        result(names[1], out[torch_fidelity.KEY_METRIC_KID_MEAN], **common,
               std=float(out[torch_fidelity.KEY_METRIC_KID_STD]),
               kid_subset_size=subset, kid_subsets=kid_subsets),
    ]


def _load_inception(path: Path) -> str | None:
    """Build torch-fidelity's InceptionV3 from ``path`` (strict); the error text or None."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    try:
        FeatureExtractorInceptionV3(INCEPTION_NAME, ["2048"],
                                    feature_extractor_weights_path=str(path))
    except Exception as err:  # a wrong or truncated file: report it, never substitute
        return f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
    return None


def inception_fid_kid(samples: Any, reference: Any, *,
                      weights_path: str | os.PathLike | None = None,
                      reference_key: str | None = None,
                      cache_root: str | os.PathLike | None = None,
                      kid_subset_size: int = 1000, kid_subsets: int = 100, seed: int = 0,
                      batch_size: int = 64, feature_layer: str = "2048",
                      ) -> list[dict[str, Any]]:
    """FID and KID with torch-fidelity's InceptionV3, or unavailable.

    Weights are looked up by :func:`find_inception_weights`; a missing or unloadable file
    gives two ``unavailable`` results naming the path, never another network. The standard
    FID uses the 2048-d pool features; ``feature_layer`` ("64", "192", "768") is for quick
    checks only and is recorded in the results.
    """
    n = int(as_images(samples).shape[0])
    path, looked = find_inception_weights(weights_path)
    if path is None:
        where = ", ".join(str(p) for p in looked)
        reason = (f"unavailable: Inception weights not found at {where} (pass weights_path or "
                  f"set {INCEPTION_ENV})")
        return [unavailable(m, reason, n=n, extractor=INCEPTION_NAME) for m in ("FID", "KID")]
    error = _load_inception(path)
    if error is not None:
        reason = f"unavailable: Inception weights at {path} could not be loaded ({error})"
        return [unavailable(m, reason, n=n, extractor=INCEPTION_NAME,
                            weights_sha256=file_sha256(path)) for m in ("FID", "KID")]
    return fd_kd_with_extractor(
        samples, reference, feature_extractor=INCEPTION_NAME, weights_path=path,
        names=("FID", "KID"), extractor_label=INCEPTION_NAME, reference_key=reference_key,
        cache_root=cache_root, kid_subset_size=kid_subset_size, kid_subsets=kid_subsets,
        seed=seed, batch_size=batch_size, feature_layer=feature_layer)
