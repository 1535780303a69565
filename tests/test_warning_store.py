"""The warnings database: idempotent, atomic daily rankings and the forward-only closed loop.

Every test runs on SQLite and, when ``YUJING_TEST_POSTGRES_URL`` is set (``eval "$(.ci/postgres.sh)"``),
on PostgreSQL too, each PostgreSQL test in its own throw-away schema.
"""

from __future__ import annotations

import math
import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, insert, make_url, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.schema import CreateIndex, CreateTable

import models.warning_store as ws
from models.warning_store import OUTCOMES, STATUSES, WarningStore, WarningStoreError
from models.warning_tables import outcome_check

PG_URL = os.environ.get("YUJING_TEST_POSTGRES_URL")
PG_SKIP = (
    "YUJING_TEST_POSTGRES_URL is not set, so the PostgreSQL variant is skipped; "
    'run eval "$(.ci/postgres.sh)" (root, Debian) to start a local PostgreSQL and set it'
)
ID_NUMBER = "150502198803154321"
PHONE = "13912345678"
D1, D2, D3 = "2024-04-10", "2024-04-11", "2024-04-12"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(not PG_URL, reason=PG_SKIP))])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: a SQLite file in a not-yet-existing folder, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'var' / 'warnings.db'}"
        return
    assert PG_URL
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def store(db_url: str) -> Iterator[WarningStore]:
    s = WarningStore(db_url)
    yield s
    s.dispose()


