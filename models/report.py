"""The per-run report: Markdown with plots, for the data scientists and the center.

Numbers come from ``report.json`` (the same dict); this module only lays them
out and draws the curves, so what a person reads and what a machine reads
cannot disagree. Plots are PNG files beside the Markdown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from models.audit_report import capacity_lines, disparity_lines, plot_capacity
from models.drift_views import drift_lines

_METRICS = ("roc_auc", "pr_auc", "recall_at_k", "precision_at_k", "brier")


def _fmt(metrics: dict[str, Any], name: str) -> str:
    value = metrics.get(name)
    ci = metrics.get("ci", {}).get(name)
    if value is None:
        return "–"
    text = f"{value:.4f}"
    return f"{text} [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else text


def plot_curves(escalation: dict[str, Any], out_dir: Path) -> dict[str, str]:
    """PR and calibration curves of model and rules on the test period; returns the file names."""
    curves = escalation["curves"]
    files = {}
    fig, ax = plt.subplots(figsize=(5, 4))
    for name in ("model", "rules"):
        pr = curves[name]["pr"]
        ax.plot(pr["recall"], pr["precision"], label=f"{name} (PR-AUC {escalation[name]['pr_auc']:.3f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Escalation within the horizon: test period")
    ax.legend()
    fig.tight_layout()
    files["pr"] = "pr_curve.png"
    fig.savefig(out_dir / files["pr"], dpi=110)
    plt.close(fig)

    files["calibration"] = plot_reliability(escalation, out_dir)
    return files


def plot_reliability(escalation: dict[str, Any], out_dir: Path) -> str:
    """Reliability plot: mean predicted against observed rate per quantile bin, with each bin's row count.

    The counts matter as much as the points: with a base rate under 1 % most
    rows sit in the lowest bins, and a point far from the diagonal on twenty
    rows says little.
    """
    curves = escalation["curves"]
    model_bins = (escalation.get("calibration") or {}).get("reliability") or curves["model"]["calibration"]
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    top = 0.0
    for name, cal in (("model", model_bins), ("rules", curves["rules"]["calibration"])):
        ax.plot(cal["predicted"], cal["observed"], marker="o", label=name)
        top = max(top, *cal["predicted"], *cal["observed"])
    ax.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1, label="perfect")
    if model_bins.get("n"):
        counts = ax.twinx()
        width = max(top, 1e-6) / 60
        counts.bar(model_bins["predicted"], model_bins["n"], width=width, alpha=0.25, color="tab:blue")
        counts.set_yscale("log")
        counts.set_ylim(bottom=0.8)  # a bin of one row still shows
        counts.set_ylabel("model rows per bin (bars)")
    ece = (escalation.get("calibration") or {}).get("ece")
    ax.set_xlabel("predicted probability (bin mean)")
    ax.set_ylabel("observed rate")
    ax.set_title("Calibration on the test period" + (f": ECE {ece:.4f}" if ece is not None else ""))
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out_dir / "calibration.png", dpi=110)
    plt.close(fig)
    return "calibration.png"


def render_markdown(report: dict[str, Any], plots: dict[str, str]) -> str:
    """The report a person reads, from the report dict."""
    esc = report["escalation"]
    lines = [
        f"# Training run {report.get('mlflow', {}).get('run_id', '')}".rstrip(),
        "",
        f"- code `{report['provenance']['code_version']}`, data `{report['provenance']['data_fingerprint']}`, "
        f"lexicon `{report['provenance']['lexicon_version']}`",
        f"- split: train from {esc['split']['train_from']}, tune from {esc['split']['tune_from']}, "
        f"test {esc['split']['test_from']} to {esc['split']['test_to']}; "
        f"snapshots {esc['rows']['train']:,} / {esc['rows']['tune']:,} / {esc['rows']['test']:,}, "
        f"positives {esc['positives']['train']:,} / {esc['positives']['tune']:,} / {esc['positives']['test']:,}",
        "",
        *_promotion_lines(report),
        *_backtest_lines(esc),
        "## Escalation (民转刑) within the horizon, the most recent held-out period (the last fold) in detail",
        "",
        f"Top-k is per station and snapshot week, k = {esc['k']}. Brackets: 95 % household-bootstrap intervals.",
        "",
        "| | " + " | ".join(_METRICS) + " |",
        "|---|" + "---|" * len(_METRICS),
    ]
    for name in ("model", "rules"):
        lines.append(f"| {name} | " + " | ".join(_fmt(esc[name], m) for m in _METRICS) + " |")
    diff = esc.get("model_minus_rules_ci")
    if diff:
        lines.append(
            "| model − rules (paired 95 % interval) | " + " | ".join(_interval(diff.get(m)) for m in _METRICS) + " |"
        )
    lines += ["", report.get("verdict", ""), ""]
    lines += [f"![PR curves]({plots['pr']})", ""]
    lines += _levels_lines(esc)
    lines += _calibration_lines(esc, plots)
    lines += feedback_lines(esc.get("feedback"))
    lines += drift_lines(report.get("drift"))  # models/drift_views.py
    lines += disparity_lines(report.get("disparity"))  # models/audit_report.py (docs/fairness.md)
    lines += capacity_lines(report.get("capacity"), plots.get("capacity"))
    dispute = report.get("dispute")
    if dispute:
        lines += [
            "## Dispute classifier, held-out incidents",
            "",
            f"Labels: {dispute.get('labels', 'codes')}.",
            "",
            "| | precision | recall | F1 | category accuracy |",
            "|---|---|---|---|---|",
        ]
        for name in ("model", "rules"):
            m = dispute[name]
            lines.append(
                f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['category_accuracy']:.3f} |"
            )
        lines.append("")
    if report.get("examples"):
        lines += ["## Highest-risk households on the last test date, with reasons", ""]
        lines += ["| household | station | probability | reasons |", "|---|---|---|---|"]
        for ex in report["examples"]:
            lines.append(
                f"| {ex['household_id']} | {ex['station_id']} | {ex['probability']:.3f} | {'；'.join(ex['reasons'])} |"
            )
        lines.append("")
    onnx = report.get("onnx")
    if onnx:
        lines += [
            "## Export",
            "",
            f"ONNX parity on {onnx.get('rows', 0):,} rows: max |Δp| = {onnx['max_abs_diff']:.2e}, "
            f"top-k identical: {onnx.get('top_k_identical')}.",
            "",
        ]
    return "\n".join(lines)


def _interval(ci: Any) -> str:
    return f"[{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else "–"


def _num(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) and value == value else "–"


def _promotion_lines(report: dict[str, Any]) -> list[str]:
    """Which engine ranks after this run, and why: the first thing a reader needs."""
    if "promoted" not in report:
        return []
    decision = report.get("promotion", {})
    sentence = decision.get("sentence") or report.get("promotion_reason", "")
    lines = ["## Which engine ranks", "", f"**{sentence}**", ""]
    lines.append(
        f"- promoted: **{report['promoted']}**; ranking engine: **{report.get('ranking_engine', '–')}**; "
        f"decided on {decision.get('metric_label') or decision.get('metric', '–')}"
    )
    if decision.get("champion_version") is not None:
        how = {"paired": "on the same test rows", "logged": "on its logged number"}.get(decision.get("champion_how"))
        lines.append(
            f"- against champion v{decision['champion_version']} ({how}): candidate "
            f"{_num(decision.get('candidate_value'))}, champion {_num(decision.get('champion_value'))}, "
            f"margin {decision.get('margin')}"
            + (
                f", paired interval {_interval(decision['champion_interval'])}"
                if decision.get("champion_interval")
                else ""
            )
        )
    lines += [
        "- the gate: ONNX parity ok, the paired interval of model − rules above 0, and better than the champion "
        "by the margin (docs/registry.md)",
        "",
    ]
    return lines


def _backtest_lines(esc: dict[str, Any]) -> list[str]:
    """Per-fold and pooled tables of the rolling-origin backtest, and the truth ceiling; a note when absent."""
    backtest = esc.get("backtest")
    if not backtest:
        return [
            "## Rolling-origin backtest",
            "",
            "This run has no rolling-origin backtest (it was made by older code): the only evidence is the one "
            "test period below, and the promotion gate used it.",
            "",
        ]
    k = backtest.get("k", esc.get("k"))
    names = [m for m in backtest.get("metric_names", _METRICS)]
    lines = [
        "## Rolling-origin backtest",
        "",
        f"Each fold's model is trained only on snapshots whose labels were known before its test period, "
        f"and compared with the rules on the same rows. k = {k} per station and week; "
        "model − rules: paired 95 % household-bootstrap interval.",
        "",
        f"| fold | trained to | test period | rows | positives | recall@{k} model | rules | model − rules "
        "| PR-AUC model | rules | model − rules | ECE model |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in backtest.get("folds", []):
        m, r, ci = f.get("model", {}), f.get("rules", {}), f.get("model_minus_rules_ci", {})
        lines.append(
            f"| {f.get('fold')} | {f.get('train_to', '–')} | {f.get('test_from', '–')} to {f.get('test_to', '–')} "
            f"| {f.get('rows', 0):,} | {f.get('positives', 0):,} "
            f"| {_num(m.get('recall_at_k'), 3)} | {_num(r.get('recall_at_k'), 3)} | {_interval(ci.get('recall_at_k'))} "
            f"| {_num(m.get('pr_auc'))} | {_num(r.get('pr_auc'))} | {_interval(ci.get('pr_auc'))} "
            f"| {_num(m.get('ece'))} |"
        )
    pooled = backtest.get("pooled", {})
    lines += [
        "",
        f"**Pooled over the folds** ({pooled.get('rows', 0):,} rows, {pooled.get('positives', 0):,} positives):",
        "",
        "| | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for side in ("model", "rules"):
        values = pooled.get(side, {})
        lines.append(f"| {side} | " + " | ".join(_num(values.get(n)) for n in names) + " |")
    ci = pooled.get("model_minus_rules_ci", {})
    lines.append("| model − rules (paired 95 %) | " + " | ".join(_interval(ci.get(n)) for n in names) + " |")
    lines.append("")
    ceiling = backtest.get("ceiling")
    if ceiling:
        values = ceiling.get("model", {})
        lines += [
            "**Ceiling from truth** (a model that also sees what the simulator hides; evaluation only):",
            "",
            "| | " + " | ".join(n for n in names if n in values) + " |",
            "|---|" + "---|" * len([n for n in names if n in values]),
            "| truth-aware model | " + " | ".join(_num(values[n]) for n in names if n in values) + " |",
            "| this model, pooled | "
            + " | ".join(_num(pooled.get("model", {}).get(n)) for n in names if n in values)
            + " |",
            "",
            str(ceiling.get("note", "")),
            "",
        ]
    return lines


def _levels_lines(esc: dict[str, Any]) -> list[str]:
    """Observed escalation rate level by level in the test period, with counts and who raised each level."""
    levels = (esc.get("backtest") or {}).get("levels_observed") or esc.get("levels_observed")
    if not levels:
        return []
    lines = [
        "## Observed escalation by published level, test period",
        "",
        "A level is worth its name only if the rate falls from red to blue.",
        "",
        "| level | snapshots | escalations | rate | raised by rules | model | both |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in levels:
        raised = row.get("raised_by", {})
        lines.append(
            f"| {row['level']} | {row['snapshots']:,} | {row['escalations']:,} | {row['rate']:.2%} "
            f"| {raised.get('rules', 0):,} | {raised.get('model', 0):,} | {raised.get('both', 0):,} |"
        )
    return [*lines, ""]


def _pooled_base_rate(esc: dict[str, Any]) -> float:
    """Escalations per snapshot where the calibration was measured: the backtest's pooled rows, else the test split."""
    pooled = (esc.get("backtest") or {}).get("pooled")
    if pooled:
        return pooled["positives"] / max(pooled["rows"], 1)
    return esc["positives"]["test"] / max(esc["rows"]["test"], 1)


