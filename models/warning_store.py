"""The warnings database: daily rankings and the closed loop of what stations did with them.

Every day ``yujing rank --date D`` ranks the households at risk of a dispute turning violent
(民转刑) and hands one row per (date, household) to :meth:`WarningStore.replace_date`. Stations
then move each warning along ``pushed -> acknowledged -> handled -> fed_back``
(:meth:`WarningStore.set_status`), and the feedback says what happened (:data:`OUTCOMES`).

Why it is written the way it is:

* **SQLAlchemy 2 Core, portable types only.** SQLite (the default, one file under ``var/``)
  for a single center and the tests; PostgreSQL when several services share the data. The
  same code runs on both: no dialect-specific upsert, no native JSON or enum types (JSON is
  stored as text, enumerations are ``CHECK`` constraints).
* **A ranking run is idempotent and atomic.** Re-running a date with the same input changes
  no row at all (not even ``updated_at``), a re-run never resets what a station already did,
  and a run that fails half-way leaves the previous state exactly as it was (one transaction).
* **Nothing a station did is lost.** A household that drops out of a re-run is deleted only
  while its warning is still ``pushed``; otherwise the warning is kept with ``active=False``.
* **Personal data stays out.** Station notes are masked with :func:`features.text.mask`
  before they are stored, and error messages never quote notes, rows or driver details
  (PostgreSQL's ``DETAIL`` lines show row values, so only the first line is kept).

Timestamps are UTC; the dictionaries returned are plain JSON (ISO strings, parsed reasons).
See docs/warnings-db.md.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import operator
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Connection,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    create_engine,
    delete,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from features.text import mask, safe_repr
from models.levels import LEVELS

__all__ = [
    "ENGINES",
    "LEVELS",
    "OUTCOMES",
    "RANK_ACTOR",
    "STATUSES",
    "WarningStore",
    "WarningStoreError",
]

STATUSES = ("pushed", "acknowledged", "handled", "fed_back")
"""The closed loop, in order: a warning only ever moves forward along this tuple."""

OUTCOMES = ("resolved", "ongoing", "escalated", "false_alarm")
"""What a station reports when it feeds back (required by ``fed_back``)."""

ENGINES = ("model", "rules")
"""Which engine ranked a warning: the promoted model or the keyword-rules fallback."""

RANK_ACTOR = "yujing-rank"
"""The actor recorded on the ``None -> pushed`` event of every new warning."""

REQUIRED_COLUMNS = (
    "household_id",
    "station_id",
    "county_code",
    "level",
    "probability",
    "rank_in_station",
    "category",
    "engine",
    "model_version",
    "reasons",
)
# The fields a ranking owns. A re-run compares exactly these (plus ``active``) to decide whether a
# row changed; status, outcome and the timestamps belong to the closed loop and are never touched.
_SCORE_FIELDS = tuple(c for c in REQUIRED_COLUMNS if c != "household_id")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CHUNK = 500  # ids per IN (...) list: far under SQLite's and PostgreSQL's parameter limits
_MAX_ACTOR = 64


class WarningStoreError(ValueError):
    """A request the store refuses: the message says what is wrong and how to fix it.

    Messages name columns, row positions, ids and allowed values; they never quote a note or a
    row's content, so they are safe to log.
    """


# --------------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------------

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _in(column: str, values: Sequence[str], nullable: bool = False) -> str:
    """A portable CHECK expression restricting ``column`` to ``values`` (no native enum types)."""
    listed = ", ".join(f"'{v}'" for v in values)
    check = f"{column} IN ({listed})"
    return f"{column} IS NULL OR {check}" if nullable else check


ranking_runs = Table(
    "ranking_runs",
    metadata,
    Column("date", String(10), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("info", Text, nullable=False),
    Column("warning_count", Integer, nullable=False),
)

warnings_table = Table(
    "warnings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("date", String(10), nullable=False),
    Column("household_id", String(64), nullable=False),
    Column("station_id", String(32), nullable=False),
    Column("county_code", String(12), nullable=False),
    Column("level", String(8), nullable=False),
    Column("probability", Float, nullable=True),
    Column("rank_in_station", Integer, nullable=False),
    Column("category", String(64), nullable=True),
    Column("engine", String(16), nullable=False),
    Column("model_version", String(128), nullable=True),
    Column("reasons", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("status_at", DateTime(timezone=True), nullable=False),
    Column("outcome", String(16), nullable=True),
    Column("active", Boolean(create_constraint=True, name="active_bool"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("date", "household_id"),
    CheckConstraint(_in("level", LEVELS), name="level"),
    CheckConstraint(_in("status", STATUSES), name="status"),
    CheckConstraint(_in("outcome", OUTCOMES, nullable=True), name="outcome"),
    CheckConstraint(_in("engine", ENGINES), name="engine"),
    Index(None, "date", "station_id"),
    Index(None, "household_id"),
    sqlite_autoincrement=True,  # never reuse the id of a deleted warning: a station may still hold it
)

warning_events = Table(
    "warning_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("warning_id", Integer, ForeignKey("warnings.id", ondelete="CASCADE"), nullable=False),
    Column("from_status", String(16), nullable=True),
    Column("to_status", String(16), nullable=False),
    Column("actor", String(_MAX_ACTOR), nullable=False),
    Column("note", Text, nullable=True),
    Column("outcome", String(16), nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
    CheckConstraint(_in("to_status", STATUSES), name="to_status"),
    Index(None, "warning_id"),
    sqlite_autoincrement=True,
)


# --------------------------------------------------------------------------------------------------
# Small pure helpers
# --------------------------------------------------------------------------------------------------


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


_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,23}$")


def _shown(value: object) -> str:
    """An enumeration value as it may appear in a message: a short code word, else only its type.

    A caller can pass the wrong argument (a note where an outcome belongs); free text must not
    reach a log through the error that follows.
    """
    if isinstance(value, str) and _WORD.match(value):
        return value
    if isinstance(value, str):
        return f"a text of {len(value)} characters"
    return f"a {type(value).__name__}"


def _first_line(exc: BaseException) -> str:
    """The driver's headline without PostgreSQL's DETAIL (which shows row values), masked and short."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return safe_repr(text, limit=160)


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


