"""The feature columns of a household frame as the float32 matrix a model reads.

``frame[names].to_numpy(np.float32)`` gives the values, but for a city's 1.15M households
it costs 2.5 s: selecting the columns copies every block of the frame, and
interleaving the blocks copies them again. Here each column is cast once, straight into
its column of a C-contiguous result (the layout onnxruntime takes without another copy).
The values are the same bit for bit: pandas' interleave also assigns each numpy block
into a float32 result, which is the same numpy cast (tests/test_matrix.py).

:func:`float32_blocks` gives the same matrix a block of rows at a time, in one reused buffer:
the daily ranking scores a city's households block by block, so the whole matrix (330 MB for
1.15M households) is never allocated. On a VM whose fresh memory costs a host fault per page,
that allocation alone took ~2 s (docs/decisions.md, issue 14's sixth round).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

BLOCK_ROWS = 131_072
"""Rows per block of :func:`float32_blocks`: 38 MB at 72 features, eight of the scorer's batches."""


def float32_matrix(frame: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    """``frame[names].to_numpy(np.float32)``, built one column at a time (C-contiguous)."""
    names = list(names)
    arrays = _numpy_columns(frame, names)
    if arrays is None:
        return np.ascontiguousarray(frame[names].to_numpy(np.float32))
    out = np.empty((len(frame), len(names)), dtype=np.float32)
    for j, values in enumerate(arrays):
        out[:, j] = values
    return out


def float32_blocks(
    frame: pd.DataFrame, names: Sequence[str], rows: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, float32_matrix(frame.iloc[start:start + rows], names))`` for each block of rows, in order.

    Each block is a view of one buffer that the next block overwrites: use it before asking for
    the next one. The values are :func:`float32_matrix`'s, block for block (tests/test_matrix.py).
    ``rows`` defaults to :data:`BLOCK_ROWS`.
    """
    names = list(names)
    rows = BLOCK_ROWS if rows is None else rows
    if rows < 1:
        raise ValueError("rows must be >= 1")
    arrays = _numpy_columns(frame, names)
    if arrays is None:
        for start in range(0, len(frame), rows):
            yield start, float32_matrix(frame.iloc[start : start + rows], names)
        return
    buffer = np.empty((min(rows, len(frame)), len(names)), dtype=np.float32)
    for start in range(0, len(frame), rows):
        block = buffer[: min(rows, len(frame) - start)]
        for j, values in enumerate(arrays):
            block[:, j] = values[start : start + len(block)]
        yield start, block


def _numpy_columns(frame: pd.DataFrame, names: list[str]) -> list[np.ndarray] | None:
    """The columns as numpy arrays (no copy), or None when one has an extension dtype.

    Extension dtypes (nullable integers, Arrow) have their own NA rules: those frames take pandas' path.
    """
    columns = [frame[name] for name in names]
    if not all(isinstance(column.dtype, np.dtype) and column.dtype.kind in "biuf" for column in columns):
        return None
    return [column.to_numpy(copy=False) for column in columns]
