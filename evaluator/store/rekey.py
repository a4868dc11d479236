"""Re-key stored runs under the current canonical form (``archsearch rehash``).

A run folder is ``<root>/runs/<name>/<spec-hash>/``. When the canonical form changes (for
example when unet stage parameters became canonical, so a spec that wrote a block default
explicitly now hashes like one that leaves it out), old folders would no longer be found
by hash and their runs would train again. :func:`rekey_runs` moves each such folder to its
new hash with :func:`archspec.rehash`; a folder whose new hash already exists is left
alone and reported, so nothing is overwritten.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from archspec import rehash
from archspec.errors import SpecError
from evaluator.store.atomic import CorruptRunFile, read_json, write_json
from evaluator.store.rundir import list_runs


@dataclass(frozen=True)
class Rekey:
    """What happened (or, in a dry run, would happen) to one run folder."""

    old: Path
    new: Path | None
    action: str  # "kept" | "moved" | "would move" | "conflict" | "unreadable"
    detail: str = ""


def rekey_runs(root: str | Path, *, dry_run: bool = False) -> list[Rekey]:
    """Move every run under ``root`` whose spec hash changed to its new folder."""
    return [_rekey(run.path, dry_run) for run in list_runs(root)]


def _rekey(path: Path, dry_run: bool) -> Rekey:
    try:
        new_hash = rehash(read_json(path / "spec.resolved.json", kind=dict))
    except (CorruptRunFile, SpecError) as e:
        return Rekey(path, None, "unreadable", str(e).splitlines()[0])
    if new_hash == path.name:
        return Rekey(path, path, "kept")
    new = path.with_name(new_hash)
    if new.exists():
        return Rekey(path, new, "conflict", "a run with the new hash exists; both kept")
    if dry_run:
        return Rekey(path, new, "would move")
    path.rename(new)  # same parent folder: atomic on one filesystem
    status = read_json(new / "status.json", default=None, kind=dict)
    if status is not None:
        write_json(new / "status.json", {**status, "hash": new_hash, "rekeyed_from": path.name})
    return Rekey(path, new, "moved")
