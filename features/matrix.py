"""The feature columns of a household frame as the float32 matrix a model reads.

``frame[names].to_numpy(np.float32)`` gives the values, but for a city's 1.15M households
it costs 2.5 s: selecting the columns copies every block of the frame, and
interleaving the blocks copies them again. Here each column is cast once, straight into
its column of a C-contiguous result (the layout onnxruntime takes without another copy).
The values are the same bit for bit: pandas' interleave also assigns each numpy block
into a float32 result, which is the same numpy cast (tests/test_matrix.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def float32_matrix(frame: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    """``frame[names].to_numpy(np.float32)``, built one column at a time (C-contiguous)."""
    names = list(names)
    columns = [frame[name] for name in names]
    if not all(isinstance(column.dtype, np.dtype) and column.dtype.kind in "biuf" for column in columns):
        # extension dtypes (nullable integers, Arrow) have their own NA rules: pandas' path
        return np.ascontiguousarray(frame[names].to_numpy(np.float32))
    out = np.empty((len(frame), len(names)), dtype=np.float32)
    for j, column in enumerate(columns):
        out[:, j] = column.to_numpy(copy=False)
    return out
