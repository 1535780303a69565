"""Station assessment (models/assessment.py): periods, the score's documented weights, the rank's tie-breaks.

Loops are built by hand (through models/loop.py) so every number is asserted exactly; the last tests go
through a real store with a fixed clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import models.warning_store as ws
from models.assessment import COLUMNS, WEIGHTS, assessment_for, assessment_period, station_assessment, summary
from models.loop import loop_frame
from models.warning_store import STATUSES, WarningStore

HOURS = {"red": 24, "orange": 72, "yellow": 168, "blue": 360}
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
NO_CALLS = pd.DataFrame(
    {"household_id": pd.Series([], dtype=str), "received_at": pd.Series([], dtype="datetime64[us]")}
)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


class Loop:
    """A hand-built loop: warnings with their events and supervisions, turned into loop_frame's output."""

    def __init__(self) -> None:
        self.warnings: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.supervisions: list[dict[str, Any]] = []

    def add(
        self,
        station: str,
        level: str = "red",
        steps: dict[str, float] | None = None,
        outcome: str | None = None,
        household: str | None = None,
        active: bool = True,
        county: str = "150502",
    ) -> int:
        """A warning pushed at T0; ``steps`` maps a status to the hour it was reached."""
        wid = len(self.warnings) + 1
        steps = steps or {}
        status = max(steps, key=STATUSES.index) if steps else "pushed"
        self.warnings.append(
            {
                "id": wid,
                "household_id": household or f"H{wid:03d}",
                "station_id": station,
                "county_code": county,
                "level": level,
                "status": status,
                "outcome": outcome if status == "fed_back" else None,
                "active": active,
                "created_at": T0,
            }
        )
        self.events += [{"warning_id": wid, "to_status": s, "at": at(h)} for s, h in steps.items()]
        return wid

    def supervise(self, wid: int, new_deadline: float) -> None:
        self.supervisions.append(
            {"id": len(self.supervisions) + 1, "warning_id": wid, "at": at(1), "new_deadline": at(new_deadline)}
        )

    def frame(self, now: datetime) -> pd.DataFrame:
        events = pd.DataFrame(self.events, columns=["warning_id", "to_status", "at"])
        sups = pd.DataFrame(self.supervisions, columns=["id", "warning_id", "at", "new_deadline"])
        return loop_frame(pd.DataFrame(self.warnings), events, sups, HOURS, now)


def row(table: pd.DataFrame, station: str) -> dict[str, Any]:
    (found,) = table[table["station_id"] == station].to_dict("records")
    return found


# --------------------------------------------------------------------------------------------------
# Periods
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "first", "last"),
    [
        (date(2024, 1, 1), date(2024, 1, 1), date(2024, 2, 29)),
        (date(2024, 2, 29), date(2024, 1, 1), date(2024, 2, 29)),  # leap year
        (date(2023, 2, 28), date(2023, 1, 1), date(2023, 2, 28)),
        (date(2024, 3, 1), date(2024, 3, 1), date(2024, 4, 30)),
        (date(2024, 4, 30), date(2024, 3, 1), date(2024, 4, 30)),
        (date(2024, 8, 15), date(2024, 7, 1), date(2024, 8, 31)),
        (date(2024, 12, 31), date(2024, 11, 1), date(2024, 12, 31)),
        (datetime(2024, 6, 30, 23, 59), date(2024, 5, 1), date(2024, 6, 30)),
    ],
)
def test_two_month_periods(day: date, first: date, last: date) -> None:
    assert assessment_period(day) == (first, last)


def test_period_needs_a_date() -> None:
    with pytest.raises(ValueError, match="day must be a date, got str"):
        assessment_period("2024-03-01")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# The score
# --------------------------------------------------------------------------------------------------


def test_weights_add_up_to_100() -> None:
    assert sum(WEIGHTS.values()) == 100


