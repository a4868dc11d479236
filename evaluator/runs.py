"""Run store: one folder per trained pipeline, keyed by the spec's canonical hash.

Layout (``root`` defaults to ``results/``)::

    <root>/runs/<spec.name>/<spec-hash>/
        spec.resolved.yaml, spec.resolved.json   the fully resolved spec
        status.json        {"status": created|running|finished|failed|cancelled,
                            "reason": ..., "resumable": true|false, ...}
        loss.jsonl         one JSON object per training step
        metrics.json       train / speed / per-(sampler, steps) evaluation results
        spectra.json       radial band energies of data and samples
        eval_<budget>_<sampler>_<steps>.png   sample grids written by evaluate
        samples_<sampler>_<steps>.png   sample grids written by `archsearch sample`
        checkpoint.pt      model, EMA, optimizer, RNG states (atomic writes)
        log.txt            human-readable event log

Every JSON file is written atomically (temporary file in the same folder, fsync,
``os.replace``) so a killed process never leaves a truncated file behind.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from archspec import canonical, load_spec, spec_hash
from archspec.errors import UserError

# ``cancelled``: stopped on request after a checkpoint; ``train(..., resume=True)`` continues.
STATUSES = ("created", "running", "finished", "failed", "cancelled")
_UMASK = os.umask(0)
os.umask(_UMASK)


def canonical_dict(spec: Any) -> dict:
    """The resolved spec as a JSON-able dict (:func:`archspec.canonical`)."""
    return canonical(spec)


def hash_spec(spec: Any) -> str:
    """Hash identifying an architecture + its training setup (:func:`archspec.spec_hash`)."""
    return spec_hash(spec)


def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write ``path`` through a temporary file in the same folder, fsync, then rename.

    ``write(f)`` fills the open temporary file. A crash at any point leaves either the old
    file or the new one, never a partial one.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(d: Path) -> None:
    # Makes the rename itself durable; not possible on every platform (e.g. Windows).
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default)
    atomic_write(path, lambda f: f.write(text), mode="w")


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):  # numpy / torch scalars and arrays
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


class CorruptRunFile(UserError):
    """A run file that exists but cannot be read (truncated, corrupted, wrong type).

    ``path`` names the file; nothing reads past it or writes over it.
    """

    def __init__(self, path: Path, what: str) -> None:
        self.path = Path(path)
        super().__init__(f"{path}: {what}; the run store will not overwrite it: restore or "
                         "delete the file (or the run folder) to continue")


def read_json(path: Path, default: Any = None, kind: type | None = None) -> Any:
    """Parse ``path``; ``default`` when it does not exist.

    Raises:
        CorruptRunFile: the file exists but is not valid JSON (or not a ``kind``).
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise CorruptRunFile(path, f"corrupt JSON ({str(e).splitlines()[0][:80]})") from None
    if kind is not None and not isinstance(data, kind):
        raise CorruptRunFile(path, f"expected a JSON {kind.__name__}, got "
                             f"{type(data).__name__}")
    return data


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+\-]", "_", s)


