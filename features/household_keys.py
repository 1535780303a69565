"""Household codes for every table's rows, from Arrow hash joins: the keys the snapshot features are indexed by.

Every feature of :mod:`features.snapshots` is indexed by a dense household code. A city's
registry holds a million households and millions of persons, and pandas' ``Series.map`` over
Arrow strings rebuilds a hash index of the registry on every call (seconds each); here the
ids are looked up with ``pyarrow.compute.index_in``, and :func:`household_keys` hashes each key
set once for all tables. What depends on the registry alone (:class:`RegistryKeys`, with a
:class:`KeyIndex` of the households' and persons' ids) the daily job keeps between runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.utf8_bytes import utf8_hashes


def code_households(ids: pd.Series | pa.Array, codes: pd.Series) -> np.ndarray:
    """Codes for household ids; -1 for ids not in the registry (their events are ignored).

    ``ids.map(codes)``, as a hash lookup in Arrow: Series.map over Arrow strings rebuilds a hash
    index of the registry on every call (seconds per call for a city).
    """
    pos = positions_in(ids, codes.index)
    return np.where(pos >= 0, codes.to_numpy()[np.maximum(pos, 0)], -1).astype(np.int64)


def arrow_strings(values: pd.Series | pd.Index | pa.Array | np.ndarray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pd.Series | pd.Index) and hasattr(values.array, "__arrow_array__"):
        values = pa.array(values.array)  # Arrow-backed strings: no Python object per value
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        values = pa.array(np.asarray(values, dtype=object), from_pandas=True, type=pa.large_string())
    return values if pa.types.is_large_string(values.type) else values.cast(pa.large_string())


def positions_in(values: pd.Series | pa.Array, keys: pd.Index | pd.Series | np.ndarray) -> np.ndarray:
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


def positions_in_many(
    parts: Sequence[pd.Series], keys: pd.Index | pd.Series, index: KeyIndex | None = None
) -> list[np.ndarray]:
    """:func:`positions_in` of each part, with the keys hashed once (or searched in their ``index``)."""
    strings = [arrow_strings(part) for part in parts]
    if not strings:
        return []
    values = pa.concat_arrays(strings)
    pos = positions_in(values, keys) if index is None else index.positions(values, keys)
    return np.split(pos, np.cumsum([len(s) for s in strings])[:-1])


@dataclass(frozen=True)
class KeyIndex:
    """A registry key column's string hashes, sorted, with their rows: ids looked up without building a hash table.

    :func:`positions_in` builds Arrow's hash table of its keys on every call: for a city's 2.87M
    person ids and 1.15M household ids that was ~1.5 s of every morning's features. These arrays
    depend on the key column alone, so the daily job keeps them with the registry's other keys
    (pipelines/household_keys_cache.py) and a morning only hashes the ids it looks up and
    searches them here. Every match is compared as a string, and a row whose hash met another
    string's (about once in 2**64) is looked up exactly, so :meth:`positions` is
    :func:`positions_in` to the row.
    """

    hashes: np.ndarray
    """``features.utf8_bytes.utf8_hashes`` of the keys, ascending."""
    rows: np.ndarray
    """The key row of each hash; ascending among equal hashes, so a repeated key's first row comes first."""

    @classmethod
    def build(cls, keys: pd.Series | pd.Index | pa.Array) -> KeyIndex:
        hashed = utf8_hashes(arrow_strings(keys))
        order = np.argsort(hashed, kind="stable")
        return cls(hashed[order], order.astype(np.int64))

    def positions(self, values: pd.Series | pa.Array, keys: pd.Series | pd.Index | pa.Array) -> np.ndarray:
        """:func:`positions_in` ``(values, keys)``, where ``keys`` is the column this index was built from."""
        values, keys = arrow_strings(values), arrow_strings(keys)
        pos = np.full(len(values), -1, dtype=np.int64)
        if len(self.hashes) == 0 or len(values) == 0:
            return pos
        probe = utf8_hashes(values)
        # searched in ascending order: random probes into millions of hashes miss the CPU's caches (2-3x slower)
        order = np.argsort(probe)
        at = np.empty(len(probe), dtype=np.int64)
        at[order] = np.minimum(np.searchsorted(self.hashes, probe[order]), len(self.hashes) - 1)
        valid = values.is_valid().to_numpy(zero_copy_only=False)
        found = np.flatnonzero(valid & (self.hashes[at] == probe))
        pos[found] = self.rows[at[found]]
        same = pc.fill_null(pc.equal(values.take(found), keys.take(pos[found])), False)
        wrong = found[~same.to_numpy(zero_copy_only=False)]
        if len(wrong):  # a hash another string has too: these rows looked up exactly
            pos[wrong] = positions_in(values.take(wrong), keys)
        return pos


