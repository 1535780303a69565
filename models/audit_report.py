"""The training report's disparity table and capacity curve (Markdown lines and one PNG).

Kept beside models/report.py, which calls these: the numbers come from
``disparity.json`` and ``capacity.json`` (pipelines/audit.py), this module
only lays them out, so the report and the files cannot disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from features.groups import ATTRIBUTE_NAMES
from models.disparity import METRIC_NAMES, STATUS_ORDER

CAPACITY_PLOT = "capacity.png"
_SIDES = ("model", "rules")
_STYLE = {"day": "-", "week": "--"}


def plot_capacity(capacity: dict[str, Any], out_dir: Path) -> str:
    """Recall and false alarms per station-week against k, model and rules, per day (solid) and per week (dashed)."""
    ks = capacity["k"]
    fig, (recall_ax, load_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for side, colour in zip(_SIDES, ("tab:blue", "tab:orange"), strict=True):
        for cadence, style in _STYLE.items():
            curve = capacity["city"].get(side, {}).get(cadence)
            if not curve:
                continue
            label = f"{side}, k per {cadence}"
            recall = [float("nan") if v is None else v for v in curve["recall"]]
            recall_ax.plot(ks, recall, style, color=colour, marker=".", label=label)
            load_ax.plot(ks, curve["false_alarms_per_station_week"], style, color=colour, marker=".", label=label)
    horizon = f"{capacity['first_date']} to {capacity['last_date']}"
    recall_ax.set(
        xlabel="k: visits per station per day (solid) or per week (dashed)",
        ylabel="recall: share of escalating snapshots visited",
        title=f"Recall of escalations within the horizon\n(test period {horizon})",
        ylim=(0, 1.02),
        xlim=(0.5, ks[-1] + 0.5),
    )
    load_ax.set(
        xlabel="k: visits per station per day (solid) or per week (dashed)",
        ylabel="false alarms per station and week (visits)",
        title="False-alarm load: visits to households that did not escalate",
        xlim=(0.5, ks[-1] + 0.5),
    )
    for ax in (recall_ax, load_ax):
        ax.set_xticks(ks[::2] if len(ks) > 10 else ks)
        ax.grid(alpha=0.3)
    recall_ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / CAPACITY_PLOT, dpi=110)
    plt.close(fig)
    return CAPACITY_PLOT


def _pct(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) else "–"


def _ci(ci: Any) -> str:
    return f" [{ci[0]:.1%}, {ci[1]:.1%}]" if ci and ci[0] is not None else ""


def _ratio(row: dict[str, Any] | None) -> str:
    if not row or row.get("ratio") is None:
        return "–"
    low, high = row.get("ratio_ci") or [None, None]
    return f"{row['ratio']:.2f}" + (f" [{low:.2f}, {high:.2f}]" if low is not None else "")


def disparity_lines(disparity: dict[str, Any] | None) -> list[str]:
    """The disparity section: the comparison sentence, then one table, rows flagged on either side first."""
    if not disparity:
        return []
    t, period = disparity["thresholds"], disparity["period"]
    lines = [
        "## Disparity audit: who is warned, who is missed",
        "",
        f"Test period {period['test_from']} to {period['test_to']}: {period['rows']:,} snapshots of "
        f"{period['households']:,} households, {period['positives']:,} escalating. A household is warned when it is "
        f"on its station's top {disparity['k']} of the snapshot week. Groups are the household head's "
        "(county of the address; the head's ethnicity, sex and age band at the date; registered or floating "
        "household). Ratio = group ÷ reference (the largest group); **flagged** outside "
        f"{t['ratio_low']}–{t['ratio_high']}; *small* when n < {t['min_n']} or fewer than {t['min_expected']:g} "
        "events are expected, *uninformative* when the ratio's interval spans the whole band. Brackets: 95 % "
        f"household-bootstrap intervals ({disparity['bootstrap_samples']} resamples). docs/fairness.md.",
        "",
        f"**{disparity['comparison']}**",
        "",
        "| attribute | group (reference) | metric | n | model | ratio | status | rules | ratio | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows: dict[tuple, dict[str, dict[str, Any]]] = {}
    for side in _SIDES:
        for row in disparity["rows"].get(side, []):
            rows.setdefault((row["attribute"], row["group"], row["metric"]), {})[side] = row

    def order(item: tuple[tuple, dict[str, dict[str, Any]]]) -> tuple:
        return (min(STATUS_ORDER[r["status"]] for r in item[1].values()), item[0][0], item[0][2])

    for (attribute, group, metric), by_side in sorted(rows.items(), key=order):
        first = next(iter(by_side.values()))
        if first["status"] == "reference":
            continue
        cells = []
        for side in _SIDES:
            r = by_side.get(side)
            status = (r or {}).get("status", "–")
            cells += [
                _pct((r or {}).get("value")) + _ci((r or {}).get("ci")),
                _ratio(r),
                f"**{status}**" if status == "flagged" else status,
            ]
        lines.append(
            f"| {ATTRIBUTE_NAMES.get(attribute, attribute)} | {group} ({first['reference']}) "
            f"| {METRIC_NAMES.get(metric, metric)} | {first['n']:,} | " + " | ".join(cells) + " |"
        )
    return [*lines, ""]


def capacity_lines(capacity: dict[str, Any] | None, plot: str | None) -> list[str]:
    """The capacity section: the curve, a city table at a few k, and recall at 5 a day per county."""
    if not capacity:
        return []
    ks = capacity["k"]
    shown = [k for k in (1, 2, 3, 5, 10, 20) if k in ks]
    lines = [
        "## Capacity: recall and false alarms against visits per station",
        "",
        f"Test period {capacity['first_date']} to {capacity['last_date']}: {capacity['rows']:,} snapshots, "
        f"{capacity['positives']:,} escalating, {capacity['station_weeks']:,} station-weeks "
        f"(on average {capacity.get('rows_per_station_week', 0)} households with a snapshot per station-week: "
        "beyond that every household is visited and the curve is flat). Snapshots are every "
        f"{capacity['every_days']} days: *k a day* is the top k × {capacity['every_days']} of the station's "
        "list that week, *k a week* the top k. docs/capacity.md.",
        "",
    ]
    if plot:
        lines += [f"![Capacity curve]({plot})", ""]
    lines += [
        "| scorer | cadence | " + " | ".join(f"k={k}" for k in shown) + " |",
        "|---|---|" + "---|" * len(shown),
    ]
    for side in _SIDES:
        for cadence in ("day", "week"):
            curve = capacity["city"].get(side, {}).get(cadence)
            if curve:
                cells = [
                    f"{_pct(curve['recall'][ks.index(k)])} / {curve['false_alarms_per_station_week'][ks.index(k)]:.1f}"
                    for k in shown
                ]
                lines.append(f"| {side} | per {cadence} | " + " | ".join(cells) + " |")
    lines += ["", "Cells: recall / false alarms per station-week.", ""]
    if capacity.get("counties") and 5 in ks:
        i = ks.index(5)
        lines += [
            "Per county, recall at 5 visits a week and 5 a day (the county's stations' lists, "
            "its escalating snapshots):",
            "",
            "| county | escalating | model, 5/week | rules, 5/week | model, 5/day | rules, 5/day |",
            "|---|---|---|---|---|---|",
        ]
        for county, entry in sorted(capacity["counties"].items(), key=lambda kv: -kv[1]["positives"]):
            cells = [
                _pct(entry.get(s, {}).get(c, {}).get("recall", [None] * len(ks))[i])
                for c in ("week", "day")
                for s in _SIDES
            ]
            lines.append(f"| {county} | {entry['positives']:,} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines
