"""Read the closed loop for training: the warnings and their status events, read-only, or why there are none.

Training must run the same on a fresh machine (``make run`` trains before any ranking exists) and
must never create, migrate or repair the warnings database: that is the ranking's and the
service's job (``models.warning_store.WarningStore`` creates tables and rolls pending rankings
forward). So this module only runs two ``SELECT`` statements on the store's own table definitions,
after checking that a SQLite file is there (connecting would create it). A ranking still pending
is not seen: its warnings are new and carry no feedback yet.

Only the columns ``models/feedback.py`` needs are read: never a note or an actor. Failures become
a reason for the report naming the exception type, never the URL (it may hold a password) or a
driver's message (it may quote row values).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sqlalchemy import create_engine, inspect, make_url, select
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from models.feedback import EVENT_COLUMNS, WARNING_COLUMNS
from models.warning_tables import warning_events, warnings_table


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database.removeprefix("file:").split("?")[0])


def read_loop_frames(url: str | None) -> tuple[pd.DataFrame | None, pd.DataFrame | None, str | None]:
    """``(warnings, events, None)``, or ``(None, None, reason)`` when there is nothing to read.

    Reasons: no database configured, no SQLite file yet, no warnings table yet, or the database
    could not be read (the exception's type only). Training goes on with the case labels.
    """
    if not url:
        return None, None, "no warnings database configured"
    try:
        path = _sqlite_path(url)
        if path is not None and not path.is_file():
            return None, None, f"no warnings database at {path} yet (nothing has been ranked)"
        engine = create_engine(url, hide_parameters=True)
    except (ArgumentError, ValueError) as exc:
        return None, None, f"the warnings database URL cannot be used ({type(exc).__name__})"
    try:
        with engine.connect() as conn:
            tables = inspect(conn)
            if not (tables.has_table(warnings_table.name) and tables.has_table(warning_events.name)):
                return None, None, "the warnings database has no warnings table yet (nothing has been ranked)"
            w = pd.DataFrame(
                conn.execute(select(*(warnings_table.c[c] for c in WARNING_COLUMNS))).mappings().all(),
                columns=list(WARNING_COLUMNS),
            )
            e = pd.DataFrame(
                conn.execute(select(*(warning_events.c[c] for c in EVENT_COLUMNS)).order_by(warning_events.c.id))
                .mappings()
                .all(),
                columns=list(EVENT_COLUMNS),
            )
    except SQLAlchemyError as exc:
        return None, None, f"the warnings database could not be read ({type(exc).__name__})"
    finally:
        engine.dispose()
    return w, e, None
