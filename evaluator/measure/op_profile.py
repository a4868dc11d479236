"""``archsearch profile --ops``: where a train step's and a sampling NFE's time goes, op by op.

Each spec's train step (forward+backward+AdamW) and sampling NFE (one eval-mode forward
without gradients, the model call a sampler makes; the scheduler's own work is left out) run
under ``torch.profiler``, interleaved (A, B, A, B, ...) like the rest of ``profile``. Self
time is grouped by op, and every op belongs to exactly one family, so both tables add up to
the same total. Self times of nested ops do not overlap, so on the CPU the total is the
profiled step time less the Python work between ops.
"""
from __future__ import annotations

import time
from typing import Callable

from evaluator.measure.profile import _step_fns, interleaved_median_ms

TOP = 15
OPTIMIZER = "optimizer/"      # key prefix of ops run inside ``Optimizer.step``
COMPLEX = " [complex]"        # key suffix of an op with a complex input
# (family, op-name prefixes), matched in order; the first match wins.
FAMILIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("fft", ("aten::_fft_", "aten::fft_")),
    ("conv", ("aten::conv", "aten::_conv", "aten::mkldnn", "aten::cudnn_conv",
              "aten::slow_conv", "aten::thnn_conv", "aten::_nnpack", "aten::_slow_conv")),
    ("norm", ("aten::native_layer_norm", "aten::layer_norm", "aten::group_norm",
              "aten::native_group_norm", "aten::batch_norm", "aten::native_batch_norm",
              "aten::_batch_norm", "aten::instance_norm", "aten::rms_norm",
              "aten::_fused_rms_norm", "aten::linalg_vector_norm", "aten::norm")),
    ("attention/matmul", ("aten::_scaled_dot_product", "aten::scaled_dot_product",
                          "aten::_flash_attention", "aten::_efficient_attention", "aten::bmm",
                          "aten::baddbmm", "aten::mm", "aten::addmm", "aten::matmul",
                          "aten::linear", "aten::einsum", "aten::_softmax", "aten::softmax")),
    ("copy/cat/pad", ("aten::copy_", "aten::_to_copy", "aten::to", "aten::clone",
                      "aten::contiguous", "aten::cat", "aten::stack", "aten::pad",
                      "aten::constant_pad_nd", "aten::_pad_", "aten::reflection_pad",
                      "aten::replication_pad", "aten::roll", "aten::flip", "aten::index",
                      "aten::_index_put", "aten::gather", "aten::scatter",
                      "aten::slice_backward", "aten::select_backward")),
    ("complex elementwise", ("aten::view_as_real", "aten::view_as_complex", "aten::complex",
                             "aten::real", "aten::imag", "aten::polar", "aten::angle",
                             "aten::conj", "aten::_conj", "aten::resolve_conj",
                             "aten::_neg_view", "aten::resolve_neg")),
    ("autograd engine", ("autograd::",)),
)
FAMILY_NAMES = ("optimizer", *(f for f, _ in FAMILIES), "other")


def op_family(key: str) -> str:
    """The one family an op key belongs to (see ``FAMILIES``; optimizer ops first)."""
    if key.startswith(OPTIMIZER):
        return "optimizer"
    name = key.removesuffix(COMPLEX)
    for fam, prefixes in FAMILIES:
        if name.startswith(prefixes):
            return fam
    return "complex elementwise" if key.endswith(COMPLEX) else "other"


def _in_optimizer(event) -> bool:
    e = event
    while e is not None:
        if e.name.startswith("Optimizer.step"):
            return True
        e = e.cpu_parent
    return False


def _op_key(event) -> str:
    """Op name, marked when an input is complex and when it ran inside the optimizer."""
    dtypes = getattr(event, "input_dtypes", None) or ()
    key = event.name + (COMPLEX if any("complex" in str(d) for d in dtypes) else "")
    return OPTIMIZER + key if _in_optimizer(event) else key


def _self_us(events, metric: str) -> dict[str, float]:
    """Self time (us) per op key; ``cuda`` attributes kernel time to the op launching it."""
    out: dict[str, float] = {}
    for e in events:
        if e.device_type.name != "CPU":      # kernels: counted through their CPU op
            continue
        us = e.self_cpu_time_total if metric == "cpu" else e.self_device_time_total
        if us:
            k = _op_key(e)
            out[k] = out.get(k, 0.0) + us
    return out