def test_a_station_that_acknowledges_faster_ranks_higher() -> None:
    loop = Loop()
    loop.add("S002", steps={"acknowledged": 12})
    loop.add("S001", steps={"acknowledged": 6})
    table = station_assessment(loop.frame(at(12)), now=at(12))
    assert list(table.columns) == list(COLUMNS)
    assert list(table["station_id"]) == ["S001", "S002"]
    assert list(table["rank"]) == [1, 2]
    # S001: acknowledge 1 - 6/24 = 0.75, handle (not yet: 12 h so far) 1 - 12/24 = 0.5, closure 0,
    # not overdue 1, fed back 0; without repeat calls the weights sum to 90:
    # 100 * (20*0.75 + 20*0.5 + 15*0 + 20*1 + 15*0) / 90 = 50.0; S002: 100 * (10 + 10 + 20) / 90 = 44.4.
    s1, s2 = row(table, "S001"), row(table, "S002")
    assert (s1["acknowledge_speed"], s1["handle_speed"], s1["score"]) == (0.75, 0.5, 50.0)
    assert (s2["acknowledge_speed"], s2["handle_speed"], s2["score"]) == (0.5, 0.5, 44.4)
    assert (s1["median_hours_to_acknowledge"], s2["median_hours_to_acknowledge"]) == (6.0, 12.0)
    assert pd.isna(s1["median_hours_to_handle"]) and pd.isna(s1["repeat_call_rate"])
    assert (s1["warnings"], s1["acknowledged"], s1["closed"], s1["overdue"], s1["fed_back"]) == (1, 1, 0, 0, 0)


def test_each_overdue_warning_costs_20_over_n_points() -> None:
    loop = Loop()
    extended = loop.add("S001")
    loop.add("S001")
    loop.add("S002")
    loop.add("S002")
    loop.supervise(extended, new_deadline=60)  # the county gave S001 until 60 h for one of them
    frame = loop.frame(at(48))  # 48 h: both red warnings are past the policy's 24 h

    with_calls = station_assessment(frame, now=at(48), repeat_calls=NO_CALLS)
    s1, s2 = row(with_calls, "S001"), row(with_calls, "S002")
    assert (s1["overdue"], s2["overdue"]) == (1, 2)
    # Timeliness is judged on the policy's 24 h (the extension does not make S001 timely): both 0.
    assert (s1["acknowledge_speed"], s1["handle_speed"], s2["acknowledge_speed"]) == (0.0, 0.0, 0.0)
    # Only "not overdue" differs: S001 20 * (1 - 1/2) = 10 points, S002 0.
    assert (s1["score"], s2["score"]) == (10.0, 0.0)
    assert (s1["rank"], s2["rank"]) == (1, 2)
    # Without repeat calls the remaining weights (90) are scaled to 100: 10 * 100/90 = 11.1.
    without = station_assessment(frame, now=at(48))
    assert (row(without, "S001")["score"], row(without, "S002")["score"]) == (11.1, 0.0)


def test_a_perfect_station_scores_100_and_a_repeat_call_costs_10() -> None:
    loop = Loop()
    loop.add("S001", steps={"acknowledged": 0, "handled": 0, "fed_back": 0}, outcome="resolved", household="HA")
    loop.add("S002", steps={"acknowledged": 0, "handled": 0, "fed_back": 0}, outcome="resolved", household="HB")
    calls = pd.DataFrame(
        {
            "household_id": ["HB", "HA", "HA"],
            # naive times are local (Asia/Shanghai, UTC+8): HB called 2 h after handling; HA's first call was
            # 6 h *before* handling (14:00 local = 06:00 UTC), its second is after now (ignored).
            "received_at": [
                pd.Timestamp("2025-03-01 18:00"),
                pd.Timestamp("2025-03-01 14:00"),
                pd.Timestamp("2025-03-09"),
            ],
        }
    )
    table = station_assessment(loop.frame(at(8)), now=at(8), repeat_calls=calls)
    s1, s2 = row(table, "S001"), row(table, "S002")
    assert (s1["score"], s1["repeat_calls"], s1["repeat_call_rate"]) == (100.0, 0, 0.0)
    assert (s2["score"], s2["repeat_calls"], s2["repeat_call_rate"]) == (90.0, 1, 1.0)
    assert (s1["closure_rate"], s1["fed_back_share"], s1["median_hours_to_handle"]) == (1.0, 1.0, 0.0)
    # The same calls read as UTC would have made HA's first call a repeat too.
    as_utc = calls.assign(received_at=calls["received_at"].dt.tz_localize("UTC"))
    assert row(station_assessment(loop.frame(at(8)), now=at(8), repeat_calls=as_utc), "S001")["repeat_calls"] == 1


