"""Incident-level dispute classifier: one LightGBM model beside the keyword rules, and their fusion.

Why a model at all: on the simulator the rules find almost every dispute but half of
what they flag is a traffic quarrel, a KTV noise complaint or a street fight
(docs/lexicon.md); the right category is chosen for ~70 %. A model that reads the rule
evidence *and* the words around it can learn which flagged calls are not household
disputes and which setting word really names the type.

* **Two boosters.** A binary *gate* ``P(dispute)`` with LightGBM ``monotone_constraints``
  on the rule evidence (:data:`MONOTONE`): a conflict frame, a named other side, a
  violence or threat cue, the rules' own verdict can only *raise* P(dispute), an
  exclusion frame only lower it — so no learned quirk of the simulator can make
  "beaten by her husband" less of a dispute than "quarrelled with her husband". And a
  category model over the 8 types, trained on disputes only. ``P(none) = 1 - gate``,
  ``P(c) = gate x P(c | dispute)``: the 9 probabilities of :data:`CLASSES` still add up.
  (One multiclass model cannot be monotone in P(dispute): LightGBM applies one constraint
  to every class's trees.)
* **Small and deterministic**: 15 leaves, at most 150 rounds (x 9 classes), early
  stopping on the tuning period, ``deterministic=True``, fixed seed, one thread (on the
  2-core machine a second thread made training 5-15x *slower* whenever anything else
  ran, and the pipeline runs next to other jobs). It is
  exported to ONNX (``models/onnx_export.py``, not here) and scored per incident in well
  under a millisecond with its featurisation.
* **Threshold** tuned on the tuning period for F1 (see :func:`tune_threshold` and
  docs/dispute-model.md for why not "recall at the rules' precision"), stored as a
  float32-representable number so an ONNX graph comparing float32 scores agrees.
* **Fusion** (:func:`fuse_one`, :func:`fuse`): the rules answer first; the model can only
  add to them. On out-of-distribution text (court prose, a new call-taker's style) the
  rules answer whole. In distribution the model never drops a rule dispute and never
  touches a strong rule verdict (``被丈夫殴打`` stays a family dispute whatever the model
  says); it may add a dispute the rules missed when it is confident and only the other
  side was missing, and name the type of a weak residual ``other``.

Temporal evaluation only (:func:`split_incidents_by_time`): train on the past, tune on
the next period, test on the latest; no day in two splits.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.lexicon import CATEGORIES
from models.evaluation import dispute_metrics
from models.rules import score_many
from models.text_features import IncidentFeaturizer

CLASSES: tuple[str, ...] = ("none", *CATEGORIES)
"""Model classes; index 0 is "not a dispute"."""

DEFAULT_PARAMS: dict[str, Any] = {
    "learning_rate": 0.2,
    "num_leaves": 15,
    "max_depth": 6,
    "min_data_in_leaf": 20,
    "feature_fraction": 0.8,
    "lambda_l2": 1.0,
    "max_bin": 63,
    "seed": 20240411,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 1,
    "verbosity": -1,
}
"""LightGBM parameters of both boosters (the objective is set per booster); ``num_boost_round`` and
``early_stopping_rounds`` are read from the same dict."""
MONOTONE: dict[str, int] = {
    "dispute_score": 1,
    "rule_dispute": 1,
    "frame_conflict": 1,
    "frame_bilateral": 1,
    "frame_counterpart": 1,
    "frame_counterpart_family": 1,
    "cue_violence": 1,
    "cue_threat": 1,
    "cue_weapon": 1,
    "frame_exclusion_crime": -1,
    "frame_exclusion_other": -1,
}
"""Direction the gate's P(dispute) must move in for each rule-evidence feature (0 for every other)."""
ADD_ABOVE = 0.95
"""In distribution, the model adds a dispute the rules missed only when its P(dispute) is above this."""
RECATEGORISE_ABOVE = 0.8
"""In distribution, the model replaces the rules' residual ``other`` of a weak verdict only when its
P(category | dispute) is above this (a vague call's flat distribution must not become ``debt``)."""
NUM_BOOST_ROUND = 150
EARLY_STOPPING_ROUNDS = 20

