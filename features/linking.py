"""Link 110 incidents to the registry: the caller (a person) and the place (a household).

An incident carries what the caller said, not keys: a name or a title (张女士), a
phone and an ID number that are whole, masked (``135****9668``,
``1505**********2829``) or missing, and a location as spoken ("4-1-302",
"XX小区门口", a misspelt compound, a street corner). Everything downstream (the
household risk ranking, repeat-call counts, escalation labels) needs registry
keys, so this module turns that evidence into ``person_id`` / ``household_id``
with the method that produced each link. ``docs/linking.md`` has the measured
precision and recall and the decisions behind the rules.

Design rules:

* **A wrong link costs more than a missing one.** A wrong household sends
  officers to the wrong family's door and pollutes that family's history, so a
  link is made only when the evidence leaves exactly one candidate; ties stay
  unlinked and are counted.
* **Vectorised.** Every step is a merge on normalised, integer-coded keys (or a
  bigram merge for the fuzzy fallback), never a loop over the registry per
  incident.
* **No personal data leaves.** Nothing here logs; exceptions name columns only;
  ``stats`` holds counts and shares.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "AREA_MAX_COINCIDENCES",
    "HOMOPHONES",
    "HOUSEHOLD_CONFIDENCE",
    "HOUSEHOLD_METHODS",
    "PERSON_CONFIDENCE",
    "REQUIRED_COLUMNS",
    "LinkRegistry",
    "LinkResult",
    "fold_homophones",
    "link_incidents",
    "link_quality",
    "link_registry",
    "link_stats",
    "parse_location",
]

REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "incidents": ("incident_id", "caller_name", "caller_phone", "caller_id_number", "location_text", "station_id"),
    "persons": ("person_id", "id_number", "name", "sex", "phone", "household_id"),
    "households": ("household_id", "address_id"),
    "addresses": (
        "address_id",
        "county_code",
        "county_name",
        "station_id",
        "township",
        "community",
        "building",
        "unit",
        "room",
        "house_no",
    ),
}

HOUSEHOLD_METHODS = ("address", "fuzzy_address", "caller")

PERSON_CONFIDENCE: dict[str, float] = {
    "id": 0.99,
    "phone": 0.99,
    "masked_id+masked_phone": 0.99,
    "masked_id+masked_phone+name": 0.99,
    "masked_id+name": 0.99,
    "masked_phone+name": 0.99,
    "masked_id+name+area": 0.99,
    "masked_id+masked_phone+area": 0.99,
    "masked_id+masked_phone+name+area": 0.99,
    "masked_phone+name+area": 0.99,
    "masked_phone+area": 0.98,
    "masked_id+area": 0.95,
}
"""Prior precision of a caller link per ``person_method``: the lowest precision measured on the
simulated cities of docs/linking.md (100k, 1M, 2.87M persons), rounded down and capped at 0.99 (a
simulator makes no typing errors in IDs and has no shared family phones); 0.95 where a method was
seen too rarely to measure. A prior for ranking and thresholds, not a guarantee for a real export."""

HOUSEHOLD_CONFIDENCE: dict[str, float] = {
    "address": 0.99,
    "fuzzy_address": 0.95,
    "caller": 0.98,
    "caller_in_named_compound": 0.94,
}
"""Prior precision of a household link (``links.confidence``), measured as for
:data:`PERSON_CONFIDENCE`. ``fuzzy_address`` is set below its measured 1.0 because the simulator's
misspellings are all in the homophone table; the bigram fallback links a compound unknown to the
registry about 2 times in 1,000 (docs/linking.md). ``caller`` is multiplied by the caller link's
:data:`PERSON_CONFIDENCE`; ``caller_in_named_compound`` applies when the place is the caller's own
compound named without a room (XX小区门口), where neighbours calling about the flat next door make the
caller's household a worse guess than for a street or a shop."""

AREA_MAX_COINCIDENCES = 0.05
"""Narrowing by the station's area is allowed only when fewer than this many other persons with the
caller's key are expected to live in that area by chance: (city-wide count - 1) x the station's share
of the population. Without it the area rule's precision falls as the registry grows: a
``1505**********2829`` mask is shared by ~260 persons in a city of 2.87M."""

# Near-homophones and look-alikes that call takers type for one another in place names. Each group
# folds to its first character before the fuzzy comparison, so 花圆 / 花园 and 佳院 / 佳苑 compare equal.
# Digits and 一二三 (phases 一期/二期 name different compounds) are deliberately absent.
HOMOPHONES: tuple[str, ...] = (
    "园圆元源",
    "苑院",
    "华化",
    "府付甫",
    "锦金",
    "景境",
    "嘎尕噶",
    "村邨",
    "庭廷亭",
    "佳嘉",
    "盛胜",
    "欣鑫",
    "鸣铭",
    "丽俪",
    "隆龙",
    "禾和",
    "泰太",
    "湾弯",
    "屯囤",
)
_FOLD_PAIRS = tuple((ch, group[0]) for group in HOMOPHONES for ch in group[1:])

