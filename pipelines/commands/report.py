"""``yujing report``: the weekly, monthly or quarterly analysis report, or the special analysis of one incident.

Arguments are checked before anything is loaded (a wrong period, day, id or
path fails at once with exit 2); the report itself is
pipelines/reports/run.py, run as a Prefect flow unless ``--no-prefect``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

from pipelines.commands.common import (
    bad,
    database_url,
    day,
    err,
    fail,
    folder,
    history_file,
    info,
    is_quiet,
    settings,
)

_INCIDENT_ID = re.compile(r"[^\s/\\]{1,64}")


def _incident_id(value: str | None) -> str | None:
    """An incident key: 1-64 characters, no spaces or slashes (never echoed back: it could be anything)."""
    if value is None:
        return None
    text = value.strip()
    if not _INCIDENT_ID.fullmatch(text) or any(ord(c) < 32 for c in text):
        raise bad(
            "--incident",
            f"the value given ({len(value)} characters) is not an incident id; "
            "fix: give the incident_id (接警单号) as in the incidents table, e.g. J15052024122800012",
        )
    return text


def _summary(result: dict[str, Any], pdf: bool) -> None:
    """What was written where, and the headline numbers (ids and counts only)."""
    head = result["headline"]
    if "incident_id" in head:
        typer.echo(
            f"incident {head['incident_id']}: {head['households']} household(s) involved, {head['cases']} case(s), "
            f"{head['calls']} call(s) on record, {head['related_households']} related household(s), "
            f"{head['warnings']} published warning(s)"
        )
    else:
        typer.echo(
            f"{head['title']} {head['first']} .. {head['last']}: {head['disputes']} dispute calls "
            f"(previous period {head['disputes_previous']}), {head['warnings']} warnings ({head['overdue']} overdue), "
            f"{head['escalation_cases']} escalation case(s) in {head['escalation_households']} household(s): "
            f"{head['warned_by_rules']} warned by the rules, {head['warned_by_ranking']} by a published ranking; "
            f"{head['hot_spots']} hot spot(s), {head['repeat_households']} repeat household(s), "
            f"{head['stations_assessed']} station(s) assessed"
        )
    files = ", ".join(result["files"])
    typer.echo(f"wrote {result['folder']}/: {files} ({result['charts']} charts{'' if pdf else ', no PDF'})")


def report(
    period: Annotated[
        str | None, typer.Option(help="week, month or quarter: the calendar period containing --end.")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="Last day of the report, YYYY-MM-DD (default: the data's latest day).")
    ] = None,
    incident: Annotated[
        str | None, typer.Option(help="Special analysis of this incident id (接警单号) instead of a period report.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Reports folder (default: settings.reports_dir).")] = None,
    data: Annotated[Path | None, typer.Option(help="Dataset folder (default: <data_dir>/city).")] = None,
    db: Annotated[str | None, typer.Option(help="Warnings database URL (default: SQLite under home).")] = None,
    prefect: Annotated[bool, typer.Option(help="Run as a Prefect flow (ephemeral local API).")] = True,
    pdf: Annotated[bool, typer.Option(help="Also write report.pdf (WeasyPrint).")] = True,
) -> None:
    """Write an analysis report (HTML, PDF, JSON): a week, month or quarter, or one incident."""
    from pipelines.reports.periods import KINDS

    if (period is None) == (incident is None):
        raise fail("give either --period week|month|quarter or --incident ID; fix: e.g. yujing report --period month")
    if period is not None and period not in KINDS:
        raise bad("--period", f"{period!r} is not one of {', '.join(KINDS)}; fix: --period month")
    if incident is not None and end is not None:
        raise bad("--end", "applies to --period only; fix: leave it out with --incident")
    end = day(end, "--end")
    incident = _incident_id(incident)
    folder(out, "--out", must_exist=False)
    folder(data, "--data")
    database_url(db)
    config = settings()
    root = (data or config.data_dir / "city").resolve()
    if not root.is_dir():
        raise fail(f"{root}: no dataset there; fix: pass --data DIR or run `yujing simulate` first")
    target = (out or config.reports_dir).resolve()
    store_url = db or config.warnings_db_url
    if pdf:
        from pipelines.reports.render import FONT_HELP, cjk_font_missing

        if cjk_font_missing():
            err(f"warning: {FONT_HELP}")
    if prefect:
        from pipelines.commands.jobs import prefect_logs_to_file

        prefect_logs_to_file(config)
    from pipelines.flows import configure_prefect
    from pipelines.progress import Stages
    from pipelines.reports.data import ReportError
    from pipelines.reports.run import INCIDENT_STEPS, REPORT_STEPS, run_incident_report, run_report

    what = f"the {period} report to {end or 'the latest day'}" if period else "the special analysis of an incident"
    info(f"writing {what} from {root} -> {target}")
    steps = REPORT_STEPS if period else INCIDENT_STEPS
    try:
        with Stages(f"report-{period or 'incident'}", steps, quiet=is_quiet(), history=history_file()) as stages:
            if prefect:
                configure_prefect(config)
                from pipelines.flows import build_report_flow, report_parameters

                flow_params = report_parameters(config, root, target, store_url, pdf)
                summary = build_report_flow()(**flow_params, period=period, end=end, incident=incident)
            elif period:
                summary = run_report(
                    root,
                    period,
                    end,
                    target,
                    store_url,
                    config.rankings_dir,
                    config.runs_dir,
                    config.warning_deadline_hours,
                    pdf=pdf,
                    progress=stages.feed,
                ).to_dict()
            else:
                assert incident is not None
                summary = run_incident_report(
                    root, incident, target, store_url, pdf=pdf, progress=stages.feed
                ).to_dict()
    except ReportError as exc:
        raise fail(str(exc)) from None
    _summary(summary, pdf)
