"""Benchmark a sweep: wall time with 1 worker and with N workers side by side, and the
per-trial overhead outside training and evaluation.

    python benchmarks/sweep_bench.py examples/sweeps/spectral_toggles_l8.yaml --workers 2

Run it on an idle machine. Both runs start from empty results roots (nothing reused) after
one warm-up that trains the cached FD feature extractor, so neither run pays for it. The
overhead of a trial is its Optuna wall time (datetime_start to datetime_complete) minus the
training and evaluation seconds it recorded; the idle time between a worker's trials
(ask/tell, polling) is reported beside it. Targets (issue 10): speed-up >= 1.6 with 2
workers on 2 cores, overhead < 2 s per trial.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from anywhere


def _run(sweep: str, workers: int, out: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "app.cli", "sweep", "run", sweep, "--workers",
                    str(workers), "--out", str(out), "--device", "cpu"], check=True)
    return time.perf_counter() - t0


def _overheads(name: str, out: Path) -> dict[str, float]:
    from optuna.trial import TrialState

    from evaluator.sweeps.study import default_storage, load_study, make_storage

    study, _ = load_study(name, make_storage(default_storage(out, name)))
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    over, gaps = [], []
    by_worker: dict[str, list] = {}
    for t in trials:
        tm = t.user_attrs["timing"]
        wall = (t.datetime_complete - t.datetime_start).total_seconds()
        over.append(wall - tm["train_s"] - tm["eval_s"])
        by_worker.setdefault(t.user_attrs["worker"], []).append(t)
    for ts in by_worker.values():
        ts.sort(key=lambda t: t.datetime_start)
        gaps += [(b.datetime_start - a.datetime_complete).total_seconds()
                 for a, b in zip(ts, ts[1:])]
    return {"trials": len(trials), "overhead_mean_s": statistics.mean(over),
            "overhead_max_s": max(over),
            "gap_mean_s": statistics.mean(gaps) if gaps else 0.0,
            "train_eval_s": sum(t.user_attrs["timing"]["train_s"]
                                + t.user_attrs["timing"]["eval_s"] for t in trials)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sweep")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    from evaluator.measure.quality import feature_extractor
    from evaluator.sweeps.spec import load_sweep

    ls = load_sweep(args.sweep)
    datasets = {ls.base.get("train", {}).get("dataset", "digits")}
    for d in datasets:  # warm-up: the cached extractor is trained once, outside the timing
        feature_extractor(d)
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        walls, stats = {}, {}
        for n in (1, args.workers):
            out = Path(tmp) / f"w{n}"
            walls[n] = _run(args.sweep, n, out)
            stats[n] = _overheads(ls.sweep.name, out)
    print(f"\nsweep {ls.sweep.name}: {stats[1]['trials']} trials")
    for n in walls:
        s = stats[n]
        print(f"  {n} worker(s): wall {walls[n]:.1f} s; train+eval {s['train_eval_s']:.1f} s; "
              f"overhead per trial mean {s['overhead_mean_s']:.2f} s, max "
              f"{s['overhead_max_s']:.2f} s; gap between a worker's trials mean "
              f"{s['gap_mean_s']:.2f} s")
    print(f"  speed-up with {args.workers} workers: {walls[1] / walls[args.workers]:.2f}x "
          "(target >= 1.6 with 2 workers on 2 cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
