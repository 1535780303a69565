"""What police records keep besides calls: cases, visits and known relations.

Cases come from escalations (民转刑) and from ordinary crime (theft, fraud,
street fights between strangers, whose suspects may live in any household, so
a violent case does not always follow a dispute). Visits are the stations'
door-to-door work: mediation after dispute calls, follow-ups, and routine
screening that sometimes finds a conflict nobody called about. Relations are
what the registry, visits and incidents happen to have written down: the real
links behind conflicts, only some of the time, among many links that never
lead to anything.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulation.config import SimConfig
from simulation.conflicts import NO_PERSON
from simulation.population import Population

_ESCALATION_CHARGES = {
    "family": (
        ("故意伤害", 0.58),
        ("殴打他人", 0.2),
        ("故意毁坏财物", 0.08),
        ("寻衅滋事", 0.05),
        ("非法拘禁", 0.04),
        ("故意杀人", 0.05),
    ),
    "debt": (
        ("故意伤害", 0.4),
        ("非法拘禁", 0.2),
        ("寻衅滋事", 0.18),
        ("故意毁坏财物", 0.1),
        ("殴打他人", 0.1),
        ("故意杀人", 0.02),
    ),
    "default": (
        ("故意伤害", 0.5),
        ("寻衅滋事", 0.2),
        ("故意毁坏财物", 0.14),
        ("殴打他人", 0.14),
        ("故意杀人", 0.02),
    ),
    "institution": (("寻衅滋事", 0.6), ("故意毁坏财物", 0.3), ("故意伤害", 0.1)),
}
_BACKGROUND_CASES = {
    "stranger_assault": (0.4, (("故意伤害", 0.3), ("寻衅滋事", 0.3), ("殴打他人", 0.3), ("抢劫", 0.1))),
    "theft": (0.35, (("盗窃", 1.0),)),
    "fraud": (0.5, (("诈骗", 1.0),)),
    "fare_dispute": (0.05, (("殴打他人", 1.0),)),
}
ADMINISTRATIVE = {"殴打他人"}


def _draw_charges(rng: np.random.Generator, table: tuple[tuple[str, float], ...], k: int) -> np.ndarray:
    names = np.array([c for c, _ in table])
    p = np.array([w for _, w in table])
    return names[rng.choice(len(names), k, p=p / p.sum())]


def _stamp(config: SimConfig, day: np.ndarray, rng: np.random.Generator, lag_days: int) -> pd.Series:
    offset = day + rng.integers(0, lag_days + 1, len(day))
    seconds = rng.integers(8 * 3600, 20 * 3600, len(day))
    return pd.Series(
        pd.Timestamp(config.start) + pd.to_timedelta(offset, unit="D") + pd.to_timedelta(seconds, unit="s")
    ).astype("datetime64[ns]")


def build_cases(
    config: SimConfig,
    pop: Population,
    conflicts: pd.DataFrame,
    escalations: pd.DataFrame,
    incidents: pd.DataFrame,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cases table (one row per case and person) and the escalation truth table."""
    person_ids = pop.persons["person_id"].to_numpy()
    stations = pop.geography.addresses["station_id"].to_numpy()
    esc = escalations[escalations["day"].between(0, config.days - 1)]
    conf = conflicts.set_index("conflict_row").loc[esc["conflict_row"]].reset_index()
    k = len(conf)
    charges = np.empty(k, dtype=object)
    for key in ("family", "debt", "institution", "default"):
        if key == "institution":
            m = (conf["kind"] == "institution").to_numpy()
        elif key == "default":
            m = pd.isna(charges)
        else:
            m = (conf["category"] == key).to_numpy() & (conf["kind"] != "institution").to_numpy()
        charges[m] = _draw_charges(rng, _ESCALATION_CHARGES[key], int(m.sum()))
    a, b = conf["person_a"].to_numpy(), conf["person_b"].to_numpy()
    suspect = np.where(b != NO_PERSON, b, a)
    source = incidents[incidents["escalation_call"]][["conflict_row", "day", "incident_id"]].drop_duplicates(
        ["conflict_row", "day"]
    )
    linked = (
        pd.DataFrame({"conflict_row": conf["conflict_row"], "day": esc["day"].to_numpy()})
        .merge(source, how="left", on=["conflict_row", "day"])["incident_id"]
        .to_numpy()
    )
    escalation_cases = pd.DataFrame(
        {
            "opened_at": _stamp(config, esc["day"].to_numpy(), rng, 3),
            "charge": charges,
            "station_id": stations[conf["household_a"].to_numpy()],
            "suspect": suspect,
            "victim": np.where(b != NO_PERSON, a, NO_PERSON),
            "source_incident_id": linked,
            "conflict_row": conf["conflict_row"].to_numpy(),
            "escalation_day": esc["day"].to_numpy(),
        }
    )

    parts = [escalation_cases]
    adults = np.flatnonzero(pop.latent["age"].to_numpy() >= 18)
    risk = np.exp(0.6 * pop.latent["temper"].to_numpy()[adults] + 1.0 * pop.persons["prior_record"].to_numpy()[adults])
    for call_type, (p_case, table) in _BACKGROUND_CASES.items():
        first_record = incidents["duplicate_of"].lt(0) if "duplicate_of" in incidents else True  # not a re-log
        calls = incidents[(incidents["call_type"] == call_type) & first_record & (rng.random(len(incidents)) < p_case)]
        kc = len(calls)
        charge = _draw_charges(rng, table, kc)
        violent = ~np.isin(charge, ("盗窃", "诈骗"))
        known_suspect = violent & (rng.random(kc) < 0.7)
        suspect = np.where(known_suspect, adults[rng.choice(len(adults), kc, p=risk / risk.sum())], NO_PERSON)
        parts.append(
            pd.DataFrame(
                {
                    "opened_at": _stamp(config, calls["day"].to_numpy(), rng, 2),
                    "charge": charge,
                    "station_id": calls["station_id"].to_numpy(),
                    "suspect": suspect,
                    "victim": calls["caller_row"].to_numpy(),
                    "source_incident_id": calls["incident_id"].to_numpy(),
                    "conflict_row": -1,
                    "escalation_day": -1,
                }
            )
        )
    cases = pd.concat(parts, ignore_index=True).sort_values(["opened_at", "conflict_row"], kind="stable")
    cases = cases[cases["opened_at"] < pd.Timestamp(config.start) + pd.Timedelta(days=config.days)]
    cases = cases.reset_index(drop=True)
    year = cases["opened_at"].dt.year.astype(str)
    cases["case_id"] = "AJ" + cases["station_id"] + year + (cases.groupby(year).cumcount() + 1).astype(str).str.zfill(6)

    long = pd.concat(
        [
            cases.assign(person_row=cases["suspect"], role="suspect"),
            cases.assign(person_row=cases["victim"], role="victim"),
        ]
    )
    long = long[long["person_row"] != NO_PERSON].sort_values(["opened_at", "case_id", "role"], kind="stable")
    table = pd.DataFrame(
        {
            "case_id": long["case_id"].to_numpy(),
            "opened_at": long["opened_at"].to_numpy(),
            "case_type": np.where(long["charge"].isin(ADMINISTRATIVE), "administrative", "criminal"),
            "charge": long["charge"].to_numpy(),
            "station_id": long["station_id"].to_numpy(),
            "person_id": person_ids[long["person_row"].to_numpy()],
            "role": long["role"].to_numpy(),
            "source_incident_id": long["source_incident_id"].to_numpy(),
        }
    ).drop_duplicates(["case_id", "person_id"])
    truth = cases[cases["conflict_row"] >= 0][["case_id", "conflict_row", "escalation_day", "charge", "opened_at"]]
    return table.reset_index(drop=True), truth.reset_index(drop=True)


