"""Checks that other layers contribute to validation, found through an entry-point group.

The spec language cannot know which datasets and samplers exist: the evaluator registers
them. Rather than import the evaluator (a layer above), ``archspec`` looks up the
entry-point group ``archsearch.checks``; each entry names a function
``check(spec) -> Iterable[Problem]`` that is called once the spec's schema is valid. The
evaluator declares its own in ``pyproject.toml``::

    [project.entry-points."archsearch.checks"]
    evaluator = "evaluator.pipeline.checks:check_spec"

A provider that fails to load, or no provider at all, is an error in every validation,
never a silent skip: a missing check would let a bad spec through to ``train``.
"""
from __future__ import annotations

import importlib.metadata as md
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable

from archspec.errors import Problem

GROUP = "archsearch.checks"


def _source_tree_entry_points() -> list[md.EntryPoint]:
    """The group as declared in this source tree's ``pyproject.toml``.

    Joined to the installed ones, for an editable install made before the group was
    declared, or a checkout run from ``PYTHONPATH``.
    """
    import tomllib

    path = Path(__file__).resolve().parents[1] / "pyproject.toml"
    try:
        project = tomllib.loads(path.read_text()).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return []
    group = project.get("entry-points", {}).get(GROUP, {})
    return [md.EntryPoint(name, value, GROUP) for name, value in group.items()]


def _installed_entry_points() -> list[md.EntryPoint]:
    return list(md.entry_points(group=GROUP))


@lru_cache(maxsize=1)
def providers() -> tuple[tuple[tuple[str, Callable[[Any], Iterable[Problem]]], ...],
                         tuple[Problem, ...]]:
    """((name, check function) for each provider, problems loading them)."""
    # the source tree's own declarations count too, and win on equal names: an editable
    # install's metadata can be older than the tree it points at (a provider moved since)
    own = _source_tree_entry_points()
    eps = [ep for ep in _installed_entry_points() if ep.name not in {e.name for e in own}]
    eps += own
    found, problems = [], []
    for ep in sorted(eps, key=lambda e: e.name):
        try:
            fn = ep.load()
        except Exception as e:  # noqa: BLE001 - any import failure must be reported
            problems.append(Problem("", f"spec check provider {ep.name!r} ({ep.value}) failed "
                                    f"to load: {type(e).__name__}: {str(e)[:200]}"))
            continue
        found.append((ep.name, fn))
    if not eps:
        problems.append(Problem("", f"no spec check providers found (entry-point group "
                                f"{GROUP!r}); dataset and sampler names cannot be checked. "
                                "Reinstall spectral-archsearch (pip install -e .)"))
    return tuple(found), tuple(problems)


def run_checks(spec: Any) -> list[Problem]:
    """Every provider's problems with ``spec``, plus any provider that failed to load."""
    found, problems = providers()
    out = list(problems)
    for _name, fn in found:
        out.extend(fn(spec))  # a provider that crashes is a bug: it surfaces as one
    return out
