"""Station assessment (自动考评): a league table of how stations work their warnings, per two-month period.

Pure functions over the loop frame of models/loop.py (``now`` is an argument, never read here),
plus :func:`assessment_for`, the one call a workbench page or a report makes against the store.
The rules, weights and their reasons are in docs/assessment.md; in short, per station and period
(warnings by their ranking ``date``):

======================  ======  ==========================================================================
component               weight  value in [0, 1] (1 is best)
======================  ======  ==========================================================================
``acknowledge_speed``   20      mean over warnings of ``1 - hours to acknowledge / hours allowed``, clipped
``handle_speed``        20      the same for handling
``closure_rate``        15      closed (handled or fed back) / warnings
overdue                 20      ``1 - overdue / warnings`` (open, active, past the deadline at ``now``)
``fed_back_share``      15      fed back with an outcome / warnings
repeat calls            10      closed warnings *without* a dispute call after handling / warnings
======================  ======  ==========================================================================

``score = 100 * sum(weight * value) / sum(weights)``, one decimal. A warning not yet acknowledged
(handled) counts with the hours elapsed so far, i.e. as if it were acknowledged now: waiting never
scores better than acting. "Hours allowed" is the level's policy (``hours_allowed`` of the loop
frame), not a supervised deadline: a county's extension moves the deadline (so the warning is not
overdue) but does not make a late station timely. Without ``repeat_calls`` the repeat-call component
is left out and the other weights are scaled to 100.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from models.loop import CLOSED_STATUSES, loop_frame, utc_times

if TYPE_CHECKING:
    from models.warning_store import WarningStore

WEIGHTS: Mapping[str, int] = {
    "acknowledge_speed": 20,
    "handle_speed": 20,
    "closure": 15,
    "not_overdue": 20,
    "fed_back": 15,
    "no_repeat_call": 10,
}
"""Points of each component in the 0-100 score (docs/assessment.md#score)."""

PERIOD_MONTHS = 2
"""Assessment periods are two calendar months: Jan-Feb, Mar-Apr, ..., Nov-Dec."""

COLUMNS = (
    "station_id",
    "county_code",
    "warnings",
    "acknowledged",
    "closed",
    "overdue",
    "fed_back",
    "repeat_calls",
    "median_hours_to_acknowledge",
    "median_hours_to_handle",
    "closure_rate",
    "fed_back_share",
    "repeat_call_rate",
    "acknowledge_speed",
    "handle_speed",
    "score",
    "rank",
)
"""The league table's columns, in order (see :func:`station_assessment`)."""


def assessment_period(day: date) -> tuple[date, date]:
    """The two-month period holding ``day``: (first day, last day), e.g. 2024-02-29 -> (2024-01-01, 2024-02-29)."""
    if isinstance(day, datetime):
        day = day.date()
    if not isinstance(day, date):
        raise ValueError(f"day must be a date, got {type(day).__name__}")
    first_month = day.month - (day.month - 1) % PERIOD_MONTHS
    last_month = first_month + PERIOD_MONTHS - 1
    return date(day.year, first_month, 1), date(day.year, last_month, calendar.monthrange(day.year, last_month)[1])


def _aware(now: datetime) -> pd.Timestamp:
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime (the loop's times are UTC)")
    return pd.Timestamp(now).tz_convert("UTC")


def _repeat_flags(frame: pd.DataFrame, calls: pd.DataFrame, now: pd.Timestamp, calls_timezone: str) -> pd.Series:
    """Per warning: handled, and its household had a dispute call after ``handled_at`` and by ``now``.

    "Some call in (handled_at, now]" is "the household's last call by now is after handled_at", so
    one group-by maximum over the calls replaces a join of warnings and calls.
    """
    missing = [c for c in ("household_id", "received_at") if c not in calls]
    if missing:
        raise ValueError(
            f"repeat_calls lacks column(s) {', '.join(missing)}; pass DataFrame(household_id, received_at)"
        )
    received = pd.to_datetime(calls["received_at"])
    if received.dt.tz is None:  # the data's calls are local wall-clock times
        received = received.dt.tz_localize(calls_timezone, ambiguous="NaT", nonexistent="shift_forward")
    received = utc_times(received)
    by_now = (received <= now).to_numpy()
    last_call = received[by_now].groupby(calls["household_id"].to_numpy()[by_now]).max()
    last = pd.Series(utc_times(last_call).reindex(frame["household_id"].to_numpy()).array, index=frame.index)
    return (last > utc_times(frame["handled_at"])).astype(bool)  # NaT (no call, not handled) compares False


def station_assessment(
    loop: pd.DataFrame,
    now: datetime,
    repeat_calls: pd.DataFrame | None = None,
    *,
    stations: pd.DataFrame | None = None,
    calls_timezone: str = "Asia/Shanghai",
) -> pd.DataFrame:
    """The league table: one row per station, best first (columns :data:`COLUMNS`).

    ``loop`` is :func:`models.loop.loop_frame`'s output for the period's warnings, computed with the
    same ``now`` (its ``overdue`` is taken as is); withdrawn ones (``active`` False) are left out.
    ``repeat_calls`` is DataFrame(household_id, received_at) of dispute calls; naive
    ``received_at`` are wall-clock times in ``calls_timezone``. ``stations`` (station_id,
    county_code) adds stations that had no warning.

    Counts: ``warnings``; ``acknowledged`` (moved past pushed); ``closed`` (handled or fed back);
    ``overdue``; ``fed_back`` (with an outcome); ``repeat_calls`` (closed warnings whose household
    called again after handling; 0 when ``repeat_calls`` is None). Rates: ``closure_rate`` =
    closed / warnings, ``fed_back_share`` = fed_back / warnings, ``repeat_call_rate`` =
    repeat_calls / closed (NaN with nothing closed or without calls). Medians over the warnings
    that reached the step (NaN when none did). ``score`` 0-100 (module docstring).

    ``rank``: 1 = best, unique and stable: score (as shown, one decimal) descending, then fewer
    overdue, then the faster median acknowledgement (none last), then ``station_id``. A station
    with no warning has counts 0, NaN rates, medians and score, and no rank (``<NA>``): it is listed
    after the ranked ones, since nothing was there to assess and neither first nor last would be true.
    """
    moment = _aware(now)
    missing = [
        c
        for c in ("id", "household_id", "station_id", "county_code", "status", "created_at", "hours_allowed")
        if c not in loop
    ]
    if missing:
        raise ValueError(f"loop lacks column(s) {', '.join(missing)}; pass models.loop.loop_frame()'s output")
    frame = loop[loop["active"].astype(bool)] if "active" in loop else loop
    frame = frame.reset_index(drop=True)
    created = utc_times(frame["created_at"])
    allowed = frame["hours_allowed"].astype(float).to_numpy()
    elapsed = ((moment - created) / pd.Timedelta(hours=1)).clip(lower=0).to_numpy()
    hours_ack = frame["hours_to_acknowledge"].astype(float).to_numpy()
    hours_handle = frame["hours_to_handle"].astype(float).to_numpy()

    def speed(hours: np.ndarray) -> np.ndarray:
        taken = np.where(np.isnan(hours), elapsed, hours)
        return np.clip(1.0 - taken / allowed, 0.0, 1.0)

    closed = frame["status"].isin(CLOSED_STATUSES)
    with_calls = repeat_calls is not None
    repeat = (
        _repeat_flags(frame, repeat_calls, moment, calls_timezone)
        if repeat_calls is not None
        else pd.Series(False, index=frame.index)
    )
    per = pd.DataFrame(
        {
            "station_id": frame["station_id"],
            "county_code": frame["county_code"],
            "warnings": 1,
            "acknowledged": (frame["status"] != "pushed").astype(int),
            "closed": closed.astype(int),
            "overdue": frame["overdue"].astype(bool).astype(int) if "overdue" in frame else 0,
            "fed_back": ((frame["status"] == "fed_back") & frame["outcome"].notna()).astype(int),
            "repeat_calls": (repeat & closed).astype(int),
            "hours_ack": hours_ack,
            "hours_handle": hours_handle,
            "acknowledge_speed": speed(hours_ack),
            "handle_speed": speed(hours_handle),
        }
    )
    grouped = per.groupby("station_id", sort=True)
    table = grouped[["warnings", "acknowledged", "closed", "overdue", "fed_back", "repeat_calls"]].sum()
    table["county_code"] = grouped["county_code"].first()
    table["median_hours_to_acknowledge"] = grouped["hours_ack"].median()
    table["median_hours_to_handle"] = grouped["hours_handle"].median()
    table[["acknowledge_speed", "handle_speed"]] = grouped[["acknowledge_speed", "handle_speed"]].mean()
    table = table.reset_index()
    if stations is not None:
        table = _with_idle_stations(table, stations)

    n = table["warnings"].astype(float).where(table["warnings"] > 0)
    table["closure_rate"] = table["closed"] / n
    table["fed_back_share"] = table["fed_back"] / n
    closed_n = table["closed"].astype(float).where(table["closed"] > 0)
    table["repeat_call_rate"] = table["repeat_calls"] / closed_n if with_calls else np.nan
    components = {
        "acknowledge_speed": table["acknowledge_speed"],
        "handle_speed": table["handle_speed"],
        "closure": table["closure_rate"],
        "not_overdue": 1.0 - table["overdue"] / n,
        "fed_back": table["fed_back_share"],
    }
    if with_calls:
        components["no_repeat_call"] = (table["closed"] - table["repeat_calls"]) / n
    total = sum(WEIGHTS[k] for k in components)
    points = sum(WEIGHTS[k] * v.astype(float) for k, v in components.items())
    table["score"] = np.round(100.0 * points / total, 1)
    return _ranked(table)[list(COLUMNS)].reset_index(drop=True)


def _with_idle_stations(table: pd.DataFrame, stations: pd.DataFrame) -> pd.DataFrame:
    """Add the stations that had no warning in the period: zero counts, NaN medians and speeds."""
    if "station_id" not in stations:
        raise ValueError("stations lacks column station_id; pass DataFrame(station_id, county_code)")
    idle = stations.loc[~stations["station_id"].isin(table["station_id"])].drop_duplicates("station_id")
    if idle.empty:
        return table
    extra = pd.DataFrame(
        {
            "station_id": idle["station_id"].to_numpy(),
            "county_code": idle["county_code"].to_numpy() if "county_code" in idle else None,
            **{c: 0 for c in ("warnings", "acknowledged", "closed", "overdue", "fed_back", "repeat_calls")},
            **{
                c: np.nan
                for c in ("median_hours_to_acknowledge", "median_hours_to_handle", "acknowledge_speed", "handle_speed")
            },
        }
    )
    return pd.concat([table, extra], ignore_index=True)


def _ranked(table: pd.DataFrame) -> pd.DataFrame:
    """Sorted best first with a unique rank; stations without warnings last, unranked."""
    assessed = table["warnings"] > 0
    order = table.assign(_idle=~assessed, _score=-table["score"].fillna(-1.0)).sort_values(
        ["_idle", "_score", "overdue", "median_hours_to_acknowledge", "station_id"],
        na_position="last",
        kind="mergesort",
    )
    rank = pd.array([pd.NA] * len(order), dtype="Int64")
    ranked = ~order["_idle"].to_numpy()
    rank[ranked] = np.arange(1, int(ranked.sum()) + 1)
    return order.assign(rank=rank).drop(columns=["_idle", "_score"])


def assessment_for(
    store: WarningStore,
    first_date: date | str,
    last_date: date | str,
    hours: Mapping[str, int],
    now: datetime,
    repeat_calls: pd.DataFrame | None = None,
    county_code: str | None = None,
    *,
    stations: pd.DataFrame | None = None,
    calls_timezone: str = "Asia/Shanghai",
) -> pd.DataFrame:
    """The league table of the warnings ranked ``first_date`` .. ``last_date`` (a county's stations, or all).

    Reads ``store.loop_frames`` (three indexed queries), then :func:`models.loop.loop_frame` and
    :func:`station_assessment`. With ``county_code``, ``stations`` is narrowed to that county too.
    Use :func:`assessment_period` for the period of a day.
    """
    first = first_date.isoformat() if isinstance(first_date, date) else first_date
    last = last_date.isoformat() if isinstance(last_date, date) else last_date
    warnings, events, supervisions = store.loop_frames(first, last, county_code=county_code)
    loop = loop_frame(warnings, events, supervisions, hours, now)
    if stations is not None and county_code is not None and "county_code" in stations:
        stations = stations[stations["county_code"] == county_code]
    return station_assessment(loop, now, repeat_calls, stations=stations, calls_timezone=calls_timezone)


def summary(table: pd.DataFrame) -> dict[str, Any]:
    """Headline figures of a league table (for a report's text): stations assessed and the city's totals."""
    assessed = table[table["warnings"] > 0]
    warnings = int(table["warnings"].sum())
    return {
        "stations": len(table),
        "assessed": len(assessed),
        "warnings": warnings,
        "closed": int(table["closed"].sum()),
        "overdue": int(table["overdue"].sum()),
        "closure_rate": float(table["closed"].sum() / warnings) if warnings else float("nan"),
        "median_score": float(assessed["score"].median()) if len(assessed) else float("nan"),
    }
