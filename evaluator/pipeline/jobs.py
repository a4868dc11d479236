"""Background train/evaluate jobs: one worker per device, a visible queue, cancellation.

Surfaces (the Gradio app) submit jobs and poll :meth:`JobQueue.snapshot`; nothing here
knows about them. A job puts each of its specs (under a budget, as ``archsearch
evaluate`` does: :func:`evaluator.pipeline.budgets.apply_budget`) through
:func:`evaluator.pipeline.evaluate.run_spec`: trained (or a finished run reused) and, unless
``evaluate=False``, evaluated.

Cancelling a running job makes its ``on_step`` callback raise
:class:`evaluator.training.loop.Cancelled`: training stops after the current step, writes a
checkpoint, and the run's ``status.json`` says ``cancelled`` with ``resumable: true``.
Submitting the same spec again resumes it. A queued job is simply dropped.
"""
from __future__ import annotations

import itertools
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JOB_STATES = ("queued", "running", "finished", "failed", "cancelled")
MAX_CURVE = 2000   # loss points kept per job for the live curve


class _NotEvaluated(Exception):
    """Cancelled between training and evaluation."""


@dataclass
class Job:
    """One submitted job; read it through :meth:`JobQueue.snapshot` (a copy)."""

    id: str
    specs: list[str]
    budget: str
    device: str
    evaluate: bool
    overrides: list[str]
    reuse_eval: bool = False
    state: str = "queued"
    phase: str = ""
    message: str = ""
    step: int = 0
    total: int = 0
    loss: float | None = None
    steps_per_s: float | None = None
    losses: list[tuple[int, float]] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    submitted: float = field(default_factory=time.time)
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)

    def public(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "cancel_event"}
        d["losses"] = list(self.losses)
        return d


class JobQueue:
    """Jobs run one at a time per device, in submission order.

    Args:
        root: results root the runs are written under.
    """

    def __init__(self, root: str | Path = "results") -> None:
        self.root = Path(root)
        self._jobs: dict[str, Job] = {}
        self._queues: dict[str, queue.Queue] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def submit(self, specs: list[str], *, budget: str = "quick", device: str = "cpu",
               evaluate: bool = True, overrides: list[str] | None = None,
               reuse_eval: bool = False) -> Job:
        """Queue a job for ``specs`` (paths); checks the budget and device at once.

        Each spec goes through :func:`evaluator.pipeline.evaluate.run_spec` (a finished
        run is reused; its stored evaluation too with ``reuse_eval``).

        Raises:
            UserError: no specs, a missing file, an unknown budget or device.
        """
        from archspec.errors import UserError
        from evaluator.device import resolve_device
        from evaluator.pipeline.budgets import get_budget

        if not specs:
            raise UserError("choose at least one spec")
        missing = [s for s in specs if not Path(s).is_file()]
        if missing:
            raise UserError([f"{m}: no such spec file" for m in missing])
        get_budget(budget)
        try:
            dev = str(resolve_device(device))
        except ValueError as e:
            raise UserError(str(e)) from None
        job = Job(id=f"job{next(self._ids)}", specs=[str(s) for s in specs], budget=budget,
                  device=dev, evaluate=evaluate, overrides=list(overrides or []),
                  reuse_eval=reuse_eval)
        with self._lock:
            self._jobs[job.id] = job
            q = self._queues.get(dev)
            if q is None:
                q = self._queues[dev] = queue.Queue()
                threading.Thread(target=self._worker, args=(q,), daemon=True,
                                 name=f"archsearch-jobs-{dev}").start()
        q.put(job)
        return job

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job; False if it is unknown or already over."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.state not in ("queued", "running"):
                return False
            job.cancel_event.set()
            if job.state == "queued":
                job.state, job.message = "cancelled", "cancelled before it started"
        return True

    def snapshot(self) -> list[dict[str, Any]]:
        """Every job (oldest first) as a plain dict copy."""
        with self._lock:
            return [j.public() for j in self._jobs.values()]

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return job.public() if job else None

    def wait(self, job_id: str, timeout: float = 60.0) -> dict[str, Any] | None:
        """Block until the job is over (or ``timeout``); returns its snapshot."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            j = self.get(job_id)
            if j is None or j["state"] not in ("queued", "running"):
                return j
            time.sleep(0.05)
        return self.get(job_id)

    # ---- worker ----------------------------------------------------------------------
    def _worker(self, q: queue.Queue) -> None:
        while True:
            job = q.get()
            if job.cancel_event.is_set():
                continue
            with self._lock:
                job.state = "running"
            try:
                state, msg = self._run(job)
            except Exception as e:  # noqa: BLE001 - a job's error is its message, not a crash
                from archspec.errors import UserError
                state = "failed"
                msg = "; ".join(e.lines()) if isinstance(e, UserError) else (
                    f"{type(e).__name__}: {e}")
            with self._lock:
                job.state, job.message = state, msg

    def _run(self, job: Job) -> tuple[str, str]:
        from archspec import load_spec
        from evaluator.pipeline.budgets import apply_budget, get_budget
        from evaluator.pipeline.evaluate import run_spec
        from evaluator.store.rundir import RunDir

        budget = get_budget(job.budget)
        for path in job.specs:
            spec = apply_budget(load_spec(path, overrides=job.overrides), budget)
            job.runs.append(str(RunDir.create(spec, self.root).path))
            try:
                r = run_spec(spec, budget, self.root, device=job.device,
                             evaluate=job.evaluate, reuse_eval=job.reuse_eval,
                             on_step=self._on_step(job), on_phase=self._on_phase(job, spec),
                             on_setting=self._on_setting(job, spec))
            except _NotEvaluated:
                return "cancelled", f"{spec.name}: trained, not evaluated (cancelled)"
            if r.status == "cancelled":
                return "cancelled", f"{spec.name}: cancelled at step {r.step}; " \
                                    f"resumable (submit it again to continue)"
            if r.status != "finished":
                return "failed", f"{spec.name}: {r.reason}"
        return "finished", f"{len(job.specs)} spec(s) done"

    @staticmethod
    def _on_phase(job: Job, spec: Any):
        def on_phase(phase: str) -> None:
            if phase == "train":
                job.phase, job.total, job.step = f"train {spec.name}", spec.train.steps, 0
            else:
                job.phase = f"evaluate {spec.name}"
                if job.cancel_event.is_set():
                    raise _NotEvaluated

        return on_phase

    @staticmethod
    def _on_setting(job: Job, spec: Any):
        """Evaluation progress in the job's own fields: step/total count sampler settings."""
        name, trained = f"evaluate {spec.name}", []

        def on_setting(done: int, total: int, what: str) -> None:
            if not trained:
                trained.append((job.step, job.total))
            if done < total:
                job.step, job.total = done, total
                job.phase = f"{name}: setting {done + 1}/{total}, {what}"
            else:  # over: the columns say the training steps again
                (job.step, job.total), job.phase = trained[0], f"{name}: scored"

        return on_setting

    def _on_step(self, job: Job):
        from evaluator.training.loop import Cancelled

        t0, first = time.perf_counter(), [None]

        def on_step(step: int, loss: float) -> None:
            if first[0] is None:
                first[0] = step - 1
            dt = time.perf_counter() - t0
            job.step, job.loss = step, loss
            job.steps_per_s = (step - first[0]) / dt if dt > 0 else None
            job.losses.append((step, loss))
            if len(job.losses) > MAX_CURVE:
                del job.losses[: len(job.losses) - MAX_CURVE]
            if job.cancel_event.is_set():
                raise Cancelled(f"cancelled by request at step {step}")

        return on_step
