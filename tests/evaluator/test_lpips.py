"""LPIPS: weights loading is checked key by key; values match a hand-written LPIPS."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch.nn import functional as F

from evaluator.measure import lpips_metric as L


@pytest.fixture(scope="module")
def alexnet_sd():
    torch.manual_seed(0)
    return torchvision.models.alexnet(weights=None).state_dict()


@pytest.fixture(scope="module")
def weights(tmp_path_factory, alexnet_sd):
    """A random AlexNet in torchvision's format. TEST ONLY: not the ImageNet weights."""
    path = tmp_path_factory.mktemp("w") / "alexnet-TEST-ONLY-random-init.pth"
    torch.save(alexnet_sd, path)
    return path


@pytest.fixture
def cfg(weights):
    return L.LPIPSConfig(weights=str(weights))


def _images(n, size, seed, channels=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, size, size, generator=g) * 2 - 1


def _reference_lpips(a, b, sd, resize=None):
    """LPIPS v0.1 written out: scale, AlexNet relu1..5, unit-normalise, squared diff,
    1x1 linear weights from the lpips wheel, spatial mean, sum over layers."""
    net = torchvision.models.alexnet(weights=None)
    net.load_state_dict(sd)
    feats = net.features.eval()
    lin = torch.load(L._default_lin_path(), map_location="cpu", weights_only=True)
    shift = torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None]
    scale = torch.tensor([0.458, 0.448, 0.450])[None, :, None, None]

    def acts(x):
        x = x.expand(-1, 3, -1, -1)
        if resize:
            x = F.interpolate(x, size=(resize, resize), mode="bilinear", align_corners=False)
        x, out = (x - shift) / scale, []
        for i, layer in enumerate(feats[:12]):  # lpips stops before the last max-pool
            x = layer(x)
            if i in (1, 4, 7, 9, 11):  # the ReLUs lpips taps
                out.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    with torch.no_grad():
        total = 0
        for k, (fa, fb) in enumerate(zip(acts(a), acts(b))):
            total = total + F.conv2d((fa - fb) ** 2, lin[f"lin{k}.model.1.weight"]).mean((1, 2, 3))
    return total


def test_matches_hand_written_lpips_with_resize(cfg, alexnet_sd):
    a, b = _images(4, 8, 1), _images(4, 8, 2)
    d, info = L.lpips_pairs(a, b, cfg)
    torch.testing.assert_close(d, _reference_lpips(a, b, alexnet_sd, resize=64),
                               rtol=1e-4, atol=1e-6)
    assert info["resized_to"] == 64 and info["input_size"] == [8, 8]


def test_matches_hand_written_lpips_at_32px_rgb(cfg, alexnet_sd):
    a, b = _images(3, 32, 3, channels=3), _images(3, 32, 4, channels=3)
    d, info = L.lpips_pairs(a, b, cfg)
    torch.testing.assert_close(d, _reference_lpips(a, b, alexnet_sd), rtol=1e-4, atol=1e-6)
    assert info["resized_to"] is None


