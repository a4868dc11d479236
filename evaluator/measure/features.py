"""In-project feature extractor, so sample quality is measurable offline (``FD-<dataset>``).

No pretrained network can be downloaded here, so a small CNN is trained on the dataset
itself, deterministically (fixed seed, fixed steps, CPU), and registered with torch-fidelity
as ``archsearch-<dataset>``; FD and KD are then computed *by torch-fidelity* on its
features. The numbers are only comparable between runs that used the same extractor
weights, which is why every result records their sha256; they are reported as
``FD-<dataset>`` / ``KD-<dataset>``, never as FID.

Objective (documented choice):

- labelled data (e.g. digits): a classifier; the features are its penultimate layer (64-d,
  taken before the ReLU so no dimension is dead, which keeps the covariance well posed).
  This mirrors FID's use of a classifier's pool features (Heusel et al. 2017).
- unlabelled data (e.g. patches32): an auto-encoder; the features are its 64-d bottleneck.
  A reconstruction objective keeps everything the decoder needs - edges, texture, colour -
  so noise moves the features far; contrastive objectives would need augmentations chosen
  to be invariant to exactly the artefacts we want to measure. Measured limitation: on
  patches32 the 64-d bottleneck is nearly blind to mild blur (sigma 1 px; an image-gradient
  loss term did not change that), so blur is left to the spectral metrics there.

Trained weights are cached under ``<cache root>/extractors`` keyed by the dataset hash, the
extractor version and the training recipe.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch_fidelity import register_feature_extractor
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from tqdm.auto import trange

from evaluator.store.cache import cache_root as _cache_root
from evaluator.store.cache import file_sha256
from evaluator.measure.fidelity import as_images, fd_kd_with_extractor, to_uint8_rgb

EXTRACTOR_VERSION = 1  # bump when the network or the recipe changes: old caches stop matching
FEATURE = "feat"


class FeatureCNN(nn.Module):
    """Conv encoder -> 64-d features, with a classifier or an auto-encoder head.

    The encoder halves the resolution with stride-2 convs until it is at most 4x4, then a
    linear layer gives the features.

    Args:
        in_channels: image channels (1 or 3).
        image_size: (H, W) of the images.
        feature_dim: size of the feature vector.
        width: channels of the first conv; doubled at each downsampling, capped at 4x.
        num_classes: > 0 for a classifier head, 0 for an auto-encoder head.
    """

    def __init__(self, *, in_channels: int, image_size: tuple[int, int], feature_dim: int = 64,
                 width: int = 32, num_classes: int = 0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1), nn.SiLU()]
        (h, w), ch = image_size, width
        while max(h, w) > 4:
            out = min(ch * 2, 4 * width)
            layers += [nn.Conv2d(ch, out, 3, stride=2, padding=1), nn.SiLU()]
            h, w, ch = (h + 1) // 2, (w + 1) // 2, out
        self.encoder = nn.Sequential(*layers)
        self.to_features = nn.Linear(ch * h * w, feature_dim)
        self.image_shape = (in_channels, *image_size)
        n_out = num_classes if num_classes > 0 else in_channels * image_size[0] * image_size[1]
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(feature_dim, 256), nn.ReLU(),
                                  nn.Linear(256, n_out))
        self.num_classes = num_classes

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) float in [-1, 1] -> (B, feature_dim)
        return self.to_features(self.encoder(x).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.features(x))
        if self.num_classes > 0:
            return out  # (B, num_classes) logits
        return torch.tanh(out).view(-1, *self.image_shape)  # (B, C, H, W) reconstruction


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe; part of the cache key, so any change retrains."""

    steps: int = 400
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    feature_dim: int = 64
    width: int = 16


@dataclass(frozen=True)
class Extractor:
    """A trained extractor on disk: what FD/KD need and what results record."""

    name: str  # torch-fidelity registry name, "archsearch-<dataset>"
    path: Path
    sha256: str
    kind: str  # "classifier" | "autoencoder"
    dataset: str
    dataset_hash: str
    meta: dict[str, Any] = field(default_factory=dict)

    def load(self) -> FeatureCNN:
        """The network in eval mode on CPU."""
        return load_network(self.path)


@contextlib.contextmanager
def _deterministic(seed: int) -> Iterator[torch.Generator]:
    """Seeded, deterministic, single-threaded region; restores the global state afterwards.

    One thread makes float reductions order-stable across machines with different core
    counts, and on a small net it is also the fastest (no thread sync per tiny op).
    """
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield torch.Generator().manual_seed(seed)
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)
        torch.set_num_threads(prev_threads)


