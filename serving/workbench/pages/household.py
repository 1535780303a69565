"""``/wb/households/{household_id}``: one household's timeline: calls (category and cues, never text), visits,
violent cases, warnings with their status changes and supervisions. The household's station and county decide
who may see it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from serving.audit import hashed, record
from serving.schemas import echoable_reference
from serving.workbench.core import Viewer, forbidden, not_found, page, service_parts, viewer, workbench_of

router = APIRouter(include_in_schema=False)


@router.get("/wb/households/{household_id}")
def household_page(request: Request, household_id: str, who: Annotated[Viewer, Depends(viewer)]) -> Response:
    """The timeline, newest first; 404 for an id nobody knows (an ID number typed here is never echoed or logged)."""
    wb = workbench_of(request)
    history, store = service_parts(request)
    if not echoable_reference(household_id):
        record(request, households=[hashed(household_id)])
        raise not_found("没有该户。")
    views = wb.data.views(history)
    found = wb.data.household(store, views, history, household_id)
    if found is None:
        record(request, households=[hashed(household_id)])
        raise not_found("没有该户。")
    record(request, households=[household_id])
    if not who.sees(found["station_id"], found["county_code"]):
        raise forbidden()
    station = views.stations.get(found["station_id"]) if views is not None else None
    return page(request, "household.html", who, h=found, station=station)
