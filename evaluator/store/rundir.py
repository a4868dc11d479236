"""Run store: one folder per trained pipeline, keyed by the spec's canonical hash.

Layout (``root`` defaults to ``results/``)::

    <root>/runs/<spec.name>/<spec-hash>/
        spec.resolved.yaml, spec.resolved.json   the fully resolved spec
        status.json        {"status": created|running|finished|failed|cancelled,
                            "reason": ..., "resumable": true|false, ...,
                            "phase": "evaluating <budget>" while a finished run is
                            evaluated (left behind only by a killed evaluator: the
                            run lock says whether anyone still holds the run)}
        loss.jsonl         one JSON object per training step
        metrics.json       train / per-budget evaluation results, typed and versioned
                           (:mod:`evaluator.store.metrics`)
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
import re
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

from archspec import canonical, load_spec, spec_hash
from archspec.errors import UserError
from evaluator.store.atomic import atomic_write, read_json, write_json
from evaluator.store.metrics import RunMetrics, checked

# ``cancelled``: stopped on request after a checkpoint; ``train(..., resume=True)`` continues.
STATUSES = ("created", "running", "finished", "failed", "cancelled")


def canonical_dict(spec: Any) -> dict:
    """The resolved spec as a JSON-able dict (:func:`archspec.canonical`)."""
    return canonical(spec)


def hash_spec(spec: Any) -> str:
    """Hash identifying an architecture + its training setup (:func:`archspec.spec_hash`)."""
    return spec_hash(spec)


# True while a run folder's own stored spec is re-read: its warm start already happened,
# so a source run moved or deleted since must not make the trained run unreadable.
_STORED_RUN: ContextVar[bool] = ContextVar("stored_run", default=False)


@contextmanager
def reading_stored_run() -> Iterator[None]:
    """Validate a run's stored spec without re-checking ``train.init_from``."""
    token = _STORED_RUN.set(True)
    try:
        yield
    finally:
        _STORED_RUN.reset(token)


def is_reading_stored_run() -> bool:
    """True inside :func:`reading_stored_run` (spec checks skip ``train.init_from``)."""
    return _STORED_RUN.get()


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
        with reading_stored_run():
            return load_spec(self.spec_yaml)

    # ---- status / metrics / logs --------------------------------------------------
    def status(self) -> dict:
        """``status.json``; raises :class:`CorruptRunFile` when it is unreadable."""
        return read_json(self.status_file, default={"status": "created"}, kind=dict)

    def set_status(self, status: str, **extra: Any) -> dict:
        if status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        data = {k: v for k, v in self.status().items() if k not in ("reason", "phase")}
        data.update(status=status, updated=time.strftime("%Y-%m-%dT%H:%M:%S"), **extra)
        write_json(self.status_file, data)
        return data

    def set_phase(self, phase: str | None) -> None:
        """Say what the holder does with the run beyond its status (``evaluating quick``);
        None clears it. Any later :meth:`set_status` clears it too."""
        data = {k: v for k, v in self.status().items() if k != "phase"}
        if phase:
            data["phase"] = phase
        write_json(self.status_file, data)

    def metrics(self) -> dict:
        """``metrics.json`` as a plain dict, upgraded and checked against
        :class:`~evaluator.store.metrics.RunMetrics` (``{}`` when there is none yet).

        Raises:
            CorruptRunFile: the file is unreadable or does not fit the model.
        """
        data = read_json(self.metrics_file, default=None, kind=dict)
        return {} if data is None else checked(data, self.metrics_file)[0]

    def read_metrics(self) -> RunMetrics:
        """``metrics.json`` as a typed :class:`~evaluator.store.metrics.RunMetrics`
        (empty when there is none yet); raises :class:`CorruptRunFile` like :meth:`metrics`."""
        data = read_json(self.metrics_file, default=None, kind=dict)
        return RunMetrics() if data is None else checked(data, self.metrics_file)[1]

    def update_metrics(self, section: str, value: Any) -> dict:
        """Replace one top-level section of ``metrics.json`` (``train``, ``eval``...).

        The whole file is checked against the model before the atomic write, so a malformed
        section is never stored (:class:`~evaluator.store.metrics.InvalidMetrics`; the
        file stays as it was).
        """
        data = self.metrics()
        data[section] = value
        plain, _ = checked(data, self.metrics_file, writing=True)
        write_json(self.metrics_file, plain)
        return plain

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


