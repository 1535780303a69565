"""Security headers on every workbench answer (pages, redirects, refusals, report files).

The pages carry no script, load nothing from elsewhere and post only to themselves, so the
policy can be the strictest that still shows them: inline CSS (the pages embed their
stylesheet), images only from the server or inline (SVG charts are inline markup), forms
only to this origin, and never inside another site's frame. ``no-store``: a page shows
warnings about families and must not stay in a shared computer's cache.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFIX = "/wb"
HEADERS = (
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
        b"frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
    (b"x-frame-options", b"DENY"),
)


class WorkbenchHeaders:
    """ASGI middleware: add :data:`HEADERS` to every answer under ``/wb`` (the API's answers are left as they are)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [h for h in HEADERS if h[0] not in names]
            await send(message)

        await self.app(scope, receive, with_headers)