def test_fed_back_share_closure_and_skipped_steps() -> None:
    loop = Loop()
    loop.add("S001", level="yellow", steps={"handled": 84})  # handled at half of 168 h, never acknowledged
    loop.add("S001", level="yellow", steps={"acknowledged": 42, "fed_back": 84}, outcome="false_alarm")
    loop.add("S001", level="yellow", active=False)  # withdrawn: not assessed
    s1 = row(station_assessment(loop.frame(at(100)), now=at(100)), "S001")
    assert (s1["warnings"], s1["acknowledged"], s1["closed"], s1["fed_back"]) == (2, 2, 2, 1)
    assert (s1["closure_rate"], s1["fed_back_share"]) == (1.0, 0.5)
    assert (s1["median_hours_to_acknowledge"], s1["median_hours_to_handle"]) == (63.0, 84.0)
    # acknowledge: (1 - 84/168 + 1 - 42/168) / 2 = 0.625; handle: 0.5; closure 1; overdue 0; fed back 0.5:
    # 100 * (12.5 + 10 + 15 + 20 + 7.5) / 90 = 72.2
    assert (s1["acknowledge_speed"], s1["handle_speed"], s1["score"]) == (0.625, 0.5, 72.2)


def test_waiting_never_scores_better_than_acting() -> None:
    loop = Loop()
    loop.add("S001", steps={"acknowledged": 10})
    loop.add("S002")
    table = station_assessment(loop.frame(at(10)), now=at(10))
    assert row(table, "S001")["acknowledge_speed"] == row(table, "S002")["acknowledge_speed"]
    later = station_assessment(loop.frame(at(20)), now=at(20))
    assert row(later, "S001")["acknowledge_speed"] > row(later, "S002")["acknowledge_speed"]


def test_rank_tie_breaks_are_stable_and_documented() -> None:
    loop = Loop()
    loop.add("S0", steps={"acknowledged": 6.01})  # scores 49.99 -> 50.0, like S1, but acknowledged later
    loop.add("S1", steps={"acknowledged": 6})
    loop.add("S3", steps={"acknowledged": 6})  # identical to S1: station id decides
    frame = loop.frame(at(12))
    table = station_assessment(frame, now=at(12))
    assert list(table["score"]) == [50.0, 50.0, 50.0]
    assert list(table["station_id"]) == ["S1", "S3", "S0"]
    assert list(table["rank"]) == [1, 2, 3]
    shuffled = station_assessment(frame.iloc[::-1], now=at(12))
    pd.testing.assert_frame_equal(shuffled, table)


def test_stations_without_warnings_are_listed_last_unranked() -> None:
    loop = Loop()
    loop.add("S002", steps={"acknowledged": 6})
    stations = pd.DataFrame({"station_id": ["S001", "S002", "S003"], "county_code": ["150502", "150502", "150521"]})
    table = station_assessment(loop.frame(at(12)), now=at(12), stations=stations)
    assert list(table["station_id"]) == ["S002", "S001", "S003"]
    assert table["rank"].tolist()[0] == 1 and table["rank"].isna().tolist() == [False, True, True]
    idle = row(table, "S003")
    assert (idle["county_code"], idle["warnings"], idle["overdue"], idle["closed"]) == ("150521", 0, 0, 0)
    for column in ("median_hours_to_acknowledge", "closure_rate", "fed_back_share", "score", "acknowledge_speed"):
        assert pd.isna(idle[column])
    empty = station_assessment(loop.frame(at(12)).iloc[:0], now=at(12), stations=stations)
    assert list(empty["station_id"]) == ["S001", "S002", "S003"] and empty["rank"].isna().all()
    assert list(station_assessment(loop.frame(at(12)).iloc[:0], now=at(12)).columns) == list(COLUMNS)
    assert summary(table) == {
        "stations": 3,
        "assessed": 1,
        "warnings": 1,
        "closed": 0,
        "overdue": 0,
        "closure_rate": 0.0,
        "median_score": 50.0,
    }


