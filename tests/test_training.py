"""The training job end to end on a small city: report, registry, bundle parity, promotion, truth isolation.

One plain run (``run_training``) is shared by most tests; one test runs the
same steps as a Prefect flow on Prefect's ephemeral API; one executes the
data scientists' notebook against the real runs.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from conftest import train_config
from nbclient import NotebookClient

from models import registry
from models.bundle import load_manifest
from pipelines import preparation, training
from pipelines.registration import register_and_report
from serving.scorer import OnnxScorer

CONFIG = train_config()
pytestmark = pytest.mark.xdist_group("trained")
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "compare_runs.ipynb"


def test_report_has_the_contract_fields(trained: dict) -> None:
    on_disk = json.loads((trained["root"] / "run1" / "report.json").read_text(encoding="utf-8"))
    for side in ("model", "rules"):
        metrics = on_disk["escalation"][side]
        for name in ("roc_auc", "pr_auc", "recall_at_k", "precision_at_k", "brier"):
            assert 0.0 <= metrics[name] <= 1.0, (side, name)
            low, high = metrics["ci"][name]
            assert low <= high
        for name in ("precision", "recall", "f1", "category_accuracy"):
            assert 0.0 <= on_disk["dispute"][side][name] <= 1.0
    assert on_disk["onnx"]["max_abs_diff"] <= 1e-5 and on_disk["onnx"]["top_k_identical"]
    # the first run has no champion: it ranks if and only if it surely beats the rules, else the rules rank
    assert on_disk["ranking_engine"] == ("model" if on_disk["promoted"] else "rules")
    assert on_disk["promotion_reason"] == trained["gate"]["yujing-escalation"]["reason"]
    assert "rules interval" in on_disk["promotion_reason"] or "parity" in on_disk["promotion_reason"]
    assert on_disk["promotion"]["sentence"].startswith(
        "the model will rank" if on_disk["promoted"] else "the scoring rules will rank"
    )
    assert on_disk["mlflow"]["model_versions"] == {"yujing-escalation": 1, "yujing-dispute": 1}
    # no warnings database in this run: training says so and changes nothing (docs/feedback.md)
    feedback = on_disk["escalation"]["feedback"]
    assert feedback["available"] is False and feedback["labels"] == {"added": 0}
    assert "No station feedback yet" in (trained["root"] / "run1" / "report.md").read_text(encoding="utf-8")
    text = (trained["root"] / "run1" / "report.md").read_text(encoding="utf-8")
    assert text.count("| model |") >= 2 and "## Which engine ranks" in text and "## Calibration" in text
    assert (trained["root"] / "run1" / "pr_curve.png").stat().st_size > 1000


def test_models_are_measured_against_the_rules(trained: dict) -> None:
    report = trained["report"]
    esc = report["escalation"]
    assert esc["positives"]["test"] >= 20
    assert esc["model"]["roc_auc"] > 0.55 and esc["rules"]["roc_auc"] > 0.5
    truth = report["dispute"]["truth"]  # evaluation only: the model learned from police codes
    # the fused answer only adds to the rules (models.dispute.fuse_one): never below them
    assert truth["model"]["f1"] >= truth["rules"]["f1"] and truth["model"]["recall"] >= truth["rules"]["recall"]
    assert "model scores" in report["verdict"]


def test_bundle_parity_and_scorer(trained: dict) -> None:
    bundle = trained["root"] / "run1" / "bundle"
    manifest = load_manifest(bundle)
    assert set(manifest.models) == {"escalation", "dispute", "dispute_category"}
    prov = manifest.provenance
    assert prov["data_fingerprint"] and prov["lexicon_version"] and prov["code_version"]
    assert "featurizers" in prov and prov["featurizers"]["dispute"]["vocabulary"]
    scorer = OnnxScorer.from_bundle(bundle)
    names = list(manifest.models["escalation"].feature_names)
    assert names == trained["report"]["feature_names"]
    rng = np.random.default_rng(0)
    X = rng.gamma(1.0, 3.0, size=(2_000, len(names))).astype(np.float32)
    p = scorer.predict("escalation", X)
    assert p.shape == (2_000, 2) and np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
    calibrated = scorer.predict_calibrated("escalation", X)
    assert ((calibrated >= 0) & (calibrated <= 1)).all()


def test_registry_holds_both_models_with_champion(trained: dict) -> None:
    uri = trained["uri"]
    for name in (registry.ESCALATION_MODEL, registry.DISPUTE_MODEL):
        assert registry.aliases(name, uri) == {"champion": 1, "challenger": 1}
    info = registry.champion_info(registry.ESCALATION_MODEL, uri)
    assert info["tags"]["data_fingerprint"] == trained["report"]["provenance"]["data_fingerprint"]
    assert "escalation.test.model.pr_auc" in info["metrics"]


@pytest.fixture(scope="module")
def retrained(trained: dict) -> dict:
    """The same city's models trained again (deterministic: the same model as the champion v1), not yet registered."""
    prepared = preparation.prepare(trained["root"] / "city")
    frame, names, labels, points = training.build_escalation_data(prepared, CONFIG)
    run = training.fit_escalation(frame, names, labels, points, CONFIG)
    dispute = training.fit_dispute(prepared, CONFIG)
    evaluation = training.evaluate_escalation(run, CONFIG)
    out = trained["root"] / "run2"
    bundle = training.export_bundle(run, dispute, prepared, CONFIG, out)
    return {"prepared": prepared, "run": run, "dispute": dispute, "evaluation": evaluation, "bundle": bundle}


