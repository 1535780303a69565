"""Households and persons (实有人口), with observed and latent risk factors.

Everything is drawn for whole arrays at once: a household-size draw, then one
row per member with its position in the household deciding the kinship
relation (户主, 配偶, 子女, 父母 ...). Risk factors the police can see
(mental illness registry, prior record, community correction, employment)
go into ``persons``; the ones they cannot (alcohol misuse, debt stress,
temper) stay in ``truth/persons_latent``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from simulation.config import COUNTIES, HOUSEHOLD_SIZE_P, SimConfig
from simulation.geography import Geography, place_households
from simulation.identity import make_id_numbers, make_names, make_phones


@dataclass(frozen=True)
class Population:
    """The registry tables plus the latent traits the simulator alone knows."""

    geography: Geography
    households: pd.DataFrame
    persons: pd.DataFrame
    latent: pd.DataFrame


def draw_household_sizes(rng: np.random.Generator, persons: int) -> np.ndarray:
    """Sizes 1..6 whose sum is exactly ``persons``."""
    p = np.array(HOUSEHOLD_SIZE_P)
    mean = float(np.arange(1, 7) @ p)
    sizes = rng.choice(np.arange(1, 7), int(persons / mean * 1.05) + 10, p=p)
    cut = int(np.searchsorted(np.cumsum(sizes), persons))
    sizes = sizes[: cut + 1]
    sizes[-1] -= sizes.sum() - persons
    return sizes[sizes > 0]


def _relations(rng: np.random.Generator, size: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Kinship to the head by position: 0 head, 1 mostly spouse, then children, parents, grandchildren."""
    u = rng.random(len(position))
    rel = np.full(len(position), "子女", dtype=object)
    rel[position == 0] = "户主"
    second = position == 1
    rel[second & (u < 0.82)] = "配偶"
    rel[second & (u >= 0.82) & (u < 0.90)] = "兄弟姐妹"
    rel[second & (u >= 0.90)] = "父母"
    later = position >= 2
    rel[later & (u < 0.62)] = "子女"
    rel[later & (u >= 0.62) & (u < 0.78)] = "父母"
    rel[later & (u >= 0.78) & (u < 0.90)] = "孙子女"
    rel[later & (u >= 0.90) & (u < 0.95)] = "儿媳女婿"
    rel[later & (u >= 0.95)] = "其他"
    return rel


