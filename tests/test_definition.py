"""docs/dispute-definition.md's worked examples are what the rules answer (the code follows the definition)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from models.rules import score_text

DOC = Path(__file__).resolve().parents[1] / "docs" / "dispute-definition.md"
_ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*(.+?)\s*\|\s*(\S+)\s*\|\s*(.+?)\s*\|$")


def worked_examples() -> list[tuple[int, str, str | None]]:
    """``(number, narrative, category or None)`` for every row of the worked-examples table."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Worked examples", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        m = _ROW.match(line.strip())
        if m:
            verdict = m.group(3)
            rows.append((int(m.group(1)), m.group(2), None if verdict == "—" else verdict))
    return rows


def test_the_definition_has_enough_worked_examples() -> None:
    rows = worked_examples()
    assert len(rows) >= 40
    assert [n for n, _, _ in rows] == list(range(1, len(rows) + 1))
    assert sum(c is None for _, _, c in rows) >= 15 and sum(c == "family" for _, _, c in rows) >= 10


@pytest.mark.parametrize(("number", "narrative", "category"), worked_examples())
def test_rules_follow_the_worked_example(number: int, narrative: str, category: str | None) -> None:
    r = score_text(narrative)
    assert r.category == category, (number, r.structure)
