"""Which model ranks: the promotion rule and the escalation model's gate against the rules and the champion.

Two rules live here, both recorded on the candidate's MLflow run by
:func:`log_decision` (tags ``promotion.<name>.*`` and ``promotion.json``):

* :func:`decide_promotion`, the plain rule (the dispute classifier uses it):
  parity passed and the candidate's metric >= the champion's + margin.
* :func:`decide_gate`, the escalation model's gate (issue 10). The scoring
  rules (积分预警) are what a station has without any model, so a model ranks
  only when it is *surely* better than them where the stations act:
  (a) the ONNX parity check passed, (b) the paired household-bootstrap
  interval of model - rules on the chosen metric (pooled over the
  rolling-origin backtest's folds) lies above zero, and (c) it beats the
  current champion, if there is one, by ``margin`` - on the same test rows
  when the champion's bundle can score them (``how="paired"``), else on the
  champion's logged number (``how="logged"``). When refused, the champion
  keeps ranking, or the rules when there is none (:attr:`Decision.ranking_engine`).

Everything is plain numbers in, a :class:`Decision` out; MLflow is touched
only by :func:`log_decision`, :func:`apply_promotion_rule` and :func:`apply_gate`.
"""

from __future__ import annotations

import json
import math
import numbers
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models import registry

# Metrics are rounded to 4 decimals upstream; 0.1 + 0.2 > 0.3 in binary floating point, so a
# candidate exactly ``margin`` better would lose to float noise without this tolerance.
_PROMOTION_EPS = 1e-9
GATE_METRICS = ("recall_at_k", "pr_auc", "precision_at_k")
"""Metrics the gate can decide on: higher is better and the backtest gives a paired model - rules interval."""


@dataclass(frozen=True)
class Decision:
    """A promotion decision with the numbers it was made on (logged to the run as tags and promotion.json)."""

    promote: bool
    reason: str
    candidate_value: float | None
    champion_value: float | None
    margin: float
    metric: str | None = None
    parity_ok: bool | None = None
    # the escalation gate's evidence (None for the plain rule of decide_promotion); under the gate,
    # candidate_value/champion_value are the pair compared against the champion (on the same rows when
    # paired), and gate_value/rules_value the pair compared against the rules
    metric_label: str | None = None
    gate_value: float | None = None
    rules_value: float | None = None
    rules_interval: tuple[float, float] | None = None
    champion_version: int | None = None
    champion_how: str | None = None
    champion_interval: tuple[float, float] | None = None
    ranking_engine: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _metric_value(values: Mapping[str, Any], metric: str) -> float | None:
    value = registry.flatten(values).get(metric)
    if value is None or isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def _similar_keys(values: Mapping[str, Any], metric: str) -> str:
    leaf = metric.rsplit(".", 1)[-1]
    keys = sorted(k for k in registry.flatten(values) if k.rsplit(".", 1)[-1] == leaf)
    return ", ".join(keys[:8]) or "none"


