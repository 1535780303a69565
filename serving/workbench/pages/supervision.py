"""``/wb/counties/{code}/supervision`` (督办): a county's overdue warnings, each with the supervise form."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from models.warning_tables import MAX_COMMENT
from serving.audit import hashed, record
from serving.workbench.core import Viewer, forbidden, not_found, page, service_parts, viewer, workbench_of
from serving.workbench.data import paged
from web.render import LOCAL_ZONE

router = APIRouter(include_in_schema=False)


@router.get("/wb/counties/{code}/supervision")
def supervision_page(
    request: Request,
    code: str,
    who: Annotated[Viewer, Depends(viewer)],
    page_number: Annotated[str | None, Query(alias="page")] = None,
) -> Response:
    """Open warnings past their deadline in the county's stations, longest overdue first (county or city scope)."""
    if who.scope == "station" or not who.sees_county(code):
        raise forbidden("督办页面仅对本县（区）局和市局开放。")
    wb = workbench_of(request)
    history, store = service_parts(request)
    views = wb.data.views(history)
    if views is None or code not in views.counties:
        record(request, county=hashed(code))
        raise not_found("没有该县（区）。")
    record(request, county=code)
    number = int(page_number) if page_number and page_number.isdigit() and len(page_number) < 6 else 1
    size = wb.settings.workbench_page_size
    listing = wb.data.overdue_of(store, views, code, number, size) if store is not None else paged([], 1, size)
    return page(
        request,
        "supervision.html",
        who,
        county=code,
        county_name=views.counties[code],
        listing=listing,
        max_comment=MAX_COMMENT,
        default_deadline=(datetime.now(LOCAL_ZONE) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
    )
