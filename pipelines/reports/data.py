"""What a report reads: the city's calls as the pipeline sees them, the warnings database, the model's files.

Calls are not re-classified here: the report takes the daily job's own
:func:`pipelines.preparation.prepare` (load, validate, keyword rules, caller
linking), so a "dispute call" in a report is exactly what the ranking counted
(the rules' verdict and category) and a call belongs to the household the
ranking gave it. Nothing here keeps text: the call table carries ids, times,
places, the police category, the rules' verdict and cue counts only.

The warnings database is read through the store's loop frames (models/loop.py,
docs/warnings-db.md); its times are the loop's real clock, its ``date`` is the
ranking date.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.preparation import Prepared

EVENT_COLUMNS = ("warning_id", "to_status", "outcome", "at")
"""What a report reads of a status event (models/feedback.py's columns): never the note or the actor."""

UNKNOWN = "未知"
"""Shown for a call whose station is not in the address registry, or whose household is not known."""

_DATE_FOLDER = re.compile(r"\d{4}-\d{2}-\d{2}")


class ReportError(ValueError):
    """A report cannot be made as asked; the message names the input (file, option, key) and the fix."""


@dataclass
class CityData:
    """The city's calls, cases and visits with where each happened, as of the data's export."""

    prepared: Prepared
    calls: pd.DataFrame
    """One row per incident: ids, time, day, household (None when not linked), the incident's station and
    county, the household's community, police categories, the rules' verdict, category and cue counts."""
    places: pd.DataFrame
    """One row per household: station, county and community (``township`` + ``community``) of its address."""
    stations: pd.DataFrame
    """One row per station: its name, county code and county name."""
    latest_day: dt.date
    """The last day with a call: the default end of a report."""


def community_label(addresses: pd.DataFrame) -> pd.Series:
    """``county township community`` per address: a community's name is unique only within its township."""
    return (
        addresses["county_name"].astype(str)
        + " "
        + addresses["township"].astype(str)
        + " "
        + addresses["community"].astype(str)
    )


def city_data(prepared: Prepared) -> CityData:
    """The report's view of a prepared city (see :class:`CityData`)."""
    tables = prepared.tables
    addresses = tables["addresses"].drop_duplicates("address_id")
    stations = (
        addresses[["station_id", "station_name", "county_code", "county_name"]]
        .drop_duplicates("station_id")
        .sort_values("station_id")
        .reset_index(drop=True)
    )
    located = addresses.assign(community_key=community_label(addresses)).set_index("address_id")
    hh = tables["households"][["household_id", "address_id"]].drop_duplicates("household_id")
    at = located.reindex(hh["address_id"].to_numpy())
    places = pd.DataFrame(
        {
            "household_id": hh["household_id"].astype(str).to_numpy(),
            "station_id": at["station_id"].to_numpy(object),
            "county_code": at["county_code"].to_numpy(object),
            "community": at["community_key"].to_numpy(object),
        }
    )
    calls = prepared.calls
    incidents = prepared.incidents
    by_station = stations.set_index("station_id")
    station = incidents["station_id"].astype(str)
    community = places.set_index("household_id")["community"]
    frame = pd.DataFrame(
        {
            "incident_id": calls["incident_id"].astype(str).to_numpy(),
            "received_at": pd.to_datetime(calls["received_at"]).to_numpy(),
            "household_id": calls["household_id"].to_numpy(object),
            "station_id": station.to_numpy(object),
            "county_code": station.map(by_station["county_code"]).fillna(UNKNOWN).to_numpy(object),
            "community": calls["household_id"].map(community).to_numpy(object),
            "category_l1": incidents["category_l1"].astype(str).to_numpy(object),
            "category_l2": incidents["category_l2"].astype(str).to_numpy(object),
            "is_dispute": calls["is_dispute"].astype(bool).to_numpy(),
            "category": calls["category"].to_numpy(object),
            "n_deescalation": calls["n_deescalation"].to_numpy(),
            **{c: calls[c].to_numpy() for c in calls.columns if c.startswith("cue_")},
        }
    )
    frame["day"] = pd.to_datetime(frame["received_at"]).dt.normalize()
    latest = pd.Timestamp(frame["received_at"].max()).date()
    return CityData(prepared, frame, places, stations, latest)


# --------------------------------------------------------------------------------------- the database


@dataclass
class LoopData:
    """The warnings database as the report needs it (empty frames when it holds nothing for the period)."""

    url: str
    dates: list[str]
    """Every ranking date the database holds."""
    loop: pd.DataFrame
    """The period's warnings (by ranking date) with deadline, overdue and the loop's times (models/loop.py)."""
    events: pd.DataFrame
    """Every status change of those warnings: warning_id, to_status, outcome, at (no note, no actor)."""
    history: pd.DataFrame
    """Active warnings (with their reasons) of the ranking dates a report looks back over."""
    league: pd.DataFrame
    """The station assessment of the two-month period ``league_period`` (models/assessment.py)."""
    league_period: tuple[dt.date, dt.date]
    now: dt.datetime


def database_display(url: str) -> str:
    """A database URL without its password (a report's manifest names the DB it read)."""
    return re.sub(r"(//[^:/@]+):[^@]*@", r"\1:***@", url)


def load_loop(
    store_url: str,
    ranked: tuple[dt.date, dt.date],
    history_first: dt.date,
    league_period: tuple[dt.date, dt.date],
    hours: dict[str, int],
    now: dt.datetime,
    repeat_calls: pd.DataFrame | None,
    stations: pd.DataFrame | None = None,
) -> LoopData:
    """The warnings ranked on the dates ``ranked`` with their loop state at ``now``, the history and the league.

    The store is opened (and closed) here; it creates its tables when the
    database is new, so a report on a city never ranked shows empty sections.
    """
    from models.assessment import assessment_for
    from models.loop import loop_frame
    from models.warning_store import WarningStore

    first, last = (d.isoformat() for d in ranked)
    store = WarningStore(store_url)
    try:
        dates = store.dates()
        warnings, moves, supervisions = store.loop_frames(first, last)
        loop = loop_frame(warnings, moves, supervisions, hours, now)
        # the outcome of each move (loop_frames leaves it out); never the note or the actor
        events = pd.DataFrame(
            [{k: e[k] for k in EVENT_COLUMNS} for e in store.events(loop["id"].astype(int).tolist())],
            columns=list(EVENT_COLUMNS),
        )
        history = pd.DataFrame(store.warnings_between(history_first.isoformat(), last, active_only=True))
        league = assessment_for(store, league_period[0], league_period[1], hours, now, repeat_calls, stations=stations)
    finally:
        store.dispose()
    if history.empty:
        history = pd.DataFrame(
            columns=["id", "date", "household_id", "station_id", "county_code", "level", "reasons", "created_at"]
        )
    return LoopData(database_display(store_url), dates, loop, events, history, league, league_period, now)


# --------------------------------------------------------------------------------------- the model's files


def latest_ranking_manifest(rankings_dir: Path, up_to: dt.date) -> dict[str, Any] | None:
    """The manifest of the newest published ranking dated ``up_to`` or before (None when there is none)."""
    if not Path(rankings_dir).is_dir():
        return None
    dated = sorted(
        p.name for p in Path(rankings_dir).iterdir() if _DATE_FOLDER.fullmatch(p.name) and p.name <= up_to.isoformat()
    )
    for name in reversed(dated):
        try:
            return json.loads((Path(rankings_dir) / name / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return None


def training_report(runs_dir: Path) -> dict[str, Any] | None:
    """``<runs_dir>/latest/report.json`` (the last training run's measurements), or None."""
    try:
        return json.loads((Path(runs_dir) / "latest" / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