def _normalise_url(url: str) -> URL:
    """Parse the URL; a bare ``postgresql://`` means psycopg 3 (the driver this project ships)."""
    if not isinstance(url, str) or not url.strip():
        raise WarningStoreError(
            "the warnings database URL is empty; pass e.g. sqlite:///var/warnings.db or "
            "postgresql+psycopg://user:password@host:5432/yujing"
        )
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise WarningStoreError(
            "the warnings database URL cannot be parsed; pass e.g. sqlite:///var/warnings.db or "
            "postgresql+psycopg://user:password@host:5432/yujing"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise WarningStoreError(
            f"database backend {parsed.get_backend_name()!r} is not supported; use sqlite:/// or postgresql+psycopg://"
        )
    return parsed


def _sqlite_file(parsed: URL) -> Path | None:
    """The file behind a SQLite URL, or None for in-memory and ``file:`` URI databases."""
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:") or parsed.query.get("uri"):
        return None
    return Path(database)


# --------------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------------


class WarningStore:
    """Daily warnings and their closed-loop status in one SQL database (SQLite or PostgreSQL).

    Every method opens its own short transaction, so one store can be shared by a web server's
    threads; call :meth:`dispose` when done to close pooled connections.
    """

    def __init__(self, url: str) -> None:
        """Connect and create the tables if missing.

        SQLite: the parent folder is created, the file is switched to WAL (readers never block
        the daily writer), foreign keys are enforced on every connection, and write
        transactions start with ``BEGIN IMMEDIATE`` so two writers queue on the busy timeout
        instead of failing when one upgrades a read lock.
        """
        parsed = _normalise_url(url)
        self._url = parsed
        self._sqlite = parsed.get_backend_name() == "sqlite"
        if self._sqlite and (path := _sqlite_file(parsed)) is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._engine: Engine = create_engine(parsed, hide_parameters=True, pool_pre_ping=not self._sqlite)
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise WarningStoreError(
                f"cannot create a database engine for {self.url_for_display} ({type(exc).__name__}); "
                "check the URL scheme and that the driver (psycopg for PostgreSQL) is installed"
            ) from None
        if self._sqlite:
            self._install_sqlite_hooks(self._engine)
        try:
            metadata.create_all(self._engine, checkfirst=True)
        except DBAPIError as exc:
            self._engine.dispose()
            raise WarningStoreError(
                f"cannot open the warnings database {self.url_for_display}: {_first_line(exc)}; "
                "check that the server runs, the database exists and the role may create tables"
            ) from None

    @staticmethod
    def _install_sqlite_hooks(engine: Engine) -> None:
        """WAL, foreign keys and explicit BEGIN for pysqlite (whose own transaction handling is lazy)."""

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.execute("PRAGMA busy_timeout=10000")
                cursor.execute("PRAGMA journal_mode=WAL")
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            immediate = conn.get_execution_options().get("yujing_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    @property
    def url_for_display(self) -> str:
        """The database URL with any password replaced by ``***``, safe for logs."""
        return self._url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"WarningStore({self.url_for_display!r})"

    @contextmanager
    def _tx(self, write: bool) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            if write:
                conn.execution_options(yujing_write=True)
            with conn.begin():
                yield conn

    # ---------------------------------------------------------------------------------------------
    # Writing
    # ---------------------------------------------------------------------------------------------

    def replace_date(self, date: str, warnings: pd.DataFrame, run_info: dict[str, Any]) -> dict[str, int]:
        """Make the stored warnings of ``date`` equal to this ranking, in one transaction.

        New households are inserted as ``pushed`` (with a ``None -> pushed`` event by
        ``yujing-rank``); households already stored get their score fields updated only if one
        of them changed, and keep their status; stored households missing from this ranking are
        deleted while still ``pushed`` and otherwise kept with ``active=False``. ``run_info``
        (provenance) is upserted into ``ranking_runs``.

        Returns counts ``inserted``, ``updated``, ``unchanged`` (these three add up to the
        ranking's rows), ``withdrawn`` and ``deleted`` (rows that left the date in this call).
        If anything fails nothing is written.
        """
        day = _check_date(date)
        scores = _rows_of(warnings)
        if not isinstance(run_info, Mapping):
            raise WarningStoreError(f"run_info must be a dict of provenance, got {type(run_info).__name__}")
        info_text = _dumps(_jsonable(dict(run_info), "run_info"))
        try:
            with self._tx(write=True) as conn:
                return self._replace_date(conn, day, scores, info_text)
        except DBAPIError as exc:
            raise WarningStoreError(
                f"writing the ranking of {day} failed and nothing was written: {_first_line(exc)}; "
                "if another ranking of the same date ran at the same time, re-run this one"
            ) from None

    def _replace_date(self, conn: Connection, day: str, scores: list[dict[str, Any]], info: str) -> dict[str, int]:
        now = _now()
        w = warnings_table
        # The run row first, locked on PostgreSQL: a second ranking of the same date waits here.
        run = conn.execute(
            select(ranking_runs.c.info, ranking_runs.c.warning_count)
            .where(ranking_runs.c.date == day)
            .with_for_update()
        ).first()
        if run is None:
            conn.execute(
                insert(ranking_runs).values(
                    date=day, created_at=now, updated_at=now, info=info, warning_count=len(scores)
                )
            )
        elif run.info != info or run.warning_count != len(scores):
            conn.execute(
                update(ranking_runs)
                .where(ranking_runs.c.date == day)
                .values(info=info, warning_count=len(scores), updated_at=now)
            )

        existing = {
            r["household_id"]: r
            for r in conn.execute(
                select(w.c.id, w.c.household_id, w.c.status, w.c.active, *(w.c[f] for f in _SCORE_FIELDS)).where(
                    w.c.date == day
                )
            ).mappings()
        }
        new_rows: list[dict[str, Any]] = []
        changed: list[dict[str, Any]] = []
        unchanged = 0
        for score in scores:
            old = existing.get(score["household_id"])
            if old is None:
                new_rows.append(score)
            elif old["active"] and all(old[f] == score[f] for f in _SCORE_FIELDS):
                unchanged += 1
            else:
                changed.append({"_id": old["id"], **{f"_{f}": score[f] for f in _SCORE_FIELDS}})
        ranked = {s["household_id"] for s in scores}
        leaving = [r["id"] for hid, r in existing.items() if hid not in ranked and r["active"]]

        if changed:
            conn.execute(
                update(w)
                .where(w.c.id == bindparam("_id"))
                .values({**{f: bindparam(f"_{f}") for f in _SCORE_FIELDS}, "active": True, "updated_at": now}),
                changed,
            )
        deleted = withdrawn = 0
        for ids in _chunks(leaving):
            # The status test is in the statement, not only in Python: on PostgreSQL a station's
            # concurrent acknowledgement is re-checked here, so it is withdrawn rather than deleted.
            # Events go with their warning (ON DELETE CASCADE).
            deleted += conn.execute(delete(w).where(w.c.id.in_(ids), w.c.status == "pushed")).rowcount
            withdrawn += conn.execute(
                update(w).where(w.c.id.in_(ids), w.c.active.is_(True)).values(active=False, updated_at=now)
            ).rowcount
        if new_rows:
            conn.execute(insert(w), [_new_row(s, day, now) for s in new_rows])
            added = {s["household_id"] for s in new_rows}
            ids = [
                r.id
                for r in conn.execute(select(w.c.id, w.c.household_id).where(w.c.date == day))
                if r.household_id in added
            ]
            conn.execute(
                insert(warning_events),
                [
                    {"warning_id": i, "from_status": None, "to_status": "pushed", "actor": RANK_ACTOR, "at": now}
                    for i in ids
                ],
            )
        return {
            "inserted": len(new_rows),
            "updated": len(changed),
            "unchanged": unchanged,
            "withdrawn": withdrawn,
            "deleted": deleted,
        }

    def set_status(
        self,
        warning_id: int,
        status: str,
        actor: str,
        note: str | None = None,
        outcome: str | None = None,
    ) -> dict[str, Any]:
        """Move a warning forward in the closed loop and record who did it; returns the warning.

        Moves are forward-only along :data:`STATUSES` (skipping is allowed: a station may
        handle a warning it never acknowledged in the system), because the loop is an audit
        trail. ``fed_back`` needs an ``outcome`` from :data:`OUTCOMES`, and only ``fed_back``
        takes one. The note is free text from a station and is masked before it is stored.
        """
        wid = self._check_id(warning_id)
        if status not in STATUSES:
            raise WarningStoreError(f"status {_shown(status)} is unknown; use one of {', '.join(STATUSES)}")
        if not isinstance(actor, str) or not actor.strip() or len(actor) > _MAX_ACTOR:
            raise WarningStoreError(
                f"actor must be a non-empty string of at most {_MAX_ACTOR} characters (the officer or system acting)"
            )
        if status == "fed_back":
            if outcome not in OUTCOMES:
                raise WarningStoreError(
                    f"fed_back needs an outcome; pass outcome= one of {', '.join(OUTCOMES)}"
                    + ("" if outcome is None else f" (got {_shown(outcome)})")
                )
        elif outcome is not None:
            raise WarningStoreError(f"an outcome is only reported with fed_back, not with {status}; drop outcome=")
        if note is not None and not isinstance(note, str):
            raise WarningStoreError(f"note must be a string or None, got {type(note).__name__}")
        masked = mask(note).strip() if note else None
        masked = masked or None

        w = warnings_table
        try:
            with self._tx(write=True) as conn:
                row = conn.execute(select(w.c.status).where(w.c.id == wid).with_for_update()).first()
                if row is None:
                    raise WarningStoreError(
                        f"warning {wid} does not exist (a re-run of its date deletes warnings still pushed); "
                        "list current warnings with warnings_for(date)"
                    )
                current = row.status
                if STATUSES.index(status) <= STATUSES.index(current):
                    raise WarningStoreError(
                        f"warning {wid} is already {current}; a warning only moves forward along "
                        f"{' -> '.join(STATUSES)}, so {status} is not allowed"
                    )
                now = _now()
                values: dict[str, Any] = {"status": status, "status_at": now, "updated_at": now}
                if status == "fed_back":
                    values["outcome"] = outcome
                conn.execute(update(w).where(w.c.id == wid).values(values))
                conn.execute(
                    insert(warning_events).values(
                        warning_id=wid,
                        from_status=current,
                        to_status=status,
                        actor=actor,
                        note=masked,
                        outcome=outcome,
                        at=now,
                    )
                )
                out = conn.execute(select(w).where(w.c.id == wid)).mappings().one()
                return _warning_dict(out)
        except DBAPIError as exc:
            raise WarningStoreError(
                f"changing the status of warning {wid} failed and nothing was written: {_first_line(exc)}; try again"
            ) from None

    @staticmethod
    def _check_id(warning_id: object) -> int:
        try:
            if isinstance(warning_id, bool):
                raise TypeError
            return operator.index(warning_id)  # type: ignore[arg-type]
        except TypeError:
            raise WarningStoreError(
                f"warning id must be an integer, got {type(warning_id).__name__}; take it from warnings_for()"
            ) from None

    # ---------------------------------------------------------------------------------------------
    # Reading
    # ---------------------------------------------------------------------------------------------

    def warnings_for(
        self,
        date: str,
        station_id: str | None = None,
        county_code: str | None = None,
        level: str | None = None,
        active_only: bool = True,
    ) -> list[dict[str, Any]]:
        """The warnings of a date, optionally for one station, county or level.

        Ordered by station, then rank within the station (the order a station works them in).
        Withdrawn warnings (``active=False``) are left out unless ``active_only=False``.
        """
        day = _check_date(date)
        if level is not None and level not in LEVELS:
            raise WarningStoreError(f"level {_shown(level)} is unknown; use one of {', '.join(LEVELS)}")
        w = warnings_table
        query = select(w).where(w.c.date == day)
        if station_id is not None:
            query = query.where(w.c.station_id == station_id)
        if county_code is not None:
            query = query.where(w.c.county_code == county_code)
        if level is not None:
            query = query.where(w.c.level == level)
        if active_only:
            query = query.where(w.c.active.is_(True))
        query = query.order_by(w.c.station_id, w.c.rank_in_station, w.c.id)
        with self._tx(write=False) as conn:
            return [_warning_dict(r) for r in conn.execute(query).mappings()]

    def get(self, warning_id: int) -> dict[str, Any] | None:
        """One warning by id, or None if there is none (never stored, or deleted by a re-run)."""
        wid = self._check_id(warning_id)
        with self._tx(write=False) as conn:
            row = conn.execute(select(warnings_table).where(warnings_table.c.id == wid)).mappings().first()
        return None if row is None else _warning_dict(row)

    def history(self, warning_id: int) -> list[dict[str, Any]]:
        """Every status change of a warning, oldest first (empty for an unknown id)."""
        wid = self._check_id(warning_id)
        e = warning_events
        with self._tx(write=False) as conn:
            rows = conn.execute(select(e).where(e.c.warning_id == wid).order_by(e.c.at, e.c.id)).mappings()
            return [_event_dict(r) for r in rows]

    def dates(self) -> list[str]:
        """Dates with a ranking run, newest first."""
        with self._tx(write=False) as conn:
            return list(conn.execute(select(ranking_runs.c.date).order_by(ranking_runs.c.date.desc())).scalars())

    def run_info(self, date: str) -> dict[str, Any] | None:
        """The provenance of a date's ranking run, or None if the date was never ranked.

        ``{"date", "created_at", "updated_at", "warning_count", "info"}`` where ``info`` is the
        dict passed to :meth:`replace_date` (as JSON: NaN became None, numpy values plain).
        """
        day = _check_date(date)
        with self._tx(write=False) as conn:
            row = conn.execute(select(ranking_runs).where(ranking_runs.c.date == day)).mappings().first()
        if row is None:
            return None
        return {
            "date": row["date"],
            "created_at": _iso(row["created_at"]),
            "updated_at": _iso(row["updated_at"]),
            "warning_count": int(row["warning_count"]),
            "info": json.loads(row["info"]),
        }

    def latest_for_household(self, household_id: str) -> dict[str, Any] | None:
        """The newest active warning of a household (by date), or None if it has none."""
        if not isinstance(household_id, str) or not household_id:
            raise WarningStoreError("household_id must be a non-empty string")
        w = warnings_table
        query = (
            select(w)
            .where(w.c.household_id == household_id, w.c.active.is_(True))
            .order_by(w.c.date.desc(), w.c.id.desc())
            .limit(1)
        )
        with self._tx(write=False) as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else _warning_dict(row)

    def dispose(self) -> None:
        """Close every pooled connection (the store must not be used afterwards)."""
        self._engine.dispose()
