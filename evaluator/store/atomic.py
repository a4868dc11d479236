"""Atomic file I/O for everything the run store writes.

Every file is written through a temporary file in the same folder, fsync, then
``os.replace``, so a killed process never leaves a truncated file behind.
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from archspec.errors import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)


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
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        cause = _write_fault_in(e)
        if cause is not None and cause is not e:
            # torch.save wraps the OSError of a full disk in a RuntimeError: surface it
            raise OSError(cause.errno, cause.strerror, str(path)) from None
        if cause is not None and cause.filename is None:
            raise OSError(cause.errno, cause.strerror, str(path)) from None
        raise
    _fsync_dir(path.parent)


# A write that fails for lack of room or a read-only file system, not because of a bug
# (EACCES is left out: reading a file one may not read is not a failed write).
WRITE_FAULTS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EIO})


def _write_fault_in(e: BaseException) -> OSError | None:
    seen = 0
    while e is not None and seen < 8:
        if isinstance(e, OSError) and e.errno in WRITE_FAULTS:
            return e
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


def write_fault(e: BaseException) -> str | None:
    """One line saying which write failed and why (full disk, size limit, read-only), or
    None when ``e`` is not such a failure."""
    cause = _write_fault_in(e)
    if cause is None:
        return None
    where = f"{cause.filename}: " if cause.filename else ""
    return f"write failed: {where}{cause.strerror or os.strerror(cause.errno)}"


def check_writable(root: str | Path, what: str = "results root") -> None:
    """Refuse at start, with one line, a results root that cannot be written.

    Raises:
        UserError: the folder cannot be made or a file cannot be created in it.
    """
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".write-check.", dir=root)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise UserError(f"{root}: {what} is not writable ({e.strerror or e}); choose another "
                        "with --out or make it writable") from None


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


def update_json(path: Path, update: Callable[[Any], Any], default: Any = None) -> Any:
    """Read ``path``, apply ``update`` and write the result atomically, under a brief
    ``flock`` on ``<path>.lock`` so that concurrent updaters (two processes filling one
    cache) never drop each other's entries. Where the file system refuses flock the update
    is still atomic; the last writer then wins. Returns what was written."""
    import fcntl

    path = Path(path)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        except OSError:
            pass  # no locks here (some network file systems): atomic, last writer wins
        data = update(read_json(path, default=default))
        write_json(path, data)
    return data


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
