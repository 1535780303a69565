"""Drift in the jobs: which rows make the reference at training, and which the current side at ranking.

The statistics are ``models/drift.py``'s; this module only picks the rows so that
both sides are the same kind of population:

* **Features and score.** Training snapshots are households with a dispute call
  in the year before the snapshot date (``features.snapshots.candidate_snapshots``);
  the daily ranking scores *every* household and marks exactly that population
  ``in_scope``. The reference is the champion's last ``snapshot_weeks`` weekly
  snapshots (full feature windows, nearest to the ranking); the current side is
  the ranking's ``in_scope`` rows (or, in a training run, the same population
  built as of the data's last day).
* **Text**: the calls of the last ``text_days`` (reference) or ``window_days``
  (current) days before the data's end or the ranking day.
* **Volume**: calls per station (the incident's own ``station_id``) per week.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.drift import (
    REFERENCE_FILE,
    DriftConfig,
    check_reference,
    drift_report,
    load_drift_config,
    no_reference_report,
    reference_profile,
    weekly_counts,
)


def data_end(prepared: Any) -> pd.Timestamp:
    """The morning after the data: its export date, else the day after its latest call."""
    if getattr(prepared, "export_date", None) is not None:
        return pd.Timestamp(prepared.export_date).normalize()
    return pd.Timestamp(prepared.incidents["received_at"].max()).normalize() + pd.Timedelta(days=1)


def station_counties(addresses: pd.DataFrame) -> dict[str, str]:
    """Each station's county (from the addresses table; a station serves one county)."""
    pairs = addresses[["station_id", "county_code"]].dropna().drop_duplicates("station_id")
    return dict(zip(pairs["station_id"].astype(str), pairs["county_code"].astype(str), strict=True))


def _window(prepared: Any, end: pd.Timestamp, days: int) -> np.ndarray:
    at = pd.to_datetime(prepared.incidents["received_at"])
    return ((at < end) & (at >= end - pd.Timedelta(days=days))).to_numpy()


def _text_calls(prepared: Any, end: pd.Timestamp, days: int) -> tuple[pd.DataFrame, list[str]]:
    """The rules' columns and the narratives of the calls in the ``days`` before ``end``."""
    keep = _window(prepared, end, days)
    rules = prepared.rules.loc[keep].reset_index(drop=True)
    return rules, prepared.incidents["narrative"].loc[keep].astype(str).tolist()


def _station_calls(prepared: Any, end: pd.Timestamp, days: int) -> dict[str, int]:
    keep = _window(prepared, end, days)
    counts = prepared.incidents.loc[keep, "station_id"].astype(str).value_counts()
    return {str(k): int(v) for k, v in counts.items()}


def reference_for_training(
    prepared: Any, run: Any, dispute_model: Any, config: DriftConfig | None = None
) -> dict[str, Any]:
    """The reference profile of a training run (the bundle carries it as ``drift_reference.json``)."""
    from pipelines.preparation import code_version

    config = config or load_drift_config()
    dates = np.sort(run.frame["snapshot_date"].unique())[-config.snapshot_weeks :]
    rows = run.frame["snapshot_date"].isin(dates).to_numpy()
    features = run.frame.loc[rows, run.feature_names].reset_index(drop=True)
    score = run.model.raw(features.to_numpy(np.float32))
    end = data_end(prepared)
    rules, narratives = _text_calls(prepared, end, config.text_days)
    ood = dispute_model.featurizer.ood_scores(narratives) if narratives else np.zeros(0)
    incidents = prepared.incidents
    volume = weekly_counts(incidents["received_at"], incidents["station_id"].astype(str), end, config.volume_weeks)
    provenance = {
        "data_fingerprint": prepared.fingerprint,
        "code_version": code_version(),
        "snapshot_from": f"{pd.Timestamp(dates[0]):%Y-%m-%d}",
        "snapshot_to": f"{pd.Timestamp(dates[-1]):%Y-%m-%d}",
        "snapshot_dates": len(dates),
        "text_from": f"{end - pd.Timedelta(days=config.text_days):%Y-%m-%d}",
        "volume_from": f"{end - pd.Timedelta(days=7 * config.volume_weeks):%Y-%m-%d}",
        "data_end": f"{end:%Y-%m-%d}",
        "population": "training snapshots: households with a dispute call in the year before the date",
    }
    county_of = station_counties(prepared.tables["addresses"])
    return reference_profile(
        features, score, rules, ood, dispute_model.ood_threshold, volume, county_of, provenance, config
    )


