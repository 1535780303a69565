"""Opening the warnings database: URL checks, the SQLAlchemy engine, and SQLite's locking settings.

Why apart from the store (models/warning_store.py): how a connection behaves is decided once,
here, and every transaction of the store and of the two-phase publication inherits it.

* A bare ``postgresql://`` means psycopg 3, the driver this project ships; other backends are refused.
* SQLite: the parent folder is created, the file is switched to WAL (readers never block the daily
  writer), foreign keys are enforced on every connection, and write transactions start with
  ``BEGIN IMMEDIATE`` (execution option ``yujing_write``) so two writers queue on the busy timeout
  instead of failing when one upgrades a read lock.
* Errors show the URL with its password replaced by ``***`` and only the driver's first line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from models.warning_tables import WarningStoreError, _first_line, metadata


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
    return engine


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
