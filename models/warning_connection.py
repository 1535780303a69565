"""Opening the warnings database: URL checks, the SQLAlchemy engine, and SQLite's locking settings.

Why apart from the store (models/warning_store.py): how a connection behaves is decided once,
here, and every transaction of the store and of the two-phase publication inherits it.

* A bare ``postgresql://`` means psycopg 3, the driver this project ships; other backends are refused.
* SQLite: the parent folder is created, the file is switched to WAL (readers never block the daily
  writer), foreign keys are enforced on every connection, and write transactions start with
  ``BEGIN IMMEDIATE`` (execution option ``yujing_write``) so two writers queue on the busy timeout
  instead of failing when one upgrades a read lock.
* An existing database is brought up to today's schema on open: new tables are created
  (``create_all``), and a ``warnings.outcome`` CHECK written before an outcome was added
  (``referred``) is widened in place (:func:`_widen_outcome_check`).
* Errors show the URL with its password replaced by ``***`` and only the driver's first line.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from models.warning_tables import OUTCOMES, WarningStoreError, _first_line, metadata, outcome_check

_OUTCOME_CONSTRAINT = "ck_warnings_outcome"


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


def _open_engine(parsed: URL) -> Engine:
    """An engine for ``parsed`` (from :func:`_normalise_url`) with the tables created if missing."""
    sqlite = parsed.get_backend_name() == "sqlite"
    shown = parsed.render_as_string(hide_password=True)
    if sqlite and (path := _sqlite_file(parsed)) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(parsed, hide_parameters=True, pool_pre_ping=not sqlite)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise WarningStoreError(
            f"cannot create a database engine for {shown} ({type(exc).__name__}); "
            "check the URL scheme and that the driver (psycopg for PostgreSQL) is installed"
        ) from None
    if sqlite:
        _install_sqlite_hooks(engine)
    try:
        metadata.create_all(engine, checkfirst=True)
    except DBAPIError as exc:
        engine.dispose()
        raise WarningStoreError(
            f"cannot open the warnings database {shown}: {_first_line(exc)}; "
            "check that the server runs, the database exists and the role may create tables"
        ) from None
    _widen_outcome_check(engine)
    return engine


# --------------------------------------------------------------------------------------------------
# Widening the outcome CHECK of a database created before an outcome was added
# --------------------------------------------------------------------------------------------------


def _lists_every_outcome(definition: str) -> bool:
    """Whether a CHECK's text (as either backend shows it) allows every value of :data:`OUTCOMES`."""
    return all(f"'{value}'" in definition for value in OUTCOMES)


def _widen_outcome_check(engine: Engine) -> None:
    """Let an old database store today's outcomes: its ``warnings.outcome`` CHECK is widened in place.

    Why in place and on open: the constraint only ever gains values, so every stored row still
    satisfies the wider one, and the store is opened by every writer (ranking, service, workbench)
    before it writes, so no operator step can be forgotten. The check costs one catalogue query;
    the change runs once, in one transaction, re-checked under the write lock (two processes
    opening the same old database at once widen it once). If it cannot be written (a read-only
    file, a role without ``ALTER``), the database opens as before and only a feedback with a new
    outcome is refused by the constraint; :meth:`WarningStore.set_status` says how to fix that.
    A constraint this code does not recognise (renamed, hand-edited) is left alone.
    """
    try:
        if engine.dialect.name == "sqlite":
            _widen_sqlite(engine)
        elif engine.dialect.name == "postgresql":
            _widen_postgres(engine)
    except DBAPIError:
        return  # read-only: reads work, and a new outcome is refused with set_status's explanation


def _check_span(table_sql: str) -> tuple[int, int] | None:
    """Start and end of the outcome CHECK's expression inside SQLite's ``CREATE TABLE`` text (inner parentheses)."""
    found = re.search(rf"CONSTRAINT\s+{_OUTCOME_CONSTRAINT}\s+CHECK\s*\(", table_sql)
    if found is None:
        return None
    depth, start = 1, found.end()
    for i in range(start, len(table_sql)):
        if table_sql[i] == "(":
            depth += 1
        elif table_sql[i] == ")":
            depth -= 1
            if depth == 0:
                return start, i
    return None


