"""Optuna storages for sweeps: a journal file with heartbeats, and an RDB storage that
rides out a database restart.

- default: Optuna's journal file (``<results>/sweeps/<name>/journal.log``), safe for several
  processes on one machine. Optuna's journal storage has no heartbeat, so
  :class:`HeartbeatJournalStorage` adds one through the same interface ``RDBStorage`` uses;
- any RDB URL (``postgresql://user@host/db``, through psycopg 3, SQLAlchemy's default
  PostgreSQL driver, so other tools take the same URL) for workers on several machines,
  with Optuna's own heartbeat: :class:`ReconnectingRDBStorage`.
"""
from __future__ import annotations

import logging
import os
import sys
import warnings
import time
from pathlib import Path
from typing import Any, Callable

from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import JournalStorage, RDBStorage

try:  # Optuna >= 4.9 renamed RetryFailedTrialCallback (the old name warns)
    from optuna.storages import RetryHeartbeatStaleTrialCallback as RetryCallback
except ImportError:  # pragma: no cover - older Optuna
    from optuna.storages import RetryFailedTrialCallback as RetryCallback
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import TrialState

from archspec.errors import UserError

HEARTBEAT_S = 10
MAX_RETRY = 3
RECONNECT_S = 120.0

# heartbeats and their retry callback are marked experimental; they are what we need
warnings.filterwarnings("ignore", category=ExperimentalWarning)


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """Journal storage with heartbeats kept as a trial system attribute.

    ``record_heartbeat`` appends the wall-clock time; a RUNNING trial whose last beat (or
    start) is older than ``grace_period`` is stale. The journal serialises state changes,
    so when two workers fail the same stale trial only the first succeeds."""

    def __init__(self, path: str | Path, heartbeat_interval: int = HEARTBEAT_S,
                 grace_period: int | None = None, failed_trial_callback: Any = None) -> None:
        from optuna.storages.journal import JournalFileBackend

        super().__init__(JournalFileBackend(str(path)))
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period or 2 * heartbeat_interval
        self.failed_trial_callback = failed_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, "heartbeat", time.time())
        except UpdateFinishedTrialError:
            pass  # another worker judged this trial stale; its retry is queued

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now, out = time.time(), []
        for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            last = t.system_attrs.get("heartbeat")
            if last is None and t.datetime_start is not None:
                last = t.datetime_start.timestamp()
            if last is not None and now - last > self.grace_period:
                out.append(t._trial_id)
        return out

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> Any:
        return self.failed_trial_callback


class StorageLost(UserError):
    """The RDB storage stayed unreachable past the reconnect window; the worker stops."""


def _connection_lost(e: BaseException) -> bool:
    """Whether ``e`` comes from a lost or refused connection, as when the database server
    restarts (Optuna wraps SQLAlchemy's error, and a fallback query may hide it under the
    transaction it left pending)."""
    from sqlalchemy import exc

    lost = (exc.OperationalError, exc.InterfaceError, exc.PendingRollbackError)
    seen: list[BaseException] = []
    x: BaseException | None = e
    while x is not None and len(seen) < 8:
        if isinstance(x, lost) or getattr(x, "connection_invalidated", False):
            return True
        seen.append(x)
        x = x.__cause__ or x.__context__
    return False


