"""Issue 8's ablation study: one command per table, each a set of sweep files.

    python examples/ablations/study.py lr               # full budget, as the files say
    python examples/ablations/study.py head norm act --short --workers 2
    python examples/ablations/study.py all --short

Every table is one or more sweep files in this folder (grid over one factor, 3 training
seeds per level, FD-digits at N=360 with DPM-Solver++ 20 and DDPM 1000). The script runs
each with ``archsearch sweep run`` (a run already trained for the same spec hash, e.g. the
base spec's row that several tables share, is reused), then prints one Markdown table per
table: the mean and 95% Student-t CI over the seeds of every metric, per level, with N,
seeds, the sampler settings and the budget.

``--short`` is the screening budget that fits a 2-core CPU session: 400 training steps at
batch 64 instead of 2000 at 128, the same N=360, DPM-Solver++ 20 only (no DDPM 1000
reference); the ``targets`` table keeps DDPM 1000 and trains as the quick budget does (600
steps at batch 64). Its sweeps are named ``<name>_short`` so their results never mix with
the full budget's. The ``warm`` table needs the ``lr`` table's spatial run (lr 2e-4, first seed),
which it trains first if missing.

The same tables (all but ``warm``) run through the study runner as one study:
``archsearch study run examples/study/ablations.yaml --budget cpu`` (= ``--short``).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

TABLES = {
    "lr": ["lr_tiny_unet_8", "lr_spectral_unet_8", "lr_hybrid_unet_8"],
    "head": ["head"], "norm": ["norm"], "act": ["act"], "resample": ["resample"],
    "loss": ["loss"], "warm": ["warm_hybrid", "warm_spectral"],
    "lr_act": ["lr_act_spectral", "lr_act_hybrid"], "targets": ["targets"],
}
SHORT = {"train_steps": 400, "batch_size": 64, "num_samples": 360, "seeds": 1,
         "reference": False}
# The targets table keeps its DDPM 1000 reference and trains at the quick budget, so
# `make demo` (same training, seed 0) reuses its runs when both use one results root.
SHORT_TARGETS = {"train_steps": 600, "batch_size": 64, "num_samples": 360, "seeds": 1}
WARM_SOURCE = ("lr_tiny_unet_8", "0.0002")  # the spatial run a warm start copies from


def sweep_file(name: str, out: Path, short: bool, warm_from: str | None) -> Path:
    """The sweep file to run: the committed one, or a generated copy (short budget, warm
    start source filled in) under ``out/ablations/``."""
    from archspec.loading import read_document

    if warm_from is not None:
        data = warm_sweep(name.removeprefix("warm_") + "_unet_8", warm_from)
    else:
        src = HERE / f"{name}.yaml"
        if not short:
            return src
        data = read_document(src)
        data["base"] = str((src.parent / data["base"]).resolve())
    if short and name == "targets":
        data["name"] += "_short"
        data["budget"] = SHORT_TARGETS
    elif short:
        data["name"] += "_short"
        data["budget"] = SHORT
        data["secondary"] = [m for m in data["secondary"] if m.get("steps") != 1000]
        data["overrides"] = [o for o in data["overrides"] if not o.startswith("evaluate.sam")]
        data["overrides"].append("evaluate.samplers=[{name: dpmsolver++, steps: [20]}]")
    dst = out / "ablations" / f"{data['name']}.yaml"
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(data, indent=1))  # JSON is YAML: the sweep loader reads it
    return dst


def warm_sweep(family: str, source: str) -> dict:
    """Cold start against a warm start from the spatial run ``source`` (generated: the
    source's folder is known only once it has trained)."""
    template = read_lr(family)
    template.update(name=f"warm_{family}", description=f"warm start of {family} from the "
                    f"spatial tiny_unet_8 run {source} (issue 8 ablation)")
    template["factors"] = {"init": {"levels": {"cold": {"train.init_from": None},
                                               "spatial": {"train.init_from": source}}}}
    return template


def read_lr(family: str) -> dict:
    from archspec.loading import read_document

    src = HERE / f"lr_{family}.yaml"
    data = read_document(src)
    data["base"] = str((src.parent / data["base"]).resolve())
    return data


def run(path: Path, out: Path, workers: int) -> None:
    cmd = [sys.executable, "-m", "app.cli", "sweep", "run", str(path), "--out", str(out),
           "--workers", str(workers)]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=False)


