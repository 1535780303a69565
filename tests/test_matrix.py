"""The feature matrix a model reads: the same float32 values as pandas' own conversion, faster."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.matrix import float32_blocks, float32_matrix


def test_mixed_numpy_columns_give_pandas_values_bit_for_bit() -> None:
    rng = np.random.default_rng(7)
    n = 1_000
    frame = pd.DataFrame(
        {
            "count": rng.integers(0, 50, n),
            "big": rng.integers(2**24, 2**40, n),  # not exact in float32: must round as pandas rounds
            "ratio": rng.random(n),
            "flag": rng.random(n) < 0.3,
            "small": rng.random(n).astype(np.float32),
            "gap": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)),
            "text": ["x"] * n,
        }
    )
    names = ["ratio", "count", "big", "flag", "gap", "small"]
    got = float32_matrix(frame, names)
    want = frame[names].to_numpy(np.float32)
    assert got.dtype == np.float32 and got.flags.c_contiguous and got.shape == (n, len(names))
    assert got.tobytes() == np.ascontiguousarray(want).tobytes()


def test_nullable_columns_take_pandas_path() -> None:
    frame = pd.DataFrame({"a": pd.array([1, None, 3], dtype="Float64"), "b": [1.0, 2.0, 3.0]})
    got = float32_matrix(frame, ["b", "a"])
    np.testing.assert_array_equal(got, frame[["b", "a"]].to_numpy(np.float32))
    assert np.isnan(got[1, 1])


@pytest.mark.parametrize("rows", [1, 7, 250, 1_000, 5_000])
def test_blocks_are_the_matrix_block_by_block(rows: int) -> None:
    """Every block equals the whole matrix's rows, including a short last block; copies kept before the next."""
    rng = np.random.default_rng(3)
    n = 1_000
    frame = pd.DataFrame({"a": rng.random(n), "b": rng.integers(0, 9, n), "c": rng.random(n) < 0.5, "t": ["x"] * n})
    whole = float32_matrix(frame, ["c", "a", "b"])
    starts, parts = [], []
    for start, block in float32_blocks(frame, ["c", "a", "b"], rows):
        assert block.flags.c_contiguous and block.dtype == np.float32
        starts.append(start)
        parts.append(block.copy())
    assert starts == list(range(0, n, rows))
    assert np.concatenate(parts).tobytes() == whole.tobytes()


def test_blocks_of_nullable_columns_and_of_nothing() -> None:
    frame = pd.DataFrame({"a": pd.array([1, None, 3], dtype="Float64"), "b": [1.0, 2.0, 3.0]})
    parts = [block.copy() for _, block in float32_blocks(frame, ["b", "a"], 2)]
    np.testing.assert_array_equal(np.concatenate(parts), float32_matrix(frame, ["b", "a"]))
    assert list(float32_blocks(frame.iloc[:0], ["b"])) == []
    with pytest.raises(ValueError, match="rows"):
        next(float32_blocks(frame, ["b"], 0))
