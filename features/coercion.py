"""Raw cells into the contract's types, and the quick proofs that a typed table needs no row-by-row check.

:func:`features.loaders.validate_frame` casts every column with :func:`coerce` (a failed cast
quarantines the row) and then asks pandera about the rest, unless :func:`surely_unique` and
:func:`surely_valid` prove, in a fraction of the time, that no row can fail: for a city's 2.87M
persons pandera's per-check reports cost seconds every day, for nothing. Every proof answers
False when unsure, and pandera then names each failing row and check exactly as before.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow
import pyarrow.compute as pc

from features.schema import DTYPES, Col, Table
from features.utf8_bytes import utf8_bytes, utf8_hashes

_TRUE = {"true", "t", "1", "yes", "y", "是"}
_FALSE = {"false", "f", "0", "no", "n", "否"}
_CN_DATE = re.compile(r"(\d{4})年(\d{1,2})月(\d{1,2})日")
_CN_MARKS = "[年月日时點点分秒]"
_CN_TIME = re.compile(r"(\d{1,2})[时點点:](\d{1,2})(?:[分:](\d{1,2})秒?)?分?")


def _parse_cn_datetime(text: pd.Series) -> pd.Series:
    """``2024年4月11日 21时26分17秒`` -> ``2024-4-11 21:26:17``; other text untouched.

    Only values with a Chinese date or time character are rewritten: the
    rewrite runs in Python per value, and on ISO text it took half the load
    time of a 300,000-row table for nothing.
    """
    chinese = text.str.contains(_CN_MARKS, regex=True, na=False).to_numpy(bool)
    if not chinese.any():
        return text
    part = text[chinese].str.replace(_CN_DATE, r"\1-\2-\3", regex=True)
    part = part.str.replace(_CN_TIME, lambda m: f"{m[1]}:{m[2]}:{m[3] or '00'}", regex=True)
    out = text.copy()
    out[chinese] = part
    return out


def coerce(values: pd.Series, col: Col) -> tuple[pd.Series, pd.Series]:
    """Cast a column to its contract type; returns the values and a mask of failed casts."""
    if col.kind == "str":
        if isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow":
            return _strip_arrow(values), pd.Series(False, index=values.index)
        if values.dtype == object or pd.api.types.is_string_dtype(values):
            out = values.astype("str").where(values.notna(), None)
            out = out.str.strip()
            out = out.where(out != "", None)
        else:
            out = values.astype("str").where(values.notna(), None)
        return out.astype("str").where(out.notna(), None), pd.Series(False, index=values.index)

    present = values.notna()
    if values.dtype == object or pd.api.types.is_string_dtype(values):
        stripped = values.astype("str").str.strip()
        present = values.notna() & (stripped != "")
    else:
        stripped = values

    if col.kind in ("int", "float"):
        numbers = pd.to_numeric(stripped.where(present), errors="coerce")
        failed = present & numbers.isna()
        if col.kind == "int":
            fractional = numbers.notna() & (numbers != numbers.round())
            failed |= fractional
            numbers = numbers.where(~fractional).astype("Int64")
        return numbers, failed
    if col.kind == "bool":
        if pd.api.types.is_bool_dtype(values):
            return values.astype(bool), pd.Series(False, index=values.index)
        lowered = stripped.astype("str").str.lower()
        out = pd.Series(pd.NA, index=values.index, dtype="boolean")
        out[lowered.isin(_TRUE)] = True
        out[lowered.isin(_FALSE)] = False
        failed = present & out.isna()
        return out, failed
    # datetime
    if pd.api.types.is_datetime64_any_dtype(values):
        return _in_nanosecond_range(values, present)
    parsed = pd.to_datetime(
        _parse_cn_datetime(stripped.astype("str").where(present, None)), errors="coerce", format="mixed"
    )
    return _in_nanosecond_range(parsed, present)


def _strip_arrow(values: pd.Series) -> pd.Series:
    """Arrow text stripped of surrounding whitespace, empty text missing: the object path below in two kernels.

    Parquet exports arrive as Arrow strings; the pandas path (astype, where, strip, where, astype)
    copies 2.87M names five times for the same values.
    """
    arr = pyarrow.chunked_array(pyarrow.array(values, from_pandas=True))
    trimmed = pc.utf8_trim_whitespace(arr)
    kept = pc.if_else(pc.equal(trimmed, ""), pyarrow.scalar(None, trimmed.type), trimmed)
    return pd.Series(pd.array(kept, dtype="str"), index=values.index)


def _in_nanosecond_range(values: pd.Series, present: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Datetimes as ``datetime64[ns]``; a value it cannot hold (9999-12-31, an export's "unknown") fails the row.

    Parquet keeps microseconds and parsing may give seconds, so 9999-12-31 or
    1600-01-01 arrive intact; casting them to nanoseconds would raise
    ``OutOfBoundsDatetime`` and stop the whole load for one cell.
    """
    values = pd.Series(values, index=present.index)
    if values.dtype == object:  # mixed parsing can leave Python datetimes; unparseable is NaT already
        values = pd.to_datetime(values, errors="coerce")
    outside = values.notna() & ((values < pd.Timestamp.min) | (values > pd.Timestamp.max))
    kept = values.where(~outside)
    return kept.astype("datetime64[ns]"), (present & kept.isna())


