"""The online endpoint: ``create_app()`` wires FastAPI over the champion ONNX bundle, the history and the warnings.

``yujing serve`` runs ``create_app`` on uvicorn (a factory: each worker
builds its own). The routes live in serving/routers/ (one APIRouter per
area), their request and response models in serving/schemas.py, the key in
serving/security.py, the audit log in serving/audit.py. This module adds
what holds for every request, outermost first:

* :class:`~serving.audit.AuditLog`: one line per request, validated values only;
* :class:`LastResort`: an exception no route handled becomes a generic 500
  (no detail, the connection kept) and a log line naming its type and
  place; tests/test_api_errors.py proves that no known bad input reaches it;
* :class:`BodyLimit`: bodies over ``max_body_bytes`` are 413, declared or read;
* handlers that turn validation errors into 422 without the input (400 for
  an empty body), and the offline Swagger UI and ReDoc at ``/docs`` and
  ``/redoc`` (assets from the fastapi-offline package, no CDN).

The workbench (serving/workbench/, docs/workbench.md) is mounted on the same
app under ``/wb``: browser pages signed in with the same keys, outside the
published schema, with their own security headers.

Every route but ``/healthz``, ``/readyz`` and the documentation needs an
``X-API-Key``. Nothing a caller sent is echoed in an error.
"""

from __future__ import annotations

import json
import logging
import threading
import traceback
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conf import Settings, get_settings
from serving import workbench
from serving.audit import AuditLog, AuditWriter
from serving.auth import KeyRing
from serving.routers import health, households, incidents, rankings, warnings
from serving.schemas import plain_errors
from serving.state import ServiceState

API_VERSION = "v1"
DOCS_ASSETS = "/docs-assets"
log = logging.getLogger("yujing.serving")


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


class BodyTooLarge(HTTPException):
    """The body is larger than the limit (an HTTPException: FastAPI's body reader passes those on)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"body larger than {limit} bytes")


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
                raise BodyTooLarge(self.limit)
            return message

        started = False

        async def send_and_see(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, send_and_see)
        except BodyTooLarge:
            if not started:
                await _send_json(send, 413, {"detail": f"body larger than {self.limit} bytes"})


class LastResort:
    """ASGI middleware: any exception that escaped the routes becomes a generic 500 and one log line.

    The line names the exception's type and where it was raised, never its
    message (messages quote values, and values may be personal data). The
    exception is not re-raised, so the server keeps the connection alive.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_and_see(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_and_see)
        except Exception as exc:
            frames = traceback.extract_tb(exc.__traceback__)
            where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name}" if frames else "?"
            route = getattr(scope.get("route"), "path", "(unmatched)")
            log.error("unhandled %s at %s (route %s)", type(exc).__name__, where, route)
            if not started:
                await _send_json(send, 500, {"detail": "internal error; the server log names it"})


async def _send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def build_state(settings: Settings) -> ServiceState:
    """The service state from the settings: models, history and rankings loaded (takes seconds)."""
    return ServiceState(
        rankings_dir=settings.rankings_dir,
        thresholds=settings.level_thresholds,
        tracking_uri=settings.mlflow_tracking_uri,
        champion_cache=settings.home / "champion",
        bundle=settings.serve_bundle,
    )


def _load(app: FastAPI, settings: Settings) -> None:
    """Build the state and publish it on the app (``/readyz`` turns 200); remember a failure for ``/readyz``."""
    try:
        service = build_state(settings)
    except Exception as exc:
        app.state.load_failed = type(exc).__name__
        log.error("loading the service failed: %s", type(exc).__name__)
        return
    service.watch(settings.reload_interval_seconds)
    app.state.service = service


def _invalid(_request: Request, exc: Exception) -> JSONResponse:
    """422 with ``loc``, ``msg`` and ``type`` only; an empty body (FastAPI: body missing) is a 400."""
    found = list(exc.errors()) if isinstance(exc, RequestValidationError) else []
    if any(e.get("type") == "missing" and tuple(e.get("loc", ())) == ("body",) for e in found):
        return JSONResponse({"detail": "empty body: send a JSON object"}, status_code=400)
    return JSONResponse({"detail": plain_errors(found)}, status_code=422)


def _documented_limits(app: FastAPI, settings: Settings) -> None:
    """Write the limits that are settings into the published schema (generated once, then cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            models = schema["components"]["schemas"]
            batch = models["BatchIn"]["properties"]["incidents"]
            batch["maxItems"] = settings.max_batch
            for incident in (models["IncidentIn"], batch["items"]):  # the batch's items are inlined
                incident["properties"]["narrative"]["maxLength"] = settings.max_narrative_chars
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _offline_docs(app: FastAPI) -> None:
    """Swagger UI and ReDoc with their scripts served by the app itself (an intranet has no CDN)."""
    import fastapi_offline

    static = Path(fastapi_offline.__file__).parent / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=static), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )


def create_app(
    settings: Settings | None = None, state: ServiceState | None = None, *, background: bool = False
) -> FastAPI:
    """The service; ``settings`` default to the process's, ``state`` to one built from them.

    Without ``state`` the models and history are loaded here (seconds), or,
    with ``background=True``, in a thread while the app already answers:
    ``/healthz`` says ``loading``, ``/readyz`` is 503 and the other routes
    503 until the state is in place.
    """
    settings = settings or get_settings()
    keys = KeyRing.from_file(settings.api_keys_file)
    writer = AuditWriter(settings.home / "logs" / "audit.jsonl")

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        yield
        if app.state.service is not None:
            app.state.service.close()
        app.state.workbench.data.close()
        if "store" in app.state.stores:
            app.state.stores.pop("store").dispose()

    app = FastAPI(
        title="预警 yujing scoring API",
        version=API_VERSION,
        summary="Classify an incident, update its household's escalation risk, read the daily rankings.",
        description=(
            "Every route except `/healthz` and `/readyz` needs an `X-API-Key` header. Keys are scoped to the city "
            "center, a county or a station; a key sees only the households and rankings of its scope (403 "
            f"otherwise). `score-batch` takes at most {settings.max_batch} incidents and answers item by item; "
            f"bodies over {settings.max_body_bytes} bytes are refused with 413, narratives over "
            f"{settings.max_narrative_chars} characters with 422. When no model bundle is usable the service "
            "answers from the keyword rules and marks every answer `degraded: true`. Errors never repeat the input."
        ),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.keys = keys
    app.state.stores = {}
    app.state.service = None
    app.state.load_failed = None
    if state is not None:
        app.state.service = state
    elif not background:
        _load(app, settings)
        if app.state.service is None:
            raise RuntimeError(f"the service could not load its state ({app.state.load_failed}); see the log")

    for area in (incidents, households, rankings, warnings, health):
        app.include_router(area.router)
    app.add_exception_handler(RequestValidationError, _invalid)
    _documented_limits(app, settings)
    _offline_docs(app)
    workbench.install(app, settings)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(LastResort)
    app.add_middleware(AuditLog, writer=writer)
    if background:
        threading.Thread(target=_load_and_warm, args=(app, settings), name="yujing-load", daemon=True).start()
    else:
        workbench.warm(app)
    return app


def _load_and_warm(app: FastAPI, settings: Settings) -> None:
    """The loading thread of ``background=True``: the state, then the workbench's caches (pages answer meanwhile)."""
    _load(app, settings)
    workbench.warm(app)


def create_background_app() -> FastAPI:
    """``create_app(background=True)`` for uvicorn's ``--factory``: the port answers (``/readyz`` 503) while loading."""
    return create_app(background=True)
