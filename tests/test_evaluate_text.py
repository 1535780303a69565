"""``yujing evaluate-text``: numbers on a hand-coded file, consistency, bad lines, no content leaked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conf import get_settings
from features.schema import CATEGORIES
from models import text_evaluation as te
from models.rules import score_text
from pipelines.cli import app

SENTINEL = "XQZSENTINEL"
PHONE = "13912345678"
TAIL = f"。联系电话{PHONE}，{SENTINEL}"  # personal data and a marker in every narrative: neither may leak

# (narrative, is_dispute label, category label, source); the rules' verdict on each is unambiguous.
GOOD = [
    ("称被丈夫殴打，头部受伤", True, "family", "call"),  # 1 TP, right category
    ("称家中被盗，丢失现金2000元", False, None, "call"),  # 2 TN
    ("称对方欠钱不还，扬言要报复", True, "debt", "mediation"),  # 3 TP, right
    ("称与邻居因草场边界发生纠纷，未动手", True, "land", "mediation"),  # 4 TP, right
    ("称钱包在公交车上丢了", False, None, "call"),  # 5 TN
    ("称被老公殴打，脸上有伤", False, None, "call"),  # 6 FP (coded as no dispute)
    ("称电动车被盗", True, "property", "mediation"),  # 7 FN (coded as a dispute)
    ("称朋友借钱两万元至今不还", True, "family", "call"),  # 8 TP, wrong category (rules: debt)
]
RULES_VERDICT = ["family", None, "debt", "land", None, "family", None, "debt"]


def _good_lines() -> list[str]:
    return [
        json.dumps(
            {
                "id": f"c{i}",
                "narrative": text + TAIL,
                "is_dispute": label,
                "category": category,
                "source": source,
                "received_at": "2024-04-11T21:26:17",
            },
            ensure_ascii=False,
        )
        for i, (text, label, category, source) in enumerate(GOOD, start=1)
    ]


def _bad_lines() -> list[tuple[str, str | None]]:
    """Lines 9-15: each unusable for one reason, each carrying the sentinel; (line, field at fault)."""
    n = "称被打" + TAIL
    return [
        (json.dumps({"id": "b9", "narrative": n, "category": None}, ensure_ascii=False), "is_dispute"),
        (json.dumps({"id": "b10", "narrative": n, "is_dispute": True, "category": SENTINEL}), "category"),
        (f'{{"id": "b11", "narrative": "{n}", ', None),  # not valid JSON
        (json.dumps({"id": "b12", "narrative": n, "is_dispute": "yes", "category": None}), "is_dispute"),
        (json.dumps({"id": "b13", "narrative": n, "is_dispute": True, "category": None}), "category"),
        (json.dumps({"id": "c1", "narrative": n, "is_dispute": False, "category": None}), "id"),  # repeats line 1
        (json.dumps({"id": "b15", "narrative": n, "is_dispute": False, "received_at": SENTINEL}), "received_at"),
    ]


def _write(path: Path, lines: list[str], encoding: str = "utf-8") -> Path:
    path.write_bytes(("\n".join(lines) + "\n\n").encode(encoding))  # a trailing blank line is not counted
    return path


@pytest.fixture
def coded(tmp_path: Path) -> Path:
    """8 good lines then 7 bad ones (7 of 15: just under half)."""
    return _write(tmp_path / "coded.jsonl", _good_lines() + [line for line, _ in _bad_lines()])


@pytest.fixture
def no_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings under an empty home: no MLflow store, so no champion."""
    monkeypatch.setenv("YUJING_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["evaluate-text", *args])


def _report(tmp_path: Path, *args: str) -> tuple[dict, object]:
    out = tmp_path / "report.json"
    result = _run(*args, "--output", str(out))
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text(encoding="utf-8")), result


