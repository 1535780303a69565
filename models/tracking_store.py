"""A local MLflow store (SQLite + artifact folder) that survives being copied or moved.

MLflow 3.17 writes absolute paths into its database: the experiment's artifact
location, every run's artifact URI, every logged model's location and every
model version's storage location. Move ``var/`` and each of them points at a
folder that no longer exists. :func:`relocate` keeps, in a table of the same
database (:data:`STORE_TABLE`), the folder those paths were written for; when
``mlflow.db`` is opened from another folder it rewrites every stored path
under the old folder to the new one in one transaction and moves the marker.
Paths outside the folder (the ``Default`` experiment's ``./mlruns``) are left
alone. ``BEGIN IMMEDIATE`` makes two processes that open a moved store at
once rewrite it once. After the first call per process a store costs nothing.

The alternatives do not fit a store without a server: ``mlflow-artifacts:``
URIs resolve only through a tracking server that proxies artifacts, and a
relative artifact location is made absolute against the current directory
when MLflow creates the experiment. See docs/registry.md ("Moving the store").
"""

from __future__ import annotations

import sqlite3
from pathlib import Path, PurePosixPath

#: The table (in the store's own database) that remembers which folder the stored paths were written for.
STORE_TABLE = "yujing_store"
#: Every column where MLflow 3.17 keeps an absolute artifact path of a local store.
PATH_COLUMNS: tuple[tuple[str, str], ...] = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
)
_opened: set[str] = set()


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (resolved), else None."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return Path(tracking_uri.removeprefix("sqlite:///")).resolve()


def recorded_root(con: sqlite3.Connection, here: str, experiment: str, artifact_dir: str) -> str:
    """The folder the stored paths were written for: the marker, else (older stores) inferred, else ``here``.

    A store made before the marker has its ``experiment``'s artifact location at
    ``<folder>/<artifact_dir>`` (``models.registry.default_artifact_root``): that folder is where it was made.
    """
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if STORE_TABLE in tables:
        row = con.execute(f"SELECT value FROM {STORE_TABLE} WHERE key = 'root'").fetchone()
        if row is not None:
            return str(row[0])
    found = con.execute("SELECT artifact_location FROM experiments WHERE name = ?", (experiment,)).fetchone()
    location = str(found[0]).removeprefix("file://") if found and found[0] else ""
    if location.startswith("/") and PurePosixPath(location).name == artifact_dir:
        return str(PurePosixPath(location).parent)
    return here


def _rewrite(con: sqlite3.Connection, tables: set[str], old: str, new: str) -> None:
    """Every stored path equal to ``old`` or under ``old/`` (plain or ``file://``) now starts with ``new``."""
    for table, column in PATH_COLUMNS:
        if table not in tables:
            continue
        for before, after in ((old, new), (f"file://{old}", f"file://{new}")):
            con.execute(
                f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                f"WHERE {column} = ? OR substr({column}, 1, ?) = ?",
                (after, len(before) + 1, before, len(before) + 1, before + "/"),
            )


def relocate(tracking_uri: str, experiment: str, artifact_dir: str) -> bool:
    """Point a SQLite store's stored paths at the folder its database is in now; True if anything moved.

    Other URIs (a tracking server, Postgres), a database that does not exist yet and
    one without MLflow's tables are left alone.
    """
    db = sqlite_path(tracking_uri)
    if db is None or str(db) in _opened or not db.is_file():
        return False
    here = str(db.parent)
    con = sqlite3.connect(db, timeout=60, isolation_level=None)
    moved = False
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "experiments" not in tables:  # MLflow has not made its tables yet: nothing is stored
            return False
        if STORE_TABLE in tables and recorded_root(con, here, experiment, artifact_dir) == here:
            _opened.add(str(db))  # the usual case: one read
            return False
        con.execute("BEGIN IMMEDIATE")  # one writer; re-read under the lock (another process may have moved it)
        con.execute(f"CREATE TABLE IF NOT EXISTS {STORE_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        old = recorded_root(con, here, experiment, artifact_dir)
        if old != here:
            _rewrite(con, tables, old, here)
            moved = True
        con.execute(f"INSERT OR REPLACE INTO {STORE_TABLE} (key, value) VALUES ('root', ?)", (here,))
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise
    finally:
        con.close()
    _opened.add(str(db))
    return moved
