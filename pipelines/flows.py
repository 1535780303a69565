"""Prefect flows: thin shells whose tasks call the plain functions of ``pipelines/training.py``.

Flows need a Prefect API. With ``PREFECT_API_URL`` set they use that server
(one the job does not own). Otherwise the job starts Prefect's API itself, on
loopback, as **its own child that dies with it** (:func:`ensure_prefect_api`):
Prefect's built-in ephemeral server is a plain subprocess that a ``kill -9`` of
the job leaves running (~200 MB and a port each, issue 11), while ours asks the
kernel to SIGKILL it when the job dies (``prctl(PR_SET_PDEATHSIG)``) and is
stopped cleanly when the job exits. ``configure_prefect`` points Prefect's home
at the settings' folder before Prefect is imported. Tasks use ``NO_CACHE``:
their inputs are large DataFrames that must not be hashed or persisted (they
hold personal data), and nothing is persisted as a task result.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import time
import urllib.request
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


# --------------------------------------------------------------------- the job's own Prefect API

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_OWNED: dict[str, subprocess.Popen[bytes]] = {}


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when ``parent`` dies (Linux); exit at once if it already has.

    Called first thing in the child, not in a ``preexec_fn`` (unsafe when the parent has threads).
    The check of ``getppid`` after ``prctl`` closes the race of a parent killed before it.
    """
    import contextlib
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):  # not Linux: the parent's exit handler still stops it
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(0)


def serve_api(port: int, parent: int) -> None:
    """The API child's entry point: Prefect's REST API in ephemeral mode (no UI, no services) on loopback."""
    die_with_parent(parent)
    import uvicorn
    from prefect.server.api.server import create_app

    uvicorn.run(create_app(ephemeral=True, final=True), host="127.0.0.1", port=port, log_level="error")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _api_configured() -> bool:
    """Whether Prefect already has an API to talk to (an env var, or settings of an imported Prefect)."""
    if os.environ.get("PREFECT_API_URL"):
        return True
    if "prefect.settings" in sys.modules:  # e.g. prefect_test_harness: settings live in Prefect's context
        from prefect.settings import PREFECT_API_URL

        return bool(PREFECT_API_URL.value())
    return False


def _start_api(timeout: float) -> tuple[subprocess.Popen[bytes], str]:
    """Start :func:`serve_api` as our child and wait until ``/api/health`` answers; a lost port race retries."""
    deadline = time.monotonic() + timeout
    root = str(Path(__file__).resolve().parents[1])
    env = dict(
        os.environ,
        PREFECT_UI_ENABLED="0",
        PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    )
    env.pop("PREFECT_API_URL", None)
    for _attempt in range(3):
        port = _free_port()
        code = f"from pipelines.flows import serve_api; serve_api({port}, {os.getpid()})"
        process = subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}/api"
        if _answers_health(process, url, deadline, pause=0.2):
            return process, url
        if process.poll() is None:  # still running, never answered; an exit (a lost port race) tries another port
            _stop(process)
            raise RuntimeError(
                f"Prefect's API did not answer on {url} within {timeout:.0f} s; "
                "fix: run with --no-prefect, raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, "
                "or set PREFECT_API_URL to a running server"
            )
        if time.monotonic() >= deadline:
            break
    raise RuntimeError(
        f"Prefect's API exited with code {process.returncode} on start (three tries); "
        "fix: see the lines above, run with --no-prefect, or set PREFECT_API_URL to a running server"
    )


def _answers_health(process: subprocess.Popen[bytes], url: str, deadline: float, pause: float) -> bool:
    """Poll a Prefect API's ``/health`` until it answers 200 (True), or its process exits or ``deadline`` passes."""
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(pause)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stop_prefect_api() -> None:
    """Stop the API this process started (flushing Prefect's log and event workers first); safe to call twice."""
    process = _OWNED.pop("api", None)
    if process is None:
        return
    try:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=5)
        EventsWorker.drain_all(timeout=5)
    except Exception:  # nothing to flush, or the API is already gone: stopping is what matters
        pass
    _stop(process)


