"""API keys and what each may see: the city center, one county, or one station.

Keys come from a JSON file (``YUJING_API_KEYS``, default ``var/keys.json``) in
one of two formats. The hashed format is what ``yujing keys add`` writes: the
file never holds a usable key, only its SHA-256::

    {"format": "yujing-keys/2",
     "keys": [{"id": "3f2a9c01de", "sha256": "<64 hex digits>", "scope": "county", "county": "150502",
               "station": null, "name": "county 150502 dashboard", "created": "2025-01-02T08:00:00+08:00",
               "revoked": null}]}

The plain format, written by hand, maps each key to its scope::

    {"KEY": {"scope": "city"},
     "KEY2": {"scope": "county", "county": "150502"},
     "KEY3": {"scope": "station", "station": "S001"}}

A request without a key, or with a key not in the file (or revoked), is 401; a
key asking for a household or ranking outside its scope is 403. A presented key
is hashed and looked up by its digest, so the time a lookup takes says nothing
about any stored key; keys are never logged: the audit log names a key by the
first ten hex digits of its SHA-256 (its ``id``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCOPES = ("city", "county", "station")
FORMAT = "yujing-keys/2"
_HEX64 = re.compile(r"[0-9a-f]{64}")


class KeyFileError(ValueError):
    """The keys file cannot be used; the message names the file and the entry (never the key itself)."""


@dataclass(frozen=True)
class Principal:
    """Who is asking: a key's scope, and its county or station when it is not the city center's."""

    key_id: str
    scope: str
    county: str | None = None
    station: str | None = None

    def sees(self, station_id: str | None, county_code: str | None) -> bool:
        """Whether this key may see a household or list of this station and county."""
        if self.scope == "city":
            return True
        if self.scope == "county":
            return county_code is not None and county_code == self.county
        return station_id is not None and station_id == self.station

    def describe(self) -> dict[str, str | None]:
        """For the audit log: the key's hash and scope, never the key."""
        return {"key_id": self.key_id, "scope": self.scope, "county": self.county, "station": self.station}


def key_digest(key: str) -> str:
    """The SHA-256 of a key, hex: what the hashed keys file stores."""
    return hashlib.sha256(key.encode("utf-8", errors="replace")).hexdigest()


def key_id(key: str) -> str:
    """A short, stable name for a key that does not reveal it."""
    return key_digest(key)[:10]


def _principal(where: str, spec: Any, digest: str) -> Principal:
    """The principal of one entry, checking its scope (shared by both formats)."""
    if not isinstance(spec, dict) or spec.get("scope") not in SCOPES:
        raise KeyFileError(f"{where}: 'scope' must be one of {SCOPES}")
    scope = spec["scope"]
    county, station = spec.get("county"), spec.get("station")
    if scope == "county" and not isinstance(county, str):
        raise KeyFileError(f'{where}: a county key needs "county": "<6-digit code>"')
    if scope == "station" and not isinstance(station, str):
        raise KeyFileError(f'{where}: a station key needs "station": "<station id>"')
    return Principal(digest[:10], scope, county if scope == "county" else None, station if scope == "station" else None)


