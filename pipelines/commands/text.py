"""``yujing classify``, ``evaluate-text`` and ``warn``: the batch commands over JSON lines."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from pipelines.commands.common import (
    bundle_folder,
    err,
    fail,
    info,
    input_file,
    is_quiet,
    moment,
    output_file,
    settings,
)

TEXT_ENCODINGS = ("utf-8", "utf8", "gb18030", "gbk", "gb2312")
"""What ``models.text_evaluation.normalize_encoding`` accepts (checked here without importing it)."""


def _run_stream(input_path: Path, output: Path, run) -> None:  # type: ignore[no-untyped-def]
    """Open input and output, run a batch command, rename the output into place on success."""
    from pipelines.batch import open_output

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
    info(f"read {stats.read:,} lines, wrote {stats.written:,} to {where}, {stats.errors:,} with an error field")


def _dispute_model(bundle: Path | None) -> tuple[Any, Path | None, str | None]:
    """The dispute model of ``bundle`` or of the registered champion: ``(model, path, why not)``.

    A broken registry or an unusable champion must not stop ``classify`` or ``evaluate-text``:
    the rules still answer, and ``why not`` says so. A ``--bundle`` that cannot be loaded is
    the user's error and exits 2.
    """
    from models.registry import champion_bundle
    from serving.dispute import load_dispute_model

    config = settings()
    try:
        path = bundle or champion_bundle(config.mlflow_tracking_uri, config.home / "champion")
    except Exception as exc:  # a broken registry: the rules still answer
        return None, None, f"no model from the registry ({type(exc).__name__})"
    if path is None:
        return None, None, "no champion in the registry and no --bundle"
    try:
        return load_dispute_model(path), path, None
    except Exception as exc:
        if bundle is not None:
            raise fail(f"{bundle}: cannot load the dispute model ({exc})") from None
        return None, None, f"champion bundle unusable ({type(exc).__name__})"


def classify(
    input: Annotated[Path, typer.Option("--input", help="JSON lines with id and narrative ('-' = stdin).")],
    output: Annotated[Path, typer.Option("--output", help="JSON lines out, one per input line ('-' = stdout).")],
    bundle: Annotated[Path | None, typer.Option(help="ONNX bundle to use (default: the registered champion).")] = None,
    rules_only: Annotated[bool, typer.Option("--rules-only", help="Answer from the keyword rules alone.")] = False,
) -> None:
    """Classify incident narratives: dispute or not, category, cues and matched terms."""
    input_file(input, "--input", stdin=True)
    output_file(output, "--output", stdout=True)
    bundle_folder(bundle)
    from pipelines.batch import classify_stream

    model = None
    if not rules_only:
        model, path, note = _dispute_model(bundle)
        if note:
            err(f"warning: {note}; answering from the rules")
        info(f"engine: {'model+rules (' + str(path) + ')' if model is not None else 'rules'}")
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
    if encoding.strip().lower().replace("_", "-") not in TEXT_ENCODINGS:
        raise fail(f"--encoding {encoding!r} is not supported; use utf-8 (default) or gb18030")
    input_file(input, "--input")
    output_file(output, "--output")
    output_file(markdown, "--markdown")
    bundle_folder(bundle)
    if bundle is not None and rules_only:
        raise fail("--bundle and --rules-only exclude each other; pass one")
    from models.text_evaluation import (
        TextEvaluationError,
        build_report,
        check_usable,
        evaluate_lines,
        normalize_encoding,
        render_markdown,
        render_text,
    )
    from pipelines.progress import Stages

    try:
        codec = normalize_encoding(encoding)
    except TextEvaluationError as exc:
        raise fail(str(exc)) from None

    model, path, note = None, None, "model+rules not evaluated: --rules-only"
    if not rules_only:
        model, path, why = _dispute_model(bundle)
        note = f"model+rules not evaluated: {why}" if why else None
    info(f"engine: {'rules and model+rules (' + str(path) + ')' if model is not None else 'rules'}")
    if note and not rules_only:
        err(f"warning: {note}")

    total = _count_lines(input)
    with Stages("evaluate-text", ["evaluate lines"], quiet=is_quiet() or total <= 5_000) as stages:
        stages.start("evaluate lines", f"{total:,} lines")
        shown = [0]

        def progress(done: int) -> None:
            if done - shown[0] >= 10_000:
                shown[0] = done
                stages.part(done, total, f"{done:,} of {total:,} lines")

        with input.open("rb") as handle:
            evaluation = evaluate_lines(handle, model, codec, progress=progress)
        stages.part(total, total, f"{total:,} of {total:,} lines")
    try:
        check_usable(evaluation, str(input), codec)
    except TextEvaluationError as exc:
        raise fail(str(exc)) from None

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
        info(f"wrote {output}")
    if markdown is not None:
        _write_atomic(markdown, render_markdown(report))
        info(f"wrote {markdown}")


def warn(
    input: Annotated[
        Path,
        typer.Option("--input", help="JSON lines: id, narrative, received_at, household_id or party_key."),
    ],
    as_of: Annotated[str, typer.Option("--as-of", help="YYYY-MM-DD (end of that day) or an ISO time.")],
    output: Annotated[Path, typer.Option("--output", help="JSON lines out, one per household or party.")],
) -> None:
    """Run the scoring warning models (积分预警) over call histories as of a date."""
    moment(as_of, "--as-of")
    input_file(input, "--input", stdin=True)
    output_file(output, "--output", stdout=True)
    from pipelines.batch import warn_stream

    _run_stream(input, output, lambda source, sink: warn_stream(source, sink, as_of))
