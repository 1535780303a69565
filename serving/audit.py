"""The audit log: one JSON line per request saying who read what, and nothing a caller typed unchecked.

Each line: time, the key's short hash and scope (never the key), method,
the route *template* (``/v1/households/{household_id}/risk``, never the
path), status, what was read and the milliseconds taken. Never a body.

"What was read" comes from the routes (:func:`record`), and only after a
value was validated: a household id the registry holds, a date that is a
date, a warning id that exists. A value that failed its check is written as
:func:`hashed` (``#`` and 10 hex of its SHA-256: repeated probes with one
value can be told apart, the value cannot be read back); an ID number sent
as a household id is therefore never in the log (issue 11).

The writer appends each line with one ``os.write`` on an ``O_APPEND`` file
descriptor: atomic between the workers of ``--workers N`` and no logging
machinery per request.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.auth import Principal

INVALID = "<invalid>"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def hashed(value: object) -> str:
    """A value that must not be logged as it is: ``#`` and the first 10 hex of its SHA-256."""
    return "#" + hashlib.sha256(str(value).encode("utf-8", "replace")).hexdigest()[:10]


def record(scope_or_request: Any, **values: Any) -> None:
    """Add validated values to the request's audit entry (``households`` lists are extended)."""
    state = scope_or_request.state if hasattr(scope_or_request, "state") else None
    audit = getattr(state, "audit", None) if state is not None else None
    if audit is None:
        return
    for key, value in values.items():
        if key == "households":
            audit.setdefault("households", []).extend(value)
        else:
            audit[key] = value


class AuditWriter:
    """Appends lines to the audit file (created with its folder on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def write(self, entry: dict[str, Any]) -> None:
        """One line, one system call."""
        os.write(self._fd, (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8"))

    def close(self) -> None:
        """Close the file descriptor (the writer must not be used afterwards)."""
        with contextlib.suppress(OSError):
            os.close(self._fd)


class AuditLog:
    """ASGI middleware: one audit line per HTTP request (a pure ASGI layer: no per-request task).

    Routes add what they read with :func:`record`; the key check puts the
    principal on ``request.state.principal``.
    """

    def __init__(self, app: ASGIApp, writer: AuditWriter) -> None:
        self.app, self.writer = app, writer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        state["audit"] = {}
        state["principal"] = None
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
            self.writer.write(
                {
                    "at": datetime.now().astimezone().isoformat(timespec="milliseconds"),
                    "who": principal.describe() if principal else None,
                    "method": method if (method := scope.get("method")) in _METHODS else INVALID,
                    "route": getattr(route, "path", "(unmatched)"),
                    "status": status,
                    "read": state.get("audit") or {},
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                }
            )
