"""110 records: who called, when, from where, how it was coded and handled.

Dispute calls come from the conflict dynamics; everything else (theft, fraud,
traffic, help requests ...) is drawn per person-year. Both pass through the
same steps a real call does: a caller who is not always a party (a child, a
neighbour, a passer-by), an identity that is given whole, masked or not at
all, an address said the way people say it, a police category code that the
call taker picks under time pressure, and a narrative (``narratives.py``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulation.config import NON_DISPUTE_SHARE, SimConfig
from simulation.conflicts import NO_PERSON
from simulation.identity import HAN_SURNAMES, MONGOL_SURNAMES, make_phones, mask_id, mask_phone
from simulation.population import Population

# Relative call volume by hour of day (0..23). Family disputes peak late evening, work and
# money disputes in office hours, traffic at rush hours.
_HOURS = {
    "night": np.array([4, 3, 2, 1, 1, 1, 1, 2, 3, 4, 4, 4, 5, 5, 5, 5, 6, 7, 9, 11, 12, 12, 10, 7], float),
    "day": np.array([1, 1, 1, 1, 1, 1, 2, 4, 8, 10, 10, 9, 7, 8, 10, 10, 9, 8, 6, 4, 3, 2, 2, 1], float),
    "evening": np.array([3, 2, 1, 1, 1, 1, 2, 3, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 9, 10, 9, 8, 6, 4], float),
    "rush": np.array([1, 1, 1, 1, 1, 2, 4, 9, 10, 7, 6, 6, 7, 6, 6, 7, 9, 10, 8, 6, 4, 3, 2, 1], float),
}
_HOUR_PROFILE = {
    "family": "night",
    "neighbor": "evening",
    "other": "evening",
    "debt": "day",
    "labor": "day",
    "land": "day",
    "medical_school": "day",
    "property": "day",
    "traffic": "rush",
    "drunk_person": "night",
    "stranger_assault": "night",
    "noise": "night",
    "fare_dispute": "night",
    "fire": "evening",
}

_CODE_DISPUTE = {
    "debt": "经济纠纷",
    "family": "家庭纠纷",
    "neighbor": "邻里纠纷",
    "land": "土地纠纷",
    "labor": "劳资纠纷",
    "medical_school": "医疗纠纷",
    "property": "物业纠纷",
    "other": "其他纠纷",
}
_CODE_OTHER = {
    "theft": ("刑事警情", "盗窃"),
    "fraud": ("刑事警情", "诈骗"),
    "traffic": ("交通警情", "交通事故"),
    "lost_property": ("群众求助", "遗失求助"),
    "fire": ("火灾事故", "火灾"),
    "help": ("群众求助", "其他求助"),
    "noise": ("治安警情", "噪音扰民"),
    "missing_person": ("群众求助", "走失求助"),
    "suspicious": ("治安警情", "可疑情况"),
    "stranger_assault": ("治安警情", "打架斗殴"),
    "fare_dispute": ("纠纷警情", "其他纠纷"),
    "drunk_person": ("群众求助", "醉酒求助"),
    "consult": ("其他警情", "咨询"),
    "alarm_false": ("其他警情", "无效警情"),
}
_DISPOSITION_DISPUTE = (
    "现场调解",
    "批评教育",
    "告知诉讼途径",
    "移交司法所调解",
    "双方已离开",
    "约至派出所处理",
)
_DISPOSITION_OTHER = {
    "theft": "受案登记",
    "fraud": "受案登记",
    "traffic": "移交交警",
    "lost_property": "登记备案",
    "fire": "移交消防",
    "help": "现场救助",
    "noise": "现场劝解",
    "missing_person": "协助查找",
    "suspicious": "现场查看",
    "stranger_assault": "受案登记",
    "fare_dispute": "现场调解",
    "drunk_person": "现场救助",
    "consult": "电话解答",
    "alarm_false": "无效警情",
}
_COUNTERPART = {
    ("spouse", "M"): "wife",
    ("spouse", "F"): "husband",
    ("ex_partner", "M"): "ex_girlfriend",
    ("ex_partner", "F"): "ex_boyfriend",
    ("neighbor", "M"): "neighbor",
    ("neighbor", "F"): "neighbor",
    ("land", "M"): "villager",
    ("land", "F"): "villager",
}


def _hours(rng: np.random.Generator, keys: np.ndarray) -> np.ndarray:
    out = np.empty(len(keys), dtype=np.int64)
    profiles = np.array([_HOUR_PROFILE.get(k, "day") for k in keys])
    for name, weights in _HOURS.items():
        m = profiles == name
        out[m] = rng.choice(24, int(m.sum()), p=weights / weights.sum())
    return out


def draw_background_calls(config: SimConfig, pop: Population, rng: np.random.Generator) -> pd.DataFrame:
    """Calls that are not household or neighbourhood disputes: most of the 110 volume."""
    total = rng.poisson(config.non_dispute_calls_per_person_year * config.persons * config.days / 365.0)
    types = np.array(list(NON_DISPUTE_SHARE))
    p = np.array(list(NON_DISPUTE_SHARE.values()))
    age = pop.latent["age"].to_numpy()
    eligible = np.flatnonzero(age >= 14)
    return pd.DataFrame(
        {
            "call_type": types[rng.choice(len(types), total, p=p / p.sum())],
            "day": rng.integers(0, config.days, total),
            "caller_row": eligible[rng.integers(0, len(eligible), total)],
        }
    )


def _neighbour_of(pop: Population, pairs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One neighbouring household per household (itself when it has none)."""
    n = len(pop.households)
    out = np.arange(n)
    shuffled = pairs[rng.permutation(len(pairs))]
    out[shuffled[:, 0]] = shuffled[:, 1]
    out[shuffled[:, 1]] = shuffled[:, 0]
    return out