def _calibration_lines(esc: dict[str, Any], plots: dict[str, str]) -> list[str]:
    """ECE and the reliability table of the fold models' probabilities on every held-out period, with the plot."""
    calibration = esc.get("calibration") or {}
    bins = calibration.get("reliability") or esc.get("curves", {}).get("model", {}).get("calibration")
    lines = ["## Calibration of the probabilities", ""]
    if "ece" in calibration:
        lines.append(
            f"Expected calibration error over the backtest's held-out periods: **{calibration['ece']:.4f}** "
            "(quantile bins of the predictions, equal predictions never split; compare with the base rate "
            f"{_pooled_base_rate(esc):.4f})."
        )
        lines.append("")
    if bins:
        lines += ["| bin | mean predicted | observed rate | rows |", "|---|---|---|---|"]
        for i, (p, o, n) in enumerate(zip(bins["predicted"], bins["observed"], bins.get("n", []), strict=False)):
            lines.append(f"| {i + 1} | {p:.4f} | {o:.4f} | {int(n):,} |")
        lines.append("")
    return [*lines, f"![Calibration]({plots['calibration']})", ""]


_FEEDBACK_GROUPS = (
    ("level", "level"),
    ("raised_by", "raised by"),
    ("rules_scenario", "rules scenario"),
    ("model_factor", "model factor"),
)
_MAX_FACTORS = 12


