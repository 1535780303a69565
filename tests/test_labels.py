"""Labels from police codes: the configurable mapping, ambiguous codes, bad files, and precision against truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conf.settings import get_settings
from features.labels import (
    DEFAULT_LABELS,
    LabelMapping,
    LabelMappingError,
    dispute_labels_from_codes,
    label_noise,
    load_label_mapping,
)
from simulation.city import City

OLD_MAPPING = {  # features/labels.py before the mapping file: every other code was a negative
    "家庭纠纷": "family",
    "家庭暴力": "family",
    "邻里纠纷": "neighbor",
    "经济纠纷": "debt",
    "土地纠纷": "land",
    "劳资纠纷": "labor",
    "医疗纠纷": "medical_school",
    "物业纠纷": "property",
    "其他纠纷": "other",
}


def _old_labels(incidents: pd.DataFrame) -> pd.DataFrame:
    """The old mapping: listed codes are disputes, every other code a negative (all rows usable)."""
    return dispute_labels_from_codes(incidents, LabelMapping(OLD_MAPPING)).assign(usable=True)


def _frame(*pairs: tuple[str | None, str | None]) -> pd.DataFrame:
    return pd.DataFrame(
        {"category_l1": [a for a, _ in pairs], "category_l2": [b for _, b in pairs]},
        index=pd.RangeIndex(10, 10 + len(pairs)),
    )


def test_default_file_maps_codes_to_categories_negatives_and_ignored() -> None:
    frame = _frame(
        ("纠纷警情", "家庭纠纷"),
        ("治安警情", "家庭暴力"),
        ("治安警情", "虐待"),
        ("纠纷警情", "经济纠纷"),
        ("刑事警情", "盗窃"),
        ("治安警情", "打架斗殴"),
        ("其他警情", "其他"),
        ("群众求助", "其他求助"),
        ("治安警情", "殴打他人"),
        ("治安警情", "某个没人见过的代码"),
        (None, None),
    )
    out = dispute_labels_from_codes(frame)
    assert list(out.columns) == ["is_dispute", "category", "usable"]
    assert out.index.equals(frame.index)
    assert out["is_dispute"].dtype == bool and out["usable"].dtype == bool and out["category"].dtype == object
    assert out["is_dispute"].tolist() == [True, True, True, True] + [False] * 7
    assert out["category"].tolist() == ["family", "family", "family", "debt"] + [None] * 7
    # theft is a negative; ambiguous and unknown codes are no label at all
    assert out["usable"].tolist() == [True] * 5 + [False] * 6


def test_family_violence_and_abuse_are_family_disputes() -> None:
    mapping = load_label_mapping()
    assert mapping.label_of("治安警情", "家庭暴力") == "family"
    assert mapping.label_of("纠纷警情", "虐待") == "family"
    assert mapping.source == str(DEFAULT_LABELS)


@pytest.mark.parametrize("code", ["打架斗殴", "殴打他人", "故意伤害", "其他", "其他求助"])
def test_ambiguous_codes_are_not_negatives(code: str) -> None:
    out = dispute_labels_from_codes(_frame(("治安警情", code)))
    assert not out["usable"].iloc[0]
    assert load_label_mapping().label_of("治安警情", code) == "ignore"


def test_level1_qualified_code_wins_over_the_bare_code(tmp_path: Path) -> None:
    path = tmp_path / "labels.toml"
    path.write_text('family = ["家庭纠纷", "治安警情/打架斗殴"]\nignore = ["打架斗殴"]\nnot_dispute = ["盗窃"]\n')
    mapping = load_label_mapping(path)
    out = dispute_labels_from_codes(_frame(("治安警情", "打架斗殴"), ("纠纷警情", "打架斗殴")), mapping)
    assert out["category"].tolist() == ["family", None]
    assert out["usable"].tolist() == [True, False]


def test_settings_point_at_a_custom_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "center.toml"
    path.write_text('neighbor = ["噪音扰民"]\n')
    monkeypatch.setenv("YUJING_DISPUTE_LABELS_PATH", str(path))
    get_settings.cache_clear()
    try:
        assert load_label_mapping().codes == {"噪音扰民": "neighbor"}
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('famly = ["家庭纠纷"]\n', ["famly", "use one of", "family"]),
        ('family = ["家庭纠纷"]\nignore = ["家庭纠纷"]\n', ["家庭纠纷", "'family'", "'ignore'", "one label only"]),
        ('family = ["家庭纠纷", "家庭纠纷"]\n', ["家庭纠纷", "twice", "one label only"]),
        ('family = ["家庭纠纷"]\nfamily = ["虐待"]\n', ["not valid TOML", "line 2"]),
        ('family = "家庭纠纷"\n', ["'family' must be a list"]),
        ('family = ["公安警情/家庭纠纷"]\n', ["公安警情/家庭纠纷", "level-1"]),
        ('ignore = ["其他"]\n', ["no code maps to a dispute category"]),
    ],
)
def test_bad_entries_raise_one_clear_line(tmp_path: Path, text: str, names: list[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(LabelMappingError) as info:
        load_label_mapping(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    for name in names:
        assert name in message


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LabelMappingError, match="cannot read"):
        load_label_mapping(tmp_path / "nope.toml")


def test_label_noise_counts_usable_rows_only() -> None:
    coded = pd.DataFrame(
        {
            "is_dispute": [True, False, False, False],
            "category": ["family", None, None, None],
            "usable": [True, True, False, False],
        }
    )
    truth = pd.DataFrame({"is_dispute": [True, False, True, True], "category": ["family", None, "family", "debt"]})
    noise = label_noise(coded, truth)
    assert noise["usable_share"] == 0.5
    assert noise["coded_precision"] == 1.0 and noise["coded_recall"] == 1.0 and noise["negative_precision"] == 1.0
    old = label_noise(coded.drop(columns="usable").assign(usable=True), truth)
    assert old["coded_recall"] == pytest.approx(1 / 3, abs=1e-3)


def test_usable_labels_are_more_precise_than_the_old_mapping(small_city: tuple[City, Path]) -> None:
    city, _ = small_city
    incidents = city.tables["incidents"]
    truth = city.truth["incidents"].set_index("incident_id").loc[incidents["incident_id"]].reset_index()
    new = label_noise(dispute_labels_from_codes(incidents), truth)
    old = label_noise(_old_labels(incidents), truth)
    assert 0.5 < new["usable_share"] < 0.95
    assert new["label_accuracy"] > old["label_accuracy"] + 0.02  # usable labels agree with truth more often
    assert new["negative_precision"] > old["negative_precision"] + 0.03  # violent disputes are no longer negatives
    assert new["coded_precision"] >= old["coded_precision"] - 0.005
    assert new["coded_recall"] > old["coded_recall"]
    # violent family calls: the old mapping taught a large share of them as "not a dispute"
    family = (truth["category"] == "family").to_numpy() & truth["true_violence"].to_numpy(bool)
    new_labels = dispute_labels_from_codes(incidents)
    taught_negative = ~new_labels["is_dispute"].to_numpy() & new_labels["usable"].to_numpy()
    old_labels = _old_labels(incidents)
    assert float(np.mean(taught_negative[family])) < 0.01
    assert float(np.mean(~old_labels["is_dispute"].to_numpy()[family])) > 0.15