def trials(name: str, out: Path) -> tuple[list, object]:
    from optuna.trial import TrialState

    from evaluator.sweeps.study import default_storage, load_study, make_storage

    study, ls = load_study(name, make_storage(default_storage(out, name)))
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), ls


def warm_source(out: Path, short: bool) -> str:
    name = WARM_SOURCE[0] + ("_short" if short else "")
    path = out / "sweeps" / name / "journal.log"
    if not path.exists():
        run(sweep_file(WARM_SOURCE[0], out, short, None), out, 1)
    done, _ = trials(name, out)
    for t in done:
        if str(float(t.user_attrs["levels"]["lr"])) == str(float(WARM_SOURCE[1])) \
                and t.user_attrs["repeat"] == 0:
            return str(Path(t.user_attrs["run"]).resolve())
    raise SystemExit(f"no finished spatial run at lr {WARM_SOURCE[1]} in sweep {name}")


def table(name: str, out: Path) -> list[str]:
    """Markdown rows: the level (combination), seeds, then mean +- CI of every metric."""
    import itertools

    from evaluator.measure.stats import mean_ci

    done, ls = trials(name, out)
    keys = [ls.sweep.objective.key] + [m.key for m in ls.sweep.secondary]
    factors = ls.factor_names
    b = ls.sweep.budget
    budget = b if isinstance(b, str) else b.model_dump(exclude_none=True)
    lines = [f"**{name}** (factors `{', '.join(factors)}`; budget `{budget}`)", "",
             "| " + " | ".join(factors) + " | seeds | " + " | ".join(keys) + " |",
             "|" + "---|" * (len(factors) + 1 + len(keys))]
    for combo in itertools.product(*(ls.sweep.factors[f].labels() for f in factors)):
        ts = [t for t in done
              if tuple(t.user_attrs["levels"][f] for f in factors) == combo]
        seeds = sorted(t.user_attrs["repeat"] for t in ts)
        cells = []
        for k in keys:
            st = mean_ci([t.user_attrs["metrics"].get(k) for t in ts])
            m, ci = st["mean"], st["ci95"]
            cells.append("-" if m is None else f"{m:.4g}" + (f" ± {ci:.2g}" if ci else ""))
        lines.append(f"| {' | '.join(combo)} | {len(seeds)} ({','.join(map(str, seeds))}) | "
                     + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tables", nargs="+", choices=[*TABLES, "all"])
    ap.add_argument("--short", action="store_true", help="the 2-core screening budget")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", default="results", help="results root (default: results)")
    ap.add_argument("--report-only", action="store_true", help="print tables, run nothing")
    a = ap.parse_args(argv)
    out = Path(a.out).resolve()
    names = [n for t in (TABLES if "all" in a.tables else a.tables) for n in TABLES[t]]
    for n in names:
        if a.report_only:
            continue
        warm = warm_source(out, a.short) if n.startswith("warm") else None
        run(sweep_file(n, out, a.short, warm), out, a.workers)
    print("\nFD-digits: Frechet distance in the in-project digits classifier's features "
          "(not FID), N=360 samples per seed, noise seed 0, clip 'clip', trailing spacing; "
          "mean ± 95% Student-t CI over the training seeds.\n")
    for n in names:
        sweep = _study_name(n, a.short)
        try:
            print("\n".join(table(sweep, out)), "\n")
        except Exception as e:  # a table not run yet
            print(f"**{sweep}**: no results ({e})\n")
    return 0


def _study_name(n: str, short: bool) -> str:
    from archspec.loading import read_document

    name = (n + "_unet_8") if n.startswith("warm") else read_document(HERE / f"{n}.yaml")["name"]
    return name + ("_short" if short else "")


if __name__ == "__main__":
    sys.exit(main())