def test_bad_input_is_named() -> None:
    loop = Loop()
    loop.add("S001")
    with pytest.raises(ValueError, match="now must be an aware datetime"):
        station_assessment(loop.frame(at(1)), now=datetime(2025, 3, 1))
    with pytest.raises(ValueError, match="loop lacks column\\(s\\) hours_allowed"):
        station_assessment(loop.frame(at(1)).drop(columns="hours_allowed"), now=at(1))
    with pytest.raises(ValueError, match="repeat_calls lacks column\\(s\\) received_at"):
        station_assessment(loop.frame(at(1)), now=at(1), repeat_calls=pd.DataFrame({"household_id": ["H"]}))


# --------------------------------------------------------------------------------------------------
# Through the store
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> dict[str, datetime]:
    """The store's clock, set by the test (created_at, event and supervision times)."""
    now = {"t": T0}
    monkeypatch.setattr(ws, "_now", lambda: now["t"])
    return now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[WarningStore]:
    s = WarningStore(f"sqlite:///{tmp_path / 'warnings.db'}")
    yield s
    s.dispose()


def ranking(households: list[str], stations: list[str], county: str = "150502") -> pd.DataFrame:
    n = len(households)
    return pd.DataFrame(
        {
            "household_id": households,
            "station_id": stations,
            "county_code": [county] * n,
            "level": ["red"] * n,
            "probability": [0.5] * n,
            "rank_in_station": [1 + stations[:i].count(s) for i, s in enumerate(stations)],
            "category": ["family"] * n,
            "engine": ["rules"] * n,
            "model_version": [None] * n,
            "reasons": [{}] * n,
        }
    )


def test_assessment_for_reads_one_period_and_follows_the_loop(store: WarningStore, clock: dict[str, datetime]) -> None:
    # Ranked on the last day of February (leap year) and on the first of March: two periods.
    store.replace_date("2024-02-29", ranking(["HA", "HB"], ["S001", "S002"]), {})
    store.replace_date("2024-03-01", ranking(["HC"], ["S001"]), {})
    feb = assessment_period(date(2024, 2, 29))
    first = assessment_for(store, *feb, HOURS, now=at(12))
    assert list(first["station_id"]) == ["S001", "S002"] and list(first["warnings"]) == [1, 1]
    assert list(first["score"]) == [44.4, 44.4]  # nothing done yet: both 12 h into 24 h

    # S002 acknowledges at 3 h: it goes first; the March period does not move.
    wid = store.warnings_for("2024-02-29", station_id="S002")[0]["id"]
    clock["t"] = at(3)
    store.set_status(wid, "acknowledged", "S002-值班")
    after = assessment_for(store, *feb, HOURS, now=at(12))
    assert list(after["station_id"]) == ["S002", "S001"]
    assert row(after, "S002")["median_hours_to_acknowledge"] == 3.0
    assert row(after, "S002")["score"] == 52.8  # 100 * (20 * (1 - 3/24) + 20 * 0.5 + 20) / 90 = 52.78
    march = assessment_for(store, date(2024, 3, 1), date(2024, 4, 30), HOURS, now=at(12))
    assert list(march["station_id"]) == ["S001"] and list(march["acknowledged"]) == [0]

    # Past the deadline S001 is overdue; a supervision moving its deadline clears that, not its timeliness.
    late = assessment_for(store, *feb, HOURS, now=at(30))
    assert row(late, "S001")["overdue"] == 1
    clock["t"] = at(29)
    s1 = store.warnings_for("2024-02-29", station_id="S001")[0]["id"]
    store.supervise(s1, "150502-督办", "请今日内上门核实", at(40))
    supervised = row(assessment_for(store, *feb, HOURS, now=at(30)), "S001")
    assert (supervised["overdue"], supervised["acknowledge_speed"]) == (0, 0.0)


def test_assessment_for_a_county_with_its_idle_stations(store: WarningStore, clock: dict[str, datetime]) -> None:
    store.replace_date(
        "2024-05-02", ranking(["HA", "HB"], ["S001", "S900"]).assign(county_code=["150502", "150521"]), {}
    )
    stations = pd.DataFrame({"station_id": ["S001", "S002", "S900"], "county_code": ["150502", "150502", "150521"]})
    table = assessment_for(store, "2024-05-01", "2024-06-30", HOURS, now=at(1), county_code="150502", stations=stations)
    assert list(table["station_id"]) == ["S001", "S002"]
    assert table["rank"].tolist()[0] == 1 and pd.isna(table["rank"].tolist()[1])
