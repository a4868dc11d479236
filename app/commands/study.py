"""``archsearch study``: run a study file on the sweep engine, show its status, report it.

    archsearch study run examples/study/research_questions.yaml --budget cpu --workers 2
    archsearch study status examples/study/research_questions.yaml --budget cpu
    archsearch study report examples/study/research_questions.yaml --budget cpu
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from app.commands import workers
from archspec.choices import DEVICES


def add_study(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="study_command", metavar="SUBCOMMAND", required=True)
    r = sub.add_parser("run", help="create or resume the study's sweeps and run N workers")
    r.add_argument("--workers", type=int, default=1, metavar="N",
                   help="worker processes here (0: only create the sweeps and enqueue)")
    r.add_argument("--dry-run", action="store_true",
                   help="list the sweeps and runs with the estimated time, and stop")
    r.add_argument("--retry-failed", action="store_true",
                   help="enqueue cells whose trial failed (NaN loss, error) again")
    r.add_argument("--device", choices=DEVICES, default="auto")
    r.add_argument("--threads", type=int, default=None, metavar="T",
                   help="torch threads per worker (default: cores // workers)")
    r.add_argument("--heartbeat", type=int, default=10, metavar="S")
    w = sub.add_parser("worker", help="join a running study (any machine sharing --out)")
    w.add_argument("--device", choices=DEVICES, default="auto")
    w.add_argument("--threads", type=int, default=None, metavar="T")
    w.add_argument("--heartbeat", type=int, default=10, metavar="S")
    w.add_argument("--max-trials", type=int, default=None, metavar="N")
    sub.add_parser("status", help="cells done / running / failed / waiting per sweep")
    rep = sub.add_parser("report", help="write study.md and study.html from stored results")
    rep.add_argument("--report-dir", default=None, metavar="DIR",
                     help="where to write (default: <out>/studies/NAME/BUDGET)")
    for s in (r, w, sub.choices["status"], rep):
        s.add_argument("study", metavar="FILE", help="study file (YAML or JSON)")
        s.add_argument("--budget", default="cpu", metavar="NAME",
                       help="a budget the file defines (cpu, full)")
        s.add_argument("--out", default="results", metavar="DIR", help="results root")
        s.add_argument("--storage", default=None, metavar="URL",
                       help="Optuna storage (default: DIR/studies/NAME/BUDGET/journal.log)")


def run_study(args: argparse.Namespace) -> int:
    return {"run": _run, "worker": _worker, "status": _status,
            "report": _report}[args.study_command](args)


def _load(args: argparse.Namespace):
    from archspec.errors import UserError
    from evaluator.study.model import load_study_file

    if not Path(args.study).is_file():
        raise UserError(f"{args.study}: no such study file")
    return load_study_file(args.study)


def _url(args: argparse.Namespace, ls) -> str:
    from evaluator.study.engine import default_storage

    return args.storage or default_storage(args.out, ls.study.name, args.budget)


def _existing(args: argparse.Namespace, ls):
    from archspec.errors import UserError
    from evaluator.study.engine import registry_name
    from evaluator.sweeps.study import is_rdb, make_storage

    url = _url(args, ls)
    if not is_rdb(url) and not Path(url.removeprefix("journal:")).is_file():
        raise UserError(f"{url}: no study journal here (run `archsearch study run` first, or "
                        "give --out / --storage)")
    if args.budget not in ls.study.budgets:
        raise UserError(f"--budget: unknown budget {args.budget!r}")
    return make_storage(url), registry_name(ls.study.name, args.budget)


def _run(args: argparse.Namespace) -> int:
    from archspec.errors import UserError
    from evaluator.study import engine
    from evaluator.study.model import plan
    from evaluator.sweeps.study import make_storage

    if args.workers < 0:
        raise UserError("--workers: must be >= 0")
    ls = _load(args)
    p = plan(ls, args.budget)
    if args.dry_run:
        from evaluator.study.estimate import print_estimate

        return print_estimate(ls, p, args.budget, max(1, args.workers))
    url = _url(args, ls)
    storage = make_storage(url, args.heartbeat)
    studies = engine.create_or_resume(ls, args.budget, p, storage, args.out)
    n = engine.enqueue_missing(studies, p, retry_failed=args.retry_failed)
    name = engine.registry_name(ls.study.name, args.budget)
    print(f"study {name}: {len(p)} sweep(s), storage {url}; enqueued {n} trial(s)")
    if args.workers == 0:
        print(f"join with: archsearch study worker {args.study} --budget {args.budget} "
              f"--out {args.out}" + (f" --storage {url}" if args.storage else ""))
        return 0
    threads = workers.threads_per_worker(args.threads, args.workers)
    argv = ["study", "worker", args.study, "--budget", args.budget, "--out", str(args.out),
            "--storage", url, "--threads", str(threads), "--device", args.device,
            "--heartbeat", str(args.heartbeat)]
    procs = [workers.spawn(argv, threads) for _ in range(args.workers)]
    codes = workers.supervise(procs, name, lambda: _progress(storage, name), poll_s=5.0)
    rows = engine.status(storage, name)
    _print(rows)
    failed = sum(r["failed"] for r in rows)
    print(f"report with: archsearch study report {args.study} --budget {args.budget} "
          f"--out {args.out}")
    return 0 if not any(codes) and not failed else 1


def _progress(storage, name: str):
    """Trials over every sweep of the study, for the workers' progress bar."""
    from app.commands.workers import Progress
    from evaluator.study.engine import status

    rows = status(storage, name)
    return Progress(total=sum(r["total"] for r in rows),
                    finished=sum(r["done"] + r["failed"] for r in rows),
                    running=sum(r["running"] for r in rows),
                    failed=sum(r["failed"] for r in rows))


def _worker(args: argparse.Namespace) -> int:
    from evaluator.study import engine

    ls = _load(args)
    storage_url = _url(args, ls)
    _existing(args, ls)
    workers.set_threads(args.threads)
    n = engine.work(engine.registry_name(ls.study.name, args.budget), storage_url,
                    out=args.out, device=args.device, heartbeat=args.heartbeat,
                    max_trials=args.max_trials)
    return workers.worker_done(n)


def _print(rows: list[dict]) -> None:
    for r in rows:
        done = r["done"] + r["failed"]
        print(f"{r['experiment']:>14} {r['pipeline']:<18} {done:>3}/{r['total']:<3} done "
              f"{r['done']}, running {r['running']}, failed {r['failed']}, waiting "
              f"{r['waiting'] + r['not_enqueued']}")
        for number, levels, reason in r["failures"]:
            print(f"{'':>16}trial {number} failed ({levels}): {reason}")


def _status(args: argparse.Namespace) -> int:
    from evaluator.study import engine

    storage, name = _existing(args, _load(args))
    rows = engine.status(storage, name)
    _print(rows)
    total = sum(r["total"] for r in rows)
    print(f"{name}: {sum(r['done'] for r in rows)}/{total} done, "
          f"{sum(r['failed'] for r in rows)} failed")
    return 0


def _report(args: argparse.Namespace) -> int:
    from evaluator.study import engine
    from evaluator.study.collect import collect
    from evaluator.study.report import write

    ls = _load(args)
    storage, name = _existing(args, ls)
    t0 = time.perf_counter()
    plan, tables = collect(storage, name)
    out = args.report_dir or engine.study_dir(args.out, ls.study.name, args.budget)
    md, page = write(plan, tables, out)
    print(f"wrote {md} and {page} ({time.perf_counter() - t0:.1f} s, "
          f"{len(tables['runs'])} runs)")
    return 0
