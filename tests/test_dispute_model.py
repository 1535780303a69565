"""The incident-level dispute model (models.dispute, models.text_features) against the rules.

One small city (40,000 persons, one year, ~4,200 calls) is simulated and the model
trained once per module; real text is read from ../shared/realtext and the tests that
need it skip with a reason when it is absent.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from conftest import coverage_module

from features.lexicon import CATEGORIES
from features.text import mask
from models.dispute import (
    CLASSES,
    MONOTONE,
    DisputeModel,
    fuse,
    fuse_one,
    join_truth,
    labels_of,
    rule_predictions,
    split_incidents_by_time,
    train_dispute_model,
    tune_threshold,
)
from models.evaluation import dispute_metrics
from models.rules import rule_feature_names, rule_features
from models.text_features import SMALL_BATCH, IncidentFeaturizer, person_name_words, rule_matrix
from simulation.city import simulate_city
from simulation.config import SimConfig

REPO = Path(__file__).resolve().parents[1]
CITY = SimConfig(persons=40_000, days=365, seed=11)

F1_MARGIN = 0.10
"""Model F1 minus rules F1 on the held-out period (seed 11: model 0.95, structural rules 0.77)."""


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    city = simulate_city(CITY)
    return join_truth(city.tables["incidents"], city.truth["incidents"])


@pytest.fixture(scope="module")
def splits(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    train, tune, test = split_incidents_by_time(frame)
    return train, tune, test


@pytest.fixture(scope="module")
def model(splits: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> DisputeModel:
    train, tune, _ = splits
    return train_dispute_model(train, tune)


# -- split ---------------------------------------------------------------------------------------------


def test_split_is_temporal_with_whole_days(frame: pd.DataFrame, splits: tuple[pd.DataFrame, ...]) -> None:
    train, tune, test = splits
    assert len(train) + len(tune) + len(test) == len(frame)
    days = [set(s["received_at"].dt.normalize()) for s in splits]
    assert not (days[0] & days[1]) and not (days[1] & days[2]) and not (days[0] & days[2])
    assert train["received_at"].max() < tune["received_at"].min()
    assert tune["received_at"].max() < test["received_at"].min()
    for part, share in zip(splits, (0.6, 0.2, 0.2), strict=True):
        assert abs(len(part) / len(frame) - share) < 0.03


def test_split_rejects_missing_times() -> None:
    df = pd.DataFrame({"received_at": [datetime(2024, 1, 1), None]})
    with pytest.raises(ValueError, match="without"):
        split_incidents_by_time(df)


# -- the model against the rules -------------------------------------------------------------------------


def test_model_beats_rules_on_held_out_period(
    model: DisputeModel, splits: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]
) -> None:
    _, _, test = splits
    texts = test["narrative"].tolist()
    m_out = model.predict(texts, test["received_at"].tolist())
    r_out = rule_predictions(texts)
    f_out = fuse(m_out, r_out)
    y, cat = test["is_dispute"], test["category"]
    rules = dispute_metrics(y, r_out["is_dispute"], cat, r_out["category"])
    mine = dispute_metrics(y, m_out["is_dispute"], cat, m_out["category"])
    fused = dispute_metrics(y, f_out["is_dispute"], cat, f_out["category"])
    assert mine["f1"] >= rules["f1"] + F1_MARGIN, (mine, rules)
    assert mine["precision"] > rules["precision"]
    # category: +0.04 to +0.12 measured; the model must at least not lose it
    assert mine["category_accuracy"] >= rules["category_accuracy"] - 0.02, (mine, rules)
    # simulated 110 text of a later period is in distribution, so the model may add to the rules there;
    # the fused answer is never below the rules (issue 9) and keeps their recall
    assert m_out["ood"].mean() < 0.01
    assert fused["f1"] >= rules["f1"], (fused, rules)
    assert fused["recall"] >= rules["recall"], (fused, rules)
    assert fused["category_accuracy"] >= rules["category_accuracy"], (fused, rules)


def test_threshold_and_artifact_shape(model: DisputeModel) -> None:
    assert 0.0 < model.threshold < 1.0
    assert float(np.float32(model.threshold)) == model.threshold  # ONNX compares float32
    assert model.classes == CLASSES == ("none", *CATEGORIES)
    assert model.booster.num_trees() <= 150 and model.category_booster.num_trees() <= 150 * len(CATEGORIES)
    assert model.featurizer.feature_names == model.booster.feature_name()


def test_predict_columns_and_predict_one(
    model: DisputeModel, splits: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]
) -> None:
    _, _, test = splits
    head = test.head(40)
    out = model.predict(head["narrative"].tolist(), head["received_at"].tolist())
    p = out[[f"p_{c}" for c in CLASSES]].to_numpy()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(out["dispute_score"], 1.0 - out["p_none"])
    assert (out["is_dispute"] == (out["dispute_score"] >= model.threshold)).all()
    assert out.loc[~out["is_dispute"], "category"].isna().all()
    assert out.loc[out["is_dispute"], "category"].isin(CATEGORIES).all()
    for i in (0, 1, 2):
        one = model.predict_one(head["narrative"].iloc[i], head["received_at"].iloc[i])
        row = out.iloc[i]
        assert one["is_dispute"] == row["is_dispute"] and one["category"] == row["category"]
        assert one["dispute_score"] == pytest.approx(row["dispute_score"], abs=1e-12)


# -- featurizer ------------------------------------------------------------------------------------------


def test_featurizer_round_trip_gives_identical_matrices(
    model: DisputeModel, splits: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]
) -> None:
    _, _, test = splits
    texts, times = test["narrative"].tolist()[:500], test["received_at"].tolist()[:500]
    state = json.loads(json.dumps(model.featurizer.to_dict(), ensure_ascii=False))
    rebuilt = IncidentFeaturizer.from_dict(state)
    np.testing.assert_array_equal(rebuilt.transform(texts, times), model.featurizer.transform(texts, times))
    assert rebuilt.feature_names == model.featurizer.feature_names
    again = DisputeModel.from_dict(json.loads(json.dumps(model.to_dict(), ensure_ascii=False)))
    pd.testing.assert_frame_equal(again.predict(texts, times), model.predict(texts, times))


def test_from_dict_refuses_another_lexicon(model: DisputeModel) -> None:
    state = model.featurizer.to_dict()
    state["lexicon_version"] = "000000000000"
    with pytest.raises(ValueError, match="lexicon"):
        IncidentFeaturizer.from_dict(state)
    assert IncidentFeaturizer.from_dict(state, strict=False).vocabulary == model.featurizer.vocabulary


def test_same_seed_same_model(model: DisputeModel, splits: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> None:
    train, tune, test = splits
    twin = train_dispute_model(train, tune)
    assert twin.featurizer.vocabulary == model.featurizer.vocabulary
    assert twin.threshold == model.threshold and twin.info == model.info
    texts, times = test["narrative"].tolist(), test["received_at"].tolist()
    pd.testing.assert_frame_equal(twin.predict(texts, times), model.predict(texts, times))


def test_matrix_is_float32_and_finite(model: DisputeModel, splits: tuple[pd.DataFrame, ...]) -> None:
    _, _, test = splits
    odd = ["", None, "报警：", "x" * 5000, "2018年5月3日21时30分许，被告人王某因琐事与被害人发生争执，持刀将其刺伤。"]
    texts = test["narrative"].tolist()[:200] + odd
    times = [*test["received_at"].tolist()[:200], None, pd.NaT, float("nan"), "2024-02-30", None]
    x = model.featurizer.transform(texts, times)
    assert x.dtype == np.float32 and x.shape == (len(texts), len(model.featurizer.feature_names))
    assert np.isfinite(x).all()
    names = model.featurizer.feature_names
    assert not any("received" in n or "timestamp" in n for n in names)
    has_time = x[:, names.index("has_time")]
    assert has_time[:200].all() and not has_time[200:].any()
    assert model.featurizer.transform([], []).shape == (0, len(names))


def test_header_time_is_used_when_received_at_is_missing(model: DisputeModel) -> None:
    text = "2024年4月11日 21时26分17秒 张女士( 135****9668 ) 报警：称被丈夫殴打，头部受伤。"
    f = model.featurizer
    a = f.transform([text], [datetime(2024, 4, 11, 21, 26, 17)])
    b = f.transform([text], None)
    np.testing.assert_array_equal(a, b)
    names = f.feature_names
    assert a[0, names.index("hour_cos")] == pytest.approx(np.cos(2 * np.pi * (21 + 26 / 60) / 24), abs=1e-6)
    assert a[0, names.index("weekday")] == 3.0  # a Thursday


def test_personal_data_does_not_change_features(model: DisputeModel) -> None:
    """Phones, IDs and the caller's name are masked before any feature is read."""
    template = (
        "2024年4月11日 21时26分17秒 {name}( {phone}，{id} ) 报警：科尔沁区某小区4号楼1单元302室，"
        "称被丈夫殴打，丈夫电话{phone2}，{name}头部受伤，身份证号{id}，不需要120。"
    )
    variants = [
        {"name": "张伟", "phone": "13512345678", "id": "150502198001012829", "phone2": "13698765432"},
        {"name": "李强", "phone": "135****9668", "id": "1505**********2829", "phone2": "18811112222"},
        {"name": "巴特尔", "phone": "15947561234", "id": "15052319920202345X", "phone2": "0475-8231234"},
    ]
    texts = [template.format(**v) for v in variants]
    x = model.featurizer.transform(texts, [datetime(2024, 4, 11, 21, 26)] * len(texts))
    for row in x[1:]:
        np.testing.assert_array_equal(row, x[0])
    assert x[0, model.featurizer.feature_names.index("cue_violence")] == 1.0