OOD_FLOOR = 0.25
"""Lowest OOD threshold: about a quarter of a text's distinct words unknown (smoothed) before the
rules take over. A prior, not a fit: the simulator's later calls score 0 up to the 99th percentile
(at most ~0.2), every CAIL court text at least 0.33 (docs/dispute-model.md, with the sensitivity)."""
OOD_QUANTILE = 0.999
"""The OOD threshold is also at least this quantile of the tuning period's scores (x 1.5)."""


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def labels_of(df: pd.DataFrame) -> np.ndarray:
    """The 9-class label of each incident: its category when a dispute, else ``"none"``."""
    is_dispute = df["is_dispute"].to_numpy(dtype=bool)
    category = df["category"].astype(object).to_numpy()
    bad = is_dispute & ~np.isin(category, CATEGORIES)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} disputes without a known category")
    return np.where(is_dispute, category, "none").astype(object)


def split_incidents_by_time(
    df: pd.DataFrame, fractions: Sequence[float] = (0.6, 0.2, 0.2), time_col: str = "received_at"
) -> tuple[pd.DataFrame, ...]:
    """Consecutive periods holding about ``fractions`` of the incidents each; whole days only.

    A day is never split: calls of one conflict on one day are near-duplicates, and a
    split through a day would let the test period peek at the training period. Days are
    assigned in date order to the split whose cumulative share their cumulative count
    falls in (by the day's first incident). Rows keep their index; missing times raise.
    """
    if not fractions or any(f <= 0 for f in fractions):
        raise ValueError("fractions must be positive")
    times = pd.to_datetime(df[time_col])
    if times.isna().any():
        raise ValueError(f"{int(times.isna().sum())} incidents without {time_col}")
    day = times.dt.normalize()
    per_day = day.value_counts().sort_index()
    before = per_day.cumsum().shift(fill_value=0) / max(len(df), 1)  # share before each day starts
    bounds = np.cumsum(np.asarray(fractions, dtype=np.float64) / float(np.sum(fractions)))[:-1]
    split_of_day = pd.Series(np.searchsorted(bounds, before.to_numpy(), side="right"), index=per_day.index)
    which = day.map(split_of_day).to_numpy()
    return tuple(df[which == k] for k in range(len(fractions)))


# --------------------------------------------------------------------------------------------------
# Threshold and OOD calibration
# --------------------------------------------------------------------------------------------------


def tune_threshold(is_dispute: Sequence[bool], score: Sequence[float]) -> float:
    """The dispute threshold maximising F1 on the tuning period (grid of 0.005; lowest of ties).

    Returned as a float32-representable value so an ONNX graph that compares float32
    probabilities uses the same number.
    """
    y = np.asarray(is_dispute, dtype=bool)
    s = np.asarray(score, dtype=np.float64)
    best_t, best_f1 = 0.5, -1.0
    for t in np.round(np.arange(0.05, 0.951, 0.005), 3):
        p = s >= t
        tp = int((p & y).sum())
        f1 = 2 * tp / max(int(p.sum()) + int(y.sum()), 1)
        if f1 > best_f1 + 1e-12:
            best_t, best_f1 = float(t), f1
    return float(np.float32(best_t))


def ood_threshold_from(scores: np.ndarray) -> float:
    """OOD cut from in-distribution scores (tuning period): ``max(OOD_FLOOR, 1.5 x q99.9)``."""
    if len(scores) == 0:
        return OOD_FLOOR
    return float(np.float32(max(OOD_FLOOR, 1.5 * float(np.quantile(scores, OOD_QUANTILE)))))


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------


