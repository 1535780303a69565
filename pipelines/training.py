"""The training job as plain functions: load, score, link, features, split, train, evaluate, export, register.

``pipelines/flows.py`` wraps each step in a Prefect task; tests call these
functions directly, so the logic is testable without an orchestrator. Every
step takes and returns data (no hidden state), and the last one writes
``RUNDIR/report.json`` with what the run measured.
"""

from __future__ import annotations

import json
import platform
import subprocess
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from conf import Settings
from conf.settings import setting_default
from features.fingerprint import dataset_fingerprint
from features.labels import dispute_labels_from_codes
from features.lexicon import CATEGORIES, default_lexicon
from features.linking import LinkResult, link_incidents
from features.loaders import load_dataset
from features.snapshots import build_snapshots, escalation_labels, snapshot_dates
from models.escalation import EscalationModel, Split, temporal_split, train_escalation
from models.evaluation import (
    bootstrap_intervals,
    calibration_curve,
    paired_difference_intervals,
    pr_curve,
    ranking_metrics,
)
from models.reasons import top_reasons
from models.rules import rule_verdicts
from models.warning import load_scenarios, points_at_snapshots

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class TrainConfig:
    """The knobs of one training run; defaults and meanings are the settings object's (conf/settings.py)."""

    horizon_days: int = setting_default("horizon_days")
    snapshot_every_days: int = setting_default("snapshot_every_days")
    split_fractions: tuple[float, float, float] = setting_default("split_fractions")
    embargo_days: int = setting_default("embargo_days")
    top_k: int = setting_default("top_k")
    bootstrap_samples: int = setting_default("bootstrap_samples")
    promotion_margin: float = setting_default("promotion_margin")
    promotion_metric: str = setting_default("promotion_metric")
    parity_rows: int = setting_default("parity_rows")
    seed: int = setting_default("seed")

    @classmethod
    def from_settings(cls, settings: Settings) -> TrainConfig:
        values = {f.name: getattr(settings, f.name) for f in fields(cls)}
        return cls(**values | {"split_fractions": tuple(values["split_fractions"])})


@dataclass
class Prepared:
    """Everything the models are trained from, after loading, scoring and linking."""

    tables: dict[str, pd.DataFrame]
    fingerprint: str
    load_summary: dict[str, dict[str, int]]
    incidents: pd.DataFrame
    rules: pd.DataFrame
    links: LinkResult
    calls: pd.DataFrame


@dataclass
class EscalationRun:
    """The escalation model with its data split and test-period predictions."""

    model: EscalationModel
    frame: pd.DataFrame
    feature_names: list[str]
    labels: np.ndarray
    split: Split
    rule_points: dict[str, np.ndarray] = field(default_factory=dict)


def code_version() -> str:
    """The git commit of the code (with ``+dirty`` for uncommitted changes), or ``unknown``."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_data(data_dir: Path) -> tuple[dict[str, pd.DataFrame], str, dict[str, dict[str, int]]]:
    """Load and validate every contract table; quarantined rows are counted, not used."""
    dataset = load_dataset(data_dir)
    summary = {
        name: {"read": r.read, "accepted": r.accepted, "quarantined": r.quarantined}
        for name, r in dataset.tables.items()
    }
    tables = {name: r.data for name, r in dataset.tables.items()}
    return tables, dataset_fingerprint(data_dir), summary


def prepare(data_dir: Path) -> Prepared:
    """Load, score every narrative with the rules, and link every incident to a household."""
    tables, fingerprint, summary = load_data(data_dir)
    incidents = tables["incidents"].reset_index(drop=True)
    rules = rule_verdicts(incidents["narrative"]).reset_index(drop=True)
    links = link_incidents(incidents, tables["persons"], tables["households"], tables["addresses"])
    calls = incident_calls(incidents, rules, links.links)
    return Prepared(tables, fingerprint, summary, incidents, rules, links, calls)


def incident_calls(incidents: pd.DataFrame, rules: pd.DataFrame, links: pd.DataFrame) -> pd.DataFrame:
    """One row per incident: when, which household and caller, and what the rules saw."""
    cues = [c for c in rules.columns if c.startswith("cue_")]
    return pd.DataFrame(
        {
            "incident_id": incidents["incident_id"].to_numpy(),
            "received_at": incidents["received_at"].to_numpy(),
            "household_id": links["household_id"].to_numpy(),
            "person_id": links["person_id"].to_numpy(),
            "is_dispute": rules["is_dispute"].to_numpy(bool),
            "category": rules["category"].to_numpy(object),
            "dispute_score": rules["dispute_score"].to_numpy(),
            "n_deescalation": rules["n_deescalation"].to_numpy(),
            **{c: rules[c].to_numpy() for c in cues},
        }
    )


def build_escalation_data(prepared: Prepared, config: TrainConfig) -> tuple[pd.DataFrame, list[str], np.ndarray, dict]:
    """Weekly snapshots with features, the rules' points among them, and labels."""
    received = prepared.incidents["received_at"]
    first = received.min().normalize() + pd.Timedelta(days=90)  # a quarter of history before the first snapshot
    last = received.max().normalize() - pd.Timedelta(days=config.horizon_days)  # labels need the full horizon
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
    names = snaps.feature_names + [f"points_{name}" for name in points]
    t = prepared.tables
    labels = escalation_labels(frame, t["cases"], t["persons"], t["households"], config.horizon_days)
    return frame, names, labels, points


