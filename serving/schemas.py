"""Request and response models of every route: what ``/openapi.json`` publishes and what the tests hold it to.

Requests are validated by these models (FastAPI's body parameters). Responses
are *documented* by them (``response_model=``) but serialised by the routes
themselves (serving/routers/_common.py ``json_ok``): validating a scoring
answer against its model on every request costs CPU on the hot path, and the
schemathesis suite (tests/test_api_fuzz.py) checks every response against
these models instead. Open-ended parts (the rules' ``structure``, a ranking
row's extra columns) allow additional properties, so a new field in the
pipelines never breaks a response.

Limits that are settings (``max_narrative_chars``, ``max_batch``) are checked
by the routes and written into the published schema by serving/app.py.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SkipValidation, field_validator

from features.schema import PERSONAL_NUMBER_PATTERN
from serving.incident import incident_time

ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,64}$"
"""Keys (household, person, address, station, a caller's own reference): letters, digits and ``_.:-``."""
_PERSONAL_NUMBER = re.compile(PERSONAL_NUMBER_PATTERN)


def echoable_reference(value: object) -> bool:
    """Whether a caller's own reference may be sent back: a valid key that is not a phone or an ID number."""
    return isinstance(value, str) and re.match(ID_PATTERN, value) is not None and not _PERSONAL_NUMBER.search(value)


DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
COUNTY_PATTERN = r"^\d{6}$"
MAX_WARNING_ID = 2**63 - 1
"""Warning ids are SQL BIGINT/INTEGER keys: anything larger cannot exist (and overflows the driver)."""
LEVEL = Literal["red", "orange", "yellow", "blue"]


# -- requests ------------------------------------------------------------------------------------------------


class IncidentIn(BaseModel):
    """One incident to score. Only ``narrative`` is required."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str | None = Field(None, pattern=ID_PATTERN, description="Your reference, echoed back (letters, digits, _.:-).")
    narrative: str = Field(
        ..., min_length=1, description="The 110 record text (接警内容), as received; at most max_narrative_chars."
    )
    received_at: datetime | None = Field(
        None, description="When the call came in (ISO 8601, 2000-01-01 .. tomorrow); default: now."
    )
    caller_person_id: str | None = Field(None, pattern=ID_PATTERN, description="The caller's person key, if linked.")
    address_id: str | None = Field(None, pattern=ID_PATTERN, description="The address key, if known.")
    household_id: str | None = Field(None, pattern=ID_PATTERN, description="The household key, if known.")

    @field_validator("id")
    @classmethod
    def _not_personal(cls, value: str | None) -> str | None:
        if value is not None and _PERSONAL_NUMBER.search(value):
            raise ValueError("a reference that looks like a phone or ID number is refused: it would be echoed back")
        return value

    @field_validator("received_at")
    @classmethod
    def _plausible_time(cls, value: datetime | None) -> datetime | None:
        if value is not None:
            incident_time(value)  # IncidentTimeError is a ValueError: pydantic reports it as this field's error
        return value


class BatchIn(BaseModel):
    """Many incidents in one request (at most the service's ``max_batch``).

    Each incident is validated on its own by the route (a bad one gets its own
    error entry and the others are scored), so the list is not validated here.
    """

    model_config = ConfigDict(extra="forbid")

    incidents: list[SkipValidation[IncidentIn]] = Field(..., min_length=1)


class StatusIn(BaseModel):
    """A station's step in the closed loop of a warning."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["pushed", "acknowledged", "handled", "fed_back"] = Field(
        ..., description="acknowledged, handled or fed_back: forward only (a move back, or to pushed, is 409)."
    )
    note: str | None = Field(None, max_length=2000, description="Free text; stored masked (IDs, phones, names).")
    outcome: Literal["resolved", "ongoing", "escalated", "false_alarm", "referred"] | None = Field(
        None, description="With fed_back only: resolved, ongoing, escalated, false_alarm or referred."
    )


# -- errors --------------------------------------------------------------------------------------------------


class ErrorOut(BaseModel):
    """Every 4xx/5xx except 422: what is wrong and how to fix it, never the input."""

    detail: str


class FieldError(BaseModel):
    """One validation problem: where (``loc``), what (``msg``), and pydantic's error ``type``; never the input."""

    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorOut(BaseModel):
    """422: the request's problems, field by field."""

    detail: list[FieldError]


# -- answers -------------------------------------------------------------------------------------------------


class Open(BaseModel):
    """A documented object that may carry more fields than listed."""

    model_config = ConfigDict(extra="allow")


class Versions(Open):
    """The models and history answering: dispute and escalation labels, lexicon version, history date."""

    dispute: str | None = None
    escalation: str | None = None
    lexicon: str | None = None
    history_date: str | None = None


class MatchedTerm(Open):
    """A lexicon term the rules matched in the narrative (the term and its group, no surrounding text)."""


class RulesVerdict(BaseModel):
    """The scoring rules' verdict for a household (积分预警)."""

    level: LEVEL | None
    points: float
    scenario: str | None
    label: str | None


class ModelVerdict(BaseModel):
    """The escalation model's verdict; ``level`` only in scope and by the configured thresholds."""

    level: LEVEL | None
    probability: float
    score: float
    evidence: bool


class Reasons(BaseModel):
    """Why: the model's top factors, the scoring rules' reasons, and the recent calls as a station reads them."""

    model: list[str]
    rules: list[str]
    calls: list[str]


class HouseholdAssessment(BaseModel):
    """A household's level under the ranking's policy (models/levels.py)."""

    household_id: str
    station_id: str
    county_code: str
    in_scope: bool
    level: LEVEL | None
    raised_by: Literal["rules", "model", "both"] | None
    engine: Literal["model", "rules"]
    probability: float | None
    rules: RulesVerdict
    model: ModelVerdict | None
    reasons: Reasons


class HouseholdUpdate(HouseholdAssessment):
    """The household's risk updated with this incident on top of its stored history."""

    history_as_of: str
    stale_history: bool
    probability_before: float | None


class ScoreOut(BaseModel):
    """One incident's answer: the classify fields, its household's updated risk, and what answered."""

    id: str | None
    is_dispute: bool
    dispute_score: float
    category: str | None
    category_scores: dict[str, float]
    cues: list[str]
    negated_cues: list[str]
    matched_terms: list[MatchedTerm]
    structure: Open
    engine: Literal["rules", "model+rules"]
    source: str | None = None
    lexicon_version: str
    received_at: str
    household: HouseholdUpdate | None
    degraded: bool
    models: Versions


class ItemError(BaseModel):
    """A batch item that was not scored: its position, its id when valid, the status it would have had."""

    index: int
    id: str | None
    status: int
    error: str
    errors: list[FieldError] | None = None


class ScoredItem(ScoreOut):
    """A batch item that was scored: a :class:`ScoreOut` with its position."""

    index: int


class BatchOut(BaseModel):
    """One result per incident, in order: a :class:`ScoredItem` or an :class:`ItemError` (it has ``error``)."""

    results: list[ScoredItem | ItemError]
    scored: int
    failed: int
    degraded: bool
    models: Versions


class WarningRecord(Open):
    """A published warning in the warnings database (closed-loop status included)."""

    id: int
    date: str
    household_id: str
    station_id: str
    county_code: str
    level: LEVEL
    probability: float | None
    rank_in_station: int
    status: Literal["pushed", "acknowledged", "handled", "fed_back"]
    outcome: str | None
    active: bool


class RiskOut(HouseholdAssessment):
    """A household's level at the latest ranking's date, and its latest warning in the closed loop."""

    as_of: str
    warning: WarningRecord | None
    degraded: bool
    models: Versions


class WarningRef(BaseModel):
    """A ranking row's warning in the database: its id and closed-loop status."""

    id: int
    status: str


class RankingRow(Open):
    """One warned household of a date, with the model's and the rules' reasons (columns: docs/ranking-outputs.md)."""

    household_id: str
    station_id: str
    county_code: str
    level: LEVEL
    rank_in_station: int
    warning: WarningRef | None


class RankingOut(BaseModel):
    """A date's warnings for the key's scope."""

    date: str
    engine: str | None
    model_version: str | None
    station: str | None
    county: str | None
    count: int
    warnings: list[RankingRow]


class Provenance(BaseModel):
    """Where a model came from."""

    code_version: str | None
    data_fingerprint: str | None
    lexicon_version: str | None


class EscalationProvenance(Provenance):
    """The escalation model's provenance and its number of features."""

    features: int


class ModelsOut(BaseModel):
    """The models and history the service answers with, why it is degraded if it is, and their provenance."""

    versions: Versions
    degraded: bool
    problems: list[str]
    reloads: int
    escalation: EscalationProvenance | None = None
    dispute: Provenance | None = None


class HealthOut(BaseModel):
    """Liveness for anyone (no key): the mode and the versions, nothing about the machine."""

    status: Literal["ok", "degraded", "loading", "failed"]
    degraded: bool | None
    models: Versions | None


class ReadyOut(BaseModel):
    """Readiness: ``ready`` once models, history and rankings are loaded."""

    status: Literal["ready", "loading", "failed"]


def valid_date(value: str) -> date | None:
    """The calendar date of ``YYYY-MM-DD``, or None (``2024-13-45`` matches the pattern but is no date)."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")


def plain_errors(errors: list[Any]) -> list[dict[str, Any]]:
    """Validation errors without the offending input or context (either may be personal data).

    A location step that is not a plain field name (an unknown key someone
    sent, a dict key) is input too, and is shown as ``<key>``.
    """
    return [
        {
            "loc": [p if isinstance(p, int) or _FIELD_NAME.match(str(p)) else "<key>" for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors
    ]


__all__ = [
    "BatchIn",
    "BatchOut",
    "ErrorOut",
    "HealthOut",
    "IncidentIn",
    "ItemError",
    "ModelsOut",
    "RankingOut",
    "ReadyOut",
    "RiskOut",
    "ScoreOut",
    "StatusIn",
    "ValidationErrorOut",
    "WarningRecord",
]
