"""The rules' reading and the drift check's OOD score of each recent call, from the incident cache.

After :func:`pipelines.preparation.prepare`, three steps of the daily ranking read
the text of recent calls once more: the warned households' recent calls and
terms (``ranking_reasons.recent_calls``), the cues each call of the online
tables denies (``ranking_reasons.negated_cues``) and the drift check's
out-of-vocabulary share of the text window (``drift.current_drift``). Each value
depends on one incident's narrative and on code (and, for OOD, the champion's
dispute featurizer), never on another incident, so it is kept per incident in
the same cache as the rule verdicts and links (pipelines/incident_cache.py:
same keys, storage and repair) and computed only for incidents not seen before.

* **reading** (kind ``readings``): what a recent-call phrase
  (:func:`models.reasons.call_phrase`) and the terms counter take from
  :func:`models.rules.score_text`: ``is_dispute``, ``category``, the cue groups
  found and negated, and the un-negated, non-negation lexicon terms in text
  order. Version: the rules' code and the lexicon, plus this module.
* **OOD** (kind ``ood``): :meth:`models.text_features.IncidentFeaturizer.ood_scores`
  of one narrative. Version: the sha256 of the bundle's ``manifest.json`` (the
  featurizer's vocabulary lives there), the featurizer's and the segmenter's
  code, the lexicon, the jieba user dictionary and jieba's version.

Without a cache (``yujing rank --no-cache``) nothing here is used: the steps
score each text as before. With one, the values are the same (a test compares
published files byte for byte).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.levels import EVIDENCE_DAYS
from models.rules import score_text
from pipelines.incident_cache import (
    RULE_INPUTS,
    RULE_SOURCES,
    CacheStats,
    _cached,
    _missing_to_none,
    _Store,
    cache_size,
    source_version,
)

READING_COLUMNS = ("is_dispute", "category", "cues", "negated_cues", "terms")
"""A reading's columns: cue groups joined with "," (group names hold none), terms as a JSON list."""
READING_SOURCES = (*RULE_SOURCES, "pipelines/incident_readings.py")
"""The code behind a reading: the rules' (a rule verdict's) and how this module stores it."""
OOD_SOURCES = ("models/text_features.py", "features/text.py", "pipelines/incident_readings.py")
"""The code behind an OOD score (the featurizer's state comes from the bundle, hashed apart)."""


def read_texts(narratives: Sequence[Any]) -> pd.DataFrame:
    """The rules' reading of each narrative (:data:`READING_COLUMNS`), one :func:`score_text` each."""
    rows: dict[str, list[Any]] = {c: [] for c in READING_COLUMNS}
    for text in narratives:
        if not isinstance(text, str):  # the contract requires a narrative; nothing to read without one
            text = ""
        result = score_text(text)
        rows["is_dispute"].append(bool(result.is_dispute))
        rows["category"].append(result.category)
        rows["cues"].append(",".join(result.cues))
        rows["negated_cues"].append(",".join(result.negated_cues))
        # each term once per call, in text order (the terms counter's tie order)
        terms = dict.fromkeys(t["term"] for t in result.matched_terms if t["kind"] != "negation" and not t["negated"])
        rows["terms"].append(json.dumps(list(terms), ensure_ascii=False))
    frame = pd.DataFrame(rows)
    frame["is_dispute"] = frame["is_dispute"].astype(bool)
    frame["category"] = frame["category"].astype(object)
    return frame