_ANONYMOUS = ("匿名", "未留名", "未留姓名", "无", "无名", "不详", "未知", "不愿透露", "保密", "某某")
_FEMALE_TITLES = ("女士", "小姐", "大妈", "阿姨", "大姐", "奶奶", "大娘")
_MALE_TITLES = ("先生", "大爷", "大哥", "大叔", "爷爷", "老汉")
_NEUTRAL_TITLES = ("师傅", "老师", "某")
_HAN = "[\u4e00-\u9fff]"  # real characters, not escapes: the pattern goes to RE2 as well as to re
_TITLE = f"^(?P<surname>{_HAN})(?P<title>{'|'.join(_FEMALE_TITLES + _MALE_TITLES + _NEUTRAL_TITLES)})某?$"
_FULL_NAME = f"^(?:{_HAN}|·){{2,10}}$"

_CN_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CN_NUMBER = re.compile(r"([零一二两三四五六七八九十]{1,3})(号楼|栋|幢|单元)")
_CITY_PREFIX = (  # the region's 12 leagues and cities (docs/province.md); 盟 required where the bare name is a place
    r"^(?:内蒙古(?:自治区)?)?"
    r"(?:(?:呼和浩特|包头|乌海|赤峰|通辽|鄂尔多斯|呼伦贝尔|巴彦淖尔|乌兰察布)市?|(?:兴安|锡林郭勒|阿拉善)盟)"
)
_SEP = r"[-－—~～/]"
_HOME_TAIL = r"(?:门口|门前|家中|家里|屋里|屋内|内|里)?"
_URBAN = (
    r"^(?P<place>.*?)(?P<building>\d{1,3})(?:号楼|号|栋|幢|楼|" + _SEP + r")(?P<unit>\d{1,2})(?:单元|" + _SEP + r")"
    r"(?P<room>\d{3,4})(?:室|号|户)?" + _HOME_TAIL + "$"
)
_RURAL = r"^(?P<place>.*?\D)(?P<house_no>\d{1,4})号(?:院)?" + _HOME_TAIL + "$"
_STREET_END = r"(?:路|街|大道|巷|胡同|公路|国道|省道)$"
_VAGUE_TAIL = r"(?:门口|门前|大门|附近|对面|旁边|里面|里边|院内|院里|内|里|处)$"
_STR = pd.StringDtype("pyarrow", na_value=np.nan)


@dataclass(frozen=True)
class LinkResult:
    """Links (one row per input incident, in input order, with its index) and how they were made.

    ``links`` columns: ``incident_id``; ``person_id`` (the caller, nullable) and ``person_method``;
    ``household_id`` (the household the incident is about, nullable) and ``household_method``
    (``address`` | ``fuzzy_address`` | ``caller`` | None); ``address_id`` (nullable); ``confidence``,
    the prior precision of the household link (0 when there is none, see
    :data:`HOUSEHOLD_CONFIDENCE`; the caller link's own prior is ``PERSON_CONFIDENCE[person_method]``).
    ``stats`` holds counts and shares only, never a value from a record.
    """

    links: pd.DataFrame
    stats: dict[str, int | float] = field(default_factory=dict)
    detail: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    """Per incident, what :func:`link_stats` counts (``DETAIL_COLUMNS``): kept so that links cached per
    incident (pipelines/incident_cache.py) give the same ``stats`` as linking every incident again."""


# --------------------------------------------------------------------------------------------------
# Text: normalisation and parsing (pyarrow kernels, so millions of rows cost seconds)
# --------------------------------------------------------------------------------------------------


def _arrow(values: pd.Series) -> pa.Array:
    """A column as a pyarrow large_string array (nulls for missing); non-strings are stringified."""
    if not (pd.api.types.is_string_dtype(values.dtype) or values.dtype == object):
        values = values.astype(_STR)
    arr = pa.array(values, from_pandas=True)
    if not pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.large_string())
    return arr


def _series(arr: pa.Array, index: pd.Index) -> pd.Series:
    return pd.Series(arr.to_pandas(types_mapper={pa.large_string(): _STR, pa.string(): _STR}.get), index=index)


def _nfkc(values: pd.Series) -> pd.Series:
    """NFKC (full-width digits and letters to ASCII) without whitespace.

    Callers and call takers type on many keyboards: ``１３５`` and ``135`` must be one key.
    """
    arr = pc.utf8_normalize(_arrow(values), form="NFKC")
    return _series(pc.replace_substring_regex(arr, pattern=r"\s+", replacement=""), values.index)


def _extract(values: pd.Series, pattern: str) -> pd.DataFrame:
    """Named groups of ``pattern`` (RE2) per value; a row that does not match is all-missing.

    Optional groups that did not take part come back as missing, not as empty strings.
    """
    arr = _arrow(values)
    result = pc.extract_regex(arr, pattern=pattern)
    out = {}
    for i, name in enumerate(result.type.names):
        col = pc.struct_field(result, [i])
        col = pc.if_else(pc.and_(result.is_valid(), pc.not_equal(col, "")), col, pa.scalar(None, col.type))
        out[name] = _series(col.cast(pa.large_string()), values.index)
    return pd.DataFrame(out, index=values.index)


def _matches(values: pd.Series, pattern: str) -> np.ndarray:
    return pc.fill_null(pc.match_substring_regex(_arrow(values), pattern=pattern), False).to_numpy(zero_copy_only=False)


def fold_homophones(values: pd.Series) -> pd.Series:
    """Map every character of a near-homophone group (:data:`HOMOPHONES`) to the group's first member."""
    arr = _arrow(values)
    for ch, rep in _FOLD_PAIRS:
        arr = pc.replace_substring(arr, pattern=ch, replacement=rep)
    return _series(arr, values.index)


