"""Rows in and out of the warnings database: a ranking's table checked, JSON made canonical, rows made dicts.

Pure functions, no database: :func:`_rows_of` turns the ranking's DataFrame into the stored score
fields (or refuses it with a :class:`~models.warning_tables.WarningStoreError` naming the column
and row positions, never the household), :func:`_dumps` writes canonical JSON so a re-run with the
same input compares equal as text, and :func:`_warning_dict` / :func:`_event_dict` turn rows back
into plain JSON (UTC ISO strings, parsed reasons). The closed loop's inputs are checked here too
(actor, supervision comment and deadline), and :func:`_frame` turns a query's rows into the
DataFrames of ``WarningStore.loop_frames``. Used by the store (models/warning_store.py) and the
two-phase publication (models/warning_publication.py). See docs/warnings-db.md.
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
from sqlalchemy import String, type_coerce

from features.text import safe_repr
from models.levels import LEVELS
from models.loop import utc_times
from models.warning_tables import (
    _MAX_ACTOR,
    ENGINES,
    MAX_COMMENT,
    MAX_DEADLINE_DAYS,
    REQUIRED_COLUMNS,
    WarningStoreError,
    _shown,
)

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


def _utc(value: datetime) -> datetime:
    """A stored timestamp as an aware UTC datetime (SQLite hands back naive ones, written as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _check_actor(actor: object) -> str:
    """The officer or system acting: a short non-empty string, recorded with every change of the loop."""
    if not isinstance(actor, str) or not actor.strip() or len(actor) > _MAX_ACTOR:
        raise WarningStoreError(
            f"actor must be a non-empty string of at most {_MAX_ACTOR} characters (the officer or system acting)"
        )
    return actor


def _check_moment(value: object, name: str) -> datetime:
    """An aware datetime converted to UTC (SQLite would store a naive or local one as if it were UTC)."""
    if not isinstance(value, datetime):
        raise WarningStoreError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise WarningStoreError(
            f"{name} has no time zone; pass an aware datetime, "
            "e.g. datetime(2024, 4, 12, 18, tzinfo=ZoneInfo('Asia/Shanghai'))"
        )
    return value.astimezone(UTC)


def _check_deadline(value: object, now: datetime) -> datetime:
    """A supervision's new deadline: aware, after ``now`` and at most :data:`MAX_DEADLINE_DAYS` ahead; UTC."""
    deadline = _check_moment(value, "new_deadline")
    if deadline <= now:
        raise WarningStoreError("new_deadline is not in the future; give the station a deadline after now")
    if deadline > now + _dt.timedelta(days=MAX_DEADLINE_DAYS):
        raise WarningStoreError(
            f"new_deadline is more than {MAX_DEADLINE_DAYS} days ahead; a supervision sets a near deadline "
            "(a longer one would carry the warning past its assessment period)"
        )
    return deadline


def _check_comment(comment: object) -> str:
    """A supervision's comment, required and at most :data:`MAX_COMMENT` characters, masked for storage.

    Masked with :func:`models.notes.mask_note` (IDs, phones, plates and names): a county writes about
    a family. Imported here, not at the top, so opening the store does not load the segmenter.
    Messages give the length, never the text.
    """
    if not isinstance(comment, str):
        raise WarningStoreError(f"comment must be a string, got {type(comment).__name__}")
    if not comment.strip():
        raise WarningStoreError("comment is required: say what the station is asked to do")
    if len(comment) > MAX_COMMENT:
        raise WarningStoreError(f"comment has {len(comment)} characters, more than {MAX_COMMENT}; shorten it")
    from models.notes import mask_note

    return mask_note(comment.strip()).strip()


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


def _supervision_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": int(row["id"]),
        "warning_id": int(row["warning_id"]),
        "actor": row["actor"],
        "comment": row["comment"],
        "new_deadline": _iso(row["new_deadline"]),
        "at": _iso(row["at"]),
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


# --------------------------------------------------------------------------------------------------
# The loop's frames (WarningStore.loop_frames)
# --------------------------------------------------------------------------------------------------

_TIME_COLUMNS = frozenset({"created_at", "at", "new_deadline"})
"""Time columns the loop reads as text and parses in pandas (models/loop.py's dtype)."""

LOOP_WARNING_COLUMNS = (
    "id",
    "date",
    "household_id",
    "station_id",
    "county_code",
    "level",
    "category",
    "status",
    "outcome",
    "created_at",
)
"""The warnings' columns ``WarningStore.loop_frames`` reads: the loop's, not the ranking's explanation."""


def _raw(column: Any) -> Any:
    """A time column without SQLAlchemy's per-value parsing (SQLite text; PostgreSQL's driver parses)."""
    return type_coerce(column, String).label(column.name) if column.name in _TIME_COLUMNS else column


def _frame(result: Any) -> pd.DataFrame:
    """A query's rows as a DataFrame sorted by id: times as UTC, ids as int64.

    Built column-wise (pandas probing each Row for namedtuple fields costs more than the query),
    and sorted here rather than by ORDER BY (no temporary B-tree in the database).
    """
    names = list(result.keys())
    rows = result.all()
    values = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    frame = pd.DataFrame(dict(zip(names, map(list, values), strict=True)), columns=names)
    for column in names:
        if column in _TIME_COLUMNS:
            frame[column] = utc_times(frame[column])
        elif column in ("id", "warning_id"):
            frame[column] = frame[column].astype("int64")
        else:  # one text dtype whatever the rows (all missing, or none at all, would infer object)
            frame[column] = frame[column].astype("str")
    return frame.sort_values("id", kind="stable", ignore_index=True)
