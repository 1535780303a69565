"""features.household_keys.KeyIndex: a kept index of a key column finds exactly what positions_in finds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import features.household_keys as household_keys
from features.household_keys import KeyIndex, positions_in

STR = pd.StringDtype("pyarrow", na_value=np.nan)
KEYS = pd.Series(["H001", "H002", "", "张三", "H001", None, "H0020", "H02", "𠀀x"], dtype=STR)
VALUES = pd.Series(["H001", None, "", "张三", "H0020", "nope", "H02", "H002", "𠀀x", "H00"], dtype=STR)


def test_same_positions_as_positions_in_with_repeats_gaps_and_wide_characters() -> None:
    index = KeyIndex.build(KEYS)
    got = index.positions(VALUES, KEYS)
    np.testing.assert_array_equal(got, positions_in(VALUES, KEYS))
    assert got.tolist() == [0, -1, 2, 3, 6, -1, 7, 1, 8, -1]  # the first row of a repeated key; gaps match nothing


def test_every_shared_hash_is_caught_and_looked_up_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a hash that only sees the length, most ids share one: the answer must not change."""

    def by_length(values: pa.Array) -> np.ndarray:
        return pc.utf8_length(values).fill_null(0).to_numpy().astype(np.uint64)

    monkeypatch.setattr(household_keys, "utf8_hashes", by_length)
    index = KeyIndex.build(KEYS)
    assert len(np.unique(index.hashes)) < len(KEYS) - 3  # most keys share a hash
    np.testing.assert_array_equal(index.positions(VALUES, KEYS), positions_in(VALUES, KEYS))


def test_random_ids_against_positions_in() -> None:
    rng = np.random.default_rng(11)
    keys = pd.Series([f"P{n:07d}" for n in rng.integers(0, 40_000, 30_000)], dtype=STR)
    values = pd.Series([f"P{n:07d}" for n in rng.integers(0, 40_000, 20_000)], dtype=STR)
    np.testing.assert_array_equal(KeyIndex.build(keys).positions(values, keys), positions_in(values, keys))


def test_empty_sides() -> None:
    empty = pd.Series([], dtype=STR)
    assert KeyIndex.build(empty).positions(VALUES, empty).tolist() == [-1] * len(VALUES)
    assert KeyIndex.build(KEYS).positions(empty, KEYS).tolist() == []
