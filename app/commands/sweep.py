"""``archsearch sweep validate | run | worker | status | analyze``.

Only the standard library is imported at module level (``archsearch --help`` stays
instant); each runner imports Optuna, torch and the sweep package when it runs. Bad sweep
files raise :class:`archspec.errors.UserError`: one located line per problem, exit 2.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from app.commands import workers
from archspec.choices import DEVICES


def add_sweep(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="sweep_command", metavar="SUBCOMMAND", required=True)

    v = sub.add_parser("validate", help="check a sweep file and resolve every row as a spec")
    v.add_argument("sweep", metavar="SWEEP", help="sweep file (YAML or JSON)")

    r = sub.add_parser("run", help="create or resume the study and run N local workers")
    r.add_argument("sweep", metavar="SWEEP", help="sweep file (YAML or JSON)")
    r.add_argument("--workers", type=int, default=1, metavar="N",
                   help="worker processes here (0: only create the study and enqueue rows)")
    r.add_argument("--dry-run", action="store_true",
                   help="print the resolved rows (levels, spec hash, params, estimated train "
                        "time) and stop")
    r.add_argument("--no-profile", dest="profile", action="store_false",
                   help="skip the train-time estimates (with --dry-run: the column; when "
                        "enqueueing: the longest-rows-first order)")
    r.add_argument("--retry-failed", action="store_true",
                   help="enqueue rows whose trial failed (NaN loss, error) again")
    _add_storage(r)
    _add_worker_opts(r)

    w = sub.add_parser("worker", help="join a sweep from any machine (runs trials until done)")
    w.add_argument("--storage", required=True, metavar="URL",
                   help="journal file path or RDB URL (postgresql://user:pw@host/db)")
    w.add_argument("--study", required=True, metavar="NAME", help="the sweep's name")
    w.add_argument("--out", default=None, metavar="DIR",
                   help="results root (default: the one recorded by `sweep run`; must be "
                        "shared between machines)")
    w.add_argument("--max-trials", type=int, default=None, metavar="N",
                   help="stop after N trials")
    _add_worker_opts(w)

    s = sub.add_parser("status", help="rows done / running / failed / waiting")
    s.add_argument("name", metavar="NAME", help="the sweep's name")
    _add_storage(s)
    s.add_argument("--watch", action="store_true", help="show a progress bar until done")

    a = sub.add_parser("analyze", help="main effects, S/N, ANOVA; prints and writes HTML")
    a.add_argument("name", metavar="NAME", help="the sweep's name")
    _add_storage(a)
    a.add_argument("--html", default=None, metavar="FILE",
                   help="HTML output (default: <out>/sweeps/NAME/analysis.html)")
    a.add_argument("--confirm", action="store_true",
                   help="train and evaluate the best predicted combination")
    a.add_argument("--device", choices=DEVICES, default="auto")


def _add_storage(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="results", metavar="DIR",
                   help="results root (default: results); the journal storage is "
                        "DIR/sweeps/NAME/journal.log")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna storage: a journal file path or an RDB URL "
                        "(postgresql://user:pw@host:port/db) for several machines")


def _add_worker_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--threads", type=int, default=None, metavar="T",
                   help="torch threads per worker (default: cores // workers)")
    p.add_argument("--heartbeat", type=int, default=10, metavar="S",
                   help="heartbeat interval in seconds (a silent worker's trial is retried "
                        "after 2x this)")
    p.add_argument("--reconnect", type=float, default=120.0, metavar="S",
                   help="with an RDB storage: how long a worker waits for the database to come "
                        "back (a restart) before it stops with a one-line message")


def run_sweep(args: argparse.Namespace) -> int:
    return {"validate": _validate, "run": _run, "worker": _worker, "status": _status,
            "analyze": _analyze}[args.sweep_command](args)


# ---- validate / dry run ------------------------------------------------------------------
def _load(path: str):
    from archspec.errors import UserError
    from evaluator.sweeps.spec import check_rows, load_sweep

    if not Path(path).is_file():
        raise UserError(f"{path}: no such sweep file")
    ls = load_sweep(path)
    rows = check_rows(ls)
    return ls, rows


def _validate(args: argparse.Namespace) -> int:
    ls, rows = _load(args.sweep)
    d = ls.sweep.design
    what = (f"{ls.array} ({len(rows)} rows, columns "
            f"{[c + 1 for c in ls.columns]})" if ls.array else
            f"{d.type} ({len(rows)} rows)" if ls.fixed else f"{d.type} ({d.trials} trials)")
    checked = ("every row is a valid spec" if ls.fixed else
               f"{len(rows)} level combinations checked, each a valid spec")
    print(f"{args.sweep}: ok: {len(ls.factor_names)} factors, {what}, "
          f"{ls.sweep.repeats} repeat(s); {checked}")
    return 0


def _dry_run(ls, rows, profile: bool) -> int:
    from archspec import build_model
    from evaluator.sweeps.spec import budget_of
    from evaluator.sweeps.study import estimate_seconds

    cache: dict[str, tuple[int, tuple[float, float] | None]] = {}
    header = ["row", *ls.factor_names, "spec hash", "params", "est. train s", "est. eval s"]
    table = [header]
    total = [0.0, 0.0]
    for r in rows:
        spec = r.spec
        key = r.spec_hash
        if key not in cache:
            model = build_model(spec)
            n = sum(p.numel() for p in model.parameters())
            est = estimate_seconds(model, spec, budget_of(ls.sweep)) if profile else None
            cache[key] = (n, est)
        n, est = cache[key]
        if est:
            total = [a + b * ls.sweep.repeats for a, b in zip(total, est)]
        table.append([str(r.index + 1), *r.levels.values(), r.spec_hash, f"{n:,}",
                      *(["-", "-"] if est is None else [f"{est[0]:.0f}", f"{est[1]:.0f}"])])
    w = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(c.ljust(x) for c, x in zip(row, w)).rstrip())
    if profile:
        import torch

        print(f"estimated total for one worker on {torch.get_num_threads()} thread(s), "
              f"{ls.sweep.repeats} repeat(s): training {total[0]:.0f} s, sampling "
              f"{total[1]:.0f} s (from evaluator.measure.profile step timings on this machine now; "
              "metrics, start-up and an unchanged run's reuse not included)")
    return 0


# ---- run / worker ------------------------------------------------------------------------
def _storage_url(args: argparse.Namespace, name: str) -> str:
    from evaluator.sweeps.study import default_storage

    return args.storage or default_storage(args.out, name)


def _run(args: argparse.Namespace) -> int:
    from archspec.errors import UserError
    from evaluator.sweeps.study import (
        open_trials, create_or_resume, enqueue_missing, make_storage, row_costs,
    )

    if args.workers < 0:
        raise UserError("--workers: must be >= 0")
    ls, rows = _load(args.sweep)
    if args.dry_run:
        return _dry_run(ls, rows, args.profile)
    url = _storage_url(args, ls.sweep.name)
    study = create_or_resume(ls, make_storage(url, args.heartbeat), args.out)
    costs = (lambda: row_costs(ls)) if args.profile and args.workers != 1 else None
    n = enqueue_missing(study, ls, retry_failed=args.retry_failed, costs=costs)
    print(f"sweep {ls.sweep.name}: storage {url}; enqueued {n} trial(s)")
    if args.workers == 0:
        print(f"join with: archsearch sweep worker --storage {url} --study {ls.sweep.name}")
        return 0
    waiting, running, counted = open_trials(study, ls)
    done = waiting + running == 0 if ls.fixed else counted >= ls.sweep.design.trials
    if done:
        print("nothing left to run")
        _print_status(study, ls)
        return 0
    threads = workers.threads_per_worker(args.threads, args.workers)
    argv = ["sweep", "worker", "--storage", url, "--study", ls.sweep.name, "--out",
            str(args.out), "--threads", str(threads), "--device", args.device,
            "--heartbeat", str(args.heartbeat), "--reconnect", str(args.reconnect)]
    procs = [workers.spawn(argv, threads) for _ in range(args.workers)]
    codes = workers.supervise(procs, ls.sweep.name, lambda: _progress(study, ls), poll_s=2.0)
    st = _print_status(study, ls)
    complete = st["done"] == st["total"]
    for p, code in zip(procs, codes):
        if code:  # e.g. killed: its trial went stale and another worker retried it
            print(f"worker {p.pid} exited with code {code}"
                  + ("; its trials were retried" if complete else ""))
    print(f"analyze with: archsearch sweep analyze {ls.sweep.name}"
          + (f" --storage {url}" if args.storage else f" --out {args.out}"))
    return 0 if not st["failed"] and (complete or not any(codes)) else 1


def _progress(study, ls):
    """The sweep's trials, for the workers' progress bar."""
    from app.commands.workers import Progress
    from evaluator.sweeps.study import status

    st = status(study, ls)
    return Progress(total=st["total"], finished=st["done"] + st["failed"],
                    running=st["running"], failed=st["failed"])


def _worker(args: argparse.Namespace) -> int:
    from archspec.errors import UserError
    from evaluator.sweeps.study import is_rdb, work

    if not is_rdb(args.storage) and not Path(args.storage.removeprefix("journal:")).is_file():
        raise UserError(f"{args.storage}: no sweep journal here (start the sweep with "
                        "`archsearch sweep run`, or give the RDB URL)")
    workers.set_threads(args.threads)
    n = work(args.study, args.storage, out=args.out, device=args.device,
             heartbeat=args.heartbeat, max_trials=args.max_trials, reconnect=args.reconnect)
    return workers.worker_done(n)


# ---- status / analyze --------------------------------------------------------------------
def _open(args: argparse.Namespace):
    from archspec.errors import UserError
    from evaluator.sweeps.study import is_rdb, load_study, make_storage

    url = _storage_url(args, args.name)
    if not is_rdb(url) and not Path(url.removeprefix("journal:")).is_file():
        raise UserError(f"{url}: no sweep journal here (give --out DIR or --storage URL)")
    return load_study(args.name, make_storage(url))


def _print_status(study, ls) -> dict:
    from evaluator.sweeps.study import status

    st = status(study, ls)
    done = st["done"] + st["failed"]
    width = 30
    filled = int(width * done / st["total"]) if st["total"] else width
    print(f"{ls.sweep.name}: [{'#' * filled}{'.' * (width - filled)}] {done}/{st['total']}  "
          f"done {st['done']}, running {st['running']}, failed {st['failed']}, "
          f"waiting {st['waiting'] + st['not_enqueued']}")
    for number, levels, reason in st["failures"]:
        print(f"  trial {number} failed ({levels}): {reason}")
    return st


def _status(args: argparse.Namespace) -> int:
    study, ls = _open(args)
    if args.watch:
        _watch_status(study, ls)
    _print_status(study, ls)
    return 0


def _watch_status(study, ls) -> None:
    from tqdm.auto import tqdm

    from evaluator.sweeps.study import status

    st = status(study, ls)
    with tqdm(total=st["total"], desc=ls.sweep.name, unit="trial", disable=None) as bar:
        while st["running"] or st["waiting"]:
            bar.n = st["done"] + st["failed"]
            bar.set_postfix(running=st["running"], failed=st["failed"], refresh=False)
            bar.refresh()
            time.sleep(2.0)
            st = status(study, ls)
        bar.n = st["done"] + st["failed"]
        bar.refresh()


def _analyze(args: argparse.Namespace) -> int:
    import json

    from evaluator.store.atomic import write_json
    from evaluator.sweeps.analysis import analyze, format_text, write_html

    study, ls = _open(args)
    if args.confirm:
        _confirm(study, ls, args)
    res, figs = analyze(args.name, study._storage)
    print(format_text(res))
    html = Path(args.html or Path(args.out) / "sweeps" / args.name / "analysis.html")
    write_html(res, figs, html)
    write_json(html.with_suffix(".json"), json.loads(json.dumps(res, default=str)))
    print(f"wrote {html} and {html.with_suffix('.json')}")
    return 0


def _confirm(study, ls, args: argparse.Namespace) -> None:
    """Train and evaluate the best predicted combination (every repeat); recorded in the
    study's ``confirm`` user attribute."""
    from archspec.errors import UserError
    from evaluator.sweeps.analysis import analyze
    from evaluator.sweeps.study import OUT_ATTR, run_config

    res, _ = analyze(args.name, study._storage)
    if res["best"] is None:
        raise UserError(f"sweep {args.name}: no completed trial to predict from")
    best = res["best"]["levels"]
    out = study.user_attrs.get(OUT_ATTR, args.out)
    vals, runs = [], []
    for r in range(ls.sweep.repeats):
        a = run_config(ls, best, r, out, args.device)
        vals.append(a["value"])
        runs.append(a["run"])
    observed = sum(vals) / len(vals)
    study.set_user_attr("confirm", {"levels": best, "observed_mean": observed,
                                    "values": vals, "runs": runs,
                                    "predicted_mean": res["best"]["predicted_mean"]})
    print(f"confirmation: observed {observed:.4g} (predicted "
          f"{res['best']['predicted_mean']:.4g}) over {len(vals)} repeat(s)")