@dataclass(frozen=True)
class RunDir:
    """One run's folder. Create with :meth:`create`, reopen with :meth:`open`."""

    path: Path

    # ---- construction -------------------------------------------------------------
    @classmethod
    def create(cls, spec: Any, root: str | Path = "results") -> "RunDir":
        """The folder for ``spec`` under ``root``; made (with its resolved spec) if new.

        An existing folder for the same hash is reused as it is: the hash covers the
        whole resolved spec, so its contents belong to this spec.
        """
        h = hash_spec(spec)
        path = Path(root) / "runs" / spec.name / h
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        if not run.spec_json.exists():
            data = canonical_dict(spec)
            atomic_write(run.spec_yaml, lambda f: yaml.safe_dump(data, f, sort_keys=False), "w")
            write_json(run.spec_json, data)
        if not run.status_file.exists():
            run.set_status("created", name=spec.name, hash=h)
        return run

    @classmethod
    def open(cls, path: str | Path) -> "RunDir":
        """Reopen an existing run folder.

        Raises:
            UserError: ``path`` is not a folder holding ``spec.resolved.json``.
        """
        p = Path(path)
        if not p.is_dir():
            raise UserError(f"{p}: no such run folder")
        if not (p / "spec.resolved.json").is_file():
            raise UserError(f"{p}: not a run folder (no spec.resolved.json)")
        return cls(p)

    # ---- files --------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.parent.name

    @property
    def hash(self) -> str:
        return self.path.name

    spec_yaml = property(lambda self: self.path / "spec.resolved.yaml")
    spec_json = property(lambda self: self.path / "spec.resolved.json")
    status_file = property(lambda self: self.path / "status.json")
    metrics_file = property(lambda self: self.path / "metrics.json")
    loss_file = property(lambda self: self.path / "loss.jsonl")
    spectra_file = property(lambda self: self.path / "spectra.json")
    checkpoint_file = property(lambda self: self.path / "checkpoint.pt")
    log_file = property(lambda self: self.path / "log.txt")

    def samples_file(self, sampler: str, steps: int) -> Path:
        """Grid written by ``archsearch sample`` (never one that ``evaluate`` wrote)."""
        return self.path / f"samples_{_safe(sampler)}_{int(steps)}.png"

    def eval_grid_file(self, budget: str, sampler: str, steps: int) -> Path:
        """Grid of the first seed's samples written by ``evaluate`` under ``budget``."""
        return self.path / f"eval_{_safe(budget)}_{_safe(sampler)}_{int(steps)}.png"

    def eval_grid_files(self, budget: str | None = None) -> list[Path]:
        """The grids ``evaluate`` wrote (under ``budget``, or any), sorted."""
        return sorted(self.path.glob(f"eval_{_safe(budget) if budget else '*'}_*.png"))

    # ---- spec ---------------------------------------------------------------------
    def spec_dict(self) -> dict:
        return read_json(self.spec_json, kind=dict)

    def load_spec(self) -> Any:
        """The stored resolved spec as a validated :class:`archspec.spec.Spec` (its
        ``train.init_from`` is not re-checked: the warm start already happened)."""
        from evaluator.checks import reading_stored_run

        with reading_stored_run():
            return load_spec(self.spec_yaml)

    # ---- status / metrics / logs --------------------------------------------------
    def status(self) -> dict:
        """``status.json``; raises :class:`CorruptRunFile` when it is unreadable."""
        return read_json(self.status_file, default={"status": "created"}, kind=dict)

    def set_status(self, status: str, **extra: Any) -> dict:
        if status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        data = {k: v for k, v in self.status().items() if k not in ("reason",)}
        data.update(status=status, updated=time.strftime("%Y-%m-%dT%H:%M:%S"), **extra)
        write_json(self.status_file, data)
        return data

    def metrics(self) -> dict:
        """``metrics.json``; raises :class:`CorruptRunFile` when it is unreadable."""
        return read_json(self.metrics_file, default={}, kind=dict)

    def update_metrics(self, section: str, value: Any) -> dict:
        """Replace one top-level section of ``metrics.json`` (``train``, ``eval``...)."""
        data = self.metrics()
        data[section] = value
        write_json(self.metrics_file, data)
        return data

    def log(self, msg: str) -> None:
        """Append a timestamped line to ``log.txt``."""
        with open(self.log_file, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")

    def losses(self) -> list[dict]:
        """Every record of ``loss.jsonl`` (a torn last line from a kill is skipped)."""
        return list(_iter_jsonl(self.loss_file))


def _iter_jsonl(path: Path) -> Iterator[dict]:
    try:
        f = open(path)
    except FileNotFoundError:
        return
    with f:
        for line in f:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def list_runs(root: str | Path = "results") -> list[RunDir]:
    """Every run folder under ``<root>/runs``, sorted by name then hash."""
    base = Path(root) / "runs"
    if not base.is_dir():
        return []
    return [RunDir(p.parent) for p in sorted(base.glob("*/*/spec.resolved.json"))]


# ---- queries (the app's runs table, scripts) ------------------------------------------------
RUN_COLUMNS = ("name", "hash", "status", "dataset", "params", "steps", "loss_drop",
               "steps_per_s")


def run_row(run: RunDir) -> dict[str, Any]:
    """One run as a flat row: :data:`RUN_COLUMNS` plus ``best <FD-x> <sampler>`` (the
    lowest mean over the sampler's step counts, from the preferred budget) and ``path``."""
    from evaluator.report import best_eval

    st, m = run.status(), run.metrics()
    tr = m.get("train", {})
    spec = read_json(run.spec_json, default={}) or {}
    speed = (best_eval(run)[1] or {}).get("speed", {})
    row: dict[str, Any] = {
        "name": run.name, "hash": run.hash, "status": st.get("status"),
        "dataset": (spec.get("train") or {}).get("dataset"),
        "params": tr.get("params") or speed.get("params"),
        "steps": tr.get("steps", st.get("step")), "loss_drop": tr.get("loss_drop"),
        "steps_per_s": tr.get("steps_per_second")}
    for r in (best_eval(run)[1] or {}).get("results", []):
        for metric, v in r.get("metrics", {}).items():
            if metric.startswith("FD-") and v.get("mean") is not None:
                key = f"best {metric} {r['sampler']}"
                row[key] = v["mean"] if row.get(key) is None else min(row[key], v["mean"])
    row["path"] = str(run.path)
    return row


def query_runs(root: str | Path = "results", text: str = "", status: str | None = None,
               sort_by: str = "name", descending: bool = False) -> list[dict[str, Any]]:
    """Rows (:func:`run_row`) of the runs under ``root``, filtered and sorted.

    Args:
        text: case-insensitive substring of the name, hash or dataset ("" keeps all).
        status: keep only runs with this status (None or "" keeps all).
        sort_by: a column; rows without a value sort last.
    """
    rows = [run_row(r) for r in list_runs(root)]
    t = text.strip().lower()
    if t:
        rows = [r for r in rows
                if any(t in str(r.get(k) or "").lower() for k in ("name", "hash", "dataset"))]
    if status:
        rows = [r for r in rows if r["status"] == status]
    present = [r for r in rows if r.get(sort_by) is not None]
    missing = [r for r in rows if r.get(sort_by) is None]
    present.sort(key=lambda r: (isinstance(r[sort_by], str), r[sort_by]), reverse=descending)
    return present + missing


def eval_rows(run: RunDir) -> list[dict[str, Any]]:
    """Per (sampler, steps) of the preferred budget: NFE, ms/NFE, N, seeds and the mean of
    every metric present (FD-*, FID, KID, LPIPS, spectral distances); None when absent."""
    from evaluator.report import best_eval

    budget, ev = best_eval(run)
    out = []
    for r in (ev or {}).get("results", []):
        row = {"budget": budget, "sampler": r["sampler"], "steps": r["steps"], "nfe": r["nfe"],
               "n": r.get("n"), "seeds": r.get("seeds"),
               "ms_per_nfe": (r.get("ms_per_nfe") or {}).get("mean")}
        for metric, v in r.get("metrics", {}).items():
            row[metric] = v.get("mean") if v.get("mean") is not None else v.get("status")
        out.append(row)
    return out
