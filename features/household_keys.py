"""Household codes for every table's rows, from Arrow hash joins: the keys the snapshot features are indexed by.

Every feature of :mod:`features.snapshots` is indexed by a dense household code. A city's
registry holds a million households and millions of persons, and pandas' ``Series.map`` over
Arrow strings rebuilds a hash index of the registry on every call (seconds each); here the
ids are looked up with ``pyarrow.compute.index_in``, and :func:`household_keys` hashes each key
set once for all tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def code_households(ids: pd.Series | pa.Array, codes: pd.Series) -> np.ndarray:
    """Codes for household ids; -1 for ids not in the registry (their events are ignored).

    ``ids.map(codes)``, as a hash lookup in Arrow: Series.map over Arrow strings rebuilds a hash
    index of the registry on every call (seconds per call for a city).
    """
    pos = positions_in(ids, codes.index)
    return np.where(pos >= 0, codes.to_numpy()[np.maximum(pos, 0)], -1).astype(np.int64)


def arrow_strings(values: pd.Series | pd.Index | pa.Array) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pd.Series | pd.Index) and hasattr(values.array, "__arrow_array__"):
        values = pa.array(values.array)  # Arrow-backed strings: no Python object per value
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        values = pa.array(np.asarray(values, dtype=object), from_pandas=True, type=pa.large_string())
    return values if pa.types.is_large_string(values.type) else values.cast(pa.large_string())


def positions_in(values: pd.Series | pa.Array, keys: pd.Index | pd.Series) -> np.ndarray:
    """Position of each value among ``keys`` (the first, as Series.map would find it; -1: absent or missing)."""
    pos = pc.index_in(arrow_strings(values), value_set=arrow_strings(keys), skip_nulls=True)
    return pc.fill_null(pos, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def household_of(person_ids: pd.Series, persons: pd.DataFrame) -> pa.Array:
    """Each person's household id (null when the person is unknown): ``person_ids.map(persons' household)``."""
    pos = pa.array(positions_in(person_ids, persons["person_id"]))
    pos = pc.if_else(pc.less(pos, 0), pa.scalar(None, pa.int64()), pos)
    return pc.take(arrow_strings(persons["household_id"]), pos)


@dataclass(frozen=True)
class HouseholdKeys:
    """Every table's household codes, from one hash join per key set.

    A city's registry (a million households, millions of persons) is hashed
    once for all tables instead of once per table and feature group.
    """

    calls: np.ndarray
    """Household code of each call (-1: unlinked, or a household not in the registry)."""
    callers: np.ndarray
    """Household code of each call's caller (-1: no caller, or unknown)."""
    members: np.ndarray
    """Household code of each person."""
    cases: np.ndarray
    visits: np.ndarray
    relations: np.ndarray
    """Relations' ``person_id_a`` rows, then their ``person_id_b`` rows (stacked as the relation features read them)."""


def positions_in_many(parts: Sequence[pd.Series], keys: pd.Index | pd.Series) -> list[np.ndarray]:
    """:func:`positions_in` of each part, with the keys hashed once."""
    strings = [arrow_strings(part) for part in parts]
    pos = positions_in(pa.concat_arrays(strings), keys) if strings else np.empty(0, np.int64)
    return np.split(pos, np.cumsum([len(s) for s in strings])[:-1])


def household_keys(calls: pd.DataFrame, tables: dict[str, pd.DataFrame], codes: pd.Series) -> HouseholdKeys:
    """The household code of every call, caller, person, case, visit and relation end (-1: not in the registry)."""
    persons, relations = tables["persons"], tables["relations"]
    code_of = codes.to_numpy()

    def coded(pos: np.ndarray, of: np.ndarray) -> np.ndarray:
        return np.where(pos >= 0, of[np.maximum(pos, 0)], -1).astype(np.int64)

    by_household = positions_in_many(
        [calls["household_id"], tables["visits"]["household_id"], persons["household_id"]], codes.index
    )
    call_codes, visits, members = (coded(pos, code_of) for pos in by_household)
    by_person = positions_in_many(
        [calls["person_id"], tables["cases"]["person_id"], relations["person_id_a"], relations["person_id_b"]],
        persons["person_id"],
    )
    callers, cases, side_a, side_b = (coded(pos, members) for pos in by_person)
    return HouseholdKeys(call_codes, callers, members, cases, visits, np.concatenate([side_a, side_b]))