def _profiled(fn: Callable[[], None], device: str):
    """Run ``fn`` once under the profiler: (events, wall ms)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = device.startswith("cuda")
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts, record_shapes=True) as prof:
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        wall = (time.perf_counter() - t0) * 1e3
    return prof.events(), wall


def profile_ops_interleaved(fns: dict[str, Callable[[], None]], *, rounds: int,
                            device: str = "cpu") -> dict:
    """Per-spec op self times (ms per call) and profiled wall ms, interleaved over rounds."""
    metrics = ["cpu", "cuda"] if device.startswith("cuda") else ["cpu"]
    ops = {m: {k: {} for k in fns} for m in metrics}
    wall = {k: 0.0 for k in fns}
    for _ in range(2):          # warm-up outside the profiler
        for fn in fns.values():
            fn()
    for _ in range(rounds):
        for k, fn in fns.items():
            events, ms = _profiled(fn, device)
            wall[k] += ms / rounds
            for m in metrics:
                for op, us in _self_us(events, m).items():
                    ops[m][k][op] = ops[m][k].get(op, 0.0) + us / 1e3 / rounds
    return {"ops": ops, "profiled_wall_ms": wall}


def side_by_side(per_spec: dict[str, dict[str, float]], top: int = TOP,
                 group: Callable[[str], str] | None = None) -> list[dict]:
    """Rows {name, ms: {spec: ms}, excess: {spec: ms - first spec's ms}}.

    The ``top`` rows whose excess is largest either way (a spec can also be faster at an
    op), sorted largest excess first (largest time with one spec), then ``other`` summing
    the rest and ``total``. ``group`` maps an op to its family for the family table.
    """
    specs = list(per_spec)
    table: dict[str, dict[str, float]] = {}
    for s, d in per_spec.items():
        for op, ms in d.items():
            row = table.setdefault(group(op) if group else op, dict.fromkeys(specs, 0.0))
            row[s] += ms
    rows = [_row(name, ms, specs) for name, ms in table.items()]
    rows.sort(key=lambda r: -_size(r, specs))
    rows, rest = rows[:top], rows[top:]
    rows.sort(key=lambda r: -(max(r["excess"].values()) if len(specs) > 1 else r["ms"][specs[0]]))
    if rest:
        rows.append(_row("other", {s: sum(r["ms"][s] for r in rest) for s in specs}, specs))
    return rows + [_row("total", {s: sum(d.values()) for s, d in per_spec.items()}, specs)]


def _size(row: dict, specs: list[str]) -> float:
    """How much a row matters: its largest excess either way, or its time with one spec."""
    if len(specs) == 1:
        return row["ms"][specs[0]]
    return max(abs(v) for v in row["excess"].values())


def _row(name: str, ms: dict[str, float], specs: list[str]) -> dict:
    first = ms[specs[0]]
    return {"name": name, "ms": dict(ms), "excess": {s: ms[s] - first for s in specs[1:]}}


def _nfe_fn(model, x, t):
    import torch

    def nfe():
        model.eval()
        with torch.no_grad():
            model(x, t)

    return nfe


def _synced(fn):
    """``fn`` then a CUDA synchronise, so wall time covers the kernels it queued."""
    import torch

    def run():
        fn()
        torch.cuda.synchronize()

    return run


def _train_fn(model, step):
    def train():
        model.train()
        step()

    return train


def profile_ops(models: dict[str, object], images: dict[str, tuple[int, int, int]], *,
                batch_size: int, rounds: int, device: str = "cpu") -> dict:
    """Op and family tables of the train step and the sampling NFE of several models.

    Returns ``{phase: {"rounds", "batch_size", "device", "plain_ms", "profiled_wall_ms",
    "tables": {metric: {"ops": rows, "families": rows}}}}`` for phases ``train_step`` and
    ``nfe``; ``plain_ms`` is the median time of the same call without the profiler.
    """
    import torch

    fns: dict[str, dict[str, Callable[[], None]]] = {"train_step": {}, "nfe": {}}
    for name, m in models.items():
        x = torch.randn(batch_size, *images[name], device=device)
        t = torch.randint(0, 1000, (batch_size,), device=device)
        m.to(device)
        fns["train_step"][name] = _train_fn(m, _step_fns(m, x, t)[2])
        fns["nfe"][name] = _nfe_fn(m, x, t)
    out = {}
    sync = _synced if device.startswith("cuda") else (lambda fn: fn)
    for phase, calls in fns.items():
        got = profile_ops_interleaved(calls, rounds=rounds, device=device)
        tables = {metric: {"ops": side_by_side(per_spec),
                           "families": side_by_side(per_spec, len(FAMILY_NAMES), op_family)}
                  for metric, per_spec in got["ops"].items()}
        out[phase] = {"rounds": rounds, "batch_size": batch_size, "device": device,
                      "plain_ms": interleaved_median_ms(
                          {k: sync(f) for k, f in calls.items()}, rounds, warmup=1),
                      "profiled_wall_ms": got["profiled_wall_ms"], "tables": tables}
    return out
