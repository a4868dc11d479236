"""FID/KID through torch-fidelity: weights lookup, never downloading, and the real loading
path exercised with a TEST-ONLY random InceptionV3 in torch-fidelity's exact format."""
from __future__ import annotations

import hashlib
from unittest import mock

import numpy as np
import pytest
import torch
import torch_fidelity
import torch_fidelity.feature_extractor_inceptionv3 as tfi
from scipy import linalg

from evaluator.measure import fidelity as fm


def _no_download(*args, **kwargs):
    raise AssertionError("torch-fidelity tried to download weights")


@pytest.fixture(autouse=True)
def forbid_download(monkeypatch):
    monkeypatch.setattr(tfi, "load_state_dict_from_url", _no_download)


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    """torch-fidelity's InceptionV3 with random He-initialised convs, saved as a state dict.

    TEST ONLY: random weights, not the converted TF Inception. He init keeps activations
    O(1) through the stem so the features are not vanishingly small.
    """
    with mock.patch.object(tfi, "load_state_dict_from_url", lambda *a, **k: {}), \
         mock.patch.object(tfi.FeatureExtractorInceptionV3, "load_state_dict",
                           lambda self, sd: None):
        torch.manual_seed(0)
        fe = tfi.FeatureExtractorInceptionV3(fm.INCEPTION_NAME, ["2048"])
    for m in fe.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    path = tmp_path_factory.mktemp("w") / "weights-inception-TEST-ONLY-random-init.pth"
    torch.save(fe.state_dict(), path)
    return path


def _sets(n=6, size=8, channels=1):
    g = torch.Generator().manual_seed(0)
    a = torch.rand(n, channels, size, size, generator=g) * 2 - 1
    b = (torch.rand(n, channels, size, size, generator=g) * 2 - 1) * 0.3
    return a, b


def test_uint8_conversion():
    x = torch.tensor([-1.0, -0.5, 0.0, 1.0, 2.0]).view(1, 1, 1, 5)
    ds = fm.UInt8Images(x)
    assert ds[0].dtype == torch.uint8 and ds[0].shape == (3, 1, 5)
    # (x + 1) * 127.5 rounded half-to-even; out-of-range values clipped
    assert ds[0][0, 0].tolist() == [0, 64, 128, 255, 255]
    assert torch.equal(ds[0][0], ds[0][2])
    with pytest.raises(ValueError, match=r"expected images \(N, 1 or 3, H, W\)"):
        fm.UInt8Images(torch.zeros(2, 2, 8, 8))


def test_unavailable_when_weights_absent(tmp_path, monkeypatch):
    monkeypatch.setattr(torch_fidelity, "calculate_metrics", _no_download)
    a, b = _sets()
    missing = tmp_path / "missing.pth"
    fid, kid = fm.inception_fid_kid(a, b, weights_path=missing)
    for r, name in ((fid, "FID"), (kid, "KID")):
        assert r["metric"] == name and r["status"] == "unavailable" and r["value"] is None
        assert r["reason"].startswith(f"unavailable: Inception weights not found at {missing}")
        assert r["n"] == 6 and r["weights_sha256"] is None
    monkeypatch.setenv(fm.INCEPTION_ENV, str(tmp_path / "env.pth"))
    assert str(tmp_path / "env.pth") in fm.inception_fid_kid(a, b)[0]["reason"]
    monkeypatch.delenv(fm.INCEPTION_ENV)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    hub_file = tmp_path / "hub" / "checkpoints" / fm.INCEPTION_FILE
    assert str(hub_file) in fm.inception_fid_kid(a, b)[0]["reason"]
    # a directory is not a weights file
    hub_file.mkdir(parents=True)
    assert fm.inception_fid_kid(a, b)[0]["status"] == "unavailable"


def test_unloadable_weights_are_unavailable_with_sha(tmp_path):
    bad = tmp_path / "weights-TEST-ONLY-wrong.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, bad)
    fid, _ = fm.inception_fid_kid(*_sets(), weights_path=bad)
    assert fid["status"] == "unavailable" and "could not be loaded" in fid["reason"]
    assert fid["weights_sha256"] == hashlib.sha256(bad.read_bytes()).hexdigest()


def _direct_features(path, images, layer):
    fe = tfi.FeatureExtractorInceptionV3(fm.INCEPTION_NAME, [layer],
                                         feature_extractor_weights_path=str(path))
    with torch.no_grad():
        return fe(fm.to_uint8_rgb(images))[0].double().numpy()


def _frechet(f1, f2):
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real))


def test_fid_through_real_loading_path(inception_weights, tmp_path):
    # the 64-d stem features keep this fast on CPU; the 2048-d run is the slow test below
    a, b = _sets()
    kw = dict(weights_path=inception_weights, cache_root=tmp_path, feature_layer="64",
              kid_subsets=5)
    same, _ = fm.inception_fid_kid(a, a, **kw)
    fid, kid = fm.inception_fid_kid(a, b, **kw)
    sha = hashlib.sha256(inception_weights.read_bytes()).hexdigest()
    for r in (same, fid, kid):
        assert r["status"] == "ok" and r["weights_sha256"] == sha and r["feature_layer"] == "64"
        assert r["extractor"] == fm.INCEPTION_NAME and np.isfinite(r["value"])
    assert kid["metric"] == "KID" and kid["kid_subset_size"] == 6  # lowered to N
    assert same["value"] == pytest.approx(0.0, abs=1e-6 * fid["value"])
    assert fid["value"] > 0
    ref = _frechet(_direct_features(inception_weights, a, "64"),
                   _direct_features(inception_weights, b, "64"))
    assert fid["value"] == pytest.approx(ref, rel=1e-3)
    assert list((tmp_path / "fidelity").glob(f"*-w{sha[:16]}-inception-v3-compat-*"))


def test_shape_mismatch_and_tiny_sets_raise(inception_weights, tmp_path):
    a, _ = _sets()
    with pytest.raises(ValueError, match="differ in shape"):
        fm.fd_kd_with_extractor(a, torch.zeros(4, 1, 16, 16), feature_extractor=fm.INCEPTION_NAME,
                                weights_path=inception_weights, names=("FID", "KID"),
                                extractor_label="x", cache_root=tmp_path)
    with pytest.raises(ValueError, match="at least 2 images"):
        fm.fd_kd_with_extractor(a[:1], a, feature_extractor=fm.INCEPTION_NAME,
                                weights_path=inception_weights, names=("FID", "KID"),
                                extractor_label="x", cache_root=tmp_path)


@pytest.mark.slow
def test_full_2048_fid(inception_weights, tmp_path):
    a, b = _sets(n=5)
    kw = dict(weights_path=inception_weights, cache_root=tmp_path, kid_subsets=3)
    same, _ = fm.inception_fid_kid(a, a, **kw)
    fid, kid = fm.inception_fid_kid(a, b, **kw)
    assert fid["feature_layer"] == "2048" and np.isfinite(fid["value"]) and fid["value"] > 0
    assert same["value"] == pytest.approx(0.0, abs=1e-6 * fid["value"])
    assert np.isfinite(kid["value"])
