"""Files and rows change together: a ranking's warnings are staged, then applied once its folder is visible.

The daily job stages its warnings as *pending* (:meth:`RankingPublication.prepare`), publishes
its output folder with one symlink swap, then applies them (:meth:`RankingPublication.commit`).
The symlink swap is the one commit point of both the files and the rows: every reader first
calls :meth:`RankingPublication.recover`, which applies a pending ranking whose folder is now the
visible one and drops one whose writer died before publishing, so after a ``kill -9`` anywhere
every reader gets the rows of the ranking whose files it sees (docs/ranking.md#crash-consistency,
docs/warnings-db.md).

:class:`RankingPublication` is a mixin of :class:`models.warning_store.WarningStore`: it uses the
store's transactions (``_tx``) and applies a ranking with the store's own ``_replace_date``, so a
published ranking changes the warnings exactly as :meth:`WarningStore.replace_date` would.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import DBAPIError

from models.warning_rows import _check_date, _dumps, _iso, _jsonable, _now, _rows_of
from models.warning_tables import WarningStoreError, _first_line, ranking_publications

# --------------------------------------------------------------------------------------------------
# Is the writer alive, is its folder visible
# --------------------------------------------------------------------------------------------------


def _host() -> str:
    """This machine as a short hash (the same as pipelines/outputs.py puts in staged folder names)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _process_start(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot, Linux); "" when unknown or gone.

    With the pid it tells a live writer from a new process that reuses a dead writer's pid.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else ""


def _writer_token() -> str:
    """``host:pid:start`` of this process: recorded with a pending ranking so recovery knows if its writer lives."""
    pid = os.getpid()
    return f"{_host()}:{pid}:{_process_start(pid)}"


def _writer_gone(token: str) -> bool:
    """True only when the writer certainly died: same host, and its pid is gone or now another process.

    A writer on another host cannot be judged from here, so it counts as alive (its own job or the next
    ranking on that host recovers it).
    """
    host, _, rest = token.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != _host() or not pid_text.isdigit():
        return False
    now = _process_start(int(pid_text))
    return now == "" or (start != "" and now != start)


def _is_visible(folder: str, target: str) -> bool:
    """Whether readers of ``target`` (out_root/<date>) now see ``folder``: the files' commit point."""
    try:
        return os.path.realpath(target) == os.path.realpath(folder) and Path(folder, "manifest.json").is_file()
    except OSError:
        return False


# --------------------------------------------------------------------------------------------------
# The two phases
# --------------------------------------------------------------------------------------------------


