"""The daily ranking as plain functions: features as of the date, champion scoring, levels, reasons, outputs.

``pipelines/flows.py`` wraps each step in a Prefect task and
``yujing rank --date D`` runs it; tests call these functions directly. The
order of the last steps makes the job crash-consistent
(docs/ranking.md#crash-consistency; pipelines/publication.py): every file is written into a hidden
folder, the warnings are staged in the database as *pending* (no reader sees
them), the folder is made visible with one rename (the commit point), and the
pending warnings are then applied. A kill at any point leaves files and rows
both of the old ranking or both of the new one as every reader sees them:
readers and the next run roll a published folder's pending warnings forward
and drop the others. Running a date twice gives the same files and rows.

"As of D" means the morning of D: calls, cases and visits before D count,
exactly as for a training snapshot dated D.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from conf import Settings
from conf.settings import setting_default
from features.household_keys import code_households
from features.matrix import float32_blocks
from features.online import CALL_COLUMNS, call_feature_names
from features.snapshots import Snapshots, build_snapshots, caller_flags, household_codes, to_seconds
from models.levels import (
    EVIDENCE_FEATURE,
    LEVELS,
    RAISED_BY,
    assign_levels,
    dropped_model_level,
    priority,
    threshold_levels,
    worst_scenarios,
)
from models.warning import load_scenarios, points_at_snapshots
from pipelines.arrow_columns import days_before, numpy_text, sparse_lists, stable_order, text_column
from pipelines.preparation import Prepared, code_version, prepare
from pipelines.ranking_reasons import (
    ESCALATION,
    dominant_category,
    model_reasons,
    negated_cues,
    recent_calls,
    rule_reasons,
)
from pipelines.steps import step_runner

NO_RULE_POINTS = "积分预警：近90天无计分报警"

RANK_STEPS = (
    "resolve champion",
    "load, validate, score and link",
    "features as of the date and scoring",
    "levels and reasons",
    "tables for the online service",
    "write outputs",
    "stage warnings in the database",
    "publish",
    "apply warnings in the database",
)
"""The steps of the daily job, in order, as :func:`run_ranking` (and the flow) name them to the progress display."""


class RankingError(ValueError):
    """The ranking cannot run as asked; the message names the input and the fix."""


@dataclass(frozen=True)
class RankConfig:
    """The knobs of a daily ranking; defaults and meanings are the settings object's (conf/settings.py)."""

    thresholds: dict[str, float] = field(default_factory=lambda: setting_default("level_thresholds"))
    capacity: dict[str, int] = field(default_factory=lambda: setting_default("station_capacity"))
    reasons_per_household: int = 3
    terms_per_household: int = 8
    calls_per_household: int = 6
    """Recent calls listed per warning (the last ``EVIDENCE_DAYS`` days, newest first)."""
    history_days: int = 730
    """Calls kept for the online service: two years covers every window and the days-since caps."""

    @classmethod
    def from_settings(cls, settings: Settings) -> RankConfig:
        return cls(thresholds=dict(settings.level_thresholds), capacity=dict(settings.station_capacity))


@dataclass(frozen=True)
class CallCodes:
    """Household codes (``household_codes`` of the registry) as the features assigned them.

    ``calls`` and the caller flags are per row of ``prepared.calls`` (code -1: no household in the
    registry, flags then False); ``rows`` per row of ``Scored.frame``. The online tables read them
    instead of hashing the city's households and persons a second time.
    """

    calls: np.ndarray
    third_party: np.ndarray
    distinct_start: np.ndarray
    rows: np.ndarray

    @classmethod
    def of(cls, snaps: Snapshots) -> CallCodes:
        """What :func:`build_snapshots` computed for its calls and rows."""
        assert snaps.codes is not None and snaps.call_flags is not None
        return cls(snaps.codes[0], *snaps.call_flags, snaps.codes[1])

    @classmethod
    def compute(cls, prepared: Prepared, frame: pd.DataFrame) -> CallCodes:
        """The same codes and flags from the registry (for a ``Scored`` built without them)."""
        tables = prepared.tables
        codes = household_codes(tables["households"])
        coded = code_households(prepared.calls["household_id"], codes)  # a missing id is -1
        kept = coded >= 0
        linked = prepared.calls[kept].reset_index(drop=True)
        flags = np.zeros((2, len(coded)), dtype=bool)
        flags[0, kept], flags[1, kept] = caller_flags(
            linked, tables["persons"], codes, coded[kept], to_seconds(linked["received_at"])
        )
        return cls(coded, flags[0], flags[1], code_households(frame["household_id"], codes))


