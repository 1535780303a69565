"""The loop's clock (models/loop.py): deadlines, overdue and step times from hand-built frames, exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pandas as pd
import pytest

from models.loop import LOOP_COLUMNS, TIME_DTYPE, deadline_of, is_overdue, loop_frame

HOURS = {"red": 24, "orange": 72, "yellow": 168, "blue": 360}
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def iso(hours: float) -> str:
    return at(hours).isoformat()


def warning(wid: int, level: str, status: str = "pushed", created: float = 0.0, **extra: Any) -> dict[str, Any]:
    return {"id": wid, "level": level, "status": status, "created_at": iso(created), "active": True, **extra}


def event(wid: int, to_status: str, hours: float) -> dict[str, Any]:
    return {"warning_id": wid, "to_status": to_status, "at": iso(hours)}


def supervision(sid: int, wid: int, hours: float, new_deadline: float) -> dict[str, Any]:
    return {"id": sid, "warning_id": wid, "at": iso(hours), "new_deadline": iso(new_deadline)}


# --------------------------------------------------------------------------------------------------
# One warning at a time
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("level", "hours"), [("red", 24), ("orange", 72), ("yellow", 168), ("blue", 360)])
def test_deadline_is_created_at_plus_the_levels_hours(level: str, hours: int) -> None:
    assert deadline_of(warning(1, level, created=5), HOURS, []) == at(5 + hours)
    assert deadline_of(warning(1, level), {**HOURS, level: 2}, []) == at(2)


def test_latest_supervision_sets_the_deadline_earlier_or_later() -> None:
    w = warning(7, "blue")
    later = [supervision(1, 7, hours=1, new_deadline=400)]
    assert deadline_of(w, HOURS, later) == at(400)
    # A second supervision brings it forward; a supervision of another warning is ignored.
    both = [*later, supervision(2, 7, hours=2, new_deadline=30), supervision(3, 8, hours=3, new_deadline=999)]
    assert deadline_of(w, HOURS, both) == at(30)
    assert deadline_of(w, HOURS, list(reversed(both))) == at(30)  # latest by time, not list order
    same_instant = [supervision(5, 7, hours=2, new_deadline=50), supervision(4, 7, hours=2, new_deadline=60)]
    assert deadline_of(w, HOURS, same_instant) == at(50)  # same instant: the later written (higher id) wins
    # datetimes work as well as ISO strings; the result is UTC
    local = {
        "warning_id": 7,
        "at": at(1),
        "new_deadline": datetime(2025, 3, 2, 16, tzinfo=timezone(timedelta(hours=8))),
    }
    result = deadline_of(w, HOURS, [local])
    assert result == at(24) and result.tzinfo == UTC


def test_deadline_refuses_naive_times_and_unknown_levels() -> None:
    with pytest.raises(ValueError, match="created_at has no time zone"):
        deadline_of({**warning(1, "red"), "created_at": "2025-03-01T08:00:00"}, HOURS, [])
    with pytest.raises(ValueError, match="no deadline hours for level purple"):
        deadline_of(warning(1, "purple"), HOURS, [])


def test_overdue_means_open_active_and_strictly_past_the_deadline() -> None:
    deadline = at(24)
    assert is_overdue(warning(1, "red"), deadline, at(24.01)) is True
    assert is_overdue(warning(1, "red", status="acknowledged"), deadline, at(30)) is True
    assert is_overdue(warning(1, "red"), deadline, at(24)) is False  # at the deadline is still in time
    assert is_overdue(warning(1, "red", status="handled"), deadline, at(99)) is False
    assert is_overdue(warning(1, "red", status="fed_back"), deadline, at(99)) is False
    assert is_overdue({**warning(1, "red"), "active": False}, deadline, at(99)) is False  # withdrawn by a re-run
    assert is_overdue(warning(1, "red"), iso(24), at(25).astimezone(timezone(timedelta(hours=8)))) is True
    with pytest.raises(ValueError, match="now has no time zone"):
        is_overdue(warning(1, "red"), deadline, datetime(2025, 3, 5))


# --------------------------------------------------------------------------------------------------
# The whole frame
# --------------------------------------------------------------------------------------------------


def frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    warnings = pd.DataFrame(
        [
            warning(1, "red", "acknowledged"),  # acknowledged after 2 h ... then nothing (below: handled)
            warning(2, "orange"),  # nothing done, orange: 72 h, overdue at 80 h
            warning(3, "yellow", "handled"),  # handled after 10 h without acknowledging first
            warning(4, "blue"),  # supervised twice: deadline brought forward to 30 h
            warning(5, "red", "fed_back", outcome="referred"),  # acknowledged 1 h, fed back 3 h (handled skipped)
            {**warning(6, "red"), "active": False},  # withdrawn: never overdue
            warning(7, "red", created=79),  # pushed an hour ago: not yet due
        ],
        index=[10, 11, 12, 13, 14, 15, 16],  # the caller's index is kept
    )
    events = pd.DataFrame(
        [
            *(event(i, "pushed", 0) for i in range(1, 7)),
            event(7, "pushed", 79),
            event(1, "acknowledged", 2),
            event(3, "handled", 10),
            event(5, "acknowledged", 1),
            event(5, "fed_back", 3),
            event(99, "handled", 1),  # a warning outside the frame
        ]
    )
    supervisions = pd.DataFrame([supervision(1, 4, 1, 400), supervision(2, 4, 2, 30), supervision(3, 2, 70, 75)])
    return warnings, events, supervisions


def test_loop_frame_times_each_warning() -> None:
    warnings, events, supervisions = frames()
    loop = loop_frame(warnings, events, supervisions, HOURS, now=at(80))
    assert list(loop.index) == [10, 11, 12, 13, 14, 15, 16]
    assert list(loop["id"]) == [1, 2, 3, 4, 5, 6, 7]
    assert all(c in loop for c in LOOP_COLUMNS)

    def hours_of(column: str) -> list[float | None]:
        return [None if pd.isna(v) else (v - pd.Timestamp(T0)) / pd.Timedelta(hours=1) for v in loop[column]]

    assert hours_of("base_deadline") == [24, 72, 168, 360, 24, 24, 103]
    assert hours_of("deadline") == [24, 75, 168, 30, 24, 24, 103]
    assert list(loop["supervised"]) == [False, True, False, True, False, False, False]
    assert list(loop["open"]) == [True, True, False, True, False, True, True]
    assert list(loop["overdue"]) == [True, True, False, True, False, False, False]
    assert hours_of("acknowledged_at") == [2, None, 10, None, 1, None, None]
    assert hours_of("handled_at") == [None, None, 10, None, 3, None, None]
    assert hours_of("fed_back_at") == [None, None, None, None, 3, None, None]
    assert loop["hours_to_acknowledge"].fillna(-1).tolist() == [2, -1, 10, -1, 1, -1, -1]
    assert loop["hours_to_handle"].fillna(-1).tolist() == [-1, -1, 10, -1, 3, -1, -1]
    assert loop["hours_allowed"].tolist() == [24, 72, 168, 360, 24, 24, 24]
    for column in ("created_at", "deadline", "base_deadline", "acknowledged_at", "handled_at", "fed_back_at"):
        assert str(loop[column].dtype) == TIME_DTYPE


def test_loop_frame_agrees_with_the_one_warning_functions() -> None:
    warnings, events, supervisions = frames()
    now = at(80)
    loop = loop_frame(warnings, events, supervisions, HOURS, now)
    sups = supervisions.to_dict("records")
    for w, row in zip(warnings.to_dict("records"), loop.itertuples(), strict=True):
        deadline = deadline_of(w, HOURS, sups)
        assert row.deadline == deadline
        assert row.overdue == is_overdue(w, deadline, now)


def test_loop_frame_is_the_same_from_any_time_zone_and_input_type() -> None:
    warnings, events, supervisions = frames()
    utc = loop_frame(warnings, events, supervisions, HOURS, now=at(80))
    shanghai = timezone(timedelta(hours=8))
    typed = warnings.assign(created_at=[datetime.fromisoformat(v).astimezone(shanghai) for v in warnings.created_at])
    local = loop_frame(typed, events, supervisions, HOURS, now=at(80).astimezone(shanghai))
    pd.testing.assert_frame_equal(utc.drop(columns="created_at"), local.drop(columns="created_at"))
    assert (utc["created_at"] == local["created_at"]).all()
    # A moment later nothing else changes but warning 7 is still in time (due at 103 h)
    assert loop_frame(warnings, events, supervisions, HOURS, now=at(103))["overdue"].tolist()[-1] is False
    assert loop_frame(warnings, events, supervisions, HOURS, now=at(103.5))["overdue"].tolist()[-1] is True


def test_loop_frame_empty_and_bad_input() -> None:
    warnings, events, supervisions = frames()
    empty = loop_frame(warnings.iloc[:0], events.iloc[:0], supervisions.iloc[:0], HOURS, now=at(1))
    assert len(empty) == 0 and all(c in empty for c in LOOP_COLUMNS)
    assert str(empty["deadline"].dtype) == TIME_DTYPE
    no_events = loop_frame(warnings, events.iloc[:0], supervisions.iloc[:0], HOURS, now=at(80))
    assert no_events["acknowledged_at"].isna().all() and no_events["deadline"].equals(no_events["base_deadline"])
    with pytest.raises(ValueError, match="now has no time zone"):
        loop_frame(warnings, events, supervisions, HOURS, now=datetime(2025, 3, 5))
    with pytest.raises(ValueError, match="lacks column\\(s\\) level"):
        loop_frame(warnings.drop(columns="level"), events, supervisions, HOURS, now=at(1))
    with pytest.raises(ValueError, match="no deadline hours for level\\(s\\) red"):
        loop_frame(warnings, events, supervisions, {"blue": 1, "orange": 1, "yellow": 1}, now=at(1))
