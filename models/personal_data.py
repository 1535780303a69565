"""The personal-data guard: nothing with an unmasked ID number or mobile number reaches the tracking store.

Every artifact, parameter and tag the registry logs passes through here first
(docs/registry.md#personal-data-guard). Kept apart from the registry because it
is a rule of its own, used by whatever writes to MLflow (the registry, the pyfunc
models, the champion history), and because it needs no MLflow at all.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class PersonalDataError(ValueError):
    """An artifact, parameter or tag holds an unmasked ID number or mobile number."""


#: Files read as text; everything else (ONNX, Parquet, PNG) is scanned as bytes for ASCII digits.
TEXT_SUFFIXES = frozenset(
    {".json", ".jsonl", ".md", ".html", ".htm", ".csv", ".tsv", ".txt", ".log", ".yaml", ".yml", ".toml", ".xml"}
)

# A match must be a whole number: not glued to digits or ASCII letters (hex digests, run ids)
# and not the fraction part of a decimal (0.13512349668 is a probability, not a phone).
# ASCII digits only: text is NFKC-normalised first, which turns full-width １３５ into 135.
_BEFORE = r"(?<![0-9A-Za-z.])"
_AFTER = r"(?![0-9A-Za-z])"
_RULES = (
    ("unmasked ID number", _BEFORE + r"[0-9]{17}[0-9Xx]" + _AFTER),
    ("unmasked mobile number", _BEFORE + r"(?:\+?86[ \-]?)?1[3-9][0-9](?:[ \-]?[0-9]{4}){2}" + _AFTER),
)
_TEXT_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple((kind, re.compile(p)) for kind, p in _RULES)
_BYTES_RULES: tuple[tuple[str, re.Pattern[bytes]], ...] = tuple((kind, re.compile(p.encode())) for kind, p in _RULES)
_MAX_LINES_REPORTED = 5


def _text_findings(text: str) -> dict[str, list[int]]:
    """Kind of personal data -> line numbers (1-based) where it occurs."""
    found: dict[str, list[int]] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = unicodedata.normalize("NFKC", raw)
        for kind, pattern in _TEXT_RULES:
            if pattern.search(line):
                found.setdefault(kind, []).append(number)
    return found


def _bytes_findings(data: bytes) -> dict[str, list[int]]:
    """Kind -> byte offsets, for files that are not text (an ONNX graph can embed strings)."""
    found: dict[str, list[int]] = {}
    for kind, pattern in _BYTES_RULES:
        offsets = [m.start() for m in pattern.finditer(data)]
        if offsets:
            found[kind] = offsets
    return found


def _describe(label: str, findings: dict[str, list[int]], unit: str) -> str:
    parts = []
    for kind, where in findings.items():
        shown = ", ".join(str(w) for w in where[:_MAX_LINES_REPORTED])
        more = f" and {len(where) - _MAX_LINES_REPORTED} more" if len(where) > _MAX_LINES_REPORTED else ""
        parts.append(f"{kind} at {unit} {shown}{more}")
    return f"{label}: " + "; ".join(parts)


def _decode(data: bytes) -> str:
    """UTF-8, else GB18030 (what Chinese exports use); digits are ASCII in both."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("gb18030", errors="replace")


def assert_no_personal_data(path: Path) -> None:
    """Raise :class:`PersonalDataError` if a file, or any file under a folder, holds unmasked personal data.

    Looks for 18-character ID numbers (``\\d{17}[\\dXx]``) and mobile numbers
    (``1[3-9]\\d{9}``, also with +86 or ``135 1234 5678`` separators). Masked forms
    (``135****9668``, ``1505**********2829``, ``<PHONE>``) pass, as do decimals and hex
    digests that merely contain such digit runs. Text files (:data:`TEXT_SUFFIXES`) are
    read as text and reported by line; other files are scanned as bytes, since ONNX
    graphs and Parquet files can embed strings. The message names files and lines,
    never the numbers themselves.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"artifact {path} does not exist")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    problems: list[str] = []
    for file in files:
        label = str(file.relative_to(path)) if path.is_dir() else file.name
        data = file.read_bytes()
        if file.suffix.lower() in TEXT_SUFFIXES:
            findings, unit = _text_findings(_decode(data)), "line"
        else:
            findings, unit = _bytes_findings(data), "byte offset"
        if findings:
            problems.append(_describe(label, findings, unit))
    if problems:
        raise PersonalDataError(
            f"refusing to log {path}: it holds unmasked personal data ({'; '.join(problems)}); "
            "mask it (features.text.mask) before it becomes an artifact"
        )


def assert_no_personal_values(kind: str, values: Mapping[str, Any]) -> None:
    """Parameters and tags are stored as text too: the same rules, naming the key."""
    bad = sorted(key for key, value in values.items() if _text_findings(f"{key}\n{value}"))
    if bad:
        raise PersonalDataError(
            f"refusing to log {kind} {', '.join(bad)}: unmasked ID or mobile number in key or value"
        )
