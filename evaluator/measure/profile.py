"""``archsearch profile``: parameters, FLOPs, step times and memory, measured side by side.

These machines are noisy, so every comparison here interleaves its candidates (A, B, A,
B, ...) in one run and reports medians and ratios, never absolute times from separate runs.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

WIDTH, SIZE, BATCH = 32, 16, 16     # --blocks: same-width comparison setting


# --------------------------------------------------------------------------- timing
def interleaved_median_ms(fns: dict[str, Callable[[], None]], repeats: int,
                          warmup: int = 2, sync: Callable[[], None] | None = None
                          ) -> dict[str, float]:
    """Median wall time (ms) of each callable, run round-robin ``repeats`` times.

    ``sync`` (e.g. ``torch.cuda.synchronize``) runs before each clock start and inside the
    timed span after each call: CUDA kernels run asynchronously, so without it the time
    would be the launch cost only.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            if sync is not None:
                sync()
            t0 = time.perf_counter()
            fn()
            if sync is not None:
                sync()
            times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def device_sync(device) -> Callable[[], None] | None:
    """``torch.cuda.synchronize`` bound to a CUDA ``device``; None elsewhere (CPU ops block)."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return None
    return lambda: torch.cuda.synchronize(device)


def _step_fns(model, x, t):
    """(forward, forward+backward, forward+backward+AdamW) closures for one batch."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def fwd():
        with torch.no_grad():
            model(x, t)

    def fwd_bwd():
        model.zero_grad(set_to_none=True)
        model(x, t).square().mean().backward()

    def step():
        fwd_bwd()
        opt.step()

    return fwd, fwd_bwd, step


# --------------------------------------------------------------------------- one model
@dataclass
class ModelProfile:
    name: str
    params: int
    flops: int
    fwd_ms: float
    fwd_bwd_ms: float
    train_step_ms: float
    peak_mem_mb: float
    peak_mem_source: str
    batch_size: int
    image: list[int]
    device: str
    threads: int
    repeats: int


def count_flops(model, x, t) -> int:
    """FLOPs of one forward pass (torch.utils.flop_counter; complex ops count as real)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x, t)
    return int(fc.get_total_flops())


def peak_memory_mb(model, x, t) -> tuple[float, str]:
    """Peak training memory of one step.

    On CUDA: the allocator's peak. On the CPU there is no allocator peak to read, so this
    measures the tensors autograd saves for backward (via saved-tensor hooks) plus the
    weights, their gradients and AdamW's two moments.
    """
    import torch

    if x.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(x.device)
        model(x, t).square().mean().backward()
        return torch.cuda.max_memory_allocated(x.device) / 2**20, "cuda allocator peak"
    seen: dict[int, int] = {}

    def pack(tensor):
        # storages shared by several saved views count once
        try:
            key = tensor.untyped_storage().data_ptr()
            seen[key] = max(seen.get(key, 0), tensor.untyped_storage().nbytes())
        except (RuntimeError, NotImplementedError):
            seen[id(tensor)] = tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t_: t_):
        loss = model(x, t).square().mean()
    saved = sum(seen.values())
    loss.backward()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return (saved + 4 * weights) / 2**20, "saved activations + weights/grads/AdamW (cpu)"


def profile_model(name: str, model, image: tuple[int, int, int], *, batch_size: int,
                  repeats: int, device: str = "cpu") -> ModelProfile:
    import torch

    x = torch.randn(batch_size, *image, device=device)
    t = torch.randint(0, 1000, (batch_size,), device=device)
    model = model.to(device).train()
    fwd, fwd_bwd, step = _step_fns(model, x, t)
    ms = interleaved_median_ms({"fwd": fwd, "fwd_bwd": fwd_bwd, "step": step}, repeats,
                               sync=device_sync(device))
    mem, src = peak_memory_mb(model, x, t)
    return ModelProfile(name=name, params=sum(p.numel() for p in model.parameters()),
                        flops=count_flops(model, x, t), fwd_ms=ms["fwd"],
                        fwd_bwd_ms=ms["fwd_bwd"], train_step_ms=ms["step"], peak_mem_mb=mem,
                        peak_mem_source=src, batch_size=batch_size, image=list(image),
                        device=device, threads=torch.get_num_threads(), repeats=repeats)


def compare_train_steps(models: dict[str, object], image, *, batch_size: int,
                        repeats: int, device: str = "cpu") -> dict[str, float]:
    """Median fwd+bwd+AdamW ms of several models, interleaved in one run."""
    import torch

    x = torch.randn(batch_size, *image, device=device)
    t = torch.randint(0, 1000, (batch_size,), device=device)
    fns = {k: _step_fns(m.to(device).train(), x, t)[2] for k, m in models.items()}
    return interleaved_median_ms(fns, repeats, sync=device_sync(device))


# --------------------------------------------------------------------------- diffusers peer
def _as_model(unet):
    """diffusers' UNet2DModel behind the toolkit's ``model(x_t, t)`` interface."""
    import torch

    class DiffusersPeer(torch.nn.Module):
        def __init__(self, unet):
            super().__init__()
            self.unet = unet

        def forward(self, x, t):
            return self.unet(x, t).sample

    return DiffusersPeer(unet)


def diffusers_peer(image: tuple[int, int, int], target_params: int):
    """The UNet2DModel (2 or 3 levels, attention on the lowest level) closest in size."""
    import torch
    from diffusers import UNet2DModel

    c, size = image[0], image[1]
    levels = 2 if size <= 8 else 3
    best = None
    for base in range(8, 257, 8):
        chans = tuple(base * m for m in ((1, 2) if levels == 2 else (1, 2, 2)))
        cfg = dict(sample_size=size, in_channels=c, out_channels=c, layers_per_block=1,
                   block_out_channels=chans, norm_num_groups=min(8, base),
                   down_block_types=("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D",),
                   up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (levels - 1),
                   attention_head_dim=8)
        with torch.device("meta"):  # counting only: allocate nothing
            n = sum(p.numel() for p in UNet2DModel(**cfg).parameters())
        if best is None or abs(n - target_params) < abs(best[0] - target_params):
            best = (n, cfg)
    return _as_model(UNet2DModel(**best[1])), best[1]


# --------------------------------------------------------------------------- blocks
# Blocks whose time as a ratio to one conv means nothing, and why (listed, not timed).
UNTIMED = {"input": "graph input, computes nothing", "timestep": "graph input, computes nothing",
           "unet": "a whole network: profile a spec that uses it instead"}


def _scaled_config(name: str, width: int, size: int):
    """The block's registered example with channels set to ``width`` and size ``size``."""
    import blocks
    from blocks import TensorSpec

    params, inputs = blocks.get(name).example_config()
    if "channels" in params:
        params["channels"] = width
    scaled = []
    for s in inputs:
        if s.domain in ("real", "complex", "dual") and len(s.shape) == 3:
            w = size // 2 + 1 if s.shape[2] != s.shape[1] else size
            c = 2 * width if s.domain == "dual" else width
            scaled.append(TensorSpec(s.domain, (c, size, w)))
        else:
            scaled.append(s)
    return params, scaled