def ranking(n: int = 6, stations: int = 2, county: str = "150502", **overrides: Any) -> pd.DataFrame:
    """A ranking of ``n`` households spread over ``stations`` stations, as ``yujing rank`` hands it over."""
    levels = ["red", "orange", "yellow", "blue"]
    station = [f"S{(i % stations) + 1:03d}" for i in range(n)]
    frame = pd.DataFrame(
        {
            "household_id": [f"H{i:05d}" for i in range(n)],
            "station_id": station,
            "county_code": [county] * n,
            "level": [levels[i % 4] for i in range(n)],
            "probability": [round(0.9 / (1 + i), 4) for i in range(n)],
            "rank_in_station": [i // stations + 1 for i in range(n)],
            "category": ["family" if i % 2 else "neighbour" for i in range(n)],
            "engine": ["model"] * n,
            "model_version": ["7"] * n,
            "reasons": [{"model": ["酒后", "反复报警"], "rules": ["动手"], "terms": ["打", f"t{i}"]} for i in range(n)],
        }
    )
    for column, value in overrides.items():
        frame[column] = value
    return frame


RUN_INFO = {"engine": "model", "model_version": "7", "households_scored": np.int64(812), "params": {"top": 50}}


def by_household(store: WarningStore, day: str, active_only: bool = False) -> dict[str, dict[str, Any]]:
    return {w["household_id"]: w for w in store.warnings_for(day, active_only=active_only)}


def zero(**counts: int) -> dict[str, int]:
    out = {"inserted": 0, "updated": 0, "unchanged": 0, "withdrawn": 0, "deleted": 0}
    out.update(counts)
    return out


# --------------------------------------------------------------------------------------------------
# replace_date
# --------------------------------------------------------------------------------------------------


def test_first_run_inserts_pushed_warnings_with_one_event_each(store: WarningStore) -> None:
    frame = ranking(6)
    frame.loc[5, ["probability", "engine", "model_version", "category"]] = [np.nan, "rules", None, None]
    assert store.replace_date(D1, frame, RUN_INFO) == zero(inserted=6)

    rows = by_household(store, D1)
    assert sorted(rows) == [f"H{i:05d}" for i in range(6)]
    assert {w["status"] for w in rows.values()} == {"pushed"}
    assert all(w["active"] and w["outcome"] is None for w in rows.values())
    assert rows["H00000"]["probability"] == pytest.approx(0.9)
    assert rows["H00005"]["probability"] is None and rows["H00005"]["engine"] == "rules"
    assert rows["H00005"]["model_version"] is None and rows["H00005"]["category"] is None
    assert rows["H00003"]["reasons"] == {"model": ["酒后", "反复报警"], "rules": ["动手"], "terms": ["打", "t3"]}
    assert rows["H00000"]["created_at"].endswith("+00:00")  # UTC ISO strings on both backends
    for w in rows.values():
        (event,) = store.history(w["id"])
        assert (event["from_status"], event["to_status"], event["actor"]) == (None, "pushed", "yujing-rank")

    info = store.run_info(D1)
    assert info is not None and info["warning_count"] == 6
    assert info["info"] == {"engine": "model", "model_version": "7", "households_scored": 812, "params": {"top": 50}}
    assert store.run_info(D2) is None


def test_identical_rerun_changes_no_row(store: WarningStore) -> None:
    frame = ranking(8)
    frame.loc[2, "probability"] = np.nan
    store.replace_date(D1, frame, RUN_INFO)
    before = by_household(store, D1)
    run_before = store.run_info(D1)

    assert store.replace_date(D1, frame.copy(), dict(RUN_INFO)) == zero(unchanged=8)
    assert by_household(store, D1) == before  # updated_at included: not a single row was touched
    assert store.run_info(D1) == run_before


def test_rerun_updates_only_changed_rows_and_keeps_their_status(store: WarningStore) -> None:
    store.replace_date(D1, ranking(6), RUN_INFO)
    before = by_household(store, D1)
    acked = store.set_status(before["H00001"]["id"], "acknowledged", "officer-1")

    frame = ranking(6)
    frame.loc[1, "level"] = "red"  # the acknowledged household got worse
    frame.at[4, "reasons"] = {"model": ["持械"], "rules": [], "terms": []}
    assert store.replace_date(D1, frame, {**RUN_INFO, "model_version": "8"}) == zero(updated=2, unchanged=4)

    after = by_household(store, D1)
    assert after["H00001"]["level"] == "red"
    assert after["H00001"]["status"] == "acknowledged"  # a station's acknowledgement survives the re-run
    assert after["H00001"]["status_at"] == acked["status_at"]
    assert after["H00004"]["reasons"] == {"model": ["持械"], "rules": [], "terms": []}
    changed = {h for h in after if after[h]["updated_at"] != before[h]["updated_at"]}
    assert changed == {"H00001", "H00004"}
    assert [e["to_status"] for e in store.history(after["H00001"]["id"])] == ["pushed", "acknowledged"]
    assert store.run_info(D1)["info"]["model_version"] == "8"  # type: ignore[index]


def test_dropped_households_are_deleted_if_pushed_and_withdrawn_otherwise(store: WarningStore) -> None:
    store.replace_date(D1, ranking(6), RUN_INFO)
    before = by_household(store, D1)
    store.set_status(before["H00005"]["id"], "handled", "officer-2")
    top_id = max(w["id"] for w in before.values())

    kept = ranking(6).iloc[:4]  # H00004 (still pushed) and H00005 (handled) drop out
    assert store.replace_date(D1, kept, RUN_INFO) == zero(unchanged=4, withdrawn=1, deleted=1)
    assert store.get(before["H00004"]["id"]) is None
    assert store.history(before["H00004"]["id"]) == []  # its events went with it
    withdrawn = store.get(before["H00005"]["id"])
    assert withdrawn is not None and withdrawn["active"] is False and withdrawn["status"] == "handled"
    assert sorted(by_household(store, D1, active_only=True)) == ["H00000", "H00001", "H00002", "H00003"]
    assert len(store.warnings_for(D1, active_only=False)) == 5
    assert store.run_info(D1)["warning_count"] == 4  # type: ignore[index]

    # Dropping them again changes nothing; bringing them back re-activates and re-inserts.
    assert store.replace_date(D1, kept, RUN_INFO) == zero(unchanged=4)
    assert store.replace_date(D1, ranking(6), RUN_INFO) == zero(inserted=1, updated=1, unchanged=4)
    back = by_household(store, D1)
    assert back["H00005"]["id"] == before["H00005"]["id"] and back["H00005"]["active"] is True
    assert back["H00005"]["status"] == "handled"
    assert back["H00004"]["id"] > top_id  # a deleted warning's id is never handed out again


def test_large_ranking_round_trip_in_batches(store: WarningStore) -> None:
    n = 1_300  # more than one IN (...) chunk
    frame = ranking(n, stations=40)
    assert store.replace_date(D1, frame, RUN_INFO) == zero(inserted=n)
    assert store.replace_date(D1, frame, RUN_INFO) == zero(unchanged=n)
    assert len(store.warnings_for(D1, station_id="S007")) == len(frame[frame.station_id == "S007"])
    assert store.replace_date(D1, frame.iloc[:0], RUN_INFO) == zero(deleted=n)
    assert store.warnings_for(D1, active_only=False) == []


def test_failed_run_leaves_everything_as_it_was(store: WarningStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.replace_date(D1, ranking(4), RUN_INFO)
    store.replace_date(D2, ranking(6), RUN_INFO)
    store.set_status(by_household(store, D2)["H00002"]["id"], "acknowledged", "officer-1")
    snapshot = {d: by_household(store, d) for d in (D1, D2)}
    runs = {d: store.run_info(d) for d in (D1, D2)}
    events = {w["id"]: store.history(w["id"]) for d in snapshot for w in snapshot[d].values()}

    # The new ranking of D2 updates two rows, drops H00005 (pushed: deleted) and adds 3 households;
    # the third insert violates the status CHECK constraint after the updates and the delete ran.
    calls = {"n": 0}
    original = ws._new_row

    def broken(score: dict[str, Any], day: str, now: Any) -> dict[str, Any]:
        calls["n"] += 1
        row = original(score, day, now)
        return {**row, "status": "bogus"} if calls["n"] == 3 else row

    monkeypatch.setattr(ws, "_new_row", broken)
    frame = pd.concat([ranking(5), ranking(9).iloc[6:]], ignore_index=True)
    frame.loc[0, "level"] = "blue"
    frame.loc[2, "probability"] = 0.01
    with pytest.raises(WarningStoreError, match=f"ranking of {D2} failed and nothing was written"):
        store.replace_date(D2, frame, {"engine": "rules"})
    assert calls["n"] == 3

    assert {d: by_household(store, d) for d in (D1, D2)} == snapshot
    assert {d: store.run_info(d) for d in (D1, D2)} == runs
    assert {i: store.history(i) for i in events} == events
    monkeypatch.undo()
    assert store.replace_date(D2, frame, {"engine": "rules"}) == zero(inserted=3, updated=2, unchanged=3, deleted=1)


@pytest.mark.parametrize("column", ["household_id", "level", "probability", "reasons", "model_version"])
def test_missing_column_is_named(store: WarningStore, column: str) -> None:
    with pytest.raises(WarningStoreError, match=f"lacks column\\(s\\) {column};"):
        store.replace_date(D1, ranking(3).drop(columns=[column]), RUN_INFO)
    assert store.dates() == []


def test_bad_values_are_refused_before_anything_is_written(store: WarningStore) -> None:
    with pytest.raises(WarningStoreError, match="unknown value\\(s\\) purple; a level is one of red, orange"):
        store.replace_date(D1, ranking(3, level=["red", "purple", "blue"]), RUN_INFO)
    dup = ranking(4)
    dup.loc[3, "household_id"] = dup.loc[1, "household_id"]
    with pytest.raises(WarningStoreError, match="duplicate household for the date at row\\(s\\) 3 \\(1 in all\\)"):
        store.replace_date(D1, dup, RUN_INFO)
    with pytest.raises(WarningStoreError, match="column probability: not a number in \\[0, 1\\] at row\\(s\\) 1 "):
        store.replace_date(D1, ranking(3, probability=[0.5, 1.5, np.nan]), RUN_INFO)
    with pytest.raises(WarningStoreError, match="column rank_in_station: not a positive integer at row\\(s\\) 0"):
        store.replace_date(D1, ranking(3, rank_in_station=[0, 1, 2]), RUN_INFO)
    with pytest.raises(WarningStoreError, match="column engine"):
        store.replace_date(D1, ranking(2, engine=["model", "magic"]), RUN_INFO)
    with pytest.raises(WarningStoreError, match="is not a calendar date; pass it as YYYY-MM-DD"):
        store.replace_date("2024-13-01", ranking(2), RUN_INFO)
    with pytest.raises(WarningStoreError, match=r"run_info\.params\.when holds a value of type object"):
        store.replace_date(D1, ranking(2), {"params": {"when": object()}})
    assert store.dates() == []
    assert store.warnings_for(D1, active_only=False) == []


# --------------------------------------------------------------------------------------------------
# set_status
# --------------------------------------------------------------------------------------------------


def test_status_moves_forward_only(store: WarningStore) -> None:
    store.replace_date(D1, ranking(2), RUN_INFO)
    wid = by_household(store, D1)["H00000"]["id"]

    assert store.set_status(wid, "acknowledged", "officer-1")["status"] == "acknowledged"
    for status in ("acknowledged", "pushed"):
        with pytest.raises(WarningStoreError, match=f"already acknowledged; .* so {status} is not allowed"):
            store.set_status(wid, status, "officer-1")
    done = store.set_status(wid, "fed_back", "officer-1", outcome="escalated")  # skipping handled is allowed
    assert (done["status"], done["outcome"]) == ("fed_back", "escalated")
    with pytest.raises(WarningStoreError, match="already fed_back"):
        store.set_status(wid, "handled", "officer-1")

    moves = [(e["from_status"], e["to_status"], e["actor"], e["outcome"]) for e in store.history(wid)]
    assert moves == [
        (None, "pushed", "yujing-rank", None),
        ("pushed", "acknowledged", "officer-1", None),
        ("acknowledged", "fed_back", "officer-1", "escalated"),
    ]
    other = by_household(store, D1)["H00001"]
    assert other["status"] == "pushed" and len(store.history(other["id"])) == 1


def test_status_errors(store: WarningStore) -> None:
    store.replace_date(D1, ranking(1), RUN_INFO)
    wid = by_household(store, D1)["H00000"]["id"]
    with pytest.raises(WarningStoreError, match="fed_back needs an outcome; pass outcome= one of resolved, ongoing"):
        store.set_status(wid, "fed_back", "officer-1")
    with pytest.raises(WarningStoreError, match=r"fed_back needs an outcome.*\(got fixed\)"):
        store.set_status(wid, "fed_back", "officer-1", outcome="fixed")
    with pytest.raises(WarningStoreError, match="only reported with fed_back, not with handled"):
        store.set_status(wid, "handled", "officer-1", outcome="resolved")
    with pytest.raises(WarningStoreError, match="status closed is unknown; use one of pushed, acknowledged"):
        store.set_status(wid, "closed", "officer-1")
    with pytest.raises(WarningStoreError, match=f"warning {wid + 1000} does not exist"):
        store.set_status(wid + 1000, "handled", "officer-1")
    with pytest.raises(WarningStoreError, match="actor must be a non-empty string"):
        store.set_status(wid, "handled", " ")
    with pytest.raises(WarningStoreError, match="warning id must be an integer, got str"):
        store.set_status(str(wid), "handled", "officer-1")  # type: ignore[arg-type]
    assert store.get(wid)["status"] == "pushed"  # type: ignore[index]
    assert len(store.history(wid)) == 1
    assert OUTCOMES == ("resolved", "ongoing", "escalated", "false_alarm", "referred")
    assert STATUSES == ("pushed", "acknowledged", "handled", "fed_back")


def test_notes_are_masked_and_never_in_errors(store: WarningStore, db_url: str) -> None:
    store.replace_date(D1, ranking(1), RUN_INFO)
    wid = by_household(store, D1)["H00000"]["id"]
    note = f"当事人身份证{ID_NUMBER}，电话{PHONE}，已上门调解"

    wrong_calls = (
        {"status": "pushed"},
        {"status": "fed_back"},
        {"status": "fed_back", "outcome": note},  # the note passed where the outcome belongs
        {"status": note},
    )
    for kwargs in wrong_calls:
        with pytest.raises(WarningStoreError) as err:
            store.set_status(wid, actor="officer-1", note=note, **kwargs)  # type: ignore[arg-type]
        assert ID_NUMBER not in str(err.value) and PHONE not in str(err.value)
        assert "已上门调解" not in str(err.value)

    store.set_status(wid, "handled", "officer-1", note=note)
    event = store.history(wid)[-1]
    assert event["note"] == "当事人身份证<ID>，电话<PHONE>，已上门调解"

    # Nowhere in the database, whatever table or column.
    engine = create_engine(db_url)
    with engine.connect() as conn:
        for table in ("warnings", "warning_events", "ranking_runs"):
            for row in conn.execute(text(f"SELECT * FROM {table}")):
                flat = " ".join(str(v) for v in row)
                assert ID_NUMBER not in flat and PHONE not in flat
    engine.dispose()
    if db_url.startswith("sqlite"):  # and not in the file or its write-ahead log either
        path = Path(make_url(db_url).database or "")
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        assert ID_NUMBER.encode() not in raw and PHONE.encode() not in raw


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


def test_filters_and_order(store: WarningStore) -> None:
    frame = pd.concat([ranking(8, stations=2), ranking(4, stations=1, county="150521")], ignore_index=True)
    frame.loc[8:, "household_id"] = [f"K{i}" for i in range(4)]
    frame.loc[8:, "station_id"] = "S900"
    store.replace_date(D1, frame, RUN_INFO)

    s1 = store.warnings_for(D1, station_id="S001")
    assert [w["household_id"] for w in s1] == ["H00000", "H00002", "H00004", "H00006"]
    assert [w["rank_in_station"] for w in s1] == [1, 2, 3, 4]
    assert [w["household_id"] for w in store.warnings_for(D1, county_code="150521")] == ["K0", "K1", "K2", "K3"]
    assert len(store.warnings_for(D1, county_code="150502")) == 8
    red = store.warnings_for(D1, level="red")
    assert sorted(w["household_id"] for w in red) == ["H00000", "H00004", "K0"]
    assert [w["household_id"] for w in store.warnings_for(D1, station_id="S002", level="orange")] == [
        "H00001",
        "H00005",
    ]
    assert store.warnings_for(D1, station_id="S404") == []
    assert store.warnings_for(D2) == []
    with pytest.raises(WarningStoreError, match="level green is unknown"):
        store.warnings_for(D1, level="green")


def test_dates_newest_first(store: WarningStore) -> None:
    assert store.dates() == []
    for day in (D2, D3, D1):
        store.replace_date(day, ranking(2), RUN_INFO)
    store.replace_date(D2, ranking(2), RUN_INFO)
    assert store.dates() == [D3, D2, D1]


def test_latest_for_household(store: WarningStore) -> None:
    for day in (D1, D2, D3):
        store.replace_date(day, ranking(3), RUN_INFO)
    assert store.latest_for_household("H00001")["date"] == D3  # type: ignore[index]

    newest = by_household(store, D3)["H00001"]
    store.set_status(newest["id"], "acknowledged", "officer-1")
    store.replace_date(D3, ranking(3).iloc[[0, 2]], RUN_INFO)  # withdrawn on D3 (kept, inactive)
    latest = store.latest_for_household("H00001")
    assert latest is not None and latest["date"] == D2 and latest["active"] is True
    assert store.latest_for_household("H99999") is None


# --------------------------------------------------------------------------------------------------
# Connection handling
# --------------------------------------------------------------------------------------------------


def test_sqlite_file_folder_wal_and_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "warnings.db"
    store = WarningStore(f"sqlite:///{path}")
    try:
        assert path.exists()
        assert store.url_for_display == f"sqlite:///{path}"
        with store._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        store.dispose()
    again = WarningStore(f"sqlite:///{path}")  # tables already there: opening again is fine
    assert again.dates() == []
    again.dispose()


def test_unreachable_postgres_error_hides_the_password() -> None:
    with pytest.raises(WarningStoreError) as err:
        WarningStore("postgresql+psycopg://someone:s3cr3t-pw@127.0.0.1:1/nowhere?connect_timeout=2")
    message = str(err.value)
    assert "s3cr3t-pw" not in message
    assert "postgresql+psycopg://someone:***@127.0.0.1:1/nowhere" in message
    assert "check that the server runs" in message
    with pytest.raises(WarningStoreError, match="backend 'mysql' is not supported"):
        WarningStore("mysql://u:p@localhost/db")


def test_url_for_display_masks_password(store: WarningStore, db_url: str) -> None:
    password = make_url(db_url).password
    shown = store.url_for_display
    if password:
        assert f":{password}@" not in shown and ":***@" in shown
    assert shown.startswith(("sqlite:///", "postgresql+psycopg://"))


def test_concurrent_writers_queue_instead_of_failing(db_url: str) -> None:
    WarningStore(db_url).dispose()  # tables exist before the writers race
    stores = [WarningStore(db_url) for _ in range(3)]
    barrier = threading.Barrier(len(stores))
    results: dict[str, Any] = {}

    def write(i: int, s: WarningStore) -> None:
        barrier.wait()
        try:
            results[f"2024-05-0{i + 1}"] = s.replace_date(f"2024-05-0{i + 1}", ranking(300, stations=5), RUN_INFO)
        except Exception as exc:  # reported below, with the date
            results[f"2024-05-0{i + 1}"] = exc

    threads = [threading.Thread(target=write, args=(i, s)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert results == {f"2024-05-0{i}": zero(inserted=300) for i in (1, 2, 3)}
        assert stores[0].dates() == ["2024-05-03", "2024-05-02", "2024-05-01"]
    finally:
        for s in stores:
            s.dispose()


def test_probability_round_trips_exactly(store: WarningStore) -> None:
    probs = [1 / 3, 0.1 + 0.2, 5e-324, 1.0, math.nextafter(0.5, 1.0)]
    frame = ranking(5, probability=probs)
    store.replace_date(D1, frame, RUN_INFO)
    assert [w["probability"] for w in store.warnings_for(D1, station_id="S001")] == probs[0::2]
    assert store.replace_date(D1, frame, RUN_INFO) == zero(unchanged=5)


def test_concurrent_reruns_of_one_date_serialise(db_url: str) -> None:
    first = WarningStore(db_url)
    # D1 holds 300 warnings, 3 of them for households of the new ranking. The run row (info, count)
    # does not change, so only the lock on it keeps the two re-runs below from both inserting.
    before = ranking(300, stations=5)
    before.loc[3:, "household_id"] = [f"X{i:05d}" for i in range(297)]
    first.replace_date(D1, before, RUN_INFO)
    stores = [first, WarningStore(db_url)]
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def write(s: WarningStore) -> None:
        barrier.wait()
        try:
            results.append(s.replace_date(D1, ranking(300, stations=5), RUN_INFO))
        except Exception as exc:  # reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=write, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        # One of them replaced the 297 households; the other found everything in place.
        assert sorted(results, key=lambda r: str(r)) == [
            zero(inserted=0, unchanged=300),
            zero(inserted=297, unchanged=3, deleted=297),
        ]
        assert len(first.warnings_for(D1)) == 300
        assert all(len(first.history(w["id"])) == 1 for w in first.warnings_for(D1, station_id="S001"))
    finally:
        for s in stores:
            s.dispose()


# --------------------------------------------------------------------------------------------------
# Two-phase publication: pending until the folder is published (docs/ranking.md#crash-consistency)
# --------------------------------------------------------------------------------------------------


def _folder(root: Path, name: str) -> Path:
    """A staged output folder (only its manifest matters to the store)."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text("{}", encoding="utf-8")
    return folder


def _show(target: Path, folder: Path) -> None:
    """Point ``target`` at ``folder`` the way pipelines/outputs.py publishes: one atomic symlink swap."""
    link = target.with_name(f".link-{folder.name}")
    link.symlink_to(folder.name)
    os.replace(link, target)


def _set_writer(db_url: str, attempt: str, writer: str) -> None:
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            ws.ranking_publications.update().where(ws.ranking_publications.c.attempt == attempt).values(writer=writer)
        )
    engine.dispose()


def test_a_pending_ranking_is_invisible_until_its_folder_is_published(store: WarningStore, tmp_path: Path) -> None:
    store.replace_date(D1, ranking(4), {**RUN_INFO, "ranking_id": "old"})
    old, new = _folder(tmp_path, ".old"), _folder(tmp_path, ".new")
    target = tmp_path / D1
    _show(target, old)
    before = by_household(store, D1)

    attempt = store.prepare(D1, ranking(6), {**RUN_INFO, "ranking_id": "new"}, new, target)
    assert attempt == ".new"
    assert by_household(store, D1) == before  # our own writer is alive: the pending ranking stays invisible
    assert store.run_info(D1)["info"]["ranking_id"] == "old"
    assert [p["state"] for p in store.publications(D1)] == ["pending"]

    _show(target, new)  # the commit point: from now on every reader gets the new rows
    assert sorted(by_household(store, D1)) == [f"H{i:05d}" for i in range(6)]
    assert store.run_info(D1)["info"]["ranking_id"] == "new"
    (publication,) = store.publications(D1)
    assert publication["state"] == "published" and publication["counts"] == zero(inserted=2, unchanged=4)
    assert store.commit(attempt) == zero(inserted=2, unchanged=4)  # the job's own commit finds it done: same counts


def test_a_dead_writers_unpublished_ranking_is_dropped(store: WarningStore, db_url: str, tmp_path: Path) -> None:
    store.replace_date(D1, ranking(4), {**RUN_INFO, "ranking_id": "old"})
    target = tmp_path / D1
    _show(target, _folder(tmp_path, ".old"))
    attempt = store.prepare(D1, ranking(6), {**RUN_INFO, "ranking_id": "new"}, _folder(tmp_path, ".new"), target)

    _set_writer(db_url, attempt, f"{ws._host()}:999999999:1")  # on this host, and that process is gone
    assert store.recover() == {"published": [], "discarded": [attempt]}
    assert sorted(by_household(store, D1)) == [f"H{i:05d}" for i in range(4)]
    assert store.publications(D1)[0]["state"] == "discarded"
    _show(target, tmp_path / ".new")  # too late: a discarded ranking never comes back
    assert store.recover() == {"published": [], "discarded": []}
    assert store.run_info(D1)["info"]["ranking_id"] == "old"


def test_a_writer_on_another_host_is_never_judged_dead(store: WarningStore, db_url: str, tmp_path: Path) -> None:
    target = tmp_path / D1
    attempt = store.prepare(D1, ranking(3), RUN_INFO, _folder(tmp_path, ".new"), target)
    _set_writer(db_url, attempt, "0therhst:1:1")
    assert store.recover() == {"published": [], "discarded": []}
    assert store.warnings_for(D1) == [] and store.publications(D1)[0]["state"] == "pending"


def test_commit_of_a_superseded_attempt_applies_nothing(store: WarningStore, tmp_path: Path) -> None:
    target = tmp_path / D1
    first = store.prepare(D1, ranking(3), {"ranking_id": "a"}, _folder(tmp_path, ".a"), target)
    second = store.prepare(D1, ranking(5), {"ranking_id": "b"}, _folder(tmp_path, ".b"), target)
    _show(target, tmp_path / ".a")
    _show(target, tmp_path / ".b")  # a second run published after the first
    with pytest.raises(WarningStoreError, match="not the published folder"):
        store.commit(first)
    assert store.commit(second) == zero(inserted=5)
    assert [p["state"] for p in store.publications(D1)] == ["discarded", "published"]


def test_rolling_forward_keeps_what_stations_did(store: WarningStore, tmp_path: Path) -> None:
    store.replace_date(D1, ranking(6), RUN_INFO)
    rows = by_household(store, D1)
    store.set_status(rows["H00005"]["id"], "acknowledged", actor="S002-值班")
    store.set_status(rows["H00004"]["id"], "fed_back", actor="S001-值班", note="已调解", outcome="resolved")
    target = tmp_path / D1
    attempt = store.prepare(D1, ranking(4), RUN_INFO, _folder(tmp_path, ".new"), target)
    store.set_status(rows["H00005"]["id"], "handled", actor="S002-值班")  # feedback while the ranking is pending
    _show(target, tmp_path / ".new")
    after = by_household(store, D1)  # the reader rolls the ranking forward first
    assert store.publications(D1)[0]["state"] == "published" and store.commit(attempt)["withdrawn"] == 2
    assert (after["H00005"]["status"], after["H00005"]["active"]) == ("handled", False)
    assert (after["H00004"]["status"], after["H00004"]["outcome"], after["H00004"]["active"]) == (
        "fed_back",
        "resolved",
        False,
    )
    assert [e["to_status"] for e in store.history(after["H00005"]["id"])] == ["pushed", "acknowledged", "handled"]


def test_prepare_checks_the_rows_first(store: WarningStore, tmp_path: Path) -> None:
    with pytest.raises(WarningStoreError, match="column level"):
        store.prepare(D1, ranking(3, level="purple"), RUN_INFO, _folder(tmp_path, ".x"), tmp_path / D1)
    assert store.publications(D1) == []


@pytest.mark.parametrize("bad", [0, -1, 2**63, 10**30])
def test_out_of_range_ids_are_refused_before_the_driver(store: WarningStore, bad: int) -> None:
    for call in (store.get, store.history, lambda i: store.set_status(i, "handled", "officer-1")):
        with pytest.raises(WarningStoreError, match="warning id must be between 1 and"):
            call(bad)


def test_an_id_beyond_the_engines_integer_column_is_refused(store: WarningStore) -> None:
    """PostgreSQL's INTEGER key stops at 2**31 - 1, SQLite's at 2**63 - 1: past it, the store's own error."""
    limit = 2**31 - 1 if store._engine.dialect.name == "postgresql" else 2**63 - 1
    assert store.get(limit) is None
    with pytest.raises(WarningStoreError, match="warning id must be between 1 and"):
        store.get(limit + 1)


# --------------------------------------------------------------------------------------------------
# Supervision (督办), the loop's reads, and the outcome "referred" on an old database
# --------------------------------------------------------------------------------------------------

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
NAME_NOTE = f"户主王建国身份证{ID_NUMBER}电话{PHONE}，请今日内上门"


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> dict[str, datetime]:
    """The store's clock, moved by the test: created_at, status_at, event and supervision times."""
    now = {"t": T0}
    monkeypatch.setattr(ws, "_now", lambda: now["t"])
    return now


def test_supervise_records_a_masked_comment_and_a_utc_deadline(
    store: WarningStore, db_url: str, clock: dict[str, datetime]
) -> None:
    store.replace_date(D1, ranking(2), RUN_INFO)
    wid = by_household(store, D1)["H00000"]["id"]
    clock["t"] = at(30)
    shanghai = timezone(timedelta(hours=8))
    record = store.supervise(wid, "150502-督办", NAME_NOTE, at(48).astimezone(shanghai))
    assert record == {
        "id": record["id"],
        "warning_id": wid,
        "actor": "150502-督办",
        "comment": "户主<NAME>身份证<ID>电话<PHONE>，请今日内上门",
        "new_deadline": "2025-03-03T08:00:00+00:00",  # stored as UTC, whatever zone it came in
        "at": "2025-03-02T14:00:00+00:00",
    }
    assert store.get(wid)["updated_at"] == record["at"]  # type: ignore[index]
    assert store.get(wid)["status"] == "pushed"  # type: ignore[index]  # supervision is not a status move
    clock["t"] = at(31)
    second = store.supervise(wid, "150502-督办", "再次督办", at(40))
    assert [s["id"] for s in store.supervisions([wid])] == [record["id"], second["id"]]
    assert store.supervisions([by_household(store, D1)["H00001"]["id"]]) == []
    assert len(store.supervisions()) == 2

    engine = create_engine(db_url)  # the comment's personal data is nowhere in the table
    with engine.connect() as conn:
        flat = " ".join(str(v) for r in conn.execute(text("SELECT * FROM warning_supervisions")) for v in r)
    engine.dispose()
    assert ID_NUMBER not in flat and PHONE not in flat and "王建国" not in flat


def test_supervise_refuses_without_quoting_the_comment(store: WarningStore, clock: dict[str, datetime]) -> None:
    store.replace_date(D1, ranking(3), RUN_INFO)
    rows = by_household(store, D1)
    wid = rows["H00000"]["id"]
    store.set_status(rows["H00001"]["id"], "handled", "S002-值班")
    store.set_status(rows["H00002"]["id"], "acknowledged", "S001-值班")
    store.replace_date(D1, ranking(3).iloc[:2], RUN_INFO)  # H00002 (acknowledged) is withdrawn
    now = clock["t"]
    cases = [
        (dict(warning_id=rows["H00001"]["id"]), "already handled; only an open warning \\(pushed or acknowledged\\)"),
        (dict(warning_id=rows["H00002"]["id"]), "was withdrawn by a re-run"),
        (dict(warning_id=wid + 1000), f"warning {wid + 1000} does not exist"),
        (dict(warning_id="1"), "warning id must be an integer"),
        (dict(actor=" "), "actor must be a non-empty string"),
        (dict(comment=" \n"), "comment is required"),
        (dict(comment=NAME_NOTE * 20), f"comment has {len(NAME_NOTE) * 20} characters, more than 500"),
        (dict(comment=12), "comment must be a string, got int"),
        (dict(new_deadline=datetime(2025, 3, 2, 8)), "new_deadline has no time zone"),
        (dict(new_deadline="2025-03-02T08:00:00+00:00"), "new_deadline must be a datetime, got str"),
        (dict(new_deadline=now), "new_deadline is not in the future"),
        (dict(new_deadline=now - timedelta(hours=1)), "new_deadline is not in the future"),
        (dict(new_deadline=now + timedelta(days=90, seconds=1)), "more than 90 days ahead"),
    ]
    for change, message in cases:
        call = {"warning_id": wid, "actor": "150502-督办", "comment": NAME_NOTE, "new_deadline": now + timedelta(1)}
        with pytest.raises(WarningStoreError, match=message) as err:
            store.supervise(**{**call, **change})
        assert ID_NUMBER not in str(err.value) and PHONE not in str(err.value) and "王建国" not in str(err.value)
        assert "上门" not in str(err.value)
    assert store.supervisions() == []
    assert store.supervise(wid, "a", "x" * 500, now + timedelta(days=90))["comment"] == "x" * 500  # the limits hold
    assert store.supervise(rows["H00002"]["id"] - 2, "a", "y", now + timedelta(1))["warning_id"] == wid


def test_a_supervised_pushed_warning_is_withdrawn_not_deleted_by_a_rerun(
    store: WarningStore, clock: dict[str, datetime]
) -> None:
    store.replace_date(D1, ranking(4), RUN_INFO)
    rows = by_household(store, D1)
    store.supervise(rows["H00003"]["id"], "150502-督办", "请核实", at(10))
    assert store.replace_date(D1, ranking(4).iloc[:2], RUN_INFO) == zero(unchanged=2, withdrawn=1, deleted=1)
    kept = store.get(rows["H00003"]["id"])
    assert kept is not None and kept["active"] is False and kept["status"] == "pushed"
    assert store.get(rows["H00002"]["id"]) is None
    assert len(store.supervisions([rows["H00003"]["id"]])) == 1


def test_events_in_order_by_warning_and_since(store: WarningStore, clock: dict[str, datetime]) -> None:
    store.replace_date(D1, ranking(3), RUN_INFO)
    rows = by_household(store, D1)
    a, b = rows["H00000"]["id"], rows["H00001"]["id"]
    clock["t"] = at(2)
    store.set_status(b, "acknowledged", "S002-值班")
    clock["t"] = at(5)
    store.set_status(a, "fed_back", "S001-值班", note=f"电话{PHONE}", outcome="referred")
    everything = store.events()
    assert len(everything) == 5
    assert [(e["warning_id"], e["to_status"]) for e in everything[-2:]] == [(b, "acknowledged"), (a, "fed_back")]
    assert [e["to_status"] for e in store.events([a])] == ["pushed", "fed_back"]
    assert store.events(pd.Series([a, a])) == store.events({a}) == store.events(np.array([a]))  # any id column
    assert store.events([a])[-1]["note"] == "电话<PHONE>" and store.events([a])[-1]["outcome"] == "referred"
    assert [e["to_status"] for e in store.events(since=at(2))] == ["acknowledged", "fed_back"]  # inclusive
    assert [e["to_status"] for e in store.events([b, b], since=at(2).astimezone(timezone(timedelta(hours=8))))] == [
        "acknowledged"
    ]
    assert store.events([], since=at(6)) == [] and store.events(since=at(6)) == []
    with pytest.raises(WarningStoreError, match="since has no time zone"):
        store.events(since=datetime(2025, 3, 1))
    with pytest.raises(WarningStoreError, match="warning_ids must be a list of integers or None, got int"):
        store.events(a)  # type: ignore[arg-type]
    with pytest.raises(WarningStoreError, match="warning id must be between 1 and"):
        store.supervisions([0])


def test_events_of_many_warnings_in_chunks(store: WarningStore) -> None:
    store.replace_date(D1, ranking(1_100, stations=10), RUN_INFO)
    ids = [w["id"] for w in store.warnings_for(D1)]
    assert {e["warning_id"] for e in store.events(ids)} == set(ids)
    assert len(store.events(ids[:501])) == 501


def test_warnings_between_dates_filters_and_order(store: WarningStore) -> None:
    frame = pd.concat([ranking(4), ranking(2, stations=1, county="150521")], ignore_index=True)
    frame.loc[4:, ["household_id", "station_id"]] = [["K0", "S900"], ["K1", "S900"]]
    for day in (D1, D2, D3):
        store.replace_date(day, frame, RUN_INFO)
    store.set_status(by_household(store, D2)["H00003"]["id"], "acknowledged", "S002-值班")
    store.replace_date(D2, frame.drop(index=3), RUN_INFO)  # withdrawn on D2

    got = store.warnings_between(D1, D2)
    assert [(w["date"], w["household_id"]) for w in got] == [
        (D2, "H00000"),
        (D2, "H00002"),
        (D2, "H00001"),
        (D2, "K0"),
        (D2, "K1"),
        (D1, "H00000"),
        (D1, "H00002"),
        (D1, "H00001"),
        (D1, "H00003"),
        (D1, "K0"),
        (D1, "K1"),
    ]
    assert len(store.warnings_between(D1, D2, active_only=False)) == 12
    on_d2_d3 = store.warnings_between(D2, D3, station_id="S002")  # D3 first; H00003 withdrawn on D2
    assert [(w["date"], w["household_id"]) for w in on_d2_d3] == [(D3, "H00001"), (D3, "H00003"), (D2, "H00001")]
    assert {w["household_id"] for w in store.warnings_between(D1, D3, county_code="150521")} == {"K0", "K1"}
    assert store.warnings_between(D3, D3)[0]["reasons"]["rules"] == ["动手"]
    assert store.warnings_between("2024-01-01", "2024-01-31") == []
    with pytest.raises(WarningStoreError, match=f"first_date {D2} is after last_date {D1}"):
        store.warnings_between(D2, D1)
    with pytest.raises(WarningStoreError, match="is not a calendar date"):
        store.warnings_between("2024-02-30", D1)


def test_household_warnings_carry_their_loop(store: WarningStore, clock: dict[str, datetime]) -> None:
    for day in (D1, D2, D3):
        store.replace_date(day, ranking(3), RUN_INFO)
    rows = {day: by_household(store, day)["H00001"]["id"] for day in (D1, D2, D3)}
    clock["t"] = at(1)
    store.supervise(rows[D2], "150502-督办", "请核实", at(20))
    store.set_status(rows[D2], "handled", "S002-值班", note="已上门")
    store.replace_date(D3, ranking(3).drop(index=1), RUN_INFO)  # pushed on D3: deleted

    timeline = store.household_warnings("H00001")
    assert [(w["date"], w["id"]) for w in timeline] == [(D2, rows[D2]), (D1, rows[D1])]
    assert [e["to_status"] for e in timeline[0]["events"]] == ["pushed", "handled"]
    assert timeline[0]["events"][1]["note"] == "已上门"
    assert [s["comment"] for s in timeline[0]["supervisions"]] == ["请核实"]
    assert timeline[1]["supervisions"] == [] and len(timeline[1]["events"]) == 1
    assert store.household_warnings("H99999") == []
    with pytest.raises(WarningStoreError, match="household_id must be a non-empty string"):
        store.household_warnings("")


def test_loop_frames_read_what_the_loop_needs(store: WarningStore, clock: dict[str, datetime]) -> None:
    from models.loop import TIME_DTYPE, loop_frame

    store.replace_date(D1, ranking(4), RUN_INFO)
    clock["t"] = at(24)
    store.replace_date(D2, ranking(4), RUN_INFO)
    d1 = by_household(store, D1)
    clock["t"] = at(2)
    store.set_status(d1["H00000"]["id"], "acknowledged", "S001-值班", note="已签收")
    clock["t"] = at(5)
    store.set_status(d1["H00000"]["id"], "handled", "S001-值班")
    clock["t"] = at(6)
    store.supervise(d1["H00001"]["id"], "150502-督办", f"电话{PHONE}", at(100))
    store.set_status(d1["H00003"]["id"], "acknowledged", "S002-值班")
    store.replace_date(D1, ranking(4).drop(index=3), RUN_INFO)  # H00003 withdrawn: left out

    warnings, events, supervisions = store.loop_frames(D1, D1)
    assert list(warnings["household_id"]) == ["H00000", "H00001", "H00002"]
    assert "reasons" not in warnings and warnings["active"].all()
    assert list(warnings["status"]) == ["handled", "pushed", "pushed"]
    assert [(e.warning_id, e.to_status) for e in events.itertuples()] == [
        (d1["H00000"]["id"], "acknowledged"),
        (d1["H00000"]["id"], "handled"),
    ]
    assert list(supervisions["warning_id"]) == [d1["H00001"]["id"]]
    assert list(warnings.columns) == [
        "id",
        "date",
        "household_id",
        "station_id",
        "county_code",
        "level",
        "category",
        "status",
        "outcome",
        "active",
        "created_at",
    ]
    assert list(events.columns) == ["id", "warning_id", "to_status", "at"]
    assert list(supervisions.columns) == ["id", "warning_id", "new_deadline", "at"]
    assert supervisions["new_deadline"].tolist() == [pd.Timestamp(at(100))]
    for frame, columns in ((warnings, ("created_at",)), (events, ("at",)), (supervisions, ("at", "new_deadline"))):
        for column in columns:
            assert str(frame[column].dtype) == TIME_DTYPE
    assert warnings["created_at"].tolist() == [pd.Timestamp(T0)] * 3

    loop = loop_frame(warnings, events, supervisions, {"red": 24, "orange": 72, "yellow": 168, "blue": 360}, at(80))
    assert loop["hours_to_acknowledge"].tolist()[0] == 2.0 and loop["hours_to_handle"].tolist()[0] == 5.0
    assert loop["deadline"].tolist()[1] == pd.Timestamp(at(100))  # orange, supervised to 100 h
    assert loop["overdue"].tolist() == [False, False, False]  # H00002 is yellow: 168 h
    assert len(store.loop_frames(D1, D2)[0]) == 7
    assert len(store.loop_frames(D1, D2, station_id="S001")[0]) == 4
    assert len(store.loop_frames(D1, D2, county_code="150521")[0]) == 0
    empty = store.loop_frames("2023-01-01", "2023-02-28")
    assert [len(f) for f in empty] == [0, 0, 0] and str(empty[0]["created_at"].dtype) == TIME_DTYPE


def _old_database(db_url: str) -> None:
    """The warnings table as created before "referred" existed (its CHECK lists four outcomes), with rows."""
    if db_url.startswith("sqlite"):
        Path(make_url(db_url).database or "").parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(db_url)
    old = "outcome IS NULL OR outcome IN ('resolved', 'ongoing', 'escalated', 'false_alarm')"
    table = ws.warnings_table
    ddl = str(CreateTable(table).compile(dialect=engine.dialect))
    assert outcome_check() in ddl
    with engine.begin() as conn:
        conn.execute(text(ddl.replace(outcome_check(), old)))
        for index in table.indexes:
            conn.execute(CreateIndex(index))
        row = {
            "date": D1,
            "household_id": "H1",
            "station_id": "S001",
            "county_code": "150502",
            "level": "red",
            "probability": 0.5,
            "rank_in_station": 1,
            "category": None,
            "engine": "rules",
            "model_version": None,
            "reasons": "{}",
            "status": "fed_back",
            "status_at": T0,
            "outcome": "resolved",
            "active": True,
            "created_at": T0,
            "updated_at": T0,
        }
        conn.execute(insert(table), [row, {**row, "household_id": "H2", "status": "pushed", "outcome": None}])
        with pytest.raises(IntegrityError), conn.begin_nested():
            conn.execute(insert(table), [{**row, "household_id": "H3", "outcome": "referred"}])
    engine.dispose()


def test_an_old_databases_outcome_check_is_widened_on_open(db_url: str) -> None:
    _old_database(db_url)
    store = WarningStore(db_url)  # opening widens the CHECK in place
    try:
        rows = by_household(store, D1)
        assert (rows["H1"]["outcome"], rows["H1"]["created_at"]) == ("resolved", T0.isoformat())
        moved = store.set_status(rows["H2"]["id"], "fed_back", "S001-值班", outcome="referred")
        assert moved["outcome"] == "referred"
        engine = store._engine
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'warnings'").scalar()
                assert outcome_check() in sql and sql.count("ck_warnings_outcome") == 1
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
            with pytest.raises(IntegrityError):  # the check is still there, only wider
                conn.exec_driver_sql("UPDATE warnings SET outcome = 'bogus' WHERE household_id = 'H1'")
    finally:
        store.dispose()
    again = WarningStore(db_url)  # a second open finds nothing to do
    assert by_household(again, D1)["H2"]["outcome"] == "referred"
    again.dispose()


def test_an_old_database_that_could_not_be_widened_says_why(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _old_database(db_url)
    import models.warning_connection as wc

    monkeypatch.setattr(wc, "_widen_outcome_check", lambda engine: None)  # as if the file were read-only
    store = WarningStore(db_url)
    try:
        wid = by_household(store, D1)["H2"]["id"]
        with pytest.raises(WarningStoreError, match=r"outcome check predates the outcome referred.*write access"):
            store.set_status(wid, "fed_back", "S001-值班", outcome="referred")
        assert store.set_status(wid, "fed_back", "S001-值班", outcome="resolved")["outcome"] == "resolved"
    finally:
        store.dispose()


def test_loop_frames_cache_follows_every_write(
    store: WarningStore, db_url: str, clock: dict[str, datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cached period stays equal to a fresh read after every kind of write; only a ranking reads it again."""
    reads = {"n": 0}
    full_read = ws.WarningStore._read_loop

    def counted(self: WarningStore, *args: Any) -> Any:
        reads["n"] += 1
        return full_read(self, *args)

    monkeypatch.setattr(ws.WarningStore, "_read_loop", counted)
    store.replace_date(D1, ranking(6), RUN_INFO)
    store.replace_date(D3, ranking(2), RUN_INFO)  # outside the period read below
    rows = by_household(store, D1)
    scopes = [{}, {"station_id": "S001"}, {"county_code": "150502"}]

    def same() -> None:
        fresh_store = WarningStore(db_url)
        try:
            for scope in scopes:
                pairs = zip(store.loop_frames(D1, D2, **scope), fresh_store.loop_frames(D1, D2, **scope), strict=True)
                for got, fresh in pairs:
                    pd.testing.assert_frame_equal(got, fresh)
        finally:
            fresh_store.dispose()

    same()
    assert reads["n"] == 6  # three scopes read whole by each store
    clock["t"] = at(1)
    store.set_status(rows["H00000"]["id"], "acknowledged", "S001-值班")
    store.supervise(rows["H00001"]["id"], "150502-督办", "请核实", at(30))
    store.set_status(rows["H00002"]["id"], "fed_back", "S001-值班", outcome="referred")
    store.set_status(by_household(store, D3)["H00000"]["id"], "handled", "S001-值班")  # not in the period
    reads["n"] = 0
    same()
    assert reads["n"] == 3  # only the fresh store read whole: the cache took the new rows by id
    store.replace_date(D2, ranking(3), RUN_INFO)  # a new ranking in the period: read again
    store.replace_date(D1, ranking(6).iloc[1:], RUN_INFO)  # H00000 (acknowledged) withdrawn
    reads["n"] = 0
    same()
    assert reads["n"] == 6

    # Callers may change their frames; the cache keeps its own.
    warnings, _, _ = store.loop_frames(D1, D2)
    warnings.loc[0, "status"] = "changed"
    warnings["extra"] = 1
    assert "changed" not in set(store.loop_frames(D1, D2)[0]["status"]) and "extra" not in store.loop_frames(D1, D2)[0]

    # A change behind the store's back (no event, no ranking) shows after the cache's age limit.
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE warnings SET category = 'debt'"))
    engine.dispose()
    assert "debt" not in set(store.loop_frames(D1, D2)[0]["category"])
    later = ws._monotonic() + ws._LOOP_CACHE_SECONDS
    monkeypatch.setattr(ws, "_monotonic", lambda: later)
    assert set(store.loop_frames(D1, D2)[0]["category"]) == {"debt"}
