"""The online endpoint: FastAPI over the champion ONNX bundle, the stored history and the warnings table.

``create_app()`` builds the service from the settings (``yujing serve`` runs
it on uvicorn). Every route but ``/healthz`` needs an ``X-API-Key``
(serving/auth.py). Bodies are read and checked here, not by FastAPI's default
handlers, so a bad request gets a 4xx that says what is wrong without echoing
any of the input back (a narrative holds names, phones and ID numbers).
Each request is written to the audit log: who (a key's hash and scope), what
(route, households, date, station), the status and the time taken; never a
body.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import pyarrow.parquet as pq
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conf import Settings, get_settings
from pipelines.ranking_columns import API_COLUMNS, LIST_COLUMNS
from serving.auth import KeyRing, Principal
from serving.incident import HouseholdNotFound, score_incident, stored_household_level
from serving.state import ServiceState, ranking_folder

API_VERSION = "v1"


def _tcp_nodelay_for_all_tcp_sockets() -> None:
    """Turn Nagle off on every accepted TCP connection, also under ``uvicorn --workers N``.

    uvicorn's multi-worker listener is created without ``IPPROTO_TCP``
    (Kludex/uvicorn#3149), and asyncio sets ``TCP_NODELAY`` only when the
    socket's ``proto`` says TCP, so every keep-alive response waited ~40 ms
    for the client's delayed ACK (docs/performance.md). uvloop, used when
    installed, sets it itself.
    """
    import asyncio.base_events
    import socket

    def set_nodelay(sock: socket.socket) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    asyncio.base_events._set_nodelay = set_nodelay  # type: ignore[attr-defined]


_tcp_nodelay_for_all_tcp_sockets()
ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,64}$"


class IncidentIn(BaseModel):
    """One incident to score. Only ``narrative`` is required."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str | None = Field(None, pattern=ID_PATTERN, description="Your reference, echoed back (letters, digits, _.:-).")
    narrative: str = Field(..., min_length=1, description="The 110 record text (接警内容), as received.")
    received_at: datetime | None = Field(None, description="When the call came in (ISO 8601); default: now.")
    caller_person_id: str | None = Field(None, pattern=ID_PATTERN, description="The caller's person key, if linked.")
    address_id: str | None = Field(None, pattern=ID_PATTERN, description="The address key, if known.")
    household_id: str | None = Field(None, pattern=ID_PATTERN, description="The household key, if known.")


class BatchIn(BaseModel):
    """Many incidents in one request (up to the service's ``max_batch``)."""

    model_config = ConfigDict(extra="forbid")

    incidents: list[IncidentIn] = Field(..., min_length=1)


class StatusIn(BaseModel):
    """A station's step in the closed loop of a warning."""

    model_config = ConfigDict(extra="forbid")

    status: str = Field(..., description="acknowledged, handled or fed_back (forward only).")
    note: str | None = Field(None, max_length=2000, description="Free text; stored masked.")
    outcome: str | None = Field(None, description="With fed_back: resolved, ongoing, escalated or false_alarm.")


class BodyTooLarge(Exception):
    """The request body is larger than the configured limit."""


class BodyLimit:
    """ASGI middleware: refuse bodies over ``limit`` bytes with 413, before and while reading them."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _send_json(send, 413, {"detail": f"body larger than {self.limit} bytes"})
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise BodyTooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except BodyTooLarge:
            await _send_json(send, 413, {"detail": f"body larger than {self.limit} bytes"})


class AuditLog:
    """ASGI middleware: one JSON line per request, who read what (a pure ASGI layer: no per-request task).

    Handlers add what they read to ``request.state.audit``; the key check puts
    the principal on ``request.state.principal``. Bodies are never logged.
    """

    def __init__(self, app: ASGIApp, logger: logging.Logger) -> None:
        self.app, self.logger = app, logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        state.update(audit={}, principal=None)
        status = 500

        async def send_and_see(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_see)
        finally:
            principal: Principal | None = state.get("principal")
            route = scope.get("route")
            line = {
                "at": datetime.now().astimezone().isoformat(timespec="milliseconds"),
                "who": principal.describe() if principal else None,
                "method": scope.get("method"),
                "route": getattr(route, "path", "(unmatched)"),
                "status": status,
                "read": state.get("audit", {}),
                "ms": round((time.perf_counter() - started) * 1000, 2),
            }
            self.logger.info(json.dumps(line, ensure_ascii=False))


async def _send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _clean_errors(errors: list[Any]) -> list[dict[str, Any]]:
    """Validation errors without the offending input (it may be personal data)."""
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors]


async def read_json(request: Request, model: type[BaseModel]) -> Any:
    """The body as ``model``: 400 for empty, non-UTF-8 or malformed JSON, 422 for the wrong shape."""
    raw = await request.body()
    if not raw.strip():
        raise HTTPException(400, "empty body: send a JSON object")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HTTPException(400, f"body is not valid UTF-8 (bad byte at offset {exc.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HTTPException(
            400, f"body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(_clean_errors(exc.errors())) from None


def _audit_logger(path: Path) -> logging.Logger:
    logger = logging.getLogger(f"yujing.audit.{path}")
    if not logger.handlers:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def create_app(settings: Settings | None = None, state: ServiceState | None = None) -> FastAPI:
    """The service; ``settings`` default to the process's, ``state`` to one built from them."""
    settings = settings or get_settings()
    keys = KeyRing.from_file(settings.api_keys_file)
    audit = _audit_logger(settings.home / "logs" / "audit.jsonl")

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        yield
        app.state.service.close()
        if "store" in stores:
            stores["store"].dispose()

    app = FastAPI(
        title="预警 yujing scoring API",
        version=API_VERSION,
        summary="Classify an incident, update its household's escalation risk, read the daily rankings.",
        description=(
            "Every route except `/healthz` needs an `X-API-Key` header. Keys are scoped to the city center, "
            "a county or a station; a key sees only the households and rankings of its scope (403 otherwise). "
            f"`score-batch` takes at most {settings.max_batch} incidents; bodies over {settings.max_body_bytes} "
            "bytes are refused with 413. When no model bundle is usable the service answers from the keyword "
            "rules and marks every answer `degraded: true`."
        ),
        lifespan=lifespan,
    )
    app.state.service = state or ServiceState(
        rankings_dir=settings.rankings_dir,
        thresholds=settings.level_thresholds,
        tracking_uri=settings.mlflow_tracking_uri,
        champion_cache=settings.home / "champion",
        bundle=settings.serve_bundle,
    )
    if state is None:
        app.state.service.watch(settings.reload_interval_seconds)
    app.state.keys = keys
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(AuditLog, logger=audit)
    stores: dict[str, Any] = {}

    def warning_store() -> Any:
        """The warnings table (opened once; None when unreachable: risk answers do not depend on it)."""
        from models.warning_store import WarningStore

        if "store" not in stores:
            try:
                stores["store"] = WarningStore(settings.warnings_db_url)
            except Exception:
                return None
        return stores["store"]

    def from_store(method: str, *args: Any) -> Any:
        store = warning_store()
        if store is None:
            return None
        try:
            return getattr(store, method)(*args)
        except Exception:
            return None

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _clean_errors(list(exc.errors()))}, status_code=422)

    def scored(request: Request, principal: Principal, incident: IncidentIn, explain: bool = True) -> dict[str, Any]:
        engine = request.app.state.service.engine
        answer = score_incident(engine, incident.model_dump(), explain=explain)
        household = answer.get("household")
        if household is not None:
            request.state.audit.setdefault("households", []).append(household["household_id"])
            if not principal.sees(household["station_id"], household["county_code"]):
                raise HTTPException(403, "this key may not see that household")
        return answer

    @app.post(f"/{API_VERSION}/incidents/score", tags=["incidents"])
    def score_one(
        request: Request, principal: Caller, body: Annotated[Any, Depends(_body(IncidentIn))], explain: bool = True
    ) -> dict:
        """Classify one incident and, when its household is known, its household's risk updated with it."""
        try:
            return scored(request, principal, body, explain)
        except HouseholdNotFound as exc:
            raise HTTPException(404, str(exc)) from None

    @app.post(f"/{API_VERSION}/incidents/score-batch", tags=["incidents"])
    def score_batch(
        request: Request, principal: Caller, body: Annotated[Any, Depends(_body(BatchIn))], explain: bool = True
    ) -> dict:
        """Score many incidents; one result per incident in order, an ``error`` field where one failed."""
        if len(body.incidents) > settings.max_batch:
            raise HTTPException(413, f"{len(body.incidents)} incidents; at most {settings.max_batch} per request")
        results = []
        for incident in body.incidents:
            try:
                results.append(scored(request, principal, incident, explain))
            except HouseholdNotFound as exc:
                results.append({"id": incident.id, "error": str(exc), "status": 404})
            except HTTPException as exc:
                results.append({"id": incident.id, "error": exc.detail, "status": exc.status_code})
        engine = request.app.state.service.engine
        return {"results": results, "degraded": engine.degraded, "models": dict(engine.versions)}

    @app.get(f"/{API_VERSION}/households/{{household_id}}/risk", tags=["households"])
    def household_risk(request: Request, principal: Caller, household_id: str) -> dict:
        """A household's risk as of the latest ranking, its level, and its latest warning in the closed loop."""
        engine = request.app.state.service.engine
        request.state.audit["households"] = [household_id]
        household = engine.history.get(household_id) if engine.history is not None else None
        if household is None:
            raise HTTPException(404, "no such household in the latest ranking")
        if not principal.sees(household.station_id, household.county_code):
            raise HTTPException(403, "this key may not see that household")
        # The level policy at the history's date (before station capacity): the same fields as an incident's
        # household block; the published warning (after capacity) is ``warning``.
        assessed = stored_household_level(engine, household, explain=True)
        warning = from_store("latest_for_household", household_id)
        return {
            **assessed,
            "warning": warning,
            "degraded": engine.degraded,
            "models": dict(engine.versions),
        }

    @app.get(f"/{API_VERSION}/rankings/{{date}}", tags=["rankings"])
    def ranking(
        request: Request,
        principal: Caller,
        date: str,
        station: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
        county: Annotated[str | None, Query(pattern=r"^\d{6}$")] = None,
    ) -> dict:
        """A date's warnings with reasons, for the key's scope (a station key: its own station)."""
        request.state.audit.update({"date": date, "station": station, "county": county})
        if principal.scope == "station":
            if station is not None and station != principal.station:
                raise HTTPException(403, "a station key sees only its own station's ranking")
            station = principal.station
        if principal.scope == "county" and county is not None and county != principal.county:
            raise HTTPException(403, "a county key sees only its own county's ranking")
        folder = ranking_folder(settings.rankings_dir, date)
        if folder is None:
            raise HTTPException(404, f"no ranking published for {date!r} (dates look like 2024-12-31)")
        warnings, manifest = _warnings_of(str(folder))
        rows = warnings
        if station is not None:
            rows = rows[rows["station_id"] == station]
        if county is not None:
            rows = rows[rows["county_code"] == county]
        if principal.scope == "county":
            rows = rows[rows["county_code"] == principal.county]
            if station is not None and rows.empty and (warnings["station_id"] == station).any():
                raise HTTPException(403, "that station is outside this key's county")
        statuses = {
            r["household_id"]: {"id": r["id"], "status": r["status"]} for r in from_store("warnings_for", date) or []
        }
        records = json.loads(rows.to_json(orient="records", force_ascii=False))
        for record in records:
            record["warning"] = statuses.get(record["household_id"])
        return {
            "date": date,
            "engine": manifest.get("engine"),
            "model_version": manifest.get("model_version"),
            "station": station,
            "county": county if principal.scope != "county" else principal.county,
            "count": len(records),
            "warnings": records,
        }

    @app.post(f"/{API_VERSION}/warnings/{{warning_id}}/status", tags=["rankings"])
    def warning_status(
        request: Request, principal: Caller, warning_id: int, body: Annotated[Any, Depends(_body(StatusIn))]
    ) -> dict:
        """Move a warning along the closed loop: acknowledged, handled, fed back (with an outcome)."""
        from models.warning_store import WarningStoreError

        request.state.audit["warning"] = warning_id
        store = warning_store()
        if store is None:
            raise HTTPException(503, "the warnings database is unreachable; try again later")
        current = store.get(warning_id)
        if current is None:
            raise HTTPException(404, "no such warning")
        if not principal.sees(current["station_id"], current["county_code"]):
            raise HTTPException(403, "this key may not act on that warning")
        try:
            return store.set_status(
                warning_id, body.status, actor=principal.key_id, note=body.note, outcome=body.outcome
            )
        except WarningStoreError as exc:
            raise HTTPException(409, str(exc)) from None

    @app.get(f"/{API_VERSION}/models", tags=["service"])
    def models(request: Request, principal: Caller) -> dict:
        """The models and history the service answers with, and where they came from."""
        engine = request.app.state.service.engine
        out: dict[str, Any] = {
            "versions": dict(engine.versions),
            "degraded": engine.degraded,
            "problems": list(engine.problems),
        }
        if engine.escalation is not None:
            prov = engine.escalation.manifest.provenance
            out["escalation"] = {k: prov.get(k) for k in ("code_version", "data_fingerprint", "lexicon_version")}
            out["escalation"]["features"] = len(engine.escalation.feature_names("escalation"))
        if engine.dispute is not None:
            prov = engine.dispute.provenance or {}
            out["dispute"] = {k: prov.get(k) for k in ("code_version", "data_fingerprint", "lexicon_version")}
        return out

    @app.get("/healthz", tags=["service"])
    def healthz(request: Request) -> dict:
        """Liveness and mode: ``degraded`` when a model is missing and the rules answer."""
        service = request.app.state.service
        engine = service.engine
        return {
            "status": "degraded" if engine.degraded else "ok",
            "degraded": engine.degraded,
            "problems": list(engine.problems),
            "models": dict(engine.versions),
            "reloads": service.reloads,
        }

    return app


