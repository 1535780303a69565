"""The report jobs as plain functions: load, read the database, analyse, write.

``yujing report`` and the Prefect flow (pipelines/flows.py) run these same
functions, the flow with each step made a task (``step``), exactly as the
daily ranking does. Progress goes out as the step names of
:data:`REPORT_STEPS` / :data:`INCIDENT_STEPS`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.preparation import Prepared, code_version, prepare
from pipelines.reports.data import CityData, LoopData, ReportError, city_data, database_display
from pipelines.reports.periods import KINDS, Period, report_period
from pipelines.steps import step_runner

REPORT_STEPS = ("load, validate, score and link", "read the warnings database", "analyse", "write the report")
INCIDENT_STEPS = (
    "load, validate, score and link",
    "read the warnings database",
    "analyse the incident",
    "write the report",
)


@dataclass
class ReportResult:
    """What a report run wrote where, its headline numbers and step times (no personal data)."""

    folder: Path
    files: list[str]
    charts: int
    headline: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from pipelines.reports.render import plain

        return plain(
            {
                "folder": str(self.folder),
                "files": self.files,
                "charts": self.charts,
                "headline": self.headline,
                "timings": self.timings,
            }
        )


def report_end(city: CityData, end: str | None) -> dt.date:
    """The report's last day: ``--end``, else the data's latest day; a day outside the data is refused."""
    latest = city.latest_day
    if end is None:
        return latest
    day = dt.date.fromisoformat(end)
    first = pd.Timestamp(city.calls["received_at"].min()).date()
    if not first <= day <= latest:
        raise ReportError(
            f"--end {day.isoformat()} is outside the data ({first.isoformat()} .. {latest.isoformat()}); "
            "fix: give a day inside it, or leave --end out for the latest day"
        )
    return day


def _provenance(prepared: Prepared, store_url: str, now: dt.datetime, kind: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "created": now.isoformat(timespec="seconds"),
        "code_version": code_version(),
        "data_fingerprint": prepared.fingerprint,
        "database": database_display(store_url),
        **extra,
    }


def _names(city: CityData) -> dict[str, dict[str, str]]:
    stations = city.stations
    return {
        "stations": dict(zip(stations["station_id"], stations["station_name"], strict=False)),
        "counties": dict(zip(stations["county_code"], stations["county_name"], strict=False)),
    }


def read_period(
    city: CityData,
    period: Period,
    store_url: str,
    rankings_dir: Path,
    runs_dir: Path,
    hours: Mapping[str, int],
    now: dt.datetime,
) -> tuple[LoopData, dict[str, Any] | None, dict[str, Any] | None]:
    """The database for the period (loop, history, league), the latest ranking's manifest, the training report."""
    from models.assessment import assessment_period
    from pipelines.reports.data import latest_ranking_manifest, load_loop, training_report
    from pipelines.reports.period import history_first, ranked_dates, repeat_calls

    ranked = ranked_dates(period)
    loop = load_loop(
        store_url,
        ranked,
        history_first(period),
        assessment_period(period.last),
        dict(hours),
        now,
        repeat_calls(city),
        city.stations[["station_id", "county_code"]],
    )
    return loop, latest_ranking_manifest(Path(rankings_dir), ranked[1]), training_report(Path(runs_dir))


