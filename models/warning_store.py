"""The warnings database: daily rankings and the closed loop of what stations did with them.

Every day ``yujing rank --date D`` ranks the households at risk of a dispute turning violent
(民转刑) and hands one row per (date, household) to :meth:`WarningStore.replace_date`. Stations
then move each warning along ``pushed -> acknowledged -> handled -> fed_back``
(:meth:`WarningStore.set_status`), and the feedback says what happened (:data:`OUTCOMES`).
A county supervises (督办) an open warning with a comment and a new deadline
(:meth:`WarningStore.supervise`); the loop's deadlines and the stations' assessment are computed
from :meth:`WarningStore.loop_frames` by models/loop.py and models/assessment.py.

Why it is written the way it is:

* **SQLAlchemy 2 Core, portable types only.** SQLite (the default, one file under ``var/``)
  for a single center and the tests; PostgreSQL when several services share the data. The
  same code runs on both: no dialect-specific upsert, no native JSON or enum types (JSON is
  stored as text, enumerations are ``CHECK`` constraints).
* **A ranking run is idempotent and atomic.** Re-running a date with the same input changes
  no row at all (not even ``updated_at``), a re-run never resets what a station already did,
  and a run that fails half-way leaves the previous state exactly as it was (one transaction).
* **Files and rows change together.** The daily job stages its warnings as *pending*
  (:meth:`WarningStore.prepare`), publishes its folder with one symlink swap, then applies them
  (:meth:`WarningStore.commit`). Every other method first calls :meth:`WarningStore.recover`,
  which applies a pending ranking whose folder is now the visible one and drops one whose writer
  died before publishing, so after a ``kill -9`` anywhere every reader gets the rows of the
  ranking whose files it sees (docs/ranking.md#crash-consistency).
* **Nothing a station or county did is lost.** A household that drops out of a re-run is deleted
  only while its warning is still ``pushed`` and unsupervised; otherwise the warning is kept with
  ``active=False``.
* **Personal data stays out.** Station notes are masked with :func:`features.text.mask`
  before they are stored, and error messages never quote notes, rows or driver details
  (PostgreSQL's ``DETAIL`` lines show row values, so only the first line is kept).

Timestamps are UTC; the dictionaries returned are plain JSON (ISO strings, parsed reasons).
See docs/warnings-db.md.

One job a module: the tables, enumerations and :class:`WarningStoreError` are in
models/warning_tables.py, the checks and conversions of rows in models/warning_rows.py, opening
the database in models/warning_connection.py, and the two-phase publication (``prepare``,
``commit``, ``recover``) in models/warning_publication.py. This module holds the store itself
(writing a date, the closed loop, reading) and re-exports the names callers import from here.
"""

from __future__ import annotations

import json
import operator
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Select, bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from features.text import mask
from models.levels import LEVELS
from models.warning_connection import _normalise_url, _open_engine
from models.warning_publication import RankingPublication
from models.warning_publication import _host as _host  # re-exported: tests judge writers on this host
from models.warning_rows import (
    LOOP_WARNING_COLUMNS,
    _check_actor,
    _check_comment,
    _check_date,
    _check_deadline,
    _check_moment,
    _chunks,
    _dumps,
    _event_dict,
    _frame,
    _iso,
    _jsonable,
    _new_row,  # looked up here at call time, so a test can make one insert fail (atomicity)
    _now,
    _raw,
    _rows_of,
    _supervision_dict,
    _warning_dict,
)
from models.warning_tables import (
    _SCORE_FIELDS,
    ENGINES,
    MAX_WARNING_ID,
    MAX_WARNING_ID_POSTGRES,
    OPEN_STATUSES,
    OUTCOMES,
    PUBLICATION_STATES,
    RANK_ACTOR,
    STATUSES,
    WarningStoreError,
    _first_line,
    _shown,
    ranking_runs,
    warning_events,
    warning_supervisions,
    warnings_table,
)
from models.warning_tables import REQUIRED_COLUMNS as REQUIRED_COLUMNS  # re-exported: pipelines/ranking.py
from models.warning_tables import metadata as metadata  # re-exported with the tables (one schema)
from models.warning_tables import ranking_publications as ranking_publications  # re-exported: tests