@dataclass
class DisputeModel:
    """Gate + category boosters + featurizer + thresholds: everything needed to answer for one incident."""

    booster: lgb.Booster
    featurizer: IncidentFeaturizer
    threshold: float
    ood_threshold: float
    classes: tuple[str, ...] = CLASSES
    params: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    category_booster: lgb.Booster | None = None

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (n x 9, :data:`CLASSES` order) for a feature matrix from :attr:`featurizer`.

        ``P(none) = 1 - gate``, ``P(c) = gate x P(c | dispute)``. Uses the training thread
        count (1 by default): for one row, waking a second OpenMP thread costs more than
        the trees (44 us vs ~300 us on a loaded 2-core machine).
        """
        threads = int(self.params.get("num_threads", 1))
        gate = np.asarray(
            self.booster.predict(x, num_iteration=self.booster.best_iteration or None, num_threads=threads)
        )
        assert self.category_booster is not None, "a dispute model needs its category booster"
        cats = np.asarray(
            self.category_booster.predict(
                x, num_iteration=self.category_booster.best_iteration or None, num_threads=threads
            )
        ).reshape(len(x), len(CATEGORIES))
        return combine(gate, cats)

    def predict(self, narratives: Sequence[Any], received_at: Sequence[Any] | None = None) -> pd.DataFrame:
        """One row per narrative.

        Columns: ``is_dispute``, ``dispute_score`` (1 - P(none)), ``category`` (argmax of
        the 8, None when not a dispute), ``top_category`` (argmax even when not),
        ``p_<class>`` for the 9 classes, ``ood_score`` and ``ood`` (see :func:`fuse`).
        """
        x, ood = self.featurizer.transform_ood(narratives, received_at)
        return self._frame(self.predict_proba(x), ood)

    def predict_one(self, narrative: str, received_at: Any = None) -> dict[str, Any]:
        """One incident as a plain dict (the serving path: no DataFrame), same fields as :meth:`predict`."""
        x, ood = self.featurizer.transform_ood([narrative], [received_at])
        proba = self.predict_proba(x)[0]
        score = float(1.0 - proba[0])
        top = self.classes[1 + int(np.argmax(proba[1:]))]
        is_dispute = score >= self.threshold
        out: dict[str, Any] = {
            "is_dispute": bool(is_dispute),
            "dispute_score": score,
            "category": top if is_dispute else None,
            "top_category": top,
        }
        out.update({f"p_{c}": float(p) for c, p in zip(self.classes, proba, strict=True)})
        out["category_confidence"] = float(np.max(proba[1:]) / score) if score > 0 else 0.0
        out["ood_score"] = float(ood[0])
        out["ood"] = bool(ood[0] >= self.ood_threshold)
        return out

    def _frame(self, proba: np.ndarray, ood: np.ndarray) -> pd.DataFrame:
        n = proba.shape[0]
        score = 1.0 - proba[:, 0]
        top = np.empty(n, dtype=object)
        if n:
            top[:] = np.asarray(self.classes[1:], dtype=object)[np.argmax(proba[:, 1:], axis=1)]
        is_dispute = score >= self.threshold
        category = top.copy()
        category[~is_dispute] = None
        out = pd.DataFrame(
            {
                "is_dispute": is_dispute,
                "dispute_score": score,
                # object columns: None (not NaN) for "no category", as the rules give
                "category": pd.Series(category, dtype=object),
                "top_category": pd.Series(top, dtype=object),
            }
        )
        for j, c in enumerate(self.classes):
            out[f"p_{c}"] = proba[:, j]
        best = proba[:, 1:].max(axis=1) if n else np.zeros(0)
        out["category_confidence"] = np.divide(best, score, out=np.zeros(n), where=score > 0)
        out["ood_score"] = ood
        out["ood"] = ood >= self.ood_threshold
        return out

    def feature_importance(self, top: int = 20) -> pd.DataFrame:
        """Total gain per feature over both boosters, largest first, with its share of all gain."""
        boosters = [b for b in (self.booster, self.category_booster) if b is not None]
        gain = sum(b.feature_importance(importance_type="gain") for b in boosters)
        split = sum(b.feature_importance(importance_type="split") for b in boosters)
        df = pd.DataFrame({"feature": self.booster.feature_name(), "gain": gain, "splits": split})
        df["share"] = df["gain"] / max(float(df["gain"].sum()), 1e-12)
        return df.sort_values(["gain", "feature"], ascending=[False, True]).head(top).reset_index(drop=True)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable artifact (booster texts, featurizer state, thresholds, classes)."""
        assert self.category_booster is not None
        return {
            "kind": "yujing.dispute_model",
            "format": 2,
            "classes": list(self.classes),
            "threshold": self.threshold,
            "ood_threshold": self.ood_threshold,
            "params": self.params,
            "info": self.info,
            "featurizer": self.featurizer.to_dict(),
            "booster": self.booster.model_to_string(),
            "category_booster": self.category_booster.model_to_string(),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any], strict: bool = True) -> DisputeModel:
        if state.get("kind") != "yujing.dispute_model" or state.get("format") != 2:
            raise ValueError("not a dispute model artifact of this version (format 2); retrain it with yujing train")
        return cls(
            booster=lgb.Booster(model_str=state["booster"]),
            featurizer=IncidentFeaturizer.from_dict(state["featurizer"], strict=strict),
            threshold=float(state["threshold"]),
            ood_threshold=float(state["ood_threshold"]),
            classes=tuple(state["classes"]),
            params=dict(state["params"]),
            info=dict(state.get("info", {})),
            category_booster=lgb.Booster(model_str=state["category_booster"]),
        )