def _rate_cell(row: dict[str, Any]) -> str:
    if row.get("rate") is None:
        return "–"
    low, high = row["ci"]
    return f"{row['rate']:.1%} [{low:.1%}, {high:.1%}]"


def feedback_lines(feedback: dict[str, Any] | None) -> list[str]:
    """站点反馈: what stations fed back, the false-alarm rate per level and reason, and the labels it added.

    Nothing for a run made by older code (no ``feedback`` at all); a plain sentence when there was
    no feedback to read (a fresh machine trains before anything is ranked).
    """
    if feedback is None:
        return []
    lines = ["## 站点反馈 Station feedback", ""]
    if not feedback.get("available"):
        reason = feedback.get("reason", "")
        return [*lines, f"No station feedback yet ({reason}): the labels are the cases' only.", ""]
    labels = feedback["labels"]
    lines += [
        f"As of {feedback['as_of'][:16]} UTC the warnings database holds {feedback['warnings']:,} warnings "
        f"({feedback['first_date']} to {feedback['last_date']}), {feedback['fed_back']:,} fed back with an outcome: "
        + ", ".join(f"{code} {n:,}" for code, n in feedback["outcomes"].items())
        + ".",
        "",
        "| status | warnings at it now | reached at least |",
        "|---|---|---|",
        *(f"| {code} | {n:,} | {feedback['reached'][code]:,} |" for code, n in feedback["status"].items()),
        "",
        "**Labels from feedback** (training only: the backtest and the gate keep the case labels; other "
        "outcomes are neither labels nor features, docs/feedback.md):",
        "",
        f"- fed back `escalated`: {labels['escalated']:,}",
        f"- placed in a snapshot's horizon: {labels['placed']:,}, covering {labels['snapshots']:,} snapshots of "
        f"their households, {labels['already_labelled']:,} already labelled by a violent case: "
        f"**{labels['added']:,} labels added** ({labels['households']:,} households)",
        f"- not placed: {labels['too_late']:,} fed back a horizon or more after the push, "
        f"{labels['not_covered']:,} outside the labelled snapshots (the data ends before their horizon, "
        "or the household is not in it)",
        "",
        "False-alarm rate = `false_alarm` among the warnings fed back with an outcome; brackets: 95 % Wilson "
        "intervals. A warning counts once for each model factor it cites.",
        "",
        "| by | group | fed back | false alarms | rate [95 %] |",
        "|---|---|---|---|---|",
    ]
    rates = feedback["false_alarm"]
    overall = rates["overall"]
    lines.append(f"| all | – | {overall['fed_back']:,} | {overall['false_alarms']:,} | {_rate_cell(overall)} |")
    for key, name in _FEEDBACK_GROUPS:
        groups = list(rates.get(key, {}).items())
        for group, row in groups[: _MAX_FACTORS if key == "model_factor" else None]:
            cell = group.replace("|", "\\|")  # a table cell
            lines.append(f"| {name} | {cell} | {row['fed_back']:,} | {row['false_alarms']:,} | {_rate_cell(row)} |")
        if key == "model_factor" and len(groups) > _MAX_FACTORS:
            lines.append(f"| {name} | {len(groups) - _MAX_FACTORS} more in report.json | | | |")
    return [*lines, ""]


