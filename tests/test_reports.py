"""Analysis reports: periods, the pure aggregates, a whole report on the trained city, the incident analysis, the CLI.

The end-to-end tests run on the shared ranked city with their own copy of its
warnings database, to which they add two older rankings (so escalations can be
"warned by a published ranking" and observed rates exist) and move some
warnings through the loop; every number the report prints is checked against
a count made here from the same inputs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest
from typer.testing import CliRunner

from features.schema import CATEGORIES
from models.warning_store import WarningStore
from pipelines.reports import analysis
from pipelines.reports.periods import report_period

NOW = dt.datetime(2031, 1, 1, tzinfo=dt.UTC)
"""The loop's clock for the end-to-end report: far after every deadline, so every open warning is overdue."""


# ------------------------------------------------------------------------------- periods


def test_a_month_report_is_the_calendar_month_to_its_end_day() -> None:
    period = report_period("month", dt.date(2024, 12, 30))
    assert (period.first, period.last, period.full_last) == (
        dt.date(2024, 12, 1),
        dt.date(2024, 12, 30),
        dt.date(2024, 12, 31),
    )
    assert (period.previous_first, period.previous_last) == (dt.date(2024, 11, 1), dt.date(2024, 11, 30))
    assert (period.days, period.previous_days, period.partial) == (30, 30, True)
    assert period.name == "month-2024-12-30" and period.title == "2024年12月 月报"
    january = report_period("month", dt.date(2025, 1, 31))
    assert (january.previous_first, january.previous_last, january.partial) == (
        dt.date(2024, 12, 1),
        dt.date(2024, 12, 31),
        False,
    )


def test_a_week_runs_monday_to_sunday_and_a_quarter_by_calendar_quarter() -> None:
    week = report_period("week", dt.date(2024, 12, 29))  # a Sunday
    assert (week.first, week.last, week.previous_first, week.previous_last) == (
        dt.date(2024, 12, 23),
        dt.date(2024, 12, 29),
        dt.date(2024, 12, 16),
        dt.date(2024, 12, 22),
    )
    assert not week.partial and week.title == "2024年第52周 周报"
    quarter = report_period("quarter", dt.date(2025, 1, 15))
    assert (quarter.first, quarter.full_last, quarter.days) == (dt.date(2025, 1, 1), dt.date(2025, 3, 31), 15)
    assert (quarter.previous_first, quarter.previous_last, quarter.previous_days) == (
        dt.date(2024, 10, 1),
        dt.date(2024, 12, 31),
        92,
    )
    with pytest.raises(ValueError, match="year"):
        report_period("year", dt.date(2025, 1, 1))


# ------------------------------------------------------------------------------- aggregates


def _calls(rows: list[tuple[str, str, str, str | None, str | None]]) -> pd.DataFrame:
    """(received_at, category or '' for not a dispute, county, household, community) per call."""
    frame = pd.DataFrame(
        {
            "received_at": pd.to_datetime([r[0] for r in rows]),
            "category": [r[1] or None for r in rows],
            "is_dispute": [bool(r[1]) for r in rows],
            "county_code": [r[2] for r in rows],
            "household_id": [r[3] for r in rows],
            "community": [r[4] for r in rows],
            "station_id": "S001",
            "cue_violence": 0,
        }
    )
    frame["day"] = frame["received_at"].dt.normalize()
    return frame


def test_counts_are_compared_as_rates_per_day() -> None:
    period = report_period("week", dt.date(2024, 12, 25))  # Mon 23 .. Wed 25 (3 days) against the 7 days before
    calls = _calls(
        [("2024-12-23 10:00", "family", "1", None, None)] * 6
        + [("2024-12-17 10:00", "family", "1", None, None)] * 7
        + [("2024-12-24 10:00", "", "1", None, None)] * 5  # not disputes
        + [("2024-12-24 10:00", "neighbor", "2", None, None)]
    )
    table = analysis.by_category(calls, period).set_index("key")
    assert list(table.index) == list(CATEGORIES)  # every category, in the lexicon's order
    assert (table.loc["family", "current"], table.loc["family", "previous"]) == (6, 7)
    assert table.loc["family", "current_per_day"] == pytest.approx(2.0)
    assert table.loc["family", "change"] == pytest.approx(1.0)  # 2 a day against 1 a day
    assert np.isnan(table.loc["neighbor", "change"])  # nothing before: no ratio
    county = analysis.by_county(calls, period, {"1": "甲区", "2": "乙旗", "3": "丙县"}).set_index("key")
    assert county.loc["1", "name"] == "甲区" and county.loc["3", "current"] == 0
    assert county["current"].sum() == 7


