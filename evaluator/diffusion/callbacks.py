"""Listeners on a sampler's model calls (k-diffusion's callback convention,
``{"x", "i", "sigma", "denoised"}``): the trajectory recorder and the progress bar that
:func:`evaluator.diffusion.samplers.sample` attaches, and the fan-out calling them.

They only observe: the sampling maths calls them and never reads anything back.
"""
from __future__ import annotations

from typing import Any, Callable


def fan_out(listeners: list[Callable]) -> Callable | None:
    """One callback calling every listener in order (None when there are none)."""
    if not listeners:
        return None

    def callback(info: dict[str, Any]) -> None:
        for c in listeners:
            c(info)

    return callback


class Trajectory:
    """Callback keeping x0-hat and x per model call, per batch, on the CPU."""

    def __init__(self) -> None:
        self.batches: list[tuple[list, list]] = []
        self.x0s: list = []
        self.xs: list = []

    def __call__(self, info: dict[str, Any]) -> None:
        self.x0s.append(info["denoised"].float().cpu())
        self.xs.append(info["x"].float().cpu())

    def batch_done(self, calls: int) -> None:
        self.batches.append((self.x0s, self.xs))
        self.x0s, self.xs = [], []

    def stacked(self, nfe: int) -> tuple[list, list]:
        """(x0-hat, x) per call, each the batches concatenated."""
        import torch

        return ([torch.cat([b[0][i] for b in self.batches]) for i in range(nfe)],
                [torch.cat([b[1][i] for b in self.batches]) for i in range(nfe)])


class CallsBar:
    """Callback ticking one tqdm bar per model call over every batch; its total is known
    after the first batch."""

    def __init__(self, desc: str, batches: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=None, desc=desc, unit="call", leave=False)
        self.batches = batches

    def __call__(self, info: dict[str, Any]) -> None:
        self.bar.update(1)

    def batch_done(self, calls: int) -> None:
        if self.bar.total is None:
            self.bar.total = calls * self.batches
            self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
