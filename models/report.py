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

    fig, ax = plt.subplots(figsize=(5, 4))
    top = 0.0
    for name in ("model", "rules"):
        cal = curves[name]["calibration"]
        ax.plot(cal["predicted"], cal["observed"], marker="o", label=name)
        top = max(top, *cal["predicted"], *cal["observed"])
    ax.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1, label="perfect")
    ax.set_xlabel("predicted probability (bin mean)")
    ax.set_ylabel("observed rate")
    ax.set_title("Calibration (fitted on the tuning period)")
    ax.legend()
    fig.tight_layout()
    files["calibration"] = "calibration.png"
    fig.savefig(out_dir / files["calibration"], dpi=110)
    plt.close(fig)
    return files


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
        "## Escalation (民转刑) within the horizon, test period",
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
            "| model − rules (paired 95 % interval) | "
            + " | ".join(f"[{diff[m][0]:+.4f}, {diff[m][1]:+.4f}]" for m in _METRICS)
            + " |"
        )
    lines += ["", report.get("verdict", ""), ""]
    lines += [f"![PR curves]({plots['pr']})", "", f"![Calibration]({plots['calibration']})", ""]
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
    if "promoted" in report:
        lines += ["## Promotion", "", f"promoted: **{report['promoted']}** — {report.get('promotion_reason', '')}", ""]
    return "\n".join(lines)


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
    path = out_dir / "report.md"
    path.write_text(render_markdown(report, plots), encoding="utf-8")
    return path
