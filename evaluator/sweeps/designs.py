"""Designs: Taguchi orthogonal arrays (taken from pydoe, checked here) and full grids.

pydoe 1.6 ships the arrays as 0-based integer matrices under descriptive names
(``"L8(2^7)"``), but a few names do not describe their contents: ``"L27(2^1 3^12)"``
holds thirteen 3-level columns and ``"L36(3^23)"`` eleven 2-level and twelve 3-level
columns, and ``"L64(2^31)"`` is not orthogonal at all. So the level structure is read
from each array itself, every array is checked for balance and pairwise orthogonality
before it is offered, and arrays go by short names (``L8``, ``L16b`` ...) that we derive.
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np

# short name -> pydoe name. Where one run count has two arrays, the mixed or many-level
# one gets a "b" (Taguchi's own L16b is the 4^5 array).
PYDOE_NAMES = {
    "L4": "L4(2^3)", "L8": "L8(2^7)", "L9": "L9(3^4)", "L12": "L12(2^11)",
    "L16": "L16(2^15)", "L16b": "L16(4^5)", "L18": "L18(6^1 3^6)", "L25": "L25(5^6)",
    "L27": "L27(2^1 3^12)", "L32": "L32(2^31)", "L32b": "L32(2^1 4^9)", "L36": "L36(3^23)",
    "L50": "L50(2^1 5^11)", "L54": "L54(2^1 3^25)", "L64b": "L64(4^21)", "L81": "L81(3^40)",
}


def column_levels(array: np.ndarray) -> list[int]:
    """Number of distinct levels in each column."""
    return [len(np.unique(array[:, j])) for j in range(array.shape[1])]


def is_balanced(array: np.ndarray) -> bool:
    """Each level appears equally often in each column."""
    for j in range(array.shape[1]):
        _, counts = np.unique(array[:, j], return_counts=True)
        if len(set(counts.tolist())) != 1:
            return False
    return True


def is_orthogonal(array: np.ndarray) -> bool:
    """Every pair of columns shows every level pair equally often (strength 2)."""
    levels = column_levels(array)
    for i, j in itertools.combinations(range(array.shape[1]), 2):
        pairs, counts = np.unique(array[:, [i, j]], axis=0, return_counts=True)
        if len(pairs) != levels[i] * levels[j] or len(set(counts.tolist())) != 1:
            return False
    return True


@dataclass(frozen=True)
class OrthogonalArray:
    name: str
    pydoe_name: str
    array: np.ndarray          # (runs, columns), 0-based levels

    @property
    def runs(self) -> int:
        return self.array.shape[0]

    @property
    def levels(self) -> list[int]:
        return column_levels(self.array)

    def describe(self) -> str:
        """``L18: 18 runs, 6^1 3^6``."""
        groups = [(k, len(list(g))) for k, g in itertools.groupby(self.levels)]
        return f"{self.name}: {self.runs} runs, " + " ".join(f"{k}^{n}" for k, n in groups)


@functools.lru_cache(maxsize=None)
def orthogonal_arrays() -> dict[str, OrthogonalArray]:
    """The pydoe arrays that pass the balance and orthogonality checks, by short name."""
    import pydoe

    out = {}
    for short, long in PYDOE_NAMES.items():
        try:
            a = np.asarray(pydoe.get_orthogonal_array(long), dtype=int)
        except (ValueError, KeyError):
            continue
        if is_balanced(a) and is_orthogonal(a):
            out[short] = OrthogonalArray(short, long, a)
    return out


def get_array(name: str) -> OrthogonalArray:
    """An array by short name (``L8``) or pydoe name (``L8(2^7)``); ValueError if unknown."""
    arrays = orthogonal_arrays()
    if name in arrays:
        return arrays[name]
    for a in arrays.values():
        if a.pydoe_name == name:
            return a
    raise ValueError(f"unknown orthogonal array {name!r}; available: "
                     + ", ".join(a.describe() for a in arrays.values()))


def assign_columns(oa: OrthogonalArray, n_levels: list[int],
                   columns: list[int | None] | None = None) -> list[int]:
    """Columns of ``oa`` for factors with ``n_levels`` levels (in order).

    An explicit column (1-based, as in Taguchi's tables) is used as given; the others take
    the first free column with the same number of levels. Raises ValueError listing every
    factor that does not fit.
    """
    columns = list(columns or [None] * len(n_levels))
    levels, used, out, problems = oa.levels, set(), [], []
    for c in columns:
        if c is not None:
            used.add(c - 1)
    for i, (k, c) in enumerate(zip(n_levels, columns)):
        if c is not None:
            if not 1 <= c <= len(levels):
                problems.append((i, f"column {c} is out of range 1..{len(levels)}"))
            elif levels[c - 1] != k:
                problems.append((i, f"column {c} of {oa.name} has {levels[c - 1]} levels, "
                                    f"the factor has {k}"))
            out.append(c - 1)
            continue
        free = [j for j, lv in enumerate(levels) if lv == k and j not in used]
        if not free:
            have = sorted(set(levels))
            problems.append((i, f"{oa.describe()} has no free {k}-level column "
                                f"(its columns have {have} levels)"))
            out.append(-1)
            continue
        used.add(free[0])
        out.append(free[0])
    if problems:
        raise AssignmentError(problems)
    return out


class AssignmentError(ValueError):
    """Factors that do not fit an array: ``problems`` is [(factor index, message)]."""

    def __init__(self, problems: list[tuple[int, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(m for _, m in problems))


def taguchi_rows(oa: OrthogonalArray, cols: list[int]) -> list[list[int]]:
    """Level indices per row for the factors assigned to ``cols``."""
    return [[int(oa.array[r, c]) for c in cols] for r in range(oa.runs)]


def grid_rows(n_levels: list[int]) -> list[list[int]]:
    """The full factorial, first factor slowest."""
    return [list(r) for r in itertools.product(*[range(k) for k in n_levels])]