def _inputs(specs, batch: int, gen):
    import torch

    out = []
    for s in specs:
        shape = (batch, *s.shape)
        if s.domain == "time":
            out.append(torch.randint(0, 1000, shape, generator=gen).float())
        elif s.domain == "complex":
            out.append(torch.randn(shape, generator=gen, dtype=torch.complex64))
        else:
            out.append(torch.randn(shape, generator=gen))
    return out


def _block_fwd_bwd(module, xs):
    for x in xs:
        if x.is_floating_point() or x.is_complex():
            x.requires_grad_(True)

    def run():
        module.zero_grad(set_to_none=True)
        y = module(*xs)
        (y.abs() if y.is_complex() else y).square().mean().backward()

    return run


def profile_blocks(*, width: int = WIDTH, size: int = SIZE, batch: int = BATCH,
                   repeats: int = 7, only: list[str] | None = None) -> list[dict]:
    """Each block's fwd+bwd time as a ratio to a same-width real 3x3 conv on the same grid.

    Every block is timed interleaved with its own reference conv, so slow phases of a
    noisy machine hit both alike. Complex convs are also timed in every exact mode. A
    block that cannot be timed gets a row with ``untimed`` saying why, never no row.
    """
    import torch

    import blocks

    rows = []
    gen = torch.Generator().manual_seed(0)
    for name in only or blocks.names():
        family = blocks.get(name).family
        if name in UNTIMED:
            rows.append({"block": name, "family": family, "untimed": UNTIMED[name]})
            continue
        params, specs = _scaled_config(name, width, size)
        variants = {name: params}
        if "mode" in blocks.get(name).params.model_fields:
            field = blocks.get(name).params.model_fields["mode"]
            for m in getattr(field.annotation, "__args__", ()):
                variants[f"{name}[mode={m}]"] = {**params, "mode": m}
        for label, ps in variants.items():
            try:
                mod = blocks.build(name, ps, specs)
            except Exception as e:  # a block that cannot take the scaled shape
                rows.append({"block": label, "family": family,
                             "untimed": f"cannot build at width {width}, {size}x{size}: "
                                        f"{str(e).splitlines()[0]}"})
                continue
            xs = _inputs(specs, batch, gen)
            grid = next((s.shape for s in specs if len(s.shape) == 3), (width, size, size))
            ref = torch.nn.Conv2d(width, width, 3, padding=1)
            rx = torch.randn(batch, width, grid[1], grid[2], generator=gen)
            ms = interleaved_median_ms({"block": _block_fwd_bwd(mod, xs),
                                        "ref": _block_fwd_bwd(ref, [rx])}, repeats)
            rows.append({"block": label, "family": blocks.get(name).family,
                         "fwd_bwd_ms": round(ms["block"], 3),
                         "real_conv_ms": round(ms["ref"], 3),
                         "ratio_to_real_conv": round(ms["block"] / ms["ref"], 3),
                         "width": width, "grid": list(grid[1:]), "batch": batch})
    return rows
