"""Re-key stored runs under the current canonical form (``archsearch rehash``).

A run folder is ``<root>/runs/<name>/<spec-hash>/``. When the canonical form changes (for
example when unet stage parameters became canonical, so a spec that wrote a block default
explicitly now hashes like one that leaves it out), old folders would no longer be found
by hash and their runs would train again. :func:`rekey_runs` moves each such folder to its
new hash with :func:`archspec.rehash`; a folder whose new hash already exists is left
alone and reported, so nothing is overwritten. A folder is moved only while its run lock is
held (:mod:`evaluator.store.runlock`): a run that trains or evaluates is waited for, or,
without waiting, reported ``busy`` and left where it is.
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
    action: str  # "kept" | "moved" | "would move" | "conflict" | "unreadable" | "busy" | "gone"
    detail: str = ""


def rekey_runs(root: str | Path, *, dry_run: bool = False, wait: bool = True) -> list[Rekey]:
    """Move every run under ``root`` whose spec hash changed to its new folder.

    Args:
        wait: a run another process holds is waited for (the waiting line goes to stderr);
            False: it is reported ``busy`` and not moved. A run that keeps its hash, and
            any run in a dry run, is only read: no lock.
    """
    if dry_run:
        return [_rekey(run.path, True) for run in list_runs(root)]
    return [_rekey_held(run.path, wait) for run in list_runs(root)]


def _rekey_held(path: Path, wait: bool) -> Rekey:
    """:func:`_rekey` under the run lock, taken only for a folder that has to move (a run
    that keeps its hash is never waited for)."""
    from evaluator.store.runlock import OWNER_NAME, RunBusy, hold_run

    first = _rekey(path, True)
    if first.action != "would move":
        return first
    try:
        with hold_run(path, "archsearch rehash", wait=wait):
            if not (path / "spec.resolved.json").is_file():
                return Rekey(path, None, "gone", "moved or deleted while waiting for it")
            # our owner.json must not travel to the new folder and name us there
            (path / OWNER_NAME).unlink(missing_ok=True)
            return _rekey(path, False)
    except RunBusy as e:
        return Rekey(path, None, "busy", str(e))


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
