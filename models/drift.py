"""Drift monitoring: is what the models see now still what the champion was trained on?

Three families of checks, each against a *reference profile* that training
writes into the ONNX bundle (``bundle/drift_reference.json``), so the profile
travels with the champion wherever the bundle goes:

* **Features and score.** The population stability index (PSI) of every
  escalation-model feature and of the model's raw score, over the reference's
  quantile bins (a feature with few distinct values, or mostly zeros, gets one
  bin per value instead: quantile edges would collapse into one).
* **Text.** Share of out-of-distribution narratives (the dispute model's own
  OOD threshold), share of calls with a lexicon hit per category and a cue per
  cue group, share of calls with no dispute verdict: a new call-taker style
  or a new template moves these before it moves any model metric.
* **Volume.** Calls per station and per county in the last week against its
  own weekly history, with a negative-binomial tail probability whose
  dispersion is pooled over the history (a burst of calls from one quarrelling
  family is ordinary; a doubling of a county is not), so small stations raise
  no noise.

Pure functions over arrays and DataFrames; the pipelines pick the rows
(pipelines/drift.py). Thresholds live in ``conf/drift.toml``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from features.lexicon import CATEGORIES
from models.drift_config import DriftConfig, load_drift_config
from models.drift_volume import county_history, volume_rows, weekly_counts
from models.warning import CUE_GROUPS

__all__ = [
    "REFERENCE_FILE",
    "STATUSES",
    "DriftConfig",
    "bin_edges",
    "bin_shares",
    "breaches",
    "check_reference",
    "drift_report",
    "load_drift_config",
    "metrics",
    "no_reference_report",
    "psi",
    "reference_profile",
    "summary_line",
    "text_stats",
    "volume_rows",
    "weekly_counts",
]

REFERENCE_FILE = "drift_reference.json"
"""The reference profile's name inside a bundle folder (models/bundle.py lists and hashes it)."""
REFERENCE_FORMAT = "yujing-drift-reference"
REFERENCE_VERSION = 1
STATUSES = ("ok", "warn", "alert")
EPS = 1e-4
"""Shares are floored at this before the PSI's logarithm: an empty bin costs a bounded amount, not infinity."""
TEXT_NAMES = (
    "ood_share",
    "no_dispute_verdict",
    *(f"lexicon_{c}" for c in CATEGORIES),
    *(f"cue_{g}" for g in CUE_GROUPS),
)
"""The text statistics, in the order every table shows them."""


# ----------------------------------------------------------------------------------------------- PSI


def bin_edges(values: np.ndarray, bins: int = 10) -> list[float]:
    """Right-closed bin edges from the reference: one per distinct value when there are few, else quantiles.

    Bin ``i`` holds ``edges[i-1] < x <= edges[i]`` (the first: ``x <= edges[0]``; one more bin above the
    last edge). A feature that is zero for 95 % of rows gets the edge 0 (its own bin) and quantile edges
    of the rest, deduplicated: ten quantiles of it would otherwise all be 0. A constant feature gets one
    edge: everything at it, and a bin for anything above.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return []
    distinct = np.unique(v)
    if len(distinct) <= bins:
        return [float(x) for x in distinct]
    edges = np.unique(np.quantile(v, np.linspace(0, 1, bins + 1)[1:-1], method="inverted_cdf"))
    return [float(x) for x in edges]


def bin_shares(values: np.ndarray, edges: Sequence[float]) -> list[float]:
    """Share of ``values`` in each bin of ``edges`` (``len(edges) + 1`` bins), then one bin for NaN."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return [0.0] * (len(edges) + 2)
    finite = np.isfinite(v)
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), v[finite], side="left")
    counts = np.bincount(index, minlength=len(edges) + 1).astype(np.float64)
    counts = np.append(counts, float((~finite).sum()))
    return [float(x) for x in counts / len(v)]


