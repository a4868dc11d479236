"""Image grids: one tiler for the PNG grids the evaluator writes and the app's previews."""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evaluator.store.atomic import atomic_write

if TYPE_CHECKING:  # pragma: no cover
    import torch


def tile(x: torch.Tensor, nrow: int, pad: int, pad_value: int) -> torch.Tensor:
    """(C, H', W') uint8 grid of ``x`` (N, C, H, W) uint8, ``nrow`` images per row (the
    layout of :func:`torchvision.utils.make_grid`: ``pad`` pixels around every image)."""
    import torch

    n, c, h, w = x.shape
    ncol = min(nrow, n)
    rows = math.ceil(n / ncol)
    grid = torch.full((c, rows * (h + pad) + pad, ncol * (w + pad) + pad), pad_value,
                      dtype=torch.uint8)
    for i in range(n):
        r, col = divmod(i, ncol)
        y0, x0 = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, y0:y0 + h, x0:x0 + w] = x[i]
    return grid


def save_grid(images: Any, path: Path, nrow: int = 8) -> Path:
    """Write images in [-1, 1] as one PNG grid (atomically), black 1-pixel gaps.

    Quantised as :func:`torchvision.utils.save_image` does (``x * 255 + 0.5``, truncated),
    so the PNG bytes are those of ``save_image(..., padding=1)``."""
    import torch
    from PIL import Image

    x = ((images.float().clamp(-1, 1) + 1) / 2).mul(255).add_(0.5).clamp_(0, 255)
    x = x.to("cpu", torch.uint8)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    arr = tile(x, nrow, pad=1, pad_value=0).permute(1, 2, 0).numpy()
    atomic_write(Path(path), lambda f: Image.fromarray(arr).save(f, format="png"))
    return Path(path)


def image_grid(images: torch.Tensor, nrow: int = 4, scale: int = 8, pad: int = 1):
    """(H', W', 3) uint8 numpy grid of images in [-1, 1] (clamped), upscaled by ``scale``
    with nearest-neighbour so 8x8 pixels stay visible; white gaps."""
    import numpy as np
    import torch

    x = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    n, c, h, w = x.shape
    if c == 1:
        x = x.expand(n, 3, h, w)
    elif c != 3:
        x = x[:, :1].expand(n, 3, h, w)
    x = x.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    grid = tile(x, nrow, pad=pad, pad_value=255)
    return np.ascontiguousarray(grid.permute(1, 2, 0).numpy())
