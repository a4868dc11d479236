"""``archsearch train | sample | evaluate | report``: argument parsers and runners.

This module imports only the standard library at module level (``archsearch --help``
must answer at once); each runner imports torch and friends when it runs. Bad input
raises :class:`archspec.errors.UserError`, which the main CLI prints as one line per
problem with exit code 2. Runners return 0 on success and 1 when a run failed (for
example a non-finite loss), after printing why.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from app.commands.spec import add_overrides
from archspec.choices import CLIP_POLICIES, DEVICES



def _add_common(p: argparse.ArgumentParser, out: bool = True) -> None:
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="where to run: CUDA if available (auto), cpu or cuda")
    if out:
        p.add_argument("--out", default="results", metavar="DIR",
                       help="results root; runs go to DIR/runs/<name>/<hash>/ (default: results)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="hide progress bars")


def _spec_file(path: str) -> Path:
    from archspec.errors import UserError

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{path}: no such spec file")
    return p


def _check_device(name: str) -> None:
    from archspec.errors import UserError
    from evaluator.device import resolve_device

    try:
        resolve_device(name)
    except (ValueError, RuntimeError) as e:
        raise UserError(f"--device: {e}") from None


# ---- train ------------------------------------------------------------------------------------
def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="SPEC", help="spec file (YAML or JSON)")
    add_overrides(p)
    _add_common(p)
    p.add_argument("--resume", action="store_true",
                   help="continue from the run's last checkpoint")
    p.add_argument("--steps", type=int, metavar="N",
                   help="training steps (same as --override train.steps=N; changes the hash)")
    _add_no_wait(p)


def _add_no_wait(p: argparse.ArgumentParser,
                 then: str = "reusing (or resuming) its result") -> None:
    p.add_argument("--no-wait", dest="wait", action="store_false",
                   help="when another process holds the run, exit 3 at once instead of "
                        f"waiting for it and {then}")


def run_train(args: argparse.Namespace) -> int:
    from archspec import load_spec
    from archspec.errors import UserError

    overrides = list(args.override)
    if args.steps is not None:
        if args.steps < 1:
            raise UserError(f"--steps must be >= 1, got {args.steps}")
        overrides.append(f"train.steps={args.steps}")
    spec = load_spec(_spec_file(args.spec), overrides=overrides)
    _check_device(args.device)
    from evaluator.store.atomic import check_writable
    from evaluator.store.rundir import RunDir
    from evaluator.store.runlock import owning_run
    from evaluator.training.loop import train

    check_writable(args.out)
    run = RunDir.create(spec, args.out)
    with owning_run(run, "archsearch train", wait=args.wait) as waited:
        # After waiting, the other process's result is reused (or resumed if it died).
        reused = waited and run.status().get("status") == "finished"
        res = train(spec, run=run, device=args.device, resume=args.resume or waited,
                    progress=args.progress)
    m = res.metrics
    print(f"run: {res.run.path}" + (" (reused: trained by the process waited for)"
                                    if reused else ""))
    if res.status != "finished":
        print(f"failed: {res.reason}", file=sys.stderr)
        return 1
    print(f"finished {res.step} steps: loss {m.get('loss_first', float('nan')):.4f} -> "
          f"{m.get('loss_last', float('nan')):.4f} (loss_drop {m.get('loss_drop', 0):.2f}), "
          f"{m.get('steps_per_second') or 0:.1f} steps/s")
    return 0


# ---- sample -----------------------------------------------------------------------------------
def add_sample_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run folder (results/runs/<name>/<hash>)")
    p.add_argument("--sampler", default="ddim", help="registered sampler (default: ddim)")
    p.add_argument("--steps", type=int, default=20, help="sampling steps (default: 20)")
    p.add_argument("--seed", type=int, default=0, help="initial-noise seed (default: 0)")
    p.add_argument("--n", type=int, default=64, help="number of samples (default: 64)")
    p.add_argument("--clip", choices=CLIP_POLICIES, default=None,
                   help="x0 clipping policy (default: the spec's evaluate.clip)")
    p.add_argument("--raw", action="store_true", help="use the raw weights instead of EMA")
    _add_common(p, out=False)
    _add_no_wait(p, then="sampling its final weights")


def run_sample(args: argparse.Namespace) -> int:
    from archspec.errors import UserError
    from evaluator.store.rundir import RunDir

    run = RunDir.open(args.run)
    if args.steps < 1 or args.n < 1:
        raise UserError(f"--steps and --n must be >= 1 (got {args.steps}, {args.n})")
    if not 0 <= args.seed < 2**63:
        raise UserError(f"--seed must be in 0..2**63-1, got {args.seed}")
    from evaluator.diffusion.samplers import check_sampler
    from evaluator.store.runlock import owning_run

    check_sampler(args.sampler)
    _check_device(args.device)
    # It writes a grid and a log line into the run: never while a train or evaluate holds it
    # (it would read a checkpoint still being trained and interleave log.txt).
    with owning_run(run, "archsearch sample", wait=args.wait):
        path = _sample_into(run, args)
    print(path)
    return 0


def _sample_into(run: Any, args: argparse.Namespace) -> Path:
    from archspec.errors import UserError
    from evaluator.diffusion.processes import process_schedule
    from evaluator.diffusion.samplers import sample
    from evaluator.report.images import save_grid
    from evaluator.store.checkpoints import load_trained

    model, spec = load_trained(run, args.device, ema=not args.raw)
    if args.steps > spec.diffusion.timesteps:
        raise UserError(f"--steps {args.steps} exceeds the run's diffusion.timesteps "
                        f"({spec.diffusion.timesteps})")
    shape = (spec.image.channels, spec.image.size, spec.image.size)
    res = sample(model, process_schedule(spec), sampler=args.sampler,
                 steps=args.steps, n=args.n, shape=shape, seed=args.seed,
                 clip=args.clip or spec.evaluate.clip, prediction=spec.diffusion.prediction,
                 device=next(model.parameters()).device, progress=args.progress)
    path = save_grid(res.images, run.samples_file(args.sampler, args.steps))
    run.log(f"sampled {args.n} with {args.sampler} x {args.steps} steps (seed {args.seed}, "
            f"NFE {res.nfe}, {res.ms_per_nfe:.2f} ms/NFE) -> {path.name}")
    return path


# ---- evaluate ---------------------------------------------------------------------------------
def add_evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("specs", nargs="+", metavar="SPEC", help="spec files to compare")
    p.add_argument("--budget", choices=("quick", "full"), default="quick",
                   help="quick: capped training and sampling (minutes on a CPU); "
                        "full: as the specs say (default: quick)")
    add_overrides(p)
    _add_common(p)
    _add_no_wait(p)


def run_evaluate(args: argparse.Namespace) -> int:
    for s in args.specs:
        _spec_file(s)
    _check_device(args.device)
    from evaluator.pipeline.evaluate import evaluate
    from evaluator.report.tables import format_table

    rows = evaluate(args.specs, budget=args.budget, out=args.out, device=args.device,
                    overrides=args.override, progress=args.progress, wait=args.wait)
    print(format_table(rows))
    return 1 if any(r.get("status") not in (None, "ok") for r in rows) else 0


# ---- report -----------------------------------------------------------------------------------
def add_report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="DIR", help="results root (or one run folder)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where to write report.md / report.html (default: DIR)")


def run_report(args: argparse.Namespace) -> int:
    from evaluator.report.writers import report

    md, page = report(args.dir, args.out,
                      on_skip=lambda line: print(f"skipped: {line}", file=sys.stderr))
    print(md)
    print(page)
    return 0



# ---- rehash -----------------------------------------------------------------------------------
def add_rehash_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="results", metavar="DIR", help="results root (default: results)")
    p.add_argument("--dry-run", action="store_true", help="say what would move; move nothing")
    p.add_argument("--no-wait", dest="wait", action="store_false",
                   help="leave a run that another process holds where it is (reported busy, "
                        "exit 3) instead of waiting for it")


def run_rehash(args: argparse.Namespace) -> int:
    from evaluator.store.rekey import rekey_runs
    from evaluator.store.runlock import EXIT_BUSY

    results = rekey_runs(args.out, dry_run=args.dry_run, wait=args.wait)
    for r in results:
        if r.action != "kept":
            target = f" -> {r.new.name}" if r.new is not None else ""
            detail = f" ({r.detail})" if r.detail else ""
            print(f"{r.action}: {r.old}{target}{detail}")
    counts = {a: sum(r.action == a for r in results) for a in dict.fromkeys(r.action for r in results)}
    print(", ".join(f"{n} {a}" for a, n in counts.items()) or "no runs")
    return EXIT_BUSY if counts.get("busy") else 0
