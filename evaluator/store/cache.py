"""The toolkit's cache folder (datasets, feature extractors, reference statistics) and
memoised file digests."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

CACHE_ENV = "ARCHSEARCH_CACHE"


def cache_root(root: str | os.PathLike | None = None) -> Path:
    """Cache folder: ``root`` if given, else ``$ARCHSEARCH_CACHE``, else ``~/.cache/archsearch``."""
    if root is not None:
        return Path(root)
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "archsearch"


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 hex digest of a file, memoised on (path, size, mtime) so big weights hash once."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _SHA_MEMO[key] = h.hexdigest()
    return _SHA_MEMO[key]