def assert_consistent(group: dict) -> None:
    """What every group's numbers must satisfy whatever the engine answered."""
    for metrics in group["engines"].values():
        confusion = metrics["confusion"]
        assert list(confusion) == list(te.LABELS) and all(list(row) == list(te.LABELS) for row in confusion.values())
        total = sum(sum(row.values()) for row in confusion.values())
        true_disputes = sum(sum(confusion[t].values()) for t in CATEGORIES)
        tp = sum(confusion[t][p] for t in CATEGORIES for p in CATEGORIES)
        fn = sum(confusion[t]["none"] for t in CATEGORIES)
        fp = sum(confusion["none"][p] for p in CATEGORIES)
        right = sum(confusion[c][c] for c in CATEGORIES)
        assert total == group["n"] == metrics["tp"] + metrics["fp"] + metrics["fn"] + metrics["tn"]
        assert true_disputes == group["n_disputes"]
        assert (tp, fp, fn, confusion["none"]["none"]) == (metrics["tp"], metrics["fp"], metrics["fn"], metrics["tn"])
        if tp + fp:
            assert metrics["precision"] == pytest.approx(tp / (tp + fp), abs=1e-4)
        if tp + fn:
            assert metrics["recall"] == pytest.approx(tp / (tp + fn), abs=1e-4)
            assert metrics["category_accuracy"] == pytest.approx(right / (tp + fn), abs=1e-4)
        if fp + metrics["tn"]:
            assert metrics["false_positive_rate"] == pytest.approx(fp / (fp + metrics["tn"]), abs=1e-4)
        for code, cat in metrics["per_category"].items():
            row = confusion[code]
            assert cat["n"] == sum(row.values())
            assert cat["predicted"] == sum(confusion[t][code] for t in te.LABELS)
            if cat["n"]:
                assert cat["found"] == pytest.approx(1 - row["none"] / cat["n"], abs=1e-4)
                assert cat["right"] == pytest.approx(row[code] / cat["n"], abs=1e-4)
            else:
                assert cat["found"] is None and cat["right"] is None


def test_the_rules_verdicts_the_numbers_below_rest_on() -> None:
    # If the rules are rewritten and one of these changes, fix GOOD, not the evaluation.
    verdicts = [score_text(text + TAIL) for text, *_ in GOOD]
    assert [v.category if v.is_dispute else None for v in verdicts] == RULES_VERDICT


def test_rules_numbers_by_hand(coded: Path, tmp_path: Path) -> None:
    report, _ = _report(tmp_path, "--input", str(coded), "--rules-only")
    assert report["counts"] == {"read": 15, "evaluated": 8, "skipped": 7}
    assert report["engines"] == ["rules"] and "--rules-only" in report["engine_note"]
    assert report["lexicon_version"] and report["bundle"] is None
    assert [(s["line"], s["field"]) for s in report["skipped"]] == [
        (9 + i, field) for i, (_, field) in enumerate(_bad_lines())
    ]
    assert report["skipped"][5]["reason"] == "repeats the id of line 1"

    rules = report["overall"]["engines"]["rules"]
    # 5 true disputes (1 3 4 7 8), 5 flagged (1 3 4 6 8): TP 4, FP 1 (6), FN 1 (7), TN 2 (2 5)
    assert (rules["tp"], rules["fp"], rules["fn"], rules["tn"]) == (4, 1, 1, 2)
    assert rules["precision"] == 0.8 and rules["recall"] == 0.8 and rules["f1"] == 0.8
    assert rules["false_positive_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert rules["category_accuracy"] == 0.6  # 1 3 4 right; 8 (debt for family) and 7 (missed) wrong
    confusion = rules["confusion"]
    nonzero = {(t, p): n for t, row in confusion.items() for p, n in row.items() if n}
    assert nonzero == {
        ("family", "family"): 1,
        ("family", "debt"): 1,
        ("debt", "debt"): 1,
        ("land", "land"): 1,
        ("property", "none"): 1,
        ("none", "family"): 1,
        ("none", "none"): 2,
    }
    per = rules["per_category"]
    assert per["family"] == {"n": 2, "found": 1.0, "right": 0.5, "precision": 0.5, "predicted": 2}
    assert per["debt"] == {"n": 1, "found": 1.0, "right": 1.0, "precision": 0.5, "predicted": 2}
    assert per["property"] == {"n": 1, "found": 0.0, "right": 0.0, "precision": None, "predicted": 0}
    assert per["labor"]["n"] == 0 and per["labor"]["found"] is None

    assert set(report["groups"]) == {"call", "mediation"}
    call = report["groups"]["call"]["engines"]["rules"]  # lines 1 2 5 6 8
    assert (call["tp"], call["fp"], call["fn"], call["tn"]) == (2, 1, 0, 2)
    assert call["recall"] == 1.0 and call["category_accuracy"] == 0.5
    mediation = report["groups"]["mediation"]["engines"]["rules"]  # lines 3 4 7: no true non-dispute
    assert (mediation["tp"], mediation["fp"], mediation["fn"], mediation["tn"]) == (2, 0, 1, 0)
    assert mediation["precision"] == 1.0 and mediation["false_positive_rate"] is None
    for group in [report["overall"], *report["groups"].values()]:
        assert_consistent(group)


def test_printed_report_json_and_markdown(coded: Path, tmp_path: Path) -> None:
    md = tmp_path / "report.md"
    report, result = _report(tmp_path, "--input", str(coded), "--rules-only", "--markdown", str(md))
    text = result.stdout
    assert "read 15 lines: 8 evaluated, 7 skipped" in text
    assert f"lexicon {report['lexicon_version']}" in text
    assert "All calls: 8 calls, 5 true disputes" in text and "source = mediation: 3 calls" in text
    assert "confusion, rules" in text and "line 14: id: repeats the id of line 1" in text
    assert "precision                0.800" in text or "0.800" in text.split("precision", 1)[1].splitlines()[0]
    markdown = md.read_text(encoding="utf-8")
    assert markdown.startswith("# Evaluation of ")
    assert "| metric | rules |" in markdown and "| precision | 0.800 |" in markdown
    assert "| true \\ predicted | " + " | ".join(te.LABELS) + " |" in markdown
    assert "| property | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 1 |" in markdown
    assert "- line 11: not valid JSON" in markdown
    assert not list(tmp_path.glob("*.part"))


def test_nothing_of_the_content_leaks(coded: Path, tmp_path: Path, no_registry: None) -> None:
    md = tmp_path / "report.md"
    report, result = _report(tmp_path, "--input", str(coded), "--markdown", str(md))
    outputs = [result.stdout, result.stderr, (tmp_path / "report.json").read_text(encoding="utf-8"), md.read_text()]
    for out in outputs:
        assert SENTINEL not in out and PHONE not in out
        assert "称" not in out and "殴打" not in out  # no narrative text at all
        assert "Traceback" not in out
    assert report["engines"] == ["rules"] and "no champion" in report["engine_note"]
    assert "warning: model+rules not evaluated" in result.stderr


def test_more_than_half_bad_exits_2_naming_the_file_and_the_fix(tmp_path: Path) -> None:
    bad = [line for line, _ in _bad_lines()]
    source = _write(tmp_path / "mostly_bad.jsonl", _good_lines() + bad + [bad[0]])  # 8 of 16: still fine
    assert _run("--input", str(source), "--rules-only").exit_code == 0
    source = _write(tmp_path / "mostly_bad.jsonl", _good_lines()[:4] + bad)  # 7 of 11
    result = _run("--input", str(source), "--rules-only")
    assert result.exit_code == 2 and result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0] == result.stderr.strip().splitlines()[-1]
    message = errors[0]
    assert str(source) in message and "fix:" in message
    assert "7 of 11 lines" in message and SENTINEL not in message and "Traceback" not in result.output


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_an_empty_file_exits_2(tmp_path: Path, content: bytes) -> None:
    source = tmp_path / "empty.jsonl"
    source.write_bytes(content)
    result = _run("--input", str(source), "--rules-only")
    assert result.exit_code == 2 and "empty file" in result.stderr and str(source) in result.stderr


