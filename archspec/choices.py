"""The closed vocabularies that the spec, the evaluator and the surfaces share.

One home for each list, so that the spec's schema, the samplers, the training loop and the
command line cannot disagree. Standard library only: ``archsearch --help`` imports it.
"""
from __future__ import annotations

# What the network predicts (Ho et al. 2020; Salimans & Ho 2022 for v).
PREDICTIONS = ("epsilon", "x0", "v")

# x0-hat clipping during sampling: none, clamp to [-1, 1], or dynamic thresholding
# (Saharia et al. 2022), applied identically to every sampler compared.
CLIP_POLICIES = ("none", "clip", "dynamic")

# Where to run: ``auto`` is CUDA when available, else the CPU.
DEVICES = ("auto", "cpu", "cuda")

__all__ = ["CLIP_POLICIES", "DEVICES", "PREDICTIONS"]
