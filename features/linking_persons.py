"""Linking the caller to a registry person: the evidence an incident gives, the registry's coded keys, the rules.

Part of features/linking.py (the entry point and the design rules). A link is made only when the
evidence leaves exactly one person; every step compares integer codes, never strings per row.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.linking_text import (
    _ANONYMOUS,
    _FEMALE_TITLES,
    _FULL_NAME,
    _MALE_TITLES,
    _TITLE,
    _arrow,
    _clean_identifier,
    _extract,
    _matches,
    _nfkc,
    _series,
)
from features.utf8_bytes import HASH_BASE, utf8_bytes

AREA_MAX_COINCIDENCES = 0.05
"""Narrowing by the station's area is allowed only when fewer than this many other persons with the
caller's key are expected to live in that area by chance: (city-wide count - 1) x the station's share
of the population. Without it the area rule's precision falls as the registry grows: a
``1505**********2829`` mask is shared by ~260 persons in a city of 2.87M."""


# --------------------------------------------------------------------------------------------------
# Persons
# --------------------------------------------------------------------------------------------------


class _Evidence:
    """What each incident says about its caller, as keys comparable with the registry's.

    Components: ``id_full``, ``phone_full``, ``idm`` / ``phm`` (masked ID / phone: visible prefix and
    suffix, with the mask pattern as the variant), ``name`` (full name ``F``, surname + sex from a
    title ``S``, or surname only ``s``) and ``area`` (the handling station).
    """

    def __init__(self, incidents: pd.DataFrame) -> None:
        index = pd.RangeIndex(len(incidents))
        self.n = len(incidents)
        self.keys: dict[str, np.ndarray] = {}
        self.variant: dict[str, np.ndarray] = {}
        blank = np.full(self.n, "", dtype=object)

        ids = _clean_identifier(incidents["caller_id_number"].reset_index(drop=True))
        full = _matches(ids, r"^\d{17}[\dX]$")
        self.keys["id_full"] = ids.where(full).to_numpy(dtype=object)
        self.variant["id_full"] = blank
        self._masked("idm", ids, r"^(?P<pre>\d*)\*+(?P<suf>[\dX]*)$", 18)

        phones = _clean_identifier(incidents["caller_phone"].reset_index(drop=True))
        phones = _series(
            pc.replace_substring_regex(_arrow(phones), pattern=r"^(?:\+86|0086|86)(1[\d*]{10})$", replacement=r"\1"),
            index,
        )
        full = _matches(phones, r"^1[3-9]\d{9}$")
        self.keys["phone_full"] = phones.where(full).to_numpy(dtype=object)
        self.variant["phone_full"] = blank
        self._masked("phm", phones, r"^(?P<pre>\d*)\*+(?P<suf>\d*)$", 11)

        names = _nfkc(incidents["caller_name"].reset_index(drop=True))
        names = names.where(~names.isin(_ANONYMOUS))
        title = _extract(names, _TITLE)
        is_title = title["surname"].notna().to_numpy()
        is_full = _matches(names, _FULL_NAME) & ~is_title
        kind = title["title"].to_numpy(dtype=object)
        sex = np.where(np.isin(kind, _FEMALE_TITLES), "F", np.where(np.isin(kind, _MALE_TITLES), "M", ""))
        surname = title["surname"].to_numpy(dtype=object)
        name_key = np.full(self.n, None, dtype=object)
        name_kind = blank.copy()
        name_key[is_full] = "F:" + names[is_full].to_numpy(dtype=object)
        name_kind[is_full] = "F"
        with_sex = is_title & (sex != "")
        name_key[with_sex] = "S:" + surname[with_sex] + "|" + sex[with_sex]
        name_kind[with_sex] = "S"
        only = is_title & (sex == "")
        name_key[only] = "s:" + surname[only]
        name_kind[only] = "s"
        self.keys["name"] = name_key
        self.variant["name"] = name_kind

        self.keys["area"] = _nfkc(incidents["station_id"].reset_index(drop=True)).to_numpy(dtype=object)
        self.variant["area"] = blank
        self.has = {comp: pd.notna(key) for comp, key in self.keys.items()}
        self._codes: dict[str, np.ndarray] = {}

    def _masked(self, comp: str, values: pd.Series, pattern: str, length: int) -> None:
        """Masked identifier: visible prefix and suffix, at least 6 characters shown, right length."""
        parts = _extract(values, pattern)
        pre = parts["pre"].fillna("").to_numpy(dtype=object)
        suf = parts["suf"].fillna("").to_numpy(dtype=object)
        shown = np.array([len(p) + len(s) for p, s in zip(pre, suf, strict=True)], dtype=np.int64)
        ok = (values.str.len().fillna(0).to_numpy() == length) & _matches(values, pattern) & (shown >= 6)
        key = np.full(self.n, None, dtype=object)
        key[ok] = pre[ok] + "|" + suf[ok]
        variant = np.full(self.n, "", dtype=object)
        variant[ok] = [f"{len(p)},{len(s)}" for p, s in zip(pre[ok], suf[ok], strict=True)]
        self.keys[comp] = key
        self.variant[comp] = variant

    def codes(self, comp: str, reg: _Persons) -> np.ndarray:
        """The registry code of each incident's key for ``comp`` (-1: missing or not in the registry)."""
        if comp not in self._codes:
            out = np.full(self.n, -1, dtype=np.int64)
            has = self.has[comp]
            for variant in np.unique(self.variant[comp][has]):
                rows = np.flatnonzero(has & (self.variant[comp] == variant))
                out[rows] = reg.encode(comp, variant, self.keys[comp][rows])
            self._codes[comp] = out
        return self._codes[comp]


