"""``yujing train``, ``rank`` and ``schedule``: the jobs that run as Prefect flows.

Arguments are checked before Prefect's API server starts (tens of seconds on a
busy machine); Prefect's own log lines, tracebacks of failed runs included, go
to ``<home>/logs/prefect.log`` instead of the terminal, and the failure itself
reaches ``pipelines.cli.main`` as the exception the flow raised.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from pipelines.commands.common import (
    bundle_folder,
    cron,
    database_url,
    day,
    fail,
    folder,
    history_file,
    info,
    is_quiet,
    settings,
    size_class,
)
from pipelines.commands.errors import is_known

_PREFECT_LOGGING = """\
version: 1
disable_existing_loggers: False
formatters:
  standard:
    (): prefect.logging.formatters.PrefectFormatter
    format: "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s - %(message)s"
    flow_run_fmt: "%(asctime)s.%(msecs)03d | %(levelname)-7s | Flow run %(flow_run_name)r - %(message)s"
    task_run_fmt: "%(asctime)s.%(msecs)03d | %(levelname)-7s | Task run %(task_run_name)r - %(message)s"
    datefmt: "%Y-%m-%d %H:%M:%S"
handlers:
  file:
    level: 0
    class: logging.FileHandler
    filename: {log}
    encoding: utf-8
    formatter: standard
  api:
    level: 0
    class: prefect.logging.handlers.APILogHandler
loggers:
  prefect:
    level: "${{PREFECT_LOGGING_LEVEL}}"
  prefect.extra:
    level: "${{PREFECT_LOGGING_LEVEL}}"
    handlers: [api]
    propagate: false
  prefect.flow_runs:
    level: NOTSET
    handlers: [api]
  prefect.task_runs:
    level: NOTSET
    handlers: [api]
  prefect.server:
    level: "${{PREFECT_SERVER_LOGGING_LEVEL}}"
  prefect._internal:
    level: "${{PREFECT_INTERNAL_LOGGING_LEVEL}}"
    propagate: false
    handlers: [file]
  uvicorn:
    level: "${{PREFECT_SERVER_LOGGING_LEVEL}}"
    handlers: [file]
    propagate: false
  fastapi:
    level: "${{PREFECT_SERVER_LOGGING_LEVEL}}"
    handlers: [file]
    propagate: false
root:
  level: WARNING
  handlers: [file]