@dataclass(frozen=True)
class RegistryKeys:
    """What :func:`household_keys` and the snapshots' place columns read of the registry alone.

    A daily export repeats the registry unchanged on most days, and finding these for a city
    (2.87M persons' household ids and 1.15M households' address ids hashed against the registry,
    and the two :class:`KeyIndex`) is ~2 s of its daily ranking; the daily job keeps them per
    registry (pipelines/household_keys_cache.py).
    """

    members: np.ndarray
    """Household code of each person (-1: a household not in the registry)."""
    addresses: np.ndarray
    """Each household's row in the addresses table (-1: none; the first when an address id repeats)."""
    addresses_unique: bool
    """Whether the addresses table's ids are distinct (else the place columns go the way of pandas' reindex)."""
    household_index: KeyIndex | None = None
    """The households' ids indexed (None: each lookup hashes them, as one run does)."""
    person_index: KeyIndex | None = None
    """The persons' ids indexed (None: each lookup hashes them)."""


def registry_keys(tables: dict[str, pd.DataFrame], codes: pd.Series, indexed: bool = False) -> RegistryKeys:
    """The :class:`RegistryKeys` of the registry tables ``persons``, ``households`` and ``addresses``.

    ``indexed``: with the :class:`KeyIndex` of the households' and persons' ids, worth building
    only when they are kept for later runs (building one costs more than one lookup).
    """
    members = _coded(positions_in(tables["persons"]["household_id"], codes.index), codes.to_numpy())
    addresses = tables["addresses"]["address_id"]
    rows = positions_in(tables["households"]["address_id"], addresses)
    ids = (tables["households"]["household_id"], tables["persons"]["person_id"])
    indexes = [KeyIndex.build(keys) for keys in ids] if indexed else [None, None]
    return RegistryKeys(members, rows, bool(addresses.is_unique), *indexes)


def _coded(pos: np.ndarray, of: np.ndarray) -> np.ndarray:
    """``of`` at the positions ``pos`` (-1 where a position is -1)."""
    return np.where(pos >= 0, of[np.maximum(pos, 0)], -1).astype(np.int64)


def household_keys(
    calls: pd.DataFrame, tables: dict[str, pd.DataFrame], codes: pd.Series, registry: RegistryKeys | None = None
) -> HouseholdKeys:
    """The household code of every call, caller, person, case, visit and relation end (-1: not in the registry).

    ``registry``: :func:`registry_keys` of these tables, when the caller kept it.
    """
    persons, relations = tables["persons"], tables["relations"]
    registry = registry or registry_keys(tables, codes)
    members = registry.members
    by_household = positions_in_many(  # the households' ids in their table's order: the codes' index
        [calls["household_id"], tables["visits"]["household_id"]],
        tables["households"]["household_id"],
        registry.household_index,
    )
    call_codes, visits = (_coded(pos, codes.to_numpy()) for pos in by_household)
    by_person = positions_in_many(
        [calls["person_id"], tables["cases"]["person_id"], relations["person_id_a"], relations["person_id_b"]],
        persons["person_id"],
        registry.person_index,
    )
    callers, cases, side_a, side_b = (_coded(pos, members) for pos in by_person)
    return HouseholdKeys(call_codes, callers, members, cases, visits, np.concatenate([side_a, side_b]))