def test_the_trend_sets_each_bucket_beside_the_same_bucket_of_the_period_before() -> None:
    period = report_period("month", dt.date(2024, 12, 10))
    calls = _calls(
        [("2024-12-01 09:00", "debt", "1", None, None), ("2024-12-08 09:00", "debt", "1", None, None)]
        + [("2024-11-08 09:00", "debt", "1", None, None)] * 3
        + [("2024-11-30 09:00", "debt", "1", None, None)]
    )
    trend = analysis.trend(calls, period)
    assert len(trend) == 5  # November's 30 days make five 7-day buckets
    assert trend["current"].iloc[:2].tolist() == [1, 1] and trend["current"].iloc[2:].isna().all()
    assert trend["previous"].tolist() == [0, 3, 0, 0, 1]
    assert trend["current_from"].tolist()[:2] == ["2024-12-01", "2024-12-08"]


def test_the_rate_ratio_p_value_is_the_exact_one_sided_binomial() -> None:
    p = analysis.rate_ratio_p(np.array([12, 5]), np.array([3, 5]), 30, 31)
    assert p[0] == pytest.approx(binomtest(12, 15, 30 / 61, alternative="greater").pvalue)
    assert p[1] == pytest.approx(binomtest(5, 10, 30 / 61, alternative="greater").pvalue)


def test_benjamini_hochberg_adjusts_in_rank_order() -> None:
    q = analysis.benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.2]))
    assert q == pytest.approx([0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.2])


def test_a_hot_spot_is_a_community_whose_calls_rose_beyond_chance() -> None:
    period = report_period("month", dt.date(2024, 12, 31))
    rows: list[tuple[str, str, str, str | None, str | None]] = []
    rising, steady = "甲 乙 rising", "甲 乙 steady"
    rows += [("2024-12-05 10:00", "neighbor", "1", "H1", rising)] * 20
    rows += [("2024-11-05 10:00", "neighbor", "1", "H1", rising)] * 2
    rows += [("2024-12-05 10:00", "family", "1", "H2", steady)] * 8
    rows += [("2024-11-05 10:00", "family", "1", "H2", steady)] * 8
    rows += [("2024-12-05 10:00", "family", "1", "H3", "甲 乙 small")] * 4  # below the minimum: not tested
    rows += [("2024-12-05 10:00", "family", "1", None, None)] * 30  # not linked to a household: no community
    spots = analysis.hot_spots(_calls(rows), period)
    assert list(spots["community"]) == ["甲 乙 rising", "甲 乙 steady"]
    assert spots["hot"].tolist() == [True, False]
    assert spots.loc[0, "rate_ratio"] == pytest.approx((20 / 31) / (2 / 30))
    assert spots.loc[0, "q_value"] <= analysis.HOT_SPOT_FDR < spots.loc[1, "q_value"]


def test_repeat_households_need_three_dispute_calls_in_the_period() -> None:
    period = report_period("month", dt.date(2024, 12, 31))
    rows = [(f"2024-12-0{d} 10:00", "family", "1", "H1", None) for d in (1, 2, 3, 4)]
    rows += [(f"2024-12-0{d} 10:00", "debt", "1", "H2", None) for d in (1, 2)]
    rows += [("2024-12-05 10:00", "", "1", "H2", None)]  # not a dispute: does not count
    rows += [(f"2024-11-0{d} 10:00", "debt", "1", "H3", None) for d in (1, 2, 3)]  # last month
    rows += [(f"2024-12-0{d} 10:00", "debt", "1", None, None) for d in (1, 2, 3)]  # unlinked
    repeat = analysis.repeat_households(_calls(rows), period)
    assert repeat[["household_id", "calls", "main_category", "last_call"]].to_dict("records") == [
        {"household_id": "H1", "calls": 4, "main_category": "family", "last_call": "2024-12-04"}
    ]


