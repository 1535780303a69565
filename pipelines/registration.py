"""The training job's last step: report, log to MLflow, register both models, and gate the escalation model.

Kept apart from ``pipelines/training.py`` (which fits and measures) because
this step decides what the stations get: the escalation model ranks only when
``models.promotion.decide_gate`` says it is surely better than the scoring
rules and better than the current champion. The dispute classifier keeps its
plain rule (``models.promotion.apply_promotion_rule`` on F1).
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from models.feedback import feedback_metrics
from pipelines.preparation import Prepared
from pipelines.training import (
    DisputeRun,
    EscalationRun,
    TrainConfig,
    _plain,
    example_reasons,
    provenance,
    write_json,
)


def _metric_numbers(prefix: str, metrics: dict[str, Any]) -> dict[str, float]:
    """Numeric metrics with intervals split into ``<name>.ci_low`` / ``.ci_high`` (MLflow takes numbers only)."""
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if name in ("ci", "model_minus_rules_ci"):
            label = "" if name == "ci" else "model_minus_rules."
            for metric, (low, high) in value.items():
                out[f"{prefix}.{label}{metric}.ci_low"] = float(low)
                out[f"{prefix}.{label}{metric}.ci_high"] = float(high)
        elif isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value):
            out[f"{prefix}.{name}"] = float(value)
    return out


def backtest_metrics(backtest: dict[str, Any] | None) -> dict[str, float]:
    """The backtest's numbers as MLflow metrics: ``escalation.backtest.pooled.model.recall_at_k``, per fold too.

    ``escalation.backtest.pooled.model.<metric>`` is what a later run's gate
    reads when it cannot score this run's model itself (``models.promotion.logged_champion``).
    """
    if not backtest:
        return {}
    out: dict[str, float] = {}
    parts = [("pooled", backtest["pooled"])] + [(f"fold{f['fold']}", f) for f in backtest.get("folds", [])]
    for name, part in parts:
        prefix = f"escalation.backtest.{name}"
        for side in ("model", "rules"):
            out |= _metric_numbers(f"{prefix}.{side}", part.get(side, {}))
        out |= _metric_numbers(prefix, {"model_minus_rules_ci": part.get("model_minus_rules_ci", {})})
        for count in ("rows", "positives"):
            if isinstance(part.get(count), int | float):
                out[f"{prefix}.{count}"] = float(part[count])
    return out


def champion_evidence(
    run: EscalationRun,
    evidence: Any,
    candidate_metrics: dict[str, float],
    config: TrainConfig,
    tracking_uri: str,
    cache: Path | None = None,
) -> Any:
    """The candidate against the current escalation champion, or None when there is none.

    Paired when the champion's bundle takes this run's feature list: the
    champion ranks the pooled backtest rows, against the fold models' scores
    on them (the candidate recipe out of sample; the exported model has seen
    every labelled snapshot), by raw score (the calibration is strictly
    increasing, so the order is the same). A champion trained on an earlier
    export of the same data may have seen these rows: the comparison then
    leans towards keeping it, the safe direction. Without a backtest (older
    code) the final test period and the exported model are used. Otherwise
    (other features, an unreadable bundle) the champion's logged number is
    compared, and the decision says so. ``cache``: a folder where the champion's bundle may already
    be (registry.champion_bundle downloads each version once per folder); default a temporary one.
    """
    from models import registry
    from models.backtest import paired_intervals
    from models.evaluation import ranking_metrics
    from models.promotion import ChampionEvidence, logged_champion
    from serving.scorer import OnnxScorer

    info = registry.champion_info(registry.ESCALATION_MODEL, tracking_uri)
    if info is None:
        return None
    backtest = getattr(run, "backtest", None)
    if backtest is not None:
        test, candidate_score = np.asarray(backtest.rows), np.asarray(backtest.model_score)
    else:
        test, candidate_score = np.flatnonzero(run.split.test), None
    with contextlib.ExitStack() as stack:
        folder = cache if cache is not None else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        try:
            path = registry.champion_bundle(tracking_uri, folder, registry.ESCALATION_MODEL)
            scorer = OnnxScorer.from_bundle(path) if path is not None else None
            same = scorer is not None and list(scorer.feature_names("escalation")) == list(run.feature_names)
            X = run.frame[run.feature_names].to_numpy(np.float32)[test] if same else None
            champion_score = scorer.predict("escalation", X)[:, 1] if same else None
        except Exception:  # a champion whose bundle cannot be read is compared on its logged number
            same, champion_score = False, None
    if not same or champion_score is None:
        return logged_champion(info, candidate_metrics, evidence)
    y = run.labels[test]
    frame = run.frame.iloc[test][["station_id", "snapshot_date", "household_id"]].reset_index(drop=True)
    groups = frame[["station_id", "snapshot_date"]]
    if candidate_score is None:
        candidate_score = run.model.raw(X)
    values = {
        side: ranking_metrics(y, score, np.clip(score, 0, 1), groups, config.top_k)[evidence.metric]
        for side, score in (("candidate", candidate_score), ("champion", champion_score))
    }
    interval = paired_intervals(
        y,
        candidate_score,
        champion_score,
        (frame["station_id"].astype(str) + "|" + frame["snapshot_date"].astype(str)).to_numpy(),
        frame["household_id"].to_numpy(),
        config.top_k,
        config.bootstrap_samples,
        config.seed,
    ).get(evidence.metric)
    return ChampionEvidence(
        int(info["version"]),
        "paired",
        float(values["candidate"]),
        float(values["champion"]),
        None if interval is None else (float(interval[0]), float(interval[1])),
    )


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
    from models import promotion, registry
    from models.pyfunc import log_models
    from models.report import verdict, write_report

    prov = provenance(prepared, config)
    report: dict[str, Any] = {
        "escalation": {k: v for k, v in evaluation.items() if k != "curves"},
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
    write_json(out_dir / "curves.json", {"escalation": evaluation["curves"]})

    evidence = promotion.gate_evidence(evaluation, config.promotion_metric)
    calibration = evaluation.get("calibration") or {}
    metrics = {
        **_metric_numbers("escalation.test.model", evaluation["model"]),
        **_metric_numbers("escalation.test.rules", evaluation["rules"]),
        **_metric_numbers("escalation.test", {"model_minus_rules_ci": evaluation.get("model_minus_rules_ci", {})}),
        **backtest_metrics(evaluation.get("backtest")),
        **({"escalation.test.model.calibration_ece": float(calibration["ece"])} if "ece" in calibration else {}),
        **_metric_numbers("dispute.test.model", dispute_run.evaluation["model"]),
        **_metric_numbers("dispute.test.rules", dispute_run.evaluation["rules"]),
        "onnx.max_abs_diff": float(bundle["max_abs_diff"]),
        **feedback_metrics(evaluation.get("feedback")),
    }
    from pipelines.audit import audit_run  # disparity audit and capacity curves (docs/fairness.md, docs/capacity.md)

    audit = audit_run(run, prepared, config, out_dir)
    report |= {"disparity": audit.disparity, "capacity": audit.capacity}
    metrics |= audit.metrics
    from models.drift import metrics as drift_metrics
    from pipelines.drift import training_drift

    with tempfile.TemporaryDirectory() as cache:  # the champion's bundle, downloaded once for drift and the gate
        report["drift"] = training_drift(prepared, tracking_uri, Path(cache))  # vs the champion's reference
        write_json(out_dir / "drift.json", report["drift"])
        metrics |= drift_metrics(report["drift"])
        champion = champion_evidence(run, evidence, metrics, config, tracking_uri, Path(cache))
    gate = promotion.decide_gate(evidence, champion, config.promotion_margin, bool(bundle["ok"]))
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

    def record(decisions: dict[str, Any], versions: dict[str, int]) -> None:
        escalation = decisions.get(registry.ESCALATION_MODEL, gate.to_dict())
        report["promoted"] = bool(escalation["promote"])
        report["promotion_reason"] = escalation["reason"]
        report["ranking_engine"] = escalation["ranking_engine"]
        report["promotion"] = {
            **escalation,
            "sentence": promotion.engine_sentence(escalation, versions.get(registry.ESCALATION_MODEL)),
        }

    record({}, {})  # the decision as it will be, so the logged report already says it
    with registry.start_run(tracking_uri, run_name=f"train-{prov['data_fingerprint']}") as active:
        run_id = active.info.run_id
        report["mlflow"] = {"run_id": run_id, "tracking_uri": tracking_uri}
        report_md = write_report(report, out_dir)
        write_json(out_dir / "report.json", report)
        registry.log_training(
            params=_plain(params),
            metrics=metrics,
            tags=tags,
            artifacts={
                "report.json": out_dir / "report.json",
                "report.md": report_md,
                **{name: out_dir / name for name in ("pr_curve.png", "calibration.png") if (out_dir / name).is_file()},
                "curves.json": out_dir / "curves.json",
                "drift.json": out_dir / "drift.json",
                **audit.artifacts,
                "bundle": Path(bundle["path"]),
            },
        )
        # each model as an MLflow pyfunc holding the bundle (models/pyfunc.py): what the registry versions are
        model_ids = log_models(
            Path(bundle["path"]),
            run.frame,
            run.feature_names,
            run.labels,
            prepared.incidents,
            config.level_thresholds,
            tags,
        )
    versions: dict[str, int] = {}
    decisions: dict[str, Any] = {}
    for name in (registry.ESCALATION_MODEL, registry.DISPUTE_MODEL):
        versions[name] = registry.register(
            run_id, name, f"models:/{model_ids[name]}", f"trained on data {prov['data_fingerprint']}", tracking_uri
        )
    decisions[registry.ESCALATION_MODEL] = promotion.apply_gate(
        registry.ESCALATION_MODEL, versions[registry.ESCALATION_MODEL], gate, tracking_uri
    ).to_dict()
    decisions[registry.DISPUTE_MODEL] = promotion.apply_promotion_rule(
        registry.DISPUTE_MODEL,
        versions[registry.DISPUTE_MODEL],
        margin=config.promotion_margin,
        parity_ok=bundle["ok"],
        metric="dispute.test.model.f1",
        tracking_uri=tracking_uri,
    ).to_dict()
    report["mlflow"].update({"model_versions": versions, "decisions": decisions})
    record(decisions, versions)
    write_report(report, out_dir)
    write_json(out_dir / "report.json", report)
    return report
