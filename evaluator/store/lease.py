"""A lease with a heartbeat: the run lock where the file system refuses ``flock``.

The holder creates ``<run>/lease.json`` with ``O_EXCL`` (atomic on local file systems and
NFSv3+) and rewrites it every ``HEARTBEAT_S`` seconds with a new beat count. A waiter treats
the lease as stale when the beat has not changed for ``STALE_S`` seconds of its own clock
(so clocks of different hosts need not agree) and takes it over: it renames the stale file
aside (only one waiter's rename succeeds), checks that it moved the stale lease and not a
fresh one, and creates its own. A holder that finds its lease taken stops heartbeating.

Weaker than flock: a holder stalled for longer than ``STALE_S`` (a paused VM) can lose its
lease while it still writes.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from evaluator.store.atomic import write_json

LEASE_NAME = "lease.json"
HEARTBEAT_S = 5.0
STALE_S = 30.0
POLL_S = 0.2


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _create(path: Path, rec: dict) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump(rec, f)
        f.flush()
        os.fsync(f.fileno())
    return True


def _take_over(path: Path, stale: dict) -> None:
    aside = path.with_name(f".{LEASE_NAME}.stale.{secrets.token_hex(4)}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return  # another waiter moved it first
    moved = _read(aside)
    if moved is not None and moved.get("token") != stale.get("token"):
        os.rename(aside, path)  # a fresh lease, created meanwhile: put it back
    else:
        aside.unlink(missing_ok=True)


def describe(rec: dict | None, folder: Path) -> str:
    if not rec:
        return f"run {folder} held by another process"
    return (f"run {folder} held by pid {rec.get('pid', '?')} on host {rec.get('host', '?')} "
            f"since {rec.get('since', '?')} ({rec.get('what', '')}, lease)")


@contextmanager
def hold_lease(folder: Path, what: str, *, wait: bool, on_wait: Callable | None,
               should_stop: Callable | None, busy: type[Exception]) -> Iterator[bool]:
    """Hold ``folder``'s lease for the block (see the module); yields True if it waited."""
    path = Path(folder) / LEASE_NAME
    rec = {"pid": os.getpid(), "host": socket.gethostname(), "what": what,
           "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "token": secrets.token_hex(8),
           "beat": 0}
    waited, seen, seen_at = False, None, time.monotonic()
    while not _create(path, rec):
        cur = _read(path)
        key = (cur or {}).get("token"), (cur or {}).get("beat")
        if key != seen:
            seen, seen_at = key, time.monotonic()
        elif cur is not None and time.monotonic() - seen_at > STALE_S:
            _take_over(path, cur)
            continue
        if not wait:
            raise busy(f"{describe(cur, folder)}; not waiting (--no-wait)")
        if not waited and on_wait is not None:
            on_wait(f"waiting for {describe(cur, folder)}")
        waited = True
        if should_stop is not None:
            should_stop()
        time.sleep(POLL_S)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(path, rec, stop), daemon=True)
    beat.start()
    try:
        yield waited
    finally:
        stop.set()
        beat.join()
        if (_read(path) or {}).get("token") == rec["token"]:
            path.unlink(missing_ok=True)


def _heartbeat(path: Path, rec: dict, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        if (_read(path) or {}).get("token") != rec["token"]:
            return  # taken over: never write over another holder's lease
        rec["beat"] += 1
        try:
            write_json(path, rec)
        except OSError:
            pass  # a full disk: the beat is missed; waiters see it as stale only after STALE_S