def _loop() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5],
            "date": ["2024-12-02", "2024-12-02", "2024-12-03", "2024-12-03", "2024-12-03"],
            "level": ["red", "blue", "blue", "yellow", "blue"],
            "county_code": ["1", "1", "2", "2", "2"],
            "status": ["fed_back", "pushed", "acknowledged", "handled", "pushed"],
            "overdue": [False, True, True, False, False],
            "hours_to_acknowledge": [1.0, np.nan, 3.0, 5.0, np.nan],
            "hours_to_handle": [2.0, np.nan, np.nan, 10.0, np.nan],
        }
    )


def test_the_warnings_summary_counts_issued_closed_open_and_overdue() -> None:
    summary = analysis.warning_summary(_loop())
    assert (summary["total"], summary["closed"], summary["open"], summary["overdue"]) == (5, 2, 3, 2)
    assert summary["by_date"].set_index("date").loc["2024-12-03"].to_dict() == {
        "red": 0,
        "orange": 0,
        "yellow": 1,
        "blue": 2,
    }
    county = summary["by_county"].set_index("county_code")
    assert county.loc["2"].to_dict() == {"issued": 3, "closed": 1, "open": 2, "overdue": 1}
    assert summary["median_hours_to_acknowledge"] == 3.0 and summary["median_hours_to_handle"] == 6.0
    assert summary["by_level"].set_index("level").loc["blue", "issued"] == 3
    assert analysis.warning_summary(_loop().iloc[0:0])["total"] == 0


def test_a_published_warning_counts_from_90_days_before_to_the_morning_of_the_case() -> None:
    escalations = pd.DataFrame(
        {
            "case_id": ["C1", "C2", "C3"],
            "household_id": ["H1", "H2", "H3"],
            "opened_at": pd.to_datetime(["2024-06-10 15:00", "2024-06-10 15:00", "2024-06-10 15:00"]),
            "charge": ["故意伤害"] * 3,
            "lead_days": [5.0, np.nan, np.nan],
        }
    )
    history = pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5],
            "household_id": ["H1", "H1", "H2", "H3", "H3"],
            "date": ["2024-03-12", "2024-06-10", "2024-03-11", "2024-06-11", "2024-05-01"],
            "level": ["blue", "red", "red", "red", "yellow"],
        }
    )
    out = analysis.published_before(escalations, history).set_index("household_id")
    assert out.loc["H1", "published_level"] == "red"  # the worst in the window; the case's own morning counts
    assert out.loc["H1", "first_published_at"] == pd.Timestamp("2024-03-12")  # exactly 90 days before
    assert out.loc["H1", "published_lead_days"] == 90
    assert out.loc["H2", "published_level"] is None  # 91 days before: outside
    assert out.loc["H3", "published_level"] == "yellow"  # the day after the case does not count
    summary = analysis.escalation_summary(out.reset_index())
    assert (summary["warned_by_rules"], summary["warned_by_ranking"], summary["warned_by_either"]) == (1, 2, 2)


def test_observed_rates_use_only_rankings_whose_outcome_is_known() -> None:
    history = pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "household_id": ["H1", "H2", "H3", "H1"],
            "date": ["2024-01-01", "2024-01-01", "2024-01-01", "2024-12-01"],  # the last is too recent
            "level": ["red", "red", "blue", "red"],
        }
    )
    cases = pd.DataFrame(
        {
            "case_id": ["C1", "C2", "C3", "C4"],
            "opened_at": pd.to_datetime(["2024-02-01", "2024-02-01", "2024-05-01", "2024-01-15"]),
            "charge": ["故意伤害", "故意伤害", "故意伤害", "盗窃"],
            "person_id": ["P1", "P9", "P3", "P2"],
        }
    )
    persons = pd.DataFrame({"person_id": ["P1", "P2", "P3", "P9"], "household_id": ["H1", "H2", "H3", "H9"]})
    table = analysis.level_outcomes(history, cases, persons, households=10, latest_day=dt.date(2024, 12, 30))
    rows = table.set_index("level")
    assert rows.loc["red", "warnings"] == 2 and rows.loc["red", "escalations"] == 1  # H1 escalated within 90 days
    assert rows.loc["blue", "escalations"] == 0  # H3's case came after 90 days
    assert rows.loc["none", "warnings"] == 7 and rows.loc["none", "escalations"] == 1  # H9, not warned
    assert rows.loc["red", "rate"] == pytest.approx(0.5)