def test_distance_zero_for_same_and_positive_for_different(cfg, weights):
    import hashlib

    a, b = _images(5, 8, 1), _images(5, 8, 2)
    same = L.lpips_distance(a, a, cfg)
    assert same["status"] == "ok" and same["value"] == pytest.approx(0.0, abs=1e-7)
    diff = L.lpips_distance(a, b, cfg)
    assert diff["metric"] == "LPIPS" and diff["value"] > 0 and diff["n"] == 5
    assert diff["resized_to"] == 64
    assert diff["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    lin = L._default_lin_path().read_bytes()
    assert diff["lin_weights_sha256"] == hashlib.sha256(lin).hexdigest()


def test_unavailable_when_weights_absent(tmp_path, monkeypatch):
    a = _images(2, 8, 0)
    missing = tmp_path / "nope.pth"
    r = L.lpips_distance(a, a, L.LPIPSConfig(weights=str(missing)))
    assert r["status"] == "unavailable" and r["value"] is None
    assert r["reason"] == f"unavailable: AlexNet weights not found at {missing}"
    # env var, then the torch hub folder
    monkeypatch.setenv(L.ALEXNET_ENV, str(tmp_path / "env.pth"))
    assert str(tmp_path / "env.pth") in L.lpips_distance(a, a)["reason"]
    monkeypatch.delenv(L.ALEXNET_ENV)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    r = L.lpips_distance(a, a)
    assert r["reason"].startswith("unavailable: AlexNet weights not found at "
                                  f"{tmp_path / 'hub' / 'checkpoints' / L.ALEXNET_FILE}")


def test_env_var_weights_are_used(weights, monkeypatch):
    monkeypatch.setenv(L.ALEXNET_ENV, str(weights))
    a, b = _images(2, 8, 1), _images(2, 8, 2)
    assert L.lpips_distance(a, b)["status"] == "ok"


def test_partial_or_wrong_weights_are_caught(tmp_path, alexnet_sd):
    a = _images(2, 8, 0)
    partial = {k: v for k, v in alexnet_sd.items() if k != "features.3.weight"}
    torch.save(partial, tmp_path / "partial.pth")
    r = L.lpips_distance(a, a, L.LPIPSConfig(weights=str(tmp_path / "partial.pth")))
    assert r["status"] == "unavailable"
    assert "missing keys ['features.3.weight']" in r["reason"]

    wrong = dict(alexnet_sd, **{"features.0.weight": torch.zeros(64, 1, 11, 11)})
    torch.save(wrong, tmp_path / "wrong.pth")
    r = L.lpips_distance(a, a, L.LPIPSConfig(weights=str(tmp_path / "wrong.pth")))
    assert "wrong shapes features.0.weight (64, 1, 11, 11) != (64, 3, 11, 11)" in r["reason"]

    other = torchvision.models.squeezenet1_1(weights=None).state_dict()
    torch.save(other, tmp_path / "squeezenet.pth")
    r = L.lpips_distance(a, a, L.LPIPSConfig(weights=str(tmp_path / "squeezenet.pth")))
    assert r["status"] == "unavailable" and "do not match" in r["reason"]

    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    r = L.lpips_distance(a, a, L.LPIPSConfig(weights=str(tmp_path / "junk.pth")))
    assert r["reason"].startswith(f"unavailable: AlexNet weights at {tmp_path / 'junk.pth'} "
                                  "could not be loaded")


def test_partial_linear_weights_are_caught(tmp_path, weights):
    lin = torch.load(L._default_lin_path(), map_location="cpu", weights_only=True)
    lin.pop("lin4.model.1.weight")
    torch.save(lin, tmp_path / "lin.pth")
    cfg = L.LPIPSConfig(weights=str(weights), lin_weights=str(tmp_path / "lin.pth"))
    r = L.lpips_distance(_images(2, 8, 0), _images(2, 8, 1), cfg)
    assert r["status"] == "unavailable" and "lin4.model.1.weight" in r["reason"]


def test_diversity(cfg):
    x = _images(6, 8, 5)
    r = L.lpips_diversity(x, n_pairs=12, seed=3, cfg=cfg)
    assert r["metric"] == "LPIPS-diversity" and r["n_pairs"] == 12 and r["value"] > 0
    assert L.lpips_diversity(x, n_pairs=12, seed=3, cfg=cfg)["value"] == r["value"]
    # the mean over the same pairs computed pair by pair
    g = torch.Generator().manual_seed(3)
    i = torch.randint(0, 6, (12,), generator=g)
    j = (i + torch.randint(1, 6, (12,), generator=g)) % 6
    assert bool((i != j).all())
    ref = np.mean([L.lpips_distance(x[p:p + 1], x[q:q + 1], cfg)["value"]
                   for p, q in zip(i.tolist(), j.tolist())])
    assert r["value"] == pytest.approx(ref, rel=1e-5)
    same = L.lpips_diversity(x[:1].repeat(4, 1, 1, 1), n_pairs=8, cfg=cfg)
    assert same["value"] == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="at least 2 samples"):
        L.lpips_diversity(x[:1], cfg=cfg)


def test_shape_errors(cfg):
    with pytest.raises(ValueError, match="pairs of equal shape"):
        L.lpips_distance(_images(2, 8, 0), _images(3, 8, 0), cfg)
    with pytest.raises(ValueError, match=r"expected images \(N, 1 or 3, H, W\)"):
        L.lpips_distance(torch.zeros(2, 2, 8, 8), torch.zeros(2, 2, 8, 8), cfg)