def test_user_errors_exit_2_without_a_traceback(coded: Path, tmp_path: Path) -> None:
    for args in (
        ["--input", str(tmp_path / "nope.jsonl")],
        ["--input", str(coded), "--encoding", "latin-1"],
        ["--input", str(coded), "--bundle", str(tmp_path / "no-bundle")],
        ["--input", str(coded), "--bundle", str(tmp_path), "--rules-only"],
    ):
        result = _run(*args)
        assert result.exit_code == 2, args
        assert result.stderr.startswith("error: ") and "Traceback" not in result.output


def test_gb18030_input(tmp_path: Path) -> None:
    source = _write(tmp_path / "gb.jsonl", _good_lines(), encoding="gb18030")
    report, _ = _report(tmp_path, "--input", str(source), "--rules-only", "--encoding", "gb18030")
    assert report["counts"] == {"read": 8, "evaluated": 8, "skipped": 0} and report["encoding"] == "gb18030"
    assert report["overall"]["engines"]["rules"]["tp"] == 4
    result = _run("--input", str(source), "--rules-only")  # read as UTF-8: every line is undecodable
    assert result.exit_code == 2 and "--encoding gb18030" in result.stderr


def test_labels_accepted_and_refused() -> None:
    def check(**fields):  # type: ignore[no-untyped-def]
        return te.validate_line(1, json.dumps({"id": 1, "narrative": "x", **fields}, ensure_ascii=False))

    assert check(is_dispute=True, category="婚姻家庭")[0]["category"] == "family"  # Chinese name
    assert check(is_dispute=1, category=" Debt ")[0]["category"] == "debt"
    assert check(is_dispute=0, category="none")[0]["category"] is None
    assert check(is_dispute=False)[0]["source"] is None  # category may be left out for a non-dispute
    assert check(is_dispute=2, category=None)[1] == te.Skipped(1, "is_dispute", "must be true or false")
    assert check(is_dispute=False, category="debt")[1].field == "category"
    assert check(is_dispute=False, source="x" * 40)[1].field == "source"
    assert te.validate_line(1, json.dumps({"id": 1, "is_dispute": False}))[1] == te.Skipped(1, "narrative", "missing")
    assert te.validate_line(3, "[1, 2]")[1] == te.Skipped(3, None, "expected a JSON object, got list")


