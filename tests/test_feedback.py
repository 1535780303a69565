"""Station feedback becomes data: exactly which labels a fed-back escalation adds, and what the report counts.

A small warnings database is written through the store's own API (``replace_date``, then
``set_status`` along the loop), read back the way training reads it, and applied to a hand-made
frame of weekly snapshots, so every label and every number can be asserted exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, text
from test_report import report_dict  # tests/ is on sys.path (rootdir-relative imports)

from models.feedback import (
    apply_feedback,
    factor_template,
    feedback_labels,
    feedback_metrics,
    loop_state,
    no_feedback,
    wilson_interval,
)
from models.report import feedback_lines, render_markdown
from models.warning_store import WarningStore
from pipelines.feedback_data import read_loop_frames

HORIZON = 90
DAY, LATE_DAY = "2024-06-03", "2024-12-02"
SNAPSHOTS = pd.date_range("2024-01-01", "2024-08-26", freq="7D")  # Mondays; the data's labels end here
HOUSEHOLDS = [f"H{i}" for i in range(9)] + ["HX"]  # HX: never warned
NOW = pd.Timestamp("2100-01-01", tz="UTC")  # after everything the store records

# household -> (level, reasons, the loop's moves: statuses, then the outcome if fed back)
LOOP = {
    "H0": ("red", {"raised_by": "model", "rules_scenario": "family", "model": ["近90天纠纷报警6次", "涉债权债务关系"]},
           ["acknowledged", "handled"], "escalated"),
    "H1": ("red", {"raised_by": "rules", "rules_scenario": "family", "model": ["近90天纠纷报警3次"]},
           ["acknowledged", "handled"], "false_alarm"),
    "H3": ("orange", {"raised_by": "both", "rules_scenario": "neighbor", "model": []}, ["handled"], "escalated"),
    "H4": ("yellow", {"raised_by": "model", "rules_scenario": None, "model": ["近90天纠纷报警2次"]}, [], "resolved"),
    "H5": ("blue", {"raised_by": "rules", "rules_scenario": "family", "model": []}, ["acknowledged"], None),
    "H6": ("orange", {"raised_by": "rules", "rules_scenario": "family", "model": ["家庭成员无业1人"]},
           ["acknowledged", "handled"], "false_alarm"),
    "H7": ("yellow", {"raised_by": "model", "rules_scenario": "none", "model": []}, [], None),
    "H8": ("blue", {"raised_by": "model", "rules_scenario": "family", "model": []}, ["handled"], None),
}  # fmt: skip
LATE = {"H2": ("red", {"model": ["近90天纠纷报警9次"], "rules": ["积分预警"]}, ["acknowledged"], "escalated")}
"""Ranked on a day after the data's last labelled snapshot; stored reasons of older code (no policy fields)."""


def ranking(day_loop: dict) -> pd.DataFrame:
    n = len(day_loop)
    return pd.DataFrame(
        {
            "household_id": list(day_loop),
            "station_id": ["S001"] * n,
            "county_code": ["150502"] * n,
            "level": [v[0] for v in day_loop.values()],
            "probability": [0.1] * n,
            "rank_in_station": list(range(1, n + 1)),
            "category": ["family"] * n,
            "engine": ["model"] * n,
            "model_version": ["3"] * n,
            "reasons": [{**v[1], "rules": ["积分预警"], "calls": [], "terms": []} for v in day_loop.values()],
        }
    )


def run_loop(store: WarningStore, day: str, day_loop: dict) -> dict[str, int]:
    """Rank the day, then move each warning along the loop as a station would; returns household -> id."""
    store.replace_date(day, ranking(day_loop), {"engine": "model"})
    ids = {w["household_id"]: w["id"] for w in store.warnings_for(day)}
    for household, (_level, _reasons, moves, outcome) in day_loop.items():
        for status in moves:
            store.set_status(ids[household], status, actor="S001-值班")
        if outcome:
            store.set_status(ids[household], "fed_back", actor="S001-值班", note="已回访", outcome=outcome)
    return ids


