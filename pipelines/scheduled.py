"""The flows ``yujing schedule`` deploys: rank today with the champion of the moment, and the weekly report.

A module-level flow, because Prefect's runner starts each scheduled run in a
subprocess that imports the flow by its entrypoint. Import this module only
after ``pipelines.flows.configure_prefect`` (``yujing schedule`` does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from conf import get_settings
from pipelines.flows import build_rank_flow, build_report_flow, rank_parameters, report_parameters


@flow(name="yujing-daily-rank", log_prints=False, persist_result=False)
def daily_rank(data_dir: str | None = None, date: str | None = None) -> Any:
    """Rank ``date`` (default: the day after the latest call) with the registry's champion, as a subflow."""
    from pipelines.drift import drift_state

    settings = get_settings()
    summary = build_rank_flow()(**rank_parameters(settings, Path(data_dir) if data_dir else None, date))
    return drift_state(summary, publish=False)  # the scheduled run, too, ends "Drifted" on a drift alert


@flow(name="yujing-weekly-report", log_prints=False, persist_result=False)
def weekly_report(data_dir: str | None = None, end: str | None = None) -> dict[str, Any]:
    """The weekly analysis report to ``end`` (default: the data's latest day) into reports_dir, as a subflow."""
    settings = get_settings()
    params = report_parameters(settings, Path(data_dir) if data_dir else None)
    return build_report_flow()(**params, period="week", end=end)


@flow(name="yujing-scheduled-train", log_prints=False, persist_result=False)
def scheduled_train(
    data_dir: str | None = None,
    out_dir: str | None = None,
    tracking_uri: str | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Retrain on the latest data; the gate decides; returns (and logs last, and publishes) what it decided and why.

    ``config`` overrides single training knobs of the settings (``promotion_margin`` ...).
    """
    from pipelines.retraining import retrain_in_flow

    return retrain_in_flow(get_settings(), data_dir, out_dir, tracking_uri, config)
