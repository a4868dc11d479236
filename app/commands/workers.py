"""Local worker processes for ``archsearch sweep run`` and ``archsearch study run``.

Both commands start N copies of their own ``worker`` subcommand, show one progress bar
over the trials while they run, stop them on Ctrl-C and collect their exit codes; the
workers themselves share the threads setting and the closing line. Only the standard
library is imported at module level (``archsearch --help`` stays instant).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Callable, NamedTuple


class Progress(NamedTuple):
    """Trials of a sweep or study right now: ``finished`` counts done and failed ones."""

    total: int
    finished: int
    running: int
    failed: int


def threads_per_worker(threads: int | None, workers: int) -> int:
    """``--threads``, or this process's cores shared out between ``workers``."""
    from evaluator.study.engine import cores

    return threads or max(1, cores() // workers)


def spawn(argv: list[str], threads: int) -> subprocess.Popen:
    """Start ``archsearch ARGV`` with BLAS/OpenMP narrowed to ``threads`` (torch's own
    count is set by the worker's ``--threads``)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return subprocess.Popen([sys.executable, "-m", "app.cli", *argv], env=env)


def supervise(procs: list[subprocess.Popen], desc: str, progress: Callable[[], Progress],
              poll_s: float) -> list[int]:
    """Wait for ``procs`` with a bar over ``progress()`` polled every ``poll_s`` seconds;
    on Ctrl-C terminate them and re-raise. Returns their exit codes."""
    from tqdm.auto import tqdm

    # disable=None: a bar on a terminal, nothing in logs (the final status line remains)
    bar = tqdm(total=progress().total, desc=desc, unit="trial", disable=None)
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(poll_s)
            now = progress()
            bar.n = now.finished
            bar.set_postfix(running=now.running, failed=now.failed, refresh=False)
            bar.refresh()
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        raise
    finally:
        bar.close()
    return [p.wait() for p in procs]


def set_threads(threads: int | None) -> None:
    """In a worker: torch's thread count from ``--threads`` (left alone when not given)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def worker_done(n: int) -> int:
    """A worker's closing line (stderr, so it stays out of piped output); exit code 0."""
    print(f"worker {os.getpid()}: ran {n} trial(s)", file=sys.stderr)
    return 0
