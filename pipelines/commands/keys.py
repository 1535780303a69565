"""``yujing keys add | list | revoke``: API keys stored hashed in ``var/keys.json``.

A key is shown once, when it is made; the file keeps its SHA-256 (32 random
bytes need no slow hash: nobody can guess a preimage), its scope and a label,
so a copied keys file opens nothing. ``yujing serve`` reads the file at start:
restart it after a change.
"""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import Annotated

import typer

from pipelines.commands.common import fail, info, settings

app = typer.Typer(
    help="API keys for `yujing serve`: add (shown once, stored hashed), list, revoke.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


class Scope(enum.StrEnum):
    city = "city"
    county = "county"
    station = "station"


def keys_file(path: Path | None) -> Path:
    """``--file``, else the settings' keys file (``YUJING_API_KEYS``), else ``<home>/keys.json``."""
    if path is not None:
        return path
    config = settings()
    return Path(config.api_keys_file or config.home / "keys.json")


FileOption = Annotated[
    Path | None, typer.Option("--file", help="Keys file (default: YUJING_API_KEYS, else var/keys.json).")
]


def add(
    scope: Annotated[Scope, typer.Option(case_sensitive=False, help="What the key sees: city, county or station.")],
    county: Annotated[str | None, typer.Option(help="The county's 6-digit code (county keys).")] = None,
    station: Annotated[str | None, typer.Option(help="The station id (station keys).")] = None,
    name: Annotated[str | None, typer.Option(help="A label to recognise the key by, e.g. 'county dashboard'.")] = None,
    file: FileOption = None,
) -> None:
    """Create a random key, print it once (stdout), store only its hash."""
    if scope is Scope.county and not (county and re.fullmatch(r"\d{6}", county)):
        raise fail("--county: a county key needs --county with the county's 6-digit code, e.g. 150502")
    if scope is Scope.station and not (station and re.fullmatch(r"[\w\-]{1,40}", station)):
        raise fail("--station: a station key needs --station with the station id, e.g. S001")
    if scope is Scope.city and (county or station):
        raise fail("--county/--station: a city key sees everything; drop them or use --scope county|station")
    if scope is Scope.county and station:
        raise fail("--station: a county key takes --county only")
    if scope is Scope.station and county:
        raise fail("--county: a station key takes --station only")
    if name is not None and (len(name) > 80 or not name.isprintable()):
        raise fail("--name: a label of at most 80 printable characters")
    from serving.auth import load_entries, make_entry, new_key, save_entries

    path = keys_file(file)
    entries, converted = load_entries(path)
    key = new_key()
    entry = make_entry(key, scope.value, county, station, name)
    save_entries(path, [*entries, entry])
    if converted:
        info(f"converted {converted} plain key(s) in {path} to hashed entries (the keys themselves still work)")
    where = {"city": "the whole city", "county": f"county {county}", "station": f"station {station}"}[scope.value]
    info(f"added key {entry['id']} for {where} to {path} (its hash only); the key is printed once, on stdout")
    info("send it as the X-API-Key header; a running `yujing serve` needs a restart to accept it")
    typer.echo(key)


def list_(file: FileOption = None) -> None:
    """Show the keys' ids, scopes, labels and dates (never a key)."""
    from serving.auth import load_entries

    path = keys_file(file)
    entries, converted = load_entries(path)
    if not entries:
        typer.echo(f"no keys in {path}; add one with `yujing keys add --scope city`")
        return
    typer.echo(f"{'id':<10}  {'scope':<7}  {'sees':<10}  {'created':<25}  {'status':<8}  name")
    for e in entries:
        sees = e.get("county") or e.get("station") or "all"
        status = "revoked" if e.get("revoked") else "active"
        created = e.get("created") or "-"
        typer.echo(f"{e['id']:<10}  {e['scope']:<7}  {sees:<10}  {created:<25}  {status:<8}  {e.get('name') or ''}")
    if converted:
        info(f"{path} holds plain keys; `yujing keys add` converts the file to hashed entries")


def revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id, as `yujing keys list` shows it.")],
    file: FileOption = None,
) -> None:
    """Revoke a key: it stays listed (with the time) but no longer opens anything after a restart."""
    import datetime as dt

    from serving.auth import load_entries, save_entries

    path = keys_file(file)
    entries, _ = load_entries(path)
    matches = [e for e in entries if e["id"] == key_id.strip().lower()]
    if not matches:
        raise fail(f"no key {key_id!r} in {path}; fix: take the id from `yujing keys list`")
    if matches[0].get("revoked"):
        raise fail(f"key {key_id} was already revoked on {matches[0]['revoked']}")
    matches[0]["revoked"] = dt.datetime.now(dt.UTC).astimezone().isoformat(timespec="seconds")
    save_entries(path, entries)
    typer.echo(f"revoked key {key_id} ({matches[0]['scope']}); restart `yujing serve` to apply")
