"""Latent conflicts: who is in dispute with whom, about what, from when.

A conflict is the hidden cause behind dispute calls. Parties are drawn from
the places disputes really come from (BRIEF §4): spouses and kin inside a
household, ex-partners, physical neighbours, creditor and debtor, employer
and worker, village land neighbours, and a person against an institution
(hospital, school, property company). People with a temper, alcohol misuse,
debt stress or no job get into more conflicts, which is why the latent
traits matter downstream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from simulation.config import CATEGORIES, CATEGORY_SHARE, SimConfig
from simulation.dynamics import seasonality
from simulation.population import Population

NO_PERSON = -1


@dataclass(frozen=True)
class People:
    """Column arrays over persons, indexed by row number, for fast vectorised draws."""

    household: np.ndarray
    age: np.ndarray
    male: np.ndarray
    county: np.ndarray
    area: np.ndarray
    relation: np.ndarray
    employment: np.ndarray
    alcohol: np.ndarray
    temper: np.ndarray
    debt_stress: np.ndarray
    mental: np.ndarray
    prior: np.ndarray

    @classmethod
    def of(cls, pop: Population) -> People:
        persons, latent = pop.persons, pop.latent
        hh_row = pd.Series(np.arange(len(pop.households)), index=pop.households["household_id"])
        household = hh_row.loc[persons["household_id"]].to_numpy()
        addr = pop.geography.addresses.set_index("address_id").loc[pop.households["address_id"]]
        return cls(
            household=household,
            age=latent["age"].to_numpy(),
            male=(persons["sex"] == "M").to_numpy(),
            county=addr["county_code"].to_numpy()[household],
            area=addr["area_type"].to_numpy()[household],
            relation=persons["relation_to_head"].to_numpy(),
            employment=persons["employment"].to_numpy(),
            alcohol=latent["alcohol_misuse"].to_numpy(),
            temper=latent["temper"].to_numpy(),
            debt_stress=latent["debt_stress"].to_numpy(),
            mental=persons["mental_illness_registry"].to_numpy(),
            prior=persons["prior_record"].to_numpy(),
        )

    def proneness(self, idx: np.ndarray) -> np.ndarray:
        """Relative chance that a person is drawn into a conflict."""
        return np.exp(
            0.45 * self.temper[idx]
            + 0.6 * self.alcohol[idx]
            + 0.5 * self.debt_stress[idx]
            + 0.3 * (self.employment[idx] == "unemployed")
        )


def _weighted(rng: np.random.Generator, candidates: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    if len(candidates) == 0 or k == 0:
        return np.empty(0, dtype=np.int64)
    return candidates[rng.choice(len(candidates), k, p=weights / weights.sum())]


def _same_county_partner(rng: np.random.Generator, people: People, first: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """For each person in ``first``, a random person from ``pool`` in the same county (not themselves)."""
    order = pool[np.argsort(people.county[pool], kind="stable")]
    counties = people.county[order]
    lo = np.searchsorted(counties, people.county[first], side="left")
    hi = np.searchsorted(counties, people.county[first], side="right")
    pick = order[np.minimum(lo + (rng.random(len(first)) * (hi - lo)).astype(np.int64), len(order) - 1)]
    clash = (pick == first) | (people.household[pick] == people.household[first]) | (hi == lo)
    pick[clash] = order[rng.integers(0, len(order), int(clash.sum()))]
    return pick


def _household_pairs(pop: Population, people: People, relations: tuple[str, ...]) -> np.ndarray:
    """(head, member) row pairs for adult members with one of ``relations`` to the head."""
    heads = np.flatnonzero(people.relation == "户主")
    head_of = np.full(len(pop.households), -1)
    head_of[people.household[heads]] = heads
    members = np.flatnonzero(np.isin(people.relation, relations) & (people.age >= 16))
    return np.column_stack([head_of[people.household[members]], members])


def neighbour_pairs(pop: Population) -> np.ndarray:
    """Household row pairs living next to each other (same floor or one floor apart; next house)."""
    addr = pop.geography.addresses.reset_index(drop=True)
    hh_of_addr = pd.Series(np.arange(len(pop.households)), index=pop.households["address_id"])
    order = addr.sort_values(["county_code", "township", "community", "building", "unit", "room", "house_no"])
    hh = hh_of_addr.loc[order["address_id"]].to_numpy()
    community = (order["county_code"] + order["township"] + order["community"]).to_numpy()
    pairs = []
    for step in (1, 2):  # door across, floor above (urban); next house, two doors down (village)
        same = community[step:] == community[:-step]
        pairs.append(np.column_stack([hh[:-step][same], hh[step:][same]]))
    return np.concatenate(pairs)


def draw_conflicts(config: SimConfig, pop: Population, people: People, rng: np.random.Generator) -> pd.DataFrame:
    """All latent conflicts that are active at some point in the window (burn-in included)."""
    span = config.days + config.burn_in_days
    total = rng.poisson(config.conflicts_per_person_year * config.persons * span / 365.0)
    shares = np.array([CATEGORY_SHARE[c] for c in CATEGORIES])
    cat = rng.choice(len(CATEGORIES), total, p=shares / shares.sum())
    a = np.full(total, NO_PERSON)
    b = np.full(total, NO_PERSON)
    kind = np.empty(total, dtype=object)

    adults = np.flatnonzero(people.age >= 18)
    adult_w = people.proneness(adults)
    nb_pairs = neighbour_pairs(pop)
    heads = np.flatnonzero(people.relation == "户主")
    head_of = np.full(len(pop.households), -1)
    head_of[people.household[heads]] = heads

    for ci, category in enumerate(CATEGORIES):
        rows = np.flatnonzero(cat == ci)
        k = len(rows)
        if k == 0:
            continue
        if category == "family":
            sub = rng.choice(4, k, p=[0.58, 0.2, 0.1, 0.12])
            for s, (name, rels) in enumerate(
                (
                    ("spouse", ("配偶",)),
                    ("parent_child", ("子女", "父母")),
                    ("kin", ("兄弟姐妹", "儿媳女婿", "其他")),
                )
            ):
                r = rows[sub == s]
                pairs = _household_pairs(pop, people, rels)
                if len(pairs) == 0:
                    continue
                w = np.maximum(people.proneness(pairs[:, 0]), people.proneness(pairs[:, 1]))
                chosen = pairs[rng.choice(len(pairs), len(r), p=w / w.sum())]
                a[r], b[r], kind[r] = chosen[:, 0], chosen[:, 1], name
            r = rows[sub == 3]
            first = _weighted(rng, adults, adult_w, len(r))
            partner = np.empty(len(first), dtype=np.int64)
            for male in (True, False):
                m = people.male[first] == male
                opposite = adults[people.male[adults] != male]
                partner[m] = _same_county_partner(rng, people, first[m], opposite)
            a[r], b[r], kind[r] = first, partner, "ex_partner"
        elif category in ("neighbor", "land"):
            pool = nb_pairs
            if category == "land":
                rural = pop.geography.addresses["area_type"].to_numpy()[nb_pairs[:, 0]] != "urban"
                pool = nb_pairs[rural]
            pick = pool[rng.integers(0, len(pool), k)]
            a[rows], b[rows], kind[rows] = head_of[pick[:, 0]], head_of[pick[:, 1]], category
        elif category == "debt":
            debtor = _weighted(rng, adults, adult_w * (1 + 2 * people.debt_stress[adults]), k)
            a[rows], b[rows], kind[rows] = (
                _same_county_partner(rng, people, debtor, adults),
                debtor,
                "creditor_debtor",
            )
        elif category == "labor":
            workers = adults[np.isin(people.employment[adults], ("employed", "unemployed", "farmer"))]
            bosses = adults[people.employment[adults] == "self_employed"]
            worker = _weighted(rng, workers, people.proneness(workers), k)
            a[rows], b[rows], kind[rows] = (
                worker,
                _same_county_partner(rng, people, worker, bosses),
                "employer_worker",
            )
        elif category in ("medical_school", "property"):
            a[rows], kind[rows] = _weighted(rng, adults, adult_w, k), "institution"
        else:
            first = _weighted(rng, adults, adult_w, k)
            acquaintance = rng.random(k) < 0.6
            partner = _same_county_partner(rng, people, first, adults)
            a[rows], kind[rows] = first, "acquaintance"
            b[rows[acquaintance]] = partner[acquaintance]
            kind[rows[~acquaintance]] = "stranger"

    # The caller side (person_a) is usually the one at risk: in spouse conflicts mostly the woman.
    spouse = kind == "spouse"
    swap = spouse & people.male[a] & (rng.random(total) < 0.8)
    a[swap], b[swap] = b[swap], a[swap].copy()

    # Conflicts start when their season says (grassland in spring, wages before Spring Festival ...).
    season = seasonality(config)
    start = np.empty(total, dtype=np.int64)
    for ci in range(len(CATEGORIES)):
        rows = cat == ci
        start[rows] = rng.choice(season.shape[1], int(rows.sum()), p=season[ci] / season[ci].sum())
    start -= config.burn_in_days
    mean_duration = np.array([config.duration_days[c] for c in CATEGORIES])[cat]
    duration = np.maximum(1, rng.exponential(mean_duration)).astype(np.int64)
    has_b = b != NO_PERSON
    b_safe = np.where(has_b, b, 0)

    def either(arr: np.ndarray) -> np.ndarray:
        return arr[a] | (has_b & arr[b_safe])

    temper = np.maximum(people.temper[a], np.where(has_b, people.temper[b_safe], -9))
    severity0 = rng.normal(0, 1, total) + 0.35 * temper + 0.4 * either(people.alcohol)
    separation_day = np.full(total, np.iinfo(np.int64).max)
    sep = spouse & (rng.random(total) < 0.25)
    separation_day[sep] = start[sep] + (rng.random(int(sep.sum())) * duration[sep]).astype(np.int64)
    separation_day[kind == "ex_partner"] = start[kind == "ex_partner"]

    frame = pd.DataFrame(
        {
            "conflict_row": np.arange(total),
            "category": np.array(CATEGORIES)[cat],
            "kind": kind,
            "person_a": a,
            "person_b": b,
            "household_a": people.household[a],
            "household_b": np.where(has_b, people.household[b_safe], NO_PERSON),
            "start_day": start,
            "end_day": start + duration,
            "hidden": rng.random(total) < config.hidden_conflict_share,
            "severity0": severity0,
            "severity_drift": rng.normal(0.0, 0.006, total),
            "branching": np.minimum(rng.beta(2, 3.5, total) * config.branching_mean / (2 / 5.5), config.branching_max),
            "baseline_calls": rng.gamma(0.8, config.baseline_calls_mean / 0.8, total)
            * np.array([config.call_rate_multiplier[c] for c in CATEGORIES])[cat],
            "alcohol": either(people.alcohol),
            "temper": temper,
            "mental": either(people.mental),
            "prior": either(people.prior),
            "unemployed": either(people.employment == "unemployed"),
            "separation_day": separation_day,
        }
    )
    frame = frame.sort_values(["start_day", "conflict_row"], kind="stable").reset_index(drop=True)
    frame["conflict_row"] = np.arange(total)  # row number == conflict_row: the day loop indexes by position
    return frame