class _QuietConnectionLoss(logging.Filter):
    """Drops Optuna's multi-line "Caught an error from sqlalchemy ... Falling back" warning
    for a lost connection: the storage retries the whole call and says so in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        return not (msg.startswith("Caught an error from sqlalchemy")
                    and "OperationalError" in msg)


logging.getLogger("optuna.storages._rdb.storage").addFilter(_QuietConnectionLoss())


class ReconnectingRDBStorage(RDBStorage):
    """``RDBStorage`` that waits out a database restart instead of failing mid-sweep.

    Each storage call that loses its connection is retried (``pool_pre_ping`` opens a new
    one) until ``reconnect_s`` seconds have passed since the outage began; then the call,
    and every later one, raises :class:`StorageLost` (one line). The worker's trial is then
    left RUNNING without heartbeats, so another worker retries it. Heartbeats are never
    retried: a missed beat is harmless, a blocked heartbeat thread is not. Right after an
    outage this process judges no trial stale for one grace period, so that live workers,
    whose beats failed too, can beat again first."""

    reconnect_s = RECONNECT_S
    label = "storage"
    _lost_since: float | None = None
    _back_at = 0.0
    _gave_up: str | None = None

    @property
    def gave_up(self) -> str | None:
        """Why this storage stopped reconnecting, or None."""
        return self._gave_up

    def _retrying(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        while True:
            if self._gave_up:
                raise StorageLost(self._gave_up)
            try:
                out = fn(self, *args, **kwargs)
            except Exception as e:  # noqa: BLE001 - only lost connections are retried
                if not _connection_lost(e):
                    raise
                self._lost(e)
                time.sleep(min(2.0, max(0.2, self.reconnect_s / 10)))
                continue
            self._back()
            return out

    def _back(self) -> None:
        if self._lost_since is not None:
            print(f"worker {os.getpid()}: {self.label} is back after "
                  f"{time.time() - self._lost_since:.0f} s", file=sys.stderr, flush=True)
            self._lost_since, self._back_at = None, time.time()

    def _lost(self, e: BaseException) -> None:
        now = time.time()
        if self._lost_since is None:
            self._lost_since = now
            print(f"worker {os.getpid()}: lost {self.label} ({_one_line(e.__cause__ or e)}); "
                  f"reconnecting for up to {self.reconnect_s:.0f} s", file=sys.stderr,
                  flush=True)
        elif now - self._lost_since > self.reconnect_s:
            self._gave_up = (f"{self.label}: unreachable for {now - self._lost_since:.0f} s "
                             f"({_one_line(e.__cause__ or e)}); this worker stops, its trial "
                             "is retried by another; start it again when the database is back")
            raise StorageLost(self._gave_up) from None

    def record_heartbeat(self, trial_id: int) -> None:
        if self._gave_up:
            return
        try:
            super().record_heartbeat(trial_id)
        except Exception as e:  # noqa: BLE001 - the next beat or call reconnects
            if not _connection_lost(e):
                raise
            try:
                self._lost(e)
            except StorageLost:
                pass  # the main thread stops the worker on its next storage call
            return
        self._back()

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        ids = self._retrying(RDBStorage._get_stale_trial_ids, study_id)
        quiet = self.grace_period + (self.heartbeat_interval or 0)
        recent = self._lost_since is not None or time.time() - self._back_at < quiet
        return [] if recent else ids


def _wrap(name: str) -> Callable[..., Any]:
    base = getattr(RDBStorage, name)

    def method(self: ReconnectingRDBStorage, *args: Any, **kwargs: Any) -> Any:
        return self._retrying(base, *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = base.__doc__
    return method


for _name in ("create_new_study", "delete_study", "set_study_user_attr",
              "set_study_system_attr", "get_study_id_from_name", "get_study_name_from_id",
              "get_study_directions", "get_study_user_attrs", "get_study_system_attrs",
              "get_trial_user_attrs", "get_trial_system_attrs", "get_all_studies",
              "create_new_trial", "set_trial_param", "get_trial_param",
              "set_trial_state_values", "set_trial_intermediate_value",
              "set_trial_user_attr", "set_trial_system_attr",
              "get_trial_id_from_study_id_trial_number", "get_trial", "get_all_trials",
              "get_best_trial",
              # Optuna's cache (_CachedStorage) calls these private ones directly
              "_create_new_trial", "_set_trial_param", "_get_best_trial_id", "_get_trials"):
    setattr(ReconnectingRDBStorage, _name, _wrap(_name))


def default_storage(out: str | Path, name: str) -> str:
    return str(Path(out) / "sweeps" / name / "journal.log")


def is_rdb(url: str) -> bool:
    return "://" in url and not url.startswith("journal:")


def make_storage(url: str, heartbeat: int = HEARTBEAT_S, grace: int | None = None,
                 reconnect: float = RECONNECT_S) -> Any:
    """An RDB storage for ``scheme://`` URLs, else a journal file at the path (``journal:``
    prefix optional); both with heartbeats and retry of stale trials. An RDB storage rides
    out a database restart of up to ``reconnect`` seconds (:class:`ReconnectingRDBStorage`).

    ``postgresql://`` URLs go through SQLAlchemy's default PostgreSQL driver, psycopg 3 (a
    project dependency), so the same URL works in optuna-dashboard or ``optuna.load_study``."""
    retry = RetryCallback(max_retry=MAX_RETRY)
    if is_rdb(url):
        import inspect

        _check_driver(url)
        # Optuna >= 4.9 names the callback heartbeat_stale_trial_callback
        cb = ("heartbeat_stale_trial_callback"
              if "heartbeat_stale_trial_callback" in inspect.signature(RDBStorage).parameters
              else "failed_trial_callback")
        try:
            storage = ReconnectingRDBStorage(url, heartbeat_interval=heartbeat,
                                             grace_period=grace or 2 * heartbeat, **{cb: retry},
                                             engine_kwargs={"pool_pre_ping": True})
        except Exception as e:  # noqa: BLE001 - driver/connection errors become one line
            raise UserError(f"storage {_redact(url)}: {_one_line(e)}") from None
        storage.reconnect_s, storage.label = reconnect, f"storage {_redact(url)}"
        return storage
    path = Path(url.removeprefix("journal:"))
    path.parent.mkdir(parents=True, exist_ok=True)
    return HeartbeatJournalStorage(path, heartbeat, grace, retry)


def _check_driver(url: str) -> None:
    """A missing psycopg 3 is one line saying what to install (SQLAlchemy would say only
    "Failed to import DB access module")."""
    import importlib.util

    scheme = url.split("://", 1)[0]
    if scheme in ("postgresql", "postgresql+psycopg") \
            and importlib.util.find_spec("psycopg") is None:
        raise UserError(f"storage {_redact(url)}: PostgreSQL needs psycopg 3: "
                        "pip install 'psycopg[binary]'")


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def _redact(url: str) -> str:
    """The URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        return f"{scheme}://{cred.split(':')[0]}:***@{host}" if ":" in cred else url
    return url