def test_dictionary_person_names_are_pseudonymised(model: DisputeModel) -> None:
    """Names jieba knows as words (王建国) become one placeholder token; none reaches the artifact."""
    names = person_name_words()
    assert {"王建国", "张志强", "巴特尔"} <= names
    assert not {"扬言", "老公", "丈夫", "家暴"} & names  # lexicon and user-dictionary words stay words
    text = "2024年4月11日 21时26分17秒 匿名( 135****9668 ) 报警：称其与邻居{}因漏水发生纠纷，{}动手打人。"
    x = model.featurizer.transform([text.format(n, n) for n in ("王建国", "张志强", "巴特尔")])
    for row in x[1:]:
        np.testing.assert_array_equal(row, x[0])
    state = model.featurizer.to_dict()
    stored = set(state["vocabulary"]) | set(state["known_tokens"])
    assert not stored & names


def test_single_incident_path_equals_batch_path(model: DisputeModel, splits: tuple[pd.DataFrame, ...]) -> None:
    """Small batches read the rules through score_text, large ones through rule_features: no skew."""
    _, _, test = splits
    texts, times = test["narrative"].tolist()[:300], test["received_at"].tolist()[:300]
    texts += ["报警：双方发生口角，未动手，已调解。", "报警：称被丈夫殴打，未受伤，双方和解，已离开现场。"]
    times += [None, None]
    assert len(texts) > SMALL_BATCH
    batch = model.featurizer.transform(texts, times)
    one_by_one = np.vstack([model.featurizer.transform([t], [w]) for t, w in zip(texts, times, strict=True)])
    np.testing.assert_array_equal(one_by_one, batch)
    masked = [mask(t) for t in texts]
    np.testing.assert_array_equal(
        np.vstack([rule_matrix([t]) for t in masked]), rule_features(masked)[rule_feature_names()].to_numpy(float)
    )