def build_population(config: SimConfig, rng: np.random.Generator) -> Population:
    """Draw households, place them, and fill them with persons."""
    sizes = draw_household_sizes(rng, config.persons)
    n_hh = len(sizes)
    geo = place_households(rng, n_hh)
    addresses = geo.addresses

    hh_index = np.repeat(np.arange(n_hh), sizes)
    position = np.arange(len(hh_index)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    size_of = sizes[hh_index]
    relation = _relations(rng, size_of, position)
    n = len(hh_index)

    area = addresses["area_type"].to_numpy()[hh_index]
    county_code = addresses["county_code"].to_numpy()[hh_index]
    mongol_share = dict((c.code, c.mongol_share) for c in COUNTIES)
    hh_mongol = rng.random(n_hh) < np.vectorize(mongol_share.get)(addresses["county_code"].to_numpy())
    mongol = np.where(rng.random(n) < 0.9, hh_mongol[hh_index], ~hh_mongol[hh_index])
    minority = rng.random(n)
    ethnicity = np.where(mongol, "蒙古族", np.where(minority < 0.03, "满族", np.where(minority < 0.04, "回族", "汉族")))

    # Ages: single heads skew young or old; children 20-35 years younger than the head.
    head_age = np.clip(rng.normal(48, 14, n_hh), 19, 92)
    head_age[sizes == 1] = np.clip(rng.normal(45, 19, int((sizes == 1).sum())), 18, 95)
    age = head_age[hh_index].copy()
    rel_spouse = relation == "配偶"
    age[rel_spouse] += rng.normal(-1.5, 3.5, int(rel_spouse.sum()))
    for rel, lo, hi in (
        ("子女", -36, -18),
        ("孙子女", -60, -42),
        ("儿媳女婿", -34, -20),
        ("兄弟姐妹", -8, 8),
        ("父母", 20, 34),
        ("其他", -30, 20),
    ):
        mask = relation == rel
        age[mask] += rng.uniform(lo, hi, int(mask.sum()))
    age = np.clip(age, 0, 99)

    head_male = rng.random(n_hh) < 0.72
    sex_male = rng.random(n) < 0.5
    sex_male[position == 0] = head_male[hh_index][position == 0]
    sex_male[rel_spouse] = ~head_male[hh_index][rel_spouse]
    sex = np.where(sex_male, "M", "F")

    start = pd.Timestamp(config.start)
    birth = (
        start
        - pd.to_timedelta(np.round(age * 365.25).astype(np.int64), unit="D")
        - pd.to_timedelta(rng.integers(0, 365, n), unit="D")
    )
    birth = pd.Series(birth).dt.normalize()

    floating_hh = rng.random(n_hh) < np.where(
        addresses["area_type"].to_numpy() == "urban", config.floating_share_urban, config.floating_share_rural
    )
    employment = _employment(rng, age, area)
    adult = age >= 18

    alcohol = adult & (rng.random(n) < np.where(sex_male, config.alcohol_misuse_male, config.alcohol_misuse_female))
    temper = rng.normal(0.0, 1.0, n) + 0.6 * alcohol
    prior = adult & (
        rng.random(n)
        < np.where(sex_male, config.prior_record_male, config.prior_record_female) * np.exp(0.6 * temper) / 1.2
    )
    mental = (age >= 16) & (rng.random(n) < config.mental_illness_registry)
    correction = adult & ~prior & (rng.random(n) < config.community_correction) | (prior & (rng.random(n) < 0.06))
    debt_stress = adult & (rng.random(n) < config.debt_stress * np.where(employment == "unemployed", 2.5, 1.0))

    names = make_names(rng, sex, mongol)
    id_numbers = make_id_numbers(rng, county_code, birth, sex)
    phones = make_phones(rng, n)
    has_phone = (age >= 14) & (rng.random(n) < config.phone_owner_adult)

    household_ids = np.array([f"H{i + 1:08d}" for i in range(n_hh)], dtype=object)
    person_ids = np.array([f"P{i + 1:08d}" for i in range(n)], dtype=object)
    persons = pd.DataFrame(
        {
            "person_id": person_ids,
            "id_number": id_numbers,
            "name": names,
            "sex": sex,
            "birth_date": birth.astype("datetime64[ns]"),
            "ethnicity": ethnicity,
            "household_id": household_ids[hh_index],
            "relation_to_head": relation,
            "residence_type": np.where(floating_hh[hh_index], "floating", "registered"),
            "employment": employment,
            "phone": np.where(has_phone, phones, None),
            "mental_illness_registry": mental,
            "community_correction": correction,
            "prior_record": prior,
        }
    )
    households = pd.DataFrame(
        {
            "household_id": household_ids,
            "address_id": geo.household_address,
            "head_person_id": person_ids[np.cumsum(sizes) - sizes],
            "size": sizes.astype("int64"),
            "household_type": np.where(floating_hh, "floating", "registered"),
        }
    )
    latent = pd.DataFrame(
        {
            "person_id": person_ids,
            "alcohol_misuse": alcohol,
            "debt_stress": debt_stress,
            "temper": temper.round(4),
            "age": age.round(1),
        }
    )
    return Population(geo, households, persons, latent)


def _employment(rng: np.random.Generator, age: np.ndarray, area: np.ndarray) -> np.ndarray:
    u = rng.random(len(age))
    working = np.where(
        area == "urban",
        np.where(u < 0.52, "employed", np.where(u < 0.78, "self_employed", "unemployed")),
        np.where(
            area == "pastoral",
            np.where(u < 0.8, "herder", np.where(u < 0.9, "self_employed", "unemployed")),
            np.where(u < 0.78, "farmer", np.where(u < 0.9, "self_employed", "unemployed")),
        ),
    )
    student = rng.random(len(age)) < np.clip((23 - age) / 6, 0, 1)
    return np.where(
        age < 7, "child", np.where((age < 23) & student, "student", np.where(age >= 62, "retired", working))
    ).astype(object)