@dataclass
class Scored:
    """Every household as of the date: features, rule points, and the engine's scores.

    ``probability`` is calibrated (it earns the model's level); ``score`` is the
    model's raw output, strictly ordered, which orders a station's list. Both
    are NaN when the rules rank.
    """

    day: pd.Timestamp
    frame: pd.DataFrame
    feature_names: list[str]
    points: dict[str, np.ndarray]
    engine: str
    probability: np.ndarray
    model: dict[str, Any]
    scorer: Any = None
    score: np.ndarray | None = None
    codes: CallCodes | None = None
    """The features' household codes of calls and rows (None: :func:`serving_tables` computes them)."""

    def __post_init__(self) -> None:
        if self.score is None:
            self.score = np.full(len(self.frame), np.nan)


def ranking_day(incidents: pd.DataFrame, date: str | None, export_date: pd.Timestamp | None = None) -> pd.Timestamp:
    """The date to rank: the one asked for, else the export date ("today" for the data).

    Without an export date (a frame loaded by hand), the day after the latest
    call. A date after the export date is refused: the data cannot know it,
    and an empty list would look like a quiet city.
    """
    if date is None:
        if export_date is not None:
            return pd.Timestamp(export_date).normalize()
        return (pd.Timestamp(incidents["received_at"].max()).normalize() + pd.Timedelta(days=1)).normalize()
    try:
        day = pd.Timestamp(date)
    except ValueError:
        raise RankingError(f"--date {date!r} is not a date; use YYYY-MM-DD") from None
    if day != day.normalize():
        raise RankingError(f"--date {date!r} has a time of day; give the date only (YYYY-MM-DD)")
    first = pd.Timestamp(incidents["received_at"].min()).normalize()
    if day <= first:
        raise RankingError(f"--date {day:%Y-%m-%d} is before the data starts ({first:%Y-%m-%d}): nothing to rank on")
    if export_date is not None and day > pd.Timestamp(export_date).normalize() + pd.Timedelta(days=1):
        raise RankingError(
            f"--date {day:%Y-%m-%d} is after the data was exported ({pd.Timestamp(export_date):%Y-%m-%d}): "
            "it cannot know that day; fix: rank a date up to the day after the export, or load a newer export"
        )
    return day


def household_features(
    prepared: Prepared, day: pd.Timestamp
) -> tuple[pd.DataFrame, list[str], dict[str, np.ndarray], Snapshots]:
    """Every registered household's features as of the morning of ``day``, rule points among them.

    Also returns the snapshots themselves: their per-call household codes and caller flags
    serve the online tables (``Scored.codes``).
    """
    from pipelines.household_keys_cache import cached_registry_keys
    from pipelines.incident_readings import store_of

    store = store_of(prepared)  # with the incident cache, the registry's keys are kept per registry
    registry = cached_registry_keys(prepared.tables, store.scope if store else None, prepared.cache)
    day_index = pd.DatetimeIndex([day])
    snaps = build_snapshots(prepared.calls, prepared.tables, day_index, all_households=True, registry=registry)
    frame = snaps.frame
    points = points_at_snapshots(
        prepared.calls, frame["household_id"], frame["snapshot_date"], load_scenarios(), snaps.codes
    )
    for name, values in points.items():
        frame[f"points_{name}"] = values.astype(np.float32)
    return frame, snaps.feature_names + [f"points_{name}" for name in points], points, snaps


