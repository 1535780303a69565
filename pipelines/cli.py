"""The ``yujing`` command: a thin shell over the library.

Each command parses its options, calls one function, prints a short summary
of what it wrote where, and turns known errors into one line on stderr with
exit code 2 (never a traceback with data in it).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from conf import get_settings
from features.loaders import DataContractError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # rich tracebacks print local variables, which may hold personal data
    help="预警 yujing: dispute and escalation risk.",
)


def _err(message: str) -> None:
    typer.echo(message, err=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    _err(f"error: {message}")
    return typer.Exit(code)


@app.command()
def simulate(
    persons: Annotated[int | None, typer.Option(help="Number of persons in the city.")] = None,
    days: Annotated[int | None, typer.Option(help="Days of incidents to simulate.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (same seed, same bytes).")] = None,
    start: Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: <data_dir>/city).")] = None,
) -> None:
    """Simulate a synthetic city and write its tables as Parquet, truth apart."""
    from simulation.city import simulate_city, write_city
    from simulation.config import SimConfig

    settings = get_settings()
    try:
        config = SimConfig(
            persons=persons or settings.sim_persons,
            days=days or settings.sim_days,
            seed=settings.seed if seed is None else seed,
            start=start or settings.sim_start,
        )
    except ValueError as exc:
        raise _fail(str(exc)) from None
    target = (out or settings.data_dir / "city").resolve()
    _err(f"simulating {config.persons:,} persons over {config.days} days from {config.start}, seed {config.seed}")
    city = simulate_city(config, progress=lambda line: _err(f"  {line}"))
    manifest = write_city(city, target)
    typer.echo(f"wrote {len(manifest['row_counts'])} tables to {target} (fingerprint {manifest['fingerprint']})")
    for name, count in manifest["row_counts"].items():
        typer.echo(f"  {name + '.parquet':<20} {count:>10,} rows")
    typer.echo(f"  truth/ holds {', '.join(manifest['truth_row_counts'])} (for evaluation only)")


@app.command()
def validate(
    data: Annotated[Path | None, typer.Option(help="Dataset folder (Parquet or CSV per table).")] = None,
    encoding: Annotated[str | None, typer.Option(help="CSV encoding; default tries UTF-8 then GB18030.")] = None,
    quarantine: Annotated[Path | None, typer.Option(help="Where to write quarantined rows.")] = None,
    strict: Annotated[bool, typer.Option(help="Exit 1 when any row was quarantined.")] = False,
) -> None:
    """Check a dataset against the data contract; quarantine rows that do not fit."""
    from features.fingerprint import dataset_fingerprint
    from features.loaders import load_dataset, write_quarantine

    root = (data or get_settings().data_dir / "city").resolve()
    try:
        dataset = load_dataset(root, encoding=encoding)
    except DataContractError as exc:
        raise _fail(str(exc)) from None
    typer.echo(dataset.summary())
    if dataset.window is not None:
        window = dataset.window
        typer.echo(
            f"dates: calls, cases and visits from {window.earliest:%Y-%m-%d}, nothing after the export date "
            f"{window.export_date:%Y-%m-%d}"
        )
    written = write_quarantine(dataset, (quarantine or root / "quarantine").resolve())
    total = sum(r.quarantined for r in dataset.tables.values())
    typer.echo(f"fingerprint {dataset_fingerprint(root)}; {total:,} rows quarantined")
    for path in written:
        typer.echo(f"  quarantine: {path}")
    if strict and total:
        raise typer.Exit(1)


def _run_stream(input_path: Path, output: Path, run) -> None:  # type: ignore[no-untyped-def]
    """Open input and output, run a batch command, rename the output into place on success."""
    from pipelines.batch import open_output

    if str(input_path) != "-" and not input_path.is_file():
        raise _fail(f"{input_path}: no such file")
    source = sys.stdin.buffer if str(input_path) == "-" else input_path.open("rb")
    try:
        if str(output) == "-":
            stats = run(source, sys.stdout)
        else:
            with open_output(output) as sink:
                stats = run(source, sink)
            output.with_name(output.name + ".part").replace(output)
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    where = "stdout" if str(output) == "-" else str(output)
    _err(f"read {stats.read:,} lines, wrote {stats.written:,} to {where}, {stats.errors:,} with an error field")


def _dispute_model(bundle: Path | None) -> tuple[Any, Path | None, str | None]:
    """The dispute model of ``bundle`` or of the registered champion: ``(model, path, why not)``.

    A broken registry or an unusable champion must not stop ``classify`` or ``evaluate-text``:
    the rules still answer, and ``why not`` says so. A ``--bundle`` that cannot be loaded is
    the user's error and exits 2.
    """
    from models.registry import champion_bundle
    from serving.dispute import load_dispute_model

    settings = get_settings()
    try:
        path = bundle or champion_bundle(settings.mlflow_tracking_uri, settings.home / "champion")
    except Exception as exc:  # a broken registry: the rules still answer
        return None, None, f"no model from the registry ({type(exc).__name__})"
    if path is None:
        return None, None, "no champion in the registry and no --bundle"
    try:
        return load_dispute_model(path), path, None
    except Exception as exc:
        if bundle is not None:
            raise _fail(f"{bundle}: cannot load the dispute model ({exc})") from None
        return None, None, f"champion bundle unusable ({type(exc).__name__})"


@app.command()
def classify(
    input: Annotated[Path, typer.Option("--input", help="JSON lines with id and narrative ('-' = stdin).")],
    output: Annotated[Path, typer.Option("--output", help="JSON lines out, one per input line ('-' = stdout).")],
    bundle: Annotated[Path | None, typer.Option(help="ONNX bundle to use (default: the registered champion).")] = None,
    rules_only: Annotated[bool, typer.Option("--rules-only", help="Answer from the keyword rules alone.")] = False,
) -> None:
    """Classify incident narratives: dispute or not, category, cues and matched terms."""
    from pipelines.batch import classify_stream

    model = None
    if not rules_only:
        model, path, note = _dispute_model(bundle)
        if note:
            _err(f"warning: {note}; answering from the rules")
        _err(f"engine: {'model+rules (' + str(path) + ')' if model is not None else 'rules'}")
    _run_stream(input, output, lambda source, sink: classify_stream(source, sink, model))


def _count_lines(path: Path) -> int:
    """Lines in a file (for progress), reading it in blocks."""
    count, last = 0, b"\n"
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    part.write_text(text, encoding="utf-8")
    part.replace(path)


@app.command(name="evaluate-text")
def evaluate_text(
    input: Annotated[
        Path,
        typer.Option(
            "--input", help="JSON lines with id, narrative, is_dispute, category (null if none); source optional."
        ),
    ],
    bundle: Annotated[Path | None, typer.Option(help="ONNX bundle to use (default: the registered champion).")] = None,
    rules_only: Annotated[bool, typer.Option("--rules-only", help="Evaluate the keyword rules alone.")] = False,
    output: Annotated[Path | None, typer.Option("--output", help="Write the report as JSON here.")] = None,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="Write the report as Markdown here.")] = None,
    encoding: Annotated[str, typer.Option(help="Input encoding: utf-8 or gb18030.")] = "utf-8",
) -> None:
    """Measure the rules and the fused model+rules engine on hand-coded calls, side by side."""
    from models.text_evaluation import (
        TextEvaluationError,
        build_report,
        check_usable,
        evaluate_lines,
        normalize_encoding,
        render_markdown,
        render_text,
    )

    try:
        codec = normalize_encoding(encoding)
    except TextEvaluationError as exc:
        raise _fail(str(exc)) from None
    if not input.is_file():
        raise _fail(f"{input}: no such file")
    if bundle is not None and rules_only:
        raise _fail("--bundle and --rules-only exclude each other; pass one")

    model, path, note = None, None, "model+rules not evaluated: --rules-only"
    if not rules_only:
        model, path, why = _dispute_model(bundle)
        note = f"model+rules not evaluated: {why}" if why else None
    _err(f"engine: {'rules and model+rules (' + str(path) + ')' if model is not None else 'rules'}")
    if note and not rules_only:
        _err(f"warning: {note}")

    total = _count_lines(input)
    shown = [0]

    def progress(done: int) -> None:
        if total > 5_000 and done - shown[0] >= 10_000:
            shown[0] = done
            _err(f"  {done:,} of {total:,} lines")

    with input.open("rb") as handle:
        evaluation = evaluate_lines(handle, model, codec, progress=progress)
    if total > 5_000:
        _err(f"  {total:,} of {total:,} lines")
    try:
        check_usable(evaluation, str(input), codec)
    except TextEvaluationError as exc:
        raise _fail(str(exc)) from None

    from features.lexicon import default_lexicon

    provenance = (model.provenance or {}) if model is not None else {}
    meta = {
        "input": str(input),
        "encoding": codec,
        "engine": "model+rules" if model is not None else "rules",
        "engine_note": note,
        "lexicon_version": default_lexicon().version,
        "bundle": None
        if model is None
        else {
            "path": str(path),
            "data_fingerprint": provenance.get("data_fingerprint"),
            "code_version": provenance.get("code_version"),
            "lexicon_version": provenance.get("lexicon_version"),
        },
    }
    report = build_report(evaluation, meta)
    typer.echo(render_text(report), nl=False)
    if output is not None:
        import json

        _write_atomic(output, json.dumps(report, ensure_ascii=False, indent=2) + "\n")
        _err(f"wrote {output}")
    if markdown is not None:
        _write_atomic(markdown, render_markdown(report))
        _err(f"wrote {markdown}")


@app.command()
def warn(
    input: Annotated[
        Path,
        typer.Option("--input", help="JSON lines: id, narrative, received_at, household_id or party_key."),
    ],
    as_of: Annotated[str, typer.Option("--as-of", help="YYYY-MM-DD (end of that day) or an ISO time.")],
    output: Annotated[Path, typer.Option("--output", help="JSON lines out, one per household or party.")],
) -> None:
    """Run the scoring warning models (积分预警) over call histories as of a date."""
    import pandas as pd

    from pipelines.batch import warn_stream

    try:
        pd.Timestamp(as_of)
    except ValueError:
        raise _fail(f"--as-of {as_of!r} is not a date; use YYYY-MM-DD") from None
    _run_stream(input, output, lambda source, sink: warn_stream(source, sink, as_of))


@app.command()
def train(
    data: Annotated[
        Path | None, typer.Option(help="Dataset folder (as written by `yujing simulate`, or an export).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder for report.json, report.md and the ONNX bundle.")] = None,
    prefect: Annotated[bool, typer.Option(help="Run as a Prefect flow (ephemeral local API).")] = True,
) -> None:
    """Train the dispute and escalation models, evaluate against the rules, export, register."""
    from pipelines.flows import configure_prefect
    from pipelines.training import TrainConfig, run_training

    settings = get_settings()
    root = (data or settings.data_dir / "city").resolve()
    target = (out or settings.runs_dir / "latest").resolve()
    config = TrainConfig.from_settings(settings)
    _err(f"training on {root} -> {target} (tracking {settings.mlflow_tracking_uri})")
    try:
        if prefect:
            configure_prefect(settings)
            from dataclasses import asdict

            from pipelines.flows import build_train_flow

            report = build_train_flow()(str(root), str(target), settings.mlflow_tracking_uri, asdict(config))
        else:
            report = run_training(root, target, settings.mlflow_tracking_uri, config, progress=lambda m: _err(f"  {m}"))
    except DataContractError as exc:
        raise _fail(str(exc)) from None
    except ValueError as exc:
        raise _fail(str(exc)) from None
    esc = report["escalation"]
    typer.echo(
        f"escalation PR-AUC model {esc['model']['pr_auc']:.4f} vs rules {esc['rules']['pr_auc']:.4f}; "
        f"recall@{esc['k']} model {esc['model']['recall_at_k']:.3f} vs rules {esc['rules']['recall_at_k']:.3f}"
    )
    typer.echo(
        f"dispute F1 model {report['dispute']['model']['f1']:.3f} vs rules {report['dispute']['rules']['f1']:.3f}"
    )
    typer.echo(f"ONNX parity max |dp| {report['onnx']['max_abs_diff']:.2e}")
    for line in _fold_lines(esc):
        typer.echo(line)
    typer.echo(report["promotion"]["sentence"])
    typer.echo(f"wrote {target / 'report.json'}, {target / 'report.md'}, bundle {target / 'bundle'}")


def _fold_lines(escalation: dict[str, Any]) -> list[str]:
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


_LEVEL_NAMES = {"red": "红色", "orange": "橙色", "yellow": "黄色", "blue": "蓝色"}


_RAISED_BY_NAMES = {"rules": "积分预警提出", "model": "模型提出", "both": "积分预警与模型共同提出"}


def _print_top(top: list[dict]) -> None:  # type: ignore[type-arg]
    """The city's most urgent warnings, one block each: who raised it, the recent calls, both sides' reasons."""
    for i, w in enumerate(top, start=1):
        p = w.get("probability")
        risk = f"{p:.1%}" if isinstance(p, float) and p == p else f"{w['rules_points']:g}分"
        raised = _RAISED_BY_NAMES.get(w.get("raised_by") or "", "")
        typer.echo(
            f"{i:>2}. {_LEVEL_NAMES.get(w['level'], w['level'])} {w['household_id']} "
            f"{w['station_id']} {w['station_name']} 风险 {risk}{f'（{raised}）' if raised else ''}"
        )
        typer.echo(f"    近期报警: {'；'.join(w.get('recent_calls') or []) or '—'}")
        typer.echo(f"    模型因素: {'；'.join(w['model_reasons']) or '—'}")
        typer.echo(f"    积分预警: {'；'.join(w['rules_reasons']) or '—'}")
        typer.echo(f"    匹配词:   {'、'.join(w['matched_terms']) or '—'}")


def _engine_line(summary: dict[str, Any], tracking_uri: str | None) -> str:
    """Which engine ranked and why, from the published manifest and the registry's logged decisions."""
    import json

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