def fit_escalation(
    frame: pd.DataFrame, names: list[str], labels: np.ndarray, points: dict, config: TrainConfig
) -> EscalationRun:
    """Temporal split, training, early stopping and calibration on the tuning period."""
    split = temporal_split(frame["snapshot_date"], config.split_fractions, config.embargo_days)
    X = frame[names].to_numpy(np.float32)
    model = train_escalation(
        X[split.train], labels[split.train], X[split.tune], labels[split.tune], names, {"seed": config.seed}
    )
    return EscalationRun(model, frame, names, labels, split, points)


def evaluate_escalation(run: EscalationRun, config: TrainConfig) -> dict[str, Any]:
    """Model against the scoring rules on the same test snapshots, with household-bootstrap intervals."""
    from models.calibration import fit_calibration

    X = run.frame[run.feature_names].to_numpy(np.float32)
    test, tune = run.split.test, run.split.tune
    y = run.labels[test]
    groups = run.frame.loc[test, ["station_id", "snapshot_date"]].reset_index(drop=True)
    clusters = run.frame.loc[test, "household_id"].to_numpy()
    model_prob = run.model.predict(X[test])
    model_score = run.model.raw(X[test])
    # The rules rank by points; their probability is the points calibrated on the same tuning period.
    rule_points = run.rule_points["max"] + 1e-3 * run.rule_points["escalation"]
    rule_cal = fit_calibration(rule_points[tune], run.labels[tune], method="isotonic")
    rule_score = rule_points[test]
    rule_prob = rule_cal.apply(rule_score)
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
    out["rows"] = {"train": int(run.split.train.sum()), "tune": int(tune.sum()), "test": int(test.sum())}
    out["positives"] = {
        "train": int(run.labels[run.split.train].sum()),
        "tune": int(run.labels[tune].sum()),
        "test": int(y.sum()),
    }
    out["rule_calibration"] = rule_cal.to_dict()
    return out


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
    path = write_bundle(out_dir / "bundle", models, _plain(prov), overwrite=True)
    return {
        "path": str(path),
        "parity": {"escalation": esc_parity, "dispute": dis_parity},
        "ok": bool(esc_parity["ok"] and dis_parity["ok"]),
        "max_abs_diff": max(esc_parity["max_abs_diff"], dis_parity["max_abs_diff"]),
    }


def _plain(value: Any) -> Any:
    """JSON-plain copy (numpy scalars to Python, tuples to lists)."""
    return json.loads(json.dumps(value, default=_json_default))


def _metric_numbers(prefix: str, metrics: dict[str, Any]) -> dict[str, float]:
    """Numeric metrics with intervals split into ``<name>.ci_low`` / ``.ci_high`` (MLflow takes numbers only)."""
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if name == "ci":
            for metric, (low, high) in value.items():
                out[f"{prefix}.{metric}.ci_low"] = float(low)
                out[f"{prefix}.{metric}.ci_high"] = float(high)
        elif isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value):
            out[f"{prefix}.{name}"] = float(value)
    return out


