"""The warnings database's schema: its tables, the values they allow, and the store's error.

Kept apart from the store (models/warning_store.py) so the row checks (models/warning_rows.py)
and the two-phase publication (models/warning_publication.py) share one definition of every
table and enumeration without importing the store.

**Portable types only.** SQLite (the tests, a single center) and PostgreSQL (several services)
run the same schema: no native JSON or enum types (JSON is stored as text, enumerations are
``CHECK`` constraints) and a fixed naming convention, so constraint names match on both.
Error messages built here never quote a note, a row's content or a driver's ``DETAIL`` line.
See docs/warnings-db.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
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
)

from features.text import safe_repr
from models.levels import LEVELS

STATUSES = ("pushed", "acknowledged", "handled", "fed_back")
"""The closed loop, in order: a warning only ever moves forward along this tuple."""

OUTCOMES = ("resolved", "ongoing", "escalated", "false_alarm", "referred")
"""What a station reports when it feeds back (required by ``fed_back``).

``referred`` (handed to mediation or another department) came after the first four; a database
created before it carries a narrower ``CHECK``, which opening the store widens in place
(models/warning_connection.py).
"""

OPEN_STATUSES = ("pushed", "acknowledged")
"""A warning is open (the station still owes work, and it can be supervised) while in one of these."""

ENGINES = ("model", "rules")
"""Which engine ranked a warning: the promoted model or the keyword-rules fallback."""

PUBLICATION_STATES = ("pending", "published", "discarded")
"""A ranking's way into the database (docs/ranking.md#crash-consistency): staged as ``pending``
(invisible), then ``published`` once its folder is the visible one, or ``discarded`` when it never was."""

RANK_ACTOR = "yujing-rank"
"""The actor recorded on the ``None -> pushed`` event of every new warning."""

MAX_COMMENT = 500
"""The longest supervision comment accepted (characters, before masking): a request to a station, not a file."""

MAX_DEADLINE_DAYS = 90
"""How far ahead a supervision may set a deadline: past a two-month assessment period it would hide a warning."""

MAX_WARNING_ID = 2**63 - 1
"""The largest warning id SQLite can hold (a signed 64-bit integer); larger ids never reach the driver."""

MAX_WARNING_ID_POSTGRES = 2**31 - 1
"""The largest warning id on PostgreSQL, whose ``INTEGER`` id column is 32-bit (the driver refuses more)."""

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
_MAX_ACTOR = 64
_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,23}$")


class WarningStoreError(ValueError):
    """A request the store refuses: the message says what is wrong and how to fix it.

    Messages name columns, row positions, ids and allowed values; they never quote a note or a
    row's content, so they are safe to log.
    """


# --------------------------------------------------------------------------------------------------
# Safe pieces of error messages
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Tables
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


def outcome_check() -> str:
    """The CHECK expression of ``warnings.outcome`` for today's :data:`OUTCOMES` (the upgrade compares against it)."""
    return _in("outcome", OUTCOMES, nullable=True)


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
    CheckConstraint(outcome_check(), name="outcome"),
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

warning_supervisions = Table(
    "warning_supervisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("warning_id", Integer, ForeignKey("warnings.id", ondelete="CASCADE"), nullable=False),
    Column("actor", String(_MAX_ACTOR), nullable=False),
    Column("comment", Text, nullable=False),  # masked (models.notes.mask_note) before it is stored
    Column("new_deadline", DateTime(timezone=True), nullable=False),  # UTC
    Column("at", DateTime(timezone=True), nullable=False),
    Index(None, "warning_id"),
    sqlite_autoincrement=True,
)
"""A county's supervision (督办) of an open warning: who, what they asked (masked), and the new deadline.

The latest row of a warning sets its deadline (models/loop.py). A new table, so ``create_all`` adds it to
an existing database without touching the others.
"""

ranking_publications = Table(
    "ranking_publications",
    metadata,
    # The staged folder's name (.<date>-<ns>-<host>-<pid>-<token>): unique per attempt, never reused.
    Column("attempt", String(200), primary_key=True),
    Column("date", String(10), nullable=False),
    Column("ranking_id", String(64), nullable=False),
    Column("state", String(10), nullable=False),
    Column("folder", Text, nullable=False),  # absolute path of the staged folder
    Column("target", Text, nullable=False),  # absolute path of out_root/<date>, the symlink readers follow
    Column("writer", String(80), nullable=False),  # host hash, pid and process start of the job
    Column("info", Text, nullable=False),
    Column("rows", Text, nullable=True),  # the staged warnings as JSON while pending; cleared afterwards
    Column("counts", Text, nullable=True),  # what applying them did (inserted, updated ...)
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    CheckConstraint(_in("state", PUBLICATION_STATES), name="state"),
    Index(None, "state"),
    Index(None, "date"),
)