def run_report(
    data_dir: Path,
    kind: str,
    end: str | None,
    out_root: Path,
    store_url: str,
    rankings_dir: Path,
    runs_dir: Path,
    hours: Mapping[str, int],
    pdf: bool = True,
    now: dt.datetime | None = None,
    progress: Callable[[str], None] | None = None,
    step: Callable[[Callable[..., Any], str], Callable[..., Any]] | None = None,
    prepared: Prepared | None = None,
) -> ReportResult:
    """The week, month or quarter report ending ``end`` (default: the data's latest day), written to ``out_root``."""
    from pipelines.reports.render import period_page, write_report

    if kind not in KINDS:
        raise ReportError(f"--period {kind!r} is not one of {', '.join(KINDS)}; fix: --period month")
    now = now or dt.datetime.now(dt.UTC)
    run, timings = step_runner(progress, step)
    if prepared is None:
        prepared = run(REPORT_STEPS[0], prepare, Path(data_dir))
    city = city_data(prepared)
    period = report_period(kind, report_end(city, end))
    loop, manifest, training = run(
        REPORT_STEPS[1], read_period, city, period, store_url, Path(rankings_dir), Path(runs_dir), hours, now
    )
    provenance = _provenance(
        prepared, store_url, now, "period", period=period.kind, first=period.first, last=period.last
    )

    def analyse() -> tuple[dict[str, Any], str]:
        from pipelines.reports.period import period_numbers

        numbers = period_numbers(city, loop, period, manifest, training)
        return numbers, period_page(numbers, _names(city), provenance, hours)

    numbers, html = run(REPORT_STEPS[2], analyse)
    folder = run(REPORT_STEPS[3], write_report, Path(out_root), period.name, html, numbers, provenance, pdf)
    overview = numbers["overview"]
    headline = {
        "title": period.title,
        "first": period.first,
        "last": period.last,
        "disputes": overview["disputes"],
        "disputes_previous": overview["disputes_previous"],
        "warnings": overview["warnings"],
        "overdue": overview["overdue"],
        "escalation_cases": overview["escalation_cases"],
        "warned_by_rules": overview["warned_by_rules"],
        "warned_by_ranking": overview["warned_by_ranking"],
        "escalation_households": overview["escalation_households"],
        "hot_spots": overview["hot_spots"],
        "repeat_households": overview["repeat_households"],
        "stations_assessed": len(numbers["league"]),
    }
    files = sorted(p.name for p in folder.iterdir())
    return ReportResult(folder, files, html.count('class="chart"'), headline, timings)


def incident_folder(incident_id: str) -> str:
    """``incident-<id>``; an id that is not a plain key (slashes, dots, spaces) is replaced by its hash."""
    if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", incident_id):
        return f"incident-{incident_id}"
    return f"incident-{hashlib.sha256(incident_id.encode()).hexdigest()[:16]}"


def run_incident_report(
    data_dir: Path,
    incident_id: str,
    out_root: Path,
    store_url: str,
    pdf: bool = True,
    now: dt.datetime | None = None,
    progress: Callable[[str], None] | None = None,
    step: Callable[[Callable[..., Any], str], Callable[..., Any]] | None = None,
    prepared: Prepared | None = None,
) -> ReportResult:
    """The special analysis of one incident, written to ``out_root/incident-<id>/``."""
    from pipelines.reports.incident import find_incident, incident_analysis, parties
    from pipelines.reports.render import incident_page, write_report

    now = now or dt.datetime.now(dt.UTC)
    run, timings = step_runner(progress, step)
    if prepared is None:
        prepared = run(INCIDENT_STEPS[0], prepare, Path(data_dir))
    city = city_data(prepared)
    incident = find_incident(city, incident_id)  # an unknown id stops here, before the database is opened
    households = list(parties(city, incident)["household_id"])

    def read_warnings() -> dict[str, list[dict[str, Any]]]:
        from models.warning_store import WarningStore

        store = WarningStore(store_url)
        try:
            return {h: store.household_warnings(h) for h in households}
        finally:
            store.dispose()

    warnings = run(INCIDENT_STEPS[1], read_warnings)
    numbers = run(INCIDENT_STEPS[2], incident_analysis, city, incident_id, warnings)
    provenance = _provenance(prepared, store_url, now, "incident", incident_id=incident_id)
    html = incident_page(numbers, provenance)
    name = incident_folder(incident_id)
    folder = run(INCIDENT_STEPS[3], write_report, Path(out_root), name, html, numbers, provenance, pdf)
    headline = {
        "incident_id": incident_id,
        "households": len(households),
        "cases": len(numbers["cases"]),
        "calls": len(numbers["calls"]),
        "related_households": len(numbers["related"]),
        "warnings": len(numbers["warnings"]),
    }
    files = sorted(p.name for p in folder.iterdir())
    return ReportResult(folder, files, html.count('class="chart"'), headline, timings)