def decide_promotion(
    candidate: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    margin: float,
    parity_ok: bool,
    metric: str = "pr_auc",
) -> Decision:
    """Promote when the ONNX parity check passed AND (there is no champion OR the
    candidate's ``metric`` >= champion's + ``margin``) on the test period.

    ``candidate`` and ``champion`` are metric dicts, nested or flat (``metric`` may be a
    dotted key such as ``escalation.test.pr_auc``); ``champion`` may also be
    :func:`champion_info`'s dict, whose ``metrics`` are used. A failed parity check never
    promotes: the ONNX bundle would not score like the model that was measured. A champion
    without a finite value for ``metric`` is kept (compare by hand, then :func:`promote`):
    an automatic promotion needs two numbers.
    """
    if not isinstance(margin, numbers.Real) or isinstance(margin, bool) or not math.isfinite(margin) or margin < 0:
        raise ValueError(f"promotion margin must be a finite number >= 0, got {margin!r}")
    margin = float(margin)
    cand = _metric_value(candidate, metric)
    if cand is None:
        raise ValueError(
            f"candidate metrics have no number {metric!r} (keys ending alike: {_similar_keys(candidate, metric)})"
        )
    champ_metrics = champion
    if champion is not None and isinstance(champion.get("metrics"), Mapping):
        champ_metrics = champion["metrics"]  # registry.champion_info()'s dict
    champ = None if champ_metrics is None else _metric_value(champ_metrics, metric)

    def decision(promote: bool, reason: str) -> Decision:
        return Decision(promote, reason, cand, champ, margin, metric, bool(parity_ok))

    if not parity_ok:
        return decision(False, "ONNX parity check failed: the exported bundle does not score like the trained model")
    if not math.isfinite(cand):
        return decision(False, f"candidate {metric} is not finite ({cand})")
    if champ_metrics is None:
        return decision(True, f"no champion yet; candidate {metric} = {cand:.4f}")
    if champ is None or not math.isfinite(champ):
        return decision(False, f"champion has no finite {metric}: compare by hand and promote explicitly")
    needed = champ + margin
    if cand >= needed - _PROMOTION_EPS:
        return decision(True, f"candidate {metric} {cand:.4f} >= champion {champ:.4f} + margin {margin:.4f}")
    return decision(False, f"candidate {metric} {cand:.4f} < champion {champ:.4f} + margin {margin:.4f}")