def _cn_to_int(text: str) -> int:
    """一 -> 1, 十二 -> 12, 二十三 -> 23 (1..99 is all building and unit numbers need)."""
    if "十" in text:
        tens, _, ones = text.partition("十")
        return (_CN_DIGITS.get(tens, 1) if tens else 1) * 10 + (_CN_DIGITS.get(ones, 0) if ones else 0)
    return int("".join(str(_CN_DIGITS[c]) for c in text))


def _replace_cn_numbers(values: pd.Series) -> pd.Series:
    """四号楼一单元 -> 4号楼1单元; only numbers right before a building or unit word are touched."""
    has = _matches(values, _CN_NUMBER.pattern)
    if not has.any():
        return values
    out = values.copy()
    out[has] = [_CN_NUMBER.sub(lambda m: f"{_cn_to_int(m.group(1))}{m.group(2)}", s) for s in values[has]]
    return out


def parse_location(location_text: pd.Series, county_names: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """Split spoken locations into (county, place, building, unit, room) or (county, place, house_no).

    ``kind`` is ``urban`` (building/unit/room found), ``rural`` (a house number), ``place`` (no
    number: a compound, a village, a street or a shop; whether it is a registry compound is decided
    by the matcher) or ``missing``. ``place`` is what is left once the city and a known county name
    are stripped, e.g. ``西门街道新明家园`` or ``新明家园``; ``vague_place`` also drops a trailing
    门口/附近/里. Full-width digits, ``4-1-302`` and Chinese numerals before 号楼/单元 are normalised.
    """
    text = _nfkc(location_text)
    text = _series(pc.replace_substring_regex(_arrow(text), pattern=_CITY_PREFIX, replacement=""), text.index)
    text = _replace_cn_numbers(text)
    out = pd.DataFrame(index=location_text.index)
    if county_names:
        alternatives = "|".join(re.escape(c) for c in sorted(set(county_names), key=len, reverse=True))
        parts = _extract(text, f"^(?P<county>{alternatives})?(?P<rest>.*)$")
        out["county_name"] = parts["county"]
        rest = parts["rest"]
    else:
        out["county_name"] = pd.Series(np.nan, index=text.index, dtype=_STR)
        rest = text
    urban = _extract(rest, _URBAN)
    rural = _extract(rest, _RURAL)
    is_urban = urban["building"].notna().to_numpy()
    # 建国路88号 is a street number (a shop, an office), not a village house: treated as a place.
    street_no = _matches(rural["place"], _STREET_END)
    is_rural = rural["house_no"].notna().to_numpy() & ~is_urban & ~street_no
    missing = rest.isna().to_numpy()
    out["kind"] = np.select([missing, is_urban, is_rural], ["missing", "urban", "rural"], default="place")
    place = rest.mask(is_urban, urban["place"]).mask(is_rural, rural["place"])
    out["place"] = place.fillna("").astype(_STR).where(~missing)
    vague = pc.replace_substring_regex(_arrow(out["place"]), pattern=_VAGUE_TAIL, replacement="")
    out["vague_place"] = _series(vague, out.index)
    for col, source, keep in (
        ("building", urban["building"], is_urban),
        ("unit", urban["unit"], is_urban),
        ("room", urban["room"], is_urban),
        ("house_no", rural["house_no"], is_rural),
    ):
        out[col] = pd.to_numeric(source.where(keep), errors="coerce").astype("Int64")
    return out


def _clean_identifier(values: pd.Series) -> pd.Series:
    """Upper-case NFKC text without spaces, dashes, dots or brackets (135-1234-9668, (0475)...)."""
    arr = pc.utf8_upper(_arrow(_nfkc(values)))
    return _series(pc.replace_substring_regex(arr, pattern=r"[\-－—()（）.,，]", replacement=""), values.index)


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
        rows = self._shortlist(comp, variant, uniques)
        found = pc.index_in(_arrow(self._key(comp, variant, rows)), value_set=pa.array(uniques, type=pa.large_string()))
        found = found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
        if rows is None:
            person_codes = found
        else:
            person_codes = np.full(len(self), -1, dtype=np.int32)
            person_codes[rows] = found
        present = np.zeros(len(uniques) + 1, dtype=bool)
        present[person_codes[person_codes >= 0]] = True
        self._cache.setdefault((comp, variant), (person_codes, len(uniques), np.flatnonzero(person_codes >= 0)))
        incident = pd.Index(uniques).get_indexer(keys).astype(np.int64)
        incident[~present[incident]] = -1
        return incident

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


_HASH_BASE = 1_000_003
_HASH_MASK = (1 << 64) - 1


def _affix_rows(values: pd.Series, affixes: list[tuple[bytes, bytes]]) -> np.ndarray:
    """Positions of ``values`` whose UTF-8 bytes start with a prefix and end with a suffix of ``affixes``.

    All prefixes have one length and all suffixes one length. Compared through 64-bit hashes of
    those bytes read straight from the Arrow buffers (no string is built per row): first the
    shorter part over every row, then both parts over the rows left. A rare hash collision can
    only add a position: callers compare the exact keys of what this returns.
    """
    pre, suf = len(affixes[0][0]), len(affixes[0][1])
    arr = _arrow(values)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
    data = arr.buffers()[2]
    if n == 0 or data is None or data.size == 0:
        return np.empty(0, dtype=np.int64)
    data = np.frombuffer(data, dtype=np.uint8)
    need = max(pre, suf)
    rows = np.flatnonzero((offsets[1:] - offsets[:-1] >= need) & arr.is_valid().to_numpy(zero_copy_only=False))
    parts = [(0, pre), (1, suf)] if 0 < pre <= suf or suf == 0 else [(1, suf), (0, pre)]
    for stage in (parts[:1], parts):
        hashed = np.zeros(len(rows), dtype=np.uint64)
        for side, length in stage:
            first = offsets[rows] if side == 0 else offsets[rows + 1] - length
            for j in range(length):
                hashed = hashed * np.uint64(_HASH_BASE) + data[first + j]
        wanted = {_affix_hash([(prefix, suffix)[side] for side, _ in stage]) for prefix, suffix in affixes}
        rows = rows[pd.Index(np.array(sorted(wanted), dtype=np.uint64)).get_indexer(hashed) >= 0]
    return rows


def _affix_hash(parts: list[bytes]) -> int:
    """:func:`_affix_rows`' hash of the bytes of ``parts`` (Python ints, wrapped as numpy's uint64 wraps)."""
    h = 0
    for byte in b"".join(parts):
        h = (h * _HASH_BASE + byte) & _HASH_MASK
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


# --------------------------------------------------------------------------------------------------
# Places
# --------------------------------------------------------------------------------------------------


class _Places:
    """Registry compounds and villages with the spoken variants of their names, and the address keys."""

    def __init__(self, addresses: pd.DataFrame) -> None:
        src = addresses.reset_index(drop=True)
        a = pd.DataFrame(
            {
                "address_id": src["address_id"].array,
                "county_code": _nfkc(src["county_code"]).array,
                "county_name": _nfkc(src["county_name"]).array,
                "station_id": _nfkc(src["station_id"]).array,
                "township": _nfkc(src["township"]).fillna("").array,
                "community": _nfkc(src["community"]).fillna("").array,
            }
        )
        for col in ("building", "unit", "room", "house_no"):
            a[col] = pd.to_numeric(src[col], errors="coerce").astype("Int64")
        a["aidx"] = np.arange(len(a))
        a["ck"] = a.groupby(["county_code", "township", "community"], sort=False).ngroup().to_numpy()
        self._finish(a)

    @classmethod
    def from_table(cls, table: pd.DataFrame) -> _Places:
        """The places from :meth:`table` (the normalised addresses), without normalising them again."""
        self = cls.__new__(cls)
        self._finish(table.reset_index(drop=True))
        return self

    def table(self) -> pd.DataFrame:
        """The normalised addresses with their compound code ``ck``: everything else is derived from them."""
        return self.addresses

    def _finish(self, a: pd.DataFrame) -> None:
        self.addresses = a
        self.county_names = tuple(a["county_name"].dropna().unique().tolist())
        self.county_of_name = a.drop_duplicates("county_name").set_index("county_name")["county_code"]
        first = a.drop_duplicates("station_id")
        self.county_of_station = first.set_index("station_id")["county_code"]
        comm = a.drop_duplicates("ck")[["ck", "county_code", "township", "community"]]
        town_short = comm["township"].str.replace(r"(?:街道|镇|乡|苏木)$", "", regex=True)
        variants = pd.concat(
            [
                comm.assign(text=comm["community"]),
                comm.assign(text=comm["township"] + comm["community"]),
                comm.assign(text=town_short + comm["community"]),
            ],
            ignore_index=True,
        )[["ck", "county_code", "text"]]
        variants = variants[variants["text"] != ""].drop_duplicates(["ck", "text"]).reset_index(drop=True)
        variants["folded"] = fold_homophones(variants["text"]).to_numpy()
        variants["vid"] = np.arange(len(variants))
        self.variants = variants
        self.urban_keys = a.dropna(subset=["building", "unit", "room"])[
            ["ck", "building", "unit", "room", "aidx", "station_id"]
        ]
        self.rural_keys = a.dropna(subset=["house_no"])[["ck", "house_no", "aidx", "station_id"]]
        self._bigrams: pd.DataFrame | None = None

    def bigrams(self) -> pd.DataFrame:
        """(county_code, ck, vid, gram, n_grams) of the folded name variants, built on first use."""
        if self._bigrams is None:
            grams = _bigrams(self.variants["folded"])
            v = self.variants
            self._bigrams = grams.assign(
                vid=v["vid"].to_numpy()[grams["sid"]],
                ck=v["ck"].to_numpy()[grams["sid"]],
                county_code=v["county_code"].to_numpy()[grams["sid"]],
            ).drop(columns="sid")
        return self._bigrams


def _bigrams(strings: pd.Series) -> pd.DataFrame:
    """Distinct character bigrams of ``^text$`` per string: (sid, gram, n_grams)."""
    sid: list[int] = []
    grams: list[str] = []
    sizes: list[int] = []
    for i, s in enumerate(strings.fillna("").tolist()):
        padded = f"^{s}$"
        distinct = {padded[j : j + 2] for j in range(len(padded) - 1)}
        sid.extend([i] * len(distinct))
        grams.extend(distinct)
        sizes.extend([len(distinct)] * len(distinct))
    return pd.DataFrame({"sid": np.array(sid, dtype=np.int64), "gram": grams, "n_grams": sizes})


def _pick_address(cand: pd.DataFrame, station: np.ndarray) -> tuple[pd.Series, np.ndarray]:
    """One address per row from (row, aidx, station_id) candidates: the only one, or the only one at
    the incident's station. Returns the chosen aidx per resolved row and the rows left ambiguous."""
    if cand.empty:
        return pd.Series(dtype=np.int64), np.empty(0, np.int64)
    cand = cand.drop_duplicates(["row", "aidx"])
    size = cand.groupby("row")["aidx"].transform("size").to_numpy()
    same = cand["station_id"].to_numpy() == station[cand["row"].to_numpy()]
    n_same = pd.Series(same).groupby(cand["row"].to_numpy()).transform("sum").to_numpy()
    keep = (size == 1) | (same & (n_same == 1))
    chosen = cand[keep].drop_duplicates("row").set_index("row")["aidx"]
    return chosen, np.setdiff1d(cand["row"].unique(), chosen.index.to_numpy())


@dataclass
class _AddressMatch:
    aidx: np.ndarray  # registry address position per incident, -1 when none
    method: np.ndarray  # 'address' | 'fuzzy_address' | None
    bigram: np.ndarray  # matched through the bigram stage (a subset of fuzzy_address)
    ambiguous: np.ndarray  # a home address with several equally good registry addresses
    named_ck: np.ndarray  # compound named without a room (-1 when none or not a registry compound)


def _match_addresses(
    loc: pd.DataFrame, county: np.ndarray, station: np.ndarray, places: _Places, fuzzy_min: float, fuzzy_margin: float
) -> _AddressMatch:
    """Address per incident: exact name variant, then homophone-folded name, then bigram similarity.

    Every stage is restricted to the incident's county (the county said in the text, else the
    station's) and needs the building/unit/room or house number to exist in the candidate compound,
    so a similar-sounding compound without that room cannot match.
    """
    n = len(loc)
    kind = loc["kind"].to_numpy()
    home = np.isin(kind, ["urban", "rural"])
    m = _AddressMatch(
        aidx=np.full(n, -1, dtype=np.int64),
        method=np.full(n, None, dtype=object),
        bigram=np.zeros(n, dtype=bool),
        ambiguous=np.zeros(n, dtype=bool),
        named_ck=np.full(n, -1, dtype=np.int64),
    )
    urban_cols = {c: loc[c].to_numpy() for c in ("building", "unit", "room", "house_no")}

    def name_hits(rows: np.ndarray, text: np.ndarray, column: str) -> pd.DataFrame:
        left = pd.DataFrame({"row": rows, "text": text[rows], "county_code": county[rows]}).dropna(subset=["text"])
        v = places.variants[["ck", "county_code", column]].rename(columns={column: "text"})
        hits = left.merge(v, on="text", how="inner", suffixes=("", "_reg"))
        own = (hits["county_code_reg"].to_numpy() == hits["county_code"].to_numpy()) | hits["county_code"].isna()
        return hits[own.to_numpy(dtype=bool)][["row", "ck"]].drop_duplicates()

    def with_keys(hits: pd.DataFrame) -> pd.DataFrame:
        rows = hits["row"].to_numpy()
        h = hits.assign(kind=kind[rows], **{c: v[rows] for c, v in urban_cols.items()})
        u = h[h["kind"] == "urban"].drop(columns="house_no")
        r = h[h["kind"] == "rural"].drop(columns=["building", "unit", "room"])
        for frame, cols in ((u, ["building", "unit", "room"]), (r, ["house_no"])):
            for c in cols:
                frame[c] = frame[c].astype("Int64")
        urban_keys = places.urban_keys[np.isin(places.urban_keys["ck"].to_numpy(), u["ck"].to_numpy())]
        rural_keys = places.rural_keys[np.isin(places.rural_keys["ck"].to_numpy(), r["ck"].to_numpy())]
        found = pd.concat(
            [
                u.merge(urban_keys, on=["ck", "building", "unit", "room"]),
                r.merge(rural_keys, on=["ck", "house_no"]),
            ],
            ignore_index=True,
        )
        return found

    place = loc["place"].reset_index(drop=True)
    texts = {"text": place.to_numpy(dtype=object), "folded": fold_homophones(place).to_numpy(dtype=object)}
    todo = home.copy()
    for label, column in (("address", "text"), ("fuzzy_address", "folded")):
        rows = np.flatnonzero(todo)
        hits = name_hits(rows, texts[column], column)
        chosen, amb = _pick_address(with_keys(hits), station)
        m.aidx[chosen.index.to_numpy()] = chosen.to_numpy()
        m.method[chosen.index.to_numpy()] = label
        m.ambiguous[amb] = True
        # A compound found by name that lacks the room means a wrong room, not a misspelt name:
        # looking further (folded, fuzzy) could only find a different compound.
        todo[hits["row"].to_numpy()] = False
        todo &= m.aidx < 0

    # Bigram Dice on folded names within the county; the best must be clear of the runner-up.
    rows = np.flatnonzero(todo & pd.notna(county))
    if len(rows):
        grams = _bigrams(pd.Series(texts["folded"][rows]))
        grams["row"] = rows[grams["sid"].to_numpy()]
        grams["county_code"] = county[grams["row"].to_numpy()]
        pairs = grams.merge(places.bigrams(), on=["county_code", "gram"], suffixes=("_q", "_r"))
        if not pairs.empty:
            shared = pairs.groupby(["row", "vid"], sort=False).agg(
                shared=("gram", "size"), nq=("n_grams_q", "first"), nr=("n_grams_r", "first"), ck=("ck", "first")
            )
            shared["score"] = 2.0 * shared["shared"] / (shared["nq"] + shared["nr"])
            best = shared.reset_index().groupby(["row", "ck"], sort=False)["score"].max().reset_index()
            found = with_keys(best[best["score"] >= fuzzy_min - fuzzy_margin])
            if not found.empty:
                found = found.sort_values(["row", "score"], ascending=[True, False], kind="stable")
                top = found.drop_duplicates("row")
                runner = found.groupby("row")["score"].nth(1)
                runner = pd.Series(runner.to_numpy(), index=found.loc[runner.index, "row"].to_numpy())
                second = runner.reindex(top["row"].to_numpy()).fillna(0.0).to_numpy()
                score = top["score"].to_numpy()
                clear = (score >= fuzzy_min) & (score - second >= fuzzy_margin)
                m.aidx[top["row"].to_numpy()[clear]] = top["aidx"].to_numpy()[clear]
                m.method[top["row"].to_numpy()[clear]] = "fuzzy_address"
                m.bigram[top["row"].to_numpy()[clear]] = True
                m.ambiguous[top["row"].to_numpy()[~clear & (score >= fuzzy_min)]] = True

    # Places without a number: is it a registry compound (exact or folded name, unique in the
    # county)? Then the caller's household can be checked against it; otherwise it is a street,
    # a shop, a crossing.
    rows = np.flatnonzero(kind == "place")
    vague = loc["vague_place"].reset_index(drop=True)
    for column, text in (("text", vague), ("folded", fold_homophones(vague))):
        hits = name_hits(rows, text.to_numpy(dtype=object), column)
        unique = hits.groupby("row")["ck"].agg(["size", "first"])
        unique = unique[unique["size"] == 1]
        m.named_ck[unique.index.to_numpy()] = unique["first"].to_numpy()
        rows = np.setdiff1d(rows, hits["row"].to_numpy())
    m.ambiguous &= m.aidx < 0
    return m


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkRegistry:
    """The registry as the linker reads it: persons and places normalised once, independent of any incident.

    Built by :func:`link_registry`; :meth:`tables` and :meth:`from_tables` let a cache keep it per
    registry (pipelines/incident_cache.py), since normalising 2.87M persons costs more than a day's
    calls.
    """

    persons: _Persons
    places: _Places

    def tables(self) -> dict[str, pd.DataFrame]:
        """``persons`` and ``places``: plain frames from which :meth:`from_tables` rebuilds the registry."""
        return {"persons": self.persons.table(), "places": self.places.table()}

    @classmethod
    def from_tables(cls, tables: dict[str, pd.DataFrame]) -> LinkRegistry:
        return cls(_Persons.from_table(tables["persons"]), _Places.from_table(tables["places"]))


def link_registry(persons: pd.DataFrame, households: pd.DataFrame, addresses: pd.DataFrame) -> LinkRegistry:
    """The persons, households and addresses normalised for :func:`link_incidents` (``registry=``)."""
    for frame, table in ((persons, "persons"), (households, "households"), (addresses, "addresses")):
        _require(frame, table)
    return LinkRegistry(_Persons(persons, households, addresses), _Places(addresses))


def _require(frame: pd.DataFrame, table: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS[table] if c not in frame.columns]
    if missing:
        raise ValueError(f"link_incidents: table '{table}' lacks column(s) {', '.join(missing)}")


def link_incidents(
    incidents: pd.DataFrame,
    persons: pd.DataFrame,
    households: pd.DataFrame,
    addresses: pd.DataFrame,
    *,
    fuzzy_min: float = 0.75,
    fuzzy_margin: float = 0.15,
    registry: LinkRegistry | None = None,
) -> LinkResult:
    """Link every incident to its caller (a person) and to the household it is about.

    Person: exact ID; then exact phone (unless a masked ID or the name contradicts it); then a
    masked ID / masked phone narrowed by the other masked identifier, the name (full name, or the
    surname and the sex of 女士/先生) and the station's area, linked only when exactly one person is
    left (the area only where a chance match there is unlikely, :data:`AREA_MAX_COINCIDENCES`).

    Household: the spoken address parsed and matched on (compound, building, unit, room) or
    (village, house number) within the incident's county: exact name, then near-homophones folded,
    then character-bigram Dice (``fuzzy_min``, and ``fuzzy_margin`` over the runner-up). If the place
    is not a home address (street, shop, compound without a room, missing), the caller's household,
    provided it lies in the incident's county. A home address that is not in the registry is not
    replaced by the caller's household. Unlinked incidents stay, with null ids, and are counted.

    ``registry``: the same persons, households and addresses already normalised
    (:func:`link_registry`, or a copy kept per registry by pipelines/incident_cache.py); without it
    they are normalised here. Everything registry-wide is either in it or restricted to the keys of
    this batch, so linking a day's 900 calls does not cost the millions of registry rows again.
    """
    for frame, table in (
        (incidents, "incidents"),
        (persons, "persons"),
        (households, "households"),
        (addresses, "addresses"),
    ):
        _require(frame, table)
    n = len(incidents)

    ev = _Evidence(incidents)
    if registry is None:
        registry = link_registry(persons, households, addresses)
    reg = registry.persons.for_batch()
    person, person_method, person_ambiguous = _link_persons(ev, reg)
    has_person = person >= 0

    places = registry.places
    loc = parse_location(incidents["location_text"].reset_index(drop=True), places.county_names)
    said = _lookup(loc["county_name"], places.county_of_name).to_numpy(dtype=object)
    by_station = _lookup(pd.Series(ev.keys["area"]), places.county_of_station).to_numpy(dtype=object)
    county = np.where(pd.notna(said), said, by_station)
    match = _match_addresses(loc, county, ev.keys["area"], places, fuzzy_min, fuzzy_margin)

    # Address -> household: the one household living there, or the caller's among several.
    aidx = match.aidx
    at_address = aidx >= 0
    address_id = np.full(n, None, dtype=object)
    address_id[at_address] = places.addresses["address_id"].take(aidx[at_address]).to_numpy(dtype=object)
    hh = households[["household_id", "address_id"]].dropna()
    hh_here = hh[hh["address_id"].isin(address_id[at_address])]  # the same groups, of this batch's addresses only
    per_address = hh_here.groupby("address_id")["household_id"].agg(["size", "first"])
    info = per_address.reindex(address_id[at_address])
    rows = np.flatnonzero(at_address)
    household = np.full(n, None, dtype=object)
    single = info["size"].to_numpy() == 1
    household[rows[single]] = info["first"].to_numpy(dtype=object)[single]
    caller_household = np.full(n, None, dtype=object)
    caller_household[has_person] = reg.household_id.take(person[has_person]).to_numpy(dtype=object)
    several = rows[info["size"].fillna(0).to_numpy() > 1]
    if len(several):
        pairs = pd.DataFrame(
            {"row": several, "address_id": address_id[several], "household_id": caller_household[several]}
        )
        ok = pairs.merge(hh_here, on=["address_id", "household_id"])["row"].to_numpy()
        household[ok] = caller_household[ok]
    household_method = np.where(pd.notna(household), match.method, None).astype(object)

    # Caller fallback: the place is not a home address, and the caller's household is in its county
    # and, when the place is a registry compound named without a room, in that compound.
    callers = hh[hh["household_id"].isin(caller_household[has_person])]
    address_of = callers.drop_duplicates("household_id").set_index("household_id")["address_id"]
    addresses_here = places.addresses[places.addresses["address_id"].isin(address_of.to_numpy())]
    caller_aidx = _lookup(
        _lookup(pd.Series(caller_household), address_of), addresses_here.set_index("address_id")["aidx"]
    ).to_numpy()
    caller_aidx = np.where(pd.notna(caller_aidx), caller_aidx, -1).astype(np.int64)
    known = caller_aidx >= 0
    caller_county = np.full(n, None, dtype=object)
    caller_county[known] = places.addresses["county_code"].take(caller_aidx[known]).to_numpy(dtype=object)
    caller_ck = np.where(known, places.addresses["ck"].to_numpy()[caller_aidx], -1)
    not_home = np.isin(loc["kind"].to_numpy(), ["place", "missing"])
    same_county = pd.isna(county) | (caller_county == county)
    elsewhere = (match.named_ck >= 0) & (caller_ck != match.named_ck)
    fallback = not_home & has_person & pd.isna(household) & same_county & ~elsewhere & ~at_address
    household[fallback] = caller_household[fallback]
    household_method[fallback] = "caller"
    in_named = fallback & (match.named_ck >= 0)

    confidence = np.zeros(n, dtype=float)
    for m in ("address", "fuzzy_address"):
        confidence[household_method == m] = HOUSEHOLD_CONFIDENCE[m]
    person_conf = np.array([PERSON_CONFIDENCE.get(m, 0.5) if m else 0.0 for m in person_method], dtype=float)
    prior = np.where(in_named, HOUSEHOLD_CONFIDENCE["caller_in_named_compound"], HOUSEHOLD_CONFIDENCE["caller"])
    confidence[fallback] = (prior * person_conf)[fallback]

    links = pd.DataFrame(
        {
            "incident_id": incidents["incident_id"].to_numpy(),
            "person_id": np.where(has_person, reg.person_id.take(np.maximum(person, 0)).to_numpy(dtype=object), None),
            "person_method": person_method,
            "household_id": household,
            "household_method": household_method,
            "address_id": address_id,
            "confidence": confidence.round(4),
        },
        index=incidents.index,
    )
    for col in ("incident_id", "person_id", "person_method", "household_id", "household_method", "address_id"):
        links[col] = links[col].astype(_STR)
    detail = pd.DataFrame(
        {
            "kind": loc["kind"].to_numpy(dtype=object),
            "person_ambiguous": person_ambiguous,
            "address_found": match.aidx >= 0,
            "bigram": match.bigram,
            "address_ambiguous": match.ambiguous,
            "named_compound": match.named_ck >= 0,
            "fallback": fallback,
            "in_named": in_named,
            "could_fall_back": not_home & has_person,
        },
        index=incidents.index,
    )
    return LinkResult(links=links, stats=link_stats(links, detail), detail=detail)


DETAIL_COLUMNS = (
    "kind",
    "person_ambiguous",
    "address_found",
    "bigram",
    "address_ambiguous",
    "named_compound",
    "fallback",
    "in_named",
    "could_fall_back",
)
"""Columns of ``LinkResult.detail``: the location kind and the per-incident flags :func:`link_stats` counts."""


def link_stats(links: pd.DataFrame, detail: pd.DataFrame) -> dict[str, int | float]:
    """``LinkResult.stats`` from the links and their per-incident ``detail`` (any subset, any order of rows)."""
    flag = {c: detail[c].to_numpy(dtype=bool) for c in DETAIL_COLUMNS if c != "kind"}
    match = _AddressMatch(
        aidx=np.where(flag["address_found"], 0, -1),
        method=np.full(len(detail), None, dtype=object),
        bigram=flag["bigram"],
        ambiguous=flag["address_ambiguous"],
        named_ck=np.where(flag["named_compound"], 0, -1),
    )
    kind = detail["kind"].to_numpy(dtype=object)
    return _stats(
        links, kind, flag["person_ambiguous"], match, flag["fallback"], flag["in_named"], flag["could_fall_back"]
    )


def _stats(
    links: pd.DataFrame,
    kind: np.ndarray,
    person_ambiguous: np.ndarray,
    match: _AddressMatch,
    fallback: np.ndarray,
    in_named: np.ndarray,
    could_fall_back: np.ndarray,
) -> dict[str, int | float]:
    """Counts per method, unlinked counts and shares; never a value from a record."""
    n = len(links)

    def share(k: int) -> float:
        return round(k / n, 4) if n else 0.0

    stats: dict[str, int | float] = {"incidents": n}
    for side in ("person", "household"):
        linked = int(links[f"{side}_id"].notna().sum())
        stats[f"{side}_linked"] = linked
        stats[f"{side}_unlinked"] = n - linked
        stats[f"{side}_unlinked_share"] = share(n - linked)
        for method, k in links[f"{side}_method"].value_counts().sort_index().items():
            stats[f"{side}_method.{method}"] = int(k)
            stats[f"{side}_share.{method}"] = share(int(k))
    stats["person_ambiguous"] = int(person_ambiguous.sum())
    for k in ("urban", "rural", "place", "missing"):
        stats[f"location.{k}"] = int((kind == k).sum())
    home = np.isin(kind, ["urban", "rural"])
    stats["address_linked"] = int(links["address_id"].notna().sum())
    stats["address_fuzzy_bigram"] = int(match.bigram.sum())
    stats["address_ambiguous"] = int(match.ambiguous.sum())
    stats["address_not_found"] = int((home & (match.aidx < 0) & ~match.ambiguous).sum())
    stats["address_without_household"] = int((links["address_id"].notna() & links["household_id"].isna()).sum())
    stats["place_is_registry_compound"] = int((match.named_ck >= 0).sum())
    stats["caller_in_named_compound"] = int(in_named.sum())
    stats["caller_fallback_refused"] = int((could_fall_back & ~fallback).sum())
    return stats


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------


def _scores(frame: pd.DataFrame, total: int | None = None) -> dict[str, int | float]:
    """n, linked, correct, precision (correct / linked) and recall (correct / ``total``, default n)."""
    n = len(frame)
    linked = int(frame["linked"].sum())
    correct = int(frame["correct"].sum())
    total = n if total is None else total
    return {
        "n": n,
        "linked": linked,
        "correct": correct,
        "precision": round(correct / linked, 4) if linked else float("nan"),
        "recall": round(correct / total, 4) if total else float("nan"),
    }


def link_quality(links: pd.DataFrame, truth_incidents: pd.DataFrame) -> dict[str, Any]:
    """Precision and recall of the links against known truth: overall, per method, per caller role.

    ``truth_incidents`` needs ``incident_id``, ``caller_person_id`` and ``place_household_id``;
    ``caller_role`` is optional. For ``person`` and ``household``:

    * ``overall``: precision = correct / linked, recall = correct / incidents with a known true id;
    * ``by_method``: per method, precision of its links and its contribution to the overall recall
      (correct by this method / all incidents; the contributions add up to the overall recall);
    * ``unlinked``: incidents without a link;
    * ``by_caller_role``: overall figures within each true caller role (party, family_member,
      neighbor, passerby), when the truth has it.

    The caller passes the truth in; this module never loads it.
    """
    cols = ["incident_id", "caller_person_id", "place_household_id"]
    by_role = "caller_role" in truth_incidents.columns
    truth = truth_incidents[cols + (["caller_role"] if by_role else [])].drop_duplicates("incident_id")
    merged = links.reset_index(drop=True).merge(truth, on="incident_id", how="left", validate="many_to_one")
    out: dict[str, Any] = {}
    for side, true_col in (("person", "caller_person_id"), ("household", "place_household_id")):
        frame = merged[merged[true_col].notna()]
        pred = frame[f"{side}_id"].astype(object)
        scored = pd.DataFrame(
            {
                "linked": pred.notna().to_numpy(),
                "correct": (pred.to_numpy() == frame[true_col].astype(object).to_numpy()) & pred.notna().to_numpy(),
                "method": frame[f"{side}_method"].astype(object).fillna("unlinked").to_numpy(),
                "role": frame["caller_role"].astype(object).to_numpy() if by_role else "all",
            }
        )
        total = len(scored)
        result: dict[str, Any] = {"overall": _scores(scored)}
        linked = scored[scored["linked"]]
        result["by_method"] = {m: _scores(g, total) for m, g in linked.groupby("method", sort=True)}
        result["unlinked"] = int((~scored["linked"]).sum())
        if by_role:
            result["by_caller_role"] = {r: _scores(g) for r, g in scored.groupby("role", sort=True)}
        out[side] = result
    return out
