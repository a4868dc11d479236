"""Audio spectrogram datasets: spectro32 (synthesised) and wav_folder (a user's WAV files)."""
from __future__ import annotations

import re
import wave

import numpy as np
import pytest
import torch
from scipy.io import wavfile

from archspec import SpecError, spec_from_dict
from archspec.errors import UserError
from evaluator.data import datasets as ds
from evaluator.data import registry
from evaluator.data import spectro
from evaluator.data.datasets import DATASETS, load_dataset
from tests.evaluator.helpers import mini_spec

SR, S = spectro.SAMPLE_RATE, 32
CLIP = S * (S + 1)                # samples per 32-frame clip, hop 32, n_fft 64


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHSEARCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def splits():
    registry._load_cached.cache_clear()
    return load_dataset("spectro32", split="train"), load_dataset("spectro32", split="test")


def _manual_log_spectrogram(x: np.ndarray, size: int) -> np.ndarray:
    """The documented recipe written out: periodic Hann frames of 2*size, hop size,
    rfft / window sum, first size bins, dB in [-80, 0] -> [-1, 1], highest bin first."""
    n_fft, hop = 2 * size, size
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = np.stack([x[:, j * hop:j * hop + n_fft] for j in range(size)], axis=1)
    mag = np.abs(np.fft.rfft(frames * win, axis=-1) / win.sum())[..., :size]  # (N, T, F)
    db = 20 * np.log10(np.maximum(mag, 1e-4))
    img = np.clip((db + 80) / 40 - 1, -1, 1).transpose(0, 2, 1)[:, ::-1]     # (N, F, T)
    return img[:, None].astype(np.float32)


# --------------------------------------------------------------------------- spectro32

def test_registered_with_the_stated_splits(splits):
    assert {"spectro32", "wav_folder"} <= set(DATASETS.names())
    train, test = splits
    assert train.images.shape == (4000, 1, 32, 32) and test.images.shape == (1000, 1, 32, 32)
    assert train.images.dtype == torch.float32 and train.name == "spectro32"
    for d in splits:
        assert float(d.images.min()) >= -1.0 and float(d.images.max()) <= 1.0
        assert torch.equal(d.labels, torch.arange(len(d)) % 5)   # interleaved families
    assert train.meta["classes"] == ["tone", "chirp", "fm", "burst", "formant"]
    # the scale is used: neither saturated nor all floor
    assert float(train.images.std()) > 0.3 and float((train.images == -1).float().mean()) < 0.1


def test_deterministic_and_train_test_disjoint(splits):
    train, test = splits
    registry._load_cached.cache_clear()
    assert torch.equal(load_dataset("spectro32", split="test").images, test.images)
    other_seed = load_dataset("spectro32", split="test", seed=1).images
    assert not torch.equal(other_seed, test.images)
    rows = {r.tobytes() for r in train.images.numpy()}
    assert len(rows) == len(train)                      # no repeated clip within a split
    assert not rows & {r.tobytes() for r in test.images.numpy()}
    # nearest train clip to each test clip is still far from it (not a near-copy)
    d = torch.cdist(test.images[:200].flatten(1), train.images.flatten(1)).min(1).values
    assert float(d.min()) > 1.0


def test_log_spectrogram_matches_the_recipe_written_out():
    x = np.random.default_rng(0).uniform(-0.5, 0.5, size=(3, CLIP))
    x[1] *= 1e-3                                        # partly below the -80 dB floor
    np.testing.assert_allclose(spectro.log_spectrogram(x), _manual_log_spectrogram(x, S),
                               atol=1e-5)
    x8 = x[:, :8 * 9]
    np.testing.assert_allclose(spectro.log_spectrogram(x8, 8), _manual_log_spectrogram(x8, 8),
                               atol=1e-5)
    with pytest.raises(ValueError, match=r"expected \(N, 1056\) audio"):
        spectro.log_spectrogram(x[:, :100])


@pytest.mark.parametrize("freq", [875.0, 1030.0, 3125.0])
def test_pure_tone_peaks_at_its_frequency_bin(freq):
    n_fft = 2 * S
    k = int(round(freq * n_fft / SR))                  # bins are SR / n_fft = 125 Hz apart
    t = np.arange(CLIP) / SR
    img = spectro.log_spectrogram(0.5 * np.sin(2 * np.pi * freq * t + 0.3)[None])[0, 0]
    assert (img.argmax(axis=0) == S - 1 - k).all()      # row 0 is the highest bin
    if freq * n_fft / SR == k:  # on a bin centre: |X| = a / 2 (window-sum scaling)
        want = (20 * np.log10(0.25) + 80) / 40 - 1
        np.testing.assert_allclose(img[S - 1 - k], want, atol=1e-4)


