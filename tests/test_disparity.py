"""The disparity audit: group attributes at a date, fairlearn's numbers per group, ratios, flags and their order."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.groups import age_band, groups_at
from models.disparity import Thresholds, disparity_table, metric_frame, warned_at_top_k, wilson
from models.evaluation import top_k_chosen

THRESHOLDS = Thresholds(ratio_low=0.8, ratio_high=1.25, min_n=30, min_expected=5, level=0.95)


def _group(name: str, rows: int, warned: int, positives: int, hits: int) -> pd.DataFrame:
    """``rows`` one-row households: the first ``warned`` are warned, ``hits`` of those and ``positives - hits``
    of the rest escalated."""
    w = np.arange(rows) < warned
    y = np.zeros(rows, bool)
    y[:hits] = True
    y[warned : warned + positives - hits] = True
    return pd.DataFrame({"county": name, "warned": w, "y": y, "household": [f"{name}{i}" for i in range(rows)]})


@pytest.fixture
def frame() -> pd.DataFrame:
    """A: the reference (200 rows); B: warned 2.5× as often (100 rows); C: as often as B but only 6 rows."""
    return pd.concat(
        [_group("A", 200, 40, 20, 10), _group("B", 100, 50, 10, 8), _group("C", 6, 3, 1, 1)], ignore_index=True
    )


def _rows(frame: pd.DataFrame) -> list[dict]:
    return disparity_table(
        frame[["county"]], frame["warned"].to_numpy(), frame["household"].to_numpy(), frame["y"].to_numpy(),
        n_boot=200, seed=1, thresholds=THRESHOLDS,
    )  # fmt: skip


def _row(rows: list[dict], group: str, metric: str) -> dict:
    return next(r for r in rows if r["group"] == group and r["metric"] == metric)


def test_group_rates_are_fairlearns_and_equal_the_hand_counts(frame: pd.DataFrame) -> None:
    by_group = metric_frame(frame["y"], frame["warned"], frame["county"]).by_group
    assert by_group.loc["A"].to_dict() == pytest.approx(
        {"warning_rate": 0.2, "precision": 0.25, "recall": 0.5, "fpr": 30 / 180, "fnr": 0.5}
    )
    assert by_group.loc["B"].to_dict() == pytest.approx(
        {"warning_rate": 0.5, "precision": 0.16, "recall": 0.8, "fpr": 42 / 90, "fnr": 0.2}
    )
    rows = _rows(frame)
    b = _row(rows, "B", "warning_rate")
    assert (b["value"], b["n"], b["households"], b["reference"], b["ratio"]) == (0.5, 100, 100, "A", 2.5)
    assert b["ci"][0] < 0.5 < b["ci"][1] and b["ratio_ci"][0] > 1.25  # surely more often warned than A
    assert _row(rows, "A", "warning_rate")["status"] == "reference"


def test_a_ratio_outside_the_band_is_flagged_and_shown_first(frame: pd.DataFrame) -> None:
    rows = _rows(frame)
    statuses = [r["status"] for r in rows]
    flagged = [(r["group"], r["metric"]) for r in rows if r["status"] == "flagged"]
    assert statuses[: len(flagged)] == ["flagged"] * len(flagged) and "flagged" not in statuses[len(flagged) :]
    # the furthest from 1 first: B's false-positive rate is 2.8× A's, its warning rate 2.5×
    assert flagged[:2] == [("B", "fpr"), ("B", "warning_rate")]
    assert _row(rows, "B", "fpr")["ratio"] == pytest.approx((42 / 90) / (30 / 180), abs=1e-3)
    # B's 10 escalations are too few to judge recall (n < 30): shown with n, not flagged
    recall = _row(rows, "B", "recall")
    assert (recall["n"], recall["status"]) == (10, "small")


def test_a_tiny_group_is_shown_with_its_n_and_never_flagged(frame: pd.DataFrame) -> None:
    rows = [r for r in _rows(frame) if r["group"] == "C"]
    assert {r["status"] for r in rows} == {"small"}
    rate = _row(rows, "C", "warning_rate")
    assert (rate["value"], rate["ratio"], rate["n"]) == (0.5, 2.5, 6)  # as uneven as B, but 6 rows say little


def test_clustered_rows_make_a_wide_interval_that_is_not_flagged(frame: pd.DataFrame) -> None:
    """40 rows of only two households (one always warned, one never): n is large, the evidence is two families."""
    d = pd.DataFrame({"county": "D", "warned": np.arange(40) < 20, "y": False, "household": ["D0"] * 20 + ["D1"] * 20})
    row = _row(_rows(pd.concat([frame, d], ignore_index=True)), "D", "warning_rate")
    assert (row["ratio"], row["n"], row["households"]) == (2.5, 40, 2)
    assert row["status"] == "uninformative"


def test_a_group_without_events_shows_a_wilson_interval_not_zero_width() -> None:
    assert wilson(0, 100, 0.95) == [0.0, pytest.approx(0.037, abs=1e-3)]
    d = pd.concat([_group("A", 300, 60, 30, 15), _group("B", 200, 0, 0, 0)], ignore_index=True)
    rows = _rows(d)
    assert _row(rows, "B", "warning_rate")["ci"] == wilson(0, 200, 0.95)


def test_warned_is_the_station_top_k_of_each_date() -> None:
    scores = np.array([0.9, 0.1, 0.5, 0.7, 0.2, 0.3])
    station = pd.Series(["S1", "S1", "S1", "S2", "S2", "S2"])
    dates = pd.Series(pd.to_datetime(["2024-01-01"] * 6))
    warned = warned_at_top_k(scores, station, dates, 2)
    assert warned.tolist() == [True, False, True, True, False, True]
    groups = pd.DataFrame({"station_id": station, "snapshot_date": dates})
    assert (warned == top_k_chosen(scores, groups, 2)).all()


def test_groups_are_the_heads_at_the_date() -> None:
    tables = {
        "addresses": pd.DataFrame({"address_id": ["a1", "a2"], "county_name": ["科尔沁区", "开鲁县"]}),
        "households": pd.DataFrame(
            {
                "household_id": ["h1", "h2"],
                "address_id": ["a1", "a2"],
                "head_person_id": ["p1", "p9"],  # p9 is not in the registry
                "household_type": ["registered", "floating"],
            }
        ),
        "persons": pd.DataFrame(
            {
                "person_id": ["p1", "p2"],
                "ethnicity": ["蒙古族", "汉族"],
                "sex": ["F", "M"],
                "birth_date": pd.to_datetime(["1994-06-15", "1950-01-01"]),
            }
        ),
    }
    dates = pd.Series(pd.to_datetime(["2024-06-14", "2024-06-15", "2024-06-15"]))
    out = groups_at(tables, pd.Series(["h1", "h1", "h2"]), dates)
    assert out.to_dict("records") == [
        {"county": "科尔沁区", "ethnicity": "蒙古族", "sex": "F", "residence": "registered", "age_band": "<30"},
        {"county": "科尔沁区", "ethnicity": "蒙古族", "sex": "F", "residence": "registered", "age_band": "30-44"},
        {"county": "开鲁县", "ethnicity": "unknown", "sex": "unknown", "residence": "floating", "age_band": "unknown"},
    ]
    bands = age_band(pd.Series(pd.to_datetime(["1980-03-01"] * 3)), pd.Series(pd.to_datetime(
        ["2025-02-28", "2025-03-01", "2040-03-01"])))  # fmt: skip
    assert bands.tolist() == ["30-44", "45-59", "60+"]


def _period_tables(n_a: int, n_b: int) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Households of county A (``n_a``) and B (``n_b``), each with one call on 2024-03-10."""
    ids = [f"A{i}" for i in range(n_a)] + [f"B{i}" for i in range(n_b)]
    tables = {
        "addresses": pd.DataFrame({"address_id": ["a", "b"], "county_name": ["A县", "B县"]}),
        "households": pd.DataFrame(
            {
                "household_id": ids,
                "address_id": ["a" if i.startswith("A") else "b" for i in ids],
                "head_person_id": [f"p{i}" for i in ids],
                "household_type": "registered",
            }
        ),
        "persons": pd.DataFrame(
            {
                "person_id": [f"p{i}" for i in ids],
                "ethnicity": "汉族",
                "sex": "M",
                "birth_date": pd.Timestamp("1970-01-01"),
            }
        ),
    }
    calls = pd.DataFrame({"household_id": ids, "received_at": pd.Timestamp("2024-03-10 09:00")})
    return tables, calls


