"""One owner per run folder, measured (issue 18's targets).

1. Concurrent starts: each trial starts 2-3 processes on one fresh results root within a
   second of each other, each wanting the same run: the ``archsearch train`` CLI, an app job
   (a :class:`evaluator.pipeline.jobs.JobQueue` in its own interpreter) and a sweep trial
   (``run_spec(..., reuse_eval=True)`` as :func:`evaluator.sweeps.study.run_config` calls it;
   not a whole Optuna worker). Counted: duplicated or missing steps in ``loss.jsonl``,
   interleaved training sessions in ``log.txt`` (a start before the previous one ended),
   and non-zero exits.
2. Kill the holder: a CLI training is SIGKILLed at a random step while a second CLI waits
   for it; the waiter must resume and end with weights bit-identical to an undisturbed run.

    python benchmarks/run_lock.py --trials 20 --kill-trials 10

Every process uses one torch thread (bit-identical weights need the same thread count).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

SPEC = {
    "name": "lockbench", "image": {"channels": 1, "size": 8},
    "model": {"nodes": {"x": {"block": "input"}, "t": {"block": "timestep"},
                        "temb": {"block": "time_embedding", "in": ["t"], "dim": 16},
                        "eps": {"block": "resblock", "in": ["x", "temb"], "channels": 1}},
              "output": "eps"},
    "diffusion": {"timesteps": 50},
    "train": {"dataset": "digits", "steps": 40, "batch_size": 4, "checkpoint_every": 5},
}

_PRELUDE = """
import sys, time, torch
torch.set_num_threads(1)
delay = float(sys.argv[1])
if delay:
    orig = torch.optim.AdamW.step
    def slow(self, *a, **k):
        time.sleep(delay)
        return orig(self, *a, **k)
    torch.optim.AdamW.step = slow
spec_file, root = sys.argv[2], sys.argv[3]
"""
DRIVERS = {
    "cli": _PRELUDE + """
from app.cli import main
sys.exit(main(["train", spec_file, "--out", root, "--device", "cpu", "--no-progress"]))
""",
    "job": _PRELUDE + """
from evaluator.pipeline.jobs import JobQueue
q = JobQueue(root)
snap = q.wait(q.submit([spec_file], budget="full", device="cpu", evaluate=False).id, 1800)
print(snap["state"], snap["message"])
sys.exit(0 if snap["state"] == "finished" else 1)
""",
    "sweep": _PRELUDE + """
from archspec import load_spec
from evaluator.pipeline.budgets import apply_budget, get_budget
from evaluator.pipeline.evaluate import run_spec
b = get_budget("full")
r = run_spec(apply_budget(load_spec(spec_file), b), b, root, device="cpu", evaluate=False,
             reuse_eval=True)