"""


def prefect_logs_to_file(config: Any) -> Path:
    """Point Prefect's logging (this process and its API server) at ``<home>/logs/prefect.log``.

    Prefect logs a failed run's traceback through its console handler; on a
    user's terminal that is 30 lines of internals around one sentence we print
    ourselves. Must run before ``prefect`` is imported; the file is the place
    to look when a flow fails in an unexpected way.
    """
    logs = config.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / "prefect.log"
    spec = Path(config.prefect_home) / "logging.yml"
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(_PREFECT_LOGGING.format(log=json.dumps(str(log))), encoding="utf-8")
    os.environ.setdefault("PREFECT_LOGGING_SETTINGS_PATH", str(spec))
    return log


def _dataset_size(root: Path) -> str:
    """The size class of a dataset from its manifest (for the ETA history), or "any"."""
    try:
        counts = json.loads((root / "manifest.json").read_text(encoding="utf-8"))["row_counts"]
        return size_class(int(counts["persons"]))
    except (OSError, ValueError, KeyError, TypeError):
        return "any"


def train(
    data: Annotated[
        Path | None, typer.Option(help="Dataset folder (as written by `yujing simulate`, or an export).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder for report.json, report.md and the ONNX bundle.")] = None,
    prefect: Annotated[bool, typer.Option(help="Run as a Prefect flow (ephemeral local API).")] = True,
    cluster: Annotated[
        str | None,
        typer.Option(
            help="Dask cluster for the snapshots and the escalation fit: 'local' (settings.cluster_workers "
            "processes here) or a scheduler address tcp://host:8786 (docs/province.md). Default: this process."
        ),
    ] = None,
) -> None:
    """Train the dispute and escalation models, evaluate against the rules, export, register."""
    folder(data, "--data")
    folder(out, "--out", must_exist=False)
    config = settings()
    if cluster is not None:
        from pipelines.cluster import ClusterError, check_spec

        try:
            cluster = check_spec(cluster)
        except ClusterError as exc:
            raise fail(str(exc)) from None
    root = (data or config.data_dir / "city").resolve()
    if not root.is_dir():
        raise fail(f"{root}: no dataset there; fix: pass --data DIR or run `yujing simulate` first")
    target = (out or config.runs_dir / "latest").resolve()
    if prefect:
        prefect_logs_to_file(config)
    from pipelines.flows import configure_prefect
    from pipelines.progress import Stages
    from pipelines.training import STEPS, TrainConfig, run_training

    train_config = TrainConfig.from_settings(config)
    info(f"training on {root} -> {target} (tracking {config.mlflow_tracking_uri})")
    job = f"train-{_dataset_size(root)}"
    from models.champions import champions_now
    from pipelines.retraining import TRAIN_BY, conclude

    champions_before = champions_now(config.mlflow_tracking_uri)  # the gate's promotions go to the history
    from contextlib import nullcontext

    from pipelines.cluster import ClusterError, open_cluster

    try:
        with (
            Stages(job, STEPS, quiet=is_quiet(), history=history_file()) as stages,
            nullcontext(None)
            if cluster is None
            else open_cluster(cluster, config.cluster_workers, config.cluster_memory_limit) as client,
        ):
            if prefect:
                configure_prefect(config)
                from dataclasses import asdict

                from pipelines.flows import build_train_flow

                report = build_train_flow()(
                    str(root),
                    str(target),
                    config.mlflow_tracking_uri,
                    asdict(train_config),
                    config.warnings_db_url,
                    client.scheduler.address if client is not None else None,
                )
            else:
                report = run_training(
                    root,
                    target,
                    config.mlflow_tracking_uri,
                    train_config,
                    progress=stages.feed,
                    warnings_db_url=config.warnings_db_url,
                    client=client,
                )
    except ValueError as exc:  # the contract's and training's own errors name the file, key and fix
        if is_known(exc) or type(exc) is ValueError or isinstance(exc, ClusterError):
            raise fail(str(exc)) from None
        raise
    conclude(report, champions_before, TRAIN_BY, config.mlflow_tracking_uri)
    esc = report["escalation"]
    typer.echo(
        f"escalation PR-AUC model {esc['model']['pr_auc']:.4f} vs rules {esc['rules']['pr_auc']:.4f}; "
        f"recall@{esc['k']} model {esc['model']['recall_at_k']:.3f} vs rules {esc['rules']['recall_at_k']:.3f}"
    )
    typer.echo(
        f"dispute F1 model {report['dispute']['model']['f1']:.3f} vs rules {report['dispute']['rules']['f1']:.3f}"
    )
    typer.echo(f"ONNX parity max |dp| {report['onnx']['max_abs_diff']:.2e}")
    for line in fold_lines(esc):
        typer.echo(line)
    typer.echo(report["promotion"]["sentence"])
    typer.echo(f"wrote {target / 'report.json'}, {target / 'report.md'}, bundle {target / 'bundle'}")


def fold_lines(escalation: dict[str, Any]) -> list[str]:
    """One line per backtest fold (recall@k model vs rules), or a note that this run had none."""
    backtest = escalation.get("backtest")
    if not backtest:
        return ["no rolling-origin backtest in this run: the gate used the single test period above"]
    k = backtest.get("k", escalation.get("k"))

    def line(name: str, part: dict[str, Any]) -> str:
        low, high = part.get("model_minus_rules_ci", {}).get("recall_at_k", [float("nan")] * 2)
        return (
            f"{name}: recall@{k} model {part['model']['recall_at_k']:.3f} vs rules {part['rules']['recall_at_k']:.3f} "
            f"(model − rules [{low:+.3f}, {high:+.3f}], {part.get('positives', 0):,} escalations)"
        )

    lines = [
        line(f"fold {f['fold']} (test {f.get('test_from', '?')}..{f.get('test_to', '?')})", f)
        for f in backtest.get("folds", [])
    ]
    return [*lines, line("pooled", backtest["pooled"])]


LEVEL_NAMES = {"red": "红色", "orange": "橙色", "yellow": "黄色", "blue": "蓝色"}
RAISED_BY_NAMES = {"rules": "积分预警提出", "model": "模型提出", "both": "积分预警与模型共同提出"}


def print_top(top: list[dict]) -> None:  # type: ignore[type-arg]
    """The city's most urgent warnings, one block each: who raised it, the recent calls, both sides' reasons."""
    for i, w in enumerate(top, start=1):
        p = w.get("probability")
        risk = f"{p:.1%}" if isinstance(p, float) and p == p else f"{w['rules_points']:g}分"
        raised = RAISED_BY_NAMES.get(w.get("raised_by") or "", "")
        typer.echo(
            f"{i:>2}. {LEVEL_NAMES.get(w['level'], w['level'])} {w['household_id']} "
            f"{w['station_id']} {w['station_name']} 风险 {risk}{f'（{raised}）' if raised else ''}"
        )
        typer.echo(f"    近期报警: {'；'.join(w.get('recent_calls') or []) or '—'}")
        typer.echo(f"    模型因素: {'；'.join(w['model_reasons']) or '—'}")
        typer.echo(f"    积分预警: {'；'.join(w['rules_reasons']) or '—'}")
        typer.echo(f"    匹配词:   {'、'.join(w['matched_terms']) or '—'}")


def engine_line(summary: dict[str, Any], tracking_uri: str | None) -> str:
    """Which engine ranked and why, from the published manifest and the registry's logged decisions."""
    from models import promotion, registry

    try:
        manifest = json.loads((Path(summary["folder"]) / "manifest.json").read_text(encoding="utf-8"))
        model = manifest.get("model") or {"engine": summary["engine"]}
    except (OSError, ValueError):
        model = {"engine": summary["engine"]}
    decisions = None
    missing_store = tracking_uri and tracking_uri.startswith("sqlite:///") and not Path(tracking_uri[10:]).is_file()
    if tracking_uri and not missing_store:  # never create an empty tracking store just to explain the ranking
        try:
            decisions = promotion.registry_decisions(registry.ESCALATION_MODEL, tracking_uri)
        except Exception:  # the ranking is written; an unreadable registry only shortens the explanation
            decisions = None
    return promotion.ranking_sentence(model, decisions)


