"""``GET /v1/households/{household_id}/risk``: a household's level at the latest ranking, and its warning."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response

from serving.audit import hashed, record
from serving.incident import Engine, stored_household_level
from serving.routers._common import CheckedRoute, engine_of, errors, json_ok
from serving.routers.warnings import from_store
from serving.schemas import ID_PATTERN, RiskOut
from serving.security import Caller

router = APIRouter(prefix="/v1/households", tags=["households"], route_class=CheckedRoute)


@router.get("/{household_id}/risk", response_model=RiskOut, responses=errors(401, 403, 404, 422, 503))
def household_risk(
    request: Request,
    principal: Caller,
    engine: Annotated[Engine, Depends(engine_of)],
    household_id: Annotated[str, Path(pattern=ID_PATTERN, description="The household key.")],
) -> Response:
    """A household's risk as of the latest ranking, its level, and its latest warning in the closed loop.

    The level policy at the history's date (before station capacity): the
    same fields as an incident's household block; the published warning
    (after capacity) is ``warning``.
    """
    household = engine.history.get(household_id) if engine.history is not None else None
    if household is None:
        record(request, households=[hashed(household_id)])  # unknown: may be anything, e.g. an ID number
        raise HTTPException(404, "no such household in the latest ranking")
    record(request, households=[household_id])
    if not principal.sees(household.station_id, household.county_code):
        raise HTTPException(403, "this key may not see that household")
    assessed = stored_household_level(engine, household, explain=True)
    warning = from_store(request, "latest_for_household", household_id)
    return json_ok({**assessed, "warning": warning, "degraded": engine.degraded, "models": dict(engine.versions)})