def test_model_health_prefers_the_pooled_backtest() -> None:
    training = {
        "escalation": {
            "k": 5,
            "model": {"pr_auc": 0.1},
            "rules": {"pr_auc": 0.2},
            "positives": {"test": 7},
            "backtest": {"pooled": {"model": {"pr_auc": 0.3}, "rules": {"pr_auc": 0.25}, "positives": 40}},
        },
        "promotion": {"sentence": "the model will rank"},
    }
    manifest = {"date": "2024-12-31", "engine": "model", "model_version": "yujing-escalation v2", "model": {}}
    health = analysis.model_health(manifest, training)
    assert health["ranking"]["engine"] == "model" and health["ranking"]["model_version"] == "yujing-escalation v2"
    assert health["training"]["source"] == "backtest" and health["training"]["positives"] == 40
    assert health["training"]["metrics"] == [{"metric": "PR-AUC", "model": 0.3, "rules": 0.25, "interval": None}]
    assert analysis.model_health(None, None) == {"ranking": None, "training": None, "levels_observed": []}


# ------------------------------------------------------------------------------- a whole report on the city

pytestmark_trained = pytest.mark.xdist_group("trained")


@pytest.fixture(scope="module")
def city(ranked: dict):  # type: ignore[no-untyped-def]
    from pipelines.preparation import prepare
    from pipelines.reports.data import city_data

    return city_data(prepare(ranked["city"]))


def _fake_ranking(store, date: str, households: list[str], places: pd.DataFrame, level: str) -> None:  # type: ignore[no-untyped-def]
    """An older ranking of ``date`` holding ``households`` at ``level`` (rows as the daily job writes them)."""
    at = places.set_index("household_id").loc[households]
    rows = pd.DataFrame(
        {
            "household_id": households,
            "station_id": at["station_id"].to_numpy(),
            "county_code": at["county_code"].to_numpy(),
            "level": level,
            "probability": None,
            "rank_in_station": 1,
            "category": "family",
            "engine": "rules",
            "model_version": None,
            "reasons": [{"rules": ["测试"], "raised_by": "rules"}] * len(households),
        }
    )
    rows["rank_in_station"] = rows.groupby("station_id").cumcount() + 1
    store.replace_date(date, rows, {"engine": "rules", "test": True})


