"""What every router shares: the checked JSON body, the engine dependency, error answers, JSON responses.

Bodies are parsed here, not by Starlette's ``Request.json``: the bytes must
be UTF-8, the nesting at most :data:`MAX_JSON_DEPTH` deep (a body nested ~950
levels used to exhaust the interpreter's recursion limit: a 500 and a dropped
connection), and every failure is a 400 that says what is wrong without
quoting the body. FastAPI's own body handling (the declared pydantic model,
its OpenAPI request body, 422 for the wrong shape) then works on the parsed
value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute

from serving.incident import Engine
from serving.schemas import ErrorOut, ValidationErrorOut

MAX_JSON_DEPTH = 16
"""Deepest nesting a body may have; the deepest legitimate body (a batch) is 3 levels."""
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


class BadBody(HTTPException):
    """A body that is not the JSON a route takes (400)."""

    def __init__(self, detail: str) -> None:
        super().__init__(400, detail)


def json_depth_exceeds(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``raw`` nests arrays/objects deeper than ``limit`` (brackets inside strings do not count).

    Cheap for ordinary bodies: a body with at most ``limit`` opening brackets
    cannot be deeper, and only bodies with more are scanned (in C, by regex).
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    depth = 0
    for bracket in _BRACKETS.findall(_STRING.sub(b'""', raw)):
        depth += 1 if bracket in (b"[", b"{") else -1
        if depth > limit:
            return True
    return False


def parse_json(raw: bytes) -> Any:
    """The body's JSON value, or :class:`BadBody` (never quoting the body)."""
    if not raw or raw.isspace():  # isspace: no copy of a large body
        raise BadBody("empty body: send a JSON object")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody(f"body is not valid UTF-8 (bad byte at offset {exc.start})") from None
    if json_depth_exceeds(raw):
        raise BadBody(f"body is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadBody(f"body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except (ValueError, RecursionError):  # an integer over 4,300 digits; nesting the depth check missed
        raise BadBody("body is not JSON this service can read (a number too long, or nesting too deep)") from None


class CheckedJSONRequest(Request):
    """A request whose ``json()`` is :func:`parse_json` (FastAPI calls it for JSON bodies)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


class CheckedRoute(APIRoute):
    """An APIRoute that reads JSON bodies with :func:`parse_json`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            return await handler(CheckedJSONRequest(request.scope, request.receive))

        return checked


async def engine_of(request: Request) -> Engine:
    """The engine to answer this request with (read once per request); 503 while the service is loading."""
    service = request.app.state.service
    if service is None:
        raise HTTPException(503, "the service is still loading its models and history; poll /readyz")
    return service.engine


def json_ok(payload: Any) -> Response:
    """A 200 JSON answer serialised once, without FastAPI's encoder pass (the route's response_model documents it)."""
    return Response(json.dumps(payload, ensure_ascii=False, default=_plain), media_type="application/json")


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as plain JSON values (json.dumps calls this only for unknown types)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of a route (422: field errors; the others: ``detail``)."""
    why = {
        400: "The body is empty, not UTF-8, not JSON, or nested too deep.",
        401: "No key, or a key the service does not know.",
        403: "The key's scope does not cover this household, station, county or warning.",
        404: "No such household, date or warning.",
        409: "The warning cannot move to that status from where it is.",
        413: "The body is larger than max_body_bytes, or a batch has more than max_batch incidents.",
        422: "The request does not fit its schema (fields, lengths, ids, dates).",
        503: "The service is loading, or the warnings database is unreachable.",
    }
    documented: dict[int | str, dict[str, Any]] = {
        s: {"model": ValidationErrorOut if s == 422 else ErrorOut, "description": why[s]} for s in statuses
    }
    documented[500] = {"model": ErrorOut, "description": "An unexpected failure: never caused by input, and logged."}
    return documented
