"""Measure the dispute classifier on a center's own coded calls (``yujing evaluate-text``).

A center codes some of its calls by hand (dispute or not, and which of the 8
categories) and wants to know how the classifier does on *its* text. This
module is the whole of that, as pure functions the command only wires up:

* :func:`validate_line` checks one JSON line and either returns the record or
  says which field is wrong (by line number and field name, never by content);
* :func:`evaluate_lines` streams the lines in chunks (:data:`CHUNK`), scores
  every usable record with the rules and, when a model is given, with the fused
  ``model+rules`` engine (the very answers ``yujing classify`` gives:
  :func:`models.classify.classify_record` and :func:`models.classify.with_model`),
  and keeps only a small outcome row per call (labels and verdicts, no text),
  so memory stays flat however large the file;
* :func:`check_usable` refuses an empty file or one where more than half of
  the lines are unusable;
* :func:`build_report` turns the outcomes into the report: for each engine
  the numbers of :func:`models.evaluation.dispute_metrics` plus the false-positive
  rate, per-category numbers and the confusion table, overall and per ``source``;
* :func:`render_text` and :func:`render_markdown` print it.

Nothing of a narrative (nor any other value of a line but its labels, counts
and ``source`` group) reaches the report.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.schema import CATEGORIES, CATEGORY_NAMES
from models.evaluation import confusion_table, dispute_metrics

CHUNK = 2_000
"""Lines scored at a time (as ``pipelines.batch.CHUNK``): memory does not grow with the file."""

NONE = "none"
LABELS: tuple[str, ...] = (*CATEGORIES, NONE)
"""Rows and columns of the confusion table: the 8 categories, then ``none`` (not a dispute)."""

RULES = "rules"
FUSED = "model+rules"
_PREFIX = {RULES: "rules", FUSED: "fused"}

ENCODINGS = {"utf-8": "utf-8", "utf8": "utf-8", "gb18030": "gb18030", "gbk": "gb18030", "gb2312": "gb18030"}
"""Accepted ``--encoding`` values (GBK and GB2312 are read as their superset GB18030)."""

MAX_SOURCE_LENGTH = 32
MAX_GROUPS = 30
UNSPECIFIED = "unspecified"

_CATEGORY_ALIASES: dict[str, str] = {c: c for c in CATEGORIES} | {v: k for k, v in CATEGORY_NAMES.items()}

METRIC_NOTES = (
    "precision, recall, F1: of 'is a dispute'; false-positive rate: share of the non-disputes flagged as disputes",
    "category accuracy: share of the true disputes given the right category (a missed dispute counts as wrong)",
    "per category (by true category): found = flagged as a dispute, right = given this category; "
    "precision = share of the calls given this category that truly are",
    "— : undefined (no true disputes, no predicted ones, or no non-disputes in the group)",
)


class TextEvaluationError(ValueError):
    """The input cannot be evaluated; the message names the file and the fix, never the content."""


@dataclass(frozen=True)
class Skipped:
    """A line that was not evaluated: its number, the field at fault (None: the whole line) and why."""

    line: int
    field: str | None
    reason: str

    def describe(self) -> str:
        return f"line {self.line}: {self.field + ': ' if self.field else ''}{self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "reason": self.reason}


@dataclass
class Evaluation:
    """What :func:`evaluate_lines` read: counts, skipped lines and one outcome row per evaluated call."""

    read: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    outcomes: pd.DataFrame = field(default_factory=lambda: _empty_outcomes(False))
    engines: tuple[str, ...] = (RULES,)

    @property
    def evaluated(self) -> int:
        return len(self.outcomes)


# --------------------------------------------------------------------------------------------------
# Reading and validating


def normalize_encoding(encoding: str | None) -> str:
    """The codec for an ``--encoding`` value; :class:`TextEvaluationError` for one that is not supported."""
    if encoding is None:
        return "utf-8"
    codec = ENCODINGS.get(encoding.strip().lower().replace("_", "-"))
    if codec is None:
        raise TextEvaluationError(f"--encoding {encoding!r} is not supported; use utf-8 (default) or gb18030")
    return codec


def decode_line(raw: bytes, number: int, encoding: str) -> str | None:
    """One line as text (a UTF-8 byte-order mark on line 1 is dropped); None when it does not decode."""
    codec = "utf-8-sig" if encoding == "utf-8" and number == 1 else encoding
    try:
        return raw.decode(codec)
    except UnicodeDecodeError:
        return None


def _category(value: Any) -> tuple[str | None, str | None]:
    """``(code, None)`` for a category label (a code or its Chinese name), ``(None, None)`` for null/"none"/"",
    else ``(None, reason)``."""
    if value is None:
        return None, None
    if not isinstance(value, str):
        return None, "must be one of the 8 category codes or null"
    if value.strip().lower() in ("", NONE):
        return None, None
    code = _CATEGORY_ALIASES.get(value.strip().lower()) or _CATEGORY_ALIASES.get(value.strip())
    if code is None:
        return None, f"unknown category (expected one of {', '.join(CATEGORIES)} or null)"
    return code, None


def validate_line(
    number: int, text: str, seen_ids: dict[Any, int] | None = None
) -> tuple[dict[str, Any] | None, Skipped | None]:
    """``(record, None)`` for a usable labelled line, ``(None, Skipped)`` otherwise.

    The record keeps ``id``, ``narrative``, ``received_at`` (or None), ``source``
    (or None), ``is_dispute`` and ``category`` (a code, None when not a dispute).
    Labels must agree: a dispute needs a category, a non-dispute has none.
    ``seen_ids`` (id -> first line) catches a repeated id; it is updated in place.
    """
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, Skipped(number, None, f"not valid JSON ({exc.msg} at column {exc.colno})")
    if not isinstance(obj, dict):
        return None, Skipped(number, None, f"expected a JSON object, got {type(obj).__name__}")

    record_id = obj.get("id")
    if record_id is None:
        return None, Skipped(number, "id", "missing")
    if isinstance(record_id, bool) or not isinstance(record_id, str | int) or record_id == "":
        return None, Skipped(number, "id", "must be a non-empty string or an integer")

    narrative = obj.get("narrative")
    if narrative is None:
        return None, Skipped(number, "narrative", "missing")
    if not isinstance(narrative, str):
        return None, Skipped(number, "narrative", "must be a string")
    if not narrative.strip():
        return None, Skipped(number, "narrative", "empty")

    label = obj.get("is_dispute")
    if label is None:
        return None, Skipped(number, "is_dispute", "missing")
    if isinstance(label, bool):
        is_dispute = label
    elif isinstance(label, int) and label in (0, 1):
        is_dispute = bool(label)
    else:
        return None, Skipped(number, "is_dispute", "must be true or false")

    category, problem = _category(obj.get("category"))
    if problem is not None:
        return None, Skipped(number, "category", problem)
    if is_dispute and category is None:
        return None, Skipped(number, "category", "missing for a dispute (is_dispute is true)")
    if not is_dispute and category is not None:
        return None, Skipped(number, "category", "must be null when is_dispute is false")

    received_at = obj.get("received_at")
    if received_at is not None:
        if not isinstance(received_at, str):
            return None, Skipped(number, "received_at", "must be an ISO time string")
        try:
            when = pd.Timestamp(received_at)
        except (ValueError, TypeError, OverflowError):
            when = pd.NaT
        if pd.isna(when):
            return None, Skipped(number, "received_at", "not an ISO time")

    source = obj.get("source")
    if source is not None:
        if isinstance(source, bool) or not isinstance(source, str | int):
            return None, Skipped(number, "source", "must be a string")
        source = sys.intern(str(source).strip())  # one string per group, not one per line
        if not source or len(source) > MAX_SOURCE_LENGTH:
            return None, Skipped(number, "source", f"must be a short name (1 to {MAX_SOURCE_LENGTH} characters)")

    if seen_ids is not None:
        first = seen_ids.setdefault(record_id, number)
        if first != number:
            return None, Skipped(number, "id", f"repeats the id of line {first}")

    return {
        "id": record_id,
        "narrative": narrative,
        "received_at": received_at,
        "source": source,
        "is_dispute": is_dispute,
        "category": category,
    }, None


# --------------------------------------------------------------------------------------------------
# Scoring


def _empty_outcomes(with_model: bool) -> pd.DataFrame:
    columns = ["line", "source", "true_dispute", "true_category", "rules_dispute", "rules_category"]
    if with_model:
        columns += ["fused_dispute", "fused_category", "fused_source"]
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


def score_records(records: Sequence[dict[str, Any]], model: Any = None, lexicon_version: str = "") -> pd.DataFrame:
    """One outcome row per record: its labels and each engine's verdict (no text, no id).

    The verdicts are ``yujing classify``'s: the rules' answer, and with a ``model``
    (serving.dispute.BundleDisputeModel) the fused ``model+rules`` one.
    """
    from models.classify import classify_record, with_model

    answers = [classify_record(r, lexicon_version) for r in records]
    frame = pd.DataFrame(
        {
            "line": np.asarray([r["line"] for r in records], dtype=np.int64),
            "source": pd.Series([r["source"] for r in records], dtype=object),
            "true_dispute": np.asarray([r["is_dispute"] for r in records], dtype=bool),
            "true_category": pd.Series([r["category"] for r in records], dtype=object),
            "rules_dispute": np.asarray([a["is_dispute"] for a in answers], dtype=bool),
            "rules_category": pd.Series([a["category"] for a in answers], dtype=object),
        }
    )
    if model is not None:
        fused = with_model(answers, list(records), model) if records else []
        frame["fused_dispute"] = np.asarray([a["is_dispute"] for a in fused], dtype=bool)
        frame["fused_category"] = pd.Series([a["category"] for a in fused], dtype=object)
        frame["fused_source"] = pd.Series([a["source"] for a in fused], dtype=object)
    return frame


def evaluate_lines(
    lines: Iterable[bytes],
    model: Any = None,
    encoding: str = "utf-8",
    chunk: int = CHUNK,
    progress: Callable[[int], None] | None = None,
) -> Evaluation:
    """Validate and score raw lines (bytes, as read from a file), ``chunk`` records at a time.

    Blank lines are neither counted nor reported. ``progress(line_number)`` is
    called after each chunk with the number of the last line read. Narratives are
    dropped as soon as their chunk is scored.
    """
    from features.lexicon import default_lexicon

    version = default_lexicon().version
    evaluation = Evaluation(engines=(RULES, FUSED) if model is not None else (RULES,))
    parts: list[pd.DataFrame] = []
    pending: list[dict[str, Any]] = []
    seen: dict[Any, int] = {}
    bad_encoding = f"not valid {'UTF-8' if encoding == 'utf-8' else encoding.upper()}"

    number = 0

    def flush() -> None:
        parts.append(score_records(pending, model, version))
        pending.clear()
        if progress is not None:
            progress(number)

    for number, raw in enumerate(lines, start=1):
        text = decode_line(raw, number, encoding)
        if text is not None and not text.strip():
            continue
        evaluation.read += 1
        if text is None:
            evaluation.skipped.append(Skipped(number, None, bad_encoding))
            continue
        record, skipped = validate_line(number, text, seen)
        if skipped is not None:
            evaluation.skipped.append(skipped)
            continue
        pending.append(record | {"line": number})  # type: ignore[operator]
        if len(pending) >= chunk:
            flush()
    if pending:
        flush()
    if parts:
        evaluation.outcomes = pd.concat(parts, ignore_index=True)
    else:
        evaluation.outcomes = _empty_outcomes(model is not None)
    return evaluation


def check_usable(evaluation: Evaluation, name: str, encoding: str = "utf-8") -> None:
    """Raise :class:`TextEvaluationError` for an empty file or one with more than half of its lines unusable."""
    if evaluation.read == 0:
        raise TextEvaluationError(
            f"{name}: empty file (no lines to evaluate); fix: write one JSON object per line with "
            "id, narrative, is_dispute and category"
        )
    bad = len(evaluation.skipped)
    if 2 * bad <= evaluation.read:
        return
    reasons = Counter(_reason_key(s) for s in evaluation.skipped)
    common, _ = reasons.most_common(1)[0]
    undecodable = sum(1 for s in evaluation.skipped if s.field is None and s.reason.startswith("not valid UTF"))
    if 2 * undecodable > bad and encoding == "utf-8":
        fix = "the file does not look UTF-8: pass --encoding gb18030 if it is GB18030/GBK"
    elif common.startswith("not valid JSON") or common.startswith("expected a JSON object"):
        fix = "write one JSON object per line (JSON lines, not a JSON array or CSV)"
    else:
        fix = (
            "each line needs id, narrative, is_dispute (true/false) and category "
            f"({'/'.join(CATEGORIES)}, or null when not a dispute)"
        )
    raise TextEvaluationError(
        f"{name}: {bad:,} of {evaluation.read:,} lines cannot be evaluated (most often: {common}); fix: {fix}"
    )


def _reason_key(skipped: Skipped) -> str:
    """The reason of a skipped line without its line numbers (for counting)."""
    reason = "repeats an earlier id" if skipped.reason.startswith("repeats the id") else skipped.reason
    if reason.startswith("not valid JSON"):
        reason = "not valid JSON"
    return f"{skipped.field}: {reason}" if skipped.field else reason


# --------------------------------------------------------------------------------------------------
# Metrics


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def engine_metrics(outcomes: pd.DataFrame, engine: str) -> dict[str, Any]:
    """One engine's numbers on some outcome rows.

    ``precision``, ``recall``, ``f1`` and ``category_accuracy`` are
    :func:`models.evaluation.dispute_metrics`', set to None where they are
    undefined (no predicted disputes, or no true ones) rather than 0; added
    are the counts, the false-positive rate, per-category numbers and the
    confusion table (rows: true category, columns: predicted; ``none`` = not a dispute).
    """
    prefix = _PREFIX[engine]
    y = outcomes["true_dispute"].to_numpy(dtype=bool)
    p = outcomes[f"{prefix}_dispute"].to_numpy(dtype=bool)
    truth = outcomes["true_category"].to_numpy(dtype=object)
    pred = outcomes[f"{prefix}_category"].to_numpy(dtype=object)
    base = dispute_metrics(y, p, truth, pred)
    tp, fp = int((y & p).sum()), int((~y & p).sum())
    fn, tn = int((y & ~p).sum()), int((~y & ~p).sum())
    confusion = confusion_table(truth, pred).reindex(index=list(LABELS), columns=list(LABELS), fill_value=0)
    precision = base["precision"] if tp + fp else None
    recall = base["recall"] if tp + fn else None
    per_category = {}
    for code in CATEGORIES:
        rows = truth == code
        given = int(confusion[code].sum())
        if rows.any():
            sub = dispute_metrics(y[rows], p[rows], truth[rows], pred[rows])
            found, right = sub["recall"], sub["category_accuracy"]
        else:
            found = right = None
        per_category[code] = {
            "n": int(rows.sum()),
            "found": found,
            "right": right,
            "precision": _ratio(int(confusion.at[code, code]), given),
            "predicted": given,
        }
    return {
        "precision": precision,
        "recall": recall,
        "f1": base["f1"] if precision is not None and recall is not None else None,
        "false_positive_rate": _ratio(fp, fp + tn),
        "category_accuracy": base["category_accuracy"] if tp + fn else None,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "per_category": per_category,
        "confusion": {t: {c: int(confusion.at[t, c]) for c in LABELS} for t in LABELS},
    }


def group_report(outcomes: pd.DataFrame, engines: Sequence[str]) -> dict[str, Any]:
    """Counts and every engine's :func:`engine_metrics` on one group of calls."""
    out: dict[str, Any] = {
        "n": len(outcomes),
        "n_disputes": int(outcomes["true_dispute"].sum()),
        "engines": {engine: engine_metrics(outcomes, engine) for engine in engines},
    }
    if FUSED in engines:
        # which side answered (models.dispute.fuse's ``source``: e.g. model, rules, both)
        answered = outcomes["fused_source"].value_counts()
        out["fused_answered_by"] = {str(k): int(answered[k]) for k in sorted(answered.index, key=str)}
    return out