def combine(gate: np.ndarray, categories: np.ndarray) -> np.ndarray:
    """The 9 class probabilities from the gate's P(dispute) and the 8 P(category | dispute)."""
    gate = np.asarray(gate, dtype=np.float64).reshape(-1)
    cats = np.asarray(categories, dtype=np.float64).reshape(len(gate), len(CATEGORIES))
    return np.column_stack([1.0 - gate, gate[:, None] * cats])


def monotone_vector(feature_names: Sequence[str]) -> list[int]:
    """:data:`MONOTONE` as LightGBM's per-feature list (0 for features without a direction)."""
    return [MONOTONE.get(name, 0) for name in feature_names]


def _fit(
    params: dict[str, Any],
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_tune: np.ndarray,
    y_tune: np.ndarray,
    names: list[str],
    rounds: int,
    patience: int,
) -> lgb.Booster:
    d_train = lgb.Dataset(x_train, y_train, feature_name=names, free_raw_data=True)
    d_tune = lgb.Dataset(x_tune, y_tune, reference=d_train, feature_name=names)
    return lgb.train(
        params,
        d_train,
        num_boost_round=rounds,
        valid_sets=[d_tune],
        valid_names=["tune"],
        callbacks=[lgb.early_stopping(patience, verbose=False)],
    )