def ensure_prefect_api(timeout: float | None = None) -> str | None:
    """Give Prefect an API the job controls; returns the URL of the one started here, or None.

    With an API already configured (``PREFECT_API_URL``, or the test harness) nothing is started.
    Otherwise Prefect's REST API runs as this process's child (:func:`serve_api`): it dies with
    the job, however the job ends (``kill -9`` included: the kernel kills it), and a normal exit
    stops it cleanly. Call it from the main thread (the death signal follows the thread that
    started the child) and before Prefect runs anything.
    """
    if _api_configured() or "api" in _OWNED:
        return None
    wait = timeout or float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90"))
    process, url = _start_api(wait)
    _OWNED["api"] = process
    atexit.register(stop_prefect_api)
    os.environ["PREFECT_API_URL"] = url
    if "prefect.context" in sys.modules:  # Prefect already read its settings: make it read them again
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()
    return url


def build_train_flow():  # type: ignore[no-untyped-def]
    """The training flow, built after Prefect is configured: ``run_training`` with each step a task."""
    ensure_prefect_api()
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    from pipelines.training import TrainConfig, run_training

    def as_task(function, name: str):  # type: ignore[no-untyped-def]
        return task(function, name=name, cache_policy=NO_CACHE, persist_result=False)

    def say(message: str) -> None:
        from pipelines.progress import emit  # the running command's stage display, or a plain line

        emit(message)

    @flow(name="yujing-train", log_prints=False, persist_result=False)
    def train_flow(
        data_dir: str,
        out_dir: str,
        tracking_uri: str,
        config: dict[str, Any],
        warnings_db_url: str | None = None,
        cluster_address: str | None = None,
    ) -> dict[str, Any]:
        """Train; with ``cluster_address`` (a Dask scheduler) the snapshots and the escalation fit run there."""
        args = (Path(data_dir), Path(out_dir), tracking_uri, TrainConfig(**config), say, as_task, warnings_db_url)
        if cluster_address is None:
            return run_training(*args)
        from distributed import Client

        with Client(cluster_address) as client:
            return run_training(*args, client=client)

    return train_flow


def build_rank_flow():  # type: ignore[no-untyped-def]
    """The daily ranking flow: ``run_ranking`` with each step a task."""
    ensure_prefect_api()
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    from pipelines.ranking import RankConfig, resolve_champion, run_ranking

    def as_task(function, name: str):  # type: ignore[no-untyped-def]
        return task(function, name=name, cache_policy=NO_CACHE, persist_result=False)

    def say(message: str) -> None:
        from pipelines.progress import emit  # the running command's stage display, or a plain line

        emit(message)

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
        cache_dir: str | None = None,
        cluster_address: str | None = None,
    ) -> Any:
        """Rank one date; without ``bundle_dir`` the registry's champion is looked up at run time.

        ``cluster_address``: the flow runs on a ``DaskTaskRunner`` there and each city is a task
        (pipelines/cluster_ranking.py, ``yujing rank --cluster``).
        """
        bundle, version = (Path(bundle_dir), None) if bundle_dir else (None, None)
        if bundle is None and tracking_uri:
            bundle, version = as_task(resolve_champion, "resolve champion")(tracking_uri, Path(champion_cache or "."))
        from pipelines.drift import drift_state

        common = (Path(data_dir), date, Path(out_root), store_url, bundle, version, RankConfig(**(config or {})))
        cache = Path(cache_dir) if cache_dir else None
        if cluster_address:
            from pipelines.cluster_ranking import prefect_submit, run_cluster_ranking

            result = run_cluster_ranking(*common, prefect_submit(as_task), say, as_task, cache_dir=cache)
        else:
            result = run_ranking(*common, say, as_task, cache_dir=cache)
        return drift_state(result.to_dict())  # a drift alert ends the run as Completed "Drifted" (docs/drift.md)

    return rank_flow


