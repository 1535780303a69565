"""Columns of a million households built as whole arrays: the ranking's text, list and date columns, and sorts.

The daily ranking (pipelines/ranking.py) builds tables with one row per household of a city.
Done cell by cell in Python (one ``Timedelta`` per household, one empty list per household,
pandas' ``sort_values`` over Arrow strings) those tables took most of a day's job
once the incident cache had removed the re-reading of old calls (docs/province.md). Each
function here gives exactly what the cell-by-cell code gave (the published files are
byte-identical; tests/test_incident_cache.py and tests/test_ranking.py compare them).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_NO_ITEMS: list[str] = []
"""The one empty list every household without a warning shares in the ranking's list columns (never mutated)."""


def sparse_lists(n: int, rows: np.ndarray, values: list[list[str]]) -> np.ndarray:
    """A list column of ``n`` rows: ``values`` at ``rows``, the shared empty list elsewhere.

    A city has about a million households and a few thousand warnings: a fresh empty list per
    household made four million objects to allocate, for the cyclic garbage collector to scan,
    and for the outputs to convert one by one. The cells are read, never appended to.
    """
    column = np.empty(n, dtype=object)
    column.fill(_NO_ITEMS)
    for row, value in zip(rows, values, strict=True):
        column[row] = value
    return column


def text_column(values: np.ndarray) -> Any:
    """An object array of ``str`` and None as the ``str`` column pandas would infer from it, built in Arrow.

    Levels, scenarios and dates repeat a handful of values over a million households: encoding
    the distinct values once is a third of the time pandas takes to check and convert each
    cell. Anything else (numbers, or no text at all) is returned as it is, for pandas to infer.
    """
    codes, uniques = pd.factorize(np.asarray(values, dtype=object))  # None and NaN are -1
    if len(uniques) == 0 or not all(type(u) is str for u in uniques):
        return values
    dictionary = pa.array(np.asarray(uniques, dtype=object), type=pa.large_string())
    encoded = pa.DictionaryArray.from_arrays(pa.array(codes, mask=codes < 0), dictionary)
    return pd.array(encoded.cast(pa.large_string()), dtype="str")


def numpy_text(values: pd.Series) -> Any:
    """``values.to_numpy().astype(str)`` (a gap reads "nan"), kept in Arrow when the column is already text."""
    if isinstance(values.dtype, pd.StringDtype) and values.dtype.na_value is np.nan:
        return values.fillna("nan").array
    return values.to_numpy().astype(str)


def days_before(day: pd.Timestamp, days: np.ndarray) -> np.ndarray:
    """``f"{day - pd.Timedelta(days=d):%Y-%m-%d}"`` for each ``d`` (None from 730 days on), as whole arrays.

    The days since a household's last call are seconds over 86,400, so a city has hundreds of
    thousands of distinct values: one Timedelta and one strftime each took 13 s. The nanoseconds
    are Timedelta's own, ``int(d * 24 * 3600 * 10**9)``; values that are not finite take the
    per-value way.
    """
    out = np.full(len(days), None, dtype=object)
    plain = np.isfinite(days) & (days >= 0) & (days < 730)
    ns = np.trunc(((days[plain] * 24) * 3600) * 1_000_000_000).astype(np.int64).astype("timedelta64[ns]")
    moments = np.datetime64(pd.Timestamp(day).to_datetime64(), "ns") - ns
    out[plain] = np.datetime_as_string(moments.astype("datetime64[D]"), unit="D")
    for i in np.flatnonzero(~plain & ~(days >= 730)):
        out[i] = f"{(day - pd.Timedelta(days=float(days[i]))):%Y-%m-%d}"
    return out


def stable_order(frame: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """Row positions of ``frame.sort_values(keys, kind="stable")``, sorted by Arrow.

    Gaps last, text by code point (UTF-8 byte order is code point order), ties in their order.
    pandas factorises each text column first: seconds for a city's million visits or calls.
    """
    try:
        columns = {}
        for i, key in enumerate(keys):
            values = frame[key]
            native = values.array if isinstance(values.dtype, pd.api.extensions.ExtensionDtype) else values.to_numpy()
            columns[f"k{i}"] = pa.array(native, from_pandas=True)  # NaN and NaT are gaps, as pandas sorts them
        table = pa.table(columns)
    except (pa.ArrowException, TypeError, ValueError):  # mixed types in a column: pandas' own comparison
        return frame.reset_index(drop=True).sort_values(keys, kind="stable").index.to_numpy()
    return pc.sort_indices(table, sort_keys=[(name, "ascending") for name in table.column_names]).to_numpy()
