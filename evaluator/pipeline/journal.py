"""The job queue's journal: ``<results>/jobs.jsonl``, one JSON line per job state change.

Each record is appended with one ``write`` on an ``O_APPEND`` descriptor under an exclusive
``flock`` (so two app instances on one results root never interleave lines), then fsynced;
a torn last line from a crash is skipped on reading. The last record of a job wins.

Each job id owns ``<results>/.jobs/<id>.lock``: the id is claimed by creating it (unique
across app instances), and the instance that runs the job holds an ``flock`` on it, so a
job recorded as running whose lock nobody holds was interrupted (its app stopped or died).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator

JOURNAL_NAME = "jobs.jsonl"
LOCK_DIR = ".jobs"


def _lock_if_possible(fd: int) -> None:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:
        pass  # no locks here: one short O_APPEND write is still not interleaved locally


class JobJournal:
    """Append and replay job records under a results root."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.path = self.root / JOURNAL_NAME
        self.locks = self.root / LOCK_DIR
        self._offset = 0

    # ---- records ------------------------------------------------------------------
    def append(self, record: dict[str, Any]) -> bool:
        """Append one record durably; False (and one line on stderr) when it cannot."""
        line = (json.dumps(record, default=str) + "\n").encode()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        except OSError as e:
            print(f"{self.path}: job journal not written ({e.strerror})", file=sys.stderr)
            return False
        try:
            _lock_if_possible(fd)
            n = os.write(fd, line)
            if n != len(line):  # a full disk mid-line: cut the torn part off again
                os.ftruncate(fd, os.fstat(fd).st_size - n)
                raise OSError(28, os.strerror(28))
            os.fsync(fd)
            return True
        except OSError as e:
            print(f"{self.path}: job journal not written ({e.strerror})", file=sys.stderr)
            return False
        finally:
            os.close(fd)

    def read_new(self) -> Iterator[dict[str, Any]]:
        """Records appended since the last call (all of them the first time)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1  # a line still being written is read next time
        self._offset += end
        for line in data[:end].splitlines():
            try:
                rec = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue  # a torn line from a crash
            if isinstance(rec, dict) and isinstance(rec.get("id"), str):
                yield rec

    def last(self, job_id: str) -> dict[str, Any] | None:
        """The job's latest record in the whole journal (any app instance's)."""
        found = None
        for rec in JobJournal(self.root).read_new():
            if rec["id"] == job_id:
                found = rec
        return found

    # ---- ids and owners -------------------------------------------------------------
    def claim_id(self, start: int) -> tuple[str, int]:
        """A new job id ``job<N>`` (N >= ``start``) no app instance on this root has used."""
        self.locks.mkdir(parents=True, exist_ok=True)
        n = start
        while True:
            try:
                os.close(os.open(self.locks / f"job{n}.lock",
                                 os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                return f"job{n}", n
            except FileExistsError:
                n += 1

    def try_own(self, job_id: str) -> int | None:
        """Hold the job's lock (a descriptor to close when done), or None: another live
        process holds it."""
        import fcntl

        self.locks.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.locks / f"{job_id}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError:
            pass  # no locks on this file system: the run locks (a lease) still hold
        return fd

    def is_owned(self, job_id: str) -> bool:
        """True while a live process holds the job's lock."""
        fd = self.try_own(job_id)
        if fd is None:
            return True
        os.close(fd)
        return False
