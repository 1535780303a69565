"""``/wb/`` (the city's overview) and ``/wb/counties/{code}`` (a county's): charts, overdue, escalations, league."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from models.drift_views import drift_view
from serving.audit import hashed, record
from serving.workbench.core import Viewer, forbidden, not_found, page, service_parts, viewer, workbench_of

router = APIRouter(include_in_schema=False)


def _overview(request: Request, who: Viewer, county: str | None) -> Response:
    wb = workbench_of(request)
    history, store = service_parts(request)
    views = wb.data.views(history)
    if views is None or store is None:
        return page(request, "empty.html", who, reason="暂无可用的排名或预警库，请先运行 yujing rank。")
    if county is not None and county not in views.counties:
        record(request, county=hashed(county))
        raise not_found("没有该县（区）。")
    record(request, county=county)
    overview = wb.data.overview(store, views, county, wb.settings.workbench_page_size)
    return page(
        request,
        "overview.html",
        who,
        county=county,
        county_name=views.counties.get(county, "") if county else "",
        o=overview,
        charts=wb.data.charts(views, overview, county),
        drift=None if county else drift_view(getattr(history, "manifest", {}).get("drift")),  # docs/drift.md
    )


@router.get("/wb/")
def city_overview(request: Request, who: Annotated[Viewer, Depends(viewer)]) -> Response:
    """The city center's overview (city scope only; others go to their own page)."""
    if who.scope != "city":
        raise forbidden("市局总览仅对市局账号开放。")
    return _overview(request, who, None)


@router.get("/wb/counties/{code}")
def county_overview(request: Request, code: str, who: Annotated[Viewer, Depends(viewer)]) -> Response:
    """A county's overview: the same pieces for its stations only."""
    if not who.sees_county(code):
        raise forbidden()
    return _overview(request, who, code)
