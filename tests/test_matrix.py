"""The feature matrix a model reads: the same float32 values as pandas' own conversion, faster."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.matrix import float32_matrix


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