async def principal_of(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> Principal:
    """The key's principal; 401 without a known key. Remembered on the request for the audit log.

    ``async``: a constant-time lookup needs no worker thread (a sync dependency costs a thread-pool hop).
    """
    principal = request.app.state.keys.lookup(x_api_key)
    if principal is None:
        raise HTTPException(401, "missing or unknown API key (send it in the X-API-Key header)")
    request.state.principal = principal
    return principal


Caller = Annotated[Principal, Depends(principal_of)]


def _body(model: type[BaseModel]) -> Callable[[Request], Awaitable[Any]]:
    """A dependency that reads the body as ``model`` with this module's error rules."""

    async def dependency(request: Request) -> Any:
        return await read_json(request, model)

    dependency.__name__ = f"body_{model.__name__}"
    return dependency


@lru_cache(maxsize=8)
def _warnings_of(folder: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A published date's warned rows (cached per folder: a re-publish is a new folder)."""
    path = Path(folder)
    present = set(pq.read_schema(path / "ranking.parquet").names)
    columns = [c for c in API_COLUMNS if c in present]  # a ranking from before a column existed still serves
    ranking = pd.read_parquet(path / "ranking.parquet", columns=columns)
    warned = ranking[ranking["level"].notna()].sort_values(["station_id", "rank_in_station"]).reset_index(drop=True)
    for column in LIST_COLUMNS:
        if column in warned.columns:
            warned[column] = warned[column].map(list)
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    return warned, manifest