@pytest.fixture
def db(tmp_path: Path) -> tuple[str, dict[str, int]]:
    """The loop above in a SQLite file; H3's feedback moved 100 days after its push (a horizon and more)."""
    url = f"sqlite:///{tmp_path / 'warnings.db'}"
    store = WarningStore(url)
    ids = run_loop(store, DAY, LOOP) | run_loop(store, LATE_DAY, LATE)
    store.dispose()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE warning_events SET at = datetime(at, '+100 days') WHERE warning_id = :i AND to_status = :s"),
            {"i": ids["H3"], "s": "fed_back"},
        )
    engine.dispose()
    return url, ids


def snapshots() -> tuple[pd.DataFrame, np.ndarray]:
    """Weekly snapshots of every household; a violent case already labels H0's of 2024-05-27 and HX's of 03-04."""
    frame = pd.DataFrame(
        [(h, d) for h in HOUSEHOLDS for d in SNAPSHOTS], columns=["household_id", "snapshot_date"]
    ).assign(station_id="S001")
    labels = np.zeros(len(frame), dtype=np.int8)
    labels[((frame["household_id"] == "H0") & (frame["snapshot_date"] == "2024-05-27")).to_numpy()] = 1
    labels[((frame["household_id"] == "HX") & (frame["snapshot_date"] == "2024-03-04")).to_numpy()] = 1
    return frame, labels


def test_fed_back_escalation_labels_exactly_the_snapshots_whose_horizon_holds_it(db: tuple) -> None:
    """H0 (pushed 06-03, fed back at once): snapshots 03-11 .. 06-03 become 1; nothing else changes.

    Fed back instantly, the escalation lies in [06-03, 06-04): a snapshot S holds it when S <= 06-03
    and S + 90 days >= 06-04 + a moment, so 03-04 (+90 = 06-02) is out and 03-11 in. H1 and H6
    (false alarms), H4 (resolved) and the pushed/handled warnings change no label; H3 was fed back
    100 days after its push and H2 after the data's last snapshot: neither can be placed.
    """
    url, _ids = db
    warnings, events, missing = read_loop_frames(url)
    assert missing is None and len(warnings) == 9 and "note" not in events.columns
    frame, labels = snapshots()
    train, report = apply_feedback(frame, labels, warnings, events, HORIZON, NOW)

    expected = labels.copy()
    window = (frame["household_id"] == "H0") & frame["snapshot_date"].between("2024-03-11", "2024-06-03")
    expected[window.to_numpy()] = 1
    assert window.sum() == 13
    np.testing.assert_array_equal(train, expected)
    assert not np.shares_memory(train, labels) and labels.sum() == 2  # the case labels are left as they were
    changed = set(frame.loc[train != labels, "household_id"])
    assert changed == {"H0"}
    assert report["labels"] == {
        "escalated": 3,
        "placed": 1,
        "too_late": 1,
        "not_covered": 1,
        "snapshots": 13,
        "already_labelled": 1,
        "added": 12,
        "households": 1,
    }