@app.command()
def rank(
    date: Annotated[
        str | None, typer.Option(help="YYYY-MM-DD to rank as of (morning). Default: the day after the latest call.")
    ] = None,
    data: Annotated[Path | None, typer.Option(help="Dataset folder (default: <data_dir>/city).")] = None,
    out: Annotated[Path | None, typer.Option(help="Rankings folder; the date's outputs go to OUT/<date>/.")] = None,
    bundle: Annotated[Path | None, typer.Option(help="ONNX bundle (default: the registered champion).")] = None,
    db: Annotated[str | None, typer.Option(help="Warnings database URL (default: SQLite under home).")] = None,
    prefect: Annotated[bool, typer.Option(help="Run as a Prefect flow (ephemeral local API).")] = True,
    top: Annotated[int, typer.Option(help="How many of the city's top warnings to print.")] = 10,
) -> None:
    """Rank every household as of a date: levels, reasons, Parquet/CSV/HTML outputs, warnings database."""
    from pipelines.flows import configure_prefect, rank_parameters
    from pipelines.ranking import RankConfig, RankingError, resolve_champion, run_ranking

    settings = get_settings()
    params = rank_parameters(settings, data, date)
    params["out_root"] = str((out or Path(params["out_root"])).resolve())
    params["store_url"] = db or params["store_url"]
    if bundle is not None:
        if not (bundle / "manifest.json").is_file():
            raise _fail(f"{bundle}: not an ONNX bundle (no manifest.json); fix: point --bundle at a bundle folder")
        params["bundle_dir"], params["tracking_uri"] = str(bundle.resolve()), None
    _err(f"ranking {params['data_dir']} as of {date or 'the day after the latest call'} -> {params['out_root']}")
    try:
        if prefect:
            configure_prefect(settings)
            from pipelines.flows import build_rank_flow

            summary = build_rank_flow()(**params)
        else:
            path, version = (Path(params["bundle_dir"]), None) if params["bundle_dir"] else (None, None)
            if path is None:
                path, version = resolve_champion(settings.mlflow_tracking_uri, Path(params["champion_cache"]))
            summary = run_ranking(
                Path(params["data_dir"]),
                date,
                Path(params["out_root"]),
                params["store_url"],
                path,
                version,
                RankConfig(**params["config"]),
                progress=lambda m: _err(f"  {m}"),
            ).to_dict()
    except (DataContractError, RankingError) as exc:
        raise _fail(str(exc)) from None
    counts = summary["warnings"]
    typer.echo(
        f"{summary['date']}: {summary['households']:,} households scored by {summary['engine']}, "
        f"{summary['in_scope']:,} with a dispute on record; warnings "
        + ", ".join(f"{_LEVEL_NAMES[k]} {v}" for k, v in counts.items())
    )
    typer.echo(_engine_line(summary, params.get("tracking_uri")))
    db_counts = summary["database"]
    typer.echo(
        f"database: {db_counts.get('inserted', 0)} new, {db_counts.get('updated', 0)} updated, "
        f"{db_counts.get('unchanged', 0)} unchanged, {db_counts.get('withdrawn', 0) + db_counts.get('deleted', 0)} "
        "withdrawn"
    )
    if top > 0 and summary["top"]:
        typer.echo(f"top {min(top, len(summary['top']))} warnings:")
        _print_top(summary["top"][:top])
    folder = Path(summary["folder"])
    typer.echo(f"wrote {folder}/: ranking.parquet, warnings.csv (Excel), index.html + stations/*.html")


