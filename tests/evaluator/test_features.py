"""In-project extractor: trained accuracy, FD behaviour, torch-fidelity vs an independent FD."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from scipy import linalg
from scipy.ndimage import gaussian_filter

from evaluator.measure import features as F


@dataclass
class Data:
    """Stand-in for evaluator.data.datasets.ImageData (same attribute names)."""

    images: torch.Tensor
    labels: torch.Tensor | None
    hash: str
    name: str


@pytest.fixture(scope="module")
def split():
    """(train ImageData, test images, test labels) of the project's digits dataset."""
    from evaluator.data.datasets import load_dataset

    train, test = load_dataset("digits", split="train"), load_dataset("digits", split="test")
    assert train.labels is not None and train.name == "digits"
    return train, test.images, test.labels


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("archsearch-cache")


@pytest.fixture(scope="module")
def extractor(split, cache):
    return F.extractor_for(split[0], cache_root=cache)


def _frechet(f1: np.ndarray, f2: np.ndarray) -> float:
    """Frechet distance of Gaussians fitted to features, via scipy's matrix square root."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def _kid_full(f1: np.ndarray, f2: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel (x.y/d + 1)^3 over all samples."""
    d, m = f1.shape[1], f1.shape[0]
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = k(f1, f1), k(f2, f2), k(f1, f2)
    return float((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                 - 2 * kxy.mean())


def test_classifier_is_accurate_on_held_out_digits(extractor, split):
    _, x_test, y_test = split
    assert extractor.kind == "classifier" and extractor.name == "archsearch-digits"
    net = extractor.load()
    with torch.no_grad():
        acc = (net(F._quantise(x_test)).argmax(1) == y_test).float().mean()
    assert float(acc) > 0.90  # chance is 0.10


def test_weights_sha_and_cache_reuse(extractor, split, cache, monkeypatch):
    assert extractor.sha256 == hashlib.sha256(extractor.path.read_bytes()).hexdigest()
    assert extractor.path.parent == cache / "extractors"

    def boom(*a, **k):
        raise AssertionError("retrained although a cached extractor exists")

    monkeypatch.setattr(F, "train_network", boom)
    again = F.extractor_for(split[0], cache_root=cache)
    assert again.path == extractor.path and again.sha256 == extractor.sha256


def test_training_is_deterministic(split):
    x, y = split[0].images[:256], split[0].labels[:256]
    cfg = F.TrainConfig(steps=15, batch_size=32)
    a, _ = F.train_network(x, y, cfg)
    b, _ = F.train_network(x, y, cfg)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    c, _ = F.train_network(x, y, F.TrainConfig(steps=15, batch_size=32, seed=1))
    assert not torch.equal(a.to_features.weight, c.to_features.weight)


def test_fd_identical_sets_is_zero_and_names(extractor, split, cache):
    x_test = split[1]
    fd, kd = F.fd_kd(x_test, x_test, extractor=extractor, cache_root=cache, kid_subsets=10)
    assert fd["metric"] == "FD-digits" and kd["metric"] == "KD-digits"
    assert fd["status"] == "ok" and fd["reason"] is None and fd["n"] == len(x_test)
    assert fd["weights_sha256"] == extractor.sha256 and "in-project" in fd["extractor"]
    assert fd["value"] == pytest.approx(0.0, abs=1e-6)
    # KD is an unbiased MMD^2 estimate: for a set against itself it is not 0 (the cross
    # term keeps the self-similarities the within-set terms drop); its exact value is
    # checked against an independent computation below.
    assert np.isfinite(kd["value"]) and kd["std"] >= 0
    assert "FID" not in (fd["metric"] + kd["metric"])


def test_fd_halves_much_smaller_than_noise_or_blur(extractor, split, cache):
    x = split[1]
    a, b = x[: len(x) // 2], x[len(x) // 2:]
    noise = torch.rand(b.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    blurred = torch.from_numpy(gaussian_filter(b.numpy(), sigma=(0, 0, 1.0, 1.0)))

    def fd_kd(s):
        fd, kd = F.fd_kd(s, a, extractor=extractor, cache_root=cache, kid_subsets=10)
        return fd["value"], kd["value"]

    (real, kreal), (n, kn), (bl, kbl) = fd_kd(b), fd_kd(noise), fd_kd(blurred)
    assert real > 0
    assert n > 20 * real and kn > 20 * abs(kreal)
    assert bl > 5 * real and kbl > 5 * abs(kreal)


def test_torch_fidelity_fd_matches_independent_frechet(extractor, split, cache):
    x = split[1]
    a, b = x[:170], x[170:340]
    fd, kd = F.fd_kd(a, b, extractor=extractor, cache_root=cache,
                     kid_subset_size=170, kid_subsets=3)
    fa = F.extract_features(extractor, a).double().numpy()
    fb = F.extract_features(extractor, b).double().numpy()
    assert fd["value"] == pytest.approx(_frechet(fa, fb), rel=1e-3)
    # subsets as large as the sets are permutations of them: KID = full-set MMD^2
    assert kd["kid_subset_size"] == 170
    assert kd["value"] == pytest.approx(_kid_full(fa, fb), rel=1e-3)


def test_reference_statistics_are_cached(extractor, split, cache):
    x = split[1]
    F.fd_kd(x[:50], x[50:150], extractor=extractor, cache_root=cache, kid_subsets=2)
    cached = list((cache / "fidelity").glob(f"*-w{extractor.sha256[:16]}-archsearch-digits-*"))
    assert cached, "torch-fidelity cached nothing for the reference set"
    assert not list((cache / "fidelity").glob("None*"))


def test_extractor_rejects_other_image_sizes(extractor):
    fe = F.ArchsearchFeatureExtractor(extractor.name, ["feat"],
                                      feature_extractor_weights_path=str(extractor.path))
    with pytest.raises(ValueError, match="trained on 8x8 images, got 16x16"):
        fe(torch.zeros(2, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="expected uint8"):
        fe(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="needs feature_extractor_weights_path"):
        F.ArchsearchFeatureExtractor(extractor.name, ["feat"])


def test_unlabelled_data_trains_an_autoencoder(tmp_path):
    gen = torch.Generator().manual_seed(0)
    imgs = torch.tanh(torch.randn(64, 3, 16, 16, generator=gen))
    data = Data(imgs, None, "rgb-test-hash", "rgbtoy")
    ext = F.extractor_for(data, cache_root=tmp_path, config=F.TrainConfig(steps=10, batch_size=16))
    assert ext.kind == "autoencoder" and "train_recon_mse" in ext.meta
    feats = F.extract_features(ext, imgs[:5])
    assert feats.shape == (5, 64) and torch.isfinite(feats).all()
    assert ext.load()(imgs[:2]).shape == (2, 3, 16, 16)
