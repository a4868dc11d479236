"""Datasets: shapes, ranges, fixed disjoint splits, known spectrum, real loaders offline."""
from __future__ import annotations

import hashlib
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from archspec.errors import UserError
from blocks.registry import RegistryError
from evaluator.data import datasets as ds
from evaluator.data import registry
from evaluator.data.datasets import DATASETS, load_dataset


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHSEARCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ARCHSEARCH_CIFAR10", raising=False)
    registry._load_cached.cache_clear()


def test_registry_names_and_suggestions():
    assert {"synthetic8", "digits", "patches32", "cifar10", "folder"} <= set(DATASETS.names())
    with pytest.raises(RegistryError, match="did you mean 'digits'"):
        load_dataset("digit")
    with pytest.raises(UserError, match="unknown split 'val'"):
        load_dataset("digits", split="val")


def test_import_is_cheap():
    # blocks/__init__ (which Registry lives under) imports torch itself; what these modules
    # add on top must not include any heavy library.
    code = ("import sys, blocks.registry; before = set(sys.modules); "
            "import evaluator.data.datasets, evaluator.diffusion.samplers; "
            "new = set(sys.modules) - before; "
            "print(sorted(m for m in new if m.split('.')[0] in ('torch', 'numpy', 'sklearn', "
            "'skimage', 'diffusers', 'torchvision', 'PIL', 'scipy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_cache_dir_honours_env(tmp_path):
    assert ds.cache_dir() == tmp_path / "cache"


# --------------------------------------------------------------------------- synthetic8

def test_synthetic8_shape_range_seed():
    a = load_dataset("synthetic8", split="train", seed=0)
    b = load_dataset("synthetic8", split="test", seed=0)
    c = load_dataset("synthetic8", split="train", seed=1)
    assert a.images.shape == (4096, 1, 8, 8) and a.images.dtype == torch.float32
    assert a.image_shape == (1, 8, 8) and len(b) == 1024
    assert a.images.abs().max() <= 1.0
    assert not torch.equal(a.images[:1024], b.images)
    assert not torch.equal(a.images, c.images)
    registry._load_cached.cache_clear()
    assert torch.equal(load_dataset("synthetic8", seed=0).images, a.images)
    assert a.hash != c.hash and a.hash != b.hash and len(a.hash) == 16


def test_synthetic8_spectrum_matches_theory():
    x = ds.synthetic8_generate(40000, seed=123)[:, 0]                  # (N, 8, 8)
    measured = (np.abs(np.fft.rfft2(x, norm="ortho")) ** 2).mean(axis=0)
    expected = ds.synthetic8_expected_power()
    # Every bin holds a sum of bounded terms; 40k samples give < 5% relative error.
    np.testing.assert_allclose(measured, expected, rtol=0.06)
    # Parseval on the expectation: mean pixel energy equals full-spectrum power.
    mult = np.full(expected.shape, 2.0)
    mult[:, 0] = mult[:, -1] = 1.0
    np.testing.assert_allclose((x**2).sum(axis=(1, 2)).mean(), (mult * expected).sum(),
                               rtol=0.02)


def test_synthetic8_radial_power_falls_off():
    from evaluator.diffusion.losses import radial_profile

    radial = radial_profile(torch.from_numpy(ds.synthetic8_expected_power()))
    measured = radial_profile(torch.fft.rfft2(load_dataset("synthetic8").images.double(),
                                              norm="ortho").abs().pow(2).mean(dim=(0, 1)))
    torch.testing.assert_close(measured, radial, rtol=0.1, atol=0.0)
    assert radial[4] < radial[2] / 10         # power-law noise only beyond the gratings


# --------------------------------------------------------------------------- digits

def test_digits_split_and_values():
    from sklearn.datasets import load_digits

    tr, te = load_dataset("digits", split="train"), load_dataset("digits", split="test")
    assert len(tr) + len(te) == 1797 and abs(len(te) - 0.2 * 1797) < 10
    assert set(tr.meta["indices"]).isdisjoint(te.meta["indices"])
    raw = load_digits()
    i = te.meta["indices"][3]
    torch.testing.assert_close(te.images[3, 0], torch.tensor(raw.images[i] / 8.0 - 1.0).float())
    assert int(te.labels[3]) == raw.target[i]
    assert tr.images.min() == -1.0 and tr.images.max() == 1.0
    assert set(te.labels.tolist()) == set(range(10))              # stratified


# --------------------------------------------------------------------------- patches32

def test_patches32_disjoint_and_faithful():
    from skimage import data

    tr, te = load_dataset("patches32", split="train"), load_dataset("patches32", split="test")
    assert tr.image_shape == (3, 32, 32) and len(tr) > 1000 and len(te) > 200
    for name, y, x in te.meta["boxes"]:
        for n2, y2, x2 in tr.meta["boxes"]:
            if n2 == name:
                assert abs(y - y2) >= 32 or abs(x - x2) >= 32, "test patch overlaps train"
    name, y, x = te.meta["boxes"][5]
    ref = getattr(data, name)()[y:y + 32, x:x + 32].astype(np.float32) / 127.5 - 1.0
    torch.testing.assert_close(te.images[5], torch.from_numpy(ref.transpose(2, 0, 1)))
    assert {b[0] for b in te.meta["boxes"]} == set(ds.PATCH_IMAGES)


# --------------------------------------------------------------------------- cifar10

def _fake_cifar(root, monkeypatch, n=4):
    """A CIFAR-10 folder in the real pickle format, md5s registered with torchvision."""
    from torchvision.datasets import CIFAR10

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for name in ds.CIFAR_FILES[:-1]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)  # py2 str keys
        batches[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)

    def md5(name):
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", md5(f"data_batch_{i}")]
                                                for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5("test_batch")]])
    monkeypatch.setattr(CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names",
                                          "md5": md5("batches.meta")})
    return batches