def rank(
    date: Annotated[
        str | None,
        typer.Option(
            help="YYYY-MM-DD to rank as of (morning). Default: the export date, else the day after the latest call."
        ),
    ] = None,
    data: Annotated[Path | None, typer.Option(help="Dataset folder (default: <data_dir>/city).")] = None,
    out: Annotated[Path | None, typer.Option(help="Rankings folder; the date's outputs go to OUT/<date>/.")] = None,
    bundle: Annotated[Path | None, typer.Option(help="ONNX bundle (default: the registered champion).")] = None,
    db: Annotated[str | None, typer.Option(help="Warnings database URL (default: SQLite under home).")] = None,
    prefect: Annotated[bool, typer.Option(help="Run as a Prefect flow (ephemeral local API).")] = True,
    top: Annotated[int, typer.Option(min=0, help="How many of the city's top warnings to print.")] = 10,
    cache: Annotated[
        bool, typer.Option(help="Reuse rule verdicts and links of calls seen before (incident_cache_dir).")
    ] = True,
    cluster: Annotated[
        str | None,
        typer.Option(help="Rank the cities on Dask: 'local' (workers on this machine) or tcp://scheduler:8786."),
    ] = None,
) -> None:
    """Rank every household as of a date: levels, reasons, Parquet/CSV/HTML outputs, warnings database."""
    date = day(date, "--date")
    if cluster is not None:  # docs/province.md: one task per city on the workers, one publication
        from pipelines.cluster import ClusterError, check_spec

        try:
            cluster = check_spec(cluster)
        except ClusterError as exc:
            raise fail(str(exc)) from None
    folder(data, "--data")
    folder(out, "--out", must_exist=False)
    bundle_folder(bundle)
    database_url(db)
    config = settings()
    if prefect:
        prefect_logs_to_file(config)
    from pipelines.flows import configure_prefect, rank_parameters
    from pipelines.progress import Stages
    from pipelines.ranking import RankConfig, resolve_champion, run_ranking

    params = rank_parameters(config, data, date)
    if not Path(params["data_dir"]).is_dir():
        raise fail(f"{params['data_dir']}: no dataset there; fix: pass --data DIR or run `yujing simulate` first")
    params["out_root"] = str((out or Path(params["out_root"])).resolve())
    params["store_url"] = db or params["store_url"]
    if not cache:
        params["cache_dir"] = None
    if bundle is not None:
        params["bundle_dir"], params["tracking_uri"] = str(bundle.resolve()), None
    info(f"ranking {params['data_dir']} as of {date or 'the default day'} -> {params['out_root']}")
    from pipelines.ranking import RANK_STEPS

    steps = RANK_STEPS if bundle is None else RANK_STEPS[1:]
    job = f"rank-{_dataset_size(Path(params['data_dir']))}"
    if cluster is not None:
        from pipelines.cluster_ranking import CLUSTER_RANK_STEPS

        steps = CLUSTER_RANK_STEPS if bundle is None else CLUSTER_RANK_STEPS[1:]
        job = f"rank-cluster-{_dataset_size(Path(params['data_dir']))}"
    with Stages(job, steps, quiet=is_quiet(), history=history_file()) as stages:
        if cluster is not None:
            from pipelines.cluster import ClusterError
            from pipelines.cluster_ranking import rank_on_cluster

            if prefect:
                configure_prefect(config)
            try:
                summary = rank_on_cluster(cluster, params, config, prefect, stages.feed)
            except ClusterError as exc:
                raise fail(str(exc)) from None
        elif prefect:
            configure_prefect(config)
            from pipelines.flows import build_rank_flow

            summary = build_rank_flow()(**params)
        else:
            path, version = (Path(params["bundle_dir"]), None) if params["bundle_dir"] else (None, None)
            if path is None:
                stages.start("resolve champion")
                path, version = resolve_champion(config.mlflow_tracking_uri, Path(params["champion_cache"]))
            summary = run_ranking(
                Path(params["data_dir"]),
                date,
                Path(params["out_root"]),
                params["store_url"],
                path,
                version,
                RankConfig(**params["config"]),
                progress=stages.feed,
                cache_dir=Path(params["cache_dir"]) if params["cache_dir"] else None,
            ).to_dict()
    counts = summary["warnings"]
    typer.echo(
        f"{summary['date']}: {summary['households']:,} households scored by {summary['engine']}, "
        f"{summary['in_scope']:,} with a dispute on record; warnings "
        + ", ".join(f"{LEVEL_NAMES[k]} {v}" for k, v in counts.items())
    )
    typer.echo(engine_line(summary, params.get("tracking_uri")))
    if summary.get("drift"):
        from models.drift import summary_line

        typer.echo(summary_line(summary["drift"]))  # breaches and where (docs/drift.md)
    if summary.get("cache"):
        c = summary["cache"]
        typer.echo(
            f"incident cache: rules {c['rules_hits']:,} reused, {c['rules_misses']:,} scored; links "
            f"{c['links_hits']:,} reused, {c['links_misses']:,} linked; recent-call readings "
            f"{c.get('readings_hits', 0):,} reused, {c.get('readings_misses', 0):,} read; text drift "
            f"{c.get('ood_hits', 0):,} reused, {c.get('ood_misses', 0):,} scored; escalations' rules levels "
            f"{c.get('escalations_hits', 0):,} reused, {c.get('escalations_misses', 0):,} computed; registry tables "
            f"{c.get('tables_hits', 0)} reused, {c.get('tables_misses', 0)} validated; "
            f"{(c['bytes_on_disk'] + c.get('tables_bytes', 0)) / 2**20:,.1f} MiB on disk"
            + (f"; {len(c['scopes_removed'])} unused scope(s) removed" if c.get("scopes_removed") else "")
        )
    db_counts = summary["database"]
    typer.echo(
        f"database: {db_counts.get('inserted', 0)} new, {db_counts.get('updated', 0)} updated, "
        f"{db_counts.get('unchanged', 0)} unchanged, {db_counts.get('withdrawn', 0) + db_counts.get('deleted', 0)} "
        "withdrawn"
    )
    if top > 0 and summary["top"]:
        typer.echo(f"top {min(top, len(summary['top']))} warnings:")
        print_top(summary["top"][:top])
    published = Path(summary["folder"])
    typer.echo(
        f"wrote {published}/: ranking.parquet, warnings.csv, warnings.xlsx (Excel), "
        "index.html + stations/*.html, quarantine/"
    )
    if summary.get("worker_peaks"):  # --cluster: the driver's and each worker's peak memory
        from pipelines.cluster_ranking import peaks_line

        typer.echo(peaks_line(summary["worker_peaks"], config.cluster_memory_limit))


