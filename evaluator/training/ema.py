"""Exponential moving average of the model's weights."""
from __future__ import annotations

import torch
from torch import nn


class EMA:
    """Exponential moving average of a model's state dict.

    Uses the warm-up ``decay_t = min(decay, (1 + t) / (10 + t))`` (as in TF's
    ``ExponentialMovingAverage(num_updates=...)`` and diffusers' ``EMAModel``) so that
    short runs are not dominated by the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in model.state_dict().items():
            e = self.state[k]
            if e.is_floating_point() or e.is_complex():
                e.mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                e.copy_(v)
