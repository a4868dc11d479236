"""Shared fixtures. Tests never touch the real home cache or the network."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "examples" / "specs"

# One cache root for the whole session so expensive artefacts (extractor weights,
# reference statistics) are made once, and never in the user's home.
os.environ.setdefault("ARCHSEARCH_CACHE", tempfile.mkdtemp(prefix="archsearch-test-cache-"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TORCH_HOME", os.path.join(os.environ["ARCHSEARCH_CACHE"], "torch"))


MINIMAL = """\
spec_version: 1
name: fft_roundtrip
image: {channels: 1, size: 8}
model:
  nodes:
    x: {block: input}
    f: {block: rfft2, in: [x]}
    y: {block: irfft2, in: [f]}
  output: y
"""


@pytest.fixture
def write_spec(tmp_path):
    """Write spec text to a file and return its path."""

    def write(text: str, name: str = "spec.yaml") -> Path:
        p = tmp_path / name
        p.write_text(text)
        return p

    return write


@pytest.fixture
def image_folder(tmp_path):
    """A folder holding two small RGB images: data_root for the ``folder`` dataset, which
    fits any ``image.size`` with 3 channels (images are resized)."""
    from PIL import Image

    root = tmp_path / "images"
    root.mkdir()
    for i in range(2):
        Image.new("RGB", (12, 10), (40 * i, 90, 200)).save(root / f"im{i}.png")
    return root


@pytest.fixture(scope="session")
def tiny_study_run(tmp_path_factory):
    """The tiny study of ``tests/evaluator/study_helpers.py`` (2 pipelines x 2 seeds x 24
    steps on synthetic8, 20 trials) run once for the session: (study file, results root,
    storage URL). Its trials and runs are read only (reports may be written next
    to them): the end-to-end test and the app's study view share it."""
    from tests.evaluator.study_helpers import run_tiny_study

    return run_tiny_study(tmp_path_factory.mktemp("tiny-study"))
