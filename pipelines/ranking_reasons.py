"""What a warning says: the model's factors, the rules' reasons, the recent calls and the terms found.

A station acts on evidence it can read (issue 10): every warning lists its
recent calls with what each one showed and denied, the scoring rules'
reasons and the model's factors, side by side. These functions build them
for the warned households of a daily ranking (pipelines/ranking.py); the
online service builds the same phrases with the same helpers
(models/reasons.py, models/warning.py).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.household_keys import positions_in
from features.matrix import float32_matrix
from features.snapshots import to_seconds
from models.levels import EVIDENCE_DAYS
from models.reasons import call_phrase, occlusion_contributions, top_reasons
from models.warning import score_warnings
from pipelines.incident_readings import READING_COLUMNS, readings_at, split_list
from pipelines.preparation import Prepared

if TYPE_CHECKING:
    from pipelines.ranking import Scored

ESCALATION = "escalation"
"""The escalation model's name inside an ONNX bundle."""


def model_reasons(scored: Scored, rows: np.ndarray, n: int) -> list[list[str]]:
    """The factors that raised each warned household's score most, from the served ONNX model."""
    if scored.scorer is None or len(rows) == 0:
        return [[] for _ in rows]
    X = float32_matrix(scored.frame.iloc[rows], scored.feature_names)

    def raw(x: np.ndarray) -> np.ndarray:
        return scored.scorer.predict_batched(ESCALATION, x, workers=2)[:, 1]

    contributions = occlusion_contributions(raw, X, scored.feature_names)
    return top_reasons(contributions, X, scored.feature_names, n=n)


def rule_reasons(prepared: Prepared, households: np.ndarray, day: pd.Timestamp) -> dict[str, list[str]]:
    """The scoring rules' reasons (积分预警) for each household, as of the morning of ``day``."""
    calls = prepared.calls[positions_in(prepared.calls["household_id"], households) >= 0]
    calls = calls[calls["received_at"] < day]
    if calls.empty:
        return {}
    graded = score_warnings(calls, day - pd.Timedelta(microseconds=1), key="household_id")
    return dict(zip(graded["household_id"], graded["reasons"], strict=True))


def recent_calls(
    prepared: Prepared, households: np.ndarray, day: pd.Timestamp, calls_limit: int, terms_limit: int
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Each household's calls of the last ``EVIDENCE_DAYS`` days as phrases, and the lexicon terms found.

    Calls (newest first, at most ``calls_limit``): date, category, cues found
    and cues negated, from the rules' reading of each call (the same phrase the
    online service gives, models.reasons.call_phrase). Terms: un-negated
    lexicon terms of the dispute calls, most frequent first.
    """
    calls = prepared.calls
    mask = (
        (positions_in(calls["household_id"], households) >= 0)
        & (calls["received_at"] >= day - pd.Timedelta(days=EVIDENCE_DAYS))
        & (calls["received_at"] < day)
    )
    phrases: dict[str, list[tuple[pd.Timestamp, str]]] = {}
    counters: dict[str, Counter[str]] = {}
    rows = np.flatnonzero(mask.to_numpy())
    readings = readings_at(prepared, rows, day)  # the rules' reading of each call (cached per incident)
    household_of = calls["household_id"].to_numpy()[rows]
    received = calls["received_at"].iloc[rows]
    for k, (is_dispute, category, cues, negated, terms) in enumerate(
        zip(*(readings[c].to_numpy() for c in READING_COLUMNS), strict=True)
    ):
        household = household_of[k]
        when = pd.Timestamp(received.iloc[k])
        text = call_phrase(f"{when:%Y-%m-%d}", is_dispute, category, split_list(cues), split_list(negated))
        phrases.setdefault(household, []).append((when, text))
        if is_dispute:
            # Each term once per call, in text order: ties in frequency then keep a reproducible order.
            counters.setdefault(household, Counter()).update(dict.fromkeys(json.loads(terms), 1))
    listed = {
        h: [text for _, text in sorted(items, key=lambda kv: kv[0], reverse=True)[:calls_limit]]
        for h, items in phrases.items()
    }
    terms = {h: [t for t, _ in sorted(c.items(), key=lambda kv: -kv[1])[:terms_limit]] for h, c in counters.items()}
    return listed, terms


def dominant_category(frame: pd.DataFrame) -> np.ndarray:
    """The dispute category a household called about most in the last year (None without one)."""
    from features.schema import CATEGORIES

    counts = frame[[f"cat_{c}_365d" for c in CATEGORIES]].to_numpy()
    best = np.argmax(counts, axis=1)
    return np.where(counts.max(axis=1) > 0, np.array(CATEGORIES, dtype=object)[best], None)


def negated_cues(prepared: Prepared, calls: pd.DataFrame, day: pd.Timestamp) -> list[str]:
    """The cue groups each call negates ("violence,weapon"; "" when none) in the ``EVIDENCE_DAYS`` before ``day``.

    The online service lists a household's recent calls with what they deny
    (没有动手): the rules read that from the text, which the history does not
    keep. Older calls get "" (they are never listed).
    """
    since_sec = int(to_seconds(pd.Series([day]))[0]) - EVIDENCE_DAYS * 86_400
    recent = np.flatnonzero(calls["received_sec"].to_numpy() >= since_sec)
    incidents = prepared.incidents
    # an Arrow lookup: pandas' isin on Arrow strings makes a Python object of each of the 68k wanted ids
    rows = np.flatnonzero(positions_in(incidents["incident_id"], calls["incident_id"].iloc[recent]) >= 0)
    denied = readings_at(prepared, rows, day)["negated_cues"].to_numpy()
    of = dict(zip(incidents["incident_id"].to_numpy()[rows], denied, strict=True))
    out = [""] * len(calls)
    ids = calls["incident_id"].to_numpy()
    for k in recent:
        out[k] = of.get(ids[k], "")
    return out