def train_dispute_model(
    train_df: pd.DataFrame,
    tune_df: pd.DataFrame,
    params: dict[str, Any] | None = None,
    featurizer: IncidentFeaturizer | None = None,
) -> DisputeModel:
    """Fit the featurizer and both boosters on ``train_df``; early-stop and set thresholds on ``tune_df``.

    Both frames need ``narrative``, ``received_at``, ``is_dispute`` and ``category``.
    ``params`` override :data:`DEFAULT_PARAMS` (plus ``num_boost_round`` and
    ``early_stopping_rounds``). The gate is trained with :func:`monotone_vector`
    constraints; the category model on the disputes of each period only.
    """
    p = {**DEFAULT_PARAMS, "num_boost_round": NUM_BOOST_ROUND, "early_stopping_rounds": EARLY_STOPPING_ROUNDS}
    p.update(params or {})
    rounds = int(p.pop("num_boost_round"))
    patience = int(p.pop("early_stopping_rounds"))
    y_train = labels_of(train_df)
    y_tune = labels_of(tune_df)
    feats = featurizer if featurizer is not None else IncidentFeaturizer()
    x_train = feats.fit_transform(train_df["narrative"].tolist(), train_df["received_at"].tolist(), y_train)
    x_tune, ood_tune = feats.transform_ood(tune_df["narrative"].tolist(), tune_df["received_at"].tolist())
    names = feats.feature_names
    gate_params = {**p, "objective": "binary", "monotone_constraints": monotone_vector(names)}
    gate = _fit(gate_params, x_train, y_train != "none", x_tune, y_tune != "none", names, rounds, patience)
    index = {c: j for j, c in enumerate(CATEGORIES)}
    tr, tu = y_train != "none", y_tune != "none"
    if tr.sum() == 0 or tu.sum() == 0:
        raise ValueError("no disputes in the training or tuning period: the category model has nothing to learn")
    cat_params = {**p, "objective": "multiclass", "num_class": len(CATEGORIES)}
    cat_booster = _fit(
        cat_params,
        x_train[tr],
        np.array([index[v] for v in y_train[tr]]),
        x_tune[tu],
        np.array([index[v] for v in y_tune[tu]]),
        names,
        rounds,
        patience,
    )
    score = np.asarray(gate.predict(x_tune, num_iteration=gate.best_iteration or None))
    threshold = tune_threshold(tune_df["is_dispute"].to_numpy(dtype=bool), score)
    info = {
        "n_train": len(train_df),
        "n_tune": len(tune_df),
        "best_iteration": int(gate.best_iteration or rounds),
        "category_best_iteration": int(cat_booster.best_iteration or rounds),
        "n_trees": int(gate.num_trees() + cat_booster.num_trees()),
        "n_features": len(names),
        "n_monotone": int(sum(1 for v in gate_params["monotone_constraints"] if v)),
        "lexicon_version": feats.lexicon_version,
    }
    return DisputeModel(
        booster=gate,
        featurizer=feats,
        threshold=threshold,
        ood_threshold=ood_threshold_from(ood_tune),
        params={**p, "num_boost_round": rounds, "early_stopping_rounds": patience},
        info=info,
        category_booster=cat_booster,
    )


# --------------------------------------------------------------------------------------------------
# Rules side and fusion
# --------------------------------------------------------------------------------------------------


def rule_predictions(narratives: Sequence[Any]) -> pd.DataFrame:
    """The keyword rules' verdict in the shape :func:`fuse` takes: is_dispute, dispute_score, category, strong."""
    results = score_many([t if isinstance(t, str) else "" for t in narratives])
    return pd.DataFrame(
        {
            "is_dispute": np.array([r.is_dispute for r in results], dtype=bool),
            "dispute_score": np.array([r.dispute_score for r in results], dtype=np.float64),
            "category": pd.Series([r.category for r in results], dtype=object),
            "strong": np.array([bool(r.structure.get("strong")) for r in results], dtype=bool),
        }
    )


def fuse_one(
    rule_is: bool,
    rule_score: float,
    rule_category: str | None,
    rule_strong: bool,
    model_score: float,
    model_category: str | None,
    ood: bool,
    model_category_confidence: float = 1.0,
) -> tuple[bool, float, str | None, str]:
    """The ``model+rules`` answer for one call: ``(is_dispute, dispute_score, category, source)``.

    The rules answer first; the model may only add to them (docs/dispute-model.md):

    * OOD text -> the rules, whole (``source="rules"``).
    * A **strong** rule verdict — a dispute with a named other side or a named dispute,
      or "not a dispute" because an exclusion frame spoke (stranger crime, help request…)
      — is never overruled, category included.
    * A rule dispute is never dropped: on real-style calls the model, trained on the
      simulator's language, calls true disputes "none" (measured: 4 of 244 on the
      behavioural set even with P(dispute) < 0.02), and the out-of-distribution gate does
      not catch every such call. A **weak** one (a disagreement, a claim, a subject, with
      no named side) whose category is the residual ``other`` takes the model's category
      when the model is confident of it (P(category | dispute) > :data:`RECATEGORISE_ABOVE`).
    * A call the rules did not flag, with no exclusion frame, becomes a dispute only when
      the model is confident (P(dispute) > :data:`ADD_ABOVE`).

    ``source`` is ``rules`` (the rules' answer stands), ``model`` (the model changed the
    verdict) or ``both`` (same verdict, the model chose the category).
    """
    if ood or rule_strong:
        return rule_is, rule_score, rule_category, "rules"
    if rule_is:
        if (
            rule_category == "other"
            and model_category is not None
            and model_category != "other"
            and model_category_confidence > RECATEGORISE_ABOVE
        ):
            return True, rule_score, model_category, "both"
        return True, rule_score, rule_category, "rules"
    if model_score > ADD_ABOVE and model_category is not None:
        return True, model_score, model_category, "model"
    return False, rule_score, None, "rules"


