"""The workbench's page queries: what each page shows, from the same ranking and warnings the API uses.

Three sources, each read the cheapest way it allows:

* **The latest completed ranking folder** (the engine's history, serving/state.py):
  precomputed once per folder by :class:`~serving.workbench.folder.RankingViews`
  (stations, the 90-day dispute trend, visits, escalations, dispute calls).
* **The loop of recent warnings** (statuses, deadlines, overdue): a
  :class:`~serving.workbench.loopcache.LoopCache` snapshot of the window that holds the
  current two-month assessment period and the last 90 ranking days.
* **The warnings store** for what a page shows in full: a station's warnings of a date
  with their reasons (``warnings_for``), a household's warnings with their events and
  supervisions (``household_warnings``).

Functions here return plain dicts and lists for the templates; no HTML is built here.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import select

from models.assessment import assessment_period, station_assessment
from models.levels import LEVELS
from models.loop import deadline_of, is_overdue, loop_frame
from models.warning import CUE_PHRASES
from models.warning_tables import OPEN_STATUSES, warnings_table
from serving.history import HouseholdHistory
from serving.workbench.figures import overview_charts
from serving.workbench.folder import CITY, TREND_DAYS, RankingViews
from serving.workbench.loopcache import LoopCache, Snapshot, reader_engine

log = logging.getLogger("yujing.serving")
OTHER_PERIOD_SECONDS = 300.0
"""How long the league of a period other than the current one is kept (its warnings rarely move)."""
LEAGUE_SECONDS = 120.0
"""The current league is recomputed after a change of the loop, and at least this often (the clock moves it)."""
REFRESH_SECONDS = 10.0
"""How often a thread renews what the clock ages (the snapshot's overdue flags, the league, the city overview),
so that a page rarely finds them expired and pays for them."""
ESCALATION_LOOKBACK_DAYS = 90
"""A warning in the database up to this many days before a case was opened counts as "warned beforehand"."""


@dataclass(frozen=True)
class Page:
    """One page of a long list: its rows, its number, how many pages."""

    rows: list[dict[str, Any]]
    number: int
    pages: int
    total: int


def paged(rows: list[dict[str, Any]], number: int, size: int) -> Page:
    """Page ``number`` (1-based, clamped into range) of ``rows``."""
    pages = max(1, math.ceil(len(rows) / size))
    number = min(max(1, number), pages)
    return Page(rows[(number - 1) * size : number * size], number, pages, len(rows))


def _plain(value: Any) -> Any:
    """A pandas cell as a template value: NaN/NaT/NA become None, numpy scalars Python ones."""
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item") and not isinstance(value, pd.Timestamp):
        return value.item()
    return value


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame's rows as plain dicts: Python scalars (pandas boxes them), None for every missing value."""
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


class WorkbenchData:
    """The per-process caches behind the pages (one per app)."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.hours: dict[str, int] = dict(settings.warning_deadline_hours)
        self._lock = threading.Lock()
        self._views: RankingViews | None = None
        self._loop: LoopCache | None = None
        self._reader = None
        self._periods: dict[tuple[str, str], tuple[tuple[Any, Any], pd.DataFrame]] = {}
        self._warned: tuple[Any, dict[tuple[str, str], tuple[str, str]]] | None = None
        self._charts: dict[str | None, tuple[Any, list[Any]]] = {}
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None

    # ------------------------------------------------------------------ sources

    def views(self, history: HouseholdHistory | None) -> RankingViews | None:
        """The precomputed views of the history's folder (built on first use of a new folder)."""
        if history is None:
            return None
        current = self._views
        if current is not None and current.folder == str(history.folder):
            return current
        with self._lock:
            if self._views is None or self._views.folder != str(history.folder):
                self._views = RankingViews.build(history)
            return self._views

    def loop(self, store: Any) -> LoopCache:
        """The loop cache on ``store`` (made on first use)."""
        if self._loop is None or self._loop.store is not store:
            with self._lock:
                if self._loop is None or self._loop.store is not store:
                    if self._reader is not None:
                        self._reader.dispose()
                    self._reader = reader_engine(self.settings.warnings_db_url)
                    self._loop = LoopCache(store, self._reader, self.hours)
        return self._loop

    @staticmethod
    def window(day: str) -> tuple[str, str]:
        """The dates the loop cache holds for a ranking date: its assessment period and the 90 days before it."""
        last = date.fromisoformat(day)
        first = min(assessment_period(last)[0], last - timedelta(days=TREND_DAYS - 1))
        return first.isoformat(), last.isoformat()

    def snapshot(self, store: Any, views: RankingViews) -> Snapshot:
        return self.loop(store).snapshot(self.window(views.date))

    def warm(self, history: HouseholdHistory | None, store: Any) -> None:
        """Build the folder's views and the loop cache now (the loading thread calls this before pages are asked)."""
        views = self.views(history)
        if views is not None and store is not None:
            self.snapshot(store, views)

    def keep_fresh(self, store: Any, size: int) -> None:
        """Start the thread that renews the clock-dependent caches every :data:`REFRESH_SECONDS` (once per app)."""
        if self._refresher is not None or store is None:
            return

        def run() -> None:
            while not self._stop.wait(REFRESH_SECONDS):
                views = self._views
                if views is None:
                    continue
                try:
                    snap = self.snapshot(store, views)
                    self.league(store, views, snap, assessment_period(date.fromisoformat(views.date)))
                    self.overview(store, views, None, size)
                except Exception as exc:  # the pages compute what they need themselves
                    log.warning("workbench refresh failed: %s", type(exc).__name__)

        self._refresher = threading.Thread(target=run, name="yujing-wb-refresh", daemon=True)
        self._refresher.start()

    def close(self) -> None:
        """Stop the refresher and close the read-only pool."""
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join(timeout=5)
        if self._reader is not None:
            self._reader.dispose()

    # ------------------------------------------------------------------ the league table

    def stations_frame(self, views: RankingViews, county: str | None = None) -> pd.DataFrame:
        stations = [s for s in views.stations.values() if county is None or s.county_code == county]
        return pd.DataFrame(
            {"station_id": [s.station_id for s in stations], "county_code": [s.county_code for s in stations]}
        )

    def league(self, store: Any, views: RankingViews, snap: Snapshot, period: tuple[date, date]) -> pd.DataFrame:
        """The city's league table of ``period``.

        The current period comes from the snapshot (the window holds it) and is kept until the
        loop changes or :data:`LEAGUE_SECONDS` pass (its clock-dependent parts, overdue and the
        waiting time of unacknowledged warnings, move slowly); another period is read from the
        store and kept :data:`OTHER_PERIOD_SECONDS`.
        """
        first, last = period[0].isoformat(), period[1].isoformat()
        kept = self._periods.get((first, last))
        if snap.first <= first <= snap.last:
            bucket = int(time.monotonic() // LEAGUE_SECONDS)
            if kept is not None and kept[0] == (snap.marker, bucket):
                return kept[1]
            table = self._league_of(snap, views, first, last)
            self._periods[(first, last)] = ((snap.marker, bucket), table)
            return table
        if kept is not None and time.monotonic() - kept[0][1] < OTHER_PERIOD_SECONDS:
            return kept[1]
        now = datetime.now(UTC)
        table = self._assess(loop_frame(*store.loop_frames(first, last), self.hours, now), now, views)
        self._periods[(first, last)] = ((None, time.monotonic()), table)
        return table

    def _league_of(self, snap: Snapshot, views: RankingViews, first: str, last: str) -> pd.DataFrame:
        loop = snap.loop
        return self._assess(loop[(loop["date"] >= first) & (loop["date"] <= last)], snap.now, views)

    def _assess(self, loop: pd.DataFrame, now: datetime, views: RankingViews) -> pd.DataFrame:
        """models.assessment's league table of ``loop``, every station listed (an empty period: no repeat calls)."""
        calls = views.dispute_calls if len(loop) else None  # nothing to repeat, and the merge needs rows
        return station_assessment(loop, now, calls, stations=self.stations_frame(views))

    def after_write(self, store: Any, views: RankingViews | None) -> None:
        """Bring the snapshot and the current league up to date right after a write (the POST pays, not the page)."""
        if views is None:
            return
        snap = self.snapshot(store, views)
        self.league(store, views, snap, assessment_period(date.fromisoformat(views.date)))

    def league_rows(self, table: pd.DataFrame, views: RankingViews, county: str | None = None) -> list[dict]:
        rows = table if county is None else table[table["county_code"] == county]
        out = records(rows)
        for row in out:
            station = views.stations.get(str(row["station_id"]))
            row["station_name"] = station.name if station else row["station_id"]
            row["county_name"] = views.counties.get(str(row["county_code"]), row["county_code"])
        return out

    # ------------------------------------------------------------------ overview (city or county)

    def overview(self, store: Any, views: RankingViews, county: str | None, size: int) -> dict[str, Any]:
        """Everything the city (``county`` None) or a county overview shows (once per snapshot and scope)."""
        snap = self.snapshot(store, views)
        return snap.cached(f"overview:{county}:{size}", lambda: self._overview(store, views, snap, county, size))

    def charts(self, views: RankingViews, overview: dict[str, Any], county: str | None) -> list[Any]:
        """The overview's charts, drawn again only when the ranking or the set of warnings changed.

        They count warnings by level, place, category and date and the history's calls: a status
        change moves none of them.
        """
        key = (views.folder, overview["marker"].warnings, overview["marker"].last_run, county)
        kept = self._charts.get(county)
        if kept is None or kept[0] != key:
            kept = self._charts[county] = (key, overview_charts(overview, county))
        return kept[1]

    def _overview(
        self, store: Any, views: RankingViews, snap: Snapshot, county: str | None, size: int
    ) -> dict[str, Any]:
        loop = snap.loop if county is None else snap.loop[snap.loop["county_code"] == county]
        latest = loop[loop["date"] == views.date]
        period = assessment_period(date.fromisoformat(views.date))
        league = self.league(store, views, snap, period)
        overdue = loop[loop["overdue"]].sort_values(["deadline", "id"])
        return {
            "date": views.date,
            "counts": _level_counts(latest),
            "total": len(latest),
            "open": int(latest["open"].sum()) if len(latest) else 0,
            "overdue_count": len(overdue),
            "groups": self._groups(latest, views, county),
            "by_category": _category_counts(latest),
            "trend": views.trends.get(county or CITY),
            "per_date": snap.cached(f"per_date:{county}", lambda: _per_date(loop, views.date)),
            "overdue": self._warning_rows(overdue.head(size), views),
            "escalations": self.escalations(store, views, snap, county),
            "has_escalations": views.escalations is not None,
            "league": self.league_rows(league, views, county),
            "period": period,
            "problems": views.problems,
            "marker": snap.marker,
        }

    def _groups(self, latest: pd.DataFrame, views: RankingViews, county: str | None) -> list[dict[str, Any]]:
        """Per county (city overview) or per station (county overview): counts by level, open, fed back, overdue."""
        key = "county_code" if county is None else "station_id"
        if county is None:
            names = list(views.counties.items())
        else:
            names = [(s.station_id, s.name) for s in views.stations_of(county)]
        levels = latest.groupby([key, "level"]).size() if len(latest) else pd.Series(dtype=int)
        sums = (
            latest.assign(fed=latest["status"] == "fed_back")
            .groupby(key)[["open", "fed", "overdue"]]
            .sum()
            .astype(int)
            .to_dict("index")
            if len(latest)
            else {}
        )
        counts = {k: int(v) for k, v in levels.items()}
        out = []
        for code, name in names:
            by_level = {level: counts.get((code, level), 0) for level in LEVELS}
            got = sums.get(code, {"open": 0, "fed": 0, "overdue": 0})
            out.append(
                {
                    "code": code,
                    "name": name,
                    "levels": by_level,
                    "total": sum(by_level.values()),
                    "open": got["open"],
                    "fed_back": got["fed"],
                    "overdue": got["overdue"],
                }
            )
        return out

    def _warning_rows(self, frame: pd.DataFrame, views: RankingViews) -> list[dict[str, Any]]:
        shown = ["id", "date", "household_id", "station_id", "county_code", "level", "status", "deadline", "supervised"]
        rows = records(frame[shown])
        for row in rows:
            station = views.stations.get(str(row["station_id"]))
            row["station_name"] = station.name if station else row["station_id"]
        return rows

    # ------------------------------------------------------------------ escalations and whether they were warned

    def escalations(self, store: Any, views: RankingViews, snap: Snapshot, county: str | None) -> list[dict]:
        """The last 90 days' escalations of the scope, with the rules' lead time and the database's warnings before."""
        table = views.escalations_in(county)
        if table is None or table.empty:
            return []
        warned = self._warned_before(views, snap)
        rows = records(table)
        for row in rows:
            found = warned.get((row["case_id"], row["household_id"]))
            row["db_first"], row["db_level"] = found if found else (None, None)
            station = views.stations.get(str(row["station_id"]))
            row["station_name"] = station.name if station else row["station_id"]
            row["opened_day"] = pd.Timestamp(row["opened_at"]).date().isoformat()
        return rows

    def _warned_before(self, views: RankingViews, snap: Snapshot) -> dict[tuple[str, str], tuple[str, str]]:
        """Per (case, household) of the escalations: the first database warning of the 90 days before and its level.

        One indexed query over the escalations' households (their warnings since the earliest
        lookback), cached until the folder or the set of warnings changes.
        """
        key = (views.folder, snap.marker.warnings, snap.marker.last_run)
        if self._warned is not None and self._warned[0] == key:
            return self._warned[1]
        table = views.escalations_in(None)
        assert table is not None and self._reader is not None
        households = sorted(set(table["household_id"]))
        since = (table["opened_at"].min() - pd.Timedelta(days=ESCALATION_LOOKBACK_DAYS)).date().isoformat()
        w = warnings_table
        rows: list[Any] = []
        with self._reader.connect() as conn:
            for start in range(0, len(households), 500):
                chunk = households[start : start + 500]
                query = select(w.c.household_id, w.c.date, w.c.level).where(
                    w.c.household_id.in_(chunk), w.c.date >= since
                )
                rows.extend(conn.execute(query).all())
        found = pd.DataFrame.from_records([tuple(r) for r in rows], columns=["household_id", "date", "level"])
        out: dict[tuple[str, str], tuple[str, str]] = {}
        for case in table.itertuples(index=False):
            opened = pd.Timestamp(case.opened_at).date()
            start = (opened - timedelta(days=ESCALATION_LOOKBACK_DAYS)).isoformat()
            mine = found[
                (found["household_id"] == case.household_id)
                & (found["date"] >= start)
                & (found["date"] < opened.isoformat())
            ]
            if len(mine):
                first = mine.sort_values("date").iloc[0]
                worst = min(mine["level"], key=LEVELS.index)
                out[(case.case_id, case.household_id)] = (str(first["date"]), str(worst))
        self._warned = (key, out)
        return out

    # ------------------------------------------------------------------ a station's warnings

    def station_warnings(self, store: Any, views: RankingViews, station_id: str, day: str) -> list[dict[str, Any]]:
        """A station's active warnings of ``day`` in its rank order, with reasons, recent calls, deadline, overdue."""
        warnings = store.warnings_for(day, station_id=station_id)
        if not warnings:
            return []
        snap = self.snapshot(store, views)
        ids = [w["id"] for w in warnings]
        timing = snap.loop.reindex(ids)
        if timing["deadline"].isna().any():  # a date outside the cached window: time this station's few warnings
            frames = store.loop_frames(day, day, station_id=station_id)
            timing = (
                loop_frame(*frames, self.hours, snap.now).set_index("id", drop=False).rename_axis(None).reindex(ids)
            )
        for warning, deadline, overdue in zip(warnings, timing["deadline"], timing["overdue"], strict=True):
            reasons = warning.get("reasons") or {}
            warning["deadline"] = _plain(deadline)
            warning["overdue"] = bool(overdue) if _plain(overdue) is not None else False
            warning["raised_by"] = reasons.get("raised_by") or warning.get("engine")
            warning["rules_reasons"] = [str(x) for x in reasons.get("rules") or []]
            warning["model_reasons"] = [str(x) for x in reasons.get("model") or []]
            warning["calls"] = [str(x) for x in reasons.get("calls") or []]
        warnings.sort(key=lambda w: (w["rank_in_station"], w["id"]))
        return warnings

    # ------------------------------------------------------------------ a household

    def household(
        self, store: Any, views: RankingViews | None, history: HouseholdHistory | None, household_id: str
    ) -> dict[str, Any] | None:
        """A household's place and timeline, or None when neither the history nor the database knows it."""
        stored = history.get(household_id) if history is not None else None
        warnings = store.household_warnings(household_id) if store is not None else []
        if stored is None and not warnings:
            return None
        station_id = stored.station_id if stored else warnings[0]["station_id"]
        county_code = stored.county_code if stored else warnings[0]["county_code"]
        now = datetime.now(UTC)
        items: list[dict[str, Any]] = []
        if stored is not None:
            for call, negated in zip(stored.calls, stored.negated or [frozenset()] * len(stored.calls), strict=False):
                when = pd.Timestamp(call.received_sec, unit="s")
                items.append(
                    {
                        "kind": "call",
                        "sort": when.isoformat(),
                        "when": when.strftime("%Y-%m-%d %H:%M"),
                        "dispute": call.is_dispute,
                        "category": call.category,
                        "cues": [CUE_PHRASES.get(c, c) for c in CUE_PHRASES if c in call.cues],
                        "negated": [CUE_PHRASES.get(c, c) for c in CUE_PHRASES if c in negated],
                    }
                )
        for visit in views.visits_of(household_id) if views is not None else []:
            when = pd.Timestamp(visit["visited_at"])
            items.append(
                {
                    "kind": "visit",
                    "sort": when.isoformat(),
                    "when": when.strftime("%Y-%m-%d %H:%M"),
                    "visit_type": visit["visit_type"],
                    "outcome": visit["outcome"],
                }
            )
        for case in views.escalations_of(household_id) if views is not None else []:
            when = pd.Timestamp(case["opened_at"])
            items.append(
                {
                    "kind": "case",
                    "sort": when.isoformat(),
                    "when": when.strftime("%Y-%m-%d %H:%M"),
                    "case_id": case["case_id"],
                    "charge": case["charge"],
                    "rules_level_before": _plain(case["rules_level_before"]),
                    "lead_days": _plain(case["lead_days"]),
                }
            )
        for warning in warnings:
            deadline = deadline_of(warning, self.hours, warning["supervisions"])
            reasons = warning.get("reasons") or {}
            items.append(
                {
                    "kind": "warning",
                    "sort": warning["date"],
                    "when": warning["date"],
                    "warning": warning,
                    "raised_by": reasons.get("raised_by") or warning.get("engine"),
                    "deadline": deadline,
                    "overdue": is_overdue(warning, deadline, now),
                    "open": warning["status"] in OPEN_STATUSES,
                    "events": [e for e in warning["events"] if e["to_status"] != "pushed"],
                    "supervisions": warning["supervisions"],
                }
            )
        items.sort(key=lambda item: item["sort"], reverse=True)
        return {
            "household_id": household_id,
            "station_id": station_id,
            "county_code": county_code,
            "timeline": items,
            "calls": sum(1 for i in items if i["kind"] == "call"),
            "has_visits": views is not None and views.visits is not None,
            "has_cases": views is not None and views.escalations is not None,
        }

    # ------------------------------------------------------------------ supervision

    def overdue_of(self, store: Any, views: RankingViews, county: str, number: int, size: int) -> Page:
        """Page ``number`` of the open, overdue warnings of a county's stations in the window, longest overdue first."""
        snap = self.snapshot(store, views)

        def ordered() -> pd.DataFrame:
            loop = snap.loop
            return loop[(loop["county_code"] == county) & loop["overdue"]].sort_values(["deadline", "id"])

        rows = snap.cached(f"overdue:{county}", ordered)
        pages = max(1, math.ceil(len(rows) / size))
        number = min(max(1, number), pages)
        shown = self._warning_rows(rows.iloc[(number - 1) * size : number * size], views)
        return Page(shown, number, pages, len(rows))


def _level_counts(frame: pd.DataFrame) -> dict[str, int]:
    counts = frame["level"].value_counts() if len(frame) else pd.Series(dtype=int)
    return {level: int(counts.get(level, 0)) for level in LEVELS}


def _category_counts(frame: pd.DataFrame) -> dict[str, int]:
    if not len(frame):
        return {}
    counts = frame["category"].fillna("other").value_counts()
    return {str(k): int(v) for k, v in counts.items()}


def _per_date(loop: pd.DataFrame, day: str) -> dict[str, Any]:
    """Warnings per ranking date of the last 90 days, by level (only dates that were ranked)."""
    first = (date.fromisoformat(day) - timedelta(days=TREND_DAYS - 1)).isoformat()
    part = loop[(loop["date"] >= first) & (loop["date"] <= day)]
    if not len(part):
        return {"dates": [], "levels": {}}
    table = part.groupby(["date", "level"]).size().unstack("level", fill_value=0)
    dates = [str(d) for d in table.index]
    return {"dates": dates, "levels": {lv: [int(v) for v in table[lv]] for lv in LEVELS if lv in table.columns}}