class RankingPublication:
    """Stage, apply and recover rankings in ``ranking_publications`` (mixed into the store)."""

    if TYPE_CHECKING:  # provided by WarningStore

        def _tx(self, write: bool) -> AbstractContextManager[Connection]: ...

        def _replace_date(
            self, conn: Connection, day: str, scores: list[dict[str, Any]], info: str
        ) -> dict[str, int]: ...

    def prepare(self, date: str, warnings: pd.DataFrame, run_info: dict[str, Any], folder: Path, target: Path) -> str:
        """Stage a ranking as ``pending``: stored, but no reader sees it until its folder is published.

        ``folder`` is the staged (hidden, complete) output folder and ``target`` the symlink
        ``out_root/<date>`` that will point at it. The warnings are validated exactly as by
        :meth:`replace_date` and kept as one JSON text until :meth:`commit` applies them. Returns the
        attempt id (the staged folder's name).
        """
        day = _check_date(date)
        scores = _rows_of(warnings)
        if not isinstance(run_info, Mapping):
            raise WarningStoreError(f"run_info must be a dict of provenance, got {type(run_info).__name__}")
        info = _jsonable(dict(run_info), "run_info")
        folder_abs, target_abs = os.path.abspath(folder), os.path.abspath(target)
        attempt = Path(folder_abs).name
        now = _now()
        try:
            with self._tx(write=True) as conn:
                conn.execute(
                    insert(ranking_publications).values(
                        attempt=attempt,
                        date=day,
                        ranking_id=str(info.get("ranking_id") or ""),
                        state="pending",
                        folder=folder_abs,
                        target=target_abs,
                        writer=_writer_token(),
                        info=_dumps(info),
                        rows=_dumps(scores),
                        counts=None,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except DBAPIError as exc:
            raise WarningStoreError(
                f"staging the ranking of {day} failed and nothing was written: {_first_line(exc)}; re-run it"
            ) from None
        return attempt

    def commit(self, attempt: str) -> dict[str, int]:
        """Apply a pending ranking whose folder is now the published one; returns the counts of :meth:`replace_date`.

        Idempotent: when a reader already rolled it forward, the counts recorded then are returned.
        When its folder is not (or no longer) the visible one, the attempt is discarded and a
        :class:`WarningStoreError` says so: the files and the database both keep the other ranking.
        """
        row = self._publication(attempt)
        if row is None:
            raise WarningStoreError(f"no staged ranking {attempt!r}; stage it with prepare() first")
        verdict = "published" if _is_visible(row.folder, row.target) else "discarded"
        state, counts = self._finish(attempt, verdict)
        if state != "published":
            raise WarningStoreError(
                f"the ranking of {row.date} staged as {attempt} is not the published folder of that date "
                "(another run published after it); its warnings were not applied"
            )
        return counts

    def recover(self) -> dict[str, list[str]]:
        """Finish what killed rankings left: roll forward a published folder's warnings, drop the others.

        A pending ranking whose folder is what readers of ``out_root/<date>`` see is applied; one
        whose writer died (same host, process gone) before publishing is discarded. Rankings still
        being written by a live job are left alone. Every reader calls this first, so no reader
        sees files and warnings of different rankings. Returns the attempts by new state.
        """
        done: dict[str, list[str]] = {"published": [], "discarded": []}
        pending = ranking_publications.c
        with self._tx(write=False) as conn:
            rows = conn.execute(
                select(pending.attempt, pending.folder, pending.target, pending.writer)
                .where(pending.state == "pending")
                .order_by(pending.created_at, pending.attempt)
            ).all()
        for row in rows:
            if _is_visible(row.folder, row.target):
                verdict = "published"
            elif _writer_gone(row.writer):
                verdict = "discarded"
            else:
                continue
            state, _ = self._finish(row.attempt, verdict)
            if state in done:
                done[state].append(row.attempt)
        return done

    def publications(self, date: str) -> list[dict[str, Any]]:
        """The attempts at ranking ``date``, oldest first: attempt, ranking_id, state, counts (for audits and tests)."""
        day = _check_date(date)
        pub = ranking_publications.c
        with self._tx(write=False) as conn:
            rows = conn.execute(
                select(pub.attempt, pub.ranking_id, pub.state, pub.counts, pub.created_at)
                .where(pub.date == day)
                .order_by(pub.created_at, pub.attempt)
            ).all()
        return [
            {
                "attempt": r.attempt,
                "ranking_id": r.ranking_id,
                "state": r.state,
                "counts": json.loads(r.counts) if r.counts else None,
                "created_at": _iso(r.created_at),
            }
            for r in rows
        ]

    def _publication(self, attempt: str) -> Any:
        pub = ranking_publications.c
        with self._tx(write=False) as conn:
            return conn.execute(
                select(pub.date, pub.folder, pub.target, pub.state).where(pub.attempt == attempt)
            ).first()

    def _finish(self, attempt: str, verdict: str) -> tuple[str, dict[str, int]]:
        """Move one pending attempt to ``verdict`` in one transaction; returns its final state and counts.

        The row is locked and its state re-read inside the transaction, so the job and a reader
        racing to roll the same attempt forward apply it once.
        """
        pub = ranking_publications.c
        try:
            with self._tx(write=True) as conn:
                row = conn.execute(
                    select(pub.date, pub.state, pub.info, pub.rows, pub.counts)
                    .where(pub.attempt == attempt)
                    .with_for_update()
                ).first()
                if row is None:
                    raise WarningStoreError(f"no staged ranking {attempt!r}")
                if row.state != "pending":
                    return row.state, json.loads(row.counts) if row.counts else {}
                counts: dict[str, int] = {}
                if verdict == "published":
                    counts = self._replace_date(conn, row.date, json.loads(row.rows or "[]"), row.info)
                conn.execute(
                    update(ranking_publications)
                    .where(pub.attempt == attempt)
                    .values(
                        state=verdict,
                        rows=None,
                        counts=_dumps(counts) if verdict == "published" else None,
                        updated_at=_now(),
                    )
                )
                return verdict, counts
        except DBAPIError as exc:
            raise WarningStoreError(
                f"finishing the staged ranking {attempt} failed and nothing was changed: {_first_line(exc)}; "
                "the next reader or ranking retries it"
            ) from None