def schedule(
    cron_: Annotated[
        str | None, typer.Option("--cron", help="Cron for the daily run (default: settings.schedule_cron).")
    ] = None,
    data: Annotated[Path | None, typer.Option(help="Dataset folder the feed refreshes.")] = None,
    port: Annotated[
        int, typer.Option(min=1, max=65535, help="Port of the local Prefect server started when no API is set.")
    ] = 4200,
    report_cron: Annotated[
        str | None,
        typer.Option("--report-cron", help="Cron for the weekly analysis report (default: settings.report_cron)."),
    ] = None,
    train_cron: Annotated[
        str | None,
        typer.Option("--train-cron", help="Cron for retraining on the latest data (default: settings.train_cron)."),
    ] = None,
) -> None:
    """Serve the daily ranking, the weekly report and the retraining on their crons with Prefect.

    A local Prefect server is started unless PREFECT_API_URL names one.
    """
    cron(cron_)
    cron(report_cron, "--report-cron")
    cron(train_cron, "--train-cron")
    folder(data, "--data")
    config = settings()
    if not os.environ.get("PREFECT_API_URL"):
        from pipelines.commands.serve import port_problem

        problem = port_problem("127.0.0.1", port)
        if problem:
            raise fail(f"{problem}; fix: choose --port or stop the other process")
    prefect_logs_to_file(config)
    from pipelines.flows import (
        configure_prefect,
        daily_deployment,
        report_deployment,
        start_local_server,
        train_deployment,
    )

    configure_prefect(config)
    server = None
    if not os.environ.get("PREFECT_API_URL"):
        info(f"starting a local Prefect server on 127.0.0.1:{port} (log: {config.prefect_home}/server.log)")
        server = start_local_server(config, port)
    try:
        from prefect import serve

        deployment = daily_deployment(config, cron_, data)
        weekly = report_deployment(config, report_cron, data)
        retrain = train_deployment(config, train_cron, data)
        schedule_ = deployment.schedules[0].schedule
        report_schedule = weekly.schedules[0].schedule
        info(
            f"serving yujing-daily-rank on cron {schedule_.cron!r}, yujing-weekly-report on "
            f"{report_schedule.cron!r} and yujing-scheduled-train on {retrain.schedules[0].schedule.cron!r} "
            f"({schedule_.timezone}); Ctrl-C stops"
        )
        serve(deployment, weekly, retrain)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
