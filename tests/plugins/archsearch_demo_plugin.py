"""A tiny third-party block package, written as a plugin author would.

tests/blocks/test_plugins.py installs it into a temporary folder beside a
``archsearch_demo_plugin-0.1.dist-info/entry_points.txt`` that declares::

    [archsearch.blocks]
    demo = archsearch_demo_plugin

so it reaches the toolkit only through the ``archsearch.blocks`` entry point.
"""
from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from blocks import BlockParams, TensorSpec, register_block


class ScaleParams(BlockParams):
    gain: float = Field(1.0, gt=0, description="initial per-channel gain")


class LearnedScale(nn.Module):
    """Per-channel learned gain of a real feature map."""

    def __init__(self, *, channels: int, gain: float) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.full((channels, 1, 1), gain))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain  # (B, C, H, W)


@register_block("demo_plugin_scale", params=ScaleParams, takes=("real",), gives="real",
                family="demo_plugin", example=({"gain": 0.5}, [TensorSpec("real", (3, 8, 8))]))
def _scale(p: ScaleParams, inputs: list[TensorSpec]) -> nn.Module:
    """Per-channel learned gain (demo plugin block): real (C,H,W) -> real (C,H,W)."""
    return LearnedScale(channels=inputs[0].shape[0], gain=p.gain)