def build_visits(
    config: SimConfig,
    pop: Population,
    conflicts: pd.DataFrame,
    mediations: pd.DataFrame,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Mediation after calls, follow-ups, and routine door-to-door screening."""
    hh_ids = pop.households["household_id"].to_numpy()
    stations = pop.geography.addresses["station_id"].to_numpy()
    med = mediations[mediations["day"] >= 0].merge(conflicts[["conflict_row", "household_a"]], on="conflict_row")
    k = len(med)
    mediation = pd.DataFrame(
        {
            "day": med["day"].to_numpy() + rng.integers(0, 6, k),
            "household": med["household_a"].to_numpy(),
            "visit_type": "调解",
            "outcome": np.array(["已化解", "调解中", "未化解"])[rng.choice(3, k, p=[0.55, 0.3, 0.15])],
        }
    )
    follow = mediation[rng.random(k) < 0.5].copy()
    follow["day"] += rng.integers(20, 41, len(follow))
    follow["visit_type"] = "回访"
    follow["outcome"] = np.array(["无异常", "已化解", "未化解"])[rng.choice(3, len(follow), p=[0.7, 0.2, 0.1])]

    n_routine = rng.poisson(config.routine_visits_per_household_year * len(hh_ids) * config.days / 365.0)
    routine = pd.DataFrame(
        {
            "day": rng.integers(0, config.days, n_routine),
            "household": rng.integers(0, len(hh_ids), n_routine),
        }
    )
    routine["visit_row"] = np.arange(n_routine)
    spans = pd.concat(
        [
            conflicts[["household_a", "start_day", "end_day"]].rename(columns={"household_a": "household"}),
            conflicts[conflicts["household_b"] >= 0][["household_b", "start_day", "end_day"]].rename(
                columns={"household_b": "household"}
            ),
        ]
    )
    hit = routine.merge(spans, on="household")
    hit = hit[(hit["start_day"] <= hit["day"]) & (hit["day"] < hit["end_day"])]["visit_row"].unique()
    in_conflict = np.zeros(n_routine, dtype=bool)
    in_conflict[hit] = True
    found = in_conflict & (rng.random(n_routine) < config.screening_finds_hidden)
    routine["visit_type"] = np.where(found, "矛盾排查", "入户走访")
    routine["outcome"] = np.where(
        found,
        np.array(["调解中", "未化解"])[rng.integers(0, 2, n_routine)],
        np.where(rng.random(n_routine) < 0.1, "未遇", "无异常"),
    )
    visits = pd.concat([mediation, follow, routine.drop(columns="visit_row")], ignore_index=True)
    visits = visits[visits["day"] < config.days]
    visits["visited_at"] = _stamp(config, visits["day"].to_numpy(), rng, 0).to_numpy()
    visits = visits.sort_values(["visited_at", "household"], kind="stable").reset_index(drop=True)
    return pd.DataFrame(
        {
            "visit_id": [f"V{i + 1:09d}" for i in range(len(visits))],
            "visited_at": visits["visited_at"].to_numpy(),
            "household_id": hh_ids[visits["household"].to_numpy()],
            "station_id": stations[visits["household"].to_numpy()],
            "visit_type": visits["visit_type"].to_numpy(),
            "outcome": visits["outcome"].to_numpy(),
        }
    )


_RECORDED = {
    "ex_partner": ("ex_partner", 0.6, "registry", (-2000, -30)),
    "neighbor": ("neighbor", 0.5, "visit", (0, 60)),
    "creditor_debtor": ("creditor_debtor", 0.35, "incident", (0, 30)),
    "employer_worker": ("employer_worker", 0.4, "visit", (0, 45)),
    "land": ("land_neighbor", 0.5, "visit", (0, 60)),
}


def build_relations(
    config: SimConfig,
    pop: Population,
    conflicts: pd.DataFrame,
    neighbour_pairs: np.ndarray,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Links on record: some true conflict links, among twice as many links that never matter."""
    person_ids = pop.persons["person_id"].to_numpy()
    head = np.cumsum(pop.households["size"].to_numpy()) - pop.households["size"].to_numpy()
    adults = np.flatnonzero(pop.latent["age"].to_numpy() >= 18)
    start = pd.Timestamp(config.start)
    parts = []
    for key, (relation, p_record, source, (lo, hi)) in _RECORDED.items():
        if key in ("neighbor", "land"):
            sel = (conflicts["category"] == key).to_numpy().copy()
        else:
            sel = (conflicts["kind"] == key).to_numpy().copy()
        sel &= (conflicts["person_b"] >= 0).to_numpy() & (rng.random(len(conflicts)) < p_record)
        c = conflicts[sel]
        parts.append(
            pd.DataFrame(
                {
                    "a": c["person_a"].to_numpy(),
                    "b": c["person_b"].to_numpy(),
                    "relation": relation,
                    "day": c["start_day"].to_numpy() + rng.integers(lo, hi + 1, len(c)),
                    "source": source,
                }
            )
        )
        n_noise = 2 * len(c) + 5
        if key in ("neighbor", "land"):
            pairs = neighbour_pairs[rng.integers(0, len(neighbour_pairs), n_noise)]
            na, nb = head[pairs[:, 0]], head[pairs[:, 1]]
        else:
            na, nb = (
                adults[rng.integers(0, len(adults), n_noise)],
                adults[rng.integers(0, len(adults), n_noise)],
            )
        parts.append(
            pd.DataFrame(
                {
                    "a": na,
                    "b": nb,
                    "relation": relation,
                    "day": rng.integers(-1500, config.days, n_noise),
                    "source": source,
                }
            )
        )
    n_cow = max(5, int(0.002 * len(adults)))
    parts.append(
        pd.DataFrame(
            {
                "a": adults[rng.integers(0, len(adults), n_cow)],
                "b": adults[rng.integers(0, len(adults), n_cow)],
                "relation": "coworker",
                "day": rng.integers(-1500, config.days, n_cow),
                "source": "registry",
            }
        )
    )
    rel = pd.concat(parts, ignore_index=True)
    rel = rel[(rel["a"] != rel["b"]) & (rel["day"] < config.days)]
    rel = rel.drop_duplicates(["a", "b", "relation"]).sort_values(["day", "a", "b"], kind="stable")
    since = (start + pd.to_timedelta(rel["day"], unit="D")).astype("datetime64[ns]")
    unknown = rng.random(len(rel)) < 0.1
    return pd.DataFrame(
        {
            "person_id_a": person_ids[rel["a"].to_numpy()],
            "person_id_b": person_ids[rel["b"].to_numpy()],
            "relation": rel["relation"].to_numpy(),
            "since": since.where(~unknown).to_numpy(),
            "source": rel["source"].to_numpy(),
        }
    ).reset_index(drop=True)
