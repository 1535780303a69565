"""The ``yujing classify`` and ``yujing warn`` contracts: order, ids, error lines, no echo."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from features.lexicon import CATEGORIES, default_lexicon
from pipelines import batch
from pipelines.cli import app


def _fake_id() -> str:
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    body = "15052119880702" + "135"
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]


PHONE = "13912345678"


def _lines() -> list[bytes]:
    header = f"2024年4月11日 21时26分17秒 张女士( {PHONE}，{_fake_id()} ) 报警：科尔沁区某小区4号楼1单元302室，"
    records = [
        {"id": "a1", "narrative": header + "称被丈夫殴打，头部受伤，不需要120。"},
        {"id": 2, "narrative": "称钱包在公交车上丢了", "received_at": "2024-04-11T10:00:00"},
        {
            "id": "a3",
            "narrative": "2024年4月12日 09时01分00秒 匿名 报警：奈曼旗某嘎查，称与邻居因草场边界发生纠纷，未动手",
        },
        {"id": "a4", "narrative": "称对方欠钱不还，扬言要报复"},
    ]
    lines = [json.dumps(r, ensure_ascii=False).encode() for r in records]
    lines.insert(2, b'{"id": "broken", "narrative": "\xe7\xa7\xb0 unterminated')  # bad JSON, id salvageable
    lines.insert(3, b"\xff\xfe not utf-8")
    lines.insert(4, b'{"narrative": "no id here"}')
    lines.insert(5, b'["an", "array"]')
    lines.insert(6, b'{"id": "n", "narrative": 42}')
    return lines


def _classify(lines: list[bytes]) -> list[dict]:
    sink = io.StringIO()
    stats = batch.classify_stream(io.BytesIO(b"\n".join(lines) + b"\n"), sink)
    out = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert stats.read == len(lines) == len(out) == stats.written
    return out


def test_classify_keeps_order_ids_and_turns_bad_lines_into_error_lines() -> None:
    out = _classify(_lines())
    assert [o.get("id") for o in out] == ["a1", 2, "broken", None, None, None, "n", "a3", "a4"]
    errors = {o.get("line"): o["error"] for o in out if "error" in o}
    assert set(errors) == {3, 4, 5, 6, 7}
    assert errors[3].startswith("not valid JSON")
    assert errors[4] == "line is not valid UTF-8"
    assert errors[5] == "missing field 'id'"
    assert errors[6] == "expected a JSON object, got list"
    assert errors[7] == "field 'narrative' must be a string"


def test_classify_fields_follow_the_contract() -> None:
    out = {o["id"]: o for o in _classify(_lines()) if "error" not in o}
    version = default_lexicon().version
    for answer in out.values():
        assert answer["engine"] == "rules" and answer["lexicon_version"] == version
        assert 0.0 <= answer["dispute_score"] <= 1.0
        assert set(answer["category_scores"]) == set(CATEGORIES)
        assert answer["category"] in (*CATEGORIES, None)
        assert isinstance(answer["is_dispute"], bool) and isinstance(answer["matched_terms"], list)
    assert out["a1"]["is_dispute"] and out["a1"]["category"] == "family"
    assert {"violence", "injury"} <= set(out["a1"]["cues"])
    assert not out[2]["is_dispute"] and out[2]["category"] is None
    assert out["a3"]["category"] == "land" and "violence" not in out["a3"]["cues"]
    assert out["a4"]["category"] == "debt" and "threat" in out["a4"]["cues"]
    # matched terms come from the content, never from the header or the address
    assert all(t["term"] != "小区" for t in out["a1"]["matched_terms"])


def test_classify_echoes_no_personal_data() -> None:
    text = "\n".join(json.dumps(o, ensure_ascii=False) for o in _classify(_lines()))
    assert PHONE not in text and _fake_id() not in text and "张女士" not in text


def test_classify_streams_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch, "CHUNK", 100)
    writes: list[int] = []

    class Sink(io.StringIO):
        def write(self, s: str) -> int:
            writes.append(s.count("\n"))
            return super().write(s)

    lines = [json.dumps({"id": i, "narrative": "称与邻居吵架"}).encode() for i in range(1_050)]
    stats = batch.classify_stream(io.BytesIO(b"\n".join(lines)), Sink())
    assert stats.written == 1_050 and writes == [100] * 10 + [50]


def test_cli_classify_writes_atomically(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(_lines()) + b"\n")
    target = tmp_path / "out" / "out.jsonl"
    result = CliRunner().invoke(app, ["classify", "--input", str(source), "--output", str(target)])
    assert result.exit_code == 0, result.output
    assert len(target.read_text(encoding="utf-8").splitlines()) == len(_lines())
    assert not list(target.parent.glob("*.part"))
    missing = CliRunner().invoke(app, ["classify", "--input", str(tmp_path / "nope"), "--output", str(target)])
    assert missing.exit_code == 2


def _warn_lines() -> list[bytes]:
    rows = [
        ("2024-01-05T21:10:00", "称与丈夫发生争吵，丈夫动手打了她"),
        ("2024-01-21T22:40:00", "称被老公殴打，脸上有伤"),
        ("2024-02-11T20:05:00", "反映丈夫酒后又动手打人"),
        ("2024-02-27T23:15:00", "称丈夫推搡她，把她推倒在地"),
        ("2024-03-12T21:30:00", "称又被丈夫打了"),
        ("2024-03-28T22:00:00", "称与丈夫打架，丈夫扇她耳光"),
    ]
    lines = [{"id": f"r{i}", "narrative": n, "received_at": t, "household_id": "H1"} for i, (t, n) in enumerate(rows)]
    lines.append({"id": "q1", "narrative": "称邻居家漏水", "received_at": "2024-03-01T10:00:00", "household_id": "H2"})
    lines.append(
        {"id": "late", "narrative": "称被丈夫殴打", "received_at": "2024-04-30T10:00:00", "household_id": "H3"}
    )
    out = [json.dumps(r, ensure_ascii=False).encode() for r in lines]
    out.append(b'{"id": "t", "narrative": "x", "received_at": "yesterday", "household_id": "H4"}')
    out.append(b'{"id": "k", "narrative": "x", "received_at": "2024-03-01T10:00:00"}')
    out.append(b'{"id": "m", "narrative": "x", "received_at": "2024-03-01T10:00:00", "party_key": "A|B"}')
    return out


def test_warn_contract(tmp_path: Path) -> None:
    source = tmp_path / "calls.jsonl"
    source.write_bytes(b"\n".join(_warn_lines()))
    target = tmp_path / "warnings.jsonl"
    result = CliRunner().invoke(app, ["warn", "--input", str(source), "--as-of", "2024-03-28", "--output", str(target)])
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    warnings = {o["household_id"]: o for o in out if "household_id" in o}
    errors = {o["id"]: o["error"] for o in out if "error" in o}
    assert set(warnings) == {"H1", "H2", "H3"}
    assert warnings["H1"]["level"] == "red" and warnings["H1"]["scenarios"]["family"]["level"] == "red"
    assert warnings["H3"]["points"] == 0 and warnings["H3"]["level"] is None  # its only call is after as-of
    for w in warnings.values():
        assert set(w) >= {"household_id", "scenario", "points", "level", "reasons", "lexicon_version"}
    assert errors == {
        "t": "received_at is not an ISO time",
        "k": "needs 'household_id' or 'party_key'",
        "m": "mixes 'party_key' with 'household_id'; use one kind of key per file",
    }


def test_warn_rejects_a_bad_date(tmp_path: Path) -> None:
    source = tmp_path / "calls.jsonl"
    source.write_bytes(b"\n".join(_warn_lines()))
    result = CliRunner().invoke(app, ["warn", "--input", str(source), "--as-of", "soon", "--output", "-"])
    assert result.exit_code == 2