def test_families_look_like_their_names():
    audio, labels = spectro.synthesise(100, seed=3)
    img = spectro.log_spectrogram(audio)[:, 0]
    peak_row = img.argmax(axis=1)                        # (N, T) loudest bin per frame
    spread = peak_row.max(1) - peak_row.min(1)
    assert np.median(spread[labels == 0]) <= 1           # tones: the fundamental holds
    assert np.median(spread[labels == 1]) >= 4           # chirps: the peak sweeps
    loud = img.mean(axis=1)                              # (N, T) mean level per frame
    burstiness = loud.max(1) - np.median(loud, axis=1)
    assert burstiness[labels == 3].mean() > 2 * burstiness[labels == 0].mean()
    assert np.abs(audio).max() < 1.0


# --------------------------------------------------------------------------- wav_folder

def _write_wav(path, frames: np.ndarray, rate: int) -> None:
    """PCM WAV with the standard library: frames (L, C) uint8 or int16."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(frames.shape[1])
        w.setsampwidth(frames.dtype.itemsize)
        w.setframerate(rate)
        w.writeframes(frames.astype(frames.dtype.newbyteorder("<")).tobytes())


@pytest.fixture
def wav_root(tmp_path):
    """train/: a stereo int16 file (2.5 clips) and a nested 8-bit mono file (1 clip + 10);
    test/: a 16 kHz float32 1 kHz tone (scipy's writer) and a 100-sample int16 file."""
    rng = np.random.default_rng(0)
    stereo = rng.integers(-20000, 20000, size=(CLIP * 5 // 2, 2)).astype(np.int16)
    _write_wav(tmp_path / "train" / "a.wav", stereo, SR)
    _write_wav(tmp_path / "train" / "sub" / "b.WAV",
               rng.integers(0, 256, size=(CLIP + 10, 1)).astype(np.uint8), SR)
    t = np.arange(2 * 2 * CLIP) / (2 * SR)
    (tmp_path / "test").mkdir()
    wavfile.write(tmp_path / "test" / "c.wav", 2 * SR,
                  (0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32))
    _write_wav(tmp_path / "test" / "d.wav", np.full((100, 1), 1000, np.int16), SR)
    return tmp_path, stereo


def test_wav_folder_matches_spectro_processing_of_the_samples(wav_root):
    root, stereo = wav_root
    tr = load_dataset("wav_folder", root=str(root))
    assert tr.images.shape == (3, 1, 32, 32) and tr.labels is None
    assert tr.meta["file_of_image"] == [0, 0, 1] and tr.meta["files"][1].endswith("b.WAV")
    mono = stereo.astype(np.float64).mean(axis=1) / 32768.0       # mixdown, int16 scale
    ref = _manual_log_spectrogram(mono[:2 * CLIP].reshape(2, CLIP), S)
    np.testing.assert_allclose(tr.images[:2].numpy(), ref, atol=1e-5)
    with wave.open(tr.meta["files"][1]) as w:
        u8 = np.frombuffer(w.readframes(w.getnframes()), np.uint8)
    ref_b = _manual_log_spectrogram(((u8[:CLIP] - 128.0) / 128.0)[None], S)
    np.testing.assert_allclose(tr.images[2:].numpy(), ref_b, atol=1e-5)
    small = load_dataset("wav_folder", root=str(root), size=8)     # image.size 8
    ref8 = _manual_log_spectrogram(mono[:36 * 72].reshape(36, 72), 8)
    np.testing.assert_allclose(small.images[:36].numpy(), ref8, atol=1e-5)


def test_wav_folder_resamples_and_pads(wav_root):
    te = load_dataset("wav_folder", split="test", root=str(wav_root[0]))
    assert te.meta["file_of_image"] == [0, 0, 1]
    # 1 kHz at 16 kHz, resampled to 8 kHz: bin 1000 * 64 / 8000 = 8 (row 23) in every frame
    assert (te.images[:2, 0].argmax(dim=1) == S - 1 - 8).all()
    # 100 samples of a constant, zero-padded to a clip: the tail frames are silent
    assert torch.all(te.images[2, 0, :, -5:] == -1.0) and te.images[2].max() > -0.5


def test_wav_folder_splits_by_file(tmp_path):
    for i in range(5):
        _write_wav(tmp_path / f"f{i}.wav", np.full((CLIP, 1), 100 * i, np.int16), SR)
    tr, te = (load_dataset("wav_folder", split=s, root=str(tmp_path)) for s in ("train", "test"))
    assert (len(tr.meta["files"]), len(te.meta["files"])) == (4, 1)
    assert sorted(tr.meta["files"] + te.meta["files"]) == [str(tmp_path / f"f{i}.wav")
                                                           for i in range(5)]


def test_wav_folder_errors_name_the_path(tmp_path):
    with pytest.raises(UserError, match="wav_folder' needs root"):
        load_dataset("wav_folder")
    missing = tmp_path / "nope"
    with pytest.raises(UserError, match=f"{re.escape(str(missing))} is not a folder"):
        load_dataset("wav_folder", root=str(missing))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no audio here")
    with pytest.raises(UserError, match=r"no WAV files \(\.wav\) for split 'train' under "
                                        + re.escape(str(tmp_path / "empty"))):
        load_dataset("wav_folder", root=str(tmp_path / "empty"))
    bad = tmp_path / "bad"
    _write_wav(bad / "train" / "ok.wav", np.zeros((CLIP, 1), np.int16), SR)
    (bad / "train" / "garbage.wav").write_text("RIFF? not really")
    (bad / "test").mkdir()
    with pytest.raises(UserError, match=f"cannot read {re.escape(str(bad / 'train'))}"
                                        r"/garbage\.wav: "):
        load_dataset("wav_folder", root=str(bad))
    _write_wav(bad / "test" / "silent.wav", np.zeros((0, 1), np.int16), SR)
    with pytest.raises(UserError, match=r"silent\.wav holds no samples"):
        load_dataset("wav_folder", split="test", root=str(bad))
    (bad / "test" / "silent.wav").unlink()
    wavfile.write(bad / "test" / "nan.wav", SR, np.full(CLIP, np.nan, np.float32))
    with pytest.raises(UserError, match=r"nan\.wav holds NaN or infinite samples"):
        load_dataset("wav_folder", split="test", root=str(bad))
    with pytest.raises(UserError) as ei:
        load_dataset("wav_folder", root=str(bad))
    assert len(str(ei.value).splitlines()) == 1


def _problems(**train) -> list[str]:
    data = mini_spec(image={"channels": 1, "size": 32}, train=train)
    with pytest.raises(SpecError) as ei:
        spec_from_dict(data)
    return [str(p) for p in ei.value.problems]


def test_validate_checks_the_wav_folder(wav_root, tmp_path):
    assert _problems(dataset="wav_folder") == [
        "train.data_root: dataset 'wav_folder' needs train.data_root: a folder of WAV files"]
    assert _problems(dataset="wav_folder", data_root=str(tmp_path / "no")) == [
        f"train.data_root: {tmp_path / 'no'}: no such folder"]
    (tmp_path / "empty").mkdir()
    assert _problems(dataset="wav_folder", data_root=str(tmp_path / "empty")) == [
        f"train.data_root: no WAV files (.wav) under {tmp_path / 'empty'}"]
    with pytest.raises(SpecError, match="dataset 'wav_folder' has images of 1 channel, 8x8"):
        spec_from_dict(mini_spec(image={"channels": 3, "size": 8},
                                 train={"dataset": "wav_folder", "data_root": str(wav_root[0])}))
    spec = spec_from_dict(mini_spec(train={"dataset": "wav_folder",
                                           "data_root": str(wav_root[0])}))  # 1 x 8 x 8
    assert ds.spec_dataset(spec, "train").images.shape[1:] == (1, 8, 8)


def test_validate_checks_spectro32_shape():
    (err,) = _problems(dataset="spectro32", data_root="/tmp")
    assert err == "train.data_root: dataset 'spectro32' reads no files; remove train.data_root"
    with pytest.raises(SpecError, match="dataset 'spectro32' has images of 1 channel, 32x32 "
                                        "px, the spec says 1 channel, 8x8 px"):
        spec_from_dict(mini_spec(train={"dataset": "spectro32"}))
    spec = spec_from_dict(mini_spec(image={"channels": 1, "size": 32},
                                    train={"dataset": "spectro32"}))
    assert ds.spec_dataset(spec, "test").images.shape == (1000, 1, 32, 32)


# --------------------------------------------------------------------------- FD-spectro32

def test_fd_spectro32_is_finite_and_grows_for_corrupted_spectrograms(tmp_path):
    from evaluator.measure import features as F

    # a tiny extractor (40 steps on 500 clips, seconds on CPU) trained on family labels
    train = load_dataset("spectro32", n=500)
    ext = F.extractor_for(train, cache_root=tmp_path, config=F.TrainConfig(steps=40,
                                                                            batch_size=32))
    assert ext.kind == "classifier" and ext.name == "archsearch-spectro32"
    ref = load_dataset("spectro32", split="test", n=300)
    second = load_dataset("spectro32", split="test", n=300, seed=1).images  # a second draw
    g = torch.Generator().manual_seed(0)
    corrupted = second[:, :, torch.randperm(S, generator=g)]            # frequencies shuffled
    corrupted = (corrupted + 0.2 * torch.randn(corrupted.shape, generator=g)).clamp(-1, 1)

    def fd(samples):
        res, _ = F.fd_kd(samples, ref, extractor=ext, cache_root=tmp_path, kid_subsets=2,
                         kid_subset_size=100)
        assert res["metric"] == "FD-spectro32" and res["status"] == "ok" and res["n"] == 300
        return res["value"]

    near, far = fd(second), fd(corrupted)
    assert np.isfinite(near) and near > 0
    assert far > 5 * near