@app.command()
def schedule(
    cron: Annotated[str | None, typer.Option(help="Cron for the daily run (default: settings.schedule_cron).")] = None,
    data: Annotated[Path | None, typer.Option(help="Dataset folder the feed refreshes.")] = None,
    port: Annotated[int, typer.Option(help="Port of the local Prefect server started when no API is set.")] = 4200,
) -> None:
    """Serve the daily ranking on a cron with Prefect (starts a local Prefect server unless PREFECT_API_URL is set)."""
    import os

    from pipelines.flows import configure_prefect, daily_deployment, start_local_server

    settings = get_settings()
    configure_prefect(settings)
    server = None
    if not os.environ.get("PREFECT_API_URL"):
        _err(f"starting a local Prefect server on 127.0.0.1:{port} (log: {settings.prefect_home}/server.log)")
        server = start_local_server(settings, port)
    try:
        from prefect import serve

        deployment = daily_deployment(settings, cron, data)
        _err(f"serving yujing-daily-rank on cron {deployment.schedules[0].schedule.cron!r}; Ctrl-C stops")
        serve(deployment)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default: settings.serve_host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: settings.serve_port).")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes (2 on a 2-core machine).")] = 1,
    bundle: Annotated[Path | None, typer.Option(help="Serve this bundle instead of the champions.")] = None,
) -> None:
    """Serve the scoring API (FastAPI on uvicorn); keys from the JSON file named by YUJING_API_KEYS."""
    import os

    import uvicorn

    from serving.auth import KeyFileError, KeyRing

    if bundle is not None:
        os.environ["YUJING_SERVE_BUNDLE"] = str(bundle.resolve())  # the app (and each worker) reads settings from env
        get_settings.cache_clear()
    settings = get_settings()
    try:
        keys = KeyRing.from_file(settings.api_keys_file)
    except KeyFileError as exc:
        raise _fail(str(exc)) from None
    if not len(keys):
        _err("warning: no API keys configured (set YUJING_API_KEYS to a JSON file): every request will be 401")
    host, port = host or settings.serve_host, port or settings.serve_port
    _err(f"serving on http://{host}:{port} ({workers} worker(s)); OpenAPI at /docs; audit log {settings.home}/logs")
    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,  # the audit log records every request, without personal data
    )


def main() -> None:
    """Console entry point (``yujing``)."""
    try:
        app()
    except KeyboardInterrupt:
        _err("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