def fuse(model_out: pd.DataFrame, rule_out: pd.DataFrame) -> pd.DataFrame:
    """:func:`fuse_one` for every incident (``model_out`` from :meth:`DisputeModel.predict`, ``rule_out``
    from :func:`rule_predictions`, same order). A test checks it equals the scalar rule row by row."""
    if len(model_out) != len(rule_out):
        raise ValueError(f"model_out has {len(model_out)} rows, rule_out {len(rule_out)}")
    rows = [
        fuse_one(bool(ri), float(rs), rc if isinstance(rc, str) else None, bool(st), float(ms), mc, bool(od), float(cc))
        for ri, rs, rc, st, ms, mc, od, cc in zip(
            rule_out["is_dispute"],
            rule_out["dispute_score"],
            rule_out["category"],
            rule_out["strong"],
            model_out["dispute_score"],
            model_out["top_category"],
            model_out["ood"],
            model_out["category_confidence"],
            strict=True,
        )
    ]
    return pd.DataFrame(
        {
            "is_dispute": np.array([r[0] for r in rows], dtype=bool),
            "dispute_score": np.array([r[1] for r in rows], dtype=np.float64),
            "category": pd.Series([r[2] for r in rows], dtype=object, index=model_out.index),
            "source": np.array([r[3] for r in rows], dtype=object),
        },
        index=model_out.index,
    )


# --------------------------------------------------------------------------------------------------
# Command line: train on a city, report held-out numbers
# --------------------------------------------------------------------------------------------------


def join_truth(incidents: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Incidents (``incident_id``, ``received_at``, ``narrative``) with their truth labels, sorted by time.

    Truth is for training and evaluation only; nothing else of it is kept.
    """
    frame = incidents[["incident_id", "received_at", "narrative"]].merge(
        truth[["incident_id", "is_dispute", "category"]], on="incident_id", how="inner", validate="one_to_one"
    )
    return frame.sort_values(["received_at", "incident_id"], kind="stable").reset_index(drop=True)


def load_city(city: str | Path) -> pd.DataFrame:
    """:func:`join_truth` of a city written by ``yujing simulate``."""
    city = Path(city)
    incidents = pd.read_parquet(city / "incidents.parquet", columns=["incident_id", "received_at", "narrative"])
    truth = pd.read_parquet(city / "truth" / "incidents.parquet", columns=["incident_id", "is_dispute", "category"])
    return join_truth(incidents, truth)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m models.dispute --city DIR [--save model.json]``: train and print the held-out metrics."""
    ap = argparse.ArgumentParser(description="Train the dispute model on a simulated city; held-out metrics.")
    ap.add_argument("--city", required=True, type=Path)
    ap.add_argument("--save", type=Path, help="write the model artifact (JSON) here")
    args = ap.parse_args(argv)
    train, tune, test = split_incidents_by_time(load_city(args.city))
    model = train_dispute_model(train, tune)
    texts, times = test["narrative"].tolist(), test["received_at"].tolist()
    m_out = model.predict(texts, times)
    r_out = rule_predictions(texts)
    f_out = fuse(m_out, r_out)
    y, cat = test["is_dispute"], test["category"]
    report = {
        name: dispute_metrics(y, out["is_dispute"], cat, out["category"])
        for name, out in (("rules", r_out), ("model", m_out), ("fused", f_out))
    }
    print(json.dumps({"info": model.info, "threshold": model.threshold, "metrics": report}, indent=1))
    if args.save:
        args.save.write_text(json.dumps(model.to_dict(), ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
