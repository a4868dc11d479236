"""The dataset registry: :class:`ImageData`, :func:`register_dataset`, :func:`load_dataset`
(the spec checks, :func:`~evaluator.data.datasets.dataset_problems`, live with the loaders).

Loaders register themselves from :mod:`evaluator.data.datasets` (images) and
:mod:`evaluator.data.spectro` (audio spectrograms); import ``evaluator.data.datasets`` to get
the filled registry. Importing this module is cheap (no torch, numpy, sklearn or skimage).

Splits are fixed (seeded with :data:`SPLIT_SEED`, not with ``seed``) so that every run is
evaluated on the same test images; ``seed`` only changes procedurally generated data.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from archspec.errors import UserError
from blocks.registry import Entry, Registry
from evaluator.store.cache import cache_root

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

SPLITS = ("train", "test")
SPLIT_SEED = 0          # fixed: test sets must not change between runs
TEST_FRACTION = 0.2

DATASETS: Registry[Entry] = Registry("dataset")


@dataclass(eq=False)
class ImageData:
    """A loaded dataset split.

    Attributes:
        images: (N, C, H, W) float32 in [-1, 1].
        labels: (N,) int64 class labels, or ``None``.
        name: registered dataset name.
        split: ``"train"`` or ``"test"``.
        meta: provenance (e.g. patch boxes, source folder); free-form.
    """

    images: "torch.Tensor"
    labels: "torch.Tensor | None"
    name: str
    split: str
    meta: dict[str, Any] = field(default_factory=dict)
    _hash: str | None = field(default=None, repr=False)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def hash(self) -> str:
        """sha256 (first 16 hex digits) of name, split, shape and the image bytes; cached."""
        if self._hash is None:
            h = hashlib.sha256(f"{self.name}/{self.split}/{tuple(self.images.shape)}".encode())
            h.update(self.images.detach().cpu().contiguous().numpy().tobytes())
            self._hash = h.hexdigest()[:16]
        return self._hash


def cache_dir() -> Path:
    """The toolkit's cache root; see :func:`evaluator.store.cache.cache_root`."""
    return cache_root()


def register_dataset(name: str, *, image_shape: tuple[int, int, int] | None,
                     needs_root: bool = False, sized_channels: int | None = None,
                     root_files: tuple[Callable, str, str] | None = None) -> Callable:
    """Register ``loader(split, root, download, seed, **options) -> ImageData``.

    Args:
        sized_channels: the loader takes ``size`` and gives (sized_channels, size, size)
            images; specs pass ``image.size``.
        root_files: ``(finder, noun, detail)`` for a ``needs_root`` dataset that reads no
            images: ``finder(folder)`` yields its files, e.g. ``(iter_wavs, "WAV files",
            "(.wav)")``; validation refuses a ``train.data_root`` where it finds none.
    """

    def deco(fn: Callable) -> Callable:
        doc = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        DATASETS.add(name, Entry(name=name, factory=fn, doc=doc,
                                 extra={"image_shape": image_shape, "needs_root": needs_root,
                                        "sized_channels": sized_channels,
                                        "root_files": root_files}))
        return fn

    return deco


def load_dataset(name: str, *, split: str = "train", root: str | None = None,
                 download: bool = False, seed: int = 0, **options: Any) -> ImageData:
    """Load one split of a registered dataset (cached in-process).

    Args:
        name: registered dataset name (``DATASETS.names()``).
        split: ``"train"`` or ``"test"``.
        root: data folder for ``cifar10`` / ``folder``.
        download: allow ``cifar10`` to download (needs network).
        seed: generator seed for procedural data (``synthetic8``); splits are fixed.
        **options: loader-specific keywords (``folder``, ``wav_folder``: ``size``;
            ``synthetic8``, ``spectro32``: ``n``).

    Raises:
        RegistryError: unknown dataset name (with close-match suggestions).
        UserError: unknown split, missing data folder, unreadable data.
    """
    entry = DATASETS.get(name)
    if split not in SPLITS:
        raise UserError(f"dataset {name!r}: unknown split {split!r} (expected one of {SPLITS})")
    key = tuple(sorted(options.items()))
    return _load_cached(name, split, None if root is None else str(root), bool(download),
                        int(seed), key, entry.factory)


def spec_dataset(spec: Any, split: str = "train") -> ImageData:
    """The dataset a spec trains on, read as ``dataset_problems`` checked it: the
    spec's ``train.data_root`` and, for ``folder``, images resized to ``image.size``."""
    name, root = spec.train.dataset, spec.train.data_root
    sized = DATASETS.get(name).extra.get("sized_channels")
    options = {"size": spec.image.size} if sized else {}
    return load_dataset(name, split=split, root=root, **options)


@functools.lru_cache(maxsize=16)
def _load_cached(name: str, split: str, root: str | None, download: bool, seed: int,
                 options: tuple, factory: Callable) -> ImageData:
    return factory(split=split, root=root, download=download, seed=seed, **dict(options))


def _split_indices(n: int, split: str, labels: "np.ndarray | None" = None) -> "np.ndarray":
    """Fixed seeded 80/20 split of ``range(n)``; stratified by label when given."""
    import numpy as np

    rng = np.random.default_rng(SPLIT_SEED)
    groups = [np.arange(n)] if labels is None else [np.flatnonzero(labels == c)
                                                   for c in np.unique(labels)]
    picked = []
    for idx in groups:
        idx = rng.permutation(idx)
        n_test = int(round(len(idx) * TEST_FRACTION))
        picked.append(idx[:n_test] if split == "test" else idx[n_test:])
    return np.sort(np.concatenate(picked))


def _to_tensor(images: "np.ndarray", low: float, high: float) -> "torch.Tensor":
    """(N, C, H, W) values in [low, high] -> float32 tensor in [-1, 1]."""
    import torch

    x = torch.from_numpy(images.astype("float32"))
    return ((x - low) * (2.0 / (high - low)) - 1.0).clamp_(-1.0, 1.0).contiguous()
