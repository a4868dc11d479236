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

Restarts: the queue is journaled in the results root (:mod:`evaluator.pipeline.journal`).
A new queue on the same root lists every earlier job; one that was queued or running when
its app stopped shows as ``interrupted`` (``resumable``) and continues with
:meth:`JobQueue.resume` (from the run's last checkpoint), or at once with
``auto_resume=True``. Two app instances never run one job twice: the one that runs it holds
its job lock, and every run folder is held by its trainer
(:mod:`evaluator.store.runlock`).
"""
from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JOB_STATES = ("queued", "running", "finished", "failed", "cancelled", "interrupted")
_OVER = ("finished", "failed", "cancelled")
_RECORDED = ("id", "specs", "budget", "device", "evaluate", "overrides", "reuse_eval", "state",
             "phase", "message", "step", "total", "runs", "submitted")
MAX_CURVE = 2000   # loss points kept per job for the live curve


class _NotEvaluated(Exception):
    """Cancelled between training and evaluation."""


class _NotStarted(Exception):
    """Cancelled while waiting for another process to release the run."""


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
    resumable: bool = False
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)

    def public(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "cancel_event"}
        d["losses"] = list(self.losses)
        return d

    def record(self) -> dict[str, Any]:
        """What the journal keeps (not the live loss curve)."""
        return {k: getattr(self, k) for k in _RECORDED} | {"updated": time.time(),
                                                          "pid": os.getpid()}

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> "Job":
        kw = {k: rec[k] for k in _RECORDED if k in rec}
        kw.setdefault("specs", []), kw.setdefault("budget", "quick")
        kw.setdefault("device", "cpu"), kw.setdefault("evaluate", True)
        kw.setdefault("overrides", [])
        return cls(**kw)


class JobQueue:
    """Jobs run one at a time per device, in submission order.

    Args:
        root: results root the runs are written under; the journal ``jobs.jsonl`` too.
        auto_resume: resume the jobs an earlier app left interrupted at once.
    """

    def __init__(self, root: str | Path = "results", auto_resume: bool = False) -> None:
        from evaluator.pipeline.journal import JobJournal

        self.root = Path(root)
        self._jobs: dict[str, Job] = {}
        self._queues: dict[str, queue.Queue] = {}
        self._lock = threading.Lock()
        self._mine: set[str] = set()      # jobs this queue has run or will run
        self._next = 1
        self._journal = JobJournal(self.root)
        self._sync()
        if auto_resume:
            for jid in [j.id for j in self._jobs.values() if j.state == "interrupted"]:
                self.resume(jid)

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
        from evaluator.store.atomic import check_writable

        check_writable(self.root)
        with self._lock:
            jid, n = self._journal.claim_id(self._next)
            self._next = n + 1
        job = Job(id=jid, specs=[str(s) for s in specs], budget=budget,
                  device=dev, evaluate=evaluate, overrides=list(overrides or []),
                  reuse_eval=reuse_eval)
        self._enqueue(job)
        return job

    def resume(self, job_id: str) -> bool:
        """Queue again a job an earlier app left ``interrupted`` (or one cancelled); it
        continues from its runs' last checkpoints. False if it is unknown, still going
        or over, or another app instance runs it."""
        self._sync()
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.state not in ("interrupted", "cancelled"):
                return False
            if job_id not in self._mine and self._journal.is_owned(job_id):
                return False
            job.cancel_event = threading.Event()
            job.state, job.message, job.resumable = "queued", "resumed", False
            job.runs = []
        self._enqueue(job)
        return True

    def _enqueue(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.id] = job
            self._mine.add(job.id)
            q = self._queues.get(job.device)
            if q is None:
                q = self._queues[job.device] = queue.Queue()
                threading.Thread(target=self._worker, args=(q,), daemon=True,
                                 name=f"archsearch-jobs-{job.device}").start()
        self._journal.append(job.record())
        q.put(job)

    def _sync(self) -> None:
        """Take in what the journal says about jobs this queue does not run (an earlier
        app's, or another instance's); a queued or running one whose lock nobody holds
        was interrupted."""
        for rec in self._journal.read_new():
            jid = rec["id"]
            with self._lock:
                if jid in self._mine:
                    continue
                if jid.removeprefix("job").isdigit():
                    self._next = max(self._next, int(jid.removeprefix("job")) + 1)
                self._jobs[jid] = Job.from_record(rec)
        with self._lock:
            others = [j for j in self._jobs.values()
                      if j.id not in self._mine and j.state in ("queued", "running",
                                                                "interrupted")]
        for job in others:
            owned = self._journal.is_owned(job.id)
            if job.state == "interrupted" and owned:
                job.state, job.resumable = "running", False
            elif job.state in ("queued", "running") and not owned:
                job.state, job.resumable = "interrupted", True
                job.message = (f"interrupted ({job.message or job.phase or 'not started'}); "
                               "resumable: resume it to continue")

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job; False if it is unknown or already over."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.state not in ("queued", "running"):
                return False
            job.cancel_event.set()
            if job.state == "queued":
                job.state, job.message = "cancelled", "cancelled before it started"
                self._journal.append(job.record())
        return True

    def snapshot(self) -> list[dict[str, Any]]:
        """Every job (oldest first, earlier apps' included) as a plain dict copy."""
        self._sync()
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
            fd = self._journal.try_own(job.id)
            if fd is None:  # another app instance on this root runs it
                with self._lock:
                    job.state, job.message = "running", "running in another app instance"
                    self._mine.discard(job.id)
                continue
            try:
                self._run_owned(job)
            finally:
                os.close(fd)

    def _run_owned(self, job: Job) -> None:
        last = self._journal.last(job.id)
        if last and last.get("state") in _OVER and last.get("pid") != os.getpid():
            with self._lock:  # another app instance ran it to the end meanwhile
                job.state, job.message = last["state"], last.get("message", "")
                job.runs = list(last.get("runs", []))
            return
        with self._lock:
            job.state = "running"
        self._journal.append(job.record())
        try:
            state, msg = self._run(job)
        except Exception as e:  # noqa: BLE001 - a job's error is its message, not a crash
            from archspec.errors import UserError
            state = "failed"
            msg = "; ".join(e.lines()) if isinstance(e, UserError) else (
                f"{type(e).__name__}: {e}")
        with self._lock:
            job.state, job.message = state, msg
            job.resumable = state == "cancelled"
        self._journal.append(job.record())

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
                             on_setting=self._on_setting(job, spec),
                             on_wait=self._on_wait(job), should_stop=self._stop_check(job))
            except _NotEvaluated:
                return "cancelled", f"{spec.name}: trained, not evaluated (cancelled)"
            except _NotStarted:
                return "cancelled", f"{spec.name}: cancelled while waiting for its run"
            if r.status == "cancelled":
                return "cancelled", f"{spec.name}: cancelled at step {r.step}; " \
                                    f"resumable (submit it again to continue)"
            if r.status != "finished":
                return "failed", f"{spec.name}: {r.reason}"
        return "finished", f"{len(job.specs)} spec(s) done"

    @staticmethod
    def _on_wait(job: Job):
        def on_wait(msg: str) -> None:
            job.phase, job.message = "waiting", msg

        return on_wait

    @staticmethod
    def _stop_check(job: Job):
        def should_stop() -> None:
            if job.cancel_event.is_set():
                raise _NotStarted

        return should_stop

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
