"""The training job as plain functions: load, score, link, features, split, train, evaluate, export, register.

``pipelines/flows.py`` wraps each step in a Prefect task; tests call these
functions directly, so the logic is testable without an orchestrator. Every
step takes and returns data (no hidden state), and the last one
(``pipelines/registration.py``: report, MLflow, the promotion gate) writes
``RUNDIR/report.json`` with what the run measured and decided.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from conf import Settings
from conf.settings import setting_default
from features.labels import dispute_labels_from_codes
from features.lexicon import CATEGORIES, default_lexicon
from features.loaders import DataContractError
from features.quarantine import FOLDER as QUARANTINE_FOLDER
from features.snapshots import build_snapshots, escalation_labels, snapshot_dates
from models.backtest import Backtest, Fold, final_fold, levels_observed, rolling_origin_folds, run_backtest
from models.escalation import EscalationModel, Split, model_features, train_escalation
from models.evaluation import (
    bootstrap_intervals,
    calibration_curve,
    calibration_summary,
    paired_difference_intervals,
    pr_curve,
    ranking_metrics,
)
from models.feedback import apply_feedback
from models.levels import EVIDENCE_FEATURE
from models.reasons import top_reasons
from models.warning import load_scenarios, points_at_snapshots
from pipelines.preparation import Prepared, code_version, prepare, write_run_quarantine


@dataclass(frozen=True)
class TrainConfig:
    """The knobs of one training run; defaults and meanings are the settings object's (conf/settings.py)."""

    horizon_days: int = setting_default("horizon_days")
    snapshot_every_days: int = setting_default("snapshot_every_days")
    split_fractions: tuple[float, float, float] = setting_default("split_fractions")
    backtest_folds: int = setting_default("backtest_folds")
    backtest_test_share: float = setting_default("backtest_test_share")
    top_k: int = setting_default("top_k")
    bootstrap_samples: int = setting_default("bootstrap_samples")
    promotion_margin: float = setting_default("promotion_margin")
    promotion_metric: str = setting_default("promotion_metric")
    parity_rows: int = setting_default("parity_rows")
    seed: int = setting_default("seed")
    level_thresholds: dict[str, float] = field(default_factory=lambda: setting_default("level_thresholds"))

    @classmethod
    def from_settings(cls, settings: Settings) -> TrainConfig:
        values = {f.name: getattr(settings, f.name) for f in fields(cls)}
        return cls(**values | {"split_fractions": tuple(values["split_fractions"])})