def _quantise(images: torch.Tensor) -> torch.Tensor:
    """Round to the uint8 grid torch-fidelity will feed, so training sees the same inputs."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


def _labels_of(data: Any) -> torch.Tensor | None:
    labels = getattr(data, "labels", None)
    if labels is None:
        return None
    labels = torch.as_tensor(labels).long().flatten()
    return labels if labels.unique().numel() > 1 else None


def train_network(images: torch.Tensor, labels: torch.Tensor | None = None,
                  config: TrainConfig = TrainConfig(), progress: bool = False,
                  ) -> tuple[FeatureCNN, dict[str, Any]]:
    """Train a :class:`FeatureCNN` on CPU: a classifier if ``labels`` else an auto-encoder.

    ``progress`` shows a tqdm bar over the training steps. Deterministic for a given torch build and thread count (fixed seed, fixed number of
    steps, batches drawn from a seeded generator, deterministic algorithms on).
    """
    x = _quantise(as_images(images).cpu())  # (N, C, H, W) float32
    if labels is not None and labels.shape[0] != x.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels for {x.shape[0]} images")
    num_classes = int(labels.max()) + 1 if labels is not None else 0
    with _deterministic(config.seed) as gen:
        net = FeatureCNN(in_channels=x.shape[1], image_size=tuple(x.shape[-2:]),
                         feature_dim=config.feature_dim, width=config.width,
                         num_classes=num_classes)
        opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.steps)
        net.train()
        for _ in trange(config.steps, desc="feature extractor", leave=False,
                        disable=not progress):
            idx = torch.randint(0, x.shape[0], (min(config.batch_size, x.shape[0]),), generator=gen)
            out = net(x[idx])
            loss = F.cross_entropy(out, labels[idx]) if num_classes else F.mse_loss(out, x[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    return net, {"final_loss": float(loss.detach()), **_train_quality(net, x, labels)}


@torch.no_grad()
def _train_quality(net: FeatureCNN, x: torch.Tensor, labels: torch.Tensor | None) -> dict:
    out = torch.cat([net(b) for b in x.split(512)])
    if labels is not None:
        return {"train_accuracy": float((out.argmax(1) == labels).float().mean())}
    return {"train_recon_mse": float(F.mse_loss(out, x))}


def save_network(net: FeatureCNN, path: Path, meta: dict[str, Any]) -> None:
    """Atomically write ``{"config", "state_dict", "meta"}`` (loadable with weights_only)."""
    cfg = {"in_channels": net.image_shape[0], "image_size": list(net.image_shape[1:]),
           "feature_dim": net.to_features.out_features,
           "width": net.encoder[0].out_channels, "num_classes": net.num_classes}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    torch.save({"config": cfg, "state_dict": net.state_dict(), "meta": meta}, tmp)
    os.replace(tmp, path)


def load_network(path: str | os.PathLike) -> FeatureCNN:
    """Rebuild a saved :class:`FeatureCNN` (strict state-dict load), eval mode."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    cfg = dict(ckpt["config"])
    cfg["image_size"] = tuple(cfg["image_size"])
    net = FeatureCNN(**cfg)
    net.load_state_dict(ckpt["state_dict"])
    return net.eval().requires_grad_(False)


def _dataset_hash(data: Any) -> str:
    h = getattr(data, "hash", None)
    if h:
        return str(h)
    return hashlib.sha256(as_images(data).float().contiguous().numpy().tobytes()).hexdigest()


def extractor_for(data: Any, *, name: str | None = None,
                  cache_root: str | os.PathLike | None = None,
                  config: TrainConfig = TrainConfig(), progress: bool = False) -> Extractor:
    """The trained extractor for a dataset: loaded from the cache, or trained and cached
    (with a progress bar when ``progress``).

    Args:
        data: an ``ImageData`` (``.images`` in [-1, 1], ``.labels``, ``.hash``, ``.name``)
            or an (N, C, H, W) tensor (then unlabelled, and ``name`` is required).
        name: dataset name for the metric names; defaults to ``data.name``.
        cache_root: cache folder; default ``$ARCHSEARCH_CACHE`` or ``~/.cache/archsearch``.
        config: training recipe.
    """
    name = name or getattr(data, "name", None)
    if not name:
        raise ValueError("extractor_for needs a dataset name (data.name or name=...)")
    labels = _labels_of(data)
    kind = "classifier" if labels is not None else "autoencoder"
    dhash = _dataset_hash(data)
    recipe = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode()).hexdigest()[:8]
    path = (_cache_root(cache_root) / "extractors"
            / f"{name}-{dhash[:16]}-v{EXTRACTOR_VERSION}-{kind}-{recipe}.pt")
    if not path.is_file():
        net, quality = train_network(as_images(data), labels, config, progress)
        meta = {"dataset": name, "dataset_hash": dhash, "kind": kind,
                "version": EXTRACTOR_VERSION, "config": asdict(config), **quality}
        save_network(net, path, meta)
    meta = torch.load(path, map_location="cpu", weights_only=True)["meta"]
    ensure_registered(f"archsearch-{name}")
    return Extractor(name=f"archsearch-{name}", path=path, sha256=file_sha256(path), kind=kind,
                     dataset=name, dataset_hash=dhash, meta=meta)


class ArchsearchFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity adapter for a saved :class:`FeatureCNN`.

    torch-fidelity builds it as ``cls(name, features_list, **calculate_metrics_kwargs)``;
    the weights come from ``feature_extractor_weights_path`` (required: no default network).
    Inputs are uint8 (B, 3, H, W) as torch-fidelity feeds them; a one-channel extractor
    averages the channels, which undoes the grey -> RGB repeat exactly.
    """

    def __init__(self, name: str, features_list: list[str],
                 feature_extractor_weights_path: str | None = None, **kwargs: Any) -> None:
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise ValueError(f"feature extractor {name!r} needs feature_extractor_weights_path")
        self.net = load_network(feature_extractor_weights_path)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return (FEATURE,)

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return FEATURE

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        raise NotImplementedError("archsearch extractors are not compiled")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected uint8 (B, 3, H, W), got {x.dtype} {tuple(x.shape)}")
        c, h, w = self.net.image_shape
        if tuple(x.shape[-2:]) != (h, w):
            raise ValueError(f"extractor {self.name!r} was trained on {h}x{w} images, "
                             f"got {x.shape[-2]}x{x.shape[-1]} (no silent resizing)")
        x = x.float() / 127.5 - 1  # (B, 3, H, W) float in [-1, 1]
        if c == 1:
            x = x.mean(dim=1, keepdim=True)
        return (self.net.features(x).float(),)  # (B, feature_dim)


def ensure_registered(name: str) -> None:
    """Register ``name`` with torch-fidelity (idempotent; one class serves every dataset)."""
    if name not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(name, ArchsearchFeatureExtractor)
    elif FEATURE_EXTRACTORS_REGISTRY[name] is not ArchsearchFeatureExtractor:
        raise ValueError(f"torch-fidelity extractor {name!r} is registered to another class")


@torch.no_grad()
def extract_features(extractor: Extractor, images: Any) -> torch.Tensor:
    """(N, feature_dim) features of images, computed the way torch-fidelity does (via uint8)."""
    fe = ArchsearchFeatureExtractor(extractor.name, [FEATURE],
                                    feature_extractor_weights_path=str(extractor.path))
    return torch.cat([fe(b)[0] for b in to_uint8_rgb(as_images(images)).split(512)])


def fd_kd(samples: Any, reference: Any, *, extractor: Extractor | None = None,
          cache_root: str | os.PathLike | None = None, kid_subset_size: int = 1000,
          kid_subsets: int = 100, seed: int = 0, batch_size: int = 256,
          ) -> list[dict[str, Any]]:
    """``FD-<dataset>`` and ``KD-<dataset>`` of samples against reference data.

    Args:
        samples: generated images, (N, C, H, W) in [-1, 1] (or an ``ImageData``).
        reference: the real data, an ``ImageData`` or tensor; torch-fidelity caches its
            features keyed by a hash of its content and the extractor's sha256.
        extractor: a trained extractor; default: :func:`extractor_for` ``(reference)``.
            Pass the training split's extractor to score against a test split.
    """
    extractor = extractor or extractor_for(reference, cache_root=cache_root)
    ensure_registered(extractor.name)
    results = fd_kd_with_extractor(
        samples, reference, feature_extractor=extractor.name, weights_path=extractor.path,
        names=(f"FD-{extractor.dataset}", f"KD-{extractor.dataset}"),
        extractor_label=f"{extractor.name} (in-project {extractor.kind}, v{EXTRACTOR_VERSION})",
        cache_root=cache_root, kid_subset_size=kid_subset_size,
        kid_subsets=kid_subsets, seed=seed, batch_size=batch_size)
    for r in results:
        r["extractor_dataset_hash"] = extractor.dataset_hash
    return results