def resolve_champion(tracking_uri: str, cache: Path) -> tuple[Path | None, str | None]:
    """The escalation champion's bundle and its version label, or (None, None) when none can be had.

    A registry that cannot be read must not stop the morning's list: the
    rules rank instead, and the outputs say so.
    """
    from models import registry

    try:
        path = registry.champion_bundle(tracking_uri, cache, registry.ESCALATION_MODEL)
    except Exception:
        return None, None
    if path is None:
        return None, None
    return path, f"{registry.ESCALATION_MODEL} v{path.name.rsplit('-v', 1)[1]}"


def load_scorer(
    bundle_dir: Path | None, feature_names: list[str], opener: Callable[[Path], Any] | None = None
) -> tuple[Any, str | None]:
    """The champion's ONNX scorer, or (None, why) when there is no usable bundle: the rules rank instead.

    ``opener`` builds the scorer from the bundle folder (default ``OnnxScorer.from_bundle``; a Dask
    worker passes one that keeps it per process, pipelines/cluster_ranking.py).
    """
    if bundle_dir is None:
        return None, "no champion model registered"
    from serving.scorer import OnnxScorer

    try:
        scorer = (opener or OnnxScorer.from_bundle)(bundle_dir)
        expected = list(scorer.feature_names(ESCALATION))
    except Exception as exc:  # a broken bundle must not stop the morning's list: the rules still rank
        return None, f"bundle {bundle_dir} unusable ({type(exc).__name__}: {str(exc)[:200]})"
    missing = [name for name in expected if name not in set(feature_names)]
    if missing:  # the model may use a subset of what the job computes (feature selection), never more
        raise RankingError(
            f"bundle {bundle_dir} was trained on features this code does not compute ({sorted(missing)[:3]}); "
            "fix: retrain with `yujing train` on this code"
        )
    return scorer, None


def score_households(
    prepared: Prepared,
    day: pd.Timestamp,
    bundle_dir: Path | None,
    model_version: str | None,
    opener: Callable[[Path], Any] | None = None,
) -> Scored:
    """Features for every household and the champion's calibrated probabilities (NaN when the rules rank)."""
    frame, names, points, snaps = household_features(prepared, day)
    scorer, why_not = load_scorer(bundle_dir, names, opener)
    if scorer is None:
        probability = np.full(len(frame), np.nan)
        model = {"engine": "rules", "why": why_not, "model_version": None}
        return Scored(day, frame, names, points, "rules", probability, model, codes=CallCodes.of(snaps))
    from serving.incident import model_scores

    names = list(scorer.feature_names(ESCALATION))  # the model's own order; the history stores these
    score, probability = np.empty(len(frame)), np.empty(len(frame))
    for start, X in float32_blocks(frame, names):  # never the whole matrix at once (features/matrix.py)
        score[start : start + len(X)], probability[start : start + len(X)] = model_scores(scorer, X, workers=2)
    entry = scorer.entry(ESCALATION)
    prov = scorer.manifest.provenance
    model = {
        "engine": "model",
        "model_version": model_version or f"bundle-{entry.sha256[:12]}",
        "bundle": str(bundle_dir),
        "escalation_sha256": entry.sha256,
        "trained_on": prov.get("data_fingerprint"),
        "trained_code_version": prov.get("code_version"),
        "horizon_days": prov.get("horizon_days"),
    }
    return Scored(day, frame, names, points, "model", probability, model, scorer, score, CallCodes.of(snaps))


