"""The workbench's session cookie: who signed in, signed by the server, never the key itself.

A browser cannot send ``X-API-Key`` on a link or a form, so a sign-in with a key
becomes a cookie. The cookie holds the key's *id* (the first 10 hex of its SHA-256,
what the audit log already names), its scope and a random nonce, signed with
itsdangerous (HMAC-SHA1 over a key derived from a secret file) and timestamped, so
it can be neither forged nor changed and it expires after
``settings.session_max_age_seconds``. Every request looks the id up in the keys
file again (serving/workbench/people.py): a revoked key's sessions end on their next
request. The nonce is what the CSRF token of the session's forms is derived from
(serving/workbench/csrf.py); a sign-in always gets a fresh one (no session fixation).

Before sign-in the login form needs a CSRF token too, so ``GET /wb/login`` hands out
an *anonymous* session: a nonce and nothing else.

The secret lives in ``settings.session_secret_file`` (default ``var/session.key``),
created with 32 random bytes and mode 0600 on first use; every worker of
``--workers N`` reads the same file, so a cookie signed by one is valid in all.
Replacing the file signs everybody out.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

COOKIE = "yujing_session"
COOKIE_PATH = "/wb"
SALT = "yujing-workbench-session"
_SECRET_BYTES = 32


class SessionSecretError(RuntimeError):
    """The secret file cannot be read or created; the message names the file and the fix."""


def load_secret(path: Path) -> bytes:
    """The signing secret from ``path``, created (32 random bytes, mode 0600) when missing.

    ``O_EXCL`` makes creation atomic between workers starting together: one writes the
    file, the others find it and read it. A file that is readable by others is refused
    (anyone who reads it can sign in as anybody).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(_SECRET_BYTES).hex().encode())
    try:
        mode = path.stat().st_mode & 0o777
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise SessionSecretError(f"{path}: cannot read the session secret ({exc.strerror})") from None
    if mode & 0o077:
        raise SessionSecretError(f"{path}: the session secret is readable by others (mode {mode:o}); chmod 600 it")
    if len(secret) < 32:
        raise SessionSecretError(f"{path}: the session secret is shorter than 32 characters; delete it for a new one")
    return secret


@dataclass(frozen=True)
class Session:
    """What a cookie says: the signed-in key's id and scope (None before sign-in) and the CSRF nonce."""

    nonce: str
    key_id: str | None = None
    scope: str | None = None

    @property
    def signed_in(self) -> bool:
        return self.key_id is not None


def new_session(key_id: str | None = None, scope: str | None = None) -> Session:
    """A session with a fresh random nonce (anonymous without a key id)."""
    return Session(nonce=secrets.token_urlsafe(18), key_id=key_id, scope=scope)


class SessionCodec:
    """Signs sessions into cookie values and reads them back (None for anything forged, changed or expired)."""

    def __init__(self, secret: bytes, max_age_seconds: int) -> None:
        self.secret = secret
        self.max_age = int(max_age_seconds)
        self._serializer = URLSafeTimedSerializer(secret, salt=SALT)

    def dumps(self, session: Session) -> str:
        payload: dict[str, str] = {"n": session.nonce}
        if session.key_id is not None and session.scope is not None:
            payload.update(k=session.key_id, s=session.scope)
        return self._serializer.dumps(payload)

    def loads(self, value: str | None) -> Session | None:
        if not value or len(value) > 1024:
            return None
        try:
            payload = self._serializer.loads(value, max_age=self.max_age)
        except (BadSignature, SignatureExpired, ValueError, TypeError):
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("n"), str):
            return None
        key, scope = payload.get("k"), payload.get("s")
        if (key is None) != (scope is None) or not all(v is None or isinstance(v, str) for v in (key, scope)):
            return None
        return Session(nonce=payload["n"], key_id=key, scope=scope)
