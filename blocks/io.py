"""Graph inputs: the noisy image and the diffusion timestep.

These two blocks have no module; the assembled model feeds its call arguments to them.
"""
from __future__ import annotations

from blocks.core import register_block


@register_block("input", takes=(), gives="real", family="io")
def _input(p, inputs):
    """The noisy image x_t, (B, C, H, W) in pixel space."""
    return None


@register_block("timestep", takes=(), gives="time", family="io")
def _timestep(p, inputs):
    """The diffusion timestep t, (B,)."""
    return None
