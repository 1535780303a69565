"""The workbench: the closed loop in the browser, served by ``yujing serve`` beside the API (docs/workbench.md).

Server-rendered pages under ``/wb`` (Jinja2 templates of web/templates/workbench/, Chinese
text, inline SVG charts, no script): the city's overview, a county's overview and its
supervision (督办) list, a station's warnings with acknowledge / handle / feed back forms,
a household's timeline, the station league table and the analysis reports. People sign in
with their API key (the same keys and scopes as the API); the session is a signed cookie
and every form carries a CSRF token.

One job a module: session.py (the cookie), csrf.py (the forms' token and origin check),
people.py (the keys file, re-read on change), core.py (the viewer, refusals, rendering),
headers.py (security headers), folder.py (per-ranking precomputation), loopcache.py (the
loop of recent warnings in memory), data.py (the page queries), figures.py (charts),
pages/ (one router per page).

Nothing here changes the API: every route is ``include_in_schema=False``, the pages are
sync routes (the thread pool, never the event loop), and the caches are built in the
loading and reload threads.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from serving.workbench.core import (
    LOGIN,
    PageError,
    SignInRequired,
    Workbench,
    clear_session,
    current_viewer,
    not_found,
    page,
)
from serving.workbench.data import WorkbenchData
from serving.workbench.headers import WorkbenchHeaders
from serving.workbench.pages import actions, assessment, household, login, overview, reports, station, supervision
from serving.workbench.people import KeyDirectory
from serving.workbench.session import COOKIE, SessionCodec, load_secret

__all__ = ["install", "warm"]
log = logging.getLogger("yujing.serving")


async def _sign_in(request: Request, _exc: Exception) -> Response:
    """303 to the sign-in page; a cookie that no longer signs anyone in is dropped."""
    response = RedirectResponse(LOGIN, status_code=303)
    if COOKIE in request.cookies:
        clear_session(response)
    return response


def _refused(request: Request, exc: Exception) -> Response:
    """A :class:`PageError` as a page with its status (403 ``无权访问``, 404 ``未找到`` ...)."""
    assert isinstance(exc, PageError)
    return page(request, "error.html", current_viewer(request), status=exc.status, title=exc.title, message=exc.message)


def install(app: FastAPI, settings: Any) -> Workbench:
    """Mount the workbench on ``app``: its routes, refusal pages and security headers (call after the API's routes)."""
    secret = load_secret(settings.session_secret_file)
    workbench = Workbench(
        codec=SessionCodec(secret, settings.session_max_age_seconds),
        people=KeyDirectory(settings.api_keys_file),
        data=WorkbenchData(settings),
        settings=settings,
    )
    app.state.workbench = workbench
    for area in (login, overview, station, household, actions, supervision, assessment, reports):
        app.include_router(area.router)

    @app.get("/wb/{rest:path}", include_in_schema=False)
    async def unknown_page(request: Request, rest: str) -> Response:  # after every real page
        raise not_found()

    app.add_exception_handler(SignInRequired, _sign_in)
    app.add_exception_handler(PageError, _refused)
    app.add_middleware(WorkbenchHeaders)
    return workbench


def warm(app: FastAPI) -> None:
    """Precompute the ranking's views and the loop cache, and hook the reload so a new ranking is precomputed too.

    Called where the service state is built (the loading thread with ``background=True``), so
    the first page does not pay for it. Failures are logged; pages then build what they need.
    """
    workbench: Workbench | None = getattr(app.state, "workbench", None)
    service = app.state.service
    if workbench is None or service is None:
        return
    from serving.routers.warnings import warning_store

    store = warning_store(SimpleNamespace(app=app))

    def prepare(history: Any) -> None:
        try:
            workbench.data.warm(history, store)
        except Exception as exc:  # pages build what they need; the log says why this did not
            log.warning("workbench warm-up failed: %s", type(exc).__name__)

    service.add_history_hook(prepare)
    prepare(service.engine.history)
    workbench.data.keep_fresh(store, workbench.settings.workbench_page_size)
