"""The drift report as people read it: a Markdown section (training report) and a table context (pages).

One home for the labels and the row selection, so the ranking's page, the workbench's
city page, the analysis reports and the training report show the same table
(web/templates/_drift.html renders the context).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from features.lexicon import CATEGORIES
from features.schema import CATEGORY_NAMES  # what a station calls each category: one home
from models.warning import CUE_GROUPS, CUE_PHRASES

__all__ = ["KIND_NAMES", "STATUS_NAMES", "drift_lines", "drift_view", "text_label"]

STATUS_NAMES = {"ok": "正常", "warn": "注意", "alert": "警报"}
STATUS_BADGES = {"ok": "b-none", "warn": "b-yellow", "alert": "b-red"}
KIND_NAMES = {"feature": "特征", "score": "模型分数", "text": "文本", "volume": "报警量"}
_TEXT_LABELS = {
    "ood_share": "分布外叙述占比 (OOD)",
    "no_dispute_verdict": "无纠纷判定占比",
    **{f"lexicon_{c}": f"词库命中：{CATEGORY_NAMES.get(c, c)}" for c in CATEGORIES},
    **{f"cue_{g}": f"线索：{CUE_PHRASES.get(g, g)}" for g in CUE_GROUPS},
}
FEATURES_SHOWN = 10
VOLUME_SHOWN = 12


def text_label(name: str) -> str:
    """A text statistic's Chinese label (the name itself when unknown)."""
    return _TEXT_LABELS.get(name, name)


def _breach_name(breach: Mapping[str, Any]) -> str:
    if breach["kind"] == "text":
        return text_label(str(breach["name"]))
    if breach["kind"] == "volume" and str(breach["name"]).startswith("county "):
        return f"旗县区 {str(breach['name'])[7:]}"
    if breach["kind"] == "volume":
        return f"派出所 {breach['name']}"
    return str(breach["name"])


def drift_view(report: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What a page shows of a drift report (None: nothing to show); plain values for web/templates/_drift.html."""
    if not report:
        return None
    ref = report.get("reference") or {}
    view: dict[str, Any] = {
        "status": report.get("status", "ok"),
        "status_name": STATUS_NAMES.get(report.get("status", "ok"), "正常"),
        "badge": STATUS_BADGES.get(report.get("status", "ok"), "b-none"),
        "available": bool(ref.get("available")),
        "why": ref.get("why", ""),
        "reference": "",
        "breaches": [],
        "features": [],
        "score": None,
        "text": [],
        "volume": [],
    }
    if not view["available"]:
        return view
    current = ref.get("current") or {}
    view["reference"] = (
        f"参照：冠军模型训练数据 {ref.get('data_fingerprint', '')}（快照 {ref.get('snapshot_from', '')} 至 "
        f"{ref.get('snapshot_to', '')}，{ref.get('rows', 0):,} 行）；当前：{current.get('date', '')}，"
        f"{current.get('rows', 0):,} 户，文本窗口自 {current.get('text_from', '')} 起 "
        f"{current.get('text_calls', 0):,} 条"
    )
    for b in report.get("breaches", []):
        view["breaches"].append(
            {
                "kind": KIND_NAMES.get(b["kind"], b["kind"]),
                "name": _breach_name(b),
                "value": b["value"],
                "threshold": b["threshold"],
                "status": b["status"],
                "status_name": STATUS_NAMES[b["status"]],
                "badge": STATUS_BADGES[b["status"]],
            }
        )
    for row in [r for r in report.get("features", []) if r.get("psi") is not None][:FEATURES_SHOWN]:
        view["features"].append(
            row | {"status_name": STATUS_NAMES[row["status"]], "badge": STATUS_BADGES[row["status"]]}
        )
    score = report.get("score") or {}
    if score.get("psi") is not None:
        view["score"] = score | {"status_name": STATUS_NAMES[score["status"]], "badge": STATUS_BADGES[score["status"]]}
    for row in report.get("text", []):
        extra = {"label": text_label(row["name"]), "status_name": STATUS_NAMES[row["status"]]}
        view["text"].append(row | extra | {"badge": STATUS_BADGES[row["status"]]})
    volume = report.get("volume", [])
    shown = [r for r in volume if r["level"] == "county" or r["status"] != "ok"][: VOLUME_SHOWN * 2]
    for row in shown:
        label = f"旗县区 {row['station_id']}" if row["level"] == "county" else f"派出所 {row['station_id']}"
        extra = {"label": label, "status_name": STATUS_NAMES[row["status"]], "badge": STATUS_BADGES[row["status"]]}
        view["volume"].append(row | extra)
    return view


def _cell(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def drift_lines(report: Mapping[str, Any] | None) -> list[str]:
    """The training report's "漂移 / Drift" section: this run's latest data against the champion's reference."""
    if not report:
        return []
    lines = ["## 漂移 / Drift", ""]
    ref = report.get("reference") or {}
    if not ref.get("available"):
        return [*lines, f"Not measured: {ref.get('why') or 'no reference'}.", ""]
    current = ref.get("current") or {}
    lines += [
        f"{'This run' if current.get('made_by') == 'training' else 'The ranking'}'s data as of "
        f"{current.get('date', '')} ({current.get('rows', 0):,} households with a dispute in "
        f"the year before, {current.get('text_calls', 0):,} calls since {current.get('text_from', '')}) against the "
        f"champion's training reference (data `{ref.get('data_fingerprint', '')}`, snapshots "
        f"{ref.get('snapshot_from', '')} to {ref.get('snapshot_to', '')}). Thresholds: conf/drift.toml; "
        f"status **{report['status']}**, {len(report['breaches'])} breach(es) (docs/drift.md says how to act).",
        "",
    ]
    if report["breaches"]:
        lines += ["| status | kind | name | value | threshold |", "|---|---|---|---|---|"]
        for b in report["breaches"]:
            lines.append(
                f"| {b['status']} | {b['kind']} | {b['name']} | {_cell(b['value'])} | {_cell(b['threshold'])} |"
            )
        lines.append("")
    score = report.get("score") or {}
    lines += [f"Score PSI: {_cell(score.get('psi'))} ({score.get('status', 'ok')}). Largest feature PSIs:", ""]
    lines += ["| feature | PSI | status |", "|---|---|---|"]
    for row in [r for r in report["features"] if r["psi"] is not None][:FEATURES_SHOWN]:
        lines.append(f"| {row['name']} | {row['psi']:.4f} | {row['status']} |")
    if report.get("text"):
        lines += ["", "| text | now | reference | status |", "|---|---|---|---|"]
        for row in report["text"]:
            lines.append(f"| {row['name']} | {row['value']:.1%} | {row['reference']:.1%} | {row['status']} |")
    return [*lines, ""]
