"""One owner per run folder: an exclusive lock taken by whoever trains or evaluates a run.

The lock is ``fcntl.flock`` on ``<run>/.lock`` (a file that is never replaced or deleted, so
every process locks the same inode). The kernel drops it when the holder exits, however it
dies (SIGKILL included); the next process then resumes from the last checkpoint. The holder
is named in ``<run>/owner.json`` (pid, host, since, what; written atomically, removed on
release) so that a second process can say whom it waits for.

Scope: local file systems and NFSv4 (flock is forwarded to the server's lock manager as a
whole-file lock); NFSv3 needs ``lockd`` running on both sides. Where the file system refuses
locks, a lease with a heartbeat takes over (:mod:`evaluator.store.lease`).

Within one process the lock is re-entrant per thread (an entry point that calls another
one holds the folder once); two threads of one process exclude each other like two processes.
"""
from __future__ import annotations

import errno
import os
import socket
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from archspec.errors import UserError
from evaluator.store.atomic import read_json, write_fault, write_json

LOCK_NAME = ".lock"
OWNER_NAME = "owner.json"
EXIT_BUSY = 3        # `archsearch train/evaluate --no-wait` on a run another process holds
POLL_S = 0.2

_held = threading.local()


class RunBusy(UserError):
    """Another process holds the run (raised only when not waiting)."""

    exit_code = EXIT_BUSY


class WriteFailed(UserError):
    """A write into a run failed (full disk, size limit, read-only); the run stopped.

    The reason is in ``status.json`` when it could still be written; checkpoints are
    written atomically, so the last good one is intact.
    """

    exit_code = 1


def owner_of(folder: Path) -> dict[str, Any]:
    """The holder ``owner.json`` names (may be stale or missing: read while it changes)."""
    try:
        data = read_json(Path(folder) / OWNER_NAME, default={}, kind=dict)
    except UserError:
        return {}
    return data


def describe_owner(folder: Path) -> str:
    o = owner_of(folder)
    if not o:
        return f"run {folder} held by another process"
    what = f" ({o['what']})" if o.get("what") else ""
    return (f"run {folder} held by pid {o.get('pid', '?')} on host {o.get('host', '?')} "
            f"since {o.get('since', '?')}{what}")


def _try_lock(fd: int, folder: Path) -> bool:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise _NoLocks(e.strerror or str(e)) from None


class _NoLocks(Exception):
    """The file system refuses flock (NFSv3 without lockd, some FUSE mounts)."""


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextmanager
def hold_run(folder: str | Path, what: str, *, wait: bool = True,
             on_wait: Callable[[str], None] | None = _stderr,
             should_stop: Callable[[], None] | None = None) -> Iterator[bool]:
    """Hold ``folder`` exclusively for the block; yields True when it had to wait.

    Args:
        what: what the holder does (``train``, ``evaluate quick``...), shown to waiters.
        wait: False: raise :class:`RunBusy` at once when another process holds it.
        on_wait: called once with "waiting for run ... held by pid N on host H since T".
        should_stop: called while waiting; may raise to give up (e.g. a cancelled job).

    Raises:
        RunBusy: held elsewhere and ``wait`` is False.
    """
    folder = Path(folder)
    key = str(folder.resolve())
    held = _held.__dict__.setdefault("paths", set())
    if key in held:
        yield False
        return
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise UserError(f"{folder}: cannot open the run lock ({e.strerror})") from None
    waited = False
    try:
        try:
            got = _try_lock(fd, folder)
        except _NoLocks:
            from evaluator.store.lease import hold_lease

            os.close(fd)
            fd = None
            with hold_lease(folder, what, wait=wait, on_wait=on_wait,
                            should_stop=should_stop, busy=RunBusy) as waited:
                held.add(key)
                try:
                    yield waited
                finally:
                    held.discard(key)
            return
        if not got:
            if not wait:
                raise RunBusy(f"{describe_owner(folder)}; not waiting (--no-wait)")
            _await_owner_name(folder)
            if on_wait is not None:
                on_wait(f"waiting for {describe_owner(folder)}")
            waited = True
            while not _try_lock(fd, folder):
                if should_stop is not None:
                    should_stop()
                time.sleep(POLL_S)
        _write_owner(folder, what)
        held.add(key)
        try:
            yield waited
        finally:
            held.discard(key)
            # Removed before the lock is released: a waiter never reads our stale name.
            (folder / OWNER_NAME).unlink(missing_ok=True)
    finally:
        if fd is not None:
            os.close(fd)


def _await_owner_name(folder: Path, timeout: float = 2.0) -> None:
    # The holder names itself just after it takes the lock: give it a moment.
    end = time.monotonic() + timeout
    while not owner_of(folder) and time.monotonic() < end:
        time.sleep(0.05)


def _write_owner(folder: Path, what: str) -> None:
    write_json(folder / OWNER_NAME, {
        "pid": os.getpid(), "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "what": what})


@contextmanager
def owning_run(run: Any, what: str, *, wait: bool = True,
               on_wait: Callable[[str], None] | None = _stderr,
               should_stop: Callable[[], None] | None = None) -> Iterator[bool]:
    """:func:`hold_run` on a :class:`RunDir`, turning a failed write into one line.

    A full disk, a size limit or a read-only file system met while holding the run stops
    it: ``status.json`` records ``failed`` with the one-line reason and ``resumable: true``
    (or, when even that cannot be written, the reason goes to stderr), and
    :class:`WriteFailed` is raised instead of the OSError and its traceback.
    """
    with hold_run(run.path, what, wait=wait, on_wait=on_wait,
                  should_stop=should_stop) as waited:
        try:
            yield waited
        except Exception as e:  # noqa: BLE001 - only write faults are turned, others re-raised
            reason = write_fault(e)
            if reason is None:
                raise
            raise record_write_fault(run, reason) from None


def record_write_fault(run: Any, reason: str) -> WriteFailed:
    """Write ``reason`` to the run's ``status.json`` (stderr when that fails too)."""
    try:
        run.set_status("failed", reason=reason, resumable=True)
    except OSError:
        _stderr(f"{run.path}: {reason} (status.json could not be written either)")
    return WriteFailed(f"{run.path}: {reason}; the last checkpoint is intact (free space, "
                       "then resume)")
