"""Tongliao's geography: 9 counties, 137 stations, compounds, villages and addresses.

Households are placed first by county (population shares), then by area type
(urban compound, farming village, pastoral 嘎查), then packed into compounds
and villages in order, so that households next to each other in the packing
are physical neighbours (same unit and floor, the floor above, the next house).
Neighbour disputes are drawn from exactly those pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from simulation.config import COUNTIES, N_STATIONS

UNITS_PER_BUILDING = 3
FLOORS = 6
DOORS = 2
PER_BUILDING = UNITS_PER_BUILDING * FLOORS * DOORS
COMPOUND_SIZE = (200, 1200)
VILLAGE_SIZE = (120, 450)

_COMPOUND_A = list("阳光金桥富民幸福新城和谐明珠锦绣华府御景康居龙湖温馨丽都春晖盛世嘉禾翰林东方铁路福泽")
_COMPOUND_SUFFIX = ("小区", "花园", "家园", "佳苑", "新村", "公寓", "雅居", "华庭")
_VILLAGE_HAN = list("新立永兴太平前后东西南北三合双胜长发福庆胜利联合红光丰收")
_GACHA_A = (
    "巴彦",
    "乌兰",
    "哈日",
    "查干",
    "宝力",
    "额尔敦",
    "呼和",
    "套海",
    "努古斯",
    "阿日",
    "伊和",
    "敖包",
    "希伯",
)
_GACHA_B = ("塔拉", "努拉", "淖尔", "花", "吐", "锡勒", "高勒", "浩特", "布拉格", "图")


@dataclass(frozen=True)
class Geography:
    """Stations and the address of every household."""

    stations: pd.DataFrame
    addresses: pd.DataFrame
    household_address: np.ndarray


def allocate(total: int, shares: np.ndarray, minimum: int = 0) -> np.ndarray:
    """Split ``total`` into integer parts proportional to ``shares`` (largest remainder)."""
    raw = shares / shares.sum() * (total - minimum * len(shares))
    base = np.floor(raw).astype(int)
    remainder = total - minimum * len(shares) - base.sum()
    base[np.argsort(-(raw - base), kind="stable")[:remainder]] += 1
    return base + minimum


def build_stations() -> pd.DataFrame:
    """137 stations over 9 counties; each is an urban or a township (rural) station."""
    shares = np.array([c.population_share for c in COUNTIES])
    per_county = allocate(N_STATIONS, shares, minimum=3)
    rows = []
    for county, n in zip(COUNTIES, per_county, strict=True):
        n_urban = max(1, round(n * county.urban_share))
        if n_urban == n and county.urban_share < 0.95:
            n_urban = n - 1
        for k in range(n):
            township = county.townships[k % len(county.townships)]
            lap = k // len(county.townships)
            name = township + ("", "东", "西", "南", "北")[lap % 5] + "派出所"
            rows.append((county.code, county.name, township, name, k < n_urban))
    frame = pd.DataFrame(rows, columns=["county_code", "county_name", "township", "station_name", "urban"])
    frame.insert(0, "station_id", [f"S{i + 1:03d}" for i in range(len(frame))])
    return frame


def _sizes(rng: np.random.Generator, n: int, bounds: tuple[int, int]) -> np.ndarray:
    """Group sizes (compound or village) covering ``n`` households."""
    mean = sum(bounds) / 2
    sizes = rng.integers(bounds[0], bounds[1] + 1, int(n / mean) + 2)
    sizes = sizes[: int(np.searchsorted(np.cumsum(sizes), n)) + 1]
    sizes[-1] -= sizes.sum() - n
    return sizes[sizes > 0]


def place_households(rng: np.random.Generator, n_households: int) -> Geography:
    """Give every household an address; returns stations, addresses and the household->address map."""
    stations = build_stations()
    shares = np.array([c.population_share for c in COUNTIES])
    county_idx = np.sort(rng.choice(len(COUNTIES), n_households, p=shares / shares.sum()))
    urban_p = np.array([c.urban_share for c in COUNTIES])[county_idx]
    pastoral_p = np.array([c.pastoral_share for c in COUNTIES])[county_idx]
    u = rng.random(n_households)
    area = np.where(u < urban_p, "urban", np.where(u < urban_p + pastoral_p, "pastoral", "rural"))

    parts = []
    compound_counter = 0
    for ci, county in enumerate(COUNTIES):
        county_st = stations[stations["county_code"] == county.code]
        urban_st = county_st[county_st["urban"]]
        rural_st = county_st[~county_st["urban"]]
        if rural_st.empty:
            rural_st = urban_st
        for area_type, pool in (("urban", urban_st), ("rural", rural_st), ("pastoral", rural_st)):
            members = np.flatnonzero((county_idx == ci) & (area == area_type))
            if len(members) == 0:
                continue
            station_pick = np.sort(rng.integers(0, len(pool), len(members)))
            for si in np.unique(station_pick):
                hh = members[station_pick == si]
                st = pool.iloc[si]
                bounds = COMPOUND_SIZE if area_type == "urban" else VILLAGE_SIZE
                sizes = _sizes(rng, len(hh), bounds)
                group = np.repeat(np.arange(len(sizes)), sizes)
                rank = np.arange(len(hh)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
                names = _community_names(rng, area_type, len(sizes), compound_counter)
                compound_counter += len(sizes)
                parts.append(
                    pd.DataFrame(
                        {
                            "household_index": hh,
                            "county_code": county.code,
                            "county_name": county.name,
                            "station_id": st["station_id"],
                            "station_name": st["station_name"],
                            "area_type": area_type,
                            "township": _township_name(st["township"], area_type),
                            "community": names[group],
                            "community_key": compound_counter - len(sizes) + group,
                            "rank": rank,
                        }
                    )
                )
    placed = pd.concat(parts, ignore_index=True).sort_values("household_index", kind="stable")
    placed["community"] = _disambiguate(placed)
    urban = placed["area_type"].to_numpy() == "urban"
    rank = placed["rank"].to_numpy()
    building = rank // PER_BUILDING + 1
    unit = (rank % PER_BUILDING) // (FLOORS * DOORS) + 1
    floor = (rank % (FLOORS * DOORS)) // DOORS + 1
    room = floor * 100 + rank % DOORS + 1
    placed["building"] = _masked_int(building, urban)
    placed["unit"] = _masked_int(unit, urban)
    placed["room"] = _masked_int(room, urban)
    placed["house_no"] = _masked_int(rank + 1, ~urban)
    prefix = "通辽市" + placed["county_name"] + placed["township"] + placed["community"]
    urban_text = (
        prefix
        + placed["building"].astype(str)
        + "号楼"
        + placed["unit"].astype(str)
        + "单元"
        + placed["room"].astype(str)
        + "室"
    )
    rural_text = prefix + placed["house_no"].astype(str) + "号"
    placed["address_text"] = np.where(urban, urban_text, rural_text)
    placed.insert(0, "address_id", [f"A{i + 1:08d}" for i in range(len(placed))])
    addresses = placed.drop(columns=["household_index", "rank", "community_key"]).reset_index(drop=True)
    return Geography(stations, addresses, addresses["address_id"].to_numpy())


def _masked_int(values: np.ndarray, keep: np.ndarray) -> pd.array:
    """Nullable integers: ``values`` where ``keep``, missing elsewhere."""
    return pd.array(np.where(keep, values, 0), dtype="Int64", copy=False).__class__(
        np.where(keep, values, 0).astype("int64"), ~keep
    )


def _disambiguate(placed: pd.DataFrame) -> pd.Series:
    """Two compounds with one name in one township get 二区, 三区 ... so addresses stay unique."""
    keys = placed[["county_code", "township", "community", "community_key"]].drop_duplicates("community_key")
    nth = keys.groupby(["county_code", "township", "community"], sort=False).cumcount()
    suffix = np.where(nth > 0, (nth + 1).astype(str) + "区", "")
    renamed = pd.Series(keys["community"].to_numpy() + suffix, index=keys["community_key"].to_numpy())
    return placed["community_key"].map(renamed)


def _township_name(base: str, area_type: str) -> str:
    if area_type == "urban":
        return base + "街道"
    return base + ("苏木" if area_type == "pastoral" else "镇")


def _community_names(rng: np.random.Generator, area_type: str, n: int, offset: int) -> np.ndarray:
    """Distinct-looking names; the running ``offset`` keeps them unique across the city."""
    if area_type == "urban":
        a = np.array(_COMPOUND_A)[rng.integers(0, len(_COMPOUND_A), (n, 2))]
        stem = np.char.add(a[:, 0], a[:, 1])
        suffix = np.array(_COMPOUND_SUFFIX)[rng.integers(0, len(_COMPOUND_SUFFIX), n)]
    elif area_type == "pastoral":
        stem = np.char.add(
            np.array(_GACHA_A)[rng.integers(0, len(_GACHA_A), n)],
            np.array(_GACHA_B)[rng.integers(0, len(_GACHA_B), n)],
        )
        suffix = np.full(n, "嘎查")
    else:
        a = np.array(_VILLAGE_HAN)[rng.integers(0, len(_VILLAGE_HAN), (n, 2))]
        stem = np.char.add(a[:, 0], a[:, 1])
        suffix = np.where(rng.random(n) < 0.8, "村", "屯")
    # Real names repeat across a city; a phase number disambiguates within this one.
    phase = np.array(["", "一期", "二期", "三期", "东区", "西区", "南区", "北区"])[(np.arange(n) + offset) % 8]
    return np.char.add(np.char.add(stem, suffix), np.where(suffix == "小区", phase, "")).astype(object)
