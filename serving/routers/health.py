"""``/healthz`` and ``/readyz`` (public), and ``/v1/models`` (with a key): is the service up, and what answers.

The public routes say only the mode and the versions: problems name files
and folders of the machine, so they are for key holders (``/v1/models``).
``/readyz`` is 200 once the models, history and rankings are loaded and 503
before; ``yujing serve`` polls it before saying "ready".
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from serving.incident import Engine
from serving.routers._common import engine_of, errors, json_ok
from serving.schemas import HealthOut, ModelsOut, ReadyOut
from serving.security import Caller

router = APIRouter(tags=["service"])


def _state(request: Request) -> str:
    """``ready``, ``loading`` or ``failed`` (the background load raised; the server log says why)."""
    if request.app.state.service is not None:
        return "ready"
    return "failed" if request.app.state.load_failed else "loading"


@router.get("/healthz", response_model=HealthOut)
async def healthz(request: Request) -> Response:
    """Liveness and mode: ``degraded`` when a model is missing and the rules answer; ``loading`` at start."""
    state = _state(request)
    if state != "ready":
        return json_ok({"status": state, "degraded": None, "models": None})
    engine = request.app.state.service.engine
    return json_ok(
        {
            "status": "degraded" if engine.degraded else "ok",
            "degraded": engine.degraded,
            "models": dict(engine.versions),
        }
    )


@router.get("/readyz", response_model=ReadyOut, responses={503: {"model": ReadyOut, "description": "Not ready yet."}})
async def readyz(request: Request) -> Response:
    """200 ``ready`` once models, history and rankings are loaded; 503 ``loading`` (or ``failed``) before."""
    state = _state(request)
    response = json_ok({"status": state})
    if state != "ready":
        response.status_code = 503
        response.headers["Retry-After"] = "1"
    return response


@router.get("/v1/models", response_model=ModelsOut, responses=errors(401, 503))
async def models(request: Request, principal: Caller, engine: Annotated[Engine, Depends(engine_of)]) -> Response:
    """The models and history the service answers with, why it is degraded if it is, and where they came from."""
    out: dict[str, Any] = {
        "versions": dict(engine.versions),
        "degraded": engine.degraded,
        "problems": list(engine.problems),
        "reloads": request.app.state.service.reloads,
    }
    if engine.escalation is not None:
        prov = engine.escalation.manifest.provenance
        out["escalation"] = {k: prov.get(k) for k in ("code_version", "data_fingerprint", "lexicon_version")}
        out["escalation"]["features"] = len(engine.escalation.feature_names("escalation"))
    if engine.dispute is not None:
        prov = engine.dispute.provenance or {}
        out["dispute"] = {k: prov.get(k) for k in ("code_version", "data_fingerprint", "lexicon_version")}
    return json_ok(out)
