"""One household's features at any moment, from its stored history plus one new call.

The daily ranking stores, per household, the calls of the two years before
the ranking date (rule outputs only, no text) and the features that do not
come from calls (registry, cases, visits, relations). The online service
answers "what is this household's risk now that this call came in?" by
recomputing the call features over the stored calls and the new one, with
the same definitions as :func:`features.snapshots.build_snapshots`: a test
checks both give the same numbers on the same history. Pure Python over a few
dozen calls is faster here than the vectorised batch code, whose fixed cost
per array operation dominates for one household.

What is not seen: calls between the ranking date and the new call that were
not sent to the service (the next daily ranking brings them in), and changes
to the registry, cases and visits since the ranking date.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from features.schema import CATEGORIES
from features.snapshots import (
    CUE_GROUPS,
    DAY,
    EXCITATION_DAYS,
    MAX_DAYS,
    MEMORY_CUES,
    MEMORY_DAYS,
    SHARE_CUES,
    WINDOWS,
    trajectory_feature_names,
)

CALL_COLUMNS = (
    "received_sec",
    "is_dispute",
    "category",
    "dispute_score",
    "n_deescalation",
    *(f"cue_{g}" for g in CUE_GROUPS),
    "third_party",
    "distinct_start",
    "person_id",
)
"""What one stored call holds: when, the rules' verdict on its text, and who called (a key, not a name)."""

_DAY = float(DAY)


@dataclass(frozen=True)
class Call:
    """One call as the household features see it."""

    received_sec: int
    is_dispute: bool
    category: str | None
    dispute_score: float
    n_deescalation: int
    cues: frozenset[str]
    third_party: bool
    distinct_start: bool
    person_id: str | None = None


def call_feature_names() -> list[str]:
    """The snapshot features that come from calls, in ``build_snapshots`` order."""
    names = [f"{kind}_{w}d" for w in WINDOWS for kind in ("calls", "disputes")]
    names += [f"cat_{c}_{w}d" for c in CATEGORIES for w in (90, 365)]
    names += [f"cue_{g}_{w}d" for g in CUE_GROUPS for w in (30, 90, 365)]
    names += [
        "deescalation_90d",
        "max_dispute_score_90d",
        "acceleration",
        "days_since_last_dispute",
        "days_since_first_dispute",
        "days_since_last_call",
        *trajectory_feature_names(),
        "third_party_calls_365d",
        "distinct_callers_365d",
    ]
    return names


def call_features(calls: Iterable[Call], end_sec: int, first_dispute_sec: float | None = None) -> dict[str, float]:
    """The call features of one household at ``end_sec`` (calls at or after it do not count).

    ``first_dispute_sec`` is the household's first dispute call ever when the
    stored calls may not reach back to it (None: the stored calls do).
    """
    before = [c for c in calls if c.received_sec < end_sec]
    out: dict[str, float] = {}

    def within(days: int) -> list[Call]:
        start = end_sec - days * int(DAY)
        return [c for c in before if c.received_sec >= start]

    spans = {w: within(w) for w in (*WINDOWS, 30, 90, 365)}
    for w in WINDOWS:
        out[f"calls_{w}d"] = float(len(spans[w]))
        out[f"disputes_{w}d"] = float(sum(c.is_dispute for c in spans[w]))
    for category in CATEGORIES:
        for w in (90, 365):
            out[f"cat_{category}_{w}d"] = float(sum(c.is_dispute and c.category == category for c in spans[w]))
    for g in CUE_GROUPS:
        for w in (30, 90, 365):
            out[f"cue_{g}_{w}d"] = float(sum(g in c.cues for c in spans[w]))
    out["deescalation_90d"] = float(sum(c.n_deescalation > 0 for c in spans[90]))
    out["max_dispute_score_90d"] = max((c.dispute_score for c in spans[90]), default=0.0)
    recent, earlier = out["disputes_30d"], out["disputes_90d"] - out["disputes_30d"]
    out["acceleration"] = (recent + 1.0) / (earlier / 2.0 + 1.0)
    disputes = [c.received_sec for c in before if c.is_dispute]
    first = min(disputes, default=None)
    if first_dispute_sec is not None and first_dispute_sec < end_sec:
        first = first_dispute_sec if first is None else min(first, first_dispute_sec)
    out["days_since_last_dispute"] = _days_since(max(disputes, default=None), end_sec)
    out["days_since_first_dispute"] = _days_since(first, end_sec)
    out["days_since_last_call"] = _days_since(max((c.received_sec for c in before), default=None), end_sec)
    out.update(_trajectory(before, end_sec, out["disputes_365d"]))
    out["third_party_calls_365d"] = float(sum(c.third_party for c in spans[365]))
    out["distinct_callers_365d"] = float(sum(c.distinct_start for c in spans[365]))
    return out


def _decayed(calls: list[Call], end_sec: int, tau_days: float) -> float:
    """features.snapshots.decayed_sum for one household: ages up to 6 tau."""
    horizon = end_sec - round(6 * tau_days * _DAY)
    return sum(math.exp(-(end_sec - c.received_sec) / (tau_days * _DAY)) for c in calls if c.received_sec >= horizon)


def _trajectory(before: list[Call], end_sec: int, disputes_365d: float) -> dict[str, float]:
    """features.snapshots._trajectory_features for one household (same names, same definitions)."""
    disputes = [c for c in before if c.is_dispute]
    out = {"excitation": _decayed(disputes, end_sec, EXCITATION_DAYS)}
    for g in MEMORY_CUES:
        out[f"{g}_memory"] = _decayed([c for c in disputes if g in c.cues], end_sec, MEMORY_DAYS)
    year = end_sec - 365 * int(DAY)
    for g in SHARE_CUES:
        shown = sum(1 for c in disputes if c.received_sec >= year and g in c.cues)
        out[f"{g}_share_365d"] = shown / max(disputes_365d, 1.0)
    violent = [c.received_sec for c in disputes if "violence" in c.cues]
    out["days_since_last_violence"] = _days_since(max(violent, default=None), end_sec)
    times = sorted(c.received_sec for c in disputes)
    out["gap_last_disputes"] = min((times[-1] - times[-2]) / _DAY, MAX_DAYS) if len(times) >= 2 else MAX_DAYS
    return out


def _days_since(seconds: float | None, end_sec: int) -> float:
    return MAX_DAYS if seconds is None else min((end_sec - seconds) / _DAY, MAX_DAYS)


def new_call_flags(
    history: Sequence[Call], person_id: str | None, caller_household: str | None, household: str, received_sec: int
) -> tuple[bool, bool]:
    """``third_party`` and ``distinct_start`` of a new call, by the batch definitions (features.snapshots)."""
    third_party = caller_household is not None and caller_household != household
    if not person_id:
        return third_party, False
    year = 365 * int(DAY)
    previous = [c.received_sec for c in history if c.person_id == person_id and c.received_sec <= received_sec]
    return third_party, not previous or received_sec - max(previous) >= year
