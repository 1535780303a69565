"""Find personal values (ID numbers, phones, names) in everything a run wrote.

A plain ``grep`` misses most of what a run writes: Parquet pages are
compressed, SQLite keeps text in pages, an ``.xlsx`` is a zip. So each file
is opened the way its kind stores text, and every string in it is searched
for the known values with one Aho-Corasick automaton. Used by
tests/test_pii_scan.py; kept apart so the fault tests can scan their own
folders with the same eyes.
"""

from __future__ import annotations

import sqlite3
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import ahocorasick
import pandas as pd
import pyarrow.parquet as pq

MASK_CHARS = set("*＊×X")


@dataclass(frozen=True)
class Finding:
    """A personal value found in a file: which kind of value, and where (never the value itself)."""

    file: Path
    kind: str
    where: str

    def __str__(self) -> str:
        return f"{self.file} [{self.where}]: a full {self.kind}"


def personal_values(city: Path, min_name_chars: int = 2) -> dict[str, str]:
    """Every full ID number, phone and name of a city's persons and callers, as {value: kind}.

    Masked caller values (``131****7181``) are not personal values in full and
    are left out. Names that are also part of a place name of the city
    (``和平`` in ``和平社区``) are left out: finding them says nothing.
    """
    persons = pd.read_parquet(city / "persons.parquet", columns=["id_number", "name", "phone"])
    incidents = pd.read_parquet(city / "incidents.parquet", columns=["caller_name", "caller_phone", "caller_id_number"])
    places = " ".join(_place_names(city))
    values: dict[str, str] = {}
    for kind, series in (
        ("ID number", pd.concat([persons["id_number"], incidents["caller_id_number"]])),
        ("phone", pd.concat([persons["phone"], incidents["caller_phone"]])),
        ("name", pd.concat([persons["name"], incidents["caller_name"]])),
    ):
        for value in series.dropna().astype(str).unique():
            if MASK_CHARS & set(value) or len(value) < (min_name_chars if kind == "name" else 7):
                continue
            if kind == "name" and (value in places or value.endswith(("先生", "女士", "大爷", "阿姨"))):
                continue
            values[value] = kind
    return values


def _place_names(city: Path) -> Iterator[str]:
    addresses = pd.read_parquet(city / "addresses.parquet")
    for column in addresses.columns:
        if not pd.api.types.is_numeric_dtype(addresses[column]):
            yield from addresses[column].dropna().astype(str).unique()


def _automaton(values: dict[str, str]) -> ahocorasick.Automaton:
    automaton = ahocorasick.Automaton()
    for value, kind in values.items():
        automaton.add_word(value, (value, kind))
    automaton.make_automaton()
    return automaton


def _texts(path: Path) -> Iterator[tuple[str, str]]:
    """(where, text) pairs of every string a file holds, read the way its kind stores them."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        table = pq.read_table(path)
        for name in table.column_names:
            column = table.column(name)
            yield f"column {name}", "\n".join(str(v) for v in column.to_pylist() if v is not None)
        return
    head = path.read_bytes()[:16]
    if head.startswith(b"SQLite format 3"):
        yield from _sqlite_texts(path)
        return
    if head.startswith(b"PK\x03\x04"):
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                yield f"member {member}", archive.read(member).decode("utf-8", errors="replace")
        return
    yield "bytes", path.read_bytes().decode("utf-8", errors="replace")


def _sqlite_texts(path: Path) -> Iterator[tuple[str, str]]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            rows = connection.execute(f'SELECT * FROM "{table}"').fetchall()
            yield f"table {table}", "\n".join(str(v) for row in rows for v in row if v is not None)
    finally:
        connection.close()


def scan(roots: Iterable[Path], values: dict[str, str], skip: Iterable[Path] = ()) -> list[Finding]:
    """Every file under ``roots`` (or a root that is a file; but ``skip``) searched for ``values``.

    One finding per file, kind and place. ``skip`` is for the folders that hold
    personal data by design: the input export and its quarantine.
    """
    automaton = _automaton(values)
    skipped = [Path(s).resolve() for s in skip]
    findings: set[Finding] = set()
    for root in roots:
        paths = [Path(root)] if Path(root).is_file() else sorted(Path(root).rglob("*"))
        for path in paths:
            if not path.is_file() or any(path.resolve().is_relative_to(s) for s in skipped):
                continue
            for where, text in _texts(path):
                for _end, (_value, kind) in automaton.iter(text):
                    findings.add(Finding(path, kind, where))
    return sorted(findings, key=str)


def scan_texts(texts: Iterable[str], values: dict[str, str]) -> list[str]:
    """The kinds of personal value found in some texts (responses, terminal output)."""
    automaton = _automaton(values)
    return sorted({kind for text in texts for _end, (_value, kind) in automaton.iter(text)})
