"""What the workbench reads from one published ranking folder, computed once when the folder is loaded.

A ranking folder never changes once published (a re-publish is a new folder), so
everything the pages take from it is computed here once per folder, in the reload
thread (serving/state.py calls :func:`RankingViews.build` through the workbench's
reload hook) or, at the latest, by the first page that needs it: the stations and
counties with their names, the dispute calls of the 90 days before the date per
county and category (the overview's trend), the visits per household and the
escalations. Pages then slice small precomputed pieces and never scan a table.

Everything here is free of personal data: ids, codes, places' names, categories,
dates and counts (the folder's tables hold no text).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.schema import CATEGORIES
from serving.history import HistoryError, HouseholdHistory, read_escalations, read_visits

log = logging.getLogger("yujing.serving")
TREND_DAYS = 90
CITY = "city"
"""The trend's key for the whole city (county keys are their 6-digit codes)."""


@dataclass(frozen=True)
class Station:
    """A station as pages name it."""

    station_id: str
    name: str
    county_code: str
    county_name: str


@dataclass(frozen=True)
class Trend:
    """Dispute calls per day of the 90 days before the ranking date, in total and per category."""

    days: list[str]
    total: list[int]
    by_category: dict[str, list[int]]


@dataclass
class RankingViews:
    """The precomputed pieces of one ranking folder (see the module docstring)."""

    folder: str
    date: str
    stations: dict[str, Station]
    counties: dict[str, str]
    trends: dict[str, Trend]
    visits: pd.DataFrame | None
    escalations: pd.DataFrame | None
    dispute_calls: pd.DataFrame
    """Every dispute call of the history (household_id, received_at as local wall-clock time): repeat calls."""
    problems: list[str] = field(default_factory=list)
    _visit_rows: dict[str, tuple[int, int]] = field(default_factory=dict)
    _escalation_rows: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def build(cls, history: HouseholdHistory) -> RankingViews:
        """Read and precompute one folder (about a second on the default city; once per published ranking)."""
        folder = Path(history.folder)
        places = pd.read_parquet(
            folder / "ranking.parquet", columns=["station_id", "station_name", "county_code", "county_name"]
        ).drop_duplicates("station_id")
        stations = {
            str(r.station_id): Station(str(r.station_id), str(r.station_name), str(r.county_code), str(r.county_name))
            for r in places.sort_values("station_id").itertuples(index=False)
        }
        counties = {s.county_code: s.county_name for s in sorted(stations.values(), key=lambda s: s.county_code)}
        problems: list[str] = []
        visits = escalations = None
        try:
            visits = read_visits(folder)
        except HistoryError as exc:
            problems.append(str(exc))
        try:
            escalations = read_escalations(folder)
        except HistoryError as exc:
            problems.append(str(exc))
        for problem in problems:
            log.warning("workbench: %s", problem)
        calls = pd.read_parquet(
            folder / "calls.parquet", columns=["household_id", "received_sec", "is_dispute", "category"]
        )
        calls = calls[calls["is_dispute"].to_numpy(bool)]
        disputes = pd.DataFrame(
            {
                # object, not Arrow strings: isin() against an Arrow column walks its values one by one in Python
                "household_id": pd.Series(calls["household_id"].astype(str).to_numpy(object), dtype=object),
                "received_at": pd.to_datetime(calls["received_sec"], unit="s").to_numpy(),
                "category": calls["category"].fillna("other").astype(str).to_numpy(),
            }
        )
        views = cls(
            folder=str(folder),
            date=history.date,
            stations=stations,
            counties=counties,
            trends=_trends(folder, history.date, stations, disputes),
            visits=None,
            escalations=None,
            dispute_calls=disputes[["household_id", "received_at"]],
            problems=problems,
        )
        views._index_visits(visits)
        views._index_escalations(escalations)
        return views

    # ------------------------------------------------------------------ stations and counties

    def stations_of(self, county_code: str) -> list[Station]:
        return [s for s in self.stations.values() if s.county_code == county_code]

    # ------------------------------------------------------------------ visits

    def _index_visits(self, visits: pd.DataFrame | None) -> None:
        if visits is None:
            return
        table = visits.assign(household_id=visits["household_id"].astype(str))
        table = table.sort_values(["household_id", "visited_at"], kind="stable").reset_index(drop=True)
        ids = table["household_id"].to_numpy()
        if len(ids):
            starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
            ends = np.r_[starts[1:], len(ids)]
            self._visit_rows = {str(ids[s]): (int(s), int(e)) for s, e in zip(starts, ends, strict=True)}
        self.visits = table

    def visits_of(self, household_id: str) -> list[dict[str, Any]]:
        """A household's visits, oldest first (empty when none or when the ranking has no visits table)."""
        if self.visits is None or household_id not in self._visit_rows:
            return []
        lo, hi = self._visit_rows[household_id]
        return self.visits.iloc[lo:hi].to_dict("records")

    # ------------------------------------------------------------------ escalations

    def _index_escalations(self, escalations: pd.DataFrame | None) -> None:
        if escalations is None:
            return
        table = escalations.assign(
            household_id=escalations["household_id"].astype(str),
            station_id=escalations["station_id"].astype(str),
            county_code=escalations["county_code"].astype(str),
            opened_at=pd.to_datetime(escalations["opened_at"]),
        )
        table = table.sort_values(["opened_at", "case_id"], ascending=[False, True], kind="stable")
        self.escalations = table.reset_index(drop=True)
        for i, hid in enumerate(self.escalations["household_id"]):
            self._escalation_rows.setdefault(hid, []).append(i)

    def escalations_of(self, household_id: str) -> list[dict[str, Any]]:
        """A household's violent cases of the year before the date, newest first."""
        if self.escalations is None:
            return []
        rows = self._escalation_rows.get(household_id, [])
        return self.escalations.iloc[rows].to_dict("records") if rows else []

    def escalations_in(self, county_code: str | None = None, days: int = TREND_DAYS) -> pd.DataFrame | None:
        """Escalations of the last ``days`` days before the date, newest first, for the city or one county."""
        if self.escalations is None:
            return None
        since = pd.Timestamp(self.date) - pd.Timedelta(days=days)
        table = self.escalations[self.escalations["opened_at"] >= since]
        if county_code is not None:
            table = table[table["county_code"] == county_code]
        return table


