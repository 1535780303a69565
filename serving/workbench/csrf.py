"""Cross-site request forgery: three locks on every workbench POST.

1. **A token per session in every form.** ``csrf_token`` is an HMAC-SHA256 of the
   session's nonce under the server's secret: it cannot be computed without the secret,
   it changes with every sign-in, and it is checked in constant time. A POST without it,
   or with another session's, is refused with 403.
2. **SameSite=Strict** on the session cookie (serving/workbench/session.py): a browser
   does not send it with a request another site starts.
3. **Origin, else Referer**, when the browser sends one, must be this server's own
   origin. Both absent (some proxies strip them) is allowed: the token still holds.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from starlette.requests import Request

FIELD = "csrf_token"


def token_for(secret: bytes, nonce: str) -> str:
    """The form token of a session (hex; the same for every form of that session)."""
    return hmac.new(secret, b"csrf|" + nonce.encode(), hashlib.sha256).hexdigest()[:40]


def token_ok(secret: bytes, nonce: str, sent: object) -> bool:
    """Whether a form's token is this session's."""
    return isinstance(sent, str) and hmac.compare_digest(token_for(secret, nonce), sent)


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def own_origin(request: Request) -> str:
    """``scheme://host[:port]`` as the browser addressed this server (the Host header; proxies forward it)."""
    host = request.headers.get("host") or request.url.netloc
    return f"{request.url.scheme}://{host}".lower()


def same_origin(request: Request) -> bool:
    """False when the browser says the form came from another origin (Origin first, else Referer)."""
    origin = request.headers.get("origin")
    if origin is not None:
        return origin.lower() != "null" and _origin_of(origin) == own_origin(request)
    referer = request.headers.get("referer")
    if referer is not None:
        return _origin_of(referer) == own_origin(request)
    return True
