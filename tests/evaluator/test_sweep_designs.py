"""Orthogonal arrays: every array offered is checked here for balance and strength-2
orthogonality by counting, independently of evaluator.sweeps.designs' own checks."""
from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from evaluator.sweeps import designs


def _balanced(a: np.ndarray) -> bool:
    return all(len(set(Counter(a[:, j].tolist()).values())) == 1 for j in range(a.shape[1]))


def _orthogonal(a: np.ndarray) -> bool:
    for i, j in itertools.combinations(range(a.shape[1]), 2):
        ki, kj = len(set(a[:, i].tolist())), len(set(a[:, j].tolist()))
        c = Counter(zip(a[:, i].tolist(), a[:, j].tolist()))
        if len(c) != ki * kj or len(set(c.values())) != 1:
            return False
    return True


@pytest.mark.parametrize("name", sorted(designs.orthogonal_arrays()))
def test_every_offered_array_is_balanced_and_orthogonal(name):
    a = designs.get_array(name).array
    assert _balanced(a) and _orthogonal(a)
    assert a.min() == 0  # 0-based levels


def test_the_arrays_the_examples_use_are_offered_with_their_textbook_shape():
    got = {n: (designs.get_array(n).runs, designs.get_array(n).levels)
           for n in ("L4", "L8", "L9", "L12", "L16", "L18", "L27")}
    assert got["L4"] == (4, [2] * 3) and got["L8"] == (8, [2] * 7)
    assert got["L9"] == (9, [3] * 4) and got["L12"] == (12, [2] * 11)
    assert got["L16"] == (16, [2] * 15) and got["L18"] == (18, [6] + [3] * 6)
    # pydoe labels this one "L27(2^1 3^12)", but it holds thirteen 3-level columns
    assert got["L27"] == (27, [3] * 13)
    assert designs.get_array("L8(2^7)").name == "L8"


def test_a_non_orthogonal_array_is_refused():
    import pydoe

    bad = np.asarray(pydoe.get_orthogonal_array("L64(2^31)"))
    assert not _orthogonal(bad)  # so it must not be offered
    assert "L64" not in designs.orthogonal_arrays()
    assert not designs.is_orthogonal(bad)
    assert not designs.is_balanced(np.array([[0], [0], [1]]))


def test_columns_are_assigned_by_level_count_and_misfits_are_reported():
    l18 = designs.get_array("L18")
    assert designs.assign_columns(l18, [3, 6, 3]) == [1, 0, 2]
    assert designs.assign_columns(l18, [3, 3], [None, 2]) == [2, 1]
    with pytest.raises(designs.AssignmentError) as e:
        designs.assign_columns(designs.get_array("L8"), [2, 3, 2])
    assert [i for i, _ in e.value.problems] == [1]
    assert "no free 3-level column" in e.value.problems[0][1]
    with pytest.raises(designs.AssignmentError, match="has 6 levels"):
        designs.assign_columns(l18, [3], [1])


def test_taguchi_rows_follow_the_array_and_grid_is_the_full_factorial():
    l4 = designs.get_array("L4")
    rows = designs.taguchi_rows(l4, [2, 0])
    assert rows == [[int(l4.array[r, 2]), int(l4.array[r, 0])] for r in range(4)]
    g = designs.grid_rows([2, 3])
    assert len(g) == 6 and len({tuple(r) for r in g}) == 6 and g[0] == [0, 0]


def test_unknown_array_lists_the_available_ones():
    with pytest.raises(ValueError, match="L8: 8 runs, 2\\^7"):
        designs.get_array("L7")
