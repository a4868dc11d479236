"""Audio as images: ``spectro32`` (synthesised clips) and ``wav_folder`` (a user's WAV files).

Both give single-channel log-magnitude spectrograms, float32 in [-1, 1], made the same way
(:func:`log_spectrogram`) so a model trained on one can be scored on the other:

- audio at :data:`SAMPLE_RATE` Hz, cut into clips of ``S * (S + 1)`` samples for an
  ``S x S`` image (1056 samples, 132 ms, for S = 32);
- STFT with a periodic Hann window of ``n_fft = 2 S`` samples and hop ``S`` (50% overlap),
  no boundary padding, so a clip gives exactly ``S`` frames; ``scipy.signal.stft``'s
  default ``"spectrum"`` scaling divides by the window sum, so a sinusoid of amplitude
  ``a`` on a bin centre reads ``a / 2`` and no magnitude can exceed ``max |x|``;
- the first ``S`` of the ``S + 1`` bins (DC up to one bin below Nyquist, bin ``k`` is
  ``k * SAMPLE_RATE / n_fft`` Hz), the Nyquist bin dropped;
- ``20 log10 |X|`` clamped to [:data:`DB_FLOOR`, 0] dB and mapped linearly onto [-1, 1]
  (a fixed scale, not per clip, so loudness is kept);
- rows ordered as a spectrogram is drawn: row 0 is the highest bin, row ``S - 1`` is DC;
  columns are time frames.

``spectro32`` synthesises five families of sound deterministically (no download): harmonic
tones with vibrato, chirps, FM tones, noise bursts and formant-filtered noise. The label of
a clip is its family (index into :data:`FAMILIES`), so the in-project feature extractor
trains as a classifier, as on digits, and is reported as ``FD-spectro32``. Clip ``i`` of a
split belongs to family ``i % 5``, so every prefix of a split is balanced. Each (seed,
split, family) has its own generator stream (``numpy`` ``SeedSequence`` entropy
``[seed, split, family]``), so train and test never share a clip and a split's clips do
not depend on how many clips the other families have.

Importing this module is cheap (numpy and scipy are imported inside the functions), since
:mod:`evaluator.data.datasets` imports it to register the two datasets.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from archspec.errors import UserError
from evaluator.data.registry import SPLITS, ImageData, _split_indices, register_dataset

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

SAMPLE_RATE = 8000                       # Hz; bins are 125 Hz apart at S = 32
SIZE = 32
DB_FLOOR = -80.0                         # dB: quieter bins (and silence) map to -1
FAMILIES = ("tone", "chirp", "fm", "burst", "formant")
SPECTRO_N = {"train": 4000, "test": 1000}
WAV_SUFFIXES = (".wav",)
NYQUIST = SAMPLE_RATE / 2


def stft_settings(size: int = SIZE) -> tuple[int, int, int]:
    """``(n_fft, hop, clip_samples)`` for ``size x size`` spectrograms."""
    return 2 * size, size, size * (size + 1)


def log_spectrogram(audio: "np.ndarray", size: int = SIZE) -> "np.ndarray":
    """(N, clip_samples) audio at :data:`SAMPLE_RATE` -> (N, 1, size, size) float32 in [-1, 1].

    See the module docstring for the STFT settings, the dB scale and the row order.
    """
    import numpy as np
    from scipy.signal import stft

    n_fft, hop, clip = stft_settings(size)
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim != 2 or audio.shape[1] != clip:
        raise ValueError(f"expected (N, {clip}) audio for {size}x{size} spectrograms, "
                         f"got {audio.shape}")
    _, _, z = stft(audio, fs=SAMPLE_RATE, window="hann", nperseg=n_fft, noverlap=n_fft - hop,
                   boundary=None, padded=False, axis=-1)      # (N, size + 1, size) complex
    mag = np.abs(z[:, :size, :size])                          # Nyquist bin dropped
    db = 20.0 * np.log10(np.maximum(mag, 10.0 ** (DB_FLOOR / 20.0)))
    img = np.clip((db - DB_FLOOR) * (2.0 / -DB_FLOOR) - 1.0, -1.0, 1.0)
    return img[:, None, ::-1, :].astype(np.float32)           # row 0 = highest bin


# --------------------------------------------------------------------------- synthesis

def _log_uniform(rng: "np.random.Generator", lo: float, hi: float, n: int) -> "np.ndarray":
    import numpy as np

    return np.exp(rng.uniform(np.log(lo), np.log(hi), size=(n, 1)))


def _phase(f_inst: "np.ndarray") -> "np.ndarray":
    """Running phase (radians) of an instantaneous frequency track (n, L) in Hz."""
    import numpy as np

    return 2 * np.pi * np.cumsum(f_inst, axis=-1) / SAMPLE_RATE


def _envelope(rng: "np.random.Generator", t: "np.ndarray", n: int) -> "np.ndarray":
    """Attack (2..30 ms) then exponential decay (0..12 /s): (n, L) in [0, 1]."""
    import numpy as np

    attack = rng.uniform(0.002, 0.03, size=(n, 1))
    decay = rng.uniform(0.0, 12.0, size=(n, 1))
    return np.minimum(1.0, t / attack) * np.exp(-decay * t)


def _tones(rng: "np.random.Generator", t: "np.ndarray", n: int) -> "np.ndarray":
    """Harmonic tones (f0 150..600 Hz) with vibrato (8..20 Hz, 1..6% deep) and a
    harmonic roll-off k^-(0.8..2.5); harmonics above 0.95 Nyquist are left out."""
    import numpy as np

    f0 = _log_uniform(rng, 150.0, 600.0, n)
    rate, depth = rng.uniform(8.0, 20.0, (n, 1)), rng.uniform(0.01, 0.06, (n, 1))
    vib = 1.0 + depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi, (n, 1)))
    phase = _phase(f0 * vib)
    rolloff = rng.uniform(0.8, 2.5, (n, 1))
    out = np.zeros((n, t.size))
    for k in range(1, int(0.95 * NYQUIST / 150.0) + 1):
        audible = k * f0 * (1 + depth) < 0.95 * NYQUIST          # (n, 1)
        out += audible * k ** -rolloff * np.sin(k * phase)
    return out * _envelope(rng, t, n)


def _chirps(rng: "np.random.Generator", t: "np.ndarray", n: int) -> "np.ndarray":
    """Linear or exponential sweeps between 150 and 3800 Hz over a random 50..100% of the
    clip, with a weak second harmonic where it stays below Nyquist."""
    import numpy as np

    dur = t[-1]
    length = rng.uniform(0.5, 1.0, (n, 1)) * dur
    start = rng.uniform(0.0, 1.0, (n, 1)) * (dur - length)
    u = np.clip((t - start) / length, 0.0, 1.0)               # (n, L) sweep position
    f1, f2 = _log_uniform(rng, 150.0, 3800.0, n), _log_uniform(rng, 150.0, 3800.0, n)
    expo = rng.random((n, 1)) < 0.5
    f_inst = np.where(expo, f1 * (f2 / f1) ** u, f1 + (f2 - f1) * u)
    phase = _phase(f_inst)
    second = rng.uniform(0.0, 0.4, (n, 1)) * (2 * np.maximum(f1, f2) < 0.95 * NYQUIST)
    gate = np.clip(np.minimum(t - start, start + length - t) / 0.004, 0.0, 1.0)  # 4 ms ramps
    return (np.sin(phase) + second * np.sin(2 * phase)) * gate


def _fm(rng: "np.random.Generator", t: "np.ndarray", n: int) -> "np.ndarray":
    """FM tones: carrier 300..3000 Hz, modulator 10..200 Hz, index 0.5..6, the peak
    deviation capped so the instantaneous frequency stays within 50 Hz..0.95 Nyquist."""
    import numpy as np

    fc, fm = _log_uniform(rng, 300.0, 3000.0, n), _log_uniform(rng, 10.0, 200.0, n)
    dev = np.minimum(rng.uniform(0.5, 6.0, (n, 1)) * fm,
                     np.minimum(fc - 50.0, 0.95 * NYQUIST - fc))
    phase = 2 * np.pi * fc * t + (dev / fm) * np.sin(2 * np.pi * fm * t
                                                     + rng.uniform(0, 2 * np.pi, (n, 1)))
    return np.sin(phase) * _envelope(rng, t, n)


def _coloured_noise(rng: "np.random.Generator", n: int, length: int,
                    gain: "np.ndarray") -> "np.ndarray":
    """White noise filtered in the frequency domain by ``gain`` (n, length//2 + 1)."""
    import numpy as np

    spec = np.fft.rfft(rng.standard_normal((n, length)), axis=-1)
    return np.fft.irfft(spec * gain, n=length, axis=-1)


def _bursts(rng: "np.random.Generator", t: "np.ndarray", n: int) -> "np.ndarray":
    """1..4 noise bursts (5..40 ms, exponential decay) of noise tilted by f^(-1.5..1.5)."""
    import numpy as np

    f = np.fft.rfftfreq(t.size, 1.0 / SAMPLE_RATE)
    tilt = rng.uniform(-1.5, 1.5, (n, 1))
    noise = _coloured_noise(rng, n, t.size, np.maximum(f, 50.0) ** (tilt / 2))
    gate = np.zeros((n, t.size))
    for i in range(4):
        on = rng.random((n, 1)) < (1.0 if i == 0 else 0.5)
        start = rng.uniform(0.0, 0.9, (n, 1)) * t[-1]
        length = rng.uniform(0.005, 0.04, (n, 1))
        inside = (t >= start) & (t < start + length)
        gate = np.maximum(gate, on * inside * np.exp(-3.0 * (t - start) / length))
    return noise * gate


def _formants(rng: "np.random.Generator", t: "np.ndarray", n: int) -> "np.ndarray":
    """Noise through three resonances (vowel-like formants in 250..900, 800..2300 and
    2200..3700 Hz, bandwidths 60..250 Hz, levels -20..0 dB), with an attack/decay
    envelope. Each resonance is a Lorentzian in power, |H|^2 = 1 / (1 + (df / B)^2)."""
    import numpy as np

    f = np.fft.rfftfreq(t.size, 1.0 / SAMPLE_RATE)
    gain = np.zeros((n, f.size))
    for lo, hi in ((250.0, 900.0), (800.0, 2300.0), (2200.0, 3700.0)):
        centre, width = rng.uniform(lo, hi, (n, 1)), rng.uniform(60.0, 250.0, (n, 1))
        level = 10.0 ** (rng.uniform(-20.0, 0.0, (n, 1)) / 20.0)
        gain += level / (1.0 + ((f - centre) / width) ** 2)
    return _coloured_noise(rng, n, t.size, gain) * _envelope(rng, t, n)


_GENERATORS = {"tone": _tones, "chirp": _chirps, "fm": _fm, "burst": _bursts,
               "formant": _formants}


def synthesise(n: int, seed: int = 0, split: str = "train",
               size: int = SIZE) -> tuple["np.ndarray", "np.ndarray"]:
    """``n`` clips: (n, clip_samples) float64 audio and (n,) int64 family labels.

    Clip ``i`` is of family ``i % 5``; each clip is peak-normalised to a gain drawn in
    0.3..0.95 and gets a faint white noise floor (-60..-40 dB re full scale), so silence
    is never exactly flat.
    """
    import numpy as np

    _, _, clip = stft_settings(size)
    t = np.arange(clip) / SAMPLE_RATE
    audio, labels = np.zeros((n, clip)), np.arange(n) % len(FAMILIES)
    for fam, name in enumerate(FAMILIES):
        rows = np.flatnonzero(labels == fam)
        rng = np.random.default_rng([seed, SPLITS.index(split), fam])
        x = _GENERATORS[name](rng, t, rows.size)
        peak = np.maximum(np.abs(x).max(axis=1, keepdims=True), 1e-12)
        x = x / peak * rng.uniform(0.3, 0.95, (rows.size, 1))
        floor = 10.0 ** (rng.uniform(-60.0, -40.0, (rows.size, 1)) / 20.0)
        audio[rows] = x + floor * rng.standard_normal(x.shape)
    return audio, labels.astype(np.int64)


@register_dataset("spectro32", image_shape=(1, SIZE, SIZE))
def _spectro32(split: str, root: str | None, download: bool, seed: int,
               n: int | None = None) -> ImageData:
    """32x32 log-magnitude spectrograms of synthesised audio (5 labelled sound families)."""
    import torch

    count = SPECTRO_N[split] if n is None else int(n)
    audio, labels = synthesise(count, seed=seed, split=split)
    images = torch.from_numpy(log_spectrogram(audio))
    return ImageData(images, torch.from_numpy(labels), "spectro32", split,
                     meta={"seed": seed, "n": count, "classes": list(FAMILIES),
                           "sample_rate": SAMPLE_RATE, "n_fft": 2 * SIZE, "hop": SIZE})


# --------------------------------------------------------------------------- WAV files

def iter_wavs(folder: Path) -> Iterator[Path]:
    """Every ``.wav`` file under ``folder`` (any depth, suffix case ignored)."""
    return (p for p in folder.rglob("*") if p.suffix.lower() in WAV_SUFFIXES and p.is_file())


def read_wav(path: Path) -> tuple["np.ndarray", int]:
    """Mono float64 samples in [-1, 1] (channels averaged) and the sample rate.

    Raises:
        UserError: the file is not a WAV file scipy can read, holds no samples or
            non-finite ones, or has a sample rate <= 0.
    """
    import warnings

    import numpy as np
    from scipy.io import wavfile

    try:
        with warnings.catch_warnings():  # unknown chunks (e.g. LIST metadata) are skipped
            warnings.simplefilter("ignore", wavfile.WavFileWarning)
            rate, data = wavfile.read(path)
    except (OSError, ValueError, EOFError) as err:
        raise UserError(f"dataset 'wav_folder': cannot read {path}: {err}") from None
    data = np.asarray(data)
    if data.size == 0:
        raise UserError(f"dataset 'wav_folder': {path} holds no samples")
    if int(rate) <= 0:
        raise UserError(f"dataset 'wav_folder': {path} has sample rate {rate}")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise UserError(f"dataset 'wav_folder': {path} holds NaN or infinite samples")
    if data.dtype == np.uint8:                     # 8-bit WAV is unsigned, centred at 128
        x = (data.astype(np.float64) - 128.0) / 128.0
    elif data.dtype.kind == "i":
        x = data.astype(np.float64) / float(2 ** (8 * data.dtype.itemsize - 1))
    else:
        x = data.astype(np.float64)
    return (x.mean(axis=1) if x.ndim == 2 else x), int(rate)


def audio_windows(x: "np.ndarray", rate: int, size: int = SIZE) -> "np.ndarray":
    """Mono audio at ``rate`` -> (k, clip_samples) windows at :data:`SAMPLE_RATE`.

    Resampled with a polyphase filter (``scipy.signal.resample_poly``), then cut into
    consecutive non-overlapping windows; the tail shorter than a window is dropped, and a
    recording shorter than one window is zero-padded to one.
    """
    import math

    import numpy as np
    from scipy.signal import resample_poly

    if rate != SAMPLE_RATE:
        g = math.gcd(int(rate), SAMPLE_RATE)
        x = resample_poly(x, SAMPLE_RATE // g, int(rate) // g)
    _, _, clip = stft_settings(size)
    if x.size < clip:
        x = np.pad(x, (0, clip - x.size))
    k = x.size // clip
    return np.asarray(x[: k * clip], dtype=np.float64).reshape(k, clip)


def _wav_split(base: Path, split: str) -> list[Path]:
    """``base/<split>`` when both ``train/`` and ``test/`` exist, else a fixed seeded
    80/20 split of every file under ``base`` by file (windows of one recording never
    straddle the split)."""
    if (base / "train").is_dir() and (base / "test").is_dir():
        return sorted(iter_wavs(base / split))
    files = sorted(iter_wavs(base))
    return [files[i] for i in _split_indices(len(files), split)] if files else []


@register_dataset("wav_folder", image_shape=None, needs_root=True, sized_channels=1,
                  root_files=(iter_wavs, "WAV files", "(.wav)"))
def _wav_folder(split: str, root: str | None, download: bool, seed: int,
                size: int = SIZE) -> ImageData:
    """A folder of WAV files as spectrograms like spectro32 (mono, 8 kHz, size x size)."""
    import numpy as np
    import torch

    if not root:
        raise UserError("dataset 'wav_folder' needs root=<folder of .wav files>")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise UserError(f"dataset 'wav_folder': {base} is not a folder")
    files = _wav_split(base, split)
    if not files:
        raise UserError(f"dataset 'wav_folder': no WAV files (.wav) for split {split!r} under "
                        f"{base} (a split by file needs 3+ files, or train/ and test/ folders)")
    windows = [audio_windows(*read_wav(p), size=size) for p in files]
    origin = np.repeat(np.arange(len(files)), [w.shape[0] for w in windows])
    images = torch.from_numpy(log_spectrogram(np.concatenate(windows), size))
    return ImageData(images, None, "wav_folder", split,
                     meta={"root": str(base), "files": [str(p) for p in files],
                           "file_of_image": origin.tolist(), "size": size,
                           "sample_rate": SAMPLE_RATE})
