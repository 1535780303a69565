"""``/wb/assessment[?period=YYYY-MM-DD]``: the station league table (自动考评) of a two-month period.

Any day inside the period names it (default: the period of the latest ranking). The city sees
every station, a county its stations, a station its own row only. The rules are docs/assessment.md.
"""

from __future__ import annotations

from datetime import date as Date
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from models.assessment import assessment_period
from serving.workbench.core import Viewer, not_found, page, service_parts, viewer, workbench_of
from serving.workbench.pages.station import valid_day

router = APIRouter(include_in_schema=False)


@router.get("/wb/assessment")
def assessment_page(
    request: Request, who: Annotated[Viewer, Depends(viewer)], period: Annotated[str | None, Query()] = None
) -> Response:
    wb = workbench_of(request)
    history, store = service_parts(request)
    views = wb.data.views(history)
    if views is None or store is None:
        return page(request, "empty.html", who, reason="暂无可用的排名或预警库，请先运行 yujing rank。")
    day = views.date if period is None else valid_day(period)
    if day is None:
        raise not_found("考评周期应写作 YYYY-MM-DD（周期内任意一天）。")
    first, last = assessment_period(Date.fromisoformat(day))
    table = wb.data.league(store, views, wb.data.snapshot(store, views), (first, last))
    if who.scope == "county":
        table = table[table["county_code"] == who.principal.county]
    elif who.scope == "station":
        table = table[table["station_id"] == who.principal.station]
    return page(
        request,
        "assessment.html",
        who,
        first=first,
        last=last,
        league=wb.data.league_rows(table, views),
        previous=(first - timedelta(days=1)).isoformat(),
        following=(last + timedelta(days=1)).isoformat(),
        current=assessment_period(Date.fromisoformat(views.date))[0] == first,
    )
