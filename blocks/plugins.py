"""Third-party blocks: packages register blocks through the ``archsearch.blocks`` entry point.

A plugin distribution declares, in its ``pyproject.toml``::

    [project.entry-points."archsearch.blocks"]
    my_blocks = "my_package.blocks"          # a module whose import registers blocks
    # or: my_blocks = "my_package:register"  # a function called with no arguments

Its blocks use :func:`blocks.register_block` exactly like the built-in families, so they
get the same parameter validation, domain and shape checks, ``archsearch blocks`` listing
and registry-wide tests. Entry points are read with :mod:`importlib.metadata` the first
time the block registry is used (``import blocks`` alone loads nothing). A plugin that
fails to load raises :class:`PluginError` naming the plugin and the cause; it is never
skipped silently.
"""
from __future__ import annotations

import importlib.metadata
import types

ENTRY_POINT_GROUP = "archsearch.blocks"

_loaded: set[str] = set()


class PluginError(RuntimeError):
    """A block plugin could not be loaded or registered."""


def _describe(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    origin = f" from {dist.name} {dist.version}" if dist is not None and dist.name else ""
    return f"block plugin {ep.name!r} ({ep.value}{origin})"


def load_plugins() -> list[str]:
    """Load every ``archsearch.blocks`` entry point not loaded yet.

    Returns:
        The entry-point names loaded by this call.

    Raises:
        PluginError: importing or calling an entry point failed (for example a missing
            module, or a block name that is already registered).
    """
    done = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        key = f"{ep.name}={ep.value}"
        if key in _loaded:
            continue
        try:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, types.ModuleType):
                obj()
        except Exception as e:  # any failure of third-party code is reported as the plugin's
            raise PluginError(f"{_describe(ep)} failed to load: {type(e).__name__}: {e}") from e
        _loaded.add(key)
        done.append(ep.name)
    return done


__all__ = ["ENTRY_POINT_GROUP", "PluginError", "load_plugins"]