def _widened_sqlite_sql(table_sql: str) -> str | None:
    """The ``CREATE TABLE warnings`` text with today's outcome CHECK, or None when nothing is to change."""
    span = _check_span(table_sql)
    if span is None or _lists_every_outcome(table_sql[span[0] : span[1]]):
        return None
    new_sql = table_sql[: span[0]] + outcome_check() + table_sql[span[1] :]
    # SQLite's advice for editing the schema: try the statement on a blank database first, since a
    # syntax error written into sqlite_master would make the file unreadable.
    probe = sqlite3.connect(":memory:")
    try:
        probe.execute(new_sql)
    except sqlite3.Error:
        return None
    finally:
        probe.close()
    return new_sql


def _widen_sqlite(engine: Engine) -> None:
    """Rewrite the CHECK in ``sqlite_master`` (SQLite's documented way to relax a CHECK without copying rows).

    https://www.sqlite.org/lang_altertable.html#otheralter: in one transaction, edit the table's
    text with ``writable_schema``, bump ``schema_version`` so every open connection re-reads the
    schema, and verify with ``integrity_check``. No row is copied, so ids, the AUTOINCREMENT
    counter, the indexes and the foreign keys of ``warning_events`` stay exactly as they were.
    """
    query = "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'warnings'"
    with engine.connect() as conn, conn.begin():
        table_sql = conn.exec_driver_sql(query).scalar()
    if not table_sql or _widened_sqlite_sql(table_sql) is None:
        return
    with engine.connect() as conn:
        conn.execution_options(yujing_write=True)  # BEGIN IMMEDIATE: one writer, re-checked below
        with conn.begin():
            table_sql = conn.exec_driver_sql(query).scalar()
            new_sql = _widened_sqlite_sql(table_sql or "")
            if new_sql is None:
                return  # another process widened it while we waited
            version = int(conn.exec_driver_sql("PRAGMA schema_version").scalar() or 0)
            conn.exec_driver_sql("PRAGMA writable_schema = ON")
            try:
                conn.exec_driver_sql(
                    "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'warnings'", (new_sql,)
                )
                conn.exec_driver_sql(f"PRAGMA schema_version = {version + 1}")
            finally:
                conn.exec_driver_sql("PRAGMA writable_schema = OFF")
            verdict = conn.exec_driver_sql("PRAGMA integrity_check(warnings)").scalar()
            if verdict != "ok":
                raise WarningStoreError(  # rolls the edit back with the transaction
                    "widening the outcome check of the warnings table failed its integrity check; "
                    "the database was left unchanged (restore a backup if it reports errors)"
                )


def _widen_postgres(engine: Engine) -> None:
    """Drop and re-add the outcome CHECK (PostgreSQL's DDL is transactional; existing rows satisfy the wider list)."""
    query = (
        "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c "
        "WHERE c.conname = %(name)s AND c.conrelid = to_regclass('warnings')"
    )

    def definition(conn: Connection) -> str | None:
        return conn.exec_driver_sql(query, {"name": _OUTCOME_CONSTRAINT}).scalar()

    with engine.connect() as conn, conn.begin():
        current = definition(conn)
    if current is None or _lists_every_outcome(current):
        return
    with engine.connect() as conn, conn.begin():
        conn.exec_driver_sql("LOCK TABLE warnings IN ACCESS EXCLUSIVE MODE")
        current = definition(conn)
        if current is None or _lists_every_outcome(current):
            return
        conn.exec_driver_sql(
            f"ALTER TABLE warnings DROP CONSTRAINT {_OUTCOME_CONSTRAINT}, "
            f"ADD CONSTRAINT {_OUTCOME_CONSTRAINT} CHECK ({outcome_check()})"
        )


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