def assemble_dispute_calls(
    config: SimConfig,
    pop: Population,
    conflicts: pd.DataFrame,
    calls: pd.DataFrame,
    neighbour_pairs: np.ndarray,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Give each dispute call a caller, a place and the fields the narrative grammar needs."""
    calls = calls[calls["day"] >= 0].reset_index(drop=True)
    conf = conflicts.set_index("conflict_row").loc[calls["conflict_row"]].reset_index()
    k = len(calls)
    persons = pop.persons
    sex = persons["sex"].to_numpy()
    household_of = conf["household_a"].to_numpy()
    a = conf["person_a"].to_numpy()
    b = conf["person_b"].to_numpy()
    urban = pop.geography.addresses["area_type"].to_numpy()[household_of] == "urban"

    # Who calls: a party (mostly the one at risk), a relative, a neighbour, a passer-by.
    u = rng.random(k)
    neighbour_share = np.where(urban, 0.14, 0.06)
    role = np.select(
        [u < 0.70, u < 0.80, u < 0.80 + neighbour_share],
        ["party", "family_member", "neighbor"],
        default="passerby",
    )
    escalation = calls["escalation_call"].to_numpy()
    role[escalation & (rng.random(k) < 0.25)] = "neighbor"
    caller = np.where((b != NO_PERSON) & (rng.random(k) < 0.2), b, a)

    # Members of a household are contiguous and the head comes first (population.py).
    sizes = pop.households["size"].to_numpy()
    first_member = np.cumsum(sizes) - sizes
    fam = np.flatnonzero(role == "family_member")
    hh, size = household_of[fam], sizes[household_of[fam]]
    pick = first_member[hh] + rng.integers(0, size)
    for _ in range(2):
        clash = (pick == a[fam]) | (pick == b[fam])
        pick[clash] = first_member[hh][clash] + (pick[clash] - first_member[hh][clash] + 1) % size[clash]
    caller[fam] = pick
    role[fam[(pick == a[fam]) | (pick == b[fam])]] = "party"
    neighbours = _neighbour_of(pop, neighbour_pairs, rng)
    head = first_member
    nb = np.flatnonzero(role == "neighbor")
    caller[nb] = head[neighbours[household_of[nb]]]
    role[nb[neighbours[household_of[nb]] == household_of[nb]]] = "party"
    pb = np.flatnonzero(role == "passerby")
    adults = np.flatnonzero(pop.latent["age"].to_numpy() >= 18)
    caller[pb] = adults[rng.integers(0, len(adults), len(pb))]

    counterpart = _counterparts(conf, sex, caller, a, b)
    frame = pd.DataFrame(
        {
            "day": calls["day"].to_numpy(),
            "call_type": "dispute",
            "category": conf["category"].to_numpy(),
            "subtype": None,
            "counterpart": counterpart,
            "caller_role": role,
            "caller_row": caller,
            "place_household": household_of,
            "conflict_row": calls["conflict_row"].to_numpy(),
            "escalation_call": escalation,
            "mediated_before": False,
        }
    )
    for cue in ("violence", "weapon", "injury", "threat", "alcohol", "self_harm", "separation"):
        frame[cue] = calls[cue].to_numpy().astype(bool)
    order = np.lexsort((np.arange(k), frame["day"].to_numpy(), frame["conflict_row"].to_numpy()))
    frame = frame.iloc[order].reset_index(drop=True)
    frame["repeat_n"] = frame.groupby("conflict_row").cumcount() + 1
    return frame


def _counterparts(conf: pd.DataFrame, sex: np.ndarray, caller: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Who the caller is in conflict with, in the narrative grammar's role codes."""
    kind = conf["kind"].to_numpy()
    category = conf["category"].to_numpy()
    other = np.where(caller == b, a, b)
    other_sex = np.where(other >= 0, sex[np.maximum(other, 0)], "M")
    caller_is_a = caller == a
    out = np.full(len(kind), "stranger", dtype=object)
    out[kind == "spouse"] = np.where(other_sex[kind == "spouse"] == "M", "husband", "wife")
    ex = kind == "ex_partner"
    out[ex] = np.where(other_sex[ex] == "M", "ex_boyfriend", "ex_girlfriend")
    out[kind == "parent_child"] = np.where(other_sex[kind == "parent_child"] == "M", "son", "daughter")
    out[kind == "kin"] = np.where(np.arange(len(kind))[kind == "kin"] % 2 == 0, "sibling", "in_law")
    out[category == "neighbor"] = "neighbor"
    out[category == "land"] = np.where(np.arange(len(kind))[category == "land"] % 3 == 0, "herder", "villager")
    debt = category == "debt"
    out[debt] = np.where(caller_is_a[debt], "debtor", "creditor")
    labor = category == "labor"
    out[labor] = np.where(caller_is_a[labor], "employer", "worker")
    med = category == "medical_school"
    out[med] = np.where(np.arange(len(kind))[med] % 3 == 0, "school", "hospital")
    prop = category == "property"
    out[prop] = np.where(np.arange(len(kind))[prop] % 3 == 0, "developer", "property_company")
    out[kind == "acquaintance"] = "neighbor"
    return out


def finish_incidents(
    config: SimConfig,
    pop: Population,
    dispute_calls: pd.DataFrame,
    background: pd.DataFrame,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Merge dispute and background calls and add time, identity, place and police codes.

    Returns the full call frame, still with truth columns (caller_row,
    conflict_row ...); ``city.py`` splits it into the exported table and truth.
    """
    persons = pop.persons
    addresses = pop.geography.addresses
    person_household = (
        pd.Series(np.arange(len(pop.households)), index=pop.households["household_id"])
        .loc[persons["household_id"]]
        .to_numpy()
    )
    bg = background.assign(
        category=None,
        subtype=None,
        counterpart=None,
        caller_role="party",
        conflict_row=-1,
        escalation_call=False,
        mediated_before=False,
        repeat_n=1,
        place_household=person_household[background["caller_row"].to_numpy()],
        violence=False,
        weapon=False,
        injury=False,
        threat=False,
        alcohol=False,
        self_harm=False,
        separation=False,
    )
    bg["alcohol"] = bg["call_type"].eq("drunk_person")
    bg["violence"] = bg["call_type"].eq("stranger_assault")
    bg["injury"] = bg["violence"] & (rng.random(len(bg)) < 0.4)
    calls = pd.concat([dispute_calls, bg[dispute_calls.columns]], ignore_index=True)
    k = len(calls)

    profile_key = np.where(calls["call_type"] == "dispute", calls["category"], calls["call_type"]).astype(str)
    seconds = _hours(rng, profile_key) * 3600 + rng.integers(0, 3600, k)
    calls["received_at"] = (
        pd.Timestamp(config.start) + pd.to_timedelta(calls["day"], unit="D") + pd.to_timedelta(seconds, unit="s")
    ).astype("datetime64[ns]")
    calls = calls.sort_values(["received_at", "conflict_row"], kind="stable").reset_index(drop=True)
    mediated = calls["conflict_row"].ge(0) & calls.groupby("conflict_row").cumcount().gt(0)
    calls["mediated_before"] = mediated & (rng.random(k) < 0.4)

    caller = calls["caller_row"].to_numpy()
    calls["caller_sex"] = persons["sex"].to_numpy()[caller]
    u = rng.random(k)
    full_name = pd.Series(persons["name"].to_numpy()[caller])
    # 张女士 needs a surname: a Mongol given name alone (巴特尔) is always written in full.
    has_surname = full_name.str[0].isin(list(HAN_SURNAMES + MONGOL_SURNAMES)) & (full_name.str.len() >= 2)
    title = full_name.str[0] + np.where(calls["caller_sex"] == "F", "女士", "先生")
    titled = (u >= config.caller_name_full) & (u < config.caller_name_full + config.caller_name_title)
    calls["caller_name"] = np.where(
        u >= config.caller_name_full + config.caller_name_title,
        None,
        np.where(titled & has_surname.to_numpy(), title, full_name),
    )
    phone = persons["phone"].to_numpy()[caller].copy()
    unregistered = rng.random(k) < config.phone_not_registered
    phone[unregistered | pd.isna(phone)] = make_phones(rng, int((unregistered | pd.isna(phone)).sum()))
    u = rng.random(k)
    calls["phone_shown"] = np.where(
        u < config.phone_full,
        phone,
        np.where(u < config.phone_full + config.phone_masked, mask_phone(phone), None),
    )
    ids = persons["id_number"].to_numpy()[caller]
    u = rng.random(k)
    calls["id_shown"] = np.where(
        u < config.id_full, ids, np.where(u < config.id_full + config.id_masked, mask_id(ids, rng), None)
    )
    _channels_and_refusals(config, calls, ids, rng)

    at_home = _at_home(calls, rng)
    place = calls["place_household"].to_numpy()
    addr = addresses.iloc[place]
    street = _street_locations(rng, addr)
    calls["location_text"] = np.where(at_home, spoken_address(rng, addr), street)
    # Away from home, the call falls to the station where it happened: another station of the same county.
    elsewhere = rng.integers(0, len(addresses), k)
    other_station = addresses["station_id"].to_numpy()[elsewhere]
    same_county = addresses["county_code"].to_numpy()[elsewhere] == addr["county_code"].to_numpy()
    calls["station_id"] = np.where(at_home | ~same_county, addr["station_id"].to_numpy(), other_station)
    calls["detail"] = np.clip(rng.beta(4, 2, k) - 0.1 * (calls["caller_role"] == "passerby"), 0, 1).round(3)
    calls = _log_twice(config, calls, rng)
    calls["category_l1"], calls["category_l2"], calls["disposition"] = _codes(config, calls, rng)
    ymd = calls["received_at"].dt.strftime("%Y%m%d")
    seq = calls.groupby(ymd).cumcount() + 1
    calls["incident_id"] = "J1505" + ymd + seq.astype(str).str.zfill(5)
    return calls


def _channels_and_refusals(config: SimConfig, calls: pd.DataFrame, ids: np.ndarray, rng: np.random.Generator) -> None:
    """How the call reached the police (110, a 12345 transfer, in person) and what the caller left on record.

    Adds ``channel`` and ``refused``. A 12345 transfer carries the hotline's
    name and phone, rarely an ID; at a station the ID card is read, so the ID
    is written in full more often; some callers leave no contact at all, and
    some refuse their name and ID (the record says so).
    """
    k = len(calls)
    key = np.where(calls["call_type"] == "dispute", calls["category"], calls["call_type"]).astype(str)
    p_hotline = np.array([config.channel_12345.get(x, 0.0) for x in key])
    p_station = np.array([config.channel_in_person.get(x, 0.0) for x in key])
    u = rng.random(k)
    harm = calls[["violence", "weapon", "injury", "threat", "self_harm"]].to_numpy(bool).any(axis=1)
    urgent = calls["escalation_call"].to_numpy(bool) | harm  # nobody routes a fight through 12345
    channel = np.where(u < p_hotline, "12345", np.where(u < p_hotline + p_station, "in_person", "110"))
    channel[urgent & (channel == "12345")] = "110"
    channel[calls["escalation_call"].to_numpy(bool)] = "110"
    calls["channel"] = channel
    hotline, station = channel == "12345", channel == "in_person"
    id_shown = calls["id_shown"].to_numpy(dtype=object).copy()
    id_shown[hotline & (rng.random(k) < 0.8)] = None
    read_card = station & (rng.random(k) < 0.6)
    id_shown[read_card] = ids[read_card]
    phone = calls["phone_shown"].to_numpy(dtype=object).copy()
    u = rng.random(k)
    nothing = ~station & (u < config.no_contact_given)
    refused = ~station & ~nothing & (u < config.no_contact_given + config.refused_details)
    phone[nothing] = None
    id_shown[nothing | refused] = None
    name = calls["caller_name"].to_numpy(dtype=object).copy()
    name[refused] = None
    calls["phone_shown"], calls["id_shown"], calls["caller_name"] = phone, id_shown, name
    calls["refused"] = refused


def _log_twice(config: SimConfig, calls: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Log a few calls twice: a copy 40-150 seconds later, ``duplicate_of`` = the first record's row.

    The copy is the same call (same caller, place, truth and narrative body;
    ``render_calls`` copies the body), typed into a second record, so it gets
    its own incident number and code. Rows are re-sorted by time;
    ``duplicate_of`` is -1 for records that are not copies.
    """
    k = len(calls)
    calls = calls.assign(_row=np.arange(k), duplicate_of=-1)
    pick = np.flatnonzero(rng.random(k) < config.duplicate_log)
    copies = calls.iloc[pick].copy()
    copies["duplicate_of"] = copies["_row"].to_numpy()
    copies["_row"] = np.arange(k, k + len(pick))
    copies["received_at"] = copies["received_at"] + pd.to_timedelta(rng.integers(40, 151, len(pick)), unit="s")
    calls = pd.concat([calls, copies], ignore_index=True)
    calls = calls.sort_values(["received_at", "conflict_row", "_row"], kind="stable").reset_index(drop=True)
    position = np.empty(len(calls), dtype=np.int64)
    position[calls["_row"].to_numpy()] = np.arange(len(calls))
    dup = calls["duplicate_of"].to_numpy()
    calls["duplicate_of"] = np.where(dup >= 0, position[np.maximum(dup, 0)], -1)
    return calls.drop(columns="_row")


def _at_home(calls: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """Whether the call is about the caller's (or the conflict's) home address."""
    home_share = {
        "family": 0.92,
        "neighbor": 0.95,
        "land": 0.8,
        "debt": 0.55,
        "labor": 0.2,
        "medical_school": 0.1,
        "property": 0.6,
        "other": 0.35,
        "theft": 0.45,
        "fire": 0.7,
        "help": 0.5,
        "noise": 0.8,
        "missing_person": 0.6,
        "suspicious": 0.4,
        "drunk_person": 0.1,
        "consult": 0.6,
        "alarm_false": 0.6,
    }
    key = np.where(calls["call_type"] == "dispute", calls["category"], calls["call_type"]).astype(str)
    share = np.array([home_share.get(x, 0.05) for x in key])
    return rng.random(len(calls)) < share


def spoken_address(rng: np.random.Generator, addr: pd.DataFrame) -> np.ndarray:
    """An address as a caller says it: whole, shortened, as 4-1-302, only the compound, or misspelt."""
    k = len(addr)
    a = addr.reset_index(drop=True)
    urban = (a["area_type"] == "urban").to_numpy()
    county, town, comm = a["county_name"], a["township"], a["community"]
    b, u_, r, h = (a[c].astype("str") for c in ("building", "unit", "room", "house_no"))
    room_part = b + "号楼" + u_ + "单元" + r + "室"
    village_no = comm + h + "号"
    short_rural = town + village_no
    vague = comm + pd.Series(np.array(["门口", "附近", "", "里"])[rng.integers(0, 4, k)])
    choices = [
        a["address_text"],
        np.where(urban, county + comm + room_part, short_rural),
        np.where(urban, comm + room_part, village_no),
        np.where(urban, comm + b + "-" + u_ + "-" + r, county + village_no),
        vague,
    ]
    u = rng.random(k)
    spoken = np.select(
        [u < 0.25, u < 0.55, u < 0.72, u < 0.82, u < 0.94],
        [np.asarray(c, dtype=object) for c in choices],
        default=_misspell(np.where(urban, comm + room_part, short_rural)),
    )
    return spoken.astype(object)


_SIMILAR = str.maketrans(
    {"园": "圆", "苑": "院", "村": "邨", "华": "化", "府": "付", "锦": "金", "嘎": "尕", "景": "境"}
)


def _misspell(text: np.ndarray) -> np.ndarray:
    """Near-homophone slips call takers make when typing an address."""
    return np.array([t.translate(_SIMILAR) for t in text], dtype=object)


def _street_locations(rng: np.random.Generator, addr: pd.DataFrame) -> np.ndarray:
    """A public place in the caller's county: a crossing, a market, a shop door."""
    k = len(addr)
    places = np.array(
        [
            "路口",
            "超市门口",
            "市场",
            "饭店",
            "医院门口",
            "学校门口",
            "工地",
            "广场",
            "加油站",
            "路边",
            "公交站",
            "银行门口",
            "KTV门口",
            "烧烤店",
        ]
    )
    roads = np.array(
        ["建国路", "霍林河大街", "和平路", "民主路", "科尔沁大街", "永清大街", "新华路", "交通路", "明仁大街"]
    )
    a = addr.reset_index(drop=True)
    town = a["township"].str.replace("街道|镇|苏木", "", regex=True)
    where = np.where(a["area_type"] == "urban", roads[rng.integers(0, len(roads), k)], town)
    return (a["county_name"] + where + places[rng.integers(0, len(places), k)]).to_numpy(dtype=object)


def _codes(
    config: SimConfig, calls: pd.DataFrame, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Police category (two levels) and disposition, as a busy call taker would code them."""
    k = len(calls)
    dispute = (calls["call_type"] == "dispute").to_numpy()
    category = calls["category"].fillna("other").to_numpy().astype(str)
    l1 = np.empty(k, dtype=object)
    l2 = np.empty(k, dtype=object)
    u = rng.random(k)
    coded = dispute & (u < config.dispute_coded_as_dispute)
    wrong = coded & (rng.random(k) < 0.15)
    keys = np.array(list(_CODE_DISPUTE))
    cat_for_code = np.where(wrong, keys[rng.integers(0, len(keys), k)], category)
    l1[coded] = "纠纷警情"
    l2[coded] = [_CODE_DISPUTE[c] for c in cat_for_code[coded]]
    violent = calls["violence"].to_numpy()
    family = category == "family"
    rest = dispute & ~coded
    fight = rest & violent
    l1[fight] = "治安警情"
    l2[fight] = "打架斗殴"
    calm = rest & ~violent
    l1[calm] = np.where(rng.random(int(calm.sum())) < 0.6, "群众求助", "其他警情")
    l2[calm] = np.where(l1[calm] == "群众求助", "其他求助", "其他")
    # Family violence: mostly 家庭暴力 (虐待 between parent and child), with the noise of a busy desk.
    fv = np.flatnonzero(dispute & family & violent)
    names = np.array(list(config.family_violence_codes))
    p = np.array(list(config.family_violence_codes.values()), float)
    abuse = int(np.flatnonzero(names == "虐待")[0]) if "虐待" in config.family_violence_codes else -1
    parent_child = np.isin(calls["counterpart"].to_numpy(dtype=object)[fv], ["son", "daughter"])
    p_pc = p.copy()
    if abuse >= 0:
        p_pc[abuse] *= 3
    u = rng.random(len(fv))
    drawn = np.where(
        parent_child,
        np.searchsorted(np.cumsum(p_pc / p_pc.sum()), u, side="right"),
        np.searchsorted(np.cumsum(p / p.sum()), u, side="right"),
    )
    fv_l2 = names[np.minimum(drawn, len(names) - 1)]
    l2[fv] = fv_l2
    l1[fv] = np.select([np.isin(fv_l2, ["家庭纠纷"]), fv_l2 == "其他"], ["纠纷警情", "其他警情"], default="治安警情")
    calm_family = np.flatnonzero(dispute & family & ~violent & (rng.random(k) < config.family_calm_coded_violence))
    l1[calm_family], l2[calm_family] = "治安警情", "家庭暴力"
    esc = calls["escalation_call"].to_numpy()
    l1[esc] = np.where(rng.random(int(esc.sum())) < 0.7, "刑事警情", "治安警情")
    l2[esc] = np.where(l1[esc] == "刑事警情", "故意伤害", "殴打他人")
    other = ~dispute
    types = calls["call_type"].to_numpy()
    l1[other] = [_CODE_OTHER[t][0] for t in types[other]]
    l2[other] = [_CODE_OTHER[t][1] for t in types[other]]
    fare = types == "fare_dispute"
    l1[fare & (rng.random(k) < 0.5)] = "群众求助"
    disposition = np.where(
        dispute,
        np.array(_DISPOSITION_DISPUTE)[rng.integers(0, len(_DISPOSITION_DISPUTE), k)],
        np.array([_DISPOSITION_OTHER.get(t, "现场处置") for t in types]),
    )
    disposition[esc] = "受案登记"
    return l1, l2, disposition.astype(object)
