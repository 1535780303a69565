"""features.distinct: np.unique's answer by sorting, for every dtype the daily ranking hands it."""

from __future__ import annotations

import numpy as np
import pytest

from features.distinct import all_distinct, distinct_sorted


@pytest.mark.parametrize(
    "values",
    [
        np.array([5, 3, 5, -1, 3, 9, -1], dtype=np.int64),
        np.array([2**64 - 1, 0, 2**63, 2**64 - 1], dtype=np.uint64),
        np.array([True, False, True]),
        np.array(["2024-01-02", "2024-01-01", "2024-01-02"], dtype="datetime64[s]"),
        np.array([1.5, np.nan, -0.0, 0.0, np.nan, 1.5]),
        np.array(["b", "a", "b"], dtype=object),
        np.array([], dtype=np.int64),
        np.array([[3, 1], [1, 2]], dtype=np.int32),
    ],
)
def test_distinct_sorted_is_numpy_unique(values: np.ndarray) -> None:
    got, want = distinct_sorted(values), np.unique(values)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_all_distinct_on_random_hashes() -> None:
    rng = np.random.default_rng(7)
    hashes = rng.integers(0, 2**63, 50_000, dtype=np.int64).astype(np.uint64)
    assert all_distinct(hashes)
    hashes[40_000] = hashes[3]
    assert not all_distinct(hashes)
    assert all_distinct(np.array([], dtype=np.uint64))


def test_does_not_sort_its_input() -> None:
    values = np.array([3, 1, 2], dtype=np.int64)
    distinct_sorted(values)
    np.testing.assert_array_equal(values, [3, 1, 2])