def verdict(escalation: dict[str, Any], metric: str = "pr_auc") -> str:
    """One plain sentence: does the model beat the rules on the test period, and how sure is that."""
    model, rules = escalation["model"], escalation["rules"]
    diff = model[metric] - rules[metric]
    low, high = escalation.get("model_minus_rules_ci", {}).get(metric, [float("nan"), float("nan")])
    if low > 0:
        strength = (
            f"and the paired household-bootstrap interval of the difference, [{low:+.4f}, {high:+.4f}], excludes 0"
        )
    elif diff > 0:
        strength = (
            f"but the paired interval of the difference, [{low:+.4f}, {high:+.4f}], includes 0: "
            "the gain is not certain on this much data"
        )
    else:
        strength = f"so the model does not beat the rules here (paired interval [{low:+.4f}, {high:+.4f}])"
    return (
        f"On {metric}, the model scores {model[metric]:.4f} against the rules' {rules[metric]:.4f} "
        f"({diff:+.4f}), {strength}. Recall in the top {escalation['k']} per station: "
        f"model {model['recall_at_k']:.3f}, rules {rules['recall_at_k']:.3f}."
    )


def write_report(report: dict[str, Any], out_dir: Path) -> Path:
    """Plots and ``report.md`` into ``out_dir``; returns the Markdown path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = plot_curves(report["escalation"], out_dir)
    if report.get("capacity"):
        plots["capacity"] = plot_capacity(report["capacity"], out_dir)
    path = out_dir / "report.md"
    path.write_text(render_markdown(report, plots), encoding="utf-8")
    return path
