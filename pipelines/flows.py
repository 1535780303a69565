"""Prefect flows: thin shells whose tasks call the plain functions of ``pipelines/training.py``.

Flows run against Prefect's local ephemeral API by default (no server to
start by hand); ``configure_prefect`` points Prefect's home at the settings'
folder before Prefect is imported. Tasks use ``NO_CACHE``: their inputs are
large DataFrames that must not be hashed or persisted (they hold personal
data), and nothing is persisted as a task result.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from conf import Settings


def configure_prefect(settings: Settings) -> None:
    """Prefect's home and timeouts from our settings (call before importing prefect)."""
    os.environ.setdefault("PREFECT_HOME", str(settings.prefect_home))
    # The ephemeral API can take 10-75 s to start on a busy 2-core machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no network here: telemetry only errors
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    Path(settings.prefect_home).mkdir(parents=True, exist_ok=True)


def build_train_flow():  # type: ignore[no-untyped-def]
    """The training flow, built after Prefect is configured."""
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    from pipelines import training as steps

    def as_task(fn, name: str):  # type: ignore[no-untyped-def]
        return task(fn, name=name, cache_policy=NO_CACHE, persist_result=False)

    prepare = as_task(steps.prepare, "load, validate, segment and link")
    escalation_data = as_task(steps.build_escalation_data, "snapshot features and labels")
    fit = as_task(steps.fit_escalation, "split and train escalation")
    dispute = as_task(steps.fit_dispute, "train dispute classifier")
    evaluate = as_task(steps.evaluate_escalation, "evaluate against the rules")
    export = as_task(steps.export_bundle, "export ONNX bundle")
    register = as_task(steps.register_and_report, "register, decide promotion, report")

    def say(message: str) -> None:
        print(f"  {message}", file=sys.stderr, flush=True)

    @flow(name="yujing-train", log_prints=False, persist_result=False)
    def train_flow(data_dir: str, out_dir: str, tracking_uri: str, config: dict[str, Any]) -> dict[str, Any]:
        cfg = steps.TrainConfig(**config)
        say("load, validate, score and link")
        prepared = prepare(Path(data_dir))
        say(f"snapshots ({len(prepared.incidents):,} incidents)")
        frame, names, labels, points = escalation_data(prepared, cfg)
        say(f"train escalation ({len(frame):,} snapshots, {int(labels.sum()):,} positive)")
        run = fit(frame, names, labels, points, cfg)
        say("train dispute classifier")
        dispute_run = dispute(prepared, cfg, Path(data_dir) / "truth")
        say("evaluate against the rules")
        evaluation = evaluate(run, cfg)
        say("export ONNX bundle")
        bundle = export(run, dispute_run, prepared, cfg, Path(out_dir))
        say("register and report")
        return register(prepared, run, dispute_run, evaluation, bundle, cfg, Path(out_dir), tracking_uri)

    return train_flow