def _trends(folder: Path, day: str, stations: dict[str, Station], calls: pd.DataFrame) -> dict[str, Trend]:
    """Dispute calls (``calls``: household_id, received_at, category) per day of the 90 days before ``day``."""
    end = date.fromisoformat(day)
    days = [(end - timedelta(days=TREND_DAYS - i)).isoformat() for i in range(TREND_DAYS)]
    context = pd.read_parquet(folder / "context.parquet", columns=["household_id", "county_code"])
    received = calls["received_at"]
    keep = ((received >= pd.Timestamp(days[0])) & (received < pd.Timestamp(end))).to_numpy()
    disputes = calls.loc[keep, ["household_id", "category"]].assign(day=received[keep].dt.strftime("%Y-%m-%d"))
    county = context.set_index("household_id")["county_code"].astype(str)
    disputes["county_code"] = disputes["household_id"].map(county).fillna("")
    counts = disputes.groupby(["county_code", "category", "day"]).size()
    out = {CITY: _trend(counts.groupby(level=["category", "day"]).sum(), days)}
    for code in sorted({s.county_code for s in stations.values()}):
        part = counts.xs(code, level="county_code") if code in counts.index.get_level_values(0) else counts.iloc[:0]
        out[code] = _trend(part.droplevel("county_code") if "county_code" in part.index.names else part, days)
    return out


def _trend(counts: pd.Series, days: list[str]) -> Trend:
    """One scope's counts indexed by (category, day) as aligned daily lists."""
    by_category: dict[str, list[int]] = {}
    for category in CATEGORIES:
        if category in counts.index.get_level_values(0):
            series = counts.xs(category, level=0).reindex(days, fill_value=0)
            by_category[category] = [int(v) for v in series]
    total = [sum(values[i] for values in by_category.values()) for i in range(len(days))]
    return Trend(days=days, total=total, by_category=by_category)
