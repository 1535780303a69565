"""Special analysis of one incident (专题研判): who was involved, what came before, what was done.

After a major incident the center asks: were these households known, did the
rules or a ranking warn about them, who visited, what did the station do? The
answer is built from the same tables the daily job uses: the incident's
parties are the household the pipeline linked the call to and the households
of the persons in the cases it opened; related households come from the
relations table. Every row is an id, a date, a category, a cue or a level:
never a narrative, a name, a phone or an ID number (persons appear only as
counts of suspects and victims).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from features.schema import VIOLENT_CHARGES
from models.escalations import escalation_lead_times, household_places, rules_verdicts
from models.warning import CUE_PHRASES
from pipelines.reports.data import CityData, ReportError

HISTORY_DAYS = 365
"""Calls and visits of the parties listed from this many days before the incident (to the data's end)."""
TIMELINE_DAYS = 90
"""The rules' level and points are charted over this many days before the incident."""
RELATION_NAMES = {
    "neighbor": "邻居",
    "ex_partner": "前配偶/前伴侣",
    "partner": "配偶/伴侣",
    "creditor_debtor": "债权债务",
    "employer_worker": "雇佣",
    "coworker": "同事",
    "land_neighbor": "地邻",
}
SOURCE_NAMES = {"registry": "登记", "visit": "走访", "incident": "警情"}
HOUSEHOLD_TYPE_NAMES = {"registered": "户籍户", "floating": "流动人口户"}
ROLE_NAMES = {"caller": "警情关联户", "suspect": "嫌疑人户", "victim": "受害人户"}


def cue_phrases(row: Mapping[str, Any]) -> list[str]:
    """The cue groups a call's words hit (动手/殴打, 持械 ...), in the rules' order."""
    return [phrase for group, phrase in CUE_PHRASES.items() if float(row.get(f"cue_{group}", 0) or 0) > 0]


def find_incident(city: CityData, incident_id: str) -> pd.Series:
    """The incident's row of the report's call table; an unknown id is a :class:`ReportError` that never echoes it."""
    rows = city.calls[city.calls["incident_id"] == incident_id]
    if rows.empty:
        raise ReportError(
            f"--incident: the id given ({len(incident_id)} characters) is not an incident_id of this dataset's "
            "incidents table; fix: copy the id (接警单号) from the incidents export, or pass --data for its export"
        )
    return rows.iloc[0]


def parties(city: CityData, incident: pd.Series) -> pd.DataFrame:
    """The households involved: the one the call was linked to, and those of the persons in the cases it opened."""
    tables = city.prepared.tables
    cases = tables["cases"]
    opened = cases[cases["source_incident_id"].astype(str) == incident["incident_id"]]
    member = opened["person_id"].map(
        tables["persons"].drop_duplicates("person_id").set_index("person_id")["household_id"]
    )
    roles: dict[str, set[str]] = {}
    if isinstance(incident["household_id"], str):
        roles.setdefault(incident["household_id"], set()).add("caller")
    for household, role in zip(member, opened["role"], strict=True):
        if isinstance(household, str):
            roles.setdefault(household, set()).add(str(role))
    order = {"caller": 0, "suspect": 1, "victim": 2}
    rows = [{"household_id": h, "roles": [ROLE_NAMES[r] for r in sorted(rs, key=order.get)]} for h, rs in roles.items()]
    out = pd.DataFrame(rows, columns=["household_id", "roles"])
    households = tables["households"].drop_duplicates("household_id").set_index("household_id")
    places = city.places.set_index("household_id")
    stations = city.stations.set_index("station_id")
    ids = out["household_id"].to_numpy(object)
    out["household_type"] = [
        HOUSEHOLD_TYPE_NAMES.get(v, v) for v in households["household_type"].reindex(ids).fillna("").to_numpy(object)
    ]
    out["size"] = households["size"].reindex(ids).to_numpy()
    out["station_id"] = places["station_id"].reindex(ids).to_numpy(object)
    out["station_name"] = stations["station_name"].reindex(out["station_id"]).to_numpy(object)
    out["community"] = places["community"].reindex(ids).to_numpy(object)
    return out


def case_rows(city: CityData, incident_id: str) -> pd.DataFrame:
    """The cases the incident opened: charge, type, when, and how many suspects and victims (no person ids)."""
    cases = city.prepared.tables["cases"]
    opened = cases[cases["source_incident_id"].astype(str) == incident_id]
    if opened.empty:
        return pd.DataFrame(columns=["case_id", "opened_at", "charge", "case_type", "violent", "suspects", "victims"])
    grouped = opened.groupby("case_id")
    out = pd.DataFrame(
        {
            "opened_at": grouped["opened_at"].min(),
            "charge": grouped["charge"].first(),
            "case_type": grouped["case_type"].first().map({"criminal": "刑事", "administrative": "行政"}),
            "suspects": grouped["role"].agg(lambda r: int((r == "suspect").sum())),
            "victims": grouped["role"].agg(lambda r: int((r == "victim").sum())),
        }
    ).reset_index()
    out["violent"] = out["charge"].isin(VIOLENT_CHARGES)
    return out.sort_values(["opened_at", "case_id"]).reset_index(drop=True)


def call_history(city: CityData, households: Sequence[str], incident: pd.Series) -> pd.DataFrame:
    """Every linked call of the households from a year before the incident to the data's end (no text)."""
    start = pd.Timestamp(incident["day"]) - pd.Timedelta(days=HISTORY_DAYS)
    calls = city.calls[city.calls["household_id"].isin(list(households)) & (city.calls["received_at"] >= start)]
    calls = calls.sort_values(["received_at", "incident_id"])
    return pd.DataFrame(
        {
            "household_id": calls["household_id"].to_numpy(object),
            "received_at": calls["received_at"].to_numpy(),
            "category_l2": calls["category_l2"].to_numpy(object),
            "is_dispute": calls["is_dispute"].to_numpy(bool),
            "category": calls["category"].to_numpy(object),
            "cues": [cue_phrases(r) for r in calls.to_dict("records")],
            "this_incident": (calls["incident_id"] == incident["incident_id"]).to_numpy(bool),
            "after": (calls["received_at"] > incident["received_at"]).to_numpy(bool),
        }
    )


def visit_history(city: CityData, households: Sequence[str], incident: pd.Series) -> pd.DataFrame:
    """The households' visits from a year before the incident to the data's end: when, kind, outcome."""
    visits = city.prepared.tables["visits"]
    start = pd.Timestamp(incident["day"]) - pd.Timedelta(days=HISTORY_DAYS)
    at = pd.to_datetime(visits["visited_at"])
    chosen = visits[visits["household_id"].isin(list(households)) & (at >= start)]
    out = chosen[["household_id", "visited_at", "visit_type", "outcome"]].sort_values("visited_at")
    out = out.assign(after=pd.to_datetime(out["visited_at"]) > incident["received_at"])
    return out.reset_index(drop=True)


def rules_timeline(city: CityData, households: Sequence[str], incident: pd.Series) -> pd.DataFrame:
    """The rules' level and points of each household on each morning of the 90 days before the incident, and its day."""
    day = pd.Timestamp(incident["day"])
    days = pd.date_range(day - pd.Timedelta(days=TIMELINE_DAYS), day, freq="D")
    grid = pd.DataFrame(
        {
            "household_id": np.repeat(np.asarray(list(households), dtype=object), len(days)),
            "day": np.tile(days.to_numpy(), len(households)),
        }
    )
    level, points = rules_verdicts(city.prepared.calls, grid["household_id"], grid["day"])
    return grid.assign(level=pd.Series(level, dtype=object), points=points)


def related_households(city: CityData, households: Sequence[str], incident: pd.Series) -> pd.DataFrame:
    """Households linked to the parties by a relation of their members (邻居, 债权债务 ...), with their recent calls.

    Per related household: the relation kinds and sources, its dispute calls
    in the year before the incident, and the rules' level that morning.
    """
    tables = city.prepared.tables
    persons = tables["persons"].drop_duplicates("person_id").set_index("person_id")["household_id"]
    relations = tables["relations"]
    columns = ["household_id", "related_to", "relations", "sources", "disputes_365d", "rules_level"]
    if relations.empty:
        return pd.DataFrame(columns=columns)
    a = relations["person_id_a"].map(persons)
    b = relations["person_id_b"].map(persons)
    inside = set(households)
    pairs = pd.concat(
        [
            pd.DataFrame({"from": a, "to": b, "relation": relations["relation"], "source": relations["source"]}),
            pd.DataFrame({"from": b, "to": a, "relation": relations["relation"], "source": relations["source"]}),
        ]
    )
    pairs = pairs[pairs["from"].isin(inside) & pairs["to"].notna() & ~pairs["to"].isin(inside)]
    if pairs.empty:
        return pd.DataFrame(columns=columns)
    grouped = pairs.groupby("to")
    out = (
        pd.DataFrame(
            {
                "related_to": grouped["from"].agg(lambda s: sorted(set(s))),
                "relations": grouped["relation"].agg(lambda s: sorted({RELATION_NAMES.get(v, v) for v in s})),
                "sources": grouped["source"].agg(lambda s: sorted({SOURCE_NAMES.get(v, v) for v in s})),
            }
        )
        .rename_axis("household_id")
        .reset_index()
    )
    day = pd.Timestamp(incident["day"])
    recent = city.calls[
        city.calls["is_dispute"]
        & (city.calls["received_at"] < day)
        & (city.calls["received_at"] >= day - pd.Timedelta(days=HISTORY_DAYS))
    ]
    counts = recent["household_id"].value_counts()
    out["disputes_365d"] = counts.reindex(out["household_id"]).fillna(0).astype(int).to_numpy()
    level, _ = rules_verdicts(city.prepared.calls, out["household_id"], pd.Series([day] * len(out)))
    out["rules_level"] = pd.Series(level, dtype=object)
    return out.sort_values(["disputes_365d", "household_id"], ascending=[False, True])[columns].reset_index(drop=True)


def lead_times(city: CityData, cases: pd.DataFrame) -> pd.DataFrame:
    """The rules' level before each violent case the incident opened, per household, and the lead time."""
    violent = cases[cases["violent"]]
    if violent.empty:
        return pd.DataFrame(columns=["case_id", "household_id", "rules_level_before", "first_rules_warning_at"])
    tables = city.prepared.tables
    start = pd.Timestamp(violent["opened_at"].min())
    end = pd.Timestamp(violent["opened_at"].max()) + pd.Timedelta(seconds=1)
    table = escalation_lead_times(
        city.prepared.calls,
        tables["cases"][tables["cases"]["case_id"].isin(violent["case_id"])],
        tables["persons"],
        household_places(tables["households"], tables["addresses"]),
        start,
        end,
    )
    return table.reset_index(drop=True)


def prior_warnings(
    warnings: Mapping[str, Sequence[Mapping[str, Any]]], incident_day: dt.date
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The parties' published warnings (every date) and their loop events, each marked before or after the incident.

    ``warnings``: per household, ``WarningStore.household_warnings`` (events and
    supervisions included). Notes and comments are not shown: what was done
    is the status, its time, and the outcome.
    """
    rows, steps = [], []
    for household, listed in warnings.items():
        for w in listed:
            rows.append(
                {
                    "id": w["id"],
                    "household_id": household,
                    "date": w["date"],
                    "level": w["level"],
                    "engine": w.get("engine"),
                    "status": w["status"],
                    "outcome": w.get("outcome"),
                    "active": bool(w.get("active", True)),
                    "before": str(w["date"]) <= incident_day.isoformat(),
                    "supervisions": len(w.get("supervisions") or []),
                }
            )
            for e in w.get("events") or []:
                steps.append(
                    {
                        "warning_id": w["id"],
                        "household_id": household,
                        "to_status": e.get("to_status"),
                        "outcome": e.get("outcome"),
                        "at": e.get("at"),
                    }
                )
    columns = ["id", "household_id", "date", "level", "engine", "status", "outcome", "active", "before", "supervisions"]
    table = pd.DataFrame(rows, columns=columns).sort_values(["date", "id"]) if rows else pd.DataFrame(columns=columns)
    events = pd.DataFrame(steps, columns=["warning_id", "household_id", "to_status", "outcome", "at"])
    return table.reset_index(drop=True), events.sort_values(["at", "warning_id"]).reset_index(drop=True)


def incident_analysis(
    city: CityData, incident_id: str, warnings: Mapping[str, Sequence[Mapping[str, Any]]]
) -> dict[str, Any]:
    """Everything the special analysis shows, as tables (``warnings``: the parties' stored warnings)."""
    from models.notes import mask_note

    incident = find_incident(city, incident_id)
    cases = case_rows(city, incident_id)
    involved = parties(city, incident)
    households = list(involved["household_id"])
    stations = city.stations.set_index("station_id")
    day = pd.Timestamp(incident["day"]).date()
    disposition = city.prepared.incidents.loc[
        city.prepared.incidents["incident_id"].astype(str) == incident_id, "disposition"
    ]
    warned, events = prior_warnings({h: warnings.get(h, []) for h in households}, day)
    return {
        "incident": {
            "incident_id": incident_id,
            "received_at": pd.Timestamp(incident["received_at"]),
            "station_id": incident["station_id"],
            "station_name": stations["station_name"].get(incident["station_id"], incident["station_id"]),
            "county_name": stations["county_name"].get(incident["station_id"], ""),
            "category_l1": incident["category_l1"],
            "category_l2": incident["category_l2"],
            "is_dispute": bool(incident["is_dispute"]),
            "category": incident["category"],
            "cues": cue_phrases(incident.to_dict()),
            "disposition": mask_note(str(disposition.iloc[0]))[:40] if len(disposition) else "",
        },
        "cases": cases,
        "parties": involved,
        "calls": call_history(city, households, incident),
        "visits": visit_history(city, households, incident),
        "timeline": rules_timeline(city, households, incident),
        "lead_times": lead_times(city, cases),
        "related": related_households(city, households, incident),
        "warnings": warned,
        "events": events,
        "latest_day": city.latest_day,
    }


def escalation_incidents(city: CityData) -> list[str]:
    """Incidents that opened a violent case (real escalations), oldest first: the natural subjects of an analysis."""
    cases = city.prepared.tables["cases"]
    violent = cases[cases["charge"].isin(VIOLENT_CHARGES) & cases["source_incident_id"].notna()]
    ordered = violent.sort_values("opened_at")["source_incident_id"].astype(str)
    known = set(city.calls["incident_id"])
    return [i for i in dict.fromkeys(ordered) if i in known]
