"""Inner Mongolia's 12 leagues and cities, their seeds, and the relabelling that makes a city's keys its own.

The simulator draws one geography, Tongliao's (simulation/config.py: its 9
counties, 137 stations, shares calibrated from the reports). A province is
that calibrated structure drawn once per league/city, sized to the city's
2020-census population and relabelled so that every key is province-unique
and starts with the city's code. The counties, townships and compounds of a
non-Tongliao city are therefore the template's (docs/province.md says so):
only the codes, the keys and the city's name in addresses change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from simulation.identity import id_checksum

TEMPLATE_CODE = "1505"
"""The city the simulator's geography is (通辽市): its codes and keys are the ones relabelled."""
TEMPLATE_NAME = "通辽市"


@dataclass(frozen=True)
class City:
    """A league-level division (地级市 or 盟): code, name, 2020-census resident population (rounded)."""

    code: str
    name: str
    persons: int


CITIES: tuple[City, ...] = (
    City("1501", "呼和浩特市", 3_446_000),
    City("1502", "包头市", 2_709_000),
    City("1503", "乌海市", 557_000),
    City("1504", "赤峰市", 4_036_000),
    City("1505", "通辽市", 2_873_000),
    City("1506", "鄂尔多斯市", 2_154_000),
    City("1507", "呼伦贝尔市", 2_243_000),
    City("1508", "巴彦淖尔市", 1_539_000),
    City("1509", "乌兰察布市", 1_706_000),
    City("1522", "兴安盟", 1_417_000),
    City("1525", "锡林郭勒盟", 1_107_000),
    City("1529", "阿拉善盟", 262_000),
)
"""Resident population on 2020-11-01 (第七次全国人口普查, 内蒙古自治区统计局 公报第二号, by league/city),
rounded to the nearest 1,000; they sum to 24,049,000 (the census total is 24,049,155)."""

BY_CODE: dict[str, City] = {c.code: c for c in CITIES}


def city_seed(province_seed: int, code: str) -> int:
    """The seed of one city: a stable hash of (province seed, city code), whatever the order or worker count."""
    sequence = np.random.SeedSequence([int(province_seed), int(code)])
    return int(sequence.generate_state(1, dtype=np.uint32)[0])


# --------------------------------------------------------------------------------------------------
# Relabelling
# --------------------------------------------------------------------------------------------------


def _check_start(values: pd.Series, start: str) -> None:
    starts = values.dropna().astype(str).str.startswith(start)
    if not starts.all():
        raise ValueError(f"{values.name}: a value does not start with {start!r}; the simulator's ids or codes changed")


def _prefixed(values: pd.Series, letters: str, code: str, sep: str = "-") -> pd.Series:
    """``P00000001`` -> ``P1504-00000001``: type letters, the city code, the template's number. Missing stays."""
    _check_start(values, letters)
    return letters + code + sep + values.str[len(letters) :]  # string ops keep the dtype and the missing values


def _recoded(values: pd.Series, old: str, new: str) -> pd.Series:
    """Replace the leading ``old`` code by ``new`` (``150502`` -> ``150402``, ``J1505...`` -> ``J1504...``)."""
    _check_start(values, old)
    return new + values.str[len(old) :]


def _ascii(strings: np.ndarray, width: int) -> np.ndarray:
    """Fixed-width ASCII strings as an (n, width) byte matrix."""
    if len(strings) == 0:
        return np.zeros((0, width), dtype=np.uint8)
    return np.frombuffer("".join(strings).encode("ascii"), dtype=np.uint8).reshape(-1, width)


def relabel_id_numbers(ids: np.ndarray, code: str) -> np.ndarray:
    """18-digit ID numbers with the region's first 4 digits set to ``code`` and the check character recomputed."""
    ids = np.asarray(ids, dtype=object)
    if len(ids) == 0:
        return ids
    first17 = (code + pd.Series(ids, dtype=object).str[4:17]).to_numpy(dtype=str)
    return np.char.add(first17, id_checksum(first17)).astype(object)


def _shown_ids(shown: pd.Series, old_full: np.ndarray, new_full: np.ndarray) -> pd.Series:
    """The ID as a record shows it (whole, or starred) rewritten from the caller's relabelled ID, stars kept."""
    present = shown.notna().to_numpy()
    out = shown.astype(object).copy()
    if not present.any():
        return out
    text = shown.to_numpy(dtype=object)[present]
    if any(len(s) != 18 for s in text):
        raise ValueError("caller_id_number: a shown ID is not 18 characters; the simulator's masking changed")
    s, old, new = _ascii(text, 18), _ascii(old_full[present], 18), _ascii(new_full[present], 18)
    star = s == ord("*")
    if ((s != old) & ~star).any():
        raise ValueError("caller_id_number: a shown ID is not the caller's registry ID; cannot relabel it")
    rewritten = np.where(star, s, new)
    out[present] = [bytes(row).decode("ascii") for row in rewritten]
    return out.astype(shown.dtype)