def _with_pooled(evaluation: dict, model: float, rules: float, interval: list[float]) -> dict:
    """The real evaluation with a hand-built pooled backtest (contract §1) saying how model and rules compare."""
    pooled = {
        "rows": 1000,
        "positives": 40,
        "model": {"recall_at_k": model},
        "rules": {"recall_at_k": rules},
        "model_minus_rules_ci": {"recall_at_k": interval},
    }
    return {**evaluation, "backtest": {"k": 5, "metric_names": ["recall_at_k"], "folds": [], "pooled": pooled}}


def test_a_challenger_that_loses_to_the_rules_is_refused_and_the_rules_rank(
    trained: dict, retrained: dict, tmp_path: Path
) -> None:
    """A fresh registry (no champion) and a model whose pooled interval against the rules includes 0."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    weak = _with_pooled(retrained["evaluation"], 0.30, 0.34, [-0.09, 0.01])
    r = retrained
    report = register_and_report(
        r["prepared"], r["run"], r["dispute"], weak, r["bundle"], CONFIG, tmp_path / "run", uri
    )
    assert report["promoted"] is False and report["ranking_engine"] == "rules"
    assert report["promotion_reason"] == (
        "the model's pooled recall@5 − rules interval [-0.090, +0.010] (model 0.300, rules 0.340) includes 0"
    )
    assert registry.aliases(registry.ESCALATION_MODEL, uri) == {"challenger": 1}  # no champion: the rules rank
    on_disk = json.loads((tmp_path / "run" / "report.json").read_text(encoding="utf-8"))
    assert on_disk["promotion"]["sentence"].startswith("the scoring rules will rank: the model's pooled recall@5")
    tags = registry._client(uri).get_run(report["mlflow"]["run_id"]).data.tags
    assert tags["promotion.yujing-escalation.decision"] == "keep"
    assert tags["promotion.yujing-escalation.ranking_engine"] == "rules"


def test_a_challenger_that_beats_the_rules_but_not_the_champion_is_refused(trained: dict, retrained: dict) -> None:
    """Champion v1 scores the same rows (same features); a margin no model can clear keeps it champion."""
    uri = trained["uri"]
    strong = _with_pooled(retrained["evaluation"], 0.45, 0.34, [0.03, 0.19])
    r = retrained
    out = trained["root"] / "run2"
    strict = dataclasses.replace(CONFIG, promotion_margin=1.0)
    report = register_and_report(r["prepared"], r["run"], r["dispute"], strong, r["bundle"], strict, out, uri)
    decision = report["promotion"]
    assert report["promoted"] is False and report["ranking_engine"] == "model"
    assert decision["champion_how"] == "paired" and decision["champion_version"] == 1
    assert decision["candidate_value"] < decision["champion_value"] + strict.promotion_margin
    assert (decision["gate_value"], decision["rules_value"]) == (0.45, 0.34)  # the pooled numbers against the rules
    assert "is above 0, but on the same test rows it scores" in report["promotion_reason"]
    assert decision["sentence"].startswith("champion model v1 keeps ranking; this run's model is not promoted")
    assert registry.aliases(registry.ESCALATION_MODEL, uri) == {"champion": 1, "challenger": 2}
    # Same data, same seed: the retrained model is the same model.
    assert report["escalation"]["model"]["pr_auc"] == trained["report"]["escalation"]["model"]["pr_auc"]


def test_training_never_reads_truth(trained: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fitting sees cases, not truth/: any read under truth/ fails the test."""
    original = pd.read_parquet

    def guarded(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        assert "truth" not in Path(str(path)).parts, f"training read {path}"
        return original(path, *args, **kwargs)

    monkeypatch.setattr(pd, "read_parquet", guarded)
    prepared = preparation.prepare(trained["root"] / "city")
    frame, names, labels, points = training.build_escalation_data(prepared, CONFIG)
    run = training.fit_escalation(frame, names, labels, points, CONFIG)
    dispute = training.fit_dispute(prepared, CONFIG, truth_dir=None)
    assert run.model.booster.num_trees() > 0 and dispute.model.booster.num_trees() > 0
    assert "truth" not in dispute.evaluation


def test_artifacts_hold_no_personal_data(trained: dict) -> None:
    for path in (trained["root"] / "run1").rglob("*"):
        if path.is_file():
            registry.assert_no_personal_data(path)
    text = (trained["root"] / "run1" / "report.json").read_text(encoding="utf-8")
    persons = pd.read_parquet(trained["root"] / "city" / "persons.parquet", columns=["name", "phone"])
    assert not any(name in text for name in persons["name"].head(2000) if len(name) >= 3)


@pytest.mark.slow
def test_notebook_runs_on_the_real_runs(trained: dict, tmp_path: Path, monkeypatch, kernel_env: None) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    assert "champion v1" in text and "escalation.test.model.pr_auc" in text
    assert any("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_classify_answers_with_the_model_from_the_bundle(trained: dict) -> None:
    import io

    import mlflow

    from models.registry import champion_bundle
    from pipelines.batch import classify_stream
    from serving.dispute import load_dispute_model

    # Another store as MLflow's process-wide default, as a previous run in this process leaves it (a Prefect
    # training flow does, and with it a models:/ download resolved the run in the wrong store).
    mlflow.set_tracking_uri(f"sqlite:///{trained['root'] / 'elsewhere.db'}")
    bundle = champion_bundle(trained["uri"], trained["root"] / "cache")
    assert bundle is not None and (bundle / "manifest.json").is_file()
    assert champion_bundle(trained["uri"], trained["root"] / "cache") == bundle  # downloaded once per version
    model = load_dispute_model(bundle)
    incidents = pd.read_parquet(trained["root"] / "city" / "incidents.parquet").tail(300)
    records = [
        {"id": r.incident_id, "narrative": r.narrative, "received_at": str(r.received_at)}
        for r in incidents.itertuples()
    ]
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    court = "原告林某某诉称：我与被告于1995年登记结婚，婚后经常吵架，被告对家庭不管不问，请求判令离婚。"
    lines.append(json.dumps({"id": "court", "narrative": court}, ensure_ascii=False))
    sink = io.StringIO()
    classify_stream(io.BytesIO("\n".join(lines).encode()), sink, model)
    out = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert len(out) == 301 and all(o["engine"] == "model+rules" for o in out)
    assert {o["source"] for o in out[:-1]} <= {"rules", "model", "both"}
    assert all(o["is_dispute"] for o in out if o["structure"]["strong"] and o["structure"]["reason"].startswith("c"))
    assert out[-1]["source"] == "rules" and out[-1]["category"] == "family"  # court prose is OOD: the rules answer
    onnx = model.predict(incidents["narrative"].tolist(), [str(t) for t in incidents["received_at"]])
    native = trained_model_predictions(trained, incidents)
    assert onnx["is_dispute"].tolist() == native  # ONNX and LightGBM give the same verdicts


def trained_model_predictions(trained: dict, incidents: pd.DataFrame) -> list[bool]:
    """The native LightGBM dispute model's verdicts, retrained deterministically from the same city."""
    prepared = preparation.prepare(trained["root"] / "city")
    dispute = training.fit_dispute(prepared, CONFIG)
    predicted = dispute.model.predict(incidents["narrative"].tolist(), [str(t) for t in incidents["received_at"]])
    return [bool(x) for x in predicted["is_dispute"]]