def level_table(scored: Scored, config: RankConfig) -> pd.DataFrame:
    """The level policy (models/levels.py) over the city: both sides' levels, the published one, the order.

    The rules grade every household; the model speaks only for its population
    (``in_scope``) and only where it has evidence (a call in the last
    ``EVIDENCE_DAYS`` days). When the rules rank, the model's level is None
    everywhere and the published level is the rules'.
    """
    frame = scored.frame
    rules_level, rules_scenario, rules_points = worst_scenarios(scored.points, load_scenarios())
    station = frame["station_id"].astype(str).to_numpy()
    model_level = np.full(len(frame), None, dtype=object)
    if scored.engine == "model":
        model_level = threshold_levels(scored.probability, config.thresholds)
        model_level[~frame["in_scope"].to_numpy(bool)] = None
    evidence = frame[EVIDENCE_FEATURE].to_numpy(np.float64) > 0
    order = priority(scored.score, rules_points, frame["household_id"].astype(str).to_numpy())
    table = assign_levels(rules_level, model_level, evidence, order, station, config.capacity)
    table["model_level"] = pd.Series(model_level, dtype=object)
    table["model_evidence"] = evidence
    table["rules_level"] = pd.Series(rules_level, dtype=object)
    table["rules_scenario"] = pd.Series(rules_scenario, dtype=object)
    table["rules_points"] = rules_points.astype(np.float64).round(2)
    return table


def ranking_table(prepared: Prepared, scored: Scored, config: RankConfig) -> pd.DataFrame:
    """One row per household: where, levels, probability, and the reasons of the model and the rules side by side."""
    frame = scored.frame
    levels = level_table(scored, config)
    addresses = prepared.tables["addresses"].set_index("address_id")
    address_of = prepared.tables["households"].set_index("household_id")["address_id"]
    address = address_of.reindex(frame["household_id"])
    address_id = address.to_numpy()
    place = addresses.reindex(address_id)
    warned = np.flatnonzero(pd.notna(levels["level"]).to_numpy())
    warned_ids = frame["household_id"].to_numpy()[warned]
    model = model_reasons(scored, warned, config.reasons_per_household)
    rules = rule_reasons(prepared, warned_ids, scored.day)
    calls, terms = recent_calls(
        prepared, warned_ids, scored.day, config.calls_per_household, config.terms_per_household
    )
    n = len(frame)
    unused = levels["model_level"].notna().to_numpy() & ~levels["model_evidence"].to_numpy(bool)
    model_level = levels["model_level"].to_numpy(object)
    model_col = [
        [dropped_model_level(model_level[row]), *model[i]] if unused[row] else model[i] for i, row in enumerate(warned)
    ]
    rules_col = [rules.get(h) or [NO_RULE_POINTS] for h in warned_ids]
    last_call = frame["days_since_last_call"].to_numpy(np.float64)
    distinct, which = np.unique(np.round(last_call, 6), return_inverse=True)
    last_date = days_before(scored.day, distinct)[which.ravel()]
    return pd.DataFrame(
        {  # Arrow-backed text columns go in as they are (``.array``): no round trip through Python strings
            "date": f"{scored.day:%Y-%m-%d}",
            "household_id": frame["household_id"].astype(str).array,
            "address_id": numpy_text(address),
            "station_id": frame["station_id"].astype(str).array,
            "station_name": place["station_name"].astype(str).array,
            "county_code": frame["county_code"].astype(str).array,
            "county_name": place["county_name"].astype(str).array,
            "community": place["community"].astype(str).array,
            "in_scope": frame["in_scope"].to_numpy(bool),
            "probability": scored.probability.astype(np.float64),
            "score": np.asarray(scored.score, dtype=np.float64),
            "level": text_column(levels["level"].to_numpy(object)),
            "raised_by": text_column(levels["raised_by"].to_numpy(object)),
            "threshold_level": text_column(levels["threshold_level"].to_numpy(object)),
            "model_level": text_column(levels["model_level"].to_numpy(object)),
            "rank_in_station": levels["rank_in_station"].to_numpy(np.int64),
            "category": text_column(dominant_category(frame)),
            "rules_points": levels["rules_points"].to_numpy(),
            "rules_level": text_column(levels["rules_level"].to_numpy(object)),
            "rules_scenario": text_column(levels["rules_scenario"].to_numpy(object)),
            "rules_reasons": sparse_lists(n, warned, rules_col),
            "model_reasons": sparse_lists(n, warned, model_col),
            "matched_terms": sparse_lists(n, warned, [terms.get(h, []) for h in warned_ids]),
            "recent_calls": sparse_lists(n, warned, [calls.get(h, []) for h in warned_ids]),
            "calls_90d": frame["calls_90d"].to_numpy().astype(np.int64),
            "disputes_90d": frame["disputes_90d"].to_numpy().astype(np.int64),
            "last_call_date": text_column(last_date),
            "engine": scored.engine,
            "model_version": scored.model.get("model_version"),
        }
    )


