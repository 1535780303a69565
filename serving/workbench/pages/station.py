"""``/wb/stations/{station_id}``: a station's warnings of a ranking date, in its rank order, with the actions."""

from __future__ import annotations

import re
from datetime import date as Date
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from models.assessment import assessment_period
from models.warning_tables import OUTCOMES
from serving.audit import hashed, record
from serving.schemas import DATE_PATTERN
from serving.workbench.core import Viewer, forbidden, not_found, page, service_parts, viewer, workbench_of
from serving.workbench.data import paged

router = APIRouter(include_in_schema=False)
DATES_SHOWN = 14
"""Ranking dates offered as links above the list."""


def valid_day(value: str | None) -> str | None:
    """A ``YYYY-MM-DD`` that is a calendar date, else None."""
    if value is None or not re.match(DATE_PATTERN, value):
        return None
    try:
        return Date.fromisoformat(value).isoformat()
    except ValueError:
        return None


@router.get("/wb/stations/{station_id}")
def station_page(
    request: Request,
    station_id: str,
    who: Annotated[Viewer, Depends(viewer)],
    date: Annotated[str | None, Query()] = None,
    page_number: Annotated[str | None, Query(alias="page")] = None,
) -> Response:
    """The station's warnings of ``date`` (default: the latest ranking), page by page."""
    wb = workbench_of(request)
    history, store = service_parts(request)
    views = wb.data.views(history)
    station = views.stations.get(station_id) if views is not None else None
    if station is None:
        record(request, station=hashed(station_id))
        if who.scope != "city":
            raise forbidden()
        raise not_found("没有该派出所。")
    if not who.sees(station.station_id, station.county_code):
        record(request, station=station_id)
        raise forbidden()
    record(request, station=station_id)
    assert views is not None
    day = views.date if date is None else valid_day(date)
    dates = store.dates() if store is not None else []
    if day is None or (day != views.date and day not in dates):
        raise not_found("该日期没有排名。")
    warnings = wb.data.station_warnings(store, views, station_id, day) if store is not None else []
    number = int(page_number) if page_number and page_number.isdigit() and len(page_number) < 6 else 1
    listing = paged(warnings, number, wb.settings.workbench_page_size)
    league = []
    if store is not None:
        snap = wb.data.snapshot(store, views)
        period = assessment_period(Date.fromisoformat(views.date))
        table = wb.data.league(store, views, snap, period)
        league = wb.data.league_rows(table[table["station_id"] == station_id], views)
    return page(
        request,
        "station.html",
        who,
        station=station,
        day=day,
        latest=views.date,
        dates=dates[:DATES_SHOWN],
        listing=listing,
        outcomes=OUTCOMES,
        league=league,
        period=assessment_period(Date.fromisoformat(views.date)),
    )