sys.exit(0 if r.status == "finished" else 1)
""",
}


def start(kind: str, work: Path, root: Path, delay: float = 0.0, **kw) -> subprocess.Popen:
    driver = work / f"drive_{kind}.py"
    if not driver.exists():
        driver.write_text(DRIVERS[kind])
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(driver), str(delay), str(work / "spec.yaml"),
                             str(root)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def run_folder(root: Path) -> Path:
    return next(root.glob("runs/*/*/spec.resolved.json")).parent


def sessions(log: str) -> tuple[int, int]:
    """(training sessions, interleaved ones) from log.txt."""
    open_, n, bad = False, 0, 0
    for line in log.splitlines():
        if " start: " in line or " resume at step " in line:
            n += 1
            bad += open_
            open_ = True
        elif any(f" {s} at step " in line for s in ("finished", "failed", "cancelled")):
            open_ = False
    return n, bad


def concurrent_trial(work: Path, i: int, rng: random.Random, steps: int) -> dict:
    root = work / f"c{i}"
    kinds = rng.sample(["cli", "job", "sweep"], rng.choice([2, 3]))
    procs = []
    for k in kinds:
        procs.append(start(k, work, root, delay=0.02))
        time.sleep(rng.uniform(0, 1.0 / len(kinds)))
    codes = [p.wait(1800) for p in procs]
    run = run_folder(root)
    recs = [json.loads(x) for x in (run / "loss.jsonl").read_text().splitlines() if x.strip()]
    got = [r["step"] for r in recs]
    n_sessions, interleaved = sessions((run / "log.txt").read_text())
    return {"kinds": kinds, "codes": codes, "duplicated_steps": len(got) - len(set(got)),
            "missing_steps": len(set(range(1, steps + 1)) - set(got)),
            "sessions": n_sessions, "interleaved": interleaved}


def kill_trial(work: Path, i: int, rng: random.Random, steps: int, ref: dict) -> dict:
    import torch

    from evaluator.store.checkpoints import load_checkpoint

    root = work / f"k{i}"
    kill_at = rng.randint(2, steps - 3)
    holder = start("cli", work, root, delay=0.1)
    while not list(root.glob("runs/*/*/owner.json")):
        time.sleep(0.05)
    waiter = start("cli", work, root)
    run = run_folder(root)
    loss = run / "loss.jsonl"
    while holder.poll() is None and (not loss.exists() or
                                     loss.read_text().count("\n") < kill_at):
        time.sleep(0.02)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    code = waiter.wait(1800)
    ck = load_checkpoint(run / "checkpoint.pt")
    same = all(torch.equal(ref[p][k], ck[p][k]) for p in ("model", "ema") for k in ref[p])
    log = (run / "log.txt").read_text()
    return {"kill_at": kill_at, "waiter_code": code, "resumed": "resume at step" in log,
            "bit_identical": same and ck["step"] == steps}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--kill-trials", type=int, default=10)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=None, help="scratch folder (default: a temp folder)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(args.work or tempfile.mkdtemp(prefix="run_lock_"))
    work.mkdir(parents=True, exist_ok=True)
    spec = {**SPEC, "train": {**SPEC["train"], "steps": args.steps}}
    (work / "spec.yaml").write_text(yaml.safe_dump(spec))
    t0 = time.time()
    conc = []
    for i in range(args.trials):
        conc.append(concurrent_trial(work, i, rng, args.steps))
        print(json.dumps(conc[-1]), flush=True)
    kills = []
    if args.kill_trials:
        from evaluator.store.checkpoints import load_checkpoint

        r = start("cli", work, work / "ref")
        assert r.wait(1800) == 0, r.stderr.read()
        ref = load_checkpoint(run_folder(work / "ref") / "checkpoint.pt")
        for i in range(args.kill_trials):
            kills.append(kill_trial(work, i, rng, args.steps, ref))
            print(json.dumps(kills[-1]), flush=True)
    summary = {
        "concurrent_trials": len(conc),
        "processes": sum(len(c["kinds"]) for c in conc),
        "duplicated_steps": sum(c["duplicated_steps"] for c in conc),
        "missing_steps": sum(c["missing_steps"] for c in conc),
        "interleaved_sessions": sum(c["interleaved"] for c in conc),
        # a CLI `train` (no --resume) that starts after the holder finished, without
        # waiting, trains anew: counted, not an error (that is what `train` means)
        "extra_sessions": sum(max(0, c["sessions"] - 1) for c in conc),
        "nonzero_exits": sum(x != 0 for c in conc for x in c["codes"]),
        "kill_trials": len(kills),
        "resumed": sum(k["resumed"] for k in kills),
        "bit_identical": sum(k["bit_identical"] for k in kills),
        "waiter_nonzero_exits": sum(k["waiter_code"] != 0 for k in kills),
        "steps": args.steps, "seed": args.seed, "seconds": round(time.time() - t0, 1),
    }
    print(json.dumps(summary, indent=2))
    ok = (summary["duplicated_steps"] == summary["missing_steps"] == 0
          and summary["interleaved_sessions"] == summary["nonzero_exits"] == 0
          and summary["resumed"] == summary["bit_identical"] == len(kills))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