def build_report(evaluation: Evaluation, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole report as a JSON-able dict: ``meta`` (input, engine, bundle...), counts, skipped lines, numbers.

    ``groups`` has one :func:`group_report` per ``source`` value when any line
    has one (lines without it are ``unspecified``), unless there are more than
    :data:`MAX_GROUPS` values (then ``groups_note`` says so).
    """
    outcomes = evaluation.outcomes
    report: dict[str, Any] = dict(meta or {})
    report["engines"] = list(evaluation.engines)
    report["counts"] = {"read": evaluation.read, "evaluated": evaluation.evaluated, "skipped": len(evaluation.skipped)}
    report["skipped_by_reason"] = dict(Counter(_reason_key(s) for s in evaluation.skipped).most_common())
    report["skipped"] = [s.to_dict() for s in evaluation.skipped]
    report["overall"] = group_report(outcomes, evaluation.engines)
    report["groups"] = {}
    sources = outcomes["source"]
    if sources.notna().any():
        names = sources.fillna(UNSPECIFIED)
        values = sorted(names.unique(), key=str)
        if len(values) > MAX_GROUPS:
            report["groups_note"] = f"source has {len(values)} values (more than {MAX_GROUPS}): not grouped"
        else:
            for value in values:
                report["groups"][str(value)] = group_report(outcomes[names == value], evaluation.engines)
    report["notes"] = list(METRIC_NOTES)
    return report


# --------------------------------------------------------------------------------------------------
# Rendering

_METRICS = (
    ("precision", "precision"),
    ("recall", "recall"),
    ("f1", "F1"),
    ("false_positive_rate", "false-positive rate"),
    ("category_accuracy", "category accuracy"),
)
_SKIPPED_SHOWN = 20


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _table(
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    markdown: bool,
    spans: Sequence[tuple[str, int]] = (),
) -> list[str]:
    """A table: Markdown pipes, or aligned text (first column left, the rest right).

    ``spans`` (text only) puts a first header line of labels over runs of columns,
    e.g. ``[("", 2), ("rules", 3)]``: a blank over the first two, "rules" over the next three.
    """
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    if markdown:
        lines = ["| " + " | ".join(cells[0]) + " |", "|" + "|".join(["---", *["---:"] * (len(header) - 1)]) + "|"]
        return lines + ["| " + " | ".join(r) + " |" for r in cells[1:]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)).rstrip() for r in cells
    ]
    if spans:
        parts, start = [], 0
        for label, n in spans:
            width = sum(widths[start : start + n]) + 2 * (n - 1)
            parts.append(f" {label} ".center(width, "-") if label else " " * width)
            start += n
        lines.insert(0, "  ".join(parts).rstrip())
    return lines


def _group_lines(title: str, group: dict[str, Any], engines: Sequence[str], markdown: bool) -> list[str]:
    heading = f"{title}: {group['n']:,} calls, {group['n_disputes']:,} true disputes"
    out = [f"## {heading}" if markdown else heading, ""]
    metrics = group["engines"]
    rows = [[label, *(_num(metrics[e][key]) for e in engines)] for key, label in _METRICS]
    rows.append(["TP / FP / FN / TN", *("{tp}/{fp}/{fn}/{tn}".format(**metrics[e]) for e in engines)])
    out += _table(["metric", *engines], rows, markdown)
    if "fused_answered_by" in group:
        by = ", ".join(f"{k} {v:,}" for k, v in group["fused_answered_by"].items()) or "—"
        out += ["", f"model+rules, calls by the side that answered (fuse's source): {by}"]
    out += ["", "### Per category (true category)" if markdown else "per category (true category):", ""]
    header, spans = ["category", "n"], [("", 2)]
    for e in engines:
        header += ["found", "right", "precision"] if not markdown else [f"{e} found", f"{e} right", f"{e} precision"]
        spans.append((e, 3))
    rows = []
    for code in CATEGORIES:
        row: list[Any] = [code, metrics[engines[0]]["per_category"][code]["n"]]
        for e in engines:
            cat = metrics[e]["per_category"][code]
            row += [_num(cat["found"]), _num(cat["right"]), _num(cat["precision"])]
        rows.append(row)
    out += _table(header, rows, markdown, spans)
    for e in engines:
        caption = f"confusion, {e} (rows: true category, columns: predicted; none = not a dispute)"
        out += ["", f"### Confusion: {e}" if markdown else f"{caption}:", ""]
        if markdown:
            out += ["Rows: true category; columns: predicted; `none` = not a dispute.", ""]
        confusion = metrics[e]["confusion"]
        rows = [[t, *(confusion[t][c] for c in LABELS)] for t in LABELS]
        out += _table(["true \\ predicted", *LABELS], rows, markdown)
    return [*out, ""]


def _header_lines(report: dict[str, Any], markdown: bool) -> list[str]:
    counts = report["counts"]
    engines = report["engines"]
    out = [
        f"# Evaluation of {report.get('input', 'the input')}" if markdown else f"evaluation of {report.get('input')}",
        "",
        f"read {counts['read']:,} lines: {counts['evaluated']:,} evaluated, {counts['skipped']:,} skipped",
        f"engines: {', '.join(engines)}; lexicon {report.get('lexicon_version', '?')}",
    ]
    bundle = report.get("bundle")
    if bundle:
        out.append(
            f"bundle: {bundle.get('path')} (model data {bundle.get('data_fingerprint') or '?'}, "
            f"code {bundle.get('code_version') or '?'}, trained with lexicon {bundle.get('lexicon_version') or '?'})"
        )
    if bundle and bundle.get("lexicon_version") not in (None, report.get("lexicon_version")):
        out.append(
            f"note: the model was trained with lexicon {bundle['lexicon_version']}, "
            f"the rules now use {report.get('lexicon_version')}"
        )
    if report.get("engine_note"):
        out.append(f"note: {report['engine_note']}")
    if markdown:
        out = out[:2] + [f"- {line}" for line in out[2:]]
    return [*out, ""]


def _skipped_lines(report: dict[str, Any], markdown: bool) -> list[str]:
    skipped = report["skipped"]
    if not skipped:
        return []
    out = ["## Skipped lines" if markdown else "skipped lines:", ""]
    bullet = "- " if markdown else "  "
    out += [f"{bullet}{n:,} × {reason}" for reason, n in report["skipped_by_reason"].items()]
    out.append("")
    shown = skipped if markdown else skipped[:_SKIPPED_SHOWN]
    out += [f"{bullet}{Skipped(**s).describe()}" for s in shown]
    if len(skipped) > len(shown):
        out.append(f"{bullet}... and {len(skipped) - len(shown):,} more (all of them in --output / --markdown)")
    return [*out, ""]


def render(report: dict[str, Any], markdown: bool = False) -> str:
    """The report as readable text (``markdown=False``) or as Markdown."""
    engines = report["engines"]
    lines = _header_lines(report, markdown)
    lines += _group_lines("All calls", report["overall"], engines, markdown)
    for name, group in report["groups"].items():
        lines += _group_lines(f"source = {name}", group, engines, markdown)
    if report.get("groups_note"):
        lines += [f"note: {report['groups_note']}", ""]
    lines += _skipped_lines(report, markdown)
    lines += ["## Definitions" if markdown else "definitions:", ""]
    lines += [f"- {note}" if markdown else f"  {note}" for note in report.get("notes", [])]
    return "\n".join(lines).rstrip() + "\n"


def render_text(report: dict[str, Any]) -> str:
    """The report as aligned plain text (what the command prints)."""
    return render(report, markdown=False)


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown (``--markdown``)."""
    return render(report, markdown=True)