class _Persons:
    """Registry persons with integer-coded keys per evidence component, computed once and cached.

    Rules compare codes, not strings: a boolean lookup over the codes pre-filters the registry to
    the persons that can match at all, so no merge touches millions of rows.
    """

    COLUMNS = ("person_id", "household_id", "id_number", "phone", "name", "sex", "station_id")
    """The normalised registry columns (:meth:`table`, :meth:`from_table`): what linking reads of a person."""

    def __init__(self, persons: pd.DataFrame, households: pd.DataFrame, addresses: pd.DataFrame) -> None:
        p = persons.reset_index(drop=True)
        self.person_id = p["person_id"]
        self.household_id = _nfkc(p["household_id"])
        self.id_number = _clean_identifier(p["id_number"])
        self.phone = _clean_identifier(p["phone"])
        self.name = _nfkc(p["name"])
        self.sex = _series(pc.utf8_upper(_arrow(_nfkc(p["sex"]))), p.index)
        self.station_id = _lookup(self.household_id, _household_station(households, addresses))
        self._finish()

    def _finish(self) -> None:
        self.station_share = self.station_id.value_counts(normalize=True)
        self._cache: dict[tuple[str, str], tuple[np.ndarray, int, np.ndarray]] = {}
        self._surnames: dict[str, Any] = {}
        """The registry's first code points and sex codes (:meth:`_surname_codes`): per registry, not per batch."""

    def table(self) -> pd.DataFrame:
        """The normalised columns, so a cache can keep them per registry (pipelines/incident_cache.py)."""
        return pd.DataFrame({c: getattr(self, c).array for c in self.COLUMNS})

    @classmethod
    def from_table(cls, table: pd.DataFrame) -> _Persons:
        """The registry from :meth:`table`'s columns, without normalising 2.87M rows again."""
        self = cls.__new__(cls)
        for c in cls.COLUMNS:
            setattr(self, c, table[c].reset_index(drop=True))
        self._finish()
        return self

    def for_batch(self) -> _Persons:
        """The same registry with empty codes: codes are valid only for the keys of one batch of incidents."""
        other = type(self).__new__(type(self))
        other.__dict__.update(self.__dict__)
        other._cache = {}
        return other

    def __len__(self) -> int:
        return len(self.person_id)

    def encode(self, comp: str, variant: str, keys: np.ndarray) -> np.ndarray:
        """Codes of incident ``keys`` in the registry's coding of ``(comp, variant)``; -1 if absent.

        The code space is the batch's distinct keys. The registry's key is built only for the
        persons that can hold one of them (:meth:`_shortlist`) and looked up among them, so a batch
        of 900 calls neither builds nor factorises 2.87M registry keys; a person holding no key of
        the batch gets -1, which matches nothing, as before. The registry's codes (and the
        positions that hold a code) are cached for the rules.
        """
        uniques = pd.unique(np.asarray(keys, dtype=object))
        if comp == "name" and variant in ("S", "s"):
            return self._store(comp, variant, uniques, keys, self._surname_codes(variant == "S", uniques))
        rows = self._shortlist(comp, variant, uniques)
        found = pc.index_in(_arrow(self._key(comp, variant, rows)), value_set=pa.array(uniques, type=pa.large_string()))
        found = found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
        if rows is None:
            person_codes = found
        else:
            person_codes = np.full(len(self), -1, dtype=np.int32)
            person_codes[rows] = found
        return self._store(comp, variant, uniques, keys, person_codes)

    def _store(
        self, comp: str, variant: str, uniques: np.ndarray, keys: np.ndarray, person_codes: np.ndarray
    ) -> np.ndarray:
        """Keep the registry's codes for the rules; the incidents' codes (-1 where no person holds the key)."""
        present = np.zeros(len(uniques) + 1, dtype=bool)
        present[person_codes[person_codes >= 0]] = True
        self._cache.setdefault((comp, variant), (person_codes, len(uniques), np.flatnonzero(person_codes >= 0)))
        incident = pd.Index(uniques).get_indexer(keys).astype(np.int64)
        incident[~present[incident]] = -1
        return incident

    def _surname_codes(self, with_sex: bool, uniques: np.ndarray) -> np.ndarray:
        """Each person's code among the batch's surname keys (``S:<surname>|<sex>`` or ``s:<surname>``; -1: none).

        Equal to looking :meth:`_key` up among ``uniques``, but compared as integers: a surname
        is one character, so a key is its code point (and the person's sex), and the registry's
        side is the first code point of every name, computed once per registry. Building the
        one-character keys of the persons sharing a batch's surnames (most of a city) took a second.
        """
        if "first" not in self._surnames:
            self._surnames["first"] = first_code_points(_arrow(self.name))
            sex = pc.dictionary_encode(_arrow(self.sex))
            self._surnames["sex"] = sex.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
            self._surnames["sexes"] = {v: i for i, v in enumerate(sex.dictionary.to_pylist())}
        first, sex, sexes = self._surnames["first"], self._surnames["sex"], self._surnames["sexes"]
        span = len(sexes) + 1
        code, wanted = [], []  # the keys a person can hold: "S:" + one character + "|" + a sex the registry has
        for i, key in enumerate(uniques):
            if (key[3:4] == "|" and key[4:] in sexes) if with_sex else len(key) == 3:
                code.append(i)
                wanted.append(ord(key[2]) * span + (sexes[key[4:]] if with_sex else 0))
        person = first * span + (sex if with_sex else 0)
        person[(first < 0) | ((sex < 0) if with_sex else False)] = -1
        found = pd.Index(np.array(wanted, dtype=np.int64)).get_indexer(person)
        return np.where(found >= 0, np.array([*code, -1], dtype=np.int32)[found], -1).astype(np.int32)

    def codes(self, comp: str, variant: str) -> tuple[np.ndarray, int, np.ndarray]:
        """Code per registry person (-1 = missing or not a key of the batch), the size of the code space and
        the positions of the persons with a code, after :meth:`encode`."""
        return self._cache[(comp, variant)]

    def _shortlist(self, comp: str, variant: str, keys: np.ndarray) -> np.ndarray | None:
        """Positions of every person whose key for ``(comp, variant)`` can be one of ``keys`` (None: all).

        A superset is enough, since :meth:`encode` compares the exact keys of the shortlist. A
        person matches a masked key ``pre|suf`` only if the identifier's first and last characters
        are those digits, hence its first and last bytes; a surname key only if the name's first
        character, one Han character of 3 bytes in UTF-8, is the surname.
        """
        if comp in ("id_full", "phone_full", "area"):
            return None  # the key is the column itself: one hash probe, nothing to build
        if comp == "name" and variant == "F":
            names = pa.array([k[2:] for k in keys], type=pa.large_string())
            return np.flatnonzero(pc.is_in(_arrow(self.name), value_set=names).to_numpy(zero_copy_only=False))
        if comp in ("idm", "phm"):
            pre, suf = (int(x) for x in variant.split(","))
            affixes = [(k[:pre].encode(), k[pre + 1 :].encode() if suf else b"") for k in keys]
            return _affix_rows(self.id_number if comp == "idm" else self.phone, affixes)
        if comp == "name":
            return _affix_rows(self.name, [(k[2:].split("|")[0].encode(), b"") for k in keys])
        raise KeyError(comp)

    def _key(self, comp: str, variant: str, rows: np.ndarray | None = None) -> pd.Series:
        """The registry's key for ``(comp, variant)``, of every person or of the positions ``rows``."""

        def col(name: str) -> pd.Series:
            values = getattr(self, name)
            return values if rows is None else values.iloc[rows]

        if comp == "id_full":
            return col("id_number")
        if comp == "phone_full":
            return col("phone")
        if comp in ("idm", "phm"):
            pre, suf = (int(x) for x in variant.split(","))
            source = col("id_number" if comp == "idm" else "phone")
            return source.str[:pre] + "|" + (source.str[-suf:] if suf else "")
        if comp == "name":
            if variant == "F":
                return "F:" + col("name")
            if variant == "S":
                return "S:" + col("name").str[0] + "|" + col("sex")
            return "s:" + col("name").str[0]
        if comp == "area":
            return col("station_id")
        raise KeyError(comp)