def test_featurizer_is_deterministic_and_ties_are_stable() -> None:
    texts = ["报警：与丈夫吵架", "报警：邻居噪音", "报警：手机丢了", "报警：欠钱不还"] * 5
    labels = ["family", "neighbor", "none", "debt"] * 5
    a = IncidentFeaturizer(n_tokens=5, min_df=2).fit(texts, None, labels)
    b = IncidentFeaturizer(n_tokens=5, min_df=2).fit(list(reversed(texts)), None, list(reversed(labels)))
    assert a.vocabulary == b.vocabulary and len(a.vocabulary) == 5
    with pytest.raises(RuntimeError, match="not fitted"):
        IncidentFeaturizer().transform(["报警：x"])


# -- threshold and fusion --------------------------------------------------------------------------------


def test_tune_threshold_maximises_f1() -> None:
    y = np.array([0, 0, 0, 1, 1, 1], dtype=bool)
    s = np.array([0.05, 0.1, 0.4, 0.45, 0.8, 0.9])
    t = tune_threshold(y, s)
    assert 0.4 < t <= 0.45
    assert float(np.float32(t)) == t


@pytest.mark.parametrize(
    ("rules", "model", "expected"),
    [
        # (is, score, category, strong), (P(dispute), top category, ood) -> (is, category, source)
        ((True, 0.9, "family", True), (0.01, "debt", False), (True, "family", "rules")),  # strong: never dropped
        ((True, 0.6, "other", False), (0.001, "debt", False, 0.5), (True, "other", "rules")),  # never dropped
        ((True, 0.6, "other", False), (0.30, "debt", False, 0.9), (True, "debt", "both")),  # residual refined
        ((True, 0.6, "other", False), (0.30, "debt", False, 0.5), (True, "other", "rules")),  # not sure of it
        ((True, 0.9, "other", True), (0.80, "labor", False, 0.99), (True, "other", "rules")),  # strong: untouched
        ((True, 0.6, "land", False), (0.99, "family", False, 0.99), (True, "land", "rules")),
        ((False, 0.3, None, False), (0.99, "debt", False), (True, "debt", "model")),  # missed, model sure: added
        ((False, 0.3, None, False), (0.90, "debt", False), (False, None, "rules")),  # not sure enough
        ((False, 0.49, None, True), (0.999, "family", False), (False, None, "rules")),  # an exclusion spoke
        ((True, 0.6, "other", False), (0.0, "debt", True), (True, "other", "rules")),  # OOD: the rules, whole
        ((False, 0.2, None, False), (1.0, "debt", True), (False, None, "rules")),
    ],
)
def test_fusion_policy_only_adds_to_the_rules(rules: tuple, model: tuple, expected: tuple) -> None:
    is_dispute, _score, category, source = fuse_one(*rules, *model)
    assert (is_dispute, category, source) == expected