def build_report_flow():  # type: ignore[no-untyped-def]
    """The analysis report flow: ``run_report`` (or ``run_incident_report``) with each step a task."""
    ensure_prefect_api()
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    from pipelines.reports.run import run_incident_report, run_report

    def as_task(function, name: str):  # type: ignore[no-untyped-def]
        return task(function, name=name, cache_policy=NO_CACHE, persist_result=False)

    def say(message: str) -> None:
        from pipelines.progress import emit

        emit(message)

    @flow(name="yujing-report", log_prints=False, persist_result=False)
    def report_flow(
        data_dir: str,
        out_root: str,
        store_url: str,
        rankings_dir: str,
        runs_dir: str,
        hours: dict[str, int],
        pdf: bool = True,
        period: str | None = None,
        end: str | None = None,
        incident: str | None = None,
    ) -> dict[str, Any]:
        """One period report (``period``, ``end``) or the special analysis of ``incident``."""
        if incident is not None:
            return run_incident_report(
                Path(data_dir), incident, Path(out_root), store_url, pdf=pdf, progress=say, step=as_task
            ).to_dict()
        result = run_report(
            Path(data_dir),
            period or "week",
            end,
            Path(out_root),
            store_url,
            Path(rankings_dir),
            Path(runs_dir),
            hours,
            pdf=pdf,
            progress=say,
            step=as_task,
        )
        return result.to_dict()

    return report_flow


def report_parameters(
    settings: Settings,
    data_dir: Path | None = None,
    out_root: Path | None = None,
    store_url: str | None = None,
    pdf: bool = True,
) -> dict[str, Any]:
    """The report flow's parameters from the settings (period, end or incident are the caller's)."""
    return {
        "data_dir": str((data_dir or Path(settings.data_dir) / "city").resolve()),
        "out_root": str(out_root or settings.reports_dir),
        "store_url": store_url or settings.warnings_db_url,
        "rankings_dir": str(settings.rankings_dir),
        "runs_dir": str(settings.runs_dir),
        "hours": dict(settings.warning_deadline_hours),
        "pdf": pdf,
    }


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
        "cache_dir": str(settings.incident_cache_dir),  # pipelines/incident_cache.py; `rank --no-cache`: None
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


def report_deployment(settings: Settings, cron: str | None = None, data_dir: Path | None = None):  # type: ignore[no-untyped-def]
    """The weekly analysis report as a deployment (``report_cron``, default Monday 07:00): the week to the latest day.

    The deployed flow is ``pipelines/scheduled.py:weekly_report``; it runs after the
    Monday ranking, so the report's warnings include that morning's.
    """
    from prefect.schedules import Cron

    from pipelines.scheduled import weekly_report

    return weekly_report.to_deployment(
        name="yujing-weekly-report",
        schedule=Cron(cron or settings.report_cron, timezone=settings.schedule_timezone),
        parameters={"data_dir": str((data_dir or Path(settings.data_dir) / "city").resolve()), "end": None},
        description="预警周报: the weekly analysis report (HTML, PDF, JSON) to the data's latest day",
    )


def train_deployment(settings: Settings, cron: str | None = None, data_dir: Path | None = None):  # type: ignore[no-untyped-def]
    """Retraining as a deployment (``train_cron``, default 02:00 on the 1st of each month): train on the latest
    data, gate against the champion and the rules, register, promote or not, and say so (docs/retraining.md).

    The deployed flow is ``pipelines/scheduled.py:scheduled_train``.
    """
    from prefect.schedules import Cron

    from pipelines.scheduled import scheduled_train

    return scheduled_train.to_deployment(
        name="yujing-scheduled-train",
        schedule=Cron(cron or settings.train_cron, timezone=settings.schedule_timezone),
        parameters={"data_dir": str((data_dir or Path(settings.data_dir) / "city").resolve())},
        description="模型重训: retrain on the latest data; the promotion gate decides whether it ranks",
    )


def start_local_server(settings: Settings, port: int = 4200, timeout: float = 120.0) -> Any:
    """Start ``prefect server start`` on loopback and wait until its API answers; returns the process.

    ``yujing schedule`` needs a server whose scheduler creates the cron's runs
    (the ephemeral API of one-off flows has none). The caller stops it by pid.
    """
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
    if _answers_health(process, url, time.monotonic() + timeout, pause=1.0):
        os.environ["PREFECT_API_URL"] = url
        return process
    if process.poll() is not None:
        raise RuntimeError(f"prefect server exited with {process.returncode}; see {log.name}")
    process.terminate()
    raise RuntimeError(f"prefect server did not answer on {url} within {timeout:.0f} s; see {log.name}")