@dataclass
class EscalationRun:
    """The served escalation model and the backtest that measured its recipe.

    ``model`` is trained on every labelled snapshot (``split.train``/``tune``);
    ``backtest`` holds each fold model's scores on the periods it had not seen,
    and ``split.test`` marks the last fold's test rows (the most recent
    held-out period, where the report's single-period numbers come from).
    """

    model: EscalationModel
    frame: pd.DataFrame
    feature_names: list[str]
    labels: np.ndarray
    split: Split
    rule_points: dict[str, np.ndarray] = field(default_factory=dict)
    backtest: Backtest | None = None

    def holdout(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the most recent held-out period and the raw scores of the model that had not seen them."""
        assert self.backtest is not None
        last = self.backtest.last_fold()
        return self.backtest.rows[last], self.backtest.model_score[last]


def snapshot_span(received: pd.Series, config: TrainConfig) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last snapshot day: a quarter of history before the first, a full label horizon after the last."""
    first = received.min().normalize() + pd.Timedelta(days=90)
    last = received.max().normalize() - pd.Timedelta(days=config.horizon_days)
    return first, last


def build_escalation_data(
    prepared: Prepared, config: TrainConfig, span: tuple[pd.Timestamp, pd.Timestamp] | None = None
) -> tuple[pd.DataFrame, list[str], np.ndarray, dict]:
    """Weekly snapshots with features, the rules' points among them, and labels; names are the model's features.

    ``span`` (first, last snapshot day) is given when one partition of a dataset is built on its own
    (pipelines/cluster_training.py): every partition then snapshots the same dates as the whole would.
    """
    received = prepared.incidents["received_at"]
    first, last = span or snapshot_span(received, config)
    if last <= first:
        raise ValueError(
            f"the data spans {received.min():%Y-%m-%d}..{received.max():%Y-%m-%d}: too short for 90 days of history "
            f"plus a {config.horizon_days}-day horizon; fix: export at least a year of incidents"
        )
    dates = snapshot_dates(first, last, config.snapshot_every_days)
    snaps = build_snapshots(prepared.calls, prepared.tables, dates)
    frame = snaps.frame
    points = points_at_snapshots(prepared.calls, frame["household_id"], frame["snapshot_date"], load_scenarios())
    for name, values in points.items():
        frame[f"points_{name}"] = values.astype(np.float32)
    names = model_features(snaps.feature_names + [f"points_{name}" for name in points])
    t = prepared.tables
    labels = escalation_labels(frame, t["cases"], t["persons"], t["households"], config.horizon_days)
    return frame, names, labels, points


def backtest_folds(frame: pd.DataFrame, config: TrainConfig) -> list[Fold]:
    """The rolling-origin folds of the settings (``backtest_folds`` periods over ``backtest_test_share``)."""
    return rolling_origin_folds(
        frame["snapshot_date"], config.backtest_folds, config.backtest_test_share, config.horizon_days
    )


def fit_escalation(
    frame: pd.DataFrame,
    names: list[str],
    labels: np.ndarray,
    points: dict,
    config: TrainConfig,
    progress: Any = None,
    train_labels: np.ndarray | None = None,
    final_trainer: Any = None,
) -> EscalationRun:
    """Backtest the recipe fold by fold, then train the model that will rank on every labelled snapshot.

    ``train_labels`` (the labels with station feedback added, models/feedback.py) train the
    served model only; the backtest and every evaluation keep ``labels`` (from cases), so the
    gate's number means the same from run to run. ``final_trainer(final_fold, y)`` fits the served
    model elsewhere (lightgbm.dask on a cluster, pipelines/cluster_training.py); default: here.
    """
    X = frame[names].to_numpy(np.float32)
    params = {"seed": config.seed}

    def trainer(X_train: np.ndarray, y_train: np.ndarray, X_tune: np.ndarray, y_tune: np.ndarray) -> EscalationModel:
        return train_escalation(X_train, y_train, X_tune, y_tune, names, params)

    folds = backtest_folds(frame, config)
    backtest = run_backtest(
        X, labels, frame, points, folds, trainer, config.top_k, config.bootstrap_samples, config.seed, progress
    )
    final = final_fold(frame["snapshot_date"])
    y = labels if train_labels is None else train_labels
    if final_trainer is not None:
        model = final_trainer(final, y)
    else:
        model = trainer(X[final.train], y[final.train], X[final.tune], y[final.tune])
    last = folds[-1]
    split = Split(
        final.train,
        final.tune,
        last.test,
        {**final.boundaries, **{k: last.boundaries[k] for k in ("test_from", "test_to")}},
    )
    return EscalationRun(model, frame, names, labels, split, points, backtest)


def evaluate_escalation(run: EscalationRun, config: TrainConfig, truth_dir: Path | None = None) -> dict[str, Any]:
    """Model against the scoring rules: the backtest per fold and pooled, and the most recent period in detail.

    The last fold's rows get the full treatment of earlier reports (marginal
    and paired household-bootstrap intervals of every metric, PR and
    calibration curves); the backtest gives the per-fold and pooled tables the
    promotion gate reads, calibration of the pooled probabilities, and the
    observed escalation rate level by level. For a simulated city
    (``truth_dir``), the truth ceiling is measured on the same folds.
    """
    assert run.backtest is not None
    bt = run.backtest
    last = bt.last_fold()
    rows = bt.rows[last]
    y = run.labels[rows]
    groups = run.frame.iloc[rows][["station_id", "snapshot_date"]].reset_index(drop=True)
    clusters = run.frame["household_id"].to_numpy()[rows]
    model_score, model_prob = bt.model_score[last], bt.model_probability[last]
    rule_score, rule_prob = bt.rule_score[last], bt.rule_probability[last]
    out: dict[str, Any] = {}
    for name, score, prob in (("model", model_score, model_prob), ("rules", rule_score, rule_prob)):
        metrics = ranking_metrics(y, score, prob, groups, config.top_k)
        metrics["ci"] = bootstrap_intervals(
            y, score, prob, groups, clusters, config.top_k, n_boot=config.bootstrap_samples, seed=config.seed
        )
        out[name] = metrics
    out["model_minus_rules_ci"] = paired_difference_intervals(
        y,
        (model_score, model_prob),
        (rule_score, rule_prob),
        groups,
        clusters,
        config.top_k,
        n_boot=config.bootstrap_samples,
        seed=config.seed,
    )
    out["curves"] = {
        "model": {"pr": pr_curve(y, model_score), "calibration": calibration_curve(y, model_prob)},
        "rules": {"pr": pr_curve(y, rule_score), "calibration": calibration_curve(y, rule_prob)},
    }
    out["k"] = config.top_k
    out["split"] = run.split.boundaries
    out["rows"] = {"train": int(run.split.train.sum()), "tune": int(run.split.tune.sum()), "test": len(rows)}
    out["positives"] = {
        "train": int(run.labels[run.split.train].sum()),
        "tune": int(run.labels[run.split.tune].sum()),
        "test": int(y.sum()),
    }
    pooled_y = run.labels[bt.rows]
    backtest = dict(bt.report)
    backtest["levels_observed"] = levels_observed(
        pooled_y,
        bt.model_probability,
        {name: values[bt.rows] for name, values in run.rule_points.items()},
        config.level_thresholds,
        run.frame[EVIDENCE_FEATURE].to_numpy()[bt.rows] > 0,
    )
    backtest["ceiling"] = truth_ceiling(run, config, truth_dir)
    out["backtest"] = backtest
    out["calibration"] = calibration_summary(pooled_y, bt.model_probability)
    return out


def truth_ceiling(run: EscalationRun, config: TrainConfig, truth_dir: Path | None) -> dict[str, Any] | None:
    """The same backtest with the simulator's latent facts added to the features (models/ceiling.py)."""
    from models.ceiling import NOTE, TRUTH_FEATURES, truth_available, truth_features

    if not truth_available(truth_dir):
        return None
    assert truth_dir is not None and run.backtest is not None
    X = np.hstack([run.frame[run.feature_names].to_numpy(np.float32), truth_features(run.frame, truth_dir)])
    names = [*run.feature_names, *TRUTH_FEATURES]
    params = {"seed": config.seed}
    ceiling = run_backtest(
        X,
        run.labels,
        run.frame,
        run.rule_points,
        backtest_folds(run.frame, config),
        lambda a, b, c, d: train_escalation(a, b, c, d, names, params),
        config.top_k,
        n_boot=config.bootstrap_samples,
        seed=config.seed,
    )
    return {"model": ceiling.report["pooled"]["model"], "note": NOTE}


def example_reasons(run: EscalationRun, n_rows: int = 10) -> list[dict[str, Any]]:
    """The top test-period households by score with their reasons (no personal data: ids and phrases)."""
    X = run.frame[run.feature_names].to_numpy(np.float32)
    test_rows = np.flatnonzero(run.split.test)
    last_date = run.frame["snapshot_date"].to_numpy()[test_rows].max()
    rows = test_rows[run.frame["snapshot_date"].to_numpy()[test_rows] == last_date]
    scores = run.model.predict(X[rows])
    top = rows[np.argsort(-scores, kind="stable")[:n_rows]]
    reasons = top_reasons(run.model.contributions(X[top]), X[top], run.feature_names)
    return [
        {
            "household_id": run.frame["household_id"].iloc[i],
            "station_id": run.frame["station_id"].iloc[i],
            "snapshot_date": str(pd.Timestamp(run.frame["snapshot_date"].iloc[i]).date()),
            "probability": round(float(p), 4),
            "reasons": r,
        }
        for i, p, r in zip(top, run.model.predict(X[top]), reasons, strict=True)
    ]


def provenance(prepared: Prepared, config: TrainConfig) -> dict[str, Any]:
    """Which code, data, lexicon and parameters made this run."""
    return {
        "code_version": code_version(),
        "data_fingerprint": prepared.fingerprint,
        "lexicon_version": default_lexicon().version,
        "python": platform.python_version(),
        "config": asdict(config),
    }


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    """Write JSON atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_text(json.dumps(payload, ensure_ascii=False, indent=2, default=_json_default) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer | np.floating | np.bool_):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, pd.Timestamp | Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def labels_for_dispute_model(incidents: pd.DataFrame) -> pd.DataFrame:
    """The dispute classifier learns from the call takers' codes (features/labels.py)."""
    return dispute_labels_from_codes(incidents)


@dataclass
class DisputeRun:
    """The dispute classifier and its held-out comparison with the rules."""

    model: Any  # models.dispute.DisputeModel
    evaluation: dict[str, Any]
    test_features: np.ndarray


def fit_dispute(prepared: Prepared, config: TrainConfig, truth_dir: Path | None = None) -> DisputeRun:
    """Train on the call takers' codes (earliest period), tune, and compare with the rules on the latest.

    Labels are the police category codes (features/labels.py), never the
    simulator's truth. ``truth_dir`` (evaluation only) adds the same comparison
    against truth, when the data is a simulated city.
    """
    from models.dispute import fuse, split_incidents_by_time, train_dispute_model
    from models.evaluation import dispute_metrics

    frame = prepared.incidents[["incident_id", "narrative", "received_at"]].copy()
    frame = frame.join(labels_for_dispute_model(prepared.incidents))
    train, tune, test = split_incidents_by_time(frame, config.split_fractions)
    # codes the label mapping calls ambiguous (打架斗殴, 其他…) teach neither side: fit and tune without them
    model = train_dispute_model(train[train["usable"]], tune[tune["usable"]], {"seed": config.seed})
    predicted = model.predict(test["narrative"].tolist(), test["received_at"].tolist())
    rule_out = prepared.rules.loc[test.index, ["is_dispute", "dispute_score", "category", "strong"]].reset_index(
        drop=True
    )
    fused = fuse(predicted.reset_index(drop=True), rule_out)
    evaluation: dict[str, Any] = {
        "labels": "police category codes (conf/dispute_labels.toml; ambiguous codes left out)",
        "test_from": str(test["received_at"].min()),
        "test_usable_share": round(float(test["usable"].mean()), 4) if len(test) else 0.0,
    }
    sides = {"model": fused, "rules": rule_out}
    usable = test["usable"].to_numpy(bool)
    for name, out in sides.items():
        evaluation[name] = dispute_metrics(
            test["is_dispute"][usable], out["is_dispute"][usable], test["category"][usable], out["category"][usable]
        )
    truth_path = (truth_dir / "incidents.parquet") if truth_dir else None
    if truth_path is not None and truth_path.is_file():
        truth = pd.read_parquet(truth_path, columns=["incident_id", "is_dispute", "category"])
        truth = test[["incident_id"]].merge(truth, on="incident_id", how="left")
        evaluation["truth"] = {
            name: dispute_metrics(
                truth["is_dispute"].fillna(False), out["is_dispute"], truth["category"], out["category"]
            )
            for name, out in sides.items()
        }
    features = model.featurizer.transform(frame["narrative"].tolist(), frame["received_at"].tolist())
    return DisputeRun(model, evaluation, features)


def _parity_rows(X: np.ndarray, n: int, seed: int) -> np.ndarray:
    """At least ``n`` rows for the parity check: all real rows, topped up with jittered copies if fewer."""
    if len(X) >= n:
        return X
    rng = np.random.default_rng(seed)
    extra = X[rng.integers(0, len(X), n - len(X))].astype(np.float64)
    extra *= rng.uniform(0.9, 1.1, extra.shape)
    return np.vstack([X, extra.astype(np.float32)])


def export_bundle(
    run: EscalationRun, dispute_run: DisputeRun, prepared: Prepared, config: TrainConfig, out_dir: Path
) -> dict[str, Any]:
    """Both models to ONNX, parity-checked on at least ``parity_rows`` rows, written as one bundle."""
    from models.bundle import BundleModel, write_bundle
    from models.onnx_export import check_parity, to_onnx

    X_esc = run.frame[run.feature_names].to_numpy(np.float32)
    esc_onnx = to_onnx(run.model.booster, len(run.feature_names), "yujing-escalation")
    esc_parity = check_parity(run.model.booster, esc_onnx, _parity_rows(X_esc, config.parity_rows, config.seed))
    dm = dispute_run.model
    n_dis = len(dm.featurizer.feature_names)
    X_dis = _parity_rows(dispute_run.test_features.astype(np.float32), config.parity_rows, config.seed)
    gate_onnx = to_onnx(dm.booster, n_dis, "yujing-dispute")
    gate_parity = check_parity(dm.booster, gate_onnx, X_dis)
    cat_onnx = to_onnx(dm.category_booster, n_dis, "yujing-dispute-category")
    cat_parity = check_parity(dm.category_booster, cat_onnx, X_dis)
    dis_parity = {
        "ok": bool(gate_parity["ok"] and cat_parity["ok"]),
        "max_abs_diff": max(gate_parity["max_abs_diff"], cat_parity["max_abs_diff"]),
        "top_k_identical": bool(gate_parity["top_k_identical"] and cat_parity["top_k_identical"]),
        "gate": gate_parity,
        "category": cat_parity,
    }
    models = {
        "escalation": BundleModel(esc_onnx, tuple(run.feature_names), (0, 1), run.model.calibration, {}, esc_parity),
        # P(dispute): the monotone gate; P(category | dispute): the category model (models/dispute.py)
        "dispute": BundleModel(
            gate_onnx,
            tuple(dm.featurizer.feature_names),
            (0, 1),
            None,
            {"dispute": float(dm.threshold), "ood": float(dm.ood_threshold)},
            gate_parity,
        ),
        "dispute_category": BundleModel(
            cat_onnx, tuple(dm.featurizer.feature_names), tuple(CATEGORIES), None, {}, cat_parity
        ),
    }
    prov = provenance(prepared, config) | {
        "params": {"escalation": run.model.params, "dispute": dm.params},
        "featurizers": {"dispute": dm.featurizer.to_dict()},
        "horizon_days": config.horizon_days,
    }
    from models.drift import REFERENCE_FILE
    from pipelines.drift import reference_bytes, reference_for_training

    drift_reference = reference_bytes(reference_for_training(prepared, run, dm))  # docs/drift.md
    files = {REFERENCE_FILE: drift_reference}
    path = write_bundle(out_dir / "bundle", models, _plain(prov), overwrite=True, files=files)
    return {
        "path": str(path),
        "parity": {"escalation": esc_parity, "dispute": dis_parity},
        "ok": bool(esc_parity["ok"] and dis_parity["ok"]),
        "max_abs_diff": max(esc_parity["max_abs_diff"], dis_parity["max_abs_diff"]),
    }


def _plain(value: Any) -> Any:
    """JSON-plain copy (numpy scalars to Python, tuples to lists)."""
    return json.loads(json.dumps(value, default=_json_default))


STEPS = (
    "load, validate, score and link",
    "snapshot features and labels",
    "backtest and train escalation",
    "train dispute classifier",
    "evaluate against the rules",
    "export ONNX bundle",
    "register, decide promotion, report",
)


def require_cases(prepared: Prepared, data_dir: Path) -> None:
    """Training needs cases (the escalation label comes from them): ranking may run on an export without any."""
    if not prepared.load_summary["cases"]["accepted"]:
        raise DataContractError(
            f"{data_dir}: table 'cases' has no accepted rows, and training takes its escalation labels from it; "
            "fix: export the cases table (ranking alone can run without it)"
        )


def _quarantine_line(prepared: Prepared, folder: Path) -> str:
    """One progress line: how many rows of which tables were quarantined, and where (counts only, never rows)."""
    counts = {name: c["quarantined"] for name, c in prepared.load_summary.items() if c["quarantined"]}
    if not counts:
        return f"quarantine: no row rejected ({folder})"
    listed = ", ".join(f"{name} {n:,}" for name, n in counts.items())
    return f"quarantine: {sum(counts.values()):,} rows ({listed}) written to {folder}"


def _feedback_line(feedback: dict[str, Any]) -> str:
    """One progress line: what station feedback this run found and how many labels it added."""
    if not feedback["available"]:
        return f"station feedback: none yet ({feedback['reason']})"
    return (
        f"station feedback: {feedback['warnings']:,} warnings, {feedback['fed_back']:,} fed back, "
        f"{feedback['labels']['added']:,} escalation labels added (training only)"
    )


def run_training(
    data_dir: Path,
    out_dir: Path,
    tracking_uri: str,
    config: TrainConfig,
    progress: Any = None,
    step: Any = None,
    warnings_db_url: str | None = None,
    client: Any = None,
) -> dict[str, Any]:
    """The whole job, step by step; the Prefect flow runs this same function with ``step`` making tasks.

    ``step(function, name)`` wraps each step (default: no wrapping); ``progress``
    receives one line per step. ``warnings_db_url``: the station feedback to learn from
    (docs/feedback.md); without it, or without a database there, the labels are the cases'.
    ``client`` (a ``distributed.Client``): snapshots are built per partition on its workers and the
    served model is fitted with lightgbm.dask (pipelines/cluster_training.py); the rest runs here.
    """
    say = progress or (lambda _msg: None)
    wrap = step or (lambda function, _name: function)
    names = iter(STEPS)

    def run(function: Any, *args: Any) -> Any:
        name = next(names)
        say(name)
        return wrap(function, name)(*args)

    from pipelines.feedback_data import read_loop_frames
    from pipelines.registration import register_and_report  # imports this module: load it when needed

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    prepared = run(prepare, data_dir)
    write_run_quarantine(prepared, out_dir)
    say(_quarantine_line(prepared, out_dir / QUARANTINE_FOLDER))
    require_cases(prepared, data_dir)
    cluster = None
    if client is not None:
        from pipelines.cluster_training import ClusterTraining

        cluster = ClusterTraining(client, data_dir, out_dir / "snapshots", say)
    build = build_escalation_data if cluster is None else cluster.build_escalation_data
    frame, names_, labels, points = run(build, prepared, config)
    now = pd.Timestamp.now(tz="UTC")  # point in time: feedback recorded later does not exist for this run
    warnings, events, missing = read_loop_frames(warnings_db_url)
    train_labels, feedback = apply_feedback(frame, labels, warnings, events, config.horizon_days, now, missing)
    say(_feedback_line(feedback))
    final_trainer = None if cluster is None else cluster.final_trainer(frame, names_, config)
    escalation = run(fit_escalation, frame, names_, labels, points, config, progress, train_labels, final_trainer)
    dispute_run = run(fit_dispute, prepared, config, data_dir / "truth")
    evaluation = run(evaluate_escalation, escalation, config, data_dir / "truth") | {"feedback": feedback}
    bundle = run(export_bundle, escalation, dispute_run, prepared, config, out_dir)
    return run(
        register_and_report, prepared, escalation, dispute_run, evaluation, bundle, config, out_dir, tracking_uri
    )
