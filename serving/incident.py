"""Score one incident online: classify it, then update its household's escalation risk with it.

An :class:`Engine` is everything a request is scored with: the dispute model
and the escalation model of the champion bundle (ONNX), the households'
stored history (serving/history.py), the warning thresholds and the scoring
rules. It is immutable; the service swaps in a new one when a new champion or
a new ranking appears (serving/state.py), and a request in flight finishes on
the engine it started with.

Without a usable bundle the engine is *degraded*: the rules classify and the
scoring rules (积分预警) grade the household, and every answer says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from features.online import Call, call_features, new_call_flags
from features.snapshots import DAY
from models.classify import fused_answer, rules_answer
from models.levels import (
    EVIDENCE_DAYS,
    EVIDENCE_FEATURE,
    dropped_model_level,
    publish_level,
    threshold_level,
    worst_scenario,
)
from models.reasons import call_phrase, occlusion_contributions, top_reasons
from models.rules import RuleResult, score_text
from models.warning import Scenario, household_scores, load_scenarios, verdict_reasons
from serving.history import Household, HouseholdHistory
from serving.scorer import OnnxScorer, positive_class

LOCAL_TIME = ZoneInfo("Asia/Shanghai")
"""Incident times in the data are local wall-clock times; an aware time is converted to this zone."""
STALE_AFTER_DAYS = 2.0
_EPOCH = datetime(1970, 1, 1)
ESCALATION = "escalation"


@dataclass(frozen=True)
class Engine:
    """The models, history and rules one request is scored with."""

    dispute: Any | None  # serving.dispute.BundleDisputeModel
    escalation: OnnxScorer | None
    history: HouseholdHistory | None
    thresholds: Mapping[str, float]
    versions: dict[str, Any]
    problems: tuple[str, ...] = ()
    scenarios: dict[str, Scenario] = field(default_factory=load_scenarios)
    lexicon_version: str = ""

    @property
    def degraded(self) -> bool:
        """True when a model is missing: the rules answer in its place."""
        return self.dispute is None or self.escalation is None


class HouseholdNotFound(LookupError):
    """The incident names a household (or caller, or address) the stored history does not know."""


class IncidentTimeError(ValueError):
    """The incident's time is outside the window of calls the service scores; the message never quotes it."""


EARLIEST_CALL = datetime(2000, 1, 1)
"""Calls before this are not scored: older dates are typos or "unknown" markers (1900-01-01, 0001-01-01)."""
LATEST_CALL_SLACK = timedelta(days=1)
"""A call may lie at most this far after the server's clock (time zones, clock skew)."""
TIME_WINDOW = "received_at must lie between 2000-01-01 and tomorrow"


def incident_time(value: datetime | str | None, now: datetime | None = None) -> pd.Timestamp:
    """The incident's local wall-clock time (naive, like the data); now when not given.

    Raises :class:`IncidentTimeError` outside [2000-01-01, now + 1 day]: a
    time outside pandas' nanosecond range (1677-2262) used to crash the
    household update (issue 11), and a time far from today is a typo or a
    placeholder, never a call to score.
    """
    current = now or datetime.now(LOCAL_TIME)
    if current.tzinfo is not None:
        current = current.astimezone(LOCAL_TIME).replace(tzinfo=None)
    try:
        stamp = pd.Timestamp(value if value is not None else current)
        if stamp.tzinfo is not None:
            stamp = stamp.tz_convert(LOCAL_TIME).tz_localize(None)
    except (ValueError, OverflowError, TypeError):  # OutOfBoundsDatetime is a ValueError
        raise IncidentTimeError(TIME_WINDOW) from None
    if pd.isna(stamp) or not EARLIEST_CALL <= stamp <= current + LATEST_CALL_SLACK:
        raise IncidentTimeError(TIME_WINDOW)
    return stamp


