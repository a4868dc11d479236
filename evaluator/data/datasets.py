"""Image datasets, all usable offline, as float32 tensors in [-1, 1].

Registered names (``DATASETS``):

- ``synthetic8``: procedural 8x8 grey images with an exactly known expected power spectrum
  (see :func:`synthetic8_expected_power`).
- ``digits``: scikit-learn's 8x8 handwritten digits (ships inside the wheel).
- ``patches32``: 32x32 RGB patches cut from colour photographs shipped inside scikit-image.
- ``cifar10``: CIFAR-10 through torchvision from a local folder (downloads only if asked).
- ``folder``: any folder of images, resized and centre-cropped to a square RGB size.
- ``spectro32``, ``wav_folder``: audio spectrograms, synthesised or from WAV files (in
  :mod:`evaluator.data.spectro`, imported at the end of this module to register them).

Importing this module is cheap (no torch, numpy, sklearn or skimage): the spec validator
imports it to check dataset names. Heavy libraries are imported inside the loaders.

Splits are fixed (seeded with :data:`SPLIT_SEED`, not with ``seed``) so that every run is
evaluated on the same test images; ``seed`` only changes procedurally generated data.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archspec.errors import UserError
from archspec.errors import Problem
from blocks.registry import RegistryError
from evaluator.data.registry import (DATASETS, SPLIT_SEED, SPLITS, TEST_FRACTION,  # noqa: F401
                                     ImageData, _split_indices, _to_tensor, cache_dir,
                                     load_dataset, register_dataset, spec_dataset)

if TYPE_CHECKING:
    import numpy as np
    import torch

# --------------------------------------------------------------------------- synthetic8

SYN_SIZE = 8
SYN_N = {"train": 4096, "test": 1024}
# Frequencies (u, v) of the gratings: integer, so each grating is exactly periodic on the
# 8x8 grid and puts all its energy in one rfft2 bin; radius 1..3, none self-conjugate.
SYN_GRATINGS = ((0, 1), (0, 2), (0, 3), (1, 0), (2, 0), (3, 0), (1, 1), (1, -1),
                (2, 1), (2, -1), (1, 2), (1, -2), (2, 2), (2, -2))
SYN_GRATING_AMP = (0.15, 0.35)   # uniform amplitude range
SYN_BLOB_AMP = (0.15, 0.35)      # uniform amplitude range (peak value before wrap-around)
SYN_BLOB_SIGMAS = (0.8, 1.2)     # chosen uniformly
SYN_NOISE_ALPHA = 2.0            # power-law exponent: E|X_k|^2 proportional to |k|^-alpha
SYN_NOISE_BOUND = 0.25           # max |noise| at any pixel (triangle inequality)


def _syn_noise_amplitudes() -> "np.ndarray":
    """Fixed magnitudes c_k of the power-law noise on the (8, 5) rfft2 grid (ortho).

    c_k^2 is proportional to |k|^-alpha (|k| in cycles per image, DC excluded), scaled so
    that the largest possible pixel value, sum_k m_k c_k / 8 (m_k = 2 for columns whose
    conjugate is folded away, else 1), equals :data:`SYN_NOISE_BOUND`.
    """
    import numpy as np

    n = SYN_SIZE
    fy = np.fft.fftfreq(n) * n
    fx = np.fft.rfftfreq(n) * n
    r = np.hypot(fy[:, None], fx[None, :])
    c = np.zeros_like(r)
    c[r > 0] = r[r > 0] ** (-SYN_NOISE_ALPHA / 2)
    mult = np.full(r.shape, 2.0)
    mult[:, 0] = mult[:, -1] = 1.0
    return c * (SYN_NOISE_BOUND * n / float((mult * c).sum()))


def _syn_blob(sigma: float) -> "np.ndarray":
    """Periodic (wrapped) Gaussian centred at pixel (0, 0), peak 1 before wrap-around."""
    import numpy as np

    d = np.minimum(np.arange(SYN_SIZE), SYN_SIZE - np.arange(SYN_SIZE)).astype(float)
    return np.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2 * sigma**2))


def synthetic8_expected_power() -> "np.ndarray":
    """Expected power E|X_k|^2 of ``synthetic8`` on the (8, 5) ortho rfft2 grid.

    Derived from the generating process (not from samples): the three components are
    independent and zero-mean (random phase / random sign), so their powers add:

    - grating a cos(2 pi (u y + v x)/8 + phi) puts |X|^2 = 16 a^2 in bin (u, v) (or its
      conjugate bin); E[a^2] for a ~ U(lo, hi) is (lo^2 + lo hi + hi^2)/3, each of the
      14 frequencies is drawn with probability 1/14;
    - blob s a B_sigma(y - cy, x - cx) with integer centre: a circular shift keeps
      |X_k| = a |B_sigma,k|, so E|X_k|^2 = E[a^2] mean_sigma |B_sigma,k|^2;
    - noise: fixed magnitudes c_k with uniform random phases (random signs on the four
      self-conjugate bins), so E|X_k|^2 = c_k^2.
    """
    import numpy as np

    n = SYN_SIZE

    def ea2(lo: float, hi: float) -> float:
        return (lo * lo + lo * hi + hi * hi) / 3.0

    power = np.zeros((n, n // 2 + 1))
    for u, v in SYN_GRATINGS:
        # v > 0: one bin (its conjugate is folded away); v == 0: column 0 keeps both.
        bins = [(u % n, v)] if v > 0 else [((-u) % n, -v)] if v < 0 else [(u, 0), (-u % n, 0)]
        for uu, vv in bins:
            power[uu, vv] += (n / 2) ** 2 * ea2(*SYN_GRATING_AMP) / len(SYN_GRATINGS)
    blob_pow = np.mean([np.abs(np.fft.rfft2(_syn_blob(s), norm="ortho")) ** 2
                        for s in SYN_BLOB_SIGMAS], axis=0)
    power += ea2(*SYN_BLOB_AMP) * blob_pow
    power += _syn_noise_amplitudes() ** 2
    return power


def synthetic8_generate(n: int, seed: int) -> "np.ndarray":
    """``n`` synthetic8 images, (n, 1, 8, 8) float64 in [-1, 1] (no clipping needed).

    Each image is grating + blob + noise (see :func:`synthetic8_expected_power`). The
    amplitude bounds add up to 0.35 + 0.35 + 0.25 < 1, so values never leave [-1, 1]
    and the spectrum is exactly the one derived there.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    size = SYN_SIZE
    yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    freqs = np.array(SYN_GRATINGS)[rng.integers(len(SYN_GRATINGS), size=n)]
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    amp = rng.uniform(*SYN_GRATING_AMP, size=(n, 1, 1))
    arg = 2 * np.pi * (freqs[:, 0, None, None] * yy + freqs[:, 1, None, None] * xx) / size
    grating = amp * np.cos(arg + phase)

    blobs = np.stack([_syn_blob(s) for s in SYN_BLOB_SIGMAS])
    which = rng.integers(len(SYN_BLOB_SIGMAS), size=n)
    shift = rng.integers(size, size=(n, 2))
    sign = rng.choice([-1.0, 1.0], size=n)
    b_amp = rng.uniform(*SYN_BLOB_AMP, size=n)
    blob = np.stack([np.roll(blobs[w], tuple(s), axis=(0, 1)) for w, s in zip(which, shift)])
    blob *= (sign * b_amp)[:, None, None]

    c = _syn_noise_amplitudes()
    spec = c * np.exp(1j * rng.uniform(0, 2 * np.pi, size=(n,) + c.shape))
    for col in (0, size // 2):   # these columns are full: make them Hermitian themselves
        spec[:, size // 2 + 1:, col] = np.conj(spec[:, size // 2 - 1:0:-1, col])
    for r_, c_ in ((0, 0), (0, size // 2), (size // 2, 0), (size // 2, size // 2)):
        spec[:, r_, c_] = c[r_, c_] * rng.choice([-1.0, 1.0], size=n)
    noise = np.fft.irfft2(spec, s=(size, size), norm="ortho")
    return (grating + blob + noise)[:, None]


@register_dataset("synthetic8", image_shape=(1, 8, 8))
def _synthetic8(split: str, root: str | None, download: bool, seed: int,
                n: int | None = None) -> ImageData:
    """Procedural 8x8 grey images (gratings + blobs + 1/f^2 noise) with a known spectrum."""
    import torch

    # Train and test use disjoint generator streams of the same process.
    count = SYN_N[split] if n is None else int(n)
    images = synthetic8_generate(count, seed=(seed, 0 if split == "train" else 1))
    return ImageData(torch.from_numpy(images).float(), None, "synthetic8", split,
                     meta={"seed": seed, "n": count})


# --------------------------------------------------------------------------- digits

@register_dataset("digits", image_shape=(1, 8, 8))
def _digits(split: str, root: str | None, download: bool, seed: int) -> ImageData:
    """scikit-learn's 8x8 handwritten digits (1797 images, values 0..16), 80/20 split."""
    import torch
    from sklearn.datasets import load_digits

    d = load_digits()
    idx = _split_indices(len(d.target), split, labels=d.target)
    images = d.images[idx][:, None]                       # (N, 1, 8, 8) in 0..16
    labels = torch.from_numpy(d.target[idx].astype("int64"))
    return ImageData(_to_tensor(images, 0.0, 16.0), labels, "digits", split,
                     meta={"indices": idx.tolist()})


# --------------------------------------------------------------------------- patches32

# Colour photographs that load from the scikit-image wheel itself (no pooch download).
PATCH_IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry",
                "hubble_deep_field")
PATCH = 32


def patch_boxes() -> list[tuple[str, int, int, str]]:
    """Every patch as ``(image, top, left, split)``.

    Each image is tiled into non-overlapping 32x32 tiles (the grid is centred, leftover
    border dropped); a fixed seeded 20% of each image's tiles are test tiles. Tiles never
    overlap, so no test pixel is ever seen in training.
    """
    import numpy as np
    from skimage import data

    rng = np.random.default_rng(SPLIT_SEED)
    boxes = []
    for name in PATCH_IMAGES:
        h, w = getattr(data, name)().shape[:2]
        oy, ox = (h % PATCH) // 2, (w % PATCH) // 2
        tiles = [(oy + i * PATCH, ox + j * PATCH)
                 for i in range(h // PATCH) for j in range(w // PATCH)]
        test = set(rng.permutation(len(tiles))[: int(round(len(tiles) * TEST_FRACTION))])
        boxes += [(name, y, x, "test" if k in test else "train")
                  for k, (y, x) in enumerate(tiles)]
    return boxes


@register_dataset("patches32", image_shape=(3, 32, 32))
def _patches32(split: str, root: str | None, download: bool, seed: int) -> ImageData:
    """32x32 RGB patches tiled from scikit-image's colour photographs, split by tile."""
    import numpy as np
    from skimage import data

    boxes = [b for b in patch_boxes() if b[3] == split]
    images = {name: getattr(data, name)() for name in PATCH_IMAGES}
    patches = np.stack([images[n][y:y + PATCH, x:x + PATCH, :3] for n, y, x, _ in boxes])
    tensor = _to_tensor(patches.transpose(0, 3, 1, 2), 0.0, 255.0)
    return ImageData(tensor, None, "patches32", split,
                     meta={"boxes": [b[:3] for b in boxes]})


# --------------------------------------------------------------------------- cifar10

CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")


def cifar10_root(root: str | None = None) -> Path:
    """``root``, else ``$ARCHSEARCH_CIFAR10``, else ``<cache_dir()>/cifar10``."""
    if root:
        return Path(root).expanduser()
    env = os.environ.get("ARCHSEARCH_CIFAR10")
    return Path(env).expanduser() if env else cache_dir() / "cifar10"


@register_dataset("cifar10", image_shape=(3, 32, 32))
def _cifar10(split: str, root: str | None, download: bool, seed: int) -> ImageData:
    """CIFAR-10 (32x32 RGB) through torchvision from a local folder."""
    import numpy as np
    import torch

    folder = cifar10_root(root)
    need = [f for f in CIFAR_FILES if not (folder / "cifar-10-batches-py" / f).is_file()]
    if need and not download:
        raise UserError(
            f"cifar10 not found in {folder}: expected {folder}/cifar-10-batches-py/ with "
            f"data_batch_1..5, test_batch, batches.meta (missing: {', '.join(need)}). "
            "Pass root=..., set ARCHSEARCH_CIFAR10, or allow download=True when online.")
    from torchvision.datasets import CIFAR10

    try:
        ds = CIFAR10(str(folder), train=(split == "train"), download=download)
    except RuntimeError as err:  # torchvision's md5 check: "not found or corrupted"
        raise UserError(f"cifar10 in {folder} could not be loaded: {err}") from None
    images = np.asarray(ds.data).transpose(0, 3, 1, 2)     # (N, 3, 32, 32) uint8
    labels = torch.as_tensor(ds.targets, dtype=torch.int64)
    return ImageData(_to_tensor(images, 0.0, 255.0), labels, "cifar10", split,
                     meta={"root": str(folder), "classes": list(ds.classes)})


# --------------------------------------------------------------------------- folder

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _iter_images(folder: Path):
    return (p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _load_square_rgb(path: Path, size: int) -> "np.ndarray":
    """Resize the short side to ``size`` (bicubic), centre-crop, RGB; (3, size, size) uint8."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        im = im.resize((nw, nh), Image.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        im = im.crop((left, top, left + size, top + size))
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)


@register_dataset("folder", image_shape=None, needs_root=True, sized_channels=3)
def _folder(split: str, root: str | None, download: bool, seed: int,
            size: int = 32) -> ImageData:
    """Any image folder: RGB, resized and centre-cropped to ``size`` (default 32).

    Uses ``root/train`` and ``root/test`` when both exist, otherwise a fixed seeded 80/20
    split of every image under ``root`` (sorted by path).
    """
    import numpy as np

    if not root:
        raise UserError("dataset 'folder' needs root=<folder of images>")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise UserError(f"dataset 'folder': {base} is not a folder")
    if (base / "train").is_dir() and (base / "test").is_dir():
        files = _image_files(base / split)
    else:
        files = _image_files(base)
        files = [files[i] for i in _split_indices(len(files), split)] if files else []
    if not files:
        raise UserError(f"dataset 'folder': no images ({', '.join(IMAGE_SUFFIXES)}) "
                        f"for split {split!r} under {base}")
    try:
        images = np.stack([_load_square_rgb(p, size) for p in files])
    except OSError as err:
        raise UserError(f"dataset 'folder': cannot read an image under {base}: {err}") from None
    return ImageData(_to_tensor(images, 0.0, 255.0), None, "folder", split,
                     meta={"root": str(base), "files": [str(p) for p in files], "size": size})


# --------------------------------------------------------------------------- checks

def dataset_problems(spec: Any) -> list[Problem]:
    """The spec's dataset: a known name, images of the spec's shape, files present.

    Called by validation (through :mod:`evaluator.pipeline.checks`), so ``train`` never meets a
    dataset that does not fit.
    """
    name, root = spec.train.dataset, spec.train.data_root
    try:
        entry = DATASETS.get(name)
    except RegistryError as e:
        return [Problem("train.dataset", f"{e}; known: {', '.join(DATASETS.names())}")]
    img = (spec.image.channels, spec.image.size, spec.image.size)
    want = entry.extra["image_shape"]
    out = []
    if entry.extra.get("sized_channels"):  # e.g. folder: RGB, resized to image.size
        want = (entry.extra["sized_channels"], spec.image.size, spec.image.size)
    if want is not None and tuple(want) != img:
        out.append(Problem("image", f"dataset {name!r} has images of {_shape(want)}, the spec "
                           f"says {_shape(img)}; set image: {{channels: {want[0]}, size: "
                           f"{want[1]}}} or choose another train.dataset"))
    if root is not None and not entry.extra["needs_root"] and name != "cifar10":
        out.append(Problem("train.data_root", f"dataset {name!r} reads no files; remove "
                           "train.data_root"))
    elif name == "cifar10":
        folder = cifar10_root(root) / "cifar-10-batches-py"
        missing = [f for f in CIFAR_FILES if not (folder / f).is_file()]
        if missing:
            out.append(Problem("train.data_root" if root else "train.dataset",
                               f"cifar10 files not found in {folder} (missing: "
                               f"{', '.join(missing[:3])}{'...' if len(missing) > 3 else ''}); "
                               "set train.data_root or ARCHSEARCH_CIFAR10"))
    elif entry.extra["needs_root"]:
        find, noun, detail = entry.extra.get("root_files") or (
            _iter_images, "images", f"({', '.join(IMAGE_SUFFIXES)})")
        if not root:
            out.append(Problem("train.data_root", f"dataset {name!r} needs train.data_root: "
                               f"a folder of {noun}"))
        elif not Path(root).expanduser().is_dir():
            out.append(Problem("train.data_root", f"{root}: no such folder"))
        elif not any(True for _ in find(Path(root).expanduser())):
            out.append(Problem("train.data_root", f"no {noun} {detail} under {root}"))
    return out


def _shape(s: tuple) -> str:
    return f"{s[0]} channel{'s' if s[0] != 1 else ''}, {s[1]}x{s[2]} px"


# Audio spectrograms live in their own module; importing it registers them.
from evaluator.data import spectro as _spectro  # noqa: E402,F401