def serving_tables(prepared: Prepared, scored: Scored, history_days: int) -> dict[str, pd.DataFrame]:
    """What the online service needs to update a household's risk with a new call (features/online.py).

    ``features``: the features that do not come from calls, as of the date;
    ``calls``: each linked call of the last ``history_days`` as the features
    see it (rule outputs and caller keys, no text); ``context``: where each
    household is and its first dispute call; ``person_households``: which
    household a caller key belongs to; ``visits``: the visits of the last
    ``history_days`` (no text); ``escalations``: the violent cases of the last
    year with the rules' level before each and its lead time
    (models/escalations.py), for the workbench's "were they warned" table.
    """
    frame = scored.frame
    from_calls = set(call_feature_names()) | {n for n in scored.feature_names if n.startswith("points_")}
    static = [n for n in scored.feature_names if n not in from_calls]
    features = frame[["household_id", *static]]  # a new frame already (copy-on-write): not copied twice
    features["probability"] = scored.probability.astype(np.float32)

    tables = prepared.tables
    n_households = len(tables["households"])  # the codes are positions in the registry
    coded = scored.codes if scored.codes is not None else CallCodes.compute(prepared, frame)
    kept = coded.calls >= 0
    linked, entity = prepared.calls[kept].reset_index(drop=True), coded.calls[kept]
    third_party, distinct_start = coded.third_party[kept], coded.distinct_start[kept]
    seconds = to_seconds(linked["received_at"])
    day_sec = int(to_seconds(pd.Series([scored.day]))[0])
    dispute = linked["is_dispute"].astype(bool).to_numpy()
    before = dispute & (seconds < day_sec)
    first_dispute = np.full(n_households + 1, np.nan)  # per household code; the last slot: not in the registry
    first_dispute[:-1] = (
        pd.Series(seconds[before], dtype=np.float64).groupby(entity[before]).min().reindex(range(n_households))
    )
    keep = (seconds < day_sec) & (seconds >= day_sec - history_days * 86_400)
    calls = linked.loc[keep].assign(
        received_sec=seconds[keep], third_party=third_party[keep], distinct_start=distinct_start[keep]
    )
    calls["negated_cues"] = negated_cues(prepared, calls, scored.day)
    calls = calls[["household_id", *CALL_COLUMNS, "negated_cues"]]
    calls = calls.take(stable_order(calls, ["household_id", "received_sec"]))
    household = coded.rows
    address = tables["households"]["address_id"].astype(str).array.take(household, allow_fill=True)
    context = pd.DataFrame(
        {  # Arrow-backed text columns go in as they are (``.array``): no round trip through Python strings
            "household_id": frame["household_id"].astype(str).array,
            "station_id": frame["station_id"].astype(str).array,
            "county_code": frame["county_code"].astype(str).array,
            "address_id": address,
            "first_dispute_sec": first_dispute[household],
        }
    )
    persons = tables["persons"][["person_id", "household_id"]].reset_index(drop=True)
    return {
        "features": features.reset_index(drop=True),
        "calls": calls.reset_index(drop=True),
        "context": context,
        "person_households": persons,
        "visits": recent_visits(tables["visits"], scored.day, history_days),
        "escalations": recent_escalations(prepared, scored.day),
    }


