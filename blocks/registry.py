"""A small name -> entry registry, one per kind (blocks, samplers, metrics, datasets).

Registering a name twice is an error; an unknown name suggests close matches.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """Unknown or duplicate registry name. ``str(err)`` is the plain message."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


def suggest(name: str, choices: list[str], n: int = 3) -> str:
    """``" (did you mean 'a', 'b'?)"`` for close matches of ``name``, else ``""``."""
    close = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


class Registry(Generic[T]):
    """Maps names to entries of one kind.

    Args:
        kind: what the entries are, used in messages (``"block"``, ``"sampler"``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._on_first_use: Callable[[], Any] | None = None

    def when_first_used(self, hook: Callable[[], Any]) -> None:
        """Call ``hook`` once, the first time the registry is read (not written): how
        third-party entries (entry-point plugins) join after the built-in ones."""
        self._on_first_use = hook

    def _used(self) -> None:
        hook, self._on_first_use = self._on_first_use, None  # once, even if it reads us
        if hook is not None:
            try:
                hook()
            except BaseException:
                self._on_first_use = hook  # a failed load fails again, not silently
                raise

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise RegistryError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def remove(self, name: str) -> T:
        """Unregister ``name`` (tests and plugin reloads); unknown names raise."""
        entry = self.get(name)
        del self._entries[name]
        return entry

    def get(self, name: str) -> T:
        self._used()
        try:
            return self._entries[name]
        except KeyError:
            raise RegistryError(
                f"unknown {self.kind} {name!r}{suggest(name, list(self._entries))}"
            ) from None

    def __contains__(self, name: object) -> bool:
        self._used()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._used()
        return len(self._entries)

    def names(self) -> list[str]:
        self._used()
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._entries[n]) for n in self.names()]


@dataclass(frozen=True)
class Entry:
    """A registered thing: a factory, a one-line description and kind-specific ``extra``.

    Used by the sampler and dataset registries (blocks and metrics have their own types).
    """

    name: str
    factory: Callable[..., Any]
    doc: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