@pytest.fixture(scope="module")
def report_run(ranked: dict, city, tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[no-untyped-def]
    """The month report to the city's latest day, on a copy of the store with two older rankings and some feedback."""
    from conf import Settings
    from models.escalations import escalation_lead_times, household_places
    from pipelines.reports.run import run_report

    root = tmp_path_factory.mktemp("report")
    shutil.copy(ranked["store"].removeprefix("sqlite:///"), root / "warnings.db")
    store_url = f"sqlite:///{root / 'warnings.db'}"
    period = report_period("month", city.latest_day)
    tables = city.prepared.tables
    places = household_places(tables["households"], tables["addresses"])
    escalations = escalation_lead_times(
        city.prepared.calls,
        tables["cases"],
        tables["persons"],
        places,
        period.first,
        period.last + dt.timedelta(days=1),
    )
    escalated = sorted(set(escalations["household_id"]))
    warned_before = escalated[: len(escalated) // 2]  # the ranking of the month's first day warned half of them
    old_day = period.last - dt.timedelta(days=120)  # an old ranking whose 90-day outcome is known
    later = escalation_lead_times(
        city.prepared.calls, tables["cases"], tables["persons"], places, old_day, old_day + dt.timedelta(days=90)
    )
    old_warned = (
        sorted(set(later["household_id"]))[:3] + sorted(set(places["household_id"]) - set(later["household_id"]))[:17]
    )
    store = WarningStore(store_url)
    try:
        _fake_ranking(store, period.first.isoformat(), warned_before, places, "red")
        _fake_ranking(store, old_day.isoformat(), old_warned, places, "orange")
        current = store.warnings_for(ranked["result"].date)
        ids = [w["id"] for w in current]
        for wid in ids[:2]:
            store.set_status(wid, "acknowledged", "S-test")
        for wid in ids[2:4]:
            store.set_status(wid, "handled", "S-test")
        store.set_status(ids[4], "fed_back", "S-test", outcome="false_alarm")
        store.set_status(ids[5], "fed_back", "S-test", outcome="resolved")
    finally:
        store.dispose()
    settings = Settings(home=root / "var")
    (root / "runs").mkdir()
    (root / "runs" / "latest").symlink_to(ranked["root"] / "run1")  # the trained run as the latest run
    result = run_report(
        ranked["city"],
        "month",
        None,
        root / "reports",
        store_url,
        ranked["rankings"],
        root / "runs",
        settings.warning_deadline_hours,
        pdf=True,
        now=NOW,
        prepared=city.prepared,
    )
    numbers = json.loads((result.folder / "report.json").read_text(encoding="utf-8"))
    return {
        "root": root,
        "store_url": store_url,
        "result": result,
        "numbers": numbers,
        "period": period,
        "escalations": escalations,
        "warned_before": warned_before,
        "old_day": old_day,
        "old_warned": old_warned,
        "later": later,
        "current": len(current),
    }


@pytestmark_trained
def test_the_report_writes_html_pdf_json_and_a_manifest(report_run: dict) -> None:
    folder = report_run["result"].folder
    assert folder.name == f"month-{report_run['period'].last.isoformat()}"
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "report.html", "report.json", "report.pdf"]
    assert (folder / "report.pdf").read_bytes()[:5] == b"%PDF-"
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == entry["sha256"]
    assert manifest["data_fingerprint"] and manifest["code_version"] and manifest["database"].startswith("sqlite:///")
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" class="chart"') >= 6
    assert report_run["result"].charts >= 6
    assert '<table id="league">' in html and "<script" not in html
    # section 七 shows the drift check of the period's latest ranking (docs/drift.md)
    drift = json.loads((folder / "report.json").read_text(encoding="utf-8"))["drift"]
    assert drift["reference"]["available"] and drift["status"] in ("ok", "warn", "alert")
    assert f'<section class="drift" id="drift" data-drift-status="{drift["status"]}">' in html


@pytestmark_trained
def test_dispute_counts_are_the_rankings_dispute_calls(report_run: dict, city) -> None:  # type: ignore[no-untyped-def]
    numbers, period = report_run["numbers"], report_run["period"]
    calls = city.prepared.calls
    day = pd.to_datetime(calls["received_at"]).dt.date
    now = calls[calls["is_dispute"] & (day >= period.first) & (day <= period.last)]
    before = calls[calls["is_dispute"] & (day >= period.previous_first) & (day <= period.previous_last)]
    assert numbers["overview"]["disputes"] == len(now) > 20
    assert numbers["overview"]["disputes_previous"] == len(before)
    by_category = {r["key"]: r["current"] for r in numbers["by_category"]}
    assert by_category == {k: int((now["category"] == k).sum()) for k in by_category}
    assert sum(r["current"] for r in numbers["by_county"]) == len(now)
    assert sum(t["current"] or 0 for t in numbers["trend"]) == len(now)


@pytestmark_trained
def test_the_loop_section_counts_the_periods_warnings_at_the_reports_clock(report_run: dict) -> None:
    warnings = report_run["numbers"]["warnings"]
    total = report_run["current"]
    assert warnings["total"] == total  # the ranking dated the day after the last day; not the older two
    assert warnings["closed"] == 4  # two handled, two fed back
    assert warnings["open"] == total - 4
    assert warnings["overdue"] == total - 4  # NOW is years after every deadline
    feedback = report_run["numbers"]["feedback"]
    assert feedback["fed_back"] == 2 and feedback["outcomes"] == {"false_alarm": 1, "resolved": 1}
    assert feedback["false_alarm"]["overall"]["rate"] == 0.5
    league = report_run["numbers"]["league"]
    first, last = report_run["numbers"]["league_period"]
    store = WarningStore(report_run["store_url"])
    try:
        in_period = store.warnings_between(first, last)
    finally:
        store.dispose()
    assert len(league) == len({row["station_id"] for row in league}) == len({w["station_id"] for w in in_period})
    assert sum(row["warnings"] for row in league) == len(in_period)
    assert [row["rank"] for row in league] == list(range(1, len(league) + 1))


@pytestmark_trained
def test_escalations_say_who_was_warned_before_by_the_rules_and_by_a_ranking(report_run: dict) -> None:
    numbers = report_run["numbers"]
    expected = report_run["escalations"]
    summary = numbers["escalations"]["summary"]
    assert summary["households"] == len(expected) > 0
    assert summary["warned_by_rules"] == int(expected["lead_days"].notna().sum())
    warned_rows = expected["household_id"].isin(report_run["warned_before"])
    assert summary["warned_by_ranking"] == int(warned_rows.sum()) > 0
    first = report_run["period"].first.isoformat()
    for row in numbers["escalations"]["table"]:
        if row["household_id"] in report_run["warned_before"]:
            assert row["published_level"] == "red" and row["first_published_at"].startswith(first)
        else:
            assert row["published_level"] is None
    assert sum(b["households"] for b in summary["lead_bins"]) == len(expected)


@pytestmark_trained
def test_observed_rates_come_from_the_old_ranking(report_run: dict) -> None:
    levels = {row["level"]: row for row in report_run["numbers"]["levels"]}
    hit = len(set(report_run["old_warned"]) & set(report_run["later"]["household_id"]))
    assert levels["orange"]["warnings"] == len(report_run["old_warned"]) == 20
    assert levels["orange"]["escalations"] == hit > 0
    assert "red" not in levels  # the red ranking is too recent for its outcome to be known


@pytestmark_trained
def test_the_model_section_reads_the_latest_ranking(report_run: dict, ranked: dict) -> None:
    model = report_run["numbers"]["model"]
    assert model["ranking"]["date"] == ranked["result"].date
    assert model["ranking"]["model_version"] == "test v1" and model["ranking"]["engine"] == "model"
    pooled = ranked["report"]["escalation"]["backtest"]["pooled"]
    training = model["training"]
    assert training["source"] == "backtest" and training["positives"] == pooled["positives"]
    recall = next(m for m in training["metrics"] if m["metric"].startswith("recall@"))
    assert (recall["model"], recall["rules"]) == (pooled["model"]["recall_at_k"], pooled["rules"]["recall_at_k"])
    assert model["levels_observed"] == ranked["report"]["escalation"]["backtest"]["levels_observed"]


@pytestmark_trained
def test_an_end_outside_the_data_is_refused_before_the_database_is_read(ranked: dict, city, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from pipelines.reports.data import ReportError
    from pipelines.reports.run import run_report

    with pytest.raises(ReportError, match="outside the data"):
        run_report(
            ranked["city"], "week", "2031-01-01", tmp_path, "sqlite:///" + str(tmp_path / "none.db"), tmp_path,
            tmp_path, {"red": 24, "orange": 72, "yellow": 168, "blue": 360}, pdf=False, prepared=city.prepared,
        )  # fmt: skip
    assert not (tmp_path / "none.db").exists()


# ------------------------------------------------------------------------------- the special analysis


@pytest.fixture(scope="module")
def incident_run(report_run: dict, city, ranked: dict) -> dict:  # type: ignore[no-untyped-def]
    """The special analysis of a real escalation of the city whose household a published ranking had warned."""
    from pipelines.reports.incident import escalation_incidents, find_incident, parties
    from pipelines.reports.run import run_incident_report

    chosen = None
    for incident_id in reversed(escalation_incidents(city)):
        households = set(parties(city, find_incident(city, incident_id))["household_id"])
        if households & set(report_run["warned_before"]):
            chosen = incident_id
            break
    assert chosen is not None, "no escalation of the month among the warned households"
    result = run_incident_report(
        ranked["city"], chosen, report_run["root"] / "reports", report_run["store_url"], pdf=True, now=NOW,
        prepared=city.prepared,
    )  # fmt: skip
    numbers = json.loads((result.folder / "report.json").read_text(encoding="utf-8"))
    return {"id": chosen, "result": result, "numbers": numbers}


@pytestmark_trained
def test_the_incident_analysis_holds_the_parties_history_and_prior_warnings(
    incident_run: dict, report_run: dict, city
) -> None:  # type: ignore[no-untyped-def]
    numbers = incident_run["numbers"]
    incident_id = incident_run["id"]
    cases = city.prepared.tables["cases"]
    opened = cases[cases["source_incident_id"] == incident_id]
    assert {c["case_id"] for c in numbers["cases"]} == set(opened["case_id"])
    assert any(c["violent"] for c in numbers["cases"])
    persons = city.prepared.tables["persons"].set_index("person_id")["household_id"]
    households = {h["household_id"] for h in numbers["parties"]}
    assert set(opened["person_id"].map(persons).dropna()) <= households
    incident = city.calls.set_index("incident_id").loc[incident_id]
    start = incident["received_at"].normalize() - pd.Timedelta(days=365)
    linked = city.calls[city.calls["household_id"].isin(households) & (city.calls["received_at"] >= start)]
    assert len(numbers["calls"]) == len(linked) >= 1
    assert sum(c["this_incident"] for c in numbers["calls"]) == (1 if isinstance(incident["household_id"], str) else 0)
    warned = [w for w in numbers["warnings"] if w["date"] == report_run["period"].first.isoformat()]
    assert warned and all(w["level"] == "red" and w["before"] for w in warned)
    assert len(numbers["timeline"]) == 91 * len(households)
    html = (incident_run["result"].folder / "report.html").read_text(encoding="utf-8")
    assert html.count('class="chart"') >= 2 and '<table id="parties">' in html
    assert (incident_run["result"].folder / "report.pdf").read_bytes()[:5] == b"%PDF-"


@pytestmark_trained
def test_the_incident_analysis_never_shows_a_narrative(incident_run: dict, city) -> None:  # type: ignore[no-untyped-def]
    html = (incident_run["result"].folder / "report.html").read_text(encoding="utf-8")
    text = (incident_run["result"].folder / "report.json").read_text(encoding="utf-8")
    households = {h["household_id"] for h in incident_run["numbers"]["parties"]}
    mine = city.calls["household_id"].isin(households).to_numpy()
    narratives = city.prepared.incidents.loc[mine, "narrative"].astype(str)
    assert len(narratives) >= 1
    for narrative in narratives:
        for piece in (narrative[i : i + 12] for i in range(0, max(len(narrative) - 12, 1), 6)):
            assert piece not in html and piece not in text


@pytestmark_trained
def test_an_unknown_incident_is_named_not_found_without_echoing_it(ranked: dict, city, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from pipelines.reports.data import ReportError
    from pipelines.reports.run import run_incident_report

    secret = "110101199003074512"
    with pytest.raises(ReportError) as caught:
        run_incident_report(
            ranked["city"], secret, tmp_path, "sqlite:///" + str(tmp_path / "w.db"), prepared=city.prepared
        )
    assert "not an incident_id" in str(caught.value) and secret not in str(caught.value)
    assert not any(tmp_path.iterdir())  # nothing written, not even the database


@pytestmark_trained
def test_reports_hold_no_personal_value(report_run: dict, incident_run: dict, trained: dict) -> None:
    from pii_scan import personal_values, scan

    values = personal_values(trained["root"] / "city")
    folders = [report_run["result"].folder, incident_run["result"].folder]
    assert all((f / "report.html").is_file() and (f / "report.json").is_file() for f in folders)
    findings = scan(folders, values)
    assert not findings, "\n".join(map(str, findings[:20]))


# ------------------------------------------------------------------------------- the command and the schedule


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report"], "give either --period"),
        (["report", "--period", "year"], "--period: 'year' is not one of week, month, quarter"),
        (["report", "--period", "month", "--incident", "J1"], "give either --period"),
        (["report", "--period", "month", "--end", "2024-13-01"], "--end: '2024-13-01' is not a date"),
        (["report", "--incident", "J1", "--end", "2024-12-01"], "--end: applies to --period only"),
        (["report", "--incident", "a b/c"], "--incident: the value given (5 characters) is not an incident id"),
        (["report", "--period", "week", "--db", "warnings.db"], "--db: not a database URL"),
    ],
)
def test_every_report_argument_is_checked_before_anything_loads(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.cli import app

    monkeypatch.setenv("YUJING_HOME", str(tmp_path / "var"))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert "a b/c" not in result.output


@pytestmark_trained
def test_the_cli_writes_a_week_report_and_prints_where(ranked: dict, report_run: dict, tmp_path: Path) -> None:
    yujing = Path(sys.executable).parent / "yujing"
    env = {k: v for k, v in os.environ.items() if not k.startswith("YUJING_")}
    env.update(YUJING_HOME=str(tmp_path / "var"), YUJING_RANKINGS_DIR=str(ranked["rankings"]))
    args = [str(yujing), "report", "--period", "week", "--data", str(ranked["city"]), "--db", report_run["store_url"]]
    done = subprocess.run(
        [*args, "--out", str(tmp_path / "out"), "--no-prefect", "--no-pdf"],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    folder = re.search(r"wrote (\S+)/: manifest.json, report.html, report.json \((\d+) charts, no PDF\)", done.stdout)
    assert folder and Path(folder.group(1)).name.startswith("week-") and int(folder.group(2)) >= 6
    assert "dispute calls" in done.stdout and "Traceback" not in done.stderr
    missing = subprocess.run(
        [str(yujing), "report", "--incident", "J00000000000000000", "--data", str(ranked["city"]),
         "--db", report_run["store_url"], "--out", str(tmp_path / "out"), "--no-prefect", "--no-pdf"],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert missing.returncode == 2 and "not an incident_id" in missing.stderr
    assert "J00000000000000000" not in missing.stderr


def test_the_weekly_report_is_deployed_on_its_own_cron(tmp_path: Path) -> None:
    from conf import Settings
    from pipelines.flows import report_deployment

    settings = Settings(home=tmp_path / "var", report_cron="15 8 * * 1")
    deployment = report_deployment(settings)
    assert deployment.name == "yujing-weekly-report"
    assert deployment.schedules[0].schedule.cron == "15 8 * * 1"
    assert deployment.schedules[0].schedule.timezone == "Asia/Shanghai"
    assert deployment.parameters["end"] is None  # each run reports the week to the data's latest day
    assert deployment.entrypoint.endswith("pipelines/scheduled.py:weekly_report")


@pytest.mark.slow
@pytestmark_trained
def test_the_prefect_flow_writes_the_same_numbers(
    ranked: dict, report_run: dict, tmp_path: Path, prefect_harness: None
) -> None:
    from conf import Settings
    from pipelines.flows import build_report_flow, report_parameters

    settings = Settings(home=tmp_path / "var", rankings_dir=ranked["rankings"], runs_dir=ranked["root"] / "none")
    params = report_parameters(settings, ranked["city"], tmp_path / "out", report_run["store_url"], pdf=False)
    summary = build_report_flow()(**params, period="month", end=report_run["period"].last.isoformat())
    numbers = json.loads((Path(summary["folder"]) / "report.json").read_text(encoding="utf-8"))
    for key in ("by_category", "by_county", "hot_spots", "repeat"):
        assert numbers[key] == report_run["numbers"][key], key
    assert numbers["escalations"]["summary"] == report_run["numbers"]["escalations"]["summary"]