_HASH_MASK = (1 << 64) - 1


def first_code_points(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The code point of each string's first character (``Series.str[0]``); -1 for a missing or empty string.

    Through the distinct first characters (a few thousand in a city's 2.87M names), so no
    one-character string is built per person.
    """
    first = pc.dictionary_encode(pc.utf8_slice_codeunits(values, 0, 1))
    if isinstance(first, pa.ChunkedArray):
        first = first.combine_chunks()
    points = np.array([ord(c) if c else -1 for c in first.dictionary.to_pylist()] + [-1], dtype=np.int64)
    return points[first.indices.fill_null(-1).to_numpy(zero_copy_only=False)]


def _affix_rows(values: pd.Series, affixes: list[tuple[bytes, bytes]]) -> np.ndarray:
    """Positions of ``values`` whose UTF-8 bytes start with a prefix and end with a suffix of ``affixes``.

    All prefixes have one length and all suffixes one length. Compared through 64-bit hashes of
    those bytes read straight from the Arrow buffers (no string is built per row): first the
    shorter part over every row, then both parts over the rows left. A rare hash collision can
    only add a position: callers compare the exact keys of what this returns.
    """
    pre, suf = len(affixes[0][0]), len(affixes[0][1])
    arr, offsets, data = utf8_bytes(_arrow(values))
    if len(arr) == 0 or data.size == 0:
        return np.empty(0, dtype=np.int64)
    need = max(pre, suf)
    rows = np.flatnonzero((offsets[1:] - offsets[:-1] >= need) & arr.is_valid().to_numpy(zero_copy_only=False))
    parts = [(0, pre), (1, suf)] if 0 < pre <= suf or suf == 0 else [(1, suf), (0, pre)]
    for stage in (parts[:1], parts):
        hashed = np.zeros(len(rows), dtype=np.uint64)
        for side, length in stage:
            first = offsets[rows] if side == 0 else offsets[rows + 1] - length
            for j in range(length):
                hashed = hashed * np.uint64(HASH_BASE) + data[first + j]
        wanted = {_affix_hash([(prefix, suffix)[side] for side, _ in stage]) for prefix, suffix in affixes}
        rows = rows[pd.Index(np.array(sorted(wanted), dtype=np.uint64)).get_indexer(hashed) >= 0]
    return rows


def _affix_hash(parts: list[bytes]) -> int:
    """:func:`_affix_rows`' hash of the bytes of ``parts`` (Python ints, wrapped as numpy's uint64 wraps)."""
    h = 0
    for byte in b"".join(parts):
        h = (h * HASH_BASE + byte) & _HASH_MASK
    return h


def _household_station(households: pd.DataFrame, addresses: pd.DataFrame) -> pd.Series:
    """household_id -> station_id of its address."""
    hh = households[["household_id", "address_id"]].drop_duplicates("household_id")
    station = _lookup(hh["address_id"], addresses.drop_duplicates("address_id").set_index("address_id")["station_id"])
    return pd.Series(_nfkc(station).array, index=pd.Index(_nfkc(hh["household_id"]).array))


def _lookup(keys: pd.Series, mapping: pd.Series) -> pd.Series:
    """``keys.map(mapping)`` through a hash join (Series.map over millions of arrow strings is slow)."""
    right = pd.DataFrame({"k": mapping.index.array, "v": mapping.array})
    left = pd.DataFrame({"k": keys.array})
    return pd.Series(left.merge(right, on="k", how="left")["v"].array, index=keys.index)


def _groups(ev: _Evidence, rows: np.ndarray, comps: tuple[str, ...]) -> Iterator[np.ndarray]:
    """Rows split by the variant (mask pattern, name kind) of every component."""
    label = np.full(len(rows), "", dtype=object)
    for comp in comps:
        label = label + "|" + ev.variant[comp][rows]
    for value in np.unique(label):
        yield rows[label == value]


def _coded(
    ev: _Evidence, rows: np.ndarray, comps: tuple[str, ...], reg: _Persons
) -> Iterator[tuple[pd.DataFrame, dict[str, np.ndarray], np.ndarray]]:
    """Per variant group: the incidents' codes and the registry rows (ascending) that can match them.

    Only persons holding a code of the batch on the first component are looked at, so a small
    batch touches a few thousand registry rows, not millions.
    """
    for group in _groups(ev, rows, comps):
        left = pd.DataFrame({"row": group})
        person_codes = {}
        pidx: np.ndarray | None = None
        for comp in comps:
            inc = ev.codes(comp, reg)[group]
            codes, size, coded = reg.codes(comp, ev.variant[comp][group[0]])
            left[comp] = inc
            lookup = np.zeros(size + 1, dtype=bool)
            lookup[inc[inc >= 0]] = True  # the extra last slot stands for code -1 (missing): False
            pidx = coded if pidx is None else pidx
            pidx = pidx[lookup[codes[pidx]]]
            person_codes[comp] = codes
        assert pidx is not None
        yield left[(left[list(comps)] >= 0).all(axis=1)], person_codes, pidx


def _candidates(ev: _Evidence, rows: np.ndarray, comps: tuple[str, ...], reg: _Persons) -> pd.DataFrame:
    """(row, pidx) pairs of persons whose keys equal the incident's on every component in ``comps``."""
    frames = [pd.DataFrame({"row": np.empty(0, np.int64), "pidx": np.empty(0, np.int64)})]
    for left, person_codes, pidx in _coded(ev, rows, comps, reg):
        right = pd.DataFrame({c: person_codes[c][pidx] for c in comps})
        right["pidx"] = pidx
        frames.append(left.merge(right, on=list(comps), how="inner")[["row", "pidx"]])
    return pd.concat(frames, ignore_index=True)


def _key_counts(ev: _Evidence, rows: np.ndarray, comps: tuple[str, ...], reg: _Persons) -> np.ndarray:
    """How many registry persons share the incident's key on ``comps``, city-wide, per row of ``rows``."""
    out = pd.Series(0, index=rows, dtype=np.int64)
    for left, person_codes, pidx in _coded(ev, rows, comps, reg):
        counts = pd.DataFrame({c: person_codes[c][pidx] for c in comps}).value_counts().rename("n").reset_index()
        merged = left.merge(counts, on=list(comps), how="inner")
        out.loc[merged["row"].to_numpy()] = merged["n"].to_numpy()
    return out.to_numpy()


# Rules after the exact ones, strongest first: the components that must be present and match.
# Hard evidence that is present (a masked ID, a name) is always added to the key, so a candidate
# never contradicts what the caller said. A masked phone is soft: ~8 % of callers use a number that
# is not theirs in the registry, so it is used only where a rule names it.
_MASKED_RULES: tuple[tuple[str, ...], ...] = (
    ("idm", "phm"),
    ("idm", "name"),
    ("phm", "name"),
    ("idm", "area"),
    ("phm", "area"),
)
_HARD = ("idm", "name")
_LABEL = {"idm": "masked_id", "phm": "masked_phone", "name": "name", "area": "area"}
_ORDER = ("idm", "phm", "name", "area")


def _link_persons(ev: _Evidence, reg: _Persons) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Caller link per incident: (person position or -1, method or None, was-ambiguous flag)."""
    n = ev.n
    person = np.full(n, -1, dtype=np.int64)
    method = np.full(n, None, dtype=object)
    ambiguous = np.zeros(n, dtype=bool)
    has = ev.has

    def settle(label: str, pairs: pd.DataFrame, allowed: np.ndarray | None = None) -> None:
        counts = pairs.groupby("row")["pidx"].agg(["size", "first"])
        one = counts[counts["size"] == 1]
        ambiguous[counts.index[counts["size"] > 1].to_numpy()] = True
        if allowed is not None:  # one left in the area, but others of the key live elsewhere
            ambiguous[one.index[~allowed[one.index.to_numpy()]].to_numpy()] = True
            one = one[allowed[one.index.to_numpy()]]
        person[one.index.to_numpy()] = one["first"].to_numpy()
        method[one.index.to_numpy()] = label

    # 1. Exact ID: the strongest identifier; it wins over everything else the caller said.
    settle("id", _candidates(ev, np.flatnonzero(has["id_full"]), ("id_full",), reg))

    # An 18-digit ID that is not in the registry names someone the registry does not hold: rather
    # than link another person through the phone, such incidents stay unlinked.
    open_ = ~has["id_full"]

    # 2. Exact phone, with a masked ID and the name as filters, so that a contradiction blocks it.
    for hard in ((), ("idm",), ("name",), ("idm", "name")):
        sel = open_ & (person < 0) & has["phone_full"]
        for comp in _HARD:
            sel &= has[comp] if comp in hard else ~has[comp]
        settle("phone", _candidates(ev, np.flatnonzero(sel), ("phone_full", *hard), reg))

    # 3. Masked identifiers narrowed by other evidence: exactly one candidate, or nothing.
    tried: set[tuple[str, ...]] = set()
    for rule in _MASKED_RULES:
        for extra in ((), ("idm",), ("name",), ("idm", "name")):
            comps = tuple(c for c in _ORDER if c in set(rule) | set(extra))
            if set(extra) & set(rule) or comps in tried:
                continue  # the same key was tried under an earlier rule
            tried.add(comps)
            sel = open_ & (person < 0)
            for comp in rule:
                sel &= has[comp]
            for comp in _HARD:
                if comp not in rule:
                    sel &= has[comp] if comp in extra else ~has[comp]
            rows = np.flatnonzero(sel)
            if len(rows) == 0:
                continue
            allowed = None
            if "area" in comps:
                city_wide = _key_counts(ev, rows, tuple(c for c in comps if c != "area"), reg)
                share = pd.Series(ev.keys["area"][rows]).map(reg.station_share).fillna(1.0).to_numpy()
                allowed = np.zeros(n, dtype=bool)
                allowed[rows] = np.maximum(city_wide - 1, 0) * share <= AREA_MAX_COINCIDENCES
            settle("+".join(_LABEL[c] for c in comps), _candidates(ev, rows, comps, reg), allowed)
    return person, method, ambiguous & (person < 0)