def relabel(
    tables: dict[str, pd.DataFrame], truth: dict[str, pd.DataFrame], code: str, name: str
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """One simulated city's exported and truth tables with every key and code of city ``code`` (pure).

    Keys become ``<letters><code>-<number>`` (person ``P1504-00000001``, household ``H…``, address ``A…``,
    visit ``V…``, conflict ``C…``); station ``S001`` -> ``S1504001``; the incident number keeps its 110 form
    with the city in it (``J1505…`` -> ``J1504…``); a case number holds its station (``AJS077…`` ->
    ``AJS1504077…``); county codes ``1505xx`` -> ``<code>xx``; ID numbers take the new region and check
    character, shown IDs (whole or starred) and the narrative header that repeats them follow; addresses,
    spoken locations and narratives name the city. Row order is kept.
    """
    t = {k: v.copy(deep=False) for k, v in tables.items()}  # copy-on-write: replaced columns only are new
    tr = {k: v.copy(deep=False) for k, v in truth.items()}
    old_city = TEMPLATE_CODE

    def key(frame: pd.DataFrame, column: str, letters: str) -> None:
        frame[column] = _prefixed(frame[column], letters, code)

    def station(frame: pd.DataFrame) -> None:
        frame["station_id"] = _prefixed(frame["station_id"], "S", code, sep="")

    def incident(frame: pd.DataFrame, column: str) -> None:
        frame[column] = _recoded(frame[column], "J" + old_city, "J" + code)

    def case(frame: pd.DataFrame) -> None:
        frame["case_id"] = _prefixed(frame["case_id"], "AJS", code, sep="")

    # Persons first: the shown IDs of callers need the old and new ID of each caller.
    persons = t["persons"]
    old_ids = persons["id_number"].to_numpy(dtype=object)
    new_ids = relabel_id_numbers(old_ids, code)
    position = pd.Series(np.arange(len(persons)), index=persons["person_id"].to_numpy())

    a = t["addresses"]
    key(a, "address_id", "A")
    a["county_code"] = _recoded(a["county_code"], old_city, code)
    station(a)
    h = t["households"]
    key(h, "household_id", "H")
    key(h, "address_id", "A")
    key(h, "head_person_id", "P")
    key(persons, "person_id", "P")
    key(persons, "household_id", "H")
    persons["id_number"] = new_ids
    r = t["relations"]
    key(r, "person_id_a", "P")
    key(r, "person_id_b", "P")
    i = t["incidents"]
    callers = position.loc[tr["incidents"]["caller_person_id"].to_numpy()].to_numpy()
    old_shown = i["caller_id_number"].copy()
    i["caller_id_number"] = _shown_ids(old_shown, old_ids[callers], new_ids[callers])
    i["narrative"] = _narratives(i["narrative"], old_shown, i["caller_id_number"])
    incident(i, "incident_id")
    station(i)
    c = t["cases"]
    case(c)
    station(c)
    key(c, "person_id", "P")
    incident(c, "source_incident_id")
    v = t["visits"]
    key(v, "visit_id", "V")
    key(v, "household_id", "H")
    station(v)
    if code != old_city:
        for frame, column in ((a, "address_text"), (i, "location_text"), (i, "narrative")):
            frame[column] = frame[column].str.replace(TEMPLATE_NAME, name, regex=False)

    conflicts = tr["conflicts"]
    key(conflicts, "conflict_id", "C")
    for column in ("person_a", "person_b"):
        key(conflicts, column, "P")
    for column in ("household_a", "household_b"):
        key(conflicts, column, "H")
    ti = tr["incidents"]
    incident(ti, "incident_id")
    incident(ti, "duplicate_of")
    key(ti, "conflict_id", "C")
    key(ti, "caller_person_id", "P")
    key(ti, "place_household_id", "H")
    e = tr["escalations"]
    case(e)
    key(e, "conflict_id", "C")
    key(tr["persons_latent"], "person_id", "P")
    return t, tr


def _narratives(narratives: pd.Series, old: pd.Series, new: pd.Series) -> pd.Series:
    """Each narrative with the caller's shown ID in its header replaced by the relabelled one."""
    out = narratives.to_numpy(dtype=object).copy()
    rows = np.flatnonzero(old.notna().to_numpy())
    o, n = old.to_numpy(dtype=object), new.to_numpy(dtype=object)
    for row in rows:
        out[row] = out[row].replace(o[row], n[row], 1)
    return pd.Series(out, index=narratives.index, name=narratives.name).astype(narratives.dtype)