def log_decision(
    run_id: str, name: str, version: int | None, decision: Decision, tracking_uri: str | None = None
) -> None:
    """Record a decision on the candidate's run: tags ``promotion.<name>.*`` and ``promotion.json``.

    ``promotion.json`` maps registered model name -> decision, so one run that trains both
    models keeps both decisions (the file is read, merged and re-logged). The model version,
    if given, is tagged ``promotion`` = promote/keep and ``promotion.reason``.
    """
    registry._check_name(name)
    client = registry._client(tracking_uri)
    word = "promote" if decision.promote else "keep"
    record = {
        **decision.to_dict(),
        "decision": word,
        "version": version,
        "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    prefix = f"promotion.{name}"
    tags = {
        f"{prefix}.decision": word,
        f"{prefix}.reason": decision.reason,
        f"{prefix}.metric": str(decision.metric),
        f"{prefix}.candidate_value": str(decision.candidate_value),
        f"{prefix}.champion_value": str(decision.champion_value),
        f"{prefix}.margin": str(decision.margin),
        f"{prefix}.parity_ok": str(decision.parity_ok),
        f"{prefix}.version": str(version),
    }
    gate = {
        "metric_label": decision.metric_label,
        "gate_value": decision.gate_value,
        "rules_value": decision.rules_value,
        "rules_interval": decision.rules_interval,
        "champion_version": decision.champion_version,
        "champion_how": decision.champion_how,
        "champion_interval": decision.champion_interval,
        "ranking_engine": decision.ranking_engine,
    }
    tags |= {f"{prefix}.{key}": str(list(v) if isinstance(v, tuple) else v) for key, v in gate.items() if v is not None}
    with tempfile.TemporaryDirectory() as tmp:
        existing: dict[str, Any] = {}
        if registry._artifact_exists(client, run_id, registry.PROMOTION_FILE):
            local = client.download_artifacts(run_id, registry.PROMOTION_FILE, tmp)
            existing = json.loads(Path(local).read_text(encoding="utf-8"))
        existing[name] = record
        out = Path(tmp) / "out" / registry.PROMOTION_FILE
        out.parent.mkdir()
        out.write_text(json.dumps(existing, ensure_ascii=False, indent=2, sort_keys=True), encoding="utf-8")
        registry.assert_no_personal_data(out)
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
        client.log_artifact(run_id, str(out))
    if version is not None:
        client.set_model_version_tag(name, str(version), "promotion", word)
        client.set_model_version_tag(name, str(version), "promotion.reason", decision.reason)
        if decision.ranking_engine is not None:
            client.set_model_version_tag(name, str(version), "promotion.ranking_engine", decision.ranking_engine)


def apply_promotion_rule(
    name: str,
    version: int,
    *,
    margin: float,
    parity_ok: bool,
    metric: str = "pr_auc",
    tracking_uri: str | None = None,
) -> Decision:
    """Decide on ``version`` against the current champion, log the decision, promote if it says so.

    Both sides' metrics are read from their runs in MLflow, so they are flattened alike
    (pass ``metric`` as logged, e.g. ``escalation.test.pr_auc``). Re-deciding on the
    version that already is champion keeps it and says so.
    """
    registry._check_name(name)
    client = registry._client(tracking_uri)
    mv = client.get_model_version(name, str(version))
    candidate = client.get_run(mv.run_id).data.metrics
    champion = registry.champion_info(name, tracking_uri)
    if champion is not None and champion["version"] == int(version):
        value = _metric_value(candidate, metric)
        decision = Decision(False, "already champion", value, value, float(margin), metric, bool(parity_ok))
    else:
        decision = decide_promotion(candidate, champion, margin, parity_ok, metric)
    log_decision(mv.run_id, name, int(version), decision, tracking_uri)
    if decision.promote:
        registry.promote(name, int(version), tracking_uri)
    return decision


# --------------------------------------------------------------------------- the escalation gate


def metric_label(metric: str, k: int) -> str:
    """How a person reads the metric: ``recall@5``, ``precision@5``, ``PR-AUC``."""
    return {"recall_at_k": f"recall@{k}", "precision_at_k": f"precision@{k}", "pr_auc": "PR-AUC"}.get(metric, metric)


@dataclass(frozen=True)
class GateEvidence:
    """The candidate against the rules on the gate's metric, with where the numbers come from."""

    metric: str
    k: int
    source: str
    """``backtest``: pooled over the rolling-origin folds; ``single split``: the one test period (old runs)."""
    candidate: float
    rules: float
    interval: tuple[float, float]
    """Paired household-bootstrap interval of model - rules."""
    logged_key: str
    """The MLflow metric key holding ``candidate`` (what a later run compares a champion on)."""

    @property
    def label(self) -> str:
        name = metric_label(self.metric, self.k)
        return f"pooled {name}" if self.source == "backtest" else f"{name} (single test period: no backtest)"


def _finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def gate_evidence(evaluation: Mapping[str, Any], metric: str) -> GateEvidence:
    """The gate's numbers from ``evaluate_escalation``'s dict: the pooled backtest, else the single split.

    A run without ``evaluation["backtest"]`` (code before the rolling-origin
    backtest) is judged on its one test period and the label says so.
    """
    if metric not in GATE_METRICS:
        raise ValueError(f"promotion_metric {metric!r} cannot gate; choose one of {', '.join(GATE_METRICS)}")
    backtest = evaluation.get("backtest") or {}
    pooled = backtest.get("pooled") or {}
    interval = (pooled.get("model_minus_rules_ci") or {}).get(metric)
    if interval is not None and metric in pooled.get("model", {}) and metric in pooled.get("rules", {}):
        return GateEvidence(
            metric,
            int(backtest.get("k", evaluation.get("k", 0))),
            "backtest",
            float(pooled["model"][metric]),
            float(pooled["rules"][metric]),
            (float(interval[0]), float(interval[1])),
            f"escalation.backtest.pooled.model.{metric}",
        )
    low, high = evaluation["model_minus_rules_ci"][metric]
    return GateEvidence(
        metric,
        int(evaluation["k"]),
        "single split",
        float(evaluation["model"][metric]),
        float(evaluation["rules"][metric]),
        (float(low), float(high)),
        f"escalation.test.model.{metric}",
    )


@dataclass(frozen=True)
class ChampionEvidence:
    """The candidate against the current champion on the gate's metric."""

    version: int
    how: str
    """``paired``: both scored on the same test rows; ``logged``: the champion's number from its MLflow run."""
    candidate: float | None
    champion: float | None
    interval: tuple[float, float] | None = None
    """Paired interval of candidate - champion (``paired`` only; reported, the margin decides)."""
    key: str | None = None
    """The logged metric key compared (``logged`` only)."""


def logged_champion(
    champion: Mapping[str, Any], candidate_metrics: Mapping[str, float], evidence: GateEvidence
) -> ChampionEvidence:
    """Compare on the champion's logged metric: the first key both runs logged, the gate's own key first.

    ``champion`` is :func:`models.registry.champion_info`'s dict. A champion
    from before the backtest has only ``escalation.test.model.<metric>``; the
    candidate's number under the same key is used then, so like is compared
    with like (both single test periods, on their own data).
    """
    theirs = registry.flatten(champion.get("metrics", {}))
    ours = registry.flatten(candidate_metrics)
    for key in (evidence.logged_key, f"escalation.test.model.{evidence.metric}"):
        if _finite(theirs.get(key)) and _finite(ours.get(key)):
            return ChampionEvidence(int(champion["version"]), "logged", float(ours[key]), float(theirs[key]), key=key)
    return ChampionEvidence(int(champion["version"]), "logged", evidence.candidate, None, key=evidence.logged_key)


def decide_gate(evidence: GateEvidence, champion: ChampionEvidence | None, margin: float, parity_ok: bool) -> Decision:
    """The escalation gate: parity, then surely better than the rules, then better than the champion.

    Against the rules the paired interval must lie above zero: the rules are
    the stations' own system, and a model that only *might* be better must not
    take their place. Against the champion (which already passed this gate)
    the point difference must reach ``margin``, on the same rows when
    ``champion.how == "paired"``: both models beat the rules, so the question
    is only which to keep, and requiring a sure win there would freeze an
    ageing champion forever. When refused, the champion keeps ranking, or the
    rules when there is none (``ranking_engine``).
    """
    if not _finite(margin) or margin < 0:
        raise ValueError(f"promotion margin must be a finite number >= 0, got {margin!r}")
    low, high = evidence.interval
    label = evidence.label
    compared = champion is not None and champion.candidate is not None
    base = {
        "candidate_value": champion.candidate if compared else evidence.candidate,  # type: ignore[union-attr]
        "champion_value": None if champion is None else champion.champion,
        "margin": float(margin),
        "metric": evidence.logged_key,
        "parity_ok": bool(parity_ok),
        "metric_label": label,
        "gate_value": evidence.candidate,
        "rules_value": evidence.rules,
        "rules_interval": evidence.interval,
        "champion_version": None if champion is None else champion.version,
        "champion_how": None if champion is None else champion.how,
        "champion_interval": None if champion is None else champion.interval,
    }
    keep = "rules" if champion is None else "model"

    def decision(promote: bool, reason: str) -> Decision:
        return Decision(promote, reason, **base, ranking_engine="model" if promote else keep)  # type: ignore[arg-type]

    vs_rules = f"[{low:+.3f}, {high:+.3f}] (model {evidence.candidate:.3f}, rules {evidence.rules:.3f})"
    if not parity_ok:
        return decision(False, "the exported ONNX bundle does not score like the trained model (parity check failed)")
    if not all(_finite(v) for v in (evidence.candidate, evidence.rules, low, high)):
        return decision(False, f"the model's {label} against the rules is not a number")
    if low <= 0:
        where = "includes 0" if high >= 0 else "lies below 0"
        return decision(False, f"the model's {label} − rules interval {vs_rules} {where}")
    beats_rules = f"the model's {label} − rules interval {vs_rules} is above 0"
    if champion is None:
        return decision(True, f"{beats_rules}, and there is no champion yet")
    if champion.champion is None or champion.candidate is None or not _finite(champion.champion):
        return decision(
            False, f"{beats_rules}, but champion v{champion.version} has no comparable number: compare by hand"
        )
    if champion.how == "paired":
        where = f"on the same test rows it scores {champion.candidate:.4f} against champion v{champion.version}'s"
    else:
        where = f"its logged {champion.key} is {champion.candidate:.4f} against champion v{champion.version}'s"
    needed = champion.champion + margin
    if champion.candidate >= needed - _PROMOTION_EPS:
        return decision(True, f"{beats_rules}, and {where} {champion.champion:.4f} (+ margin {margin:g})")
    return decision(False, f"{beats_rules}, but {where} {champion.champion:.4f} (+ margin {margin:g} needed)")


def apply_gate(name: str, version: int, decision: Decision, tracking_uri: str | None = None) -> Decision:
    """Log ``decision`` on ``version``'s run and move ``champion`` to it when it says promote."""
    registry._check_name(name)
    run_id = registry._client(tracking_uri).get_model_version(name, str(version)).run_id
    log_decision(run_id, name, int(version), decision, tracking_uri)
    if decision.promote:
        registry.promote(name, int(version), tracking_uri)
    return decision


def engine_sentence(decision: Mapping[str, Any], version: int | None = None) -> str:
    """One plain line: which engine will rank and why (what ``yujing train`` prints and the report says)."""
    reason = decision.get("reason", "")
    if decision.get("promote"):
        which = f" (new champion v{version})" if version is not None else ""
        return f"the model will rank{which}: {reason}"
    if decision.get("ranking_engine") == "model":
        champion = decision.get("champion_version")
        return f"champion model v{champion} keeps ranking; this run's model is not promoted: {reason}"
    return f"the scoring rules will rank: {reason}"


def registry_decisions(name: str, tracking_uri: str | None = None) -> dict[str, Any]:
    """What the registry says about who ranks: champion and challenger versions with their logged decisions.

    ``{"champion": {"version", "decision", "reason"} | None, "challenger": {...} | None}``; ``decision`` is
    ``promote`` / ``keep`` as the gate logged it (``None`` for a version promoted by hand, before any gate).
    """
    client = registry._client(tracking_uri)
    out: dict[str, Any] = {}
    for alias, version in ((a, registry.aliases(name, tracking_uri).get(a)) for a in ("champion", "challenger")):
        if version is None:
            out[alias] = None
            continue
        tags = client.get_model_version(name, str(version)).tags
        out[alias] = {"version": version, "decision": tags.get("promotion"), "reason": tags.get("promotion.reason")}
    return out


def ranking_sentence(model: Mapping[str, Any], decisions: Mapping[str, Any] | None = None) -> str:
    """One plain line for ``yujing rank``: which engine ranked and why.

    ``model`` is the ranking manifest's ``model`` dict (``engine``, ``why``,
    ``model_version``); ``decisions`` is :func:`registry_decisions` (None when
    the bundle was given by hand or the registry could not be read).
    """
    decisions = decisions or {}
    if model.get("engine") == "model":
        champion = decisions.get("champion")
        label = model.get("model_version") or "the given bundle"
        if champion is None:
            return f"the model ranked ({label}, given explicitly, not through the registry's gate)"
        if champion.get("decision") == "promote":
            return f"the model ranked ({label}, the champion): promoted because {champion.get('reason')}"
        said = f" (the gate said: {champion['reason']})" if champion.get("reason") else ""
        return f"the model ranked ({label}, the champion): promoted by hand{said}"
    line = f"the scoring rules ranked: {model.get('why') or 'no usable champion model'}"
    challenger = decisions.get("challenger")
    if decisions.get("champion") is None and challenger and challenger.get("decision") == "keep":
        line += f"; the last trained model (v{challenger['version']}) was not promoted: {challenger.get('reason')}"
    return line
