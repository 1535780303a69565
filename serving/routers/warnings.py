"""``POST /v1/warnings/{warning_id}/status``: a station moves its warning along the closed loop.

Also the service's handle on the warnings database (:func:`warning_store`,
:func:`from_store`; risk answers never depend on it). Notes are masked by
models.notes.mask_note before they are stored.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, Response

from serving.audit import record
from serving.routers._common import CheckedRoute, errors, json_ok
from serving.schemas import MAX_WARNING_ID, StatusIn, WarningRecord
from serving.security import Caller

router = APIRouter(prefix="/v1/warnings", tags=["warnings"], route_class=CheckedRoute)
log = logging.getLogger("yujing.serving")


def warning_store(request: Request) -> Any:
    """The warnings table, opened once per app (None when unreachable: answers that only read it go on)."""
    stores = request.app.state.stores
    if "store" not in stores:
        from models.warning_store import WarningStore

        try:
            stores["store"] = WarningStore(request.app.state.settings.warnings_db_url)
        except Exception as exc:  # unreachable or misconfigured: say so in the server log, answer without it
            log.warning("warnings database unavailable: %s", type(exc).__name__)
            return None
    return stores["store"]


def from_store(request: Request, method: str, *args: Any) -> Any:
    """A read from the warnings table, or None when it is unreachable or fails."""
    store = warning_store(request)
    if store is None:
        return None
    try:
        return getattr(store, method)(*args)
    except Exception as exc:
        log.warning("warnings database read %s failed: %s", method, type(exc).__name__)
        return None


@router.post("/{warning_id}/status", response_model=WarningRecord, responses=errors(400, 401, 403, 404, 409, 422, 503))
def warning_status(
    request: Request,
    principal: Caller,
    warning_id: Annotated[int, Path(ge=1, le=MAX_WARNING_ID, description="The warning's id (from a ranking).")],
    body: StatusIn,
) -> Response:
    """Move a warning along the closed loop: acknowledged, handled, fed back (with an outcome)."""
    from models.warning_store import WarningStoreError

    store = warning_store(request)
    if store is None:
        raise HTTPException(503, "the warnings database is unreachable; try again later")
    try:
        current = store.get(warning_id)
    except WarningStoreError:
        current = None
    if current is None:
        raise HTTPException(404, "no such warning")
    record(request, warning=warning_id)
    if not principal.sees(current["station_id"], current["county_code"]):
        raise HTTPException(403, "this key may not act on that warning")
    from models.notes import mask_note

    note = mask_note(body.note) if body.note else None
    try:
        moved = store.set_status(warning_id, body.status, actor=principal.key_id, note=note, outcome=body.outcome)
    except WarningStoreError as exc:
        raise HTTPException(409, str(exc)) from None
    return json_ok(moved)
