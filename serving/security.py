"""Who is calling: the ``X-API-Key`` header as an OpenAPI security scheme, resolved to a :class:`Principal`.

``APIKeyHeader(auto_error=False)`` publishes the scheme in ``/openapi.json``
(Swagger UI's "Authorize" button) and leaves the 401 to us, so a missing and
an unknown key get the same answer and nothing of the sent key comes back.
The key ring is serving.auth's (its file format is its business); this module
uses only ``KeyRing.lookup``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from serving.auth import Principal

API_KEY_HEADER = "X-API-Key"
api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    scheme_name="ApiKey",
    description="A key from the service's keys file (YUJING_API_KEYS); scoped to the city, a county or a station.",
)


async def principal_of(request: Request, key: Annotated[str | None, Security(api_key_header)] = None) -> Principal:
    """The key's principal, remembered on the request for the audit log; 401 without a known key.

    ``async``: a constant-time lookup needs no worker thread (a sync dependency costs a thread-pool hop).
    """
    principal = request.app.state.keys.lookup(key)
    if principal is None:
        raise HTTPException(401, f"missing or unknown API key (send it in the {API_KEY_HEADER} header)")
    request.state.principal = principal
    return principal


Caller = Annotated[Principal, Depends(principal_of)]
"""A route parameter that requires a valid key."""