_LOOP_CACHE_ENTRIES = 16  # periods x scopes a workbench shows at once (city, counties, a few stations)
_LOOP_CACHE_SECONDS = 300.0  # the longest a change the version cannot see (below) stays unseen
_LOOP_ID_OVERLAP = 64  # new rows are read from this many ids below the last seen: late commits on PostgreSQL
_monotonic = time.monotonic  # the cache's age clock (a name of its own, so a test can move it)

__all__ = [
    "ENGINES",
    "LEVELS",
    "MAX_WARNING_ID",
    "OPEN_STATUSES",
    "OUTCOMES",
    "PUBLICATION_STATES",
    "RANK_ACTOR",
    "STATUSES",
    "WarningStore",
    "WarningStoreError",
]


class WarningStore(RankingPublication):
    """Daily warnings and their closed-loop status in one SQL database (SQLite or PostgreSQL).

    Every method opens its own short transaction, so one store can be shared by a web server's
    threads; call :meth:`dispose` when done to close pooled connections. The two-phase
    publication (:meth:`prepare`, :meth:`commit`, :meth:`recover`, :meth:`publications`) comes
    from :class:`~models.warning_publication.RankingPublication`.
    """

    def __init__(self, url: str) -> None:
        """Connect and create the tables if missing.

        SQLite: the parent folder is created, the file is switched to WAL (readers never block
        the daily writer), foreign keys are enforced on every connection, and write
        transactions start with ``BEGIN IMMEDIATE`` so two writers queue on the busy timeout
        instead of failing when one upgrades a read lock (models/warning_connection.py).
        """
        parsed = _normalise_url(url)
        self._url = parsed
        self._sqlite = parsed.get_backend_name() == "sqlite"
        self._max_id = MAX_WARNING_ID if self._sqlite else MAX_WARNING_ID_POSTGRES
        self._engine: Engine = _open_engine(parsed)
        self._loop_cache: OrderedDict[tuple[Any, ...], tuple[tuple[Any, ...], float, tuple[pd.DataFrame, ...]]]
        self._loop_cache = OrderedDict()
        self._loop_lock = threading.Lock()

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
        self.recover()  # an older attempt of this date rolled forward first, never after (it would undo this)
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
            # A supervised warning is kept (withdrawn) too: the county's comment is part of the audit
            # trail. Events go with their warning (ON DELETE CASCADE).
            supervised = select(warning_supervisions.c.id).where(warning_supervisions.c.warning_id == w.c.id)
            deleted += conn.execute(
                delete(w).where(w.c.id.in_(ids), w.c.status == "pushed", ~supervised.exists())
            ).rowcount
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
        if new_rows or changed or withdrawn or deleted:
            # The run's updated_at is "when this date's rows last changed": loop_frames' cache checks it.
            conn.execute(update(ranking_runs).where(ranking_runs.c.date == day).values(updated_at=now))
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
        _check_actor(actor)
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

        self.recover()
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
            if "ck_warnings_outcome" in _first_line(exc):
                raise WarningStoreError(
                    f"the database's outcome check predates the outcome {outcome}, and it could not be widened "
                    "when the store was opened (read-only file or a role without ALTER); open the store once "
                    "with write access (any yujing command that writes) and feed back again"
                ) from None
            raise WarningStoreError(
                f"changing the status of warning {wid} failed and nothing was written: {_first_line(exc)}; try again"
            ) from None

    def supervise(self, warning_id: int, actor: str, comment: str, new_deadline: datetime) -> dict[str, Any]:
        """A county's supervision (督办) of an open warning: a comment and a new deadline; returns the record.

        Only an open (``pushed`` or ``acknowledged``), active warning can be supervised: a closed one
        has nothing left to urge, a withdrawn one is no longer a warning. ``new_deadline`` must be an
        aware datetime after now and at most :data:`~models.warning_tables.MAX_DEADLINE_DAYS` days
        ahead; it may move the deadline earlier or later (the latest supervision sets the deadline,
        models/loop.py). The comment is required, at most
        :data:`~models.warning_tables.MAX_COMMENT` characters, and masked with
        :func:`models.notes.mask_note` before it is stored. The record is
        ``{"id", "warning_id", "actor", "comment" (masked), "new_deadline", "at"}`` (UTC ISO
        strings); the warning's ``updated_at`` moves too, so caches keyed on it see the change.
        """
        wid = self._check_id(warning_id)
        _check_actor(actor)
        masked = _check_comment(comment)
        if not isinstance(new_deadline, datetime):
            _check_moment(new_deadline, "new_deadline")  # the type error, before any work
        self.recover()
        now = _now()
        deadline = _check_deadline(new_deadline, now)
        w, s = warnings_table, warning_supervisions
        try:
            with self._tx(write=True) as conn:
                row = conn.execute(select(w.c.status, w.c.active).where(w.c.id == wid).with_for_update()).first()
                if row is None:
                    raise WarningStoreError(
                        f"warning {wid} does not exist (a re-run of its date deletes warnings still pushed); "
                        "list current warnings with warnings_for(date)"
                    )
                if row.status not in OPEN_STATUSES:
                    raise WarningStoreError(
                        f"warning {wid} is already {row.status}; only an open warning "
                        f"({' or '.join(OPEN_STATUSES)}) can be supervised"
                    )
                if not row.active:
                    raise WarningStoreError(
                        f"warning {wid} was withdrawn by a re-run of its date; supervise the household's current "
                        "warning instead"
                    )
                sid = conn.execute(
                    insert(s).values(warning_id=wid, actor=actor, comment=masked, new_deadline=deadline, at=now)
                ).inserted_primary_key[0]
                conn.execute(update(w).where(w.c.id == wid).values(updated_at=now))
                return _supervision_dict(conn.execute(select(s).where(s.c.id == sid)).mappings().one())
        except DBAPIError as exc:
            raise WarningStoreError(
                f"supervising warning {wid} failed and nothing was written: {_first_line(exc)}; try again"
            ) from None

    def _check_id(self, warning_id: object) -> int:
        """The id as an int the id column can hold; anything else is refused here, before the driver sees it.

        SQLite cannot bind an integer beyond 64 bits (OverflowError, not even a driver error),
        PostgreSQL's 32-bit ``INTEGER`` column refuses more than 2**31-1 (a DataError), and no
        stored warning has an id below 1.
        """
        try:
            if isinstance(warning_id, bool):
                raise TypeError
            wid = operator.index(warning_id)  # type: ignore[arg-type]
        except TypeError:
            raise WarningStoreError(
                f"warning id must be an integer, got {type(warning_id).__name__}; take it from warnings_for()"
            ) from None
        if not 1 <= wid <= self._max_id:
            got = "0 or a negative number" if wid < 1 else "a larger number"
            raise WarningStoreError(
                f"warning id must be between 1 and {self._max_id}, got {got}; take it from warnings_for()"
            )
        return wid

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
        self.recover()
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
        self.recover()
        with self._tx(write=False) as conn:
            row = conn.execute(select(warnings_table).where(warnings_table.c.id == wid)).mappings().first()
        return None if row is None else _warning_dict(row)

    def history(self, warning_id: int) -> list[dict[str, Any]]:
        """Every status change of a warning, oldest first (empty for an unknown id)."""
        wid = self._check_id(warning_id)
        self.recover()
        e = warning_events
        with self._tx(write=False) as conn:
            rows = conn.execute(select(e).where(e.c.warning_id == wid).order_by(e.c.at, e.c.id)).mappings()
            return [_event_dict(r) for r in rows]

    def dates(self) -> list[str]:
        """Dates with a ranking run, newest first."""
        self.recover()
        with self._tx(write=False) as conn:
            return list(conn.execute(select(ranking_runs.c.date).order_by(ranking_runs.c.date.desc())).scalars())

    def run_info(self, date: str) -> dict[str, Any] | None:
        """The provenance of a date's ranking run, or None if the date was never ranked.

        ``{"date", "created_at", "updated_at", "warning_count", "info"}`` where ``info`` is the
        dict passed to :meth:`replace_date` (as JSON: NaN became None, numpy values plain).
        """
        day = _check_date(date)
        self.recover()
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
        self.recover()
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

    def _check_ids(self, warning_ids: Sequence[int] | None) -> list[int] | None:
        """Warning ids to filter on (each checked like :meth:`_check_id`, duplicates dropped), or None for all."""
        if warning_ids is None:
            return None
        if isinstance(warning_ids, str | bytes | Mapping) or not hasattr(warning_ids, "__iter__"):
            raise WarningStoreError(f"warning_ids must be a list of integers or None, got {type(warning_ids).__name__}")
        return sorted({self._check_id(i) for i in warning_ids})  # a list, set, array or pandas column

    def _rows_for_ids(self, query: Select[Any], column: Any, ids: list[int] | None) -> list[Mapping[str, Any]]:
        """Rows of ``query`` for the ids (chunked IN lists), or all of them; in the query's order per chunk."""
        with self._tx(write=False) as conn:
            if ids is None:
                return list(conn.execute(query).mappings())
            rows: list[Mapping[str, Any]] = []
            for chunk in _chunks(ids):
                rows.extend(conn.execute(query.where(column.in_(chunk))).mappings())
            return rows

    def events(self, warning_ids: Sequence[int] | None = None, since: datetime | None = None) -> list[dict[str, Any]]:
        """Status changes (every event, ``None -> pushed`` included), oldest first; of some warnings, since a time.

        ``since`` is an aware datetime; events at or after it are returned.
        """
        ids = self._check_ids(warning_ids)
        e = warning_events
        query = select(e)
        if since is not None:
            query = query.where(e.c.at >= _check_moment(since, "since"))
        self.recover()
        rows = self._rows_for_ids(query, e.c.warning_id, ids)
        rows.sort(key=lambda r: (r["at"], r["id"]))
        return [_event_dict(r) for r in rows]

    def supervisions(self, warning_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """Supervisions (督办), oldest first, of some warnings or all; the comment as stored (masked)."""
        ids = self._check_ids(warning_ids)
        self.recover()
        rows = self._rows_for_ids(select(warning_supervisions), warning_supervisions.c.warning_id, ids)
        rows.sort(key=lambda r: (r["at"], r["id"]))
        return [_supervision_dict(r) for r in rows]

    def _between(
        self, first_date: str, last_date: str, station_id: str | None, county_code: str | None, active_only: bool
    ) -> list[Any]:
        """The WHERE terms for warnings ranked from ``first_date`` to ``last_date`` (inclusive); uses the date index."""
        first, last = _check_date(first_date), _check_date(last_date)
        if first > last:
            raise WarningStoreError(f"first_date {first} is after last_date {last}; pass the period's first day first")
        w = warnings_table
        terms: list[Any] = [w.c.date >= first, w.c.date <= last]
        if station_id is not None:
            terms.append(w.c.station_id == station_id)
        if county_code is not None:
            terms.append(w.c.county_code == county_code)
        if active_only:
            terms.append(w.c.active.is_(True))
        return terms

    def warnings_between(
        self,
        first_date: str,
        last_date: str,
        station_id: str | None = None,
        county_code: str | None = None,
        active_only: bool = True,
    ) -> list[dict[str, Any]]:
        """The warnings ranked on the dates ``first_date`` .. ``last_date`` (inclusive), newest date first.

        Within a date, by station and rank (as :meth:`warnings_for`). Withdrawn warnings are left out
        unless ``active_only=False``.
        """
        terms = self._between(first_date, last_date, station_id, county_code, active_only)
        self.recover()
        w = warnings_table
        query = select(w).where(*terms).order_by(w.c.date.desc(), w.c.station_id, w.c.rank_in_station, w.c.id)
        with self._tx(write=False) as conn:
            return [_warning_dict(r) for r in conn.execute(query).mappings()]

    def household_warnings(self, household_id: str) -> list[dict[str, Any]]:
        """Every warning of a household (all dates, withdrawn ones too), newest first, with its loop.

        Each warning carries ``"events"`` (its status changes, oldest first) and ``"supervisions"``
        (oldest first): the household page's timeline in one call.
        """
        if not isinstance(household_id, str) or not household_id:
            raise WarningStoreError("household_id must be a non-empty string")
        self.recover()
        w, e, s = warnings_table, warning_events, warning_supervisions
        with self._tx(write=False) as conn:
            warnings = [
                _warning_dict(r)
                for r in conn.execute(
                    select(w).where(w.c.household_id == household_id).order_by(w.c.date.desc(), w.c.id.desc())
                ).mappings()
            ]
            ids = [x["id"] for x in warnings]
            events: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
            supervisions: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
            for chunk in _chunks(ids):
                for r in conn.execute(select(e).where(e.c.warning_id.in_(chunk)).order_by(e.c.at, e.c.id)).mappings():
                    events[int(r["warning_id"])].append(_event_dict(r))
                for r in conn.execute(select(s).where(s.c.warning_id.in_(chunk)).order_by(s.c.at, s.c.id)).mappings():
                    supervisions[int(r["warning_id"])].append(_supervision_dict(r))
        return [{**x, "events": events[x["id"]], "supervisions": supervisions[x["id"]]} for x in warnings]

    def loop_frames(
        self,
        first_date: str,
        last_date: str,
        station_id: str | None = None,
        county_code: str | None = None,
    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """The closed loop of the active warnings ranked ``first_date`` .. ``last_date``, as three DataFrames.

        Made for models/loop.py (``loop_frame``) and models/assessment.py, which a workbench page
        calls on every load, so only what they need is read, by three indexed queries in one
        transaction (a consistent snapshot), each sorted by ``id``:

        * ``warnings``: id, date, household_id, station_id, county_code, level, category, status,
          outcome, active (always True: withdrawn warnings are left out), created_at. No
          ``reasons`` (parsing their JSON would cost more than the rest) nor the ranking's other
          fields: :meth:`warnings_between` has them for display;
        * ``events``: id, warning_id, to_status, at, for the moves *after* ``pushed`` (each
          warning's ``None -> pushed`` event is its ``created_at``); no notes, no actors;
        * ``supervisions``: id, warning_id, new_deadline, at; no comments, no actors.

        Times are pandas ``datetime64[us, UTC]``; ids are int64.

        The frames are cached per (period, station, county) and kept current cheaply: one query
        of primary-key maxima (:meth:`_loop_version`) tells whether anything changed; new status
        events and supervisions are then read by id (a few rows) and applied to the cached
        frames, and a new or re-run ranking reads the period again. A workbench reloading a page
        thus costs a millisecond, not three queries over the period, and a station sees its own
        acknowledgement at once. The cached frames are re-read whole at least every 5 minutes
        (the bound on a change the version cannot see, see :meth:`_loop_version`). Callers get
        copies and may change them.
        """
        terms = self._between(first_date, last_date, station_id, county_code, active_only=True)
        self.recover()
        key = (_check_date(first_date), _check_date(last_date), station_id, county_code)
        with self._tx(write=False) as conn:
            version = self._loop_version(conn)
            with self._loop_lock:
                cached = self._loop_cache.get(key)
            frames = None if cached is None else self._refreshed_loop(conn, cached, version)
            born = cached[1] if frames is not None and cached is not None else _monotonic()
            if frames is None:
                frames = self._read_loop(conn, terms)
            with self._loop_lock:
                self._loop_cache[key] = (version, born, frames)
                self._loop_cache.move_to_end(key)
                while len(self._loop_cache) > _LOOP_CACHE_ENTRIES:
                    self._loop_cache.popitem(last=False)
        # Shallow copies: with pandas' copy-on-write a caller changing its frames never reaches the cache.
        warnings, events, supervisions = (frame.copy(deep=False) for frame in frames)
        return warnings, events, supervisions

    def _loop_version(self, conn: Connection) -> tuple[Any, ...]:
        """(last event id, last supervision id, ranking runs, their last ``updated_at``): one cheap query.

        A status move adds an event and a supervision adds a row (ids only grow: AUTOINCREMENT on
        SQLite, a sequence on PostgreSQL); a ranking that changes any warning (insert, level,
        withdrawal, deletion) moves its run's ``updated_at``. On PostgreSQL two writers can commit
        out of id order, so an event may appear below an id already seen: new rows are read from
        ``_LOOP_ID_OVERLAP`` ids below the last one seen (a tiny primary-key range). A change made
        to the database behind the store's back changes nothing here: the cache's age limit
        (``_LOOP_CACHE_SECONDS``) bounds how long it stays unseen.
        """
        query = select(
            select(func.max(warning_events.c.id)).scalar_subquery(),
            select(func.max(warning_supervisions.c.id)).scalar_subquery(),
            select(func.count()).select_from(ranking_runs).scalar_subquery(),
            select(func.max(ranking_runs.c.updated_at)).scalar_subquery(),
        )
        return tuple(conn.execute(query).one())

    def _refreshed_loop(
        self,
        conn: Connection,
        cached: tuple[tuple[Any, ...], float, tuple[pd.DataFrame, ...]],
        version: tuple[Any, ...],
    ) -> tuple[pd.DataFrame, ...] | None:
        """The cached frames brought up to ``version`` by the new events and supervisions, or None to read again.

        Only when the rankings are as cached (same warnings in the period) and the frames are younger
        than the age limit; new rows are read by id (primary-key ranges) and kept if they belong to a
        cached warning, whose status and outcome are re-read.
        """
        old, born, (warnings, events, supervisions) = cached
        if old[2:] != version[2:] or _monotonic() - born >= _LOOP_CACHE_SECONDS:
            return None
        if old == version:
            return warnings, events, supervisions
        w, e, s = warnings_table, warning_events, warning_supervisions
        ids = warnings["id"]
        new_events = _frame(
            conn.execute(
                select(_raw(e.c.id), e.c.warning_id, e.c.to_status, _raw(e.c.at)).where(
                    e.c.id > (old[0] or 0) - _LOOP_ID_OVERLAP, e.c.to_status != "pushed"
                )
            )
        )
        new_events = new_events[new_events["warning_id"].isin(ids) & ~new_events["id"].isin(events["id"])]
        new_supervisions = _frame(
            conn.execute(
                select(s.c.id, s.c.warning_id, _raw(s.c.new_deadline), _raw(s.c.at)).where(
                    s.c.id > (old[1] or 0) - _LOOP_ID_OVERLAP
                )
            )
        )
        new_supervisions = new_supervisions[
            new_supervisions["warning_id"].isin(ids) & ~new_supervisions["id"].isin(supervisions["id"])
        ]
        if len(new_events):
            moved = sorted({int(i) for i in new_events["warning_id"]})
            rows = [
                r
                for chunk in _chunks(moved)
                for r in conn.execute(select(w.c.id, w.c.status, w.c.outcome).where(w.c.id.in_(chunk)))
            ]
            positions = pd.Index(ids).get_indexer([r.id for r in rows])
            warnings = warnings.copy()
            warnings.iloc[positions, warnings.columns.get_loc("status")] = [r.status for r in rows]
            warnings.iloc[positions, warnings.columns.get_loc("outcome")] = [r.outcome for r in rows]
            events = pd.concat([events, new_events], ignore_index=True).sort_values("id", ignore_index=True)
        if len(new_supervisions):
            supervisions = pd.concat([supervisions, new_supervisions], ignore_index=True).sort_values(
                "id", ignore_index=True
            )
        return warnings, events, supervisions

    def _read_loop(self, conn: Connection, terms: list[Any]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """The three frames of :meth:`loop_frames`, read whole in ``conn``'s transaction."""
        w, e, s = warnings_table, warning_events, warning_supervisions
        queries = (
            select(*(_raw(w.c[c]) for c in LOOP_WARNING_COLUMNS)).where(*terms),
            select(_raw(e.c.id), e.c.warning_id, e.c.to_status, _raw(e.c.at))
            .select_from(e.join(w, e.c.warning_id == w.c.id))
            .where(*terms, e.c.to_status != "pushed"),
            select(s.c.id, s.c.warning_id, _raw(s.c.new_deadline), _raw(s.c.at))
            .select_from(s.join(w, s.c.warning_id == w.c.id))
            .where(*terms),
        )
        warnings, events, supervisions = (_frame(conn.execute(query)) for query in queries)
        warnings.insert(warnings.columns.get_loc("created_at"), "active", True)
        return warnings, events, supervisions

    def dispose(self) -> None:
        """Close every pooled connection (the store must not be used afterwards)."""
        self._engine.dispose()