@dataclass
class IncidentStore:
    """What the steps after ``prepare`` need to reach the incident cache: its scope folder and the run's counts.

    ``counts`` is the ``Prepared.cache`` dict itself: the readings' and OOD hits and misses are
    added to it (reported like the verdicts' and links', never written into an output).
    """

    scope: Path
    counts: dict[str, Any]
    _windows: dict[Any, tuple[np.ndarray, pd.DataFrame]] = field(default_factory=dict, repr=False)

    def cached(
        self,
        kind: str,
        version: str,
        rows: pd.DataFrame,
        compute: Any,
        inputs: Sequence[str] = RULE_INPUTS,
        text: Sequence[str] = (),
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """``compute``'s columns for ``rows`` (keyed by ``incident_id`` and ``inputs``), the cached ones reused.

        Also what other per-row results of a run use (pipelines/escalation_cache.py): ``rows``
        then holds their own key in ``incident_id``. ``text``: columns returned as Arrow strings.
        """
        stats = CacheStats()
        values, hit = _cached(_Store(self.scope, kind, version), rows, inputs, compute, stats, text)
        self.counts[f"{kind}_hits"] = self.counts.get(f"{kind}_hits", 0) + int(hit.sum())
        self.counts[f"{kind}_misses"] = self.counts.get(f"{kind}_misses", 0) + int((~hit).sum())
        if stats.rebuilt:
            self.counts.setdefault("rebuilt", []).extend(stats.rebuilt)
        if len(hit) and not hit.all():  # a part was added
            self.counts["bytes_on_disk"] = cache_size(self.scope)
        return values, hit

    def readings(self, incidents: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
        """The readings of ``incidents`` at positions ``rows`` (RangeIndex frame), cached ones reused."""
        from features.lexicon import default_lexicon

        if len(rows) == 0:
            return read_texts([])
        version = source_version(READING_SOURCES, f"lexicon {default_lexicon().version}")
        values, _ = self.cached(
            "readings", version, incidents.iloc[rows], lambda miss: read_texts(miss["narrative"].tolist())
        )
        values["is_dispute"] = values["is_dispute"].to_numpy().astype(bool)
        values["category"] = _missing_to_none(values["category"].to_numpy())
        return values

    def window_readings(self, prepared: Any, day: pd.Timestamp) -> tuple[np.ndarray, pd.DataFrame]:
        """The readings of every linked call of the ``EVIDENCE_DAYS`` before ``day`` (positions, readings).

        Both users (the warned households' recent calls, the online tables' negated cues) read
        calls of that window only; it is looked up once per run and day.
        """
        if day not in self._windows:
            at = prepared.calls["received_at"]
            mask = (at >= day - pd.Timedelta(days=EVIDENCE_DAYS)) & (at < day) & prepared.calls["household_id"].notna()
            rows = np.flatnonzero(mask.to_numpy())
            self._windows[day] = (rows, self.readings(prepared.incidents, rows))
        return self._windows[day]

    def ood(self, incidents: pd.DataFrame, rows: np.ndarray, bundle_dir: Path, featurizer: Any) -> np.ndarray:
        """``featurizer.ood_scores`` of the narratives at ``rows`` (as ``str``), cached ones reused."""
        from features.lexicon import default_lexicon
        from models.text_features import _userdict_hash

        if len(rows) == 0:
            return np.zeros(0)
        manifest = hashlib.sha256((Path(bundle_dir) / "manifest.json").read_bytes()).hexdigest()
        extra = f"bundle {manifest} lexicon {default_lexicon().version} userdict {_userdict_hash()} jieba {_jieba()}"

        def compute(miss: pd.DataFrame) -> pd.DataFrame:
            return pd.DataFrame({"ood": featurizer.ood_scores(miss["narrative"].astype(str).tolist())})

        values, _ = self.cached("ood", source_version(OOD_SOURCES, extra), incidents.iloc[rows], compute)
        return values["ood"].to_numpy().astype(np.float64)


def _jieba() -> str:
    from importlib.metadata import version

    return version("jieba")


def store_of(prepared: Any) -> IncidentStore | None:
    """The run's :class:`IncidentStore` (None without a cache, or for a frame built by hand)."""
    return getattr(prepared, "incident_store", None)


def readings_at(prepared: Any, rows: np.ndarray, day: pd.Timestamp) -> pd.DataFrame:
    """The readings of the incidents at positions ``rows``: from the cache's window, else scored here.

    ``rows`` are calls of the ``EVIDENCE_DAYS`` before ``day``; one outside that window (none
    today) is looked up on its own.
    """
    store = store_of(prepared)
    if store is None:
        return read_texts(prepared.incidents["narrative"].to_numpy()[rows].tolist())
    window, values = store.window_readings(prepared, day)
    where = np.searchsorted(window, rows)
    inside = (where < len(window)) & (window[np.minimum(where, len(window) - 1)] == rows) if len(window) else None
    if inside is not None and inside.all():
        return values.iloc[where].reset_index(drop=True)
    return store.readings(prepared.incidents, rows)


def split_list(joined: str) -> list[str]:
    """A reading's cue column back as the list :func:`score_text` gave."""
    return joined.split(",") if joined else []
