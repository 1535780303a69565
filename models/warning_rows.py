"""Rows in and out of the warnings database: a ranking's table checked, JSON made canonical, rows made dicts.

Pure functions, no database: :func:`_rows_of` turns the ranking's DataFrame into the stored score
fields (or refuses it with a :class:`~models.warning_tables.WarningStoreError` naming the column
and row positions, never the household), :func:`_dumps` writes canonical JSON so a re-run with the
same input compares equal as text, and :func:`_warning_dict` / :func:`_event_dict` turn rows back
into plain JSON (UTC ISO strings, parsed reasons). Used by the store (models/warning_store.py) and
the two-phase publication (models/warning_publication.py). See docs/warnings-db.md.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import operator
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from features.text import safe_repr
from models.levels import LEVELS
from models.warning_tables import ENGINES, REQUIRED_COLUMNS, WarningStoreError, _shown

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CHUNK = 500  # ids per IN (...) list: far under SQLite's and PostgreSQL's parameter limits


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    """UTC ISO string; SQLite hands back naive datetimes, which were written as UTC."""
    if value is None:
        return None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat()


def _check_date(value: object) -> str:
    """``YYYY-MM-DD`` as a string (dates sort and compare as text in every backend)."""
    if isinstance(value, _dt.date) and not isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and _DATE.match(value):
        try:
            _dt.date.fromisoformat(value)
        except ValueError:
            pass
        else:
            return value
    raise WarningStoreError(
        f"date {safe_repr(value, limit=20)} is not a calendar date; pass it as YYYY-MM-DD (e.g. '2024-04-11')"
    )


def _jsonable(value: Any, where: str) -> Any:
    """Plain JSON data from ranking output: numpy scalars and arrays unwrapped, NaN and inf to None.

    ``json.dumps`` would write NaN as the non-standard token ``NaN`` (PostgreSQL's JSON parser
    and browsers reject it) and fail on numpy types, so the ranking's own values are cleaned here.
    """
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str | int):
                raise WarningStoreError(f"{where} has a key of type {type(k).__name__}; keys must be strings")
            out[str(k)] = _jsonable(v, f"{where}.{k}")
        return out
    if isinstance(value, list | tuple):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, set | frozenset):
        items = [_jsonable(v, f"{where}[]") for v in value]
        return sorted(items, key=lambda v: json.dumps(v, ensure_ascii=False, sort_keys=True))
    if isinstance(value, _dt.date):  # datetime too
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy scalars and arrays
        return _jsonable(value.tolist(), where)
    raise WarningStoreError(
        f"{where} holds a value of type {type(value).__name__}, which JSON cannot store; "
        "convert it to str, number, list or dict"
    )


def _dumps(value: Any) -> str:
    """Canonical JSON text: equal content gives equal text, so re-runs compare by string."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists, dicts: not a scalar missing marker
        return False