def test_fuse_equals_fuse_one_row_by_row() -> None:
    rng = np.random.default_rng(3)
    n = 400
    cats = np.array(CATEGORIES, dtype=object)
    r_is = rng.random(n) < 0.5
    r = pd.DataFrame(
        {
            "is_dispute": r_is,
            "dispute_score": np.where(r_is, rng.uniform(0.5, 1, n), rng.uniform(0, 0.49, n)),
            "category": pd.Series(np.where(r_is, rng.choice(cats, n), None), dtype=object),
            "strong": rng.random(n) < 0.5,
        }
    )
    score = rng.choice([0.0, 0.01, 0.3, 0.95, 0.96, 1.0], n)  # ties at the cut points included
    conf = rng.choice([0.5, 0.8, 0.81, 1.0], n)
    m = pd.DataFrame(
        {"dispute_score": score, "top_category": rng.choice(cats, n), "ood": rng.random(n) < 0.2,
         "category_confidence": conf}
    )  # fmt: skip
    out = fuse(m, r)
    for i in range(n):
        one = fuse_one(
            bool(r_is[i]), float(r.dispute_score[i]), r.category[i], bool(r.strong[i]),
            float(score[i]), m.top_category[i], bool(m.ood[i]), float(conf[i]),
        )  # fmt: skip
        assert (out.is_dispute[i], out.dispute_score[i], out.category[i], out.source[i]) == one
    with pytest.raises(ValueError, match="rows"):
        fuse(m, r.head(2))


def test_gate_is_monotone_in_rule_evidence(model: DisputeModel, splits: tuple[pd.DataFrame, ...]) -> None:
    """Raising a conflict/violence/relationship feature never lowers P(dispute); an exclusion never raises it."""
    _, _, test = splits
    x = model.featurizer.transform(test["narrative"].tolist()[:300], test["received_at"].tolist()[:300])
    names = model.featurizer.feature_names
    base = model.predict_proba(x)[:, 0]  # P(none)
    for feature, direction in MONOTONE.items():
        j = names.index(feature)
        up = x.copy()
        up[:, j] = up[:, j] + 1.0
        moved = model.predict_proba(up)[:, 0]
        if direction > 0:
            assert (moved <= base + 1e-12).all(), feature
        else:
            assert (moved >= base - 1e-12).all(), feature
    assert model.info["n_monotone"] == len(MONOTONE)


def test_labels_of_refuses_a_dispute_without_category() -> None:
    ok = pd.DataFrame({"is_dispute": [True, False], "category": ["debt", None]})
    assert labels_of(ok).tolist() == ["debt", "none"]
    with pytest.raises(ValueError, match="without a known category"):
        labels_of(pd.DataFrame({"is_dispute": [True], "category": [None]}))


# -- real text (../shared/realtext); never copied into the repository ------------------------------------


@pytest.fixture(scope="module")
def cail() -> tuple[ModuleType, dict[str, list[str]]]:
    cov = coverage_module()
    root = cov.realtext_dir()
    if not (root / "cail2019_divorce.jsonl").is_file():
        pytest.skip(f"real text not available at {root} (set YUJING_REALTEXT to run)")
    return cov, cov.load_cail2019(root)


def test_fused_answer_not_below_rules_on_cail(
    model: DisputeModel, cail: tuple[ModuleType, dict[str, list[str]]]
) -> None:
    """Court prose is out of distribution: the fused answer must keep the rules' recall and category."""
    cov, docs = cail
    for domain, texts in docs.items():
        own = [cov.DOMAIN_CATEGORY[domain]] * len(texts)
        m_out = model.predict(texts)
        r_out = rule_predictions(texts)
        f_out = fuse(m_out, r_out)
        rules = dispute_metrics([True] * len(texts), r_out["is_dispute"], own, r_out["category"])
        fused = dispute_metrics([True] * len(texts), f_out["is_dispute"], own, f_out["category"])
        assert fused["recall"] >= rules["recall"], (domain, fused, rules)
        assert fused["category_accuracy"] >= rules["category_accuracy"], (domain, fused, rules)
        assert m_out["ood"].mean() >= 0.95, domain  # the mechanism: court text is recognised as foreign
