"""Scoring warning models (积分预警): the five scenarios, the brief's red case, windows and config."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from models.levels import LEVELS
from models.warning import load_scenarios, score_warnings
from pipelines.batch import warn_frame


def _calls(key: str, rows: list[tuple[str, str]]) -> list[dict[str, object]]:
    return [
        {"id": f"{key}-{i}", "household_id": key, "received_at": pd.Timestamp(t), "narrative": text}
        for i, (t, text) in enumerate(rows)
    ]


# The brief: a woman called 110 six times in under three months over marital conflict that
# included physical fights with her husband; the model raised a red warning.
RED_CASE = [
    ("2024-01-05 21:10", "称与丈夫发生争吵，丈夫动手打了她"),
    ("2024-01-21 22:40", "称被老公殴打，脸上有伤"),
    ("2024-02-11 20:05", "反映丈夫酒后又动手打人，夫妻双方发生撕扯"),
    ("2024-02-27 23:15", "称丈夫推搡她，把她推倒在地"),
    ("2024-03-12 21:30", "称又被丈夫打了，已经是第五次报警"),
    ("2024-03-28 22:00", "称与丈夫打架，丈夫扇她耳光，要离婚"),
]


def _by_key(frame: pd.DataFrame, key: str = "household_id") -> dict[str, dict[str, object]]:
    return {row[key]: row for row in frame.to_dict("records")}


def test_brief_red_case_is_red_under_the_family_model() -> None:
    result = _by_key(warn_frame(_calls("H1", RED_CASE), "2024-03-28", "household_id"))["H1"]
    assert result["scenarios"]["family"]["level"] == "red"
    assert result["level"] == "red"
    reasons = " ".join(result["reasons"])
    assert "近90天相关报警" in reasons and "动手/殴打" in reasons


def test_fewer_calls_without_violence_stay_low() -> None:
    calm = [("2024-03-01 20:00", "称与丈夫因家务琐事发生口角，未动手"), ("2024-03-20 20:00", "称与丈夫吵架，无人受伤")]
    result = _by_key(warn_frame(_calls("H2", calm), "2024-03-28", "household_id"))["H2"]
    assert result["scenarios"]["family"]["level"] in (None, "blue")
    assert result["scenarios"]["family"]["points"] < 8


@pytest.mark.parametrize(
    ("scenario", "rows", "lowest"),
    [
        (
            "neighbor",
            [
                ("2024-05-02 19:00", "称楼上邻居装修噪音太大，双方发生争吵"),
                ("2024-05-20 20:00", "又来电，楼上邻居天天噪音扰民，对方扬言要打他"),
                ("2024-05-28 21:00", "称与楼上邻居因噪音问题打起来了，对方拿着菜刀"),
            ],
            "orange",
        ),
        (
            "debt_property",
            [
                ("2024-06-01 10:00", "称对方欠钱不还，去要账发生争执"),
                ("2024-06-15 11:00", "再次报警，讨债时对方扬言要弄死他"),
                ("2024-06-25 12:00", "称去要账被对方持刀威胁，对方喝了酒"),
            ],
            "orange",
        ),
        (
            "repeat_caller",
            [(f"2024-07-{d:02d} 09:00", "称家门口有人吵闹，请民警到场") for d in (1, 6, 11, 16, 21, 26)],
            "orange",
        ),
        (
            "escalation",
            [
                ("2024-08-01 22:00", "称与前男友发生纠纷，前男友扬言要同归于尽"),
                ("2024-08-10 23:00", "称前男友持刀到家中闹事，把她打伤了"),
            ],
            "orange",
        ),
    ],
)
def test_each_scenario_raises_a_warning(scenario: str, rows: list[tuple[str, str]], lowest: str) -> None:
    as_of = rows[-1][0][:10]
    result = _by_key(warn_frame(_calls("HX", rows), as_of, "household_id"))["HX"]
    level = result["scenarios"][scenario]["level"]
    assert level is not None, result["scenarios"]
    assert LEVELS.index(level) <= LEVELS.index(lowest), (scenario, result["scenarios"][scenario])


def test_deescalation_lowers_points() -> None:
    rows = [("2024-03-01 20:00", "称被丈夫殴打"), ("2024-03-10 20:00", "称丈夫又动手打人")]

    def family_points(third: str) -> float:
        calls = _calls("H", [*rows, ("2024-03-15 10:00", third)])
        return _by_key(warn_frame(calls, "2024-03-20", "household_id"))["H"]["scenarios"]["family"]["points"]

    plain = family_points("称与丈夫发生矛盾")
    mediated = family_points("称与丈夫发生矛盾，已调解")
    assert mediated == plain + load_scenarios()["family"].deescalation


def test_calls_after_as_of_are_ignored_and_old_ones_fall_out_of_the_window() -> None:
    base = _calls("H1", RED_CASE)
    as_of = "2024-03-28"
    first = warn_frame(base, as_of, "household_id")
    future = [*base, *_calls("H1", [("2024-03-29 01:00", "称丈夫持刀砍人，扬言杀了她")])]
    future[-1]["id"] = "future"
    again = warn_frame(future, as_of, "household_id")
    pd.testing.assert_frame_equal(first, again)
    late = _by_key(warn_frame(base, "2024-07-20", "household_id"))["H1"]
    assert late["points"] == 0 and late["level"] is None  # every call is older than 90 days


def test_every_group_gets_a_row_even_without_points() -> None:
    frame = warn_frame(_calls("H9", [("2024-01-01 10:00", "称钱包丢了")]), "2024-01-02", "household_id")
    assert list(frame["household_id"]) == ["H9"]
    row = frame.iloc[0]
    assert row["points"] == 0 and row["level"] is None and row["scenario"] is None


def test_party_key_groups_pairs_of_parties() -> None:
    calls = _calls("P1|P2", RED_CASE)
    for call in calls:
        call["party_key"] = call.pop("household_id")
    frame = warn_frame(calls, "2024-03-28", "party_key")
    assert list(frame["party_key"]) == ["P1|P2"] and frame["level"].iloc[0] == "red"


def test_levels_follow_thresholds() -> None:
    family = load_scenarios()["family"]
    t = family.thresholds
    points = pd.Series([t["red"], t["red"] - 0.01, t["orange"], t["yellow"], t["blue"], t["blue"] - 0.01])
    assert list(family.level(points.to_numpy())) == ["red", "orange", "orange", "yellow", "blue", None]


def test_scenarios_file_is_checked(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[1] / "conf" / "warning_models.toml").read_text(encoding="utf-8")
    assert set(load_scenarios()) == {"family", "neighbor", "debt_property", "repeat_caller", "escalation"}
    broken = tmp_path / "w.toml"
    broken.write_text(text.replace("thresholds = { red = 20, orange = 14", "thresholds = { red = 10, orange = 14", 1))
    with pytest.raises(ValueError, match="'family' thresholds must fall from red to blue"):
        load_scenarios(broken)
    broken.write_text(text.replace("per_call = 2\n", "", 1))
    with pytest.raises(ValueError, match="lacks field 'per_call'"):
        load_scenarios(broken)
    broken.write_text("version = 1\n")
    with pytest.raises(ValueError, match="no \\[scenarios"):
        load_scenarios(broken)


def test_score_warnings_needs_only_rule_columns() -> None:
    frame = pd.DataFrame(
        {
            "household_id": ["A", "A", "B"],
            "received_at": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-02"]),
            "is_dispute": [True, True, True],
            "category": ["family", "family", "debt"],
            "n_deescalation": [0, 0, 0],
            **{
                f"cue_{g}": [1, 1, 0] if g == "violence" else [0, 0, 0]
                for g in ("violence", "weapon", "injury", "threat", "alcohol", "self_harm", "separation", "repeat")
            },
        }
    )
    out = _by_key(score_warnings(frame, "2024-01-02"))
    # family: 2 calls * 2 + min(12, 2 * 3) violence + 2 recency = 12 -> yellow (acceleration needs >= 2 recent
    # calls and more than the earlier share: both calls are recent, so +3) = 15 -> orange
    assert out["A"]["scenarios"]["family"]["points"] == 15.0
    assert out["A"]["scenarios"]["family"]["level"] == "orange"
    assert out["B"]["scenarios"]["debt_property"]["points"] == 4.0  # 1 call * 2 + recency 2
