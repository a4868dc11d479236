"""Spectral block monitor: forward hooks on the spectral nodes of a graph model, and the
stability warnings read from the loss log's records.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn


# Block families whose activations and gradients are watched for explosions.
SPECTRAL_FAMILIES = frozenset({"complex", "dual", "spectral", "spectral_attention"})


# Stability warning (issue 8: "monitor exploding magnitudes"): a spectral node whose mean
# |activation| or gradient norm exceeds STABILITY_FACTOR x its smallest value over the
# previous STABILITY_WINDOW steps. Steps before STABILITY_WARMUP are ignored: zero-
# initialised layers legitimately grow from ~0 at the start.
STABILITY_FACTOR = 10.0


STABILITY_WINDOW = 500


STABILITY_WARMUP = 100


# ---- spectral block monitor ---------------------------------------------------------------
class SpectralMonitor:
    """Forward hooks on the spectral nodes of a graph model, active one step in N.

    Composite nodes (``unet``) are looked into: each spectral block inside is watched under
    ``<node>.<stage id>`` (e.g. ``eps.enc0.0``, ``eps.mid0.att``), see ``UNet.named_blocks``.

    Records the mean absolute activation of each node's output and, after backward, the
    gradient norm of its parameters. Models without ``node_modules``/``node_families``
    (plain modules) are not monitored.
    """

    def __init__(self, model: nn.Module, every: int) -> None:
        self.every = max(1, every)
        self.active = False
        self._act: dict[str, torch.Tensor] = {}
        mods = getattr(model, "node_modules", None) or {}
        fams = getattr(model, "node_families", None) or {}
        self.nodes = {}
        for n, m in dict(mods).items():
            if fams.get(n) in SPECTRAL_FAMILIES:
                self.nodes[n] = m
            elif hasattr(m, "named_blocks"):  # a composite (unet): its spectral blocks
                self.nodes.update({f"{n}.{sid}": sub for sid, sub, fam in m.named_blocks()
                                   if fam in SPECTRAL_FAMILIES})
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.nodes.items()]

    def _hook(self, name: str) -> Callable:
        def hook(_mod: nn.Module, _inp: Any, out: Any) -> None:
            if self.active and isinstance(out, torch.Tensor):
                self._act[name] = out.detach().abs().float().mean()
        return hook

    def begin(self, step: int) -> None:
        self.active = bool(self.nodes) and step % self.every == 0
        self._act = {}

    def collect(self) -> dict[str, dict[str, float]] | None:
        if not self.active:
            return None
        self.active = False
        out = {}
        for name, mod in self.nodes.items():
            grads = [p.grad.detach().abs().pow(2).sum() for p in mod.parameters()
                     if p.grad is not None]
            gnorm = float(torch.stack(grads).sum().sqrt()) if grads else 0.0
            act = float(self._act[name]) if name in self._act else None
            out[name] = {"act": act, "grad_norm": gnorm}
        return out

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def stability_warnings(records: list[dict], factor: float = STABILITY_FACTOR,
                       window: int = STABILITY_WINDOW, warmup: int = STABILITY_WARMUP
                       ) -> list[dict[str, Any]]:
    """The first blow-up per (spectral node, quantity) in a run's loss records.

    Args:
        records: ``loss.jsonl`` records; those with a ``spectral`` entry are the monitor's.
        factor: growth that counts as a blow-up.
        window: steps back over which the baseline (the smallest positive value) is taken.
        warmup: records at steps <= warmup are neither checked nor used as baselines.

    Returns:
        One dict per blow-up: node, quantity (``act`` or ``grad_norm``), step, value,
        baseline, baseline_step, growth and a one-line ``message``.
    """
    series: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for rec in records:
        if rec.get("step", 0) <= warmup:
            continue
        for node, vals in (rec.get("spectral") or {}).items():
            for q in ("act", "grad_norm"):
                v = vals.get(q)
                if v is not None and math.isfinite(v) and v > 0:
                    series.setdefault((node, q), []).append((rec["step"], float(v)))
    out = []
    for (node, q), pts in sorted(series.items()):
        for i, (step, v) in enumerate(pts):
            prior = [(b, s) for s, b in pts[:i] if step - s <= window]
            if not prior:
                continue
            base, base_step = min(prior)
            if v > factor * base:
                what = "mean |activation|" if q == "act" else "gradient norm"
                out.append({"node": node, "quantity": q, "step": step, "value": v,
                            "baseline": base, "baseline_step": base_step, "growth": v / base,
                            "message": f"spectral node {node!r}: {what} grew {v / base:.1f}x "
                                       f"(from {base:.3g} at step {base_step} to {v:.3g} at "
                                       f"step {step}; warning above {factor:g}x within "
                                       f"{window} steps)"})
                break
    return out