def psi(expected: Sequence[float], actual: Sequence[float], eps: float = EPS) -> float:
    """Population stability index: sum over bins of (actual - expected) * ln(actual / expected).

    Shares are floored at ``eps`` so a bin empty on one side adds a bounded term.
    """
    e = np.maximum(np.asarray(expected, dtype=np.float64), eps)
    a = np.maximum(np.asarray(actual, dtype=np.float64), eps)
    if e.shape != a.shape:
        raise ValueError(f"expected {e.shape[0]} bins, actual {a.shape[0]}")
    return float(np.sum((a - e) * np.log(a / e)))


def _level(value: float, warn: float, alert: float) -> str:
    return "alert" if value >= alert else "warn" if value >= warn else "ok"


# ---------------------------------------------------------------------------------------------- text


def text_stats(calls: pd.DataFrame, ood_scores: np.ndarray, ood_threshold: float) -> dict[str, float]:
    """The :data:`TEXT_NAMES` shares over calls scored by the rules (``rule_verdicts`` columns).

    ``calls`` needs ``is_dispute``, ``cat_<category>`` (lexicon evidence, > 0 is a hit) and
    ``cue_<group>``; ``ood_scores`` are the dispute featurizer's, one per call.
    """
    n = len(calls)
    if n == 0:
        return {}
    out = {
        "ood_share": float(np.mean(np.asarray(ood_scores, dtype=np.float64) >= ood_threshold)),
        "no_dispute_verdict": float(1.0 - calls["is_dispute"].astype(bool).mean()),
    }
    out |= {f"lexicon_{c}": float((calls[f"cat_{c}"].to_numpy(np.float64) > 0).mean()) for c in CATEGORIES}
    out |= {f"cue_{g}": float((calls[f"cue_{g}"].to_numpy(np.float64) > 0).mean()) for g in CUE_GROUPS}
    return out


def _two_proportion_z(p: float, n: int, p0: float, n0: int) -> float:
    se = math.sqrt(p0 * (1 - p0) / max(n0, 1) + p * (1 - p) / max(n, 1))
    if se == 0:
        return 0.0 if p == p0 else math.copysign(math.inf, p - p0)
    return (p - p0) / se


def _text_status(name: str, value: float, n: int, ref: float, n0: int, config: DriftConfig) -> tuple[str, float]:
    """Status and the threshold that decided it (the warn one when ok)."""
    warn, alert = (
        (config.text_ood_warn, config.text_ood_alert)
        if name == "ood_share"
        else (config.text_share_warn, config.text_share_alert)
    )
    change = value - ref if name == "ood_share" else abs(value - ref)  # fewer OOD calls is never a problem
    if n < config.text_min_calls or abs(_two_proportion_z(value, n, ref, n0)) < config.text_z:
        return "ok", warn
    status = _level(change, warn, alert)
    return status, alert if status == "alert" else warn


# ----------------------------------------------------------------------------------------- reference


def reference_profile(
    features: pd.DataFrame,
    score: np.ndarray,
    calls: pd.DataFrame,
    ood_scores: np.ndarray,
    ood_threshold: float,
    volume: tuple[list[str], dict[str, list[int]]],
    county_of: Mapping[str, str],
    provenance: Mapping[str, Any],
    config: DriftConfig,
) -> dict[str, Any]:
    """The JSON-plain reference profile a bundle carries (``drift_reference.json``).

    ``features``: the reference rows, one column per model feature; ``score``: the model's raw score on
    them; ``calls``: the reference calls scored by the rules (see :func:`text_stats`) with their OOD
    scores; ``volume``: :func:`weekly_counts` per station; ``provenance``: where the rows came from.
    """
    profile_features = {}
    for name in features.columns:
        values = features[name].to_numpy(np.float64)
        edges = bin_edges(values, config.bins)
        profile_features[str(name)] = {"edges": edges, "shares": bin_shares(values, edges)}
    score = np.asarray(score, dtype=np.float64)
    score_edges = bin_edges(score, config.bins)
    weeks, stations = volume
    return {
        "format": REFERENCE_FORMAT,
        "format_version": REFERENCE_VERSION,
        "provenance": {**dict(provenance), "rows": len(features), "calls": len(calls)},
        "bins": config.bins,
        "features": profile_features,
        "score": {"edges": score_edges, "shares": bin_shares(score, score_edges)},
        "text": {
            "calls": len(calls),
            "ood_threshold": float(ood_threshold),
            "shares": text_stats(calls, ood_scores, ood_threshold),
        },
        "volume": {"week_ends": weeks, "stations": stations, "county_of": {s: county_of.get(s, "") for s in stations}},
    }