def recent_visits(visits: pd.DataFrame, day: pd.Timestamp, history_days: int) -> pd.DataFrame:
    """Visits in the ``history_days`` before the morning of ``day``, oldest first (a household's timeline)."""
    at = pd.to_datetime(visits["visited_at"])
    keep = (at < day) & (at >= day - pd.Timedelta(days=history_days))
    columns = ["household_id", "visited_at", "visit_type", "outcome"]
    kept = visits.loc[keep, columns]
    return kept.take(stable_order(kept, ["visited_at", "household_id"])).reset_index(drop=True)


ESCALATION_DAYS = 365
"""Violent cases of this many days before the ranking date go into its ``escalations.parquet``."""


def recent_escalations(prepared: Prepared, day: pd.Timestamp) -> pd.DataFrame:
    """Violent cases opened in the year before ``day``, with the rules' level before each and the lead time.

    With an incident cache, the levels of cases seen before are kept (pipelines/escalation_cache.py).
    """
    from models.escalations import LOOKBACK_DAYS, escalation_lead_times, household_places, violent_case_households
    from models.warning import load_scenarios
    from pipelines.escalation_cache import cached_grid
    from pipelines.incident_readings import store_of

    tables = prepared.tables
    start = day - pd.Timedelta(days=ESCALATION_DAYS)
    involved = violent_case_households(tables["cases"], tables["persons"], start, day)["household_id"]
    places = household_places(tables["households"], tables["addresses"], only=involved)
    scenarios, store = load_scenarios(), store_of(prepared)
    grid = None if store is None else cached_grid(store, scenarios, LOOKBACK_DAYS)
    return escalation_lead_times(
        prepared.calls, tables["cases"], tables["persons"], places, start, day, LOOKBACK_DAYS, scenarios, grid
    )


def warnings_rows(ranking: pd.DataFrame) -> pd.DataFrame:
    """The warned households as the warnings table takes them (models/warning_store.py)."""
    from models.warning_store import REQUIRED_COLUMNS
    from pipelines.ranking_columns import reasons_record

    warned = ranking[ranking["level"].notna()].copy()
    warned["reasons"] = [reasons_record(row) for row in warned.to_dict("records")]
    return warned[list(REQUIRED_COLUMNS)].reset_index(drop=True)


def manifest_for(prepared: Prepared, scored: Scored, ranking: pd.DataFrame, config: RankConfig) -> dict[str, Any]:
    """Which code, data, lexicon, model and parameters made this ranking, and what it holds."""
    from features.lexicon import default_lexicon

    warned = ranking[ranking["level"].notna()]
    return {
        "date": f"{scored.day:%Y-%m-%d}",
        "engine": scored.engine,
        "model": scored.model,
        "model_version": scored.model.get("model_version"),
        "code_version": code_version(),
        "data_fingerprint": prepared.fingerprint,
        "lexicon_version": default_lexicon().version,
        "params": asdict(config),
        "feature_names": scored.feature_names,
        "households": len(ranking),
        "in_scope": int(ranking["in_scope"].sum()),
        "warnings": {level: int((warned["level"] == level).sum()) for level in LEVELS},
        "raised_by": {who: int((warned["raised_by"] == who).sum()) for who in RAISED_BY},
        "stations_with_warnings": int(warned["station_id"].nunique()),
        "load": prepared.load_summary,  # per table: read = accepted + quarantined, and the count per reason
    }


