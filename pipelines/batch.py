"""JSON-lines batch commands: ``yujing classify`` and ``yujing warn``.

Both are contracts other tools rely on (docs/batch.md): one output line per
input line (classify) or per household/party (warn), malformed input turned
into an output line with an ``error`` field instead of a crash, and nothing
of the input text echoed back (errors say what is wrong, never the content).
classify streams in fixed-size chunks so memory stays flat however large the
file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pandas as pd

from features.lexicon import default_lexicon
from models.classify import classify_record, with_model
from models.rules import score_text
from models.warning import CUE_GROUPS, load_scenarios, score_warnings

CHUNK = 2_000
_ID = re.compile(r'"id"\s*:\s*("(?:[^"\\]|\\.)*"|-?\d+)')


@dataclass
class BatchStats:
    """What a batch command read and wrote."""

    read: int = 0
    written: int = 0
    errors: int = 0


def _salvage_id(line: str) -> Any:
    """The id of a line that is not valid JSON, when it can still be read."""
    found = _ID.search(line)
    if not found:
        return None
    try:
        return json.loads(found.group(1))
    except json.JSONDecodeError:
        return None


def parse_line(line: str, required: tuple[str, ...]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``(record, None)`` for a usable line, ``(None, error line)`` otherwise."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, {"id": _salvage_id(line), "error": f"not valid JSON ({exc.msg} at column {exc.colno})"}
    if not isinstance(record, dict):
        return None, {"id": None, "error": f"expected a JSON object, got {type(record).__name__}"}
    missing = [f for f in required if f not in record or record[f] is None]
    if missing:
        return None, {"id": record.get("id"), "error": f"missing field {missing[0]!r}"}
    if "narrative" in required and not isinstance(record["narrative"], str):
        return None, {"id": record.get("id"), "error": "field 'narrative' must be a string"}
    return record, None


def _lines(handle: IO[bytes]) -> Iterator[tuple[int, str | None]]:
    """Numbered lines, decoded as UTF-8 (None for a line that is not UTF-8)."""
    for number, raw in enumerate(handle, start=1):
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            yield number, None
            continue
        if text.strip():
            yield number, text


def classify_stream(source: IO[bytes], sink: IO[str], model: Any = None) -> BatchStats:
    """Classify every line of ``source`` into ``sink``, in order, chunk by chunk.

    With a ``model`` (serving.dispute.BundleDisputeModel) the answer is
    ``model+rules``; without one, the rules answer alone.
    """
    stats = BatchStats()
    version = default_lexicon().version
    pending: list[tuple[dict[str, Any] | None, dict[str, Any]]] = []

    def flush() -> None:
        good = [(i, rec) for i, (rec, _) in enumerate(pending) if rec is not None]
        answers = [out for _, out in pending]
        if model is not None and good:
            fused = with_model([answers[i] for i, _ in good], [rec for _, rec in good], model)
            for (i, _), answer in zip(good, fused, strict=True):
                answers[i] = answer
        sink.write("\n".join(json.dumps(a, ensure_ascii=False) for a in answers) + "\n")
        stats.written += len(answers)
        pending.clear()

    for number, text in _lines(source):
        stats.read += 1
        if text is None:
            pending.append((None, {"id": None, "line": number, "error": "line is not valid UTF-8"}))
        else:
            record, error = parse_line(text, ("id", "narrative"))
            if error is not None:
                pending.append((None, error | {"line": number}))
            else:
                pending.append((record, classify_record(record, version)))  # type: ignore[arg-type]
        stats.errors += "error" in pending[-1][1]
        if len(pending) >= CHUNK:
            flush()
    if pending:
        flush()
    return stats


def warn_frame(records: Iterable[dict[str, Any]], as_of: str, key: str) -> pd.DataFrame:
    """Rule-score each call and grade every household or party with the scoring warning models."""
    rows = []
    for record in records:
        result = score_text(record["narrative"])
        row = {
            key: record[key],
            "received_at": record["received_at"],
            "is_dispute": result.is_dispute,
            "category": result.category,
            "n_deescalation": sum(
                1 for t in result.matched_terms if t["kind"] == "negation" and t["group"] == "deescalation"
            ),
        }
        row.update({f"cue_{g}": int(g in result.cues) for g in CUE_GROUPS})
        rows.append(row)
    columns = [
        key,
        "received_at",
        "is_dispute",
        "category",
        "n_deescalation",
        *(f"cue_{g}" for g in CUE_GROUPS),
    ]
    frame = pd.DataFrame(rows, columns=columns)
    return score_warnings(frame, as_of, key=key, scenarios=load_scenarios())


def warn_stream(source: IO[bytes], sink: IO[str], as_of: str) -> BatchStats:
    """Read call histories, write one warning line per household/party, then one line per bad input."""
    stats = BatchStats()
    good: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    key: str | None = None
    for number, text in _lines(source):
        stats.read += 1
        if text is None:
            errors.append({"id": None, "line": number, "error": "line is not valid UTF-8"})
            continue
        record, error = parse_line(text, ("id", "narrative", "received_at"))
        if record is not None:
            line_key = "household_id" if record.get("household_id") is not None else "party_key"
            if record.get(line_key) is None:
                error = {"id": record["id"], "error": "needs 'household_id' or 'party_key'"}
            elif key is not None and line_key != key:
                error = {
                    "id": record["id"],
                    "error": f"mixes {line_key!r} with {key!r}; use one kind of key per file",
                }
            else:
                try:
                    record["received_at"] = pd.Timestamp(record["received_at"])
                except (ValueError, TypeError):
                    error = {"id": record["id"], "error": "received_at is not an ISO time"}
                else:
                    if pd.isna(record["received_at"]):
                        error = {"id": record["id"], "error": "received_at is not an ISO time"}
                    else:
                        key = line_key
        if error is not None:
            errors.append({**error, "line": number})
        else:
            good.append(record)  # type: ignore[arg-type]
    key = key or "household_id"
    version = default_lexicon().version
    if good:
        warnings = warn_frame(good, as_of, key)
        for row in warnings.itertuples(index=False):
            out = {
                key: getattr(row, key),
                "scenario": row.scenario,
                "points": float(row.points),
                "level": row.level,
                "reasons": list(row.reasons),
                "scenarios": row.scenarios,
                "as_of": as_of,
                "lexicon_version": version,
            }
            sink.write(json.dumps(out, ensure_ascii=False) + "\n")
            stats.written += 1
    for error in errors:
        sink.write(json.dumps(error, ensure_ascii=False) + "\n")
    stats.errors = len(errors)
    stats.written += len(errors)
    return stats


def open_output(path: Path) -> IO[str]:
    """Write to a temporary sibling; the caller renames it on success (no half-written output)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(path.name + ".part").open("w", encoding="utf-8")
