"""The closed loop of recent warnings in memory, kept current by reading only what changed.

The overview, the supervision list and the league table need the loop of every warning of
the last three months (the default city: ~700 warnings a day, 60k rows and twice as many
status events). Reading and timing all of them takes seconds (``WarningStore.loop_frames``
and ``models.loop.loop_frame``), and every acknowledgement anywhere changes them, so a
cache that starts over on every change would make most page loads slow. Instead:

* **One full load** per window: ``store.loop_frames`` of the window's dates, timed by
  ``models.loop.loop_frame`` (at start-up in the loading thread, and after a new ranking
  date; a reload that takes long runs in a thread while pages keep the last snapshot).
* **A change marker per request** (four index lookups, ~0.1 ms): the newest event id, the
  newest supervision id, the number of warnings and the newest ranking run. Unchanged:
  nothing is read.
* **Incremental refresh** when only events or supervisions were added: the new rows (by
  id, an index range), the changed warnings by id, and ``loop_frame`` for those warnings
  alone, laid over the loaded frame (which is never written to). The number of warnings or a ranking run changed (a new
  ranking, a re-run): full load.
* **Time moves on**: ``overdue`` is recomputed from the deadlines for each snapshot, and a
  snapshot is rebuilt when it is older than :data:`SNAPSHOT_SECONDS`; a full load is forced
  every :data:`FULL_RELOAD_SECONDS` (a re-run that withdrew warnings without changing any
  count is seen then).

The marker and the incremental reads are read-only SQL on the store's public tables
(models/warning_tables.py) through this module's own connection pool; everything a page
writes goes through :class:`~models.warning_store.WarningStore`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.engine import make_url

from models.loop import loop_frame, utc_times
from models.warning_tables import ranking_runs, warning_events, warning_supervisions, warnings_table

log = logging.getLogger("yujing.serving")

SNAPSHOT_SECONDS = 30.0
"""How old a snapshot may get before ``overdue`` (which depends on the clock) is recomputed."""
FULL_RELOAD_SECONDS = 600.0
"""A full load at least this often, whatever the marker says."""
BACKGROUND_AFTER_SECONDS = 0.3
"""A full load that took longer than this last time runs in a thread while pages keep the last snapshot."""

_WARNING_COLUMNS = (
    "id",
    "date",
    "household_id",
    "station_id",
    "county_code",
    "level",
    "probability",
    "rank_in_station",
    "category",
    "engine",
    "status",
    "status_at",
    "outcome",
    "active",
    "created_at",
)
_EVENT_COLUMNS = ("id", "warning_id", "from_status", "to_status", "actor", "outcome", "at")
_SUPERVISION_COLUMNS = ("id", "warning_id", "actor", "new_deadline", "at")


def reader_engine(url: str) -> Engine:
    """A small read-only pool on the warnings database (a bare ``postgresql://`` means psycopg 3, as the store's)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    sqlite = parsed.get_backend_name() == "sqlite"
    return create_engine(parsed, hide_parameters=True, pool_pre_ping=not sqlite, pool_size=2, max_overflow=4)


@dataclass(frozen=True)
class Marker:
    """What changes when the loop's data changes (see the module docstring)."""

    last_event: int
    last_supervision: int
    warnings: int
    last_run: str


@dataclass
class Snapshot:
    """The loop of the window's active warnings as of ``now``: one row per warning, indexed by id."""

    first: str
    last: str
    loop: pd.DataFrame
    now: datetime
    marker: Marker
    built: float = field(default_factory=time.monotonic)
    derived: dict[str, Any] = field(default_factory=dict)
    """Per-snapshot results pages compute once (the league table, per-date counts)."""

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per snapshot (a race computes twice; both results are equal)."""
        if key not in self.derived:
            self.derived[key] = compute()
        return self.derived[key]


def _mutable(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns as object arrays, in the loaded frame and in every patch laid over it.

    One text dtype on both sides means a snapshot's concatenation never converts a column, and
    the text columns the league compares (``isin``, ``groupby``) take pandas' hashtable path
    (an Arrow-backed string column is walked value by value in Python there).
    """
    text = [c for c in frame.columns if pd.api.types.is_string_dtype(frame[c]) and frame[c].dtype != object]
    return frame.astype({c: object for c in text}) if text else frame


def _frame(rows: list[Any], columns: tuple[str, ...], times: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records([tuple(r) for r in rows], columns=list(columns))
    for column in times:
        frame[column] = utc_times(frame[column])
    for column in ("id", "warning_id", "rank_in_station"):
        if column in frame:
            frame[column] = frame[column].astype("int64")
    if "active" in frame:
        frame["active"] = frame["active"].astype(bool)
    if "probability" in frame:
        frame["probability"] = frame["probability"].astype(float)
    return _mutable(frame)


def _added(frame: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the rows of ``new`` whose ids it does not hold yet (read twice: kept once)."""
    if frame is None or frame.empty:
        return new.reset_index(drop=True)
    fresh = new[~new["id"].isin(frame["id"])]
    return pd.concat([frame, fresh], ignore_index=True) if len(fresh) else frame


class LoopCache:
    """The loop of a window of ranking dates, in memory (see the module docstring).

    Held as a *base* frame (the last full load, never modified) and an *overlay* of the
    warnings re-timed since (plus the ids that left: withdrawn or deleted). A snapshot is
    the base without the overlaid ids, then the overlay: patching never writes into the
    40k-row base (pandas copies a column on every write to it).
    """

    def __init__(self, store: Any, reader: Engine, hours: Mapping[str, int]) -> None:
        self.store = store
        self.reader = reader
        self.hours = dict(hours)
        self._lock = threading.Lock()
        self._loading = threading.Lock()
        self._base: pd.DataFrame | None = None
        self._overlay: pd.DataFrame | None = None
        self._gone: set[int] = set()
        self._known: set[int] = set()
        self._events: pd.DataFrame | None = None
        self._supervisions: pd.DataFrame | None = None
        self._new_events: pd.DataFrame | None = None
        self._new_supervisions: pd.DataFrame | None = None
        self._window: tuple[str, str] | None = None
        self._marker: Marker | None = None
        self._loaded_at = 0.0
        self._load_seconds = 0.0
        self._snapshot: Snapshot | None = None
        self.full_loads = 0
        self.incremental_loads = 0

    # ------------------------------------------------------------------ reading the database

    def marker(self) -> Marker:
        """The change marker: four lookups the indexes answer."""
        with self.reader.connect() as conn:
            row = conn.execute(
                select(
                    select(func.max(warning_events.c.id)).scalar_subquery(),
                    select(func.max(warning_supervisions.c.id)).scalar_subquery(),
                    select(func.count()).select_from(warnings_table).scalar_subquery(),
                    select(func.max(ranking_runs.c.updated_at)).scalar_subquery(),
                )
            ).one()
        return Marker(int(row[0] or 0), int(row[1] or 0), int(row[2] or 0), str(row[3]))

    def _since(self, after_event: int, after_supervision: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        e, s = warning_events, warning_supervisions
        with self.reader.connect() as conn:
            events = conn.execute(
                select(*(e.c[c] for c in _EVENT_COLUMNS)).where(e.c.id > after_event).order_by(e.c.id)
            ).all()
            supervisions = conn.execute(
                select(*(s.c[c] for c in _SUPERVISION_COLUMNS)).where(s.c.id > after_supervision).order_by(s.c.id)
            ).all()
        return (
            _frame(events, _EVENT_COLUMNS, ("at",)),
            _frame(supervisions, _SUPERVISION_COLUMNS, ("new_deadline", "at")),
        )

    def _warnings_by_id(self, ids: list[int]) -> pd.DataFrame:
        w = warnings_table
        rows: list[Any] = []
        with self.reader.connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                rows.extend(conn.execute(select(*(w.c[c] for c in _WARNING_COLUMNS)).where(w.c.id.in_(chunk))).all())
        return _frame(rows, _WARNING_COLUMNS, ("status_at", "created_at"))

    # ------------------------------------------------------------------ loading

    def _full(self, window: tuple[str, str], marker: Marker) -> None:
        if self._window is not None and window[1] < self._window[1]:
            window = self._window  # never step back to an older ranking's window
        started = time.perf_counter()
        warnings, events, supervisions = self.store.loop_frames(*window)
        loop = _mutable(loop_frame(warnings, events, supervisions, self.hours, datetime.now(UTC)))
        with self._lock:
            self._base, self._overlay, self._gone = loop, loop.iloc[:0], set()
            self._known = set(loop["id"].tolist())
            self._events, self._supervisions = events, supervisions
            self._new_events = self._new_supervisions = None
            self._window, self._marker = window, marker
            self._loaded_at = time.monotonic()
            self._load_seconds = time.perf_counter() - started
            self._snapshot = None
            self.full_loads += 1
        log.info("workbench loop cache: %d warnings of %s..%s in %.2f s", len(loop), *window, self._load_seconds)

    def _full_in_background(self, window: tuple[str, str], marker: Marker) -> None:
        if not self._loading.acquire(blocking=False):
            return  # one is already running

        def run() -> None:
            try:
                self._full(window, marker)
            except Exception as exc:  # the last snapshot keeps serving; the next request tries again
                log.warning("workbench loop cache reload failed: %s", type(exc).__name__)
            finally:
                self._loading.release()

        threading.Thread(target=run, name="yujing-wb-loop", daemon=True).start()

    def _incremental(self, marker: Marker) -> None:
        """Re-time the warnings that got events or supervisions since the last marker (by id: index ranges)."""
        assert self._marker is not None and self._overlay is not None
        events, supervisions = self._since(self._marker.last_event, self._marker.last_supervision)
        events = events[events["warning_id"].isin(self._known)]
        supervisions = supervisions[supervisions["warning_id"].isin(self._known)]
        touched = sorted(set(events["warning_id"].tolist()) | set(supervisions["warning_id"].tolist()))
        if touched:
            fresh = self._warnings_by_id(touched)
            fresh = fresh[fresh["active"]].reset_index(drop=True)
            self._new_events = _added(self._new_events, events[events["to_status"] != "pushed"])
            self._new_supervisions = _added(self._new_supervisions, supervisions)
            ids = fresh["id"]
            patch = _mutable(
                loop_frame(
                    fresh,
                    self._of(self._events, self._new_events, ids),
                    self._of(self._supervisions, self._new_supervisions, ids),
                    self.hours,
                    datetime.now(UTC),
                )
            )
            kept = self._overlay[~self._overlay["id"].isin(touched)]
            self._overlay = pd.concat([kept, patch], ignore_index=True) if len(kept) else patch
            self._gone = (self._gone | set(touched)) - set(ids.tolist())
        self._marker = marker
        self._snapshot = None
        self.incremental_loads += 1

    @staticmethod
    def _of(base: pd.DataFrame | None, new: pd.DataFrame | None, ids: pd.Series) -> pd.DataFrame:
        """The rows of ``ids`` from the full load's frame and from what came since.

        An event both read (written while the full load ran) is there twice, which changes nothing:
        the loop takes the first time each step was reached.
        """
        parts = [f[f["warning_id"].isin(ids)] for f in (base, new) if f is not None and len(f)]
        return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0] if parts else base.iloc[:0]

    # ------------------------------------------------------------------ the snapshot pages read

    def snapshot(self, window: tuple[str, str]) -> Snapshot:
        """The loop of ``window`` (first date, last date) as of now, refreshed by what changed since the last call.

        A request for an older window than the one held (a page of the previous ranking while the
        next one is being swapped in) gets the newer snapshot: it holds the older dates too.
        """
        marker = self.marker()
        if self._needs_full(window, marker):
            if self._snapshot is not None and self._window == window and self._load_seconds > BACKGROUND_AFTER_SECONDS:
                self._full_in_background(window, marker)
            else:
                with self._loading:
                    if self._needs_full(window, marker):
                        self._full(window, marker)
        with self._lock:
            if self._marker is not None and marker != self._marker and not self._needs_full(window, marker):
                self._incremental(marker)
            snap = self._snapshot
            if snap is None or time.monotonic() - snap.built > SNAPSHOT_SECONDS:
                snap = self._snapshot = self._make_snapshot()
            return snap

    def _needs_full(self, window: tuple[str, str], marker: Marker) -> bool:
        """No frame yet, a newer window, a new ranking or a changed number of warnings, or the periodic reload."""
        if self._base is None or self._window is None or self._marker is None:
            return True
        if window[1] > self._window[1]:
            return True
        return (
            marker.warnings != self._marker.warnings
            or marker.last_run != self._marker.last_run
            or time.monotonic() - self._loaded_at > FULL_RELOAD_SECONDS
        )

    def _make_snapshot(self) -> Snapshot:
        """The base without the re-timed or departed warnings, then the re-timed ones; overdue as of now."""
        assert self._base is not None and self._overlay is not None
        assert self._window is not None and self._marker is not None
        now = datetime.now(UTC)
        loop = self._base
        if len(self._overlay) or self._gone:
            replaced = self._gone | set(self._overlay["id"].tolist())
            loop = pd.concat([loop[~loop["id"].isin(replaced)], self._overlay], ignore_index=True)
        active = loop["active"].astype(bool) if "active" in loop else True
        loop = loop.assign(overdue=loop["open"].astype(bool) & active & (loop["deadline"] < pd.Timestamp(now)))
        loop.index = pd.Index(loop["id"].to_numpy())
        return Snapshot(first=self._window[0], last=self._window[1], loop=loop, now=now, marker=self._marker)
