"""The run report: backtest tables, truth ceiling, levels, calibration and the promotion decision, from plain dicts.

The backtest dict is built by hand following the contract of
``pipelines.training.evaluate_escalation`` (``evaluation["backtest"]``), so the
report is tested on exactly the numbers it must show.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from models.report import write_report

METRICS = ["roc_auc", "pr_auc", "recall_at_k", "precision_at_k", "brier", "ece"]


def _side(recall: float, pr_auc: float) -> dict[str, float]:
    return {
        "roc_auc": 0.71,
        "pr_auc": pr_auc,
        "recall_at_k": recall,
        "precision_at_k": 0.017,
        "brier": 0.0049,
        "ece": 0.0012,
    }


def backtest(pooled_ci: tuple[float, float] = (0.012, 0.061)) -> dict:
    """Four folds and the pooled rows as the contract describes them."""
    folds = []
    for i, (recall_m, recall_r) in enumerate([(0.41, 0.37), (0.38, 0.36), (0.44, 0.39), (0.35, 0.34)], start=1):
        folds.append(
            {
                "fold": i,
                "train_to": f"2024-0{i}-01",
                "test_from": f"2024-0{i + 1}-01",
                "test_to": f"2024-0{i + 1}-28",
                "rows": 20_000 + i,
                "positives": 90 + i,
                "households": 5_000,
                "model": _side(recall_m, 0.031),
                "rules": _side(recall_r, 0.022),
                "model_minus_rules_ci": {"pr_auc": [0.001, 0.02], "recall_at_k": [-0.03, 0.09 + i / 100]},
            }
        )
    return {
        "k": 5,
        "metric_names": METRICS,
        "folds": folds,
        "pooled": {
            "rows": 80_010,
            "positives": 370,
            "model": _side(0.395, 0.03),
            "rules": _side(0.365, 0.021),
            "model_minus_rules_ci": {"pr_auc": [0.004, 0.015], "recall_at_k": list(pooled_ci)},
        },
        "ceiling": {"model": _side(0.52, 0.061), "note": "latent severity and alcohol are not on record"},
        "levels_observed": [
            {
                "level": "red",
                "snapshots": 40,
                "escalations": 9,
                "rate": 0.225,
                "raised_by": {"rules": 30, "model": 2, "both": 8},
            },
            {
                "level": "orange",
                "snapshots": 120,
                "escalations": 12,
                "rate": 0.1,
                "raised_by": {"rules": 50, "model": 40, "both": 30},
            },
            {
                "level": "none",
                "snapshots": 70_000,
                "escalations": 200,
                "rate": 0.0029,
                "raised_by": {"rules": 0, "model": 0, "both": 0},
            },
        ],
    }


def report_dict(with_backtest: bool = True) -> dict:
    """A report as ``register_and_report`` writes it, small."""
    single = {
        "model": {**_side(0.33, 0.025), "ci": {m: [0.0, 0.9] for m in METRICS}},
        "rules": {**_side(0.32, 0.013), "ci": {m: [0.0, 0.9] for m in METRICS}},
        "model_minus_rules_ci": {m: [-0.01, 0.02] for m in ["roc_auc", "pr_auc", "recall_at_k", "precision_at_k"]},
        "k": 5,
        "split": {
            "train_from": "2023-04-01",
            "tune_from": "2024-01-01",
            "test_from": "2024-06-01",
            "test_to": "2024-09-28",
        },
        "rows": {"train": 1000, "tune": 500, "test": 20_000},
        "positives": {"train": 10, "tune": 5, "test": 100},
        "calibration": {
            "ece": 0.00123,
            "bins": 10,
            "reliability": {
                "predicted": [0.001, 0.004, 0.03],
                "observed": [0.0012, 0.005, 0.025],
                "n": [15000, 4000, 1000],
            },
        },
        "curves": {
            "model": {
                "pr": {"precision": [1.0, 0.1, 0.005], "recall": [0.0, 0.5, 1.0]},
                "calibration": {"predicted": [0.001, 0.03], "observed": [0.001, 0.02], "n": [19000, 1000]},
            },
            "rules": {
                "pr": {"precision": [1.0, 0.05, 0.005], "recall": [0.0, 0.4, 1.0]},
                "calibration": {"predicted": [0.002, 0.02], "observed": [0.002, 0.03], "n": [19500, 500]},
            },
        },
    }
    if with_backtest:
        single["backtest"] = backtest()
    return {
        "escalation": single,
        "provenance": {"code_version": "abc", "data_fingerprint": "f00d", "lexicon_version": "1"},
        "verdict": "On recall_at_k, the model scores ...",
        "promoted": False,
        "promotion_reason": "the model's pooled recall@5 − rules interval [-0.020, +0.040] includes 0",
        "ranking_engine": "rules",
        "promotion": {
            "promote": False,
            "metric_label": "pooled recall@5",
            "sentence": "the scoring rules will rank: the model's pooled recall@5 − rules interval "
            "[-0.020, +0.040] includes 0",
        },
    }


def _table_rows(text: str, header_start: str) -> list[str]:
    """The data rows of the Markdown table whose header line starts with ``header_start``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def test_the_report_shows_folds_pooled_ceiling_levels_calibration_and_the_decision(tmp_path: Path) -> None:
    path = write_report(report_dict(), tmp_path)
    text = path.read_text(encoding="utf-8")
    # the decision comes first, in plain words
    assert text.index("## Which engine ranks") < text.index("## Rolling-origin backtest")
    assert (
        "**the scoring rules will rank: the model's pooled recall@5 − rules interval [-0.020, +0.040] includes 0**"
        in text
    )
    assert "ranking engine: **rules**" in text
    folds = _table_rows(text, "| fold |")
    assert len(folds) == 4
    assert folds[2].startswith(
        "| 3 | 2024-03-01 | 2024-04-01 to 2024-04-28 | 20,003 | 93 | 0.440 | 0.390 | [-0.0300, +0.1200]"
    )
    pooled = _table_rows(text, "| | roc_auc | pr_auc | recall_at_k")
    assert pooled[0].startswith("| model | 0.7100 | 0.0300 | 0.3950")
    assert pooled[2] == "| model − rules (paired 95 %) | – | [+0.0040, +0.0150] | [+0.0120, +0.0610] | – | – | – |"
    assert "| truth-aware model | 0.7100 | 0.0610 | 0.5200" in text
    assert "latent severity and alcohol are not on record" in text
    levels = _table_rows(text, "| level | snapshots")
    assert levels == [
        "| red | 40 | 9 | 22.50% | 30 | 2 | 8 |",
        "| orange | 120 | 12 | 10.00% | 50 | 40 | 30 |",
        "| none | 70,000 | 200 | 0.29% | 0 | 0 | 0 |",
    ]
    assert "Expected calibration error over the backtest's held-out periods: **0.0012**" in text
    assert _table_rows(text, "| bin | mean predicted")[2] == "| 3 | 0.0300 | 0.0250 | 1,000 |"
    assert (tmp_path / "calibration.png").stat().st_size > 5_000
    assert (tmp_path / "pr_curve.png").stat().st_size > 5_000


