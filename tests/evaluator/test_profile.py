"""The profile command: FLOPs against hand counts, JSON fields, side-by-side ratios."""
from __future__ import annotations

import json

import torch

from archspec import build_model, spec_from_dict
from app.cli import main
from archspec.loading import parse_text
from evaluator.measure.profile import (count_flops, interleaved_median_ms, peak_memory_mb,
                                       profile_blocks)
from tests.conftest import MINIMAL, SPECS

CONV = MINIMAL.replace("    y: {block: irfft2, in: [f]}\n",
                       "    y: {block: irfft2, in: [f]}\n    c: {block: conv, in: [y], channels: 1}\n"
                       ).replace("output: y", "output: c")


def test_flops_match_hand_count():
    model = build_model(spec_from_dict(parse_text(CONV, "yaml")))
    x, t = torch.randn(4, 1, 8, 8), torch.zeros(4)
    # one 3x3 conv, 1 -> 1 channel, 8x8 output, batch 4: 2 * k*k*Cin*Cout*H*W*B
    assert count_flops(model, x, t) == 2 * 9 * 1 * 1 * 8 * 8 * 4


def test_saved_activation_memory_counts_real_tensors():
    model = build_model(spec_from_dict(parse_text(CONV, "yaml")))
    x = torch.randn(64, 1, 8, 8, requires_grad=True)
    mb, source = peak_memory_mb(model, x, torch.zeros(64))
    weights = sum(p.numel() * 4 for p in model.parameters())
    assert "saved activations" in source
    assert mb * 2**20 > 4 * weights  # something was saved for backward on top of the weights


def test_interleaved_timing_orders_work():
    a = torch.randn(256, 256)
    ms = interleaved_median_ms({"small": lambda: a @ a, "big": lambda: [a @ a for _ in range(20)]},
                               repeats=3, warmup=1)
    assert ms["big"] > ms["small"] > 0


def test_interleaved_timer_syncs_around_each_timed_call():
    # sync stands for torch.cuda.synchronize: it must run before the clock starts and
    # inside the timed span after each call (else async kernels would time as launches)
    import time as _time

    log = []

    def fn():
        log.append("call")

    def slow_sync():
        log.append("sync")
        _time.sleep(0.02)

    ms = interleaved_median_ms({"f": fn}, repeats=3, warmup=1, sync=slow_sync)
    assert log == ["call"] + ["sync", "call", "sync"] * 3
    assert ms["f"] >= 20.0   # the sync after the call is inside the timed span


def test_profile_json_fields(capsys):
    assert main(["profile", str(SPECS / "tiny_unet_8.yaml"), "--batch-size", "2",
                 "--repeats", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("params", "flops", "fwd_ms", "fwd_bwd_ms", "peak_mem_mb", "batch_size"):
        assert key in out
    assert out["batch_size"] == 2 and out["params"] == 686_403 and out["flops"] > 0


def test_profile_blocks_ratio_is_block_time_over_conv_time(monkeypatch):
    import evaluator.measure.profile as prof

    calls = []

    def fake_timer(fns, repeats):
        calls.append(sorted(fns))
        for f in fns.values():
            f()  # the block and the reference conv really run forward and backward
        return {"block": 6.0, "ref": 2.0}

    monkeypatch.setattr(prof, "interleaved_median_ms", fake_timer)
    rows = profile_blocks(repeats=1, only=["complex_conv", "conv"], batch=2)
    names = [r["block"] for r in rows]
    modes = {f"complex_conv[mode={m}]" for m in ("block", "gauss", "native")}
    assert set(names) == {"conv", "complex_conv"} | modes
    assert all(c == ["block", "ref"] for c in calls) and len(calls) == len(rows)
    for r in rows:
        assert (r["fwd_bwd_ms"], r["real_conv_ms"], r["ratio_to_real_conv"]) == (6.0, 2.0, 3.0)


def test_profile_blocks_lists_what_it_cannot_time(capsys):
    rows = profile_blocks(repeats=1, only=["input", "unet"], batch=2)
    assert [r["block"] for r in rows] == ["input", "unet"]
    assert all("untimed" in r and "fwd_bwd_ms" not in r for r in rows)
    assert main(["profile", "--blocks", "--only", "timestep"]) == 0
    out = capsys.readouterr().out
    assert "timestep" in out and "not timed: graph input" in out


def test_profile_needs_a_spec(capsys):
    assert main(["profile"]) == 2
    assert "give SPEC files to profile, or --blocks" in capsys.readouterr().err
