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
    """The training flow, built after Prefect is configured: ``run_training`` with each step a task."""
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    from pipelines.training import TrainConfig, run_training

    def as_task(function, name: str):  # type: ignore[no-untyped-def]
        return task(function, name=name, cache_policy=NO_CACHE, persist_result=False)

    def say(message: str) -> None:
        print(f"  {message}", file=sys.stderr, flush=True)

    @flow(name="yujing-train", log_prints=False, persist_result=False)
    def train_flow(data_dir: str, out_dir: str, tracking_uri: str, config: dict[str, Any]) -> dict[str, Any]:
        return run_training(Path(data_dir), Path(out_dir), tracking_uri, TrainConfig(**config), say, as_task)

    return train_flow
