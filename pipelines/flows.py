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


def build_rank_flow():  # type: ignore[no-untyped-def]
    """The daily ranking flow: ``run_ranking`` with each step a task."""
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    from pipelines.ranking import RankConfig, resolve_champion, run_ranking

    def as_task(function, name: str):  # type: ignore[no-untyped-def]
        return task(function, name=name, cache_policy=NO_CACHE, persist_result=False)

    def say(message: str) -> None:
        print(f"  {message}", file=sys.stderr, flush=True)

    @flow(name="yujing-rank", log_prints=False, persist_result=False)
    def rank_flow(
        data_dir: str,
        out_root: str,
        store_url: str,
        date: str | None = None,
        bundle_dir: str | None = None,
        tracking_uri: str | None = None,
        champion_cache: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Rank one date; without ``bundle_dir`` the registry's champion is looked up at run time."""
        bundle, version = (Path(bundle_dir), None) if bundle_dir else (None, None)
        if bundle is None and tracking_uri:
            bundle, version = as_task(resolve_champion, "resolve champion")(tracking_uri, Path(champion_cache or "."))
        result = run_ranking(
            Path(data_dir), date, Path(out_root), store_url, bundle, version, RankConfig(**(config or {})), say, as_task
        )
        return result.to_dict()

    return rank_flow


def rank_parameters(settings: Settings, data_dir: Path | None = None, date: str | None = None) -> dict[str, Any]:
    """The ranking flow's parameters from the settings (the champion is looked up when the flow runs)."""
    from dataclasses import asdict

    from pipelines.ranking import RankConfig

    return {
        "data_dir": str((data_dir or Path(settings.data_dir) / "city").resolve()),
        "out_root": str(settings.rankings_dir),
        "store_url": settings.warnings_db_url,
        "date": date,
        "bundle_dir": None,
        "tracking_uri": settings.mlflow_tracking_uri,
        "champion_cache": str(settings.home / "champion"),
        "config": asdict(RankConfig.from_settings(settings)),
    }


def daily_deployment(settings: Settings, cron: str | None = None, data_dir: Path | None = None):  # type: ignore[no-untyped-def]
    """The ranking flow as a deployment on a daily cron; each run ranks its own today with the champion of the day.

    The deployed flow is ``pipelines/scheduled.py:daily_rank``, a module-level
    flow (Prefect's runner loads it by entrypoint in a subprocess).
    """
    from prefect.schedules import Cron

    from pipelines.scheduled import daily_rank

    return daily_rank.to_deployment(
        name="yujing-daily-rank",
        schedule=Cron(cron or settings.schedule_cron, timezone=settings.schedule_timezone),
        parameters={"data_dir": str((data_dir or Path(settings.data_dir) / "city").resolve()), "date": None},
        description="预警日报: rank every household each morning with the champion model",
    )


def start_local_server(settings: Settings, port: int = 4200, timeout: float = 120.0) -> Any:
    """Start ``prefect server start`` on loopback and wait until its API answers; returns the process.

    ``yujing schedule`` needs a server whose scheduler creates the cron's runs
    (the ephemeral API of one-off flows has none). The caller stops it by pid.
    """
    import subprocess
    import time
    import urllib.request

    url = f"http://127.0.0.1:{port}/api"
    env = dict(os.environ, PREFECT_SERVER_API_HOST="127.0.0.1", PREFECT_SERVER_API_PORT=str(port))
    env.pop("PREFECT_API_URL", None)
    log = (Path(settings.prefect_home) / "server.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited with {process.returncode}; see {log.name}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    os.environ["PREFECT_API_URL"] = url
                    return process
        except OSError:
            time.sleep(1.0)
    process.terminate()
    raise RuntimeError(f"prefect server did not answer on {url} within {timeout:.0f} s; see {log.name}")
