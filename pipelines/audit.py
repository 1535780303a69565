"""The training run's disparity audit and capacity curves, from the most recent held-out period.

One function for ``pipelines/registration.py``: the last backtest fold's
test rows (``EscalationRun.holdout()``: snapshots the scoring model had not
seen), their households' groups at each snapshot date (features/groups.py),
who was warned at the station top-k (the model's fold scores and the
scoring rules' on the same rows), and the labels. Writes ``disparity.json``,
``capacity.json`` and ``capacity.png`` into the run folder and returns what
the report and MLflow take from them. Ids in the files: none (groups and
counts only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from features.groups import ATTRIBUTES, groups_at
from models.capacity import at, capacity_curves
from models.disparity import Thresholds, compare_sides, disparity_table, summary, warned_at_top_k
from pipelines.preparation import Prepared
from pipelines.training import EscalationRun, TrainConfig, provenance, write_json

FILES = ("disparity.json", "capacity.json", "capacity.png")


@dataclass
class Audit:
    """What the run records: the two payloads, their MLflow metrics, and the files to log as artifacts."""

    disparity: dict[str, Any]
    capacity: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)


def audit_metrics(disparity: dict[str, Any], capacity: dict[str, Any]) -> dict[str, float]:
    """A few headline numbers for MLflow: flagged ratios per side, recall at 5 and 10 visits a day and a week."""
    out: dict[str, float] = {}
    for side, stats in disparity["summary"].items():
        prefix = "disparity" if side == "model" else f"disparity.{side}"
        out[f"{prefix}.flagged"] = float(stats["flagged"])
        if stats["mean_abs_log_ratio"] is not None:
            out[f"{prefix}.mean_abs_log_ratio"] = float(stats["mean_abs_log_ratio"])
    for side in capacity["city"]:
        prefix = "capacity" if side == "model" else f"capacity.{side}"
        for cadence in ("day", "week"):
            for k in (5, 10):
                value = at(capacity, side, cadence, k)
                if value is not None:
                    out[f"{prefix}.recall_k{k}_{cadence}"] = float(value)
            value = at(capacity, side, cadence, 5, "false_alarms_per_station_week")
            if value is not None:
                out[f"{prefix}.false_alarms_per_station_week_k5_{cadence}"] = float(value)
    return out


def audit_run(run: EscalationRun, prepared: Prepared, config: TrainConfig, out_dir: Path) -> Audit:
    """Disparity (model and rules) and capacity curves on the last fold's held-out rows; files into ``out_dir``."""
    from models.audit_report import plot_capacity

    assert run.backtest is not None
    rows, model_score = run.holdout()
    last = run.backtest.last_fold()
    sides = {"model": np.asarray(model_score), "rules": np.asarray(run.backtest.rule_score[last])}
    frame = run.frame.iloc[rows].reset_index(drop=True)
    labels = np.asarray(run.labels[rows]).astype(bool)
    groups = groups_at(prepared.tables, frame["household_id"], frame["snapshot_date"])
    households = frame["household_id"].to_numpy()
    thresholds = Thresholds.load()
    tables = {
        side: disparity_table(
            groups,
            warned_at_top_k(score, frame["station_id"], frame["snapshot_date"], config.top_k),
            households,
            labels,
            n_boot=config.bootstrap_samples,
            seed=config.seed,
            thresholds=thresholds,
        )
        for side, score in sides.items()
    }
    prov = provenance(prepared, config)
    made_by = {k: prov[k] for k in ("code_version", "data_fingerprint")}
    period = {
        "test_from": str(frame["snapshot_date"].min().date()),
        "test_to": str(frame["snapshot_date"].max().date()),
        "rows": len(frame),
        "households": len(np.unique(households)),
        "positives": int(labels.sum()),
    }
    disparity = {
        "k": config.top_k,
        "attributes": list(ATTRIBUTES),
        "thresholds": thresholds.__dict__,
        "bootstrap_samples": config.bootstrap_samples,
        "period": period,
        "summary": {side: summary(table) for side, table in tables.items()},
        "comparison": compare_sides(tables),
        "rows": {side: table for side, table in tables.items()},
        **made_by,
    }
    capacity = capacity_curves(
        sides, labels, frame["station_id"], frame["snapshot_date"], groups["county"], config.snapshot_every_days
    ) | {
        "rows_per_station_week": round(
            len(frame) / max(frame[["station_id", "snapshot_date"]].drop_duplicates().shape[0], 1), 2
        ),
        **made_by,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "disparity.json", disparity)
    write_json(out_dir / "capacity.json", capacity)
    plot_capacity(capacity, out_dir)
    artifacts = {name: out_dir / name for name in FILES if (out_dir / name).is_file()}
    return Audit(disparity, capacity, audit_metrics(disparity, capacity), artifacts)