def test_chunks_give_the_same_numbers_and_report_progress(coded: Path) -> None:
    lines = coded.read_bytes().splitlines(keepends=True)
    seen: list[int] = []
    small = te.evaluate_lines(lines, chunk=3, progress=seen.append)
    whole = te.evaluate_lines(lines, chunk=1_000)
    assert small.outcomes.equals(whole.outcomes) and small.skipped == whole.skipped
    assert len(seen) == 3 and seen == sorted(seen)  # 8 good records in chunks of 3, 3, 2
    assert te.build_report(small)["overall"] == te.build_report(whole)["overall"]


def test_a_large_file_shows_progress_on_stderr(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": i, "narrative": GOOD[i % 2][0], "is_dispute": GOOD[i % 2][1], "category": GOOD[i % 2][2]})
        for i in range(6_000)
    ]
    report, result = _report(tmp_path, "--input", str(_write(tmp_path / "big.jsonl", lines)), "--rules-only")
    assert report["counts"]["evaluated"] == 6_000 and report["groups"] == {}
    assert "6,001 of 6,001 lines" in result.stderr  # the trailing blank line is a line of the file
    assert_consistent(report["overall"])


@pytest.mark.xdist_group("trained")
def test_rules_and_fused_side_by_side_with_a_bundle(coded: Path, tmp_path: Path, trained: dict) -> None:
    report, result = _report(tmp_path, "--input", str(coded), "--bundle", str(trained["bundle"]))
    rules_only, _ = _report(tmp_path, "--input", str(coded), "--rules-only")
    assert report["engines"] == ["rules", "model+rules"] and report["engine_note"] is None
    bundle = report["bundle"]
    assert bundle["path"] == str(trained["bundle"]) and bundle["data_fingerprint"] and bundle["lexicon_version"]
    assert report["overall"]["engines"]["rules"] == rules_only["overall"]["engines"]["rules"]
    for group in [report["overall"], *report["groups"].values()]:
        assert_consistent(group)
        assert sum(group["fused_answered_by"].values()) == group["n"]
    text = result.stdout
    assert "model+rules" in text.split("All calls", 1)[1].splitlines()[2]  # the metric table's header
    assert "confusion, model+rules" in text and str(trained["bundle"]) in text
    assert SENTINEL not in text and SENTINEL not in (tmp_path / "report.json").read_text(encoding="utf-8")


class _StubModel:
    """A dispute model by the BundleDisputeModel interface: 'dispute' on 殴打, OOD on 草场 (the rules answer)."""

    def __init__(self) -> None:
        self.provenance = {"data_fingerprint": "stub-data", "lexicon_version": "stub-lexicon", "code_version": "s"}

    def predict(self, narratives, received_at=None):  # type: ignore[no-untyped-def]
        import pandas as pd

        hit = ["殴打" in n for n in narratives]
        frame = pd.DataFrame(
            {
                "is_dispute": hit,
                "dispute_score": [0.9 if h else 0.1 for h in hit],
                "category": pd.Series(["family" if h else None for h in hit], dtype=object),
                "top_category": "family",
                "category_confidence": 1.0,
                "ood": ["草场" in n for n in narratives],
            }
        )
        for c in ("none", *CATEGORIES):
            frame[f"p_{c}"] = 0.0
        return frame


def test_fused_engine_beside_the_rules_with_a_stub_model(coded: Path) -> None:
    lines = coded.read_bytes().splitlines(keepends=True)
    evaluation = te.evaluate_lines(lines, _StubModel(), chunk=3)
    report = te.build_report(evaluation, {"input": "coded.jsonl", "bundle": {"path": "b", "lexicon_version": "x"}})
    assert report["engines"] == ["rules", "model+rules"]
    overall = report["overall"]
    # the fusion rule is being reworked: assert what holds whatever it decides
    assert sum(overall["fused_answered_by"].values()) == overall["n"] == 8
    assert overall["engines"]["model+rules"]["confusion"]["land"]["land"] == 1  # line 4 is OOD: the rules answer
    assert overall["engines"]["rules"]["tp"] == 4  # the rules' column is the rules' own answer
    for group in [overall, *report["groups"].values()]:
        assert_consistent(group)
    text = te.render_text(report)
    assert "confusion, model+rules" in text and "trained with lexicon x" in text and "note: the model was" in text
    assert "- model+rules -" in text  # the per-category header spans each engine's columns
