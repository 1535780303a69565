"""``POST /v1/incidents/score`` and ``score-batch``: classify incidents and update their households' risk.

A batch answers item by item: each incident is validated and scored on its
own, a bad one gets an error entry with the status a single request would
have had (422, 404, 403), and the others are scored. Only a body that is not
a batch at all (not JSON, no ``incidents`` list, more than ``max_batch``
items) fails as a whole.

``score`` is ``async`` and scores an ordinary incident on the event loop
(~1 ms of CPU-bound Python, which a worker thread would only slow down with
a thread-pool hop and GIL hand-offs); a narrative longer than
:data:`INLINE_NARRATIVE_CHARS` and every batch run in the thread pool so
that they cannot stall the loop (docs/performance.md).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from serving.audit import record
from serving.auth import Principal
from serving.incident import Engine, HouseholdNotFound, IncidentTimeError, score_incident
from serving.routers._common import CheckedRoute, engine_of, errors, json_ok
from serving.schemas import BatchIn, BatchOut, IncidentIn, ScoreOut, echoable_reference, plain_errors
from serving.security import Caller

router = APIRouter(prefix="/v1/incidents", tags=["incidents"], route_class=CheckedRoute)
INLINE_NARRATIVE_CHARS = 4_000
"""Narratives up to this length are scored on the event loop (~1 ms); longer ones in the thread pool."""


class ItemFailed(Exception):
    """One incident that cannot be scored: the status and the error entries a client gets (never its input)."""

    def __init__(self, status: int, error: str, field_errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.field_errors = status, error, field_errors


def _too_long(limit: int) -> list[dict[str, Any]]:
    return [
        {
            "loc": ["body", "narrative"],
            "msg": f"String should have at most {limit} characters",
            "type": "string_too_long",
        }
    ]


def score_checked(
    request: Request, engine: Engine, principal: Principal, incident: IncidentIn, explain: bool
) -> dict[str, Any]:
    """One validated incident's answer, or :class:`ItemFailed` (length, time, unknown or foreign household)."""
    limit = request.app.state.settings.max_narrative_chars
    if len(incident.narrative) > limit:
        raise ItemFailed(422, "the incident does not fit the schema", _too_long(limit))
    try:
        answer = score_incident(engine, incident.model_dump(), explain=explain)
    except HouseholdNotFound as exc:
        raise ItemFailed(404, str(exc)) from None
    except IncidentTimeError as exc:  # the clock moved past midnight since validation, or a direct caller
        raise ItemFailed(422, "the incident does not fit the schema", _time_error(str(exc))) from None
    household = answer.get("household")
    if household is not None:
        record(request, households=[household["household_id"]])
        if not principal.sees(household["station_id"], household["county_code"]):
            raise ItemFailed(403, "this key may not see that household")
    return answer


def _time_error(message: str) -> list[dict[str, Any]]:
    return [{"loc": ["body", "received_at"], "msg": f"Value error, {message}", "type": "value_error"}]


@router.post("/score", response_model=ScoreOut, responses=errors(400, 401, 403, 404, 413, 422, 503))
async def score_one(
    request: Request,
    principal: Caller,
    engine: Annotated[Engine, Depends(engine_of)],
    body: IncidentIn,
    explain: bool = True,
) -> Response:
    """Classify one incident and, when its household is known, its household's risk updated with it.

    On the event loop unless the narrative is longer than ``INLINE_NARRATIVE_CHARS`` (then the thread pool).
    """
    try:
        if len(body.narrative) <= INLINE_NARRATIVE_CHARS:
            answer = score_checked(request, engine, principal, body, explain)
        else:
            answer = await run_in_threadpool(score_checked, request, engine, principal, body, explain)
        return json_ok(answer)
    except ItemFailed as exc:
        if exc.field_errors is not None:
            raise RequestValidationError(exc.field_errors) from None
        raise HTTPException(exc.status, exc.error) from None


def _item_id(raw: Any) -> str | None:
    """A batch item's own reference, only when it is a valid id (anything else may be personal data)."""
    value = raw.get("id") if isinstance(raw, dict) else None
    return value if echoable_reference(value) else None


@router.post("/score-batch", response_model=BatchOut, responses=errors(400, 401, 413, 422, 503))
def score_batch(
    request: Request,
    principal: Caller,
    engine: Annotated[Engine, Depends(engine_of)],
    body: BatchIn,
    explain: bool = True,
) -> Response:
    """Score many incidents; one result per incident, in order, each with its ``index``.

    A result is either the incident's answer or an error entry (``error``,
    ``status``, ``errors`` for field problems); the batch itself is 200.
    """
    limit = request.app.state.settings.max_batch
    if len(body.incidents) > limit:
        raise HTTPException(413, f"{len(body.incidents)} incidents; at most {limit} per request")
    results: list[dict[str, Any]] = []
    failed = 0
    for index, raw in enumerate(body.incidents):
        try:
            try:
                incident = IncidentIn.model_validate(raw)
            except ValidationError as exc:
                raise ItemFailed(422, "the incident does not fit the schema", plain_errors(exc.errors())) from None
            answer = score_checked(request, engine, principal, incident, explain)
        except ItemFailed as exc:
            failed += 1
            entry = {"index": index, "id": _item_id(raw), "status": exc.status, "error": exc.error}
            if exc.field_errors is not None:
                entry["errors"] = [e | {"loc": [x for x in e["loc"] if x != "body"]} for e in exc.field_errors]
            results.append(entry)
            continue
        answer["index"] = index
        results.append(answer)
    return json_ok(
        {
            "results": results,
            "scored": len(results) - failed,
            "failed": failed,
            "degraded": engine.degraded,
            "models": dict(engine.versions),
        }
    )