def test_window_boundaries_follow_the_elapsed_time_to_the_day() -> None:
    """Fed back 10 days after the push: S + 90 >= D + 11 days, so D - 79 is in, D - 80 out, and D + 1 out."""
    day = pd.Timestamp("2024-06-03")
    dates = [day - pd.Timedelta(days=80), day - pd.Timedelta(days=79), day, day + pd.Timedelta(days=1)]
    frame = pd.DataFrame({"household_id": ["A"] * 4 + ["B"], "snapshot_date": [*dates, day]})
    warnings = pd.DataFrame(
        {
            "id": [1],
            "date": ["2024-06-03"],
            "household_id": ["A"],
            "level": ["red"],
            "reasons": ['{"raised_by": "model"}'],
            "created_at": ["2030-01-01T06:00:00+00:00"],
        }
    )
    events = pd.DataFrame(
        {
            "warning_id": [1, 1],
            "to_status": ["pushed", "fed_back"],
            "outcome": [None, "escalated"],
            "at": ["2030-01-01T06:00:00+00:00", "2030-01-11T06:00:00+00:00"],
        }
    )
    labels = np.zeros(5, dtype=np.int8)
    train, counts = feedback_labels(frame, labels, loop_state(warnings, events, NOW), HORIZON)
    assert train.tolist() == [0, 1, 1, 0, 0]
    assert counts["added"] == 2 and counts["placed"] == 1

    # point in time: a run before the feedback sees a handled-at-most warning and adds nothing
    before = pd.Timestamp("2030-01-05", tz="UTC")
    state = loop_state(warnings, events, before)
    assert state["status"].tolist() == ["pushed"] and state["outcome"].isna().all()
    assert feedback_labels(frame, labels, state, HORIZON)[1]["added"] == 0
    assert loop_state(warnings, events, pd.Timestamp("2029-12-31", tz="UTC")).empty  # not yet pushed


def test_report_counts_statuses_outcomes_and_false_alarm_rates(db: tuple) -> None:
    url, _ids = db
    warnings, events, _ = read_loop_frames(url)
    frame, labels = snapshots()
    _, report = apply_feedback(frame, labels, warnings, events, HORIZON, NOW)

    assert report["available"] and report["warnings"] == 9 and report["fed_back"] == 6
    assert (report["first_date"], report["last_date"]) == (DAY, LATE_DAY)
    assert report["status"] == {"pushed": 1, "acknowledged": 1, "handled": 1, "fed_back": 6}
    assert report["reached"] == {"pushed": 9, "acknowledged": 8, "handled": 7, "fed_back": 6}
    outcomes = report["outcomes"]
    assert (outcomes["escalated"], outcomes["false_alarm"], outcomes["resolved"], outcomes["ongoing"]) == (3, 2, 1, 0)
    assert sum(outcomes.values()) == 6

    rates = report["false_alarm"]
    assert rates["overall"] == {"fed_back": 6, "false_alarms": 2, "rate": 0.3333, "ci": wilson_interval(2, 6)}
    by_level = {k: (v["fed_back"], v["false_alarms"]) for k, v in rates["level"].items()}
    assert by_level == {"red": (3, 1), "orange": (2, 1), "yellow": (1, 0)}  # no blue warning was fed back
    assert list(rates["level"]) == ["red", "orange", "yellow"]
    by_side = {k: (v["fed_back"], v["false_alarms"]) for k, v in rates["raised_by"].items()}
    assert by_side == {"rules": (2, 2), "model": (2, 0), "both": (1, 0), "unrecorded": (1, 0)}
    assert rates["raised_by"]["rules"]["rate"] == 1.0 and rates["raised_by"]["rules"]["ci"] == [0.3424, 1.0]
    by_scenario = {k: (v["fed_back"], v["false_alarms"]) for k, v in rates["rules_scenario"].items()}
    assert by_scenario == {"family": (3, 2), "neighbor": (1, 0), "none": (1, 0), "unrecorded": (1, 0)}
    by_factor = {k: (v["fed_back"], v["false_alarms"]) for k, v in rates["model_factor"].items()}
    assert by_factor == {"近90天纠纷报警N次": (4, 1), "家庭成员无业N人": (1, 1), "涉债权债务关系": (1, 0)}

    metrics = feedback_metrics(report)
    assert metrics["feedback.warnings"] == 9 and metrics["feedback.labels_added"] == 12
    assert metrics["feedback.outcomes.false_alarm"] == 2 and metrics["feedback.reached.acknowledged"] == 8
    assert metrics["feedback.false_alarm_rate"] == 0.3333 and metrics["feedback.false_alarm_rate.n"] == 6
    assert metrics["feedback.false_alarm_rate.level.red"] == 0.3333
    assert metrics["feedback.false_alarm_rate.raised_by.rules.ci_low"] == 0.3424
    assert "feedback.false_alarm_rate.level.blue" not in metrics  # no rate without feedback
    assert all(isinstance(v, float) for v in metrics.values())
    assert all(key.isascii() for key in metrics)  # model factors (Chinese phrases) stay out of metric names

    lines = "\n".join(feedback_lines(report))
    assert "## 站点反馈 Station feedback" in lines
    assert "**12 labels added** (1 households)" in lines
    assert "- not placed: 1 fed back a horizon or more after the push, 1 outside the labelled snapshots" in lines
    assert "| all | – | 6 | 2 | 33.3% [9.7%, 70.0%] |" in lines
    assert "| raised by | rules | 2 | 2 | 100.0% [34.2%, 100.0%] |" in lines
    assert "| model factor | 近90天纠纷报警N次 | 4 | 1 | 25.0% [4.6%, 69.9%] |" in lines
    assert "| handled | 1 | 7 |" in lines
    assert "已回访" not in lines and "H0" not in lines  # no note, no household