def test_an_old_run_without_backtest_still_renders_and_says_so(tmp_path: Path) -> None:
    report = report_dict(with_backtest=False)
    del report["escalation"]["calibration"]
    for key in ("promotion", "ranking_engine"):
        del report[key]
    text = write_report(report, tmp_path).read_text(encoding="utf-8")
    assert "has no rolling-origin backtest" in text
    assert "| fold |" not in text and "| level |" not in text
    # the reliability table falls back to the curves' bins
    assert _table_rows(text, "| bin | mean predicted") == [
        "| 1 | 0.0010 | 0.0010 | 19,000 |",
        "| 2 | 0.0300 | 0.0200 | 1,000 |",
    ]
    assert "Expected calibration error" not in text
    assert re.search(r"promoted: \*\*False\*\*", text)


def test_a_report_without_a_decision_has_no_promotion_section(tmp_path: Path) -> None:
    report = report_dict()
    for key in ("promoted", "promotion_reason", "promotion", "ranking_engine"):
        report.pop(key)
    text = write_report(report, tmp_path).read_text(encoding="utf-8")
    assert "## Which engine ranks" not in text and "## Rolling-origin backtest" in text


@pytest.mark.parametrize("bad_level_rate", [0.5])
def test_levels_table_prints_what_it_is_given(tmp_path: Path, bad_level_rate: float) -> None:
    """The report lays numbers out, it does not judge them: a rate that rises is shown as it is."""
    report = report_dict()
    report["escalation"]["backtest"]["levels_observed"][2]["rate"] = bad_level_rate
    text = write_report(report, tmp_path).read_text(encoding="utf-8")
    assert "| none | 70,000 | 200 | 50.00% |" in text


def test_train_prints_one_line_per_fold_and_the_pooled_line() -> None:
    from pipelines.cli import _fold_lines

    lines = _fold_lines({"k": 5, "backtest": backtest()})
    assert len(lines) == 5
    assert lines[0] == (
        "fold 1 (test 2024-02-01..2024-02-28): recall@5 model 0.410 vs rules 0.370 "
        "(model − rules [-0.030, +0.100], 91 escalations)"
    )
    assert lines[-1].startswith("pooled: recall@5 model 0.395 vs rules 0.365 (model − rules [+0.012, +0.061]")
    assert _fold_lines({"k": 5}) == [
        "no rolling-origin backtest in this run: the gate used the single test period above"
    ]


def test_rank_says_which_engine_ranked_and_why() -> None:
    from models.promotion import ranking_sentence

    rules = {"engine": "rules", "why": "no champion model registered", "model_version": None}
    refused = {"champion": None, "challenger": {"version": 2, "decision": "keep", "reason": "the interval includes 0"}}
    assert ranking_sentence(rules, refused) == (
        "the scoring rules ranked: no champion model registered; "
        "the last trained model (v2) was not promoted: the interval includes 0"
    )
    assert ranking_sentence(rules, None) == "the scoring rules ranked: no champion model registered"
    model = {"engine": "model", "model_version": "yujing-escalation v3"}
    gated = {"champion": {"version": 3, "decision": "promote", "reason": "the interval is above 0"}, "challenger": None}
    assert ranking_sentence(model, gated) == (
        "the model ranked (yujing-escalation v3, the champion): promoted because the interval is above 0"
    )
    by_hand = {"champion": {"version": 3, "decision": "keep", "reason": "the interval includes 0"}}
    assert ranking_sentence(model, by_hand).endswith("promoted by hand (the gate said: the interval includes 0)")
    assert ranking_sentence({"engine": "model", "model_version": "bundle-abc"}, None) == (
        "the model ranked (bundle-abc, given explicitly, not through the registry's gate)"
    )
