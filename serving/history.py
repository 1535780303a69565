"""The households' stored history, as the latest daily ranking published it.

The ranking (pipelines/ranking.py) writes, next to its lists, the tables the
online service needs: each household's features that do not come from calls,
its calls of the last two years as the features see them (rule outputs and
caller keys, no text), where it is, and which household each caller key
belongs to. This module loads one published date into arrays indexed by
household, so a request finds its household in O(1) and builds
:class:`features.online.Call` objects only for that household's few calls.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.online import Call
from features.snapshots import CUE_GROUPS, to_seconds
from models.escalations import COLUMNS as ESCALATION_COLUMNS  # escalations.parquet (optional), one home

REQUIRED = ("manifest.json", "features.parquet", "calls.parquet", "context.parquet", "person_households.parquet")

VISIT_COLUMNS = ("household_id", "visited_at", "visit_type", "outcome")
"""``visits.parquet`` (optional): the households' visits of the 730 days before the ranking date, no free text."""


class HistoryError(ValueError):
    """A ranking folder the service cannot read as history; the message names the file."""


@dataclass(frozen=True)
class Household:
    """One household's stored state as of the ranking date."""

    household_id: str
    station_id: str
    county_code: str
    static: dict[str, float]
    calls: tuple[Call, ...]
    first_dispute_sec: float | None
    probability: float | None
    negated: tuple[frozenset[str], ...] = ()
    """Cue groups each call denies (没有动手), aligned with ``calls``; listed with the recent calls."""


