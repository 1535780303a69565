"""Normalising what a caller says, for the linker: names and titles, identifiers, spoken locations.

Part of features/linking.py (which links incidents to the registry and documents the rules); pyarrow
kernels, so a registry of millions of persons costs seconds.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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