def surely_unique(typed: pd.DataFrame, key: tuple[str, ...]) -> bool:
    """True when a one-column text key holds no missing and no repeated value; False when unsure.

    Equal texts have equal hashes, so 64-bit hashes of the UTF-8 bytes that are all different
    prove the keys are (a pandas or Arrow hash table over 2.87M strings took 4-7 s on a loaded
    machine; this takes a fraction of a second). A repeated hash, a missing key, or any other
    kind of key answers False, and ``duplicated`` then finds the rows as before.
    """
    if len(key) != 1 or str(typed[key[0]].dtype) != "str":
        return False
    arr, offsets, _ = utf8_bytes(pyarrow.array(typed[key[0]], from_pandas=True))
    if arr.null_count or len(arr) < 2:
        return arr.null_count == 0
    if np.diff(offsets).max() > 64:
        return False
    hashed = utf8_hashes(arr)
    hashed.sort()  # sorted, a repeat sits next to itself (a hash table over these values was slower)
    return not (hashed[1:] == hashed[:-1]).any()


def surely_valid(frame: pd.DataFrame, table: Table) -> bool:
    """True only when every row surely meets the pandera schema, so it need not run; False when unsure.

    The same checks the schema makes (dtype, missing values, uniqueness, allowed values,
    pattern through the same ``str.match``, bounds; missing values pass the checks as in pandera),
    without pandera's per-check reports. Any failure, or a repeated key of several columns (cases:
    case and person), answers False: pandera then runs and names every failing row and check
    exactly as before. A day's load has no pandera run at all, which saves the second its
    backends take to load.
    """
    if len(table.key) > 1 and frame.duplicated(list(table.key)).any():
        return False
    for name, col in table.columns.items():
        values = frame[name]
        if str(values.dtype) != DTYPES[col.kind]:
            return False
        missing = values.isna().to_numpy(bool)
        if not col.nullable and missing.any():
            return False
        if col.unique and not (surely_unique(frame, (name,)) if col.kind == "str" else values.is_unique):
            return False
        passes: list[pd.Series] = []
        if col.allowed is not None:
            passes.append(values.isin(list(col.allowed)))
        if col.pattern is not None:
            passes.append(values.str.match(col.pattern, na=False))
        if col.ge is not None:
            passes.append(values >= col.ge)
        if col.le is not None:
            passes.append(values <= col.le)
        for ok in passes:
            if not (np.asarray(ok.fillna(False).to_numpy(bool)) | missing).all():
                return False
    return True