@dataclass
class RankResult:
    """What a ranking run wrote where, with its counts and step times."""

    date: str
    folder: Path
    engine: str
    households: int
    in_scope: int
    warnings: dict[str, int]
    database: dict[str, int]
    timings: dict[str, float]
    top: pd.DataFrame
    drift: dict[str, Any] | None = None
    """The drift report the manifest holds (``manifest["drift"]``, docs/drift.md)."""
    cache: dict[str, Any] | None = None
    """How the incident cache served the run (hits, misses, bytes); not in the manifest, which must not vary."""
    worker_peaks: dict[str, int] | None = None
    """On a cluster (pipelines/cluster_ranking.py): peak resident bytes of each worker and of the driver."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-plain summary (the Prefect flow's return value; no personal data: ids, levels, phrases)."""
        return {
            "date": self.date,
            "folder": str(self.folder),
            "engine": self.engine,
            "households": self.households,
            "in_scope": self.in_scope,
            "warnings": self.warnings,
            "database": self.database,
            "timings": self.timings,
            "top": json.loads(self.top.to_json(orient="records", force_ascii=False)),
            "drift": self.drift,
            "cache": self.cache,
            **({"worker_peaks": self.worker_peaks} if self.worker_peaks is not None else {}),
        }


def top_warnings(ranking: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The city's ``n`` most urgent warnings: worst level, then the model's raw score, rules points, household."""
    warned = ranking[ranking["level"].notna()].copy()
    warned["_level"] = warned["level"].map(LEVELS.index)
    warned["_s"] = warned["score"].fillna(-np.inf)
    ordered = warned.sort_values(["_level", "_s", "rules_points", "household_id"], ascending=[True, False, False, True])
    return ordered.drop(columns=["_level", "_s"]).head(n).reset_index(drop=True)


def run_ranking(
    data_dir: Path,
    date: str | None,
    out_root: Path,
    store_url: str,
    bundle_dir: Path | None,
    model_version: str | None,
    config: RankConfig,
    progress: Callable[[str], None] | None = None,
    step: Callable[[Callable[..., Any], str], Callable[..., Any]] | None = None,
    prepared: Prepared | None = None,
    cache_dir: Path | None = None,
) -> RankResult:
    """The whole daily job; the Prefect flow runs this same function with ``step`` making tasks.

    ``cache_dir``: the incident cache (pipelines/incident_cache.py); None recomputes every verdict and link.
    """
    from pipelines.outputs import stage_outputs
    from pipelines.publication import publish_ranking

    say = progress or (lambda _msg: None)
    run, timings = step_runner(progress, step)
    if prepared is None:
        prepared = run("load, validate, score and link", prepare, Path(data_dir), None, cache_dir)
    day = ranking_day(prepared.incidents, date, prepared.export_date)
    scored = run("features as of the date and scoring", score_households, prepared, day, bundle_dir, model_version)
    if scored.engine == "rules":
        say(f"warning: the rules rank today ({scored.model['why']})")
    ranking = run("levels and reasons", ranking_table, prepared, scored, config)
    tables = run("tables for the online service", serving_tables, prepared, scored, config.history_days)
    manifest = manifest_for(prepared, scored, ranking, config)
    from pipelines.drift import ranking_drift

    manifest["drift"] = ranking_drift(prepared, scored, bundle_dir)  # docs/drift.md; the CLI prints its line
    engine, quarantine, cache = scored.engine, prepared.quarantine, prepared.cache
    # Neither is read again: dropped here, their memory is reused by the outputs instead of fresh pages,
    # which on a VM that charges for every fresh page costs ~1 s (docs/decisions.md, issue 14's sixth round).
    del scored, prepared
    rows = warnings_rows(ranking)
    folder, counts = publish_ranking(
        Path(out_root),
        store_url,
        manifest,
        rows,
        # rejected rows go into the staged folder: published (and hashed) with it
        lambda: stage_outputs(ranking, Path(out_root), manifest["date"], manifest, tables, quarantine),
        run,
        say,
    )
    return RankResult(
        date=manifest["date"],
        folder=folder,
        engine=engine,
        households=manifest["households"],
        in_scope=manifest["in_scope"],
        warnings=manifest["warnings"],
        database=counts,
        timings=timings,
        top=top_warnings(ranking),
        drift=manifest["drift"],
        cache=cache or None,
    )