def test_the_period_report_section_flags_the_county_warned_three_times_as_often() -> None:
    import datetime as dt

    from pipelines.reports.disparity import period_disparity
    from web.render import environment

    tables, calls = _period_tables(300, 100)
    warned = [f"A{i}" for i in range(30)] + [f"B{i}" for i in range(30)]  # A: 10 %, B: 30 %
    history = pd.DataFrame(
        {"household_id": [*warned, "A299"], "date": ["2024-03-02"] * 60 + ["2024-02-01"], "level": "red"}
    )  # the last one is a ranking before the period: not counted
    escalations = pd.DataFrame(
        {"household_id": ["A1", "B50"], "opened_at": pd.to_datetime(["2024-03-20", "2024-03-21"]),
         "published_level": ["red", None]}
    )  # fmt: skip
    first, last = dt.date(2024, 3, 1), dt.date(2024, 3, 31)
    d = period_disparity(tables, calls, history, escalations, first, last, (dt.date(2024, 3, 2), dt.date(2024, 4, 1)))
    w = d["warnings"]
    assert (w["households"], w["warned"], d["warnings_in_database"]) == (400, 60, 60)
    county = next(r for r in w["rows"] if r["attribute"] == "county")
    assert (county["group"], county["reference"], county["value"], county["ratio"], county["n"], county["hits"]) == (
        "B县", "A县", 0.3, 3.0, 100, 30)  # fmt: skip
    assert county["status"] == "flagged" and w["rows"][0] is county and w["summary"]["flagged"] == 1
    e = d["escalations"]
    assert (e["households"], e["warned"]) == (2, 1)
    assert {r["status"] for r in e["rows"]} == {"small"}  # two escalations judge nothing
    html = str(environment().get_template("report/_disparity.html").module.disparity_section(d))
    first_row = html.index('<tr data-status="flagged" class="hot"><td>县区</td><td>B县（A县）</td>')
    assert first_row < html.index('data-status="reference"') and "需关注" in html
    assert '<table id="disparity-escalations">' in html