def register_and_report(
    prepared: Prepared,
    run: EscalationRun,
    dispute_run: DisputeRun,
    evaluation: dict[str, Any],
    bundle: dict[str, Any],
    config: TrainConfig,
    out_dir: Path,
    tracking_uri: str,
) -> dict[str, Any]:
    """Write the report, log the run to MLflow, register both models and decide promotion."""
    from models import registry
    from models.report import verdict, write_report

    prov = provenance(prepared, config)
    report: dict[str, Any] = {
        "escalation": {k: v for k, v in evaluation.items() if k not in ("curves", "rule_calibration")},
        "dispute": dispute_run.evaluation,
        "onnx": {
            "max_abs_diff": bundle["max_abs_diff"],
            "ok": bundle["ok"],
            "rows": bundle["parity"]["escalation"]["rows"],
            "top_k_identical": bundle["parity"]["escalation"]["top_k_identical"]
            and bundle["parity"]["dispute"]["top_k_identical"],
            "models": bundle["parity"],
        },
        "provenance": prov,
        "linking": prepared.links.stats,
        "load": prepared.load_summary,
        "examples": example_reasons(run),
        "feature_names": run.feature_names,
    }
    report["escalation"]["curves"] = evaluation["curves"]
    report["verdict"] = verdict(report["escalation"], config.promotion_metric)
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = {"escalation": evaluation["curves"]}
    write_json(out_dir / "curves.json", curves)

    metrics = {
        **_metric_numbers("escalation.test.model", evaluation["model"]),
        **_metric_numbers("escalation.test.rules", evaluation["rules"]),
        **_metric_numbers("dispute.test.model", dispute_run.evaluation["model"]),
        **_metric_numbers("dispute.test.rules", dispute_run.evaluation["rules"]),
        "onnx.max_abs_diff": float(bundle["max_abs_diff"]),
    }
    params = {
        **{f"train.{k}": v for k, v in asdict(config).items()},
        **{f"escalation.{k}": v for k, v in run.model.params.items()},
        **{f"dispute.{k}": v for k, v in dispute_run.model.params.items()},
    }
    tags = {
        "code_version": prov["code_version"],
        "data_fingerprint": prov["data_fingerprint"],
        "lexicon_version": prov["lexicon_version"],
        "feature_list_hash": registry.feature_list_hash(run.feature_names),
    }
    with registry.start_run(tracking_uri, run_name=f"train-{prov['data_fingerprint']}") as active:
        run_id = active.info.run_id
        report["mlflow"] = {"run_id": run_id, "tracking_uri": tracking_uri}
        decisions = {}
        versions = {}
        report_md = write_report(report, out_dir)
        write_json(out_dir / "report.json", report)
        registry.log_training(
            params=_plain(params),
            metrics=metrics,
            tags=tags,
            artifacts={
                "report.json": out_dir / "report.json",
                "report.md": report_md,
                "pr_curve.png": out_dir / "pr_curve.png",
                "calibration.png": out_dir / "calibration.png",
                "curves.json": out_dir / "curves.json",
                "bundle": Path(bundle["path"]),
            },
        )
    for name, metric in (
        (registry.ESCALATION_MODEL, f"escalation.test.model.{config.promotion_metric}"),
        (registry.DISPUTE_MODEL, "dispute.test.model.f1"),
    ):
        version = registry.register(run_id, name, "bundle", f"trained on data {prov['data_fingerprint']}", tracking_uri)
        decision = registry.apply_promotion_rule(
            name,
            version,
            margin=config.promotion_margin,
            parity_ok=bundle["ok"],
            metric=metric,
            tracking_uri=tracking_uri,
        )
        versions[name] = version
        decisions[name] = decision.to_dict()
    promoted = bool(decisions[registry.ESCALATION_MODEL]["promote"])
    report["mlflow"].update({"model_versions": versions, "decisions": decisions})
    report["promoted"] = promoted
    report["promotion_reason"] = decisions[registry.ESCALATION_MODEL]["reason"]
    write_report(report, out_dir)
    write_json(out_dir / "report.json", report)
    return report


STEPS = (
    "load, validate, score and link",
    "snapshot features and labels",
    "split and train escalation",
    "train dispute classifier",
    "evaluate against the rules",
    "export ONNX bundle",
    "register, decide promotion, report",
)


def run_training(
    data_dir: Path,
    out_dir: Path,
    tracking_uri: str,
    config: TrainConfig,
    progress: Any = None,
    step: Any = None,
) -> dict[str, Any]:
    """The whole job, step by step; the Prefect flow runs this same function with ``step`` making tasks.

    ``step(function, name)`` wraps each step (default: no wrapping); ``progress``
    receives one line per step.
    """
    say = progress or (lambda _msg: None)
    wrap = step or (lambda function, _name: function)
    names = iter(STEPS)

    def run(function: Any, *args: Any) -> Any:
        name = next(names)
        say(name)
        return wrap(function, name)(*args)

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    prepared = run(prepare, data_dir)
    frame, names_, labels, points = run(build_escalation_data, prepared, config)
    escalation = run(fit_escalation, frame, names_, labels, points, config)
    dispute_run = run(fit_dispute, prepared, config, data_dir / "truth")
    evaluation = run(evaluate_escalation, escalation, config)
    bundle = run(export_bundle, escalation, dispute_run, prepared, config, out_dir)
    return run(
        register_and_report, prepared, escalation, dispute_run, evaluation, bundle, config, out_dir, tracking_uri
    )