def read_key_file(path: Path) -> Any:
    """The parsed JSON of a keys file; :class:`KeyFileError` naming the file when it cannot be read."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the API keys file ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: not a JSON object of keys ({type(exc).__name__})") from None
    if not isinstance(raw, dict):
        raise KeyFileError(f"{path}: expected a JSON object {{key: {{scope: ...}}}} or {{format, keys}}")
    return raw


def is_hashed(raw: dict[str, Any]) -> bool:
    """Whether a parsed keys file is in the hashed format (a plain key is never the 6-letter word 'format')."""
    return raw.get("format") == FORMAT and isinstance(raw.get("keys"), list)


def parse_entries(path: Path, raw: dict[str, Any]) -> dict[str, Principal]:
    """``{sha256 hex: principal}`` of the live keys of a parsed file, in either format."""
    found: dict[str, Principal] = {}
    if is_hashed(raw):
        for n, entry in enumerate(raw["keys"], start=1):
            if not isinstance(entry, dict) or not _HEX64.fullmatch(str(entry.get("sha256", ""))):
                raise KeyFileError(f"{path}: entry {n}: 'sha256' must be 64 lowercase hex digits")
            where = f"{path}: entry {n} (key id {entry['sha256'][:10]})"
            principal = _principal(where, entry, entry["sha256"])
            if not entry.get("revoked"):
                found[entry["sha256"]] = principal
        return found
    if "format" in raw or "keys" in raw:
        raise KeyFileError(f'{path}: a hashed keys file needs "format": "{FORMAT}" and a "keys" list')
    for n, (key, spec) in enumerate(raw.items(), start=1):
        where = f"{path}: entry {n} (key id {key_id(str(key))})"
        if not isinstance(key, str) or len(key) < 16:
            raise KeyFileError(f"{where}: keys must be strings of at least 16 characters")
        found[key_digest(key)] = _principal(where, spec, key_digest(key))
    return found


class KeyRing:
    """The configured keys; :meth:`lookup` hashes the presented key and finds its principal by digest."""

    def __init__(self, keys: dict[str, Principal]) -> None:
        self._by_digest = {hashlib.sha256(k.encode("utf-8")).digest(): p for k, p in keys.items()}

    @classmethod
    def from_digests(cls, digests: dict[str, Principal]) -> KeyRing:
        """A ring from ``{sha256 hex: principal}`` (the hashed file's content)."""
        ring = cls({})
        ring._by_digest = {bytes.fromhex(d): p for d, p in digests.items()}
        return ring

    def __len__(self) -> int:
        return len(self._by_digest)

    @classmethod
    def from_file(cls, path: Path | None) -> KeyRing:
        """Read and check the keys file (hashed or plain); no file configured means no keys (every request is 401)."""
        if path is None:
            return cls({})
        return cls.from_digests(parse_entries(Path(path), read_key_file(Path(path))))

    def lookup(self, key: str | None) -> Principal | None:
        """The principal of a presented key, or None.

        The lookup is by SHA-256 digest: its timing depends on the digest of what
        was presented, which an attacker cannot steer towards a stored key.
        """
        if not key:
            return None
        return self._by_digest.get(hashlib.sha256(key.encode("utf-8", errors="replace")).digest())


# Managing the hashed file (``yujing keys add | list | revoke``).


def new_key() -> str:
    """A fresh random key: 32 random bytes, URL-safe, with a prefix that says what it is."""
    return "yj_" + secrets.token_urlsafe(32)


def load_entries(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The hashed entries of a keys file and how many plain keys were converted to them (none: no file yet)."""
    if not Path(path).exists():
        return [], 0
    raw = read_key_file(path)
    parse_entries(path, raw)  # refuse to rewrite a file that does not check
    if is_hashed(raw):
        return list(raw["keys"]), 0
    entries = []
    for n, (key, spec) in enumerate(raw.items(), start=1):
        digest = key_digest(key)
        entries.append(
            {
                "id": digest[:10],
                "sha256": digest,
                "scope": spec["scope"],
                "county": spec.get("county") if spec["scope"] == "county" else None,
                "station": spec.get("station") if spec["scope"] == "station" else None,
                "name": f"plain key {n}",
                "created": None,
                "revoked": None,
            }
        )
    return entries, len(entries)


def save_entries(path: Path, entries: list[dict[str, Any]]) -> None:
    """Write the hashed file atomically, readable by its owner only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    text = json.dumps({"format": FORMAT, "keys": entries}, ensure_ascii=False, indent=2) + "\n"
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    part.replace(path)


def make_entry(key: str, scope: str, county: str | None, station: str | None, name: str | None) -> dict[str, Any]:
    """The stored form of a new key: its hash, scope and label, never the key."""
    digest = key_digest(key)
    created = dt.datetime.now(dt.UTC).astimezone().isoformat(timespec="seconds")
    return {
        "id": digest[:10],
        "sha256": digest,
        "scope": scope,
        "county": county if scope == "county" else None,
        "station": station if scope == "station" else None,
        "name": name,
        "created": created,
        "revoked": None,
    }
