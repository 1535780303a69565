"""The numbers of one weekly, monthly or quarterly report, from the loaded city and warnings database.

Pure: every input is handed in (the city's frames, the database's frames, the
model's manifests, the clock), and the output is a dict of small tables and
figures that pipelines/reports/render.py turns into the page, the PDF and
report.json.

Which warnings belong to a period: a ranking dated D is made on the morning
of D from the calls before D, so the period's calls (``first`` .. ``last``)
produce the rankings dated ``first + 1`` .. ``last + 1``. A weekly report of
Monday to Sunday therefore holds the rankings of Tuesday to the next Monday
morning, and the periods neither overlap nor leave a ranking out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import pandas as pd

from models.escalations import escalation_lead_times, household_places
from pipelines.reports import analysis
from pipelines.reports.data import CityData, LoopData
from pipelines.reports.disparity import period_disparity
from pipelines.reports.periods import Period

HISTORY_DAYS = 455
"""Ranking dates read before the period's end: a year of rankings whose 90-day outcome is known, plus 90 days."""


def ranked_dates(period: Period) -> tuple[dt.date, dt.date]:
    """The ranking dates whose warnings the period's calls produced (module docstring)."""
    one = dt.timedelta(days=1)
    return period.first + one, period.last + one


def history_first(period: Period) -> dt.date:
    """The first ranking date read for escalations and observed rates."""
    return period.last - dt.timedelta(days=HISTORY_DAYS)


def repeat_calls(city: CityData) -> pd.DataFrame:
    """Linked dispute calls as the station assessment takes them (household_id, received_at)."""
    calls = city.calls[city.calls["is_dispute"] & city.calls["household_id"].notna()]
    return calls[["household_id", "received_at"]].reset_index(drop=True)


def escalations(city: CityData, loop: LoopData, period: Period) -> pd.DataFrame:
    """The period's escalations with the rules' lead time and the published warnings before each."""
    tables = city.prepared.tables
    table = escalation_lead_times(
        city.prepared.calls,
        tables["cases"],
        tables["persons"],
        household_places(tables["households"], tables["addresses"]),
        pd.Timestamp(period.first),
        pd.Timestamp(period.last) + pd.Timedelta(days=1),
    )
    return analysis.published_before(table, loop.history)


def feedback_summary(loop: LoopData, ranked: tuple[dt.date, dt.date]) -> dict[str, Any] | None:
    """Outcomes the stations fed back on the period's warnings, and the false-alarm rate per level and reason.

    models/feedback.py's own counting (the state of each warning at ``now``);
    None when it is not available or the period has no warning.
    """
    try:
        from models.feedback import false_alarm_rates, loop_state
    except ImportError:  # older code without the feedback module: the section says so
        return None
    history = loop.history
    if history.empty:
        return None
    dates = pd.to_datetime(history["date"])
    chosen = history[(dates >= pd.Timestamp(ranked[0])) & (dates <= pd.Timestamp(ranked[1]))]
    if chosen.empty:
        return None
    state = loop_state(chosen, loop.events, pd.Timestamp(loop.now))
    outcomes = state["outcome"].dropna().value_counts()
    return {
        "warnings": len(state),
        "fed_back": int(outcomes.sum()),
        "outcomes": {str(k): int(v) for k, v in outcomes.items()},
        "false_alarm": false_alarm_rates(state),
    }


def period_numbers(
    city: CityData,
    loop: LoopData,
    period: Period,
    manifest: Mapping[str, Any] | None,
    training: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Every table and figure of the report (see the module docstring for which warnings count)."""
    counties = dict(zip(city.stations["county_code"], city.stations["county_name"], strict=False))
    ranked = ranked_dates(period)
    category = analysis.by_category(city.calls, period)
    county = analysis.by_county(city.calls, period, counties)
    warnings = analysis.warning_summary(loop.loop)
    esc = escalations(city, loop, period)
    esc_summary = analysis.escalation_summary(esc)
    hot = analysis.hot_spots(city.calls, period)
    repeat = analysis.repeat_households(city.calls, period)
    households = int(city.prepared.tables["households"]["household_id"].nunique())
    levels = analysis.level_outcomes(
        loop.history, city.prepared.tables["cases"], city.prepared.tables["persons"], households, city.latest_day
    )
    league = loop.league
    assessed = league[league["warnings"] > 0] if len(league) else league
    disputes = int(category["current"].sum())
    previous = int(category["previous"].sum())
    per_day_change = (disputes / period.days) / (previous / period.previous_days) - 1 if previous else None
    return {
        "period": {
            "kind": period.kind,
            "title": period.title,
            "first": period.first,
            "last": period.last,
            "days": period.days,
            "partial": period.partial,
            "full_last": period.full_last,
            "previous_first": period.previous_first,
            "previous_last": period.previous_last,
            "previous_days": period.previous_days,
            "ranked_first": ranked[0],
            "ranked_last": ranked[1],
            "bucket_days": analysis.bucket_days(period),
        },
        "overview": {
            "disputes": disputes,
            "disputes_previous": previous,
            "disputes_change": per_day_change,
            "calls": int(analysis.in_days(city.calls["received_at"], period.first, period.last).sum()),
            "warnings": warnings["total"],
            "closed": warnings["closed"],
            "overdue": warnings["overdue"],
            "escalation_cases": esc_summary["cases"],
            "escalation_households": esc_summary["households"],
            "warned_by_rules": esc_summary["warned_by_rules"],
            "warned_by_ranking": esc_summary["warned_by_ranking"],
            "hot_spots": int(hot["hot"].sum()) if len(hot) else 0,
            "repeat_households": len(repeat),
            "ranking_dates": sorted(d for d in loop.dates if ranked[0].isoformat() <= d <= ranked[1].isoformat()),
        },
        "by_category": category,
        "by_county": county,
        "trend": analysis.trend(city.calls, period),
        "warnings": warnings,
        "escalations": {"table": esc, "summary": esc_summary},
        "hot_spots": hot,
        "repeat": repeat,
        "levels": levels,
        "model": analysis.model_health(manifest, training),
        "disparity": period_disparity(  # who the warnings fell on (docs/fairness.md)
            city.prepared.tables, city.calls, loop.history, esc, period.first, period.last, ranked
        ),
        "drift": (manifest or {}).get("drift"),  # the latest ranking's drift table (docs/drift.md)
        "league": assessed.reset_index(drop=True),
        "league_idle": int(len(league) - len(assessed)),
        "league_period": loop.league_period,
        "feedback": feedback_summary(loop, ranked),
        "now": loop.now,
        "database_dates": len(loop.dates),
    }