@pytest.mark.xdist_group("trained")
def test_the_training_report_carries_the_disparity_table_and_capacity_curve(trained: dict) -> None:
    from models import registry

    run_dir: Path = trained["root"] / "run1"
    report = trained["report"]
    disparity = json.loads((run_dir / "disparity.json").read_text(encoding="utf-8"))
    assert set(disparity["rows"]) == {"model", "rules"}
    assert {r["attribute"] for r in disparity["rows"]["model"]} == {
        "county",
        "ethnicity",
        "sex",
        "residence",
        "age_band",
    }
    assert report["disparity"]["summary"] == disparity["summary"]
    assert disparity["period"]["rows"] == report["escalation"]["rows"]["test"]
    capacity = json.loads((run_dir / "capacity.json").read_text(encoding="utf-8"))
    assert capacity["k"] == list(range(1, 21)) and capacity["positives"] == report["escalation"]["positives"]["test"]
    # 5 visits a week is the report's recall@5: the same rows, the same top-k rule
    assert capacity["city"]["model"]["week"]["recall"][4] == report["escalation"]["model"]["recall_at_k"]
    assert capacity["city"]["rules"]["week"]["recall"][4] == report["escalation"]["rules"]["recall_at_k"]
    markdown = (run_dir / "report.md").read_text(encoding="utf-8")
    assert (
        "## Disparity audit" in markdown and "## Capacity" in markdown and "![Capacity curve](capacity.png)" in markdown
    )
    assert (run_dir / "capacity.png").stat().st_size > 10_000
    run = registry._client(trained["uri"]).get_run(report["mlflow"]["run_id"])
    assert run.data.metrics["disparity.flagged"] == disparity["summary"]["model"]["flagged"]
    assert run.data.metrics["capacity.recall_k5_day"] == capacity["city"]["model"]["day"]["recall"][4]
    logged = {a.path for a in registry._client(trained["uri"]).list_artifacts(run.info.run_id)}
    assert {"disparity.json", "capacity.json", "capacity.png"} <= logged
