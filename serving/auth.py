"""API keys and what each may see: the city center, one county, or one station.

Keys come from a JSON file (``YUJING_API_KEYS``)::

    {"KEY": {"scope": "city"},
     "KEY2": {"scope": "county", "county": "150502"},
     "KEY3": {"scope": "station", "station": "S001"}}

A request without a key, or with a key not in the file, is 401; a key asking
for a household or ranking outside its scope is 403. Keys are compared in
constant time and never logged: the audit log names a key by a short hash.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path

SCOPES = ("city", "county", "station")


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


def key_id(key: str) -> str:
    """A short, stable name for a key that does not reveal it."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:10]


class KeyRing:
    """The configured keys; :meth:`lookup` finds a key's principal in constant time per key."""

    def __init__(self, keys: dict[str, Principal]) -> None:
        self._keys = {k.encode("utf-8"): p for k, p in keys.items()}

    def __len__(self) -> int:
        return len(self._keys)

    @classmethod
    def from_file(cls, path: Path | None) -> KeyRing:
        """Read and check the keys file; no file configured means no keys (every request is 401)."""
        if path is None:
            return cls({})
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot read the API keys file ({exc.strerror})") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise KeyFileError(f"{path}: not a JSON object of keys ({type(exc).__name__})") from None
        if not isinstance(raw, dict):
            raise KeyFileError(f"{path}: expected a JSON object {{key: {{scope: ...}}}}")
        keys: dict[str, Principal] = {}
        for n, (key, spec) in enumerate(raw.items(), start=1):
            where = f"{path}: entry {n} (key id {key_id(str(key))})"
            if not isinstance(key, str) or len(key) < 16:
                raise KeyFileError(f"{where}: keys must be strings of at least 16 characters")
            if not isinstance(spec, dict) or spec.get("scope") not in SCOPES:
                raise KeyFileError(f"{where}: 'scope' must be one of {SCOPES}")
            scope = spec["scope"]
            county, station = spec.get("county"), spec.get("station")
            if scope == "county" and not isinstance(county, str):
                raise KeyFileError(f'{where}: a county key needs "county": "<6-digit code>"')
            if scope == "station" and not isinstance(station, str):
                raise KeyFileError(f'{where}: a station key needs "station": "<station id>"')
            keys[key] = Principal(
                key_id(key), scope, county if scope == "county" else None, station if scope == "station" else None
            )
        return cls(keys)

    def lookup(self, key: str | None) -> Principal | None:
        """The principal of a presented key, or None."""
        if not key:
            return None
        presented = key.encode("utf-8", errors="replace")
        found = None
        for candidate, principal in self._keys.items():
            if hmac.compare_digest(candidate, presented):
                found = principal
        return found