def test_cifar10_from_fake_folder(tmp_path, monkeypatch):
    batches = _fake_cifar(tmp_path / "c10", monkeypatch)
    tr = load_dataset("cifar10", split="train", root=str(tmp_path / "c10"))
    te = load_dataset("cifar10", split="test", root=str(tmp_path / "c10"))
    assert tr.images.shape == (20, 3, 32, 32) and te.images.shape == (4, 3, 32, 32)
    data, labels = batches["test_batch"]
    ref = data.reshape(4, 3, 32, 32).astype(np.float32) / 127.5 - 1.0
    torch.testing.assert_close(te.images, torch.from_numpy(ref))
    assert te.labels.tolist() == labels
    assert te.meta["classes"][0] == "class0"


def test_cifar10_env_root(tmp_path, monkeypatch):
    _fake_cifar(tmp_path / "env", monkeypatch)
    monkeypatch.setenv("ARCHSEARCH_CIFAR10", str(tmp_path / "env"))
    assert len(load_dataset("cifar10", split="test")) == 4


def test_cifar10_missing_is_clear(tmp_path):
    with pytest.raises(UserError, match=r"cache/cifar10.*data_batch_1\.\.5, test_batch, "
                                        r"batches\.meta"):
        load_dataset("cifar10")


def test_cifar10_corrupt_is_user_error(tmp_path, monkeypatch):
    _fake_cifar(tmp_path / "c", monkeypatch)
    (tmp_path / "c" / "cifar-10-batches-py" / "test_batch").write_bytes(b"garbage")
    with pytest.raises(UserError, match="could not be loaded"):
        load_dataset("cifar10", split="test", root=str(tmp_path / "c"))


# --------------------------------------------------------------------------- folder

def _write_images(folder, count, size=(40, 24)):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(count):
        arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"img{i:02d}.png")
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(folder / "grey.png")  # L mode


def test_folder_resize_crop_and_split(tmp_path):
    _write_images(tmp_path / "imgs", 9)
    tr = load_dataset("folder", split="train", root=str(tmp_path / "imgs"), size=16)
    te = load_dataset("folder", split="test", root=str(tmp_path / "imgs"), size=16)
    assert tr.image_shape == (3, 16, 16) and len(tr) == 8 and len(te) == 2
    assert set(tr.meta["files"]).isdisjoint(te.meta["files"])
    grey = [i for i, f in enumerate(tr.meta["files"] + te.meta["files"]) if "grey" in f][0]
    both = torch.cat([tr.images, te.images])
    assert torch.all(both[grey] == 1.0)                   # white, broadcast to RGB
    # Independent reference: PIL resize of 40x24 to 27x16 then a centre crop.
    from PIL import Image

    path = tr.meta["files"][0]
    with Image.open(path) as im:
        ref = np.asarray(im.convert("RGB").resize((27, 16), Image.BICUBIC))[:, 5:21]
    torch.testing.assert_close(tr.images[0], torch.from_numpy(
        ref.transpose(2, 0, 1).astype(np.float32) / 127.5 - 1.0))


def test_folder_train_test_subfolders(tmp_path):
    _write_images(tmp_path / "train", 3)
    _write_images(tmp_path / "test", 1)
    assert len(load_dataset("folder", split="test", root=str(tmp_path))) == 2


def test_folder_errors(tmp_path):
    with pytest.raises(UserError, match="needs root"):
        load_dataset("folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images"):
        load_dataset("folder", root=str(tmp_path / "empty"))


DATASET_MODULE = '''
import torch

from evaluator.data.datasets import ImageData, register_dataset


@register_dataset("test_checker8", image_shape=(1, 8, 8))
def _checker8(split, root, download, seed, n=None):
    """8x8 checkerboards of random contrast (a test dataset)."""
    count = n or (48 if split == "train" else 16)
    g = torch.Generator().manual_seed(seed + (split == "test"))
    board = (torch.arange(8)[:, None] + torch.arange(8)[None]) % 2 * 2.0 - 1.0
    amp = torch.rand(count, 1, 1, 1, generator=g)
    return ImageData(amp * board, None, "test_checker8", split)
'''


def test_a_dataset_registered_from_a_new_module_is_usable_by_specs(tmp_path, monkeypatch):
    import importlib

    from archspec import spec_from_dict
    from evaluator.training.loop import train
    from tests.evaluator.helpers import mini_spec

    (tmp_path / "my_dataset.py").write_text(DATASET_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("my_dataset")
    try:
        tr, te = load_dataset("test_checker8"), load_dataset("test_checker8", split="test")
        assert tr.image_shape == (1, 8, 8) and (len(tr), len(te)) == (48, 16)
        assert float(tr.images.abs().max()) <= 1.0
        spec = spec_from_dict(mini_spec(train={"dataset": "test_checker8", "steps": 3}))
        res = train(spec, root=None, device="cpu", progress=False)
        assert res.status == "finished" and res.step == 3
    finally:
        DATASETS.remove("test_checker8")
        monkeypatch.delitem(sys.modules, "my_dataset")
