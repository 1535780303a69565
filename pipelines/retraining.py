"""Retraining on the latest data, and saying what it decided: registered, promoted or not, and why.

``yujing train`` and the scheduled training (``yujing schedule``'s
``yujing-scheduled-train`` deployment) run the same training job
(``pipelines/training.run_training``: the promotion gate against the rules and
the champion decides inside it). This module adds what a job that runs
unattended owes its readers: the gate's automatic promotions are recorded in
the champion history (``models/champions.py``, ``by`` = who ran it), and one
plain outcome (:func:`conclude`) says for each model which version was
registered, whether it was promoted, which version is champion now and why.
The scheduled flow logs that sentence as its last line, publishes it as a
Prefect artifact and returns it.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from conf import Settings

TRAIN_BY = "yujing train"
SCHEDULED_BY = "scheduled training"
ARTIFACT_KEY = "yujing-retraining"
"""The Prefect artifact key of the scheduled run's outcome (one lineage: each run adds a version)."""


def train_parameters(
    settings: Settings,
    data_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The training flow's arguments from the settings; ``config`` overrides single knobs (e.g. ``promotion_margin``).

    The run folder is ``<runs_dir>/latest`` like ``yujing train``'s: the analysis reports
    read the last training from there, whichever way it was started.
    """
    from pipelines.training import TrainConfig

    base = asdict(TrainConfig.from_settings(settings))
    unknown = sorted(set(config or {}) - set(base))
    if unknown:
        raise ValueError(f"unknown training setting(s) {', '.join(unknown)}; fix: use names of TrainConfig")
    return {
        "data_dir": str(Path(data_dir or Path(settings.data_dir) / "city").resolve()),
        "out_dir": str(Path(out_dir or Path(settings.runs_dir) / "latest").resolve()),
        "tracking_uri": tracking_uri or settings.mlflow_tracking_uri,
        "config": base | dict(config or {}),
        "warnings_db_url": settings.warnings_db_url,
    }


def conclude(report: dict[str, Any], before: dict[str, int | None], by: str, tracking_uri: str) -> dict[str, Any]:
    """Record the gate's promotions in the champion history and say what this training run decided.

    ``before`` is :func:`models.champions.champions_now` from before the run. Returns
    ``{"sentence", "promoted": {name: bool}, "versions", "champion_before", "champion_after",
    "decisions": {name: {"decision", "reason"}}, "run_id", "data_fingerprint"}``.
    """
    from models import champions, promotion, registry

    order = (registry.ESCALATION_MODEL, registry.DISPUTE_MODEL)  # the model that ranks first
    versions: dict[str, int] = report["mlflow"]["model_versions"]
    decisions: dict[str, dict[str, Any]] = report["mlflow"]["decisions"]
    for name in order:
        if name in versions:
            champions.record_gate(name, versions[name], decisions[name], before.get(name), by, tracking_uri)
    after = champions.champions_now(tracking_uri)
    parts = []
    for name in order:
        if name not in versions:
            continue
        decision, version = decisions[name], versions[name]
        if decision.get("promote"):
            was = f"v{before[name]}" if before.get(name) is not None else "none"
            verdict = f"registered and promoted (champion {was} → v{version})"
        else:
            now = f"champion stays v{after[name]}" if after.get(name) is not None else "no champion: the rules rank"
            verdict = f"registered, not promoted ({now})"
        why = (
            promotion.engine_sentence(decision, version)
            if name == registry.ESCALATION_MODEL
            else decision.get("reason", "")
        )
        parts.append(f"{name} v{version} {verdict}: {why}")
    fingerprint = report.get("provenance", {}).get("data_fingerprint", "?")
    sentence = f"{by} on data {fingerprint}: " + "; ".join(parts)
    return {
        "sentence": sentence,
        "by": by,
        "promoted": {name: bool(decisions[name].get("promote")) for name in versions},
        "versions": dict(versions),
        "champion_before": dict(before),
        "champion_after": after,
        "decisions": {
            name: {"decision": "promote" if d.get("promote") else "keep", "reason": d.get("reason")}
            for name, d in decisions.items()
        },
        "run_id": report["mlflow"].get("run_id"),
        "data_fingerprint": fingerprint,
    }


def outcome_markdown(outcome: dict[str, Any]) -> str:
    """The outcome as a short Markdown table (the Prefect artifact; no personal data: versions and reasons)."""
    lines = [
        f"**{outcome['sentence'].split(':', 1)[0]}**",
        "",
        "| model | registered | promoted | champion before | champion now | why |",
        "|---|---|---|---|---|---|",
    ]
    for name, version in outcome["versions"].items():
        before, after = outcome["champion_before"].get(name), outcome["champion_after"].get(name)
        reason = str(outcome["decisions"][name]["reason"] or "").replace("|", "/")
        promoted = "yes" if outcome["promoted"][name] else "no"
        lines.append(
            f"| {name} | v{version} | {promoted} | {'v' + str(before) if before else '—'} | "
            f"{'v' + str(after) if after else '—'} | {reason} |"
        )
    lines += ["", f"MLflow run `{outcome['run_id']}`; history: `yujing models list`, `yujing models history`."]
    return "\n".join(lines)


def retrain_in_flow(
    settings: Settings,
    data_dir: str | None = None,
    out_dir: str | None = None,
    tracking_uri: str | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The body of the scheduled training flow: the training flow as a subflow, then the outcome, said three ways.

    Its last log line is the outcome's sentence (the flow run's logger and the job's
    output), the artifact :data:`ARTIFACT_KEY` holds it as a table, and it is the
    flow's return value. Called inside a Prefect flow (``pipelines/scheduled.py``).
    """
    from prefect import get_run_logger
    from prefect.artifacts import create_markdown_artifact

    from models import champions
    from pipelines.flows import build_train_flow
    from pipelines.progress import emit

    params = train_parameters(settings, data_dir, out_dir, tracking_uri, config)
    before = champions.champions_now(params["tracking_uri"])
    report = build_train_flow()(**params)
    outcome = conclude(report, before, SCHEDULED_BY, params["tracking_uri"])
    artifact_id = create_markdown_artifact(
        markdown=outcome_markdown(outcome),
        key=ARTIFACT_KEY,
        description="What the scheduled training registered and promoted, and why",
    )
    outcome["artifact_id"] = str(artifact_id)
    get_run_logger().info(outcome["sentence"])
    emit(outcome["sentence"])
    return outcome