def _seconds(stamp: pd.Timestamp) -> int:
    return int(stamp.value // 1_000_000_000)


def resolve_household(engine: Engine, incident: Mapping[str, Any]) -> Household | None:
    """The incident's household: named directly, else the caller's, else the only one at the address."""
    history = engine.history
    named = incident.get("household_id")
    caller = incident.get("caller_person_id")
    if history is None:
        return None
    if named:
        found = history.get(str(named))
        if found is None:
            raise HouseholdNotFound("household_id is not in the stored registry")
        return found
    if caller:
        household = history.household_of_person(str(caller))
        if household is None:
            raise HouseholdNotFound("caller_person_id is not in the stored registry")
        return history.get(household)
    address = incident.get("address_id")
    if address:
        household = history.household_at(str(address))
        if household is None:
            raise HouseholdNotFound("address_id matches no single household in the stored registry")
        return history.get(household)
    return None


def new_call(
    result: RuleResult, household: Household, person_id: str | None, caller_household: str | None, received_sec: int
) -> Call:
    """The incident as one more call of its household, with the rules' verdict (as in training)."""
    third_party, distinct = new_call_flags(
        household.calls, person_id, caller_household, household.household_id, received_sec
    )
    return Call(
        received_sec=received_sec,
        is_dispute=result.is_dispute,
        category=result.category,
        dispute_score=result.dispute_score,
        n_deescalation=sum(1 for t in result.matched_terms if t["kind"] == "negation" and t["group"] == "deescalation"),
        cues=frozenset(result.cues),
        third_party=third_party,
        distinct_start=distinct,
        person_id=person_id,
    )


CALLS_LISTED = 6
"""Recent calls listed per household (pipelines.ranking.RankConfig.calls_per_household)."""


def model_scores(scorer: OnnxScorer, X: np.ndarray, workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The escalation model's raw positive-class score (orders a list) and its calibrated probability (levels).

    Batch (pipelines/ranking.py) and online both score through here.
    """
    raw = positive_class(scorer.predict_batched(ESCALATION, X, workers=workers))  # one run for both numbers
    return raw.astype(np.float64), scorer.calibrate(ESCALATION, raw)


def _row_values(
    household: Household, calls: tuple[Call, ...], end_sec: int, scenarios: dict[str, Scenario]
) -> tuple[dict[str, float], dict[str, float], dict[str, list[str]]]:
    """Every feature value of the household at ``end_sec``, its scoring-rule points and each scenario's reasons."""
    values = dict(household.static)
    values.update(call_features(calls, end_sec, household.first_dispute_sec))
    points, reasons = household_scores(calls, end_sec, scenarios)
    values.update({f"points_{k}": v for k, v in points.items()})
    return values, points, reasons


def _in_order(feature_names: list[str], values: Mapping[str, float]) -> np.ndarray:
    missing = [n for n in feature_names if n not in values]
    if missing:
        raise KeyError(f"the stored history lacks features {missing[:3]}: re-run yujing rank with this model")
    return np.array([[values[n] for n in feature_names]], dtype=np.float32)


def household_row(
    feature_names: list[str],
    household: Household,
    calls: tuple[Call, ...],
    end_sec: int,
    scenarios: dict[str, Scenario],
) -> tuple[np.ndarray, dict[str, float]]:
    """The household's feature row at ``end_sec`` in the model's order, and its scoring-rule points."""
    values, points, _ = _row_values(household, calls, end_sec, scenarios)
    return _in_order(feature_names, values), points


def rules_grade(points: Mapping[str, float], scenarios: dict[str, Scenario]) -> dict[str, Any]:
    """The scoring rules' verdict: the worst scenario's level, its points and label (models.levels.worst_scenario)."""
    level, name, best = worst_scenario(points, scenarios)
    return {
        "level": level,
        "points": round(best, 2),
        "scenario": name,
        "label": scenarios[name].label if name else None,
    }


def call_date(sec: int) -> str:
    """``YYYY-MM-DD`` of a call's naive local time (epoch seconds): ``pd.Timestamp(sec, unit="s")``, ~10x cheaper."""
    return (_EPOCH + timedelta(seconds=sec)).date().isoformat()


def recent_call_phrases(
    calls: tuple[Call, ...], negated: tuple[frozenset[str], ...], end_sec: int, limit: int = CALLS_LISTED
) -> list[str]:
    """The calls of the last ``EVIDENCE_DAYS`` days before ``end_sec``, newest first, as a station reads them."""
    since = end_sec - EVIDENCE_DAYS * int(DAY)
    listed = [(c.received_sec, i) for i, c in enumerate(calls) if since <= c.received_sec < end_sec]
    out = []
    for sec, i in sorted(listed, reverse=True)[:limit]:
        c = calls[i]
        out.append(
            call_phrase(call_date(sec), c.is_dispute, c.category, c.cues, negated[i] if i < len(negated) else ())
        )
    return out


def assess(
    engine: Engine,
    household: Household,
    calls: tuple[Call, ...],
    negated: tuple[frozenset[str], ...],
    end_sec: int,
    explain: bool = True,
) -> dict[str, Any]:
    """The level policy (models/levels.py) for one household at ``end_sec``: the fields both routes return.

    ``calls`` are the household's calls (the stored ones, plus a new one for
    an incident); ``negated`` the cue groups each call denies, for the call list.
    """
    history = engine.history
    assert history is not None
    names = list(engine.escalation.feature_names(ESCALATION)) if engine.escalation else history.feature_names
    values, points, scenario_reasons = _row_values(household, calls, end_sec, engine.scenarios)
    X = _in_order(names, values)
    in_scope = bool(values["disputes_365d"] > 0)
    evidence = bool(values[EVIDENCE_FEATURE] > 0)
    rules = rules_grade(points, engine.scenarios)
    model: dict[str, Any] | None = None
    model_reasons: list[str] = []
    if engine.escalation is not None:
        scorer = engine.escalation
        raw, calibrated = model_scores(scorer, X)
        probability = float(calibrated[0])
        model_level = threshold_level(probability, engine.thresholds) if in_scope else None
        model = {
            "level": model_level,
            "probability": round(probability, 6),
            "score": round(float(raw[0]), 6),
            "evidence": evidence,
        }
        if explain:

            def predict(x: np.ndarray) -> np.ndarray:
                return scorer.predict(ESCALATION, x)[:, 1]

            model_reasons = top_reasons(occlusion_contributions(predict, X, names), X, names)[0]
        if model_level is not None and not evidence:
            model_reasons = [dropped_model_level(model_level), *model_reasons]
    level, raised_by = publish_level(rules["level"], model["level"] if model else None, evidence)
    return {
        "household_id": household.household_id,
        "station_id": household.station_id,
        "county_code": household.county_code,
        "in_scope": in_scope,
        "level": level,
        "raised_by": raised_by,
        "engine": "model" if model is not None else "rules",
        "probability": model["probability"] if model else None,
        "rules": rules,
        "model": model,
        "reasons": {
            "model": model_reasons,
            "rules": verdict_reasons(points, scenario_reasons, engine.scenarios),
            "calls": recent_call_phrases(calls, negated, end_sec),
        },
    }


def stored_household_level(engine: Engine, household: Household, explain: bool = False) -> dict[str, Any]:
    """The household's level at the stored history's date, without a new call.

    The same features, scores and policy as the morning's ranking (before the
    station's capacity, which needs the whole station): what batch-online
    parity is tested on, and what ``GET /v1/households/<id>/risk`` returns.
    """
    history = engine.history
    assert history is not None
    out = assess(engine, household, household.calls, household.negated, history.day_sec, explain)
    out["as_of"] = history.date
    return out


def household_risk(
    engine: Engine,
    household: Household,
    result: RuleResult,
    incident: Mapping[str, Any],
    when: pd.Timestamp,
    explain: bool = True,
) -> dict[str, Any]:
    """The household's risk with this incident on top of its stored history (same policy as the ranking)."""
    history = engine.history
    assert history is not None
    caller = incident.get("caller_person_id")
    caller_household = history.household_of_person(str(caller)) if caller else None
    received = _seconds(when)
    call = new_call(result, household, str(caller) if caller else None, caller_household, received)
    calls = (*household.calls, call)
    negated = (*household.negated, frozenset(result.negated_cues))
    end = received + 1  # the incident itself counts: it happened before "now"
    out = assess(engine, household, calls, negated, end, explain)
    out.update(
        {
            "history_as_of": history.date,
            "stale_history": (received - history.day_sec) / float(DAY) > STALE_AFTER_DAYS,
            "probability_before": household.probability,
        }
    )
    return out


def score_incident(
    engine: Engine, incident: Mapping[str, Any], now: datetime | None = None, explain: bool = True
) -> dict[str, Any]:
    """The answer for one incident: classify fields, household risk, level, reasons, model versions.

    ``explain=False`` skips the model's reasons (one extra batch of ONNX rows,
    about a third of the time) for callers that only need the numbers.

    Raises :class:`HouseholdNotFound` when the incident names a household the
    history does not hold (the endpoint turns it into a 404). Nothing of the
    narrative is returned.
    """
    narrative = incident["narrative"]
    when = incident_time(incident.get("received_at"), now)
    result = score_text(narrative)
    answer = rules_answer(incident.get("id"), result, engine.lexicon_version)
    if engine.dispute is not None:
        predicted = engine.dispute.predict_one(narrative, when.to_pydatetime())
        answer = fused_answer(answer, predicted, engine.versions.get("dispute"))
    answer.pop("model_data_fingerprint", None)
    household = resolve_household(engine, incident)
    answer["received_at"] = when.isoformat()
    answer["household"] = (
        None if household is None else household_risk(engine, household, result, incident, when, explain)
    )
    answer["degraded"] = engine.degraded
    answer["models"] = dict(engine.versions)
    return answer
