"""A folder of user specs (default ``<results root>/specs``) that names cannot escape.

Saving spec text from an editor takes a *name*, not a path: names that are absolute, hold
``..``, or resolve (through symlinks) outside the workspace are refused with a
:class:`UserError`, so a surface can never be used to write elsewhere.
"""
from __future__ import annotations

from pathlib import Path

from archspec.errors import UserError
from evaluator.store.atomic import atomic_write

SUFFIXES = (".yaml", ".yml", ".json")


def workspace_dir(root: str | Path = "results") -> Path:
    return Path(root) / "specs"


def resolve_in_workspace(workspace: str | Path, name: str) -> Path:
    """The file ``name`` inside ``workspace`` (``.yaml`` added when it has no suffix).

    Raises:
        UserError: empty, absolute, ``..``, a symlink (or symlinked folder) leading out.
    """
    ws = Path(workspace)
    raw = (name or "").strip()
    if not raw:
        raise UserError("give a file name to save as")
    p = Path(raw)
    if p.is_absolute() or raw.startswith(("/", "\\", "~")):
        raise UserError(f"{raw}: absolute paths are refused; give a name inside {ws}")
    if ".." in p.parts or ".." in raw.replace("\\", "/").split("/"):
        raise UserError(f"{raw}: '..' is refused; names stay inside {ws}")
    if p.suffix.lower() not in SUFFIXES:
        p = p.with_name(p.name + ".yaml")
    target = ws / p
    base = ws.resolve()
    try:
        target.resolve().relative_to(base)
    except ValueError:
        raise UserError(f"{raw}: resolves outside the workspace {ws} (symlink?)") from None
    return target


def save_text(workspace: str | Path, name: str, text: str) -> Path:
    """Write ``text`` atomically as ``name`` in ``workspace``; returns the path."""
    target = resolve_in_workspace(workspace, name)
    Path(workspace).mkdir(parents=True, exist_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink():  # re-check after mkdir: the final component itself
        raise UserError(f"{name}: is a symlink; refused")
    atomic_write(target, lambda f: f.write(text), mode="w")
    return target


def list_specs(*folders: str | Path) -> list[Path]:
    """Spec files (by suffix) directly in each folder that exists, sorted per folder."""
    out: list[Path] = []
    for d in folders:
        d = Path(d)
        if d.is_dir():
            out += sorted(p for p in d.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
    return out