def reference_bytes(profile: dict[str, Any]) -> bytes:
    """The profile as the bundle file's bytes (sorted keys: the same run gives the same file)."""
    return (json.dumps(profile, ensure_ascii=False, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def read_reference(bundle_dir: Path | None) -> tuple[dict[str, Any] | None, str]:
    """The bundle's reference profile, or (None, why): no bundle, an older bundle without one, a broken one."""
    if bundle_dir is None:
        return None, "no champion model: the rules rank, and there is no training reference to compare with"
    from models.bundle import read_bundle_file

    try:
        data = read_bundle_file(bundle_dir, REFERENCE_FILE)
        if data is None:
            return None, f"the champion's bundle has no {REFERENCE_FILE} (exported before drift monitoring)"
        profile = json.loads(data.decode("utf-8"))
        check_reference(profile)
    except Exception as exc:  # drift must never stop the morning's list
        return None, f"{REFERENCE_FILE} unusable ({type(exc).__name__}: {str(exc)[:160]})"
    return profile, ""


def _dispute_featurizer(bundle_dir: Path) -> Any:
    """The champion bundle's dispute featurizer, as serving builds it (its OOD threshold is in the reference)."""
    from models.bundle import load_manifest
    from models.text_features import IncidentFeaturizer

    manifest = load_manifest(bundle_dir, verify=False)
    return IncidentFeaturizer.from_dict(manifest.provenance["featurizers"]["dispute"])


def _ood_scores(
    prepared: Any, day: pd.Timestamp, days: int, narratives: list[str], bundle_dir: Path, featurizer: Any
) -> np.ndarray:
    """The OOD score of each narrative of the text window: from the incident cache when the run has one.

    Each score depends on its narrative and the featurizer only (pipelines/incident_readings.py),
    so a daily run segments the new day's calls, not the whole window again.
    """
    from pipelines.incident_readings import store_of

    store = store_of(prepared)
    if store is None or not narratives:
        return featurizer.ood_scores(narratives) if narratives else np.zeros(0)
    try:
        return store.ood(prepared.incidents, np.flatnonzero(_window(prepared, day, days)), bundle_dir, featurizer)
    except Exception as exc:  # the cache costs reuse, never the check: score the window as without it
        logging.getLogger("yujing.incident_cache").warning("OOD scores not cached (%s)", type(exc).__name__)
        return featurizer.ood_scores(narratives)


def current_drift(
    prepared: Any,
    bundle_dir: Path | None,
    day: pd.Timestamp,
    frame: pd.DataFrame,
    score: np.ndarray | None,
    config: DriftConfig | None = None,
    made_by: str = "ranking",
) -> dict[str, Any]:
    """The drift report of the population ``frame`` (rows of the reference's population) as of ``day``.

    ``score`` is the champion's raw score on those rows (None when it did not score them).
    Nothing here raises: without a usable reference the report says why and breaches nothing.
    """
    config = config or load_drift_config()
    reference, why = read_reference(bundle_dir)
    if reference is None:
        return no_reference_report(why, config)
    assert bundle_dir is not None
    rules, narratives = _text_calls(prepared, day, config.text_window_days)
    try:
        featurizer = _dispute_featurizer(bundle_dir)
        ood = _ood_scores(prepared, day, config.text_window_days, narratives, bundle_dir, featurizer)
    except Exception:  # a bundle without the dispute featurizer: no text check (features and volume still)
        ood = None
    names = [n for n in reference["features"] if n in frame.columns]
    current = {
        "made_by": made_by,
        "date": f"{day:%Y-%m-%d}",
        "rows": len(frame),
        "text_from": f"{day - pd.Timedelta(days=config.text_window_days):%Y-%m-%d}",
        "text_calls": len(narratives),
        "volume_from": f"{day - pd.Timedelta(days=config.volume_window_days):%Y-%m-%d}",
        "data_fingerprint": prepared.fingerprint,
    }
    return drift_report(
        reference,
        frame[names],
        score,
        rules if ood is not None else None,
        ood,
        _station_calls(prepared, day, config.volume_window_days),
        station_counties(prepared.tables["addresses"]),
        config,
        current,
    )


def ranking_drift(prepared: Any, scored: Any, bundle_dir: Path | None) -> dict[str, Any]:
    """The daily ranking's drift: its ``in_scope`` households and the champion's scores, against the bundle.

    Never stops the morning's list: a thresholds file that cannot be read, or any failure, becomes a
    report that says why drift was not measured (and the CLI prints it).
    """
    try:
        config = load_drift_config()
    except ValueError as exc:
        return no_reference_report(f"drift not measured: {exc}", DriftConfig())
    if scored.engine != "model":  # no model ranked: its reference says nothing about today's list
        why = scored.model.get("why") or "no champion model"
        return no_reference_report(f"the scoring rules ranked ({why}): no model reference to compare with", config)
    in_scope = scored.frame["in_scope"].to_numpy(bool)
    score = np.asarray(scored.score, dtype=np.float64)[in_scope]
    try:
        return current_drift(prepared, bundle_dir, scored.day, scored.frame.loc[in_scope], score, config)
    except Exception as exc:
        return no_reference_report(f"drift not measured ({type(exc).__name__}: {str(exc)[:160]})", config)


def training_drift(prepared: Any, tracking_uri: str, cache: Path | None = None) -> dict[str, Any]:
    """A training run's latest data against the current champion's reference (before any promotion).

    The current side is built as the ranking would see it on the data's last day: households with a
    dispute call in the year before, their features and scoring-rule points, scored by the champion.
    ``cache``: a folder the champion's bundle is downloaded into once (the promotion gate reads it
    too); default a temporary one.
    """
    import contextlib
    import tempfile

    from models import registry

    config = load_drift_config()
    with contextlib.ExitStack() as stack:
        folder = cache if cache is not None else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        try:
            bundle_dir = registry.champion_bundle(tracking_uri, folder, registry.ESCALATION_MODEL)
        except Exception as exc:  # an unreadable registry: no comparison, and the run goes on
            return no_reference_report(f"the champion could not be read ({type(exc).__name__})", config)
        if bundle_dir is None:
            return no_reference_report("no champion yet: this run's model will be the first reference", config)
        reference, why = read_reference(bundle_dir)
        if reference is None:
            return no_reference_report(why, config)
        day = data_end(prepared)
        frame = latest_population(prepared, day)
        score = _champion_scores(bundle_dir, frame)
        return current_drift(prepared, bundle_dir, day, frame, score, config, made_by="training")


def latest_population(prepared: Any, day: pd.Timestamp) -> pd.DataFrame:
    """Features and rule points as of ``day`` for households with a dispute call in the year before."""
    from features.snapshots import build_snapshots
    from models.warning import load_scenarios, points_at_snapshots

    snaps = build_snapshots(prepared.calls, prepared.tables, pd.DatetimeIndex([day]))
    frame = snaps.frame
    points = points_at_snapshots(prepared.calls, frame["household_id"], frame["snapshot_date"], load_scenarios())
    for name, values in points.items():
        frame[f"points_{name}"] = values.astype(np.float32)
    return frame


def _champion_scores(bundle_dir: Path, frame: pd.DataFrame) -> np.ndarray | None:
    """The champion's raw scores on ``frame`` (None when it needs features this code does not compute)."""
    from serving.scorer import OnnxScorer

    try:
        scorer = OnnxScorer.from_bundle(bundle_dir)
        names = list(scorer.feature_names("escalation"))
        if not set(names) <= set(frame.columns) or not len(frame):
            return None
        return np.asarray(scorer.predict("escalation", frame[names].to_numpy(np.float32))[:, 1], dtype=np.float64)
    except Exception:
        return None


DRIFTED = "Drifted"
"""The name of the Completed state a flow run ends in when drift alerts (docs/drift.md#the-flag)."""


def drift_state(summary: dict[str, Any], publish: bool = True) -> Any:
    """Inside a Prefect flow: the summary itself, or a Completed state named "Drifted" when drift alerts.

    With ``publish`` the run also logs a warning and gets a Markdown artifact ``yujing-drift`` with the
    drift table; a parent flow passes ``publish=False`` to raise the same flag without a second copy.
    """
    drift = summary.get("drift") or {}
    if drift.get("status") != "alert":
        return summary
    from prefect.states import Completed

    from models.drift import summary_line

    line = summary_line(drift)
    if publish:
        from prefect import get_run_logger
        from prefect.artifacts import create_markdown_artifact

        from models.drift_views import drift_lines

        get_run_logger().warning(line)
        create_markdown_artifact(markdown="\n".join(drift_lines(drift)), key="yujing-drift", description=line[:500])
    return Completed(data=summary, name=DRIFTED, message=line[:500])
