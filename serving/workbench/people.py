"""Who may sign in: the API's keys file, re-read when it changes, with each key's name.

The workbench signs people in with the same keys as the API (serving/auth.py): one
key per person or desk, made by ``yujing keys add --scope ... --name ...``, revoked by
``yujing keys revoke``. Unlike the API (which reads the file when it starts), the
workbench checks the file's size and modification time on every request (one
``stat``) and re-reads it when either changed, so a revoked key's sessions end on
their next request and a new key can sign in without a restart.

A file that cannot be read after a change refuses every sign-in and every session
(fail closed: a half-edited file must not keep a revoked key alive); the server log
names the file and why.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving.auth import KeyFileError, KeyRing, Principal, is_hashed, key_id, parse_entries, read_key_file

log = logging.getLogger("yujing.serving")


@dataclass(frozen=True)
class Person:
    """A key that may sign in: its principal (id, scope, county, station) and the name the keys file gives it."""

    principal: Principal
    name: str | None


def _names(raw: dict[str, Any]) -> dict[str, str]:
    """``{key id: name}`` of the entries that carry a name (hashed: ``name``; plain: an optional ``name``)."""
    if is_hashed(raw):
        named = [(str(e.get("sha256", ""))[:10], e.get("name")) for e in raw["keys"] if isinstance(e, dict)]
    else:
        named = [(key_id(k), spec.get("name")) for k, spec in raw.items() if isinstance(spec, dict)]
    return {kid: name.strip()[:60] for kid, name in named if isinstance(name, str) and name.strip()}


class KeyDirectory:
    """The keys that may sign in, by presented key (sign-in) and by key id (every later request)."""

    def __init__(self, path: Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._ring = KeyRing({})
        self._by_id: dict[str, Person] = {}
        self.problem: str | None = None
        self._refresh()

    def _stat(self) -> tuple[int, int, int] | None:
        if self.path is None:
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return (-1, -1, -1)
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _refresh(self) -> None:
        stamp = self._stat()
        if stamp == self._stamp and self._stamp is not None:
            return
        with self._lock:
            if stamp == self._stamp and self._stamp is not None:
                return
            ring, by_id, problem = KeyRing({}), {}, None
            if self.path is not None:
                try:
                    raw = read_key_file(self.path)
                    digests = parse_entries(self.path, raw)
                    names = _names(raw)
                    ring = KeyRing.from_digests(digests)
                    by_id = {p.key_id: Person(p, names.get(p.key_id)) for p in digests.values()}
                except KeyFileError as exc:
                    problem = str(exc)
                    log.error("workbench sign-in closed: %s", problem)
            self._ring, self._by_id, self.problem, self._stamp = ring, by_id, problem, stamp or (0, 0, 0)

    def sign_in(self, key: str | None) -> Person | None:
        """The person a presented key belongs to (looked up by its SHA-256, like the API), or None."""
        self._refresh()
        principal = self._ring.lookup(key)
        return None if principal is None else self._by_id.get(principal.key_id)

    def by_id(self, key_id: str | None) -> Person | None:
        """The person behind a session's key id, or None when the key is gone or revoked."""
        if not key_id:
            return None
        self._refresh()
        return self._by_id.get(key_id)