def check_reference(profile: Any) -> None:
    """Raise ValueError when ``profile`` is not a reference this code reads (the caller says "no reference")."""
    if not isinstance(profile, dict) or profile.get("format") != REFERENCE_FORMAT:
        raise ValueError("not a drift reference profile")
    if profile.get("format_version") != REFERENCE_VERSION:
        raise ValueError(
            f"drift reference version {profile.get('format_version')!r}, this code reads {REFERENCE_VERSION}"
        )


# -------------------------------------------------------------------------------------------- report


def no_reference_report(why: str, config: DriftConfig) -> dict[str, Any]:
    """The report when there is nothing to compare with: says why, raises nothing."""
    return {
        "reference": {"available": False, "why": why},
        "thresholds": config.thresholds(),
        "features": [],
        "score": {"psi": None, "status": "ok"},
        "text": [],
        "volume": [],
        "breaches": [],
        "status": "ok",
    }


def drift_report(
    reference: Mapping[str, Any],
    features: pd.DataFrame | None,
    score: np.ndarray | None,
    calls: pd.DataFrame | None,
    ood_scores: np.ndarray | None,
    station_calls: Mapping[str, int] | None,
    county_of: Mapping[str, str],
    config: DriftConfig,
    current: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Compare what is seen now with ``reference``: the report (JSON-plain, see docs/drift.md).

    ``features``: the current population's rows (columns the reference lists; a missing column is
    reported as missing, with status ok); ``score``: the champion's raw score on them (None: the rules
    ranked); ``calls`` and ``ood_scores``: the current window's calls as for :func:`text_stats`;
    ``station_calls``: calls per station in the volume window; ``current``: what the current side is
    (date, window), kept in the report's ``reference`` block beside the reference's provenance.
    """
    check_reference(reference)
    report = no_reference_report("", config)
    report["reference"] = {"available": True, **reference["provenance"], "current": dict(current or {})}
    n_rows = 0 if features is None else len(features)
    enough = n_rows >= config.psi_min_rows
    for name, spec in reference["features"].items():
        if features is None or name not in features.columns:
            report["features"].append({"name": name, "psi": None, "status": "ok", "rows": n_rows})
            continue
        value = psi(spec["shares"], bin_shares(features[name].to_numpy(np.float64), spec["edges"]))
        status = _level(value, config.psi_warn, config.psi_alert) if enough else "ok"
        report["features"].append({"name": name, "psi": round(value, 4), "status": status, "rows": n_rows})
    report["features"].sort(key=lambda row: -(row["psi"] or 0.0))
    if score is not None and len(score) and np.isfinite(score).any():
        spec = reference["score"]
        value = psi(spec["shares"], bin_shares(np.asarray(score, dtype=np.float64), spec["edges"]))
        status = _level(value, config.psi_warn, config.psi_alert) if len(score) >= config.psi_min_rows else "ok"
        report["score"] = {"psi": round(value, 4), "status": status, "rows": len(score)}
    ref_text = reference["text"]
    if calls is not None and ood_scores is not None and len(calls):
        now = text_stats(calls, ood_scores, ref_text["ood_threshold"])
        for name in TEXT_NAMES:
            if name not in ref_text["shares"]:
                continue
            ref = float(ref_text["shares"][name])
            status, threshold = _text_status(name, now[name], len(calls), ref, int(ref_text["calls"]), config)
            row = {"name": name, "value": round(now[name], 4), "reference": round(ref, 4), "status": status}
            report["text"].append(row | {"calls": len(calls), "threshold": threshold})
    if station_calls is not None:
        stations = reference["volume"]["stations"]
        counties = {**reference["volume"].get("county_of", {}), **county_of}
        report["volume"] = volume_rows(station_calls, stations, counties, config.volume_window_days, config, "station")
        by_county: dict[str, int] = {}
        for station, n in station_calls.items():
            if counties.get(station):
                by_county[counties[station]] = by_county.get(counties[station], 0) + int(n)
        report["volume"] += volume_rows(
            by_county, county_history(stations, counties), {}, config.volume_window_days, config, "county"
        )
    report["breaches"] = breaches(report, config)
    report["status"] = max((b["status"] for b in report["breaches"]), key=STATUSES.index, default="ok")
    return report


def _breach(kind: str, name: str, value: Any, threshold: float, status: str, **extra: Any) -> dict[str, Any]:
    """One breach row: what drifted, how far, against which threshold (``extra``: context the pages show)."""
    return {"kind": kind, "name": name, "value": value, "threshold": threshold, "status": status, **extra}


def breaches(report: Mapping[str, Any], config: DriftConfig) -> list[dict[str, Any]]:
    """Every check that is not ok, alerts first, then by how far past its threshold."""
    psi_threshold = {"warn": config.psi_warn, "alert": config.psi_alert}
    out = [
        _breach("feature", row["name"], row["psi"], psi_threshold[row["status"]], row["status"])
        for row in report["features"]
        if row["status"] != "ok"
    ]
    score = report["score"]
    if score["status"] != "ok":
        out.append(_breach("score", "score", score["psi"], psi_threshold[score["status"]], score["status"]))
    out += [
        _breach("text", row["name"], row["value"], row["threshold"], row["status"], reference=row["reference"])
        for row in report["text"]
        if row["status"] != "ok"
    ]
    volume_threshold = {"warn": config.volume_ratio_warn, "alert": config.volume_ratio_alert}
    for row in report["volume"]:
        if row["status"] != "ok":
            name = row["station_id"] if row["level"] == "station" else f"county {row['station_id']}"
            status = row["status"]
            extra = {"calls": row["calls"], "expected": row["expected"]}
            out.append(_breach("volume", name, row["ratio"], volume_threshold[status], status, **extra))
    return sorted(out, key=lambda b: (-STATUSES.index(b["status"]), b["kind"], str(b["name"])))


def summary_line(report: Mapping[str, Any]) -> str:
    """One line for the CLI and the flow log: the status and the breaches, worst first."""
    if not report.get("reference", {}).get("available"):
        return f"drift: not measured ({report.get('reference', {}).get('why') or 'no reference'})"
    found = report["breaches"]
    if not found:
        return "drift: 0 breaches (features, score, text and call volume within conf/drift.toml's thresholds)"
    alerts = sum(b["status"] == "alert" for b in found)
    shown = ", ".join(f"{b['kind']} {b['name']}" for b in found[:4]) + (" ..." if len(found) > 4 else "")
    return f"warning: drift {report['status']}: {len(found)} breach(es), {alerts} alert(s): {shown}"


def metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """Numbers for MLflow: the largest feature PSI, the score's PSI, the number of breaches and alerts.

    Nothing when there was no reference: a 0 would read as "measured, no drift".
    """
    if not report.get("reference", {}).get("available"):
        return {}
    psis = [row["psi"] for row in report["features"] if row["psi"] is not None]
    out = {
        "drift.max_feature_psi": float(max(psis, default=0.0)),
        "drift.breaches": float(len(report["breaches"])),
        "drift.alerts": float(sum(b["status"] == "alert" for b in report["breaches"])),
    }
    if report["score"]["psi"] is not None:
        out["drift.score_psi"] = float(report["score"]["psi"])
    return out