def _rows_of(warnings: pd.DataFrame) -> list[dict[str, Any]]:
    """Validate the ranking's table and turn it into the stored score fields, one dict per household.

    Errors name the column and the row positions (0-based), never the household or its content.
    """
    if not isinstance(warnings, pd.DataFrame):
        raise WarningStoreError(f"warnings must be a pandas DataFrame, got {type(warnings).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in warnings.columns]
    if missing:
        raise WarningStoreError(
            f"warnings table lacks column(s) {', '.join(missing)}; the ranking must provide "
            f"{', '.join(REQUIRED_COLUMNS)}"
        )

    def fail(column: str, positions: list[int], problem: str, fix: str) -> None:
        shown = ", ".join(str(p) for p in positions[:5]) + (" ..." if len(positions) > 5 else "")
        raise WarningStoreError(f"column {column}: {problem} at row(s) {shown} ({len(positions)} in all); {fix}")

    records = warnings.loc[:, list(REQUIRED_COLUMNS)].to_dict("records")
    for column in ("household_id", "station_id", "county_code"):
        bad = [i for i, r in enumerate(records) if not isinstance(r[column], str) or not r[column].strip()]
        if bad:
            fail(column, bad, "missing or not a string", "give every warning a non-empty string identifier")
    for column, limit in (("household_id", 64), ("station_id", 32), ("county_code", 12)):
        bad = [i for i, r in enumerate(records) if len(r[column]) > limit]
        if bad:
            fail(column, bad, f"longer than {limit} characters", "check that the right column was passed")
    seen: dict[str, int] = {}
    dup = []
    for i, r in enumerate(records):
        if r["household_id"] in seen:
            dup.append(i)
        seen.setdefault(r["household_id"], i)
    if dup:
        fail(
            "household_id",
            dup,
            "duplicate household for the date",
            "a ranking has one row per household; keep the worst row of each",
        )
    bad_levels = sorted({_shown(r["level"]) for r in records if r["level"] not in LEVELS})
    if bad_levels:
        shown = ", ".join(bad_levels[:5])
        raise WarningStoreError(f"column level: unknown value(s) {shown}; a level is one of {', '.join(LEVELS)}")
    bad = [i for i, r in enumerate(records) if r["engine"] not in ENGINES]
    if bad:
        fail("engine", bad, "not one of " + ", ".join(ENGINES), "say which engine ranked the household")

    rows: list[dict[str, Any]] = []
    bad_p: list[int] = []
    bad_rank: list[int] = []
    bad_text: dict[str, list[int]] = {"category": [], "model_version": []}
    for i, r in enumerate(records):
        p = r["probability"]
        if _missing(p):
            prob = None
        else:
            try:
                prob = float(p)
            except (TypeError, ValueError):
                prob = -1.0
            if not 0.0 <= prob <= 1.0:
                bad_p.append(i)
        rank = r["rank_in_station"]
        try:
            rank_int = operator.index(rank) if not isinstance(rank, bool) else -1
        except TypeError:
            rank_int = int(rank) if isinstance(rank, float) and rank.is_integer() else -1
        if rank_int < 1:
            bad_rank.append(i)
        text = {}
        for column, limit in (("category", 64), ("model_version", 128)):
            v = r[column]
            if _missing(v):
                text[column] = None
            elif isinstance(v, str) and len(v) <= limit:
                text[column] = v
            else:
                bad_text[column].append(i)
        reasons = r["reasons"]
        if isinstance(reasons, str):
            try:
                reasons = json.loads(reasons)
            except ValueError:
                raise WarningStoreError(
                    f"column reasons: row {i} is a string but not JSON; pass a dict such as "
                    '{"model": [...], "rules": [...], "terms": [...]}'
                ) from None
        if not isinstance(reasons, Mapping | list) and _missing(reasons):
            reasons = {}  # no reasons at all (None or NaN from a join) is an empty explanation
        if not isinstance(reasons, Mapping):
            raise WarningStoreError(
                f"column reasons: row {i} holds a {type(reasons).__name__}; pass a dict such as "
                '{"model": [...], "rules": [...], "terms": [...]}'
            )
        rows.append(
            {
                "household_id": r["household_id"],
                "station_id": r["station_id"],
                "county_code": r["county_code"],
                "level": r["level"],
                "probability": prob,
                "rank_in_station": rank_int,
                "category": text.get("category"),
                "engine": r["engine"],
                "model_version": text.get("model_version"),
                "reasons": _dumps(_jsonable(reasons, f"reasons (row {i})")),
            }
        )
    if bad_p:
        fail("probability", bad_p, "not a number in [0, 1]", "pass a probability or NaN when the rules ranked")
    if bad_rank:
        fail("rank_in_station", bad_rank, "not a positive integer", "rank households 1, 2, ... within each station")
    for column, bad in bad_text.items():
        if bad:
            fail(column, bad, "not a string (or too long)", "pass a short string or None")
    return rows


def _new_row(score: dict[str, Any], day: str, now: datetime) -> dict[str, Any]:
    """The full ``warnings`` row for a household the date did not have yet: pushed and active."""
    return {
        **score,
        "date": day,
        "status": "pushed",
        "status_at": now,
        "outcome": None,
        "active": True,
        "created_at": now,
        "updated_at": now,
    }


def _chunks(values: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _warning_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": int(row["id"]),
        "date": row["date"],
        "household_id": row["household_id"],
        "station_id": row["station_id"],
        "county_code": row["county_code"],
        "level": row["level"],
        "probability": None if row["probability"] is None else float(row["probability"]),
        "rank_in_station": int(row["rank_in_station"]),
        "category": row["category"],
        "engine": row["engine"],
        "model_version": row["model_version"],
        "reasons": json.loads(row["reasons"]),
        "status": row["status"],
        "status_at": _iso(row["status_at"]),
        "outcome": row["outcome"],
        "active": bool(row["active"]),
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


def _event_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": int(row["id"]),
        "warning_id": int(row["warning_id"]),
        "from_status": row["from_status"],
        "to_status": row["to_status"],
        "actor": row["actor"],
        "note": row["note"],
        "outcome": row["outcome"],
        "at": _iso(row["at"]),
    }