def test_no_database_trains_on_case_labels_and_says_so(tmp_path: Path) -> None:
    frame, labels = snapshots()
    missing_file = tmp_path / "var" / "warnings.db"
    for url in (None, f"sqlite:///{missing_file}"):
        warnings, events, missing = read_loop_frames(url)
        assert warnings is None and events is None and missing
        train, report = apply_feedback(frame, labels, warnings, events, HORIZON, NOW, missing)
        np.testing.assert_array_equal(train, labels)
        assert report == no_feedback(missing) and not report["available"]
        text_ = "\n".join(feedback_lines(report))
        assert "No station feedback yet" in text_ and "the labels are the cases' only" in text_
        assert feedback_metrics(report) == {"feedback.warnings": 0.0, "feedback.labels_added": 0.0}
    assert not missing_file.exists() and not missing_file.parent.exists()  # reading never creates it

    bare = tmp_path / "bare.db"
    create_engine(f"sqlite:///{bare}").connect().close()  # a file without the store's tables
    assert "no warnings table" in (read_loop_frames(f"sqlite:///{bare}")[2] or "")

    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    WarningStore(empty).dispose()  # tables, no warning
    warnings, events, missing = read_loop_frames(empty)
    assert missing is None and warnings is not None and warnings.empty
    train, report = apply_feedback(frame, labels, warnings, events, HORIZON, NOW, missing)
    np.testing.assert_array_equal(train, labels)
    assert not report["available"] and "no warning yet" in report["reason"]


def test_training_report_shows_the_section_only_for_runs_that_read_feedback(db: tuple) -> None:
    url, _ids = db
    frame, labels = snapshots()
    _, feedback = apply_feedback(frame, labels, *read_loop_frames(url)[:2], HORIZON, NOW)
    plots = {"pr": "pr_curve.png", "calibration": "calibration.png"}
    with_feedback = report_dict()
    with_feedback["escalation"]["feedback"] = feedback
    text_ = render_markdown(with_feedback, plots)
    assert text_.count("## 站点反馈 Station feedback") == 1
    assert text_.index("## Calibration") < text_.index("## 站点反馈")  # after the escalation model's sections
    older = render_markdown(report_dict(), plots)  # report.json of a run made before feedback existed
    assert "站点反馈" not in older


def test_factor_template_and_wilson() -> None:
    assert factor_template("近90天纠纷报警6次") == "近90天纠纷报警N次"
    assert factor_template("近一年纠纷报警中40%出现酒后表述") == "近一年纠纷报警中N%出现酒后表述"
    assert factor_template("涉债权债务关系") == "涉债权债务关系"
    assert wilson_interval(0, 10) == [0.0, 0.2775]  # scipy.stats.binomtest(...).proportion_ci(method="wilson")
    assert wilson_interval(1, 3) == [0.0615, 0.7923]
    assert wilson_interval(0, 0) is None