class HouseholdHistory:
    """Every household's stored state of one ranking date; read-only, safe to share between threads."""

    def __init__(self, folder: Path) -> None:
        folder = Path(folder)
        missing = [name for name in REQUIRED if not (folder / name).is_file()]
        if missing:
            raise HistoryError(f"{folder}: not a ranking with history (missing {', '.join(missing)}); run yujing rank")
        self.folder = folder.resolve()
        self.manifest: dict[str, Any] = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        self.date = str(self.manifest["date"])
        self.day_sec = int(to_seconds(pd.Series([pd.Timestamp(self.date)]))[0])
        self.feature_names: list[str] = list(self.manifest["feature_names"])
        features = pd.read_parquet(folder / "features.parquet")
        self._ids = pd.Index(features["household_id"].astype(str))
        self._position = {h: i for i, h in enumerate(self._ids)}
        self.static_names = [c for c in features.columns if c not in ("household_id", "probability")]
        self._static = features[self.static_names].to_numpy(np.float32)
        self._probability = features["probability"].to_numpy(np.float64)
        context = pd.read_parquet(folder / "context.parquet").set_index("household_id").reindex(self._ids)
        self._station = context["station_id"].astype(str).to_numpy()
        self._county = context["county_code"].astype(str).to_numpy()
        self._first_dispute = context["first_dispute_sec"].to_numpy(np.float64)
        at_address = context["address_id"].astype(str)
        single = ~at_address.duplicated(keep=False).to_numpy()
        self._address_household = pd.Series(self._ids[single], index=at_address.to_numpy()[single])
        calls = pd.read_parquet(folder / "calls.parquet")
        codes = self._ids.get_indexer(calls["household_id"].astype(str))
        starts = np.searchsorted(codes, np.arange(len(self._ids) + 1)) if len(codes) else np.zeros(len(self._ids) + 1)
        if len(codes) and np.any(np.diff(codes) < 0):
            raise HistoryError(f"{folder / 'calls.parquet'}: calls are not sorted by household; re-run yujing rank")
        self._starts = starts.astype(np.int64)
        persons = pd.read_parquet(folder / "person_households.parquet")
        self._person_household = pd.Series(persons["household_id"].astype(str).to_numpy(), index=persons["person_id"])
        self._received = calls["received_sec"].to_numpy(np.int64)
        self._is_dispute = calls["is_dispute"].to_numpy(bool)
        self._category = calls["category"].to_numpy(object)
        self._score = calls["dispute_score"].to_numpy(np.float64)
        self._deesc = calls["n_deescalation"].to_numpy(np.int64)
        self._cues = calls[[f"cue_{g}" for g in CUE_GROUPS]].to_numpy() > 0
        self._third_party = calls["third_party"].to_numpy(bool)
        self._distinct = calls["distinct_start"].to_numpy(bool)
        self._person = calls["person_id"].to_numpy(object)
        # Older histories lack the column: their calls are listed without negations.
        negated = calls["negated_cues"] if "negated_cues" in calls.columns else pd.Series([""] * len(calls))
        sets: dict[str, frozenset[str]] = {}  # few distinct values: share one set per value
        self._negated = [
            sets.setdefault(str(v or ""), frozenset(filter(None, str(v or "").split(",")))) for v in negated
        ]

    def __contains__(self, household_id: str) -> bool:
        return household_id in self._position

    def __len__(self) -> int:
        return len(self._ids)

    def household_of_person(self, person_id: str) -> str | None:
        """The household a caller key belongs to (None when unknown)."""
        found = self._person_household.get(person_id)
        return str(found) if found is not None else None

    def _call(self, j: int) -> Call:
        category, person = self._category[j], self._person[j]
        return Call(
            received_sec=int(self._received[j]),
            is_dispute=bool(self._is_dispute[j]),
            category=category if isinstance(category, str) else None,
            dispute_score=float(self._score[j]),
            n_deescalation=int(self._deesc[j]),
            cues=frozenset(g for g, on in zip(CUE_GROUPS, self._cues[j], strict=True) if on),
            third_party=bool(self._third_party[j]),
            distinct_start=bool(self._distinct[j]),
            person_id=person if isinstance(person, str) and person else None,
        )

    def household_at(self, address_id: str) -> str | None:
        """The household living at an address, when exactly one does (None otherwise)."""
        found = self._address_household.get(address_id)
        return str(found) if found is not None else None

    def get(self, household_id: str) -> Household | None:
        """A household's stored state, or None for an id the registry does not hold."""
        i = self._position.get(household_id)
        if i is None:
            return None
        lo, hi = int(self._starts[i]), int(self._starts[i + 1])
        first = self._first_dispute[i]
        probability = self._probability[i]
        return Household(
            household_id=household_id,
            station_id=str(self._station[i]),
            county_code=str(self._county[i]),
            static=dict(zip(self.static_names, self._static[i].tolist(), strict=True)),
            calls=tuple(self._call(j) for j in range(lo, hi)),
            first_dispute_sec=None if np.isnan(first) else float(first),
            probability=None if np.isnan(probability) else float(probability),
            negated=tuple(self._negated[j] for j in range(lo, hi)),
        )


def optional_table(folder: Path, name: str, columns: tuple[str, ...]) -> pd.DataFrame | None:
    """An optional table of a ranking folder with exactly ``columns`` (None when the ranking predates it).

    A file that is there but lacks a column is an error naming the file and the columns: a
    half-written or foreign file must not pass for "no visits".
    """
    path = Path(folder) / name
    if not path.is_file():
        return None
    import pyarrow.parquet as pq

    try:
        present = set(pq.read_schema(path).names)
    except (OSError, ValueError) as exc:
        raise HistoryError(f"{path}: not a readable Parquet file ({type(exc).__name__}); re-run yujing rank") from None
    missing = [c for c in columns if c not in present]
    if missing:
        raise HistoryError(f"{path}: lacks the columns {', '.join(missing)}; re-run yujing rank")
    return pd.read_parquet(path, columns=list(columns))


def read_visits(folder: Path) -> pd.DataFrame | None:
    """The ranking's ``visits.parquet`` (household_id, visited_at, visit_type, outcome), or None."""
    return optional_table(folder, "visits.parquet", VISIT_COLUMNS)


def read_escalations(folder: Path) -> pd.DataFrame | None:
    """The ranking's ``escalations.parquet`` (violent cases and whether the rules had warned), or None."""
    return optional_table(folder, "escalations.parquet", ESCALATION_COLUMNS)
