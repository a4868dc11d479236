"""Device selection, autocast and seeding helpers shared by training and sampling.

CUDA runs the model forward under bf16 autocast (FFT blocks opt out internally because
cuFFT in half precision only supports power-of-two sizes and loses too much precision);
the CPU path stays float32 so CPU runs are bit-reproducible.
"""
from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from archspec.choices import DEVICES



def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The torch device for ``name``: ``auto`` is CUDA when available, else CPU.

    Raises:
        ValueError: ``cuda`` was asked for but no CUDA device is available, or the name
            is not a device.
    """
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available here")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"unknown device {name!r} (choose from {', '.join(DEVICES)})") from e


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; a no-op elsewhere (the CPU path is plain float32)."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global RNG and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def describe_device(device: torch.device) -> str:
    """Human-readable device name for logs and reports."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
