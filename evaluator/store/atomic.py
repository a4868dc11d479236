"""Atomic file I/O for everything the run store writes.

Every file is written through a temporary file in the same folder, fsync, then
``os.replace``, so a killed process never leaves a truncated file behind.
"""
from __future__ import annotations

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
