"""Tracking, registry aliases, the promotion rule and the personal-data guard, against temporary SQLite stores.

Creating an MLflow SQLite database runs its migrations (seconds), so one empty
database is made per module and copied for every test that needs a store: each
test gets its own store (no order dependence, also under xdist) for the price
of a file copy.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from models import promotion, registry, tracking_store
from models.promotion import (
    ChampionEvidence,
    Decision,
    GateEvidence,
    decide_gate,
    decide_promotion,
    engine_sentence,
    gate_evidence,
    logged_champion,
)
from models.registry import (
    CHALLENGER,
    CHAMPION,
    DISPUTE_MODEL,
    ESCALATION_MODEL,
    PersonalDataError,
    assert_no_personal_data,
    feature_list_hash,
    log_training,
    start_run,
)

PHONE = "13512349668"
ID_NUMBER = "150502199001011234"


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow database with its tables created, to copy from."""
    folder = tmp_path_factory.mktemp("template")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = registry._client(uri)
    client.search_experiments()  # creates the tables
    return folder / "mlflow.db"


@pytest.fixture
def store(empty_db: Path, tmp_path: Path) -> str:
    """A fresh store of this test's own: a copy of the empty database under tmp_path/store."""
    folder = tmp_path / "store"
    folder.mkdir()
    shutil.copyfile(empty_db, folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


def _tags(**override: str) -> dict[str, str]:
    return {
        "code_version": "0.1.0+gtest",
        "data_fingerprint": "0123456789abcdef",
        "lexicon_version": "a1b2c3d4e5f6",
        "feature_list_hash": feature_list_hash(["calls_30d", "violence_cue"]),
        **override,
    }


def _curves(scale: float = 1.0) -> dict:
    return {
        "escalation": {
            "model": {
                "pr": {"precision": [1.0, 0.6 * scale, 0.1], "recall": [0.0, 0.5, 1.0], "thresholds": [0.9, 0.2]},
                "calibration": {"predicted": [0.05, 0.5, 0.9], "observed": [0.04, 0.45, 0.8], "n": [900.0, 80.0, 20.0]},
            },
            "rules": {"pr": {"precision": [0.4, 0.2], "recall": [0.3, 0.7]}},
        }
    }


def _train(
    uri: str, folder: Path, pr_auc: float, marker: str, run_name: str = "train", extra: dict | None = None
) -> str:
    """One fake training run: a bundle whose model bytes carry ``marker``, a report, curves.json."""
    folder.mkdir(parents=True)
    bundle = folder / "onnx_bundle"
    bundle.mkdir()
    (bundle / "model.onnx").write_bytes(b"\x08\x07" + marker.encode())
    (bundle / "manifest.json").write_text(json.dumps({"features": ["calls_30d", "violence_cue"]}))
    report = folder / "report.html"
    report.write_text("<p>报警人 135****9668，身份证 1505**********2829</p>", encoding="utf-8")
    curves = folder / "curves_out.json"
    curves.write_text(json.dumps(_curves()))
    with start_run(uri, run_name=run_name) as run:
        log_training(
            params={"learning_rate": 0.05, "lgbm": {"num_leaves": 31}},
            metrics={"escalation": {"test": {"pr_auc": pr_auc, "n": 1200}}, **(extra or {})},
            tags=_tags(),
            artifacts={"bundle": bundle, "report.html": report, "curves.json": curves},
        )
    return run.info.run_id


# --------------------------------------------------------------------------- tracking


def test_a_run_logs_params_metrics_tags_and_artifacts_under_the_store(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    run_id = _train(store, tmp_path / "t", pr_auc=0.41, marker="A")

    client = registry._client(store)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics == {"escalation.test.pr_auc": 0.41, "escalation.test.n": 1200.0}
    assert run.data.params == {"learning_rate": "0.05", "lgbm.num_leaves": "31"}
    assert {k: run.data.tags[k] for k in registry.REQUIRED_TAGS} == _tags()
    assert not any(k.startswith("mlflow.source.git") for k in run.data.tags)  # no git probing
    listed = {a.path for a in client.list_artifacts(run_id)} | {a.path for a in client.list_artifacts(run_id, "bundle")}
    assert {"bundle", "bundle/model.onnx", "bundle/manifest.json", "report.html", "curves.json"} <= listed

    artifact_root = tmp_path / "store" / "mlartifacts"
    assert run.info.artifact_uri.startswith(str(artifact_root))
    assert client.get_experiment_by_name("yujing").artifact_location == str(artifact_root)
    assert not (cwd / "mlruns").exists()
    assert list(cwd.iterdir()) == []
    assert registry.load_curves(run_id, store) == _curves()


def test_a_failing_block_marks_the_run_failed(store: str) -> None:
    with pytest.raises(RuntimeError, match="boom"), start_run(store) as run:
        raise RuntimeError("boom")
    assert registry._client(store).get_run(run.info.run_id).info.status == "FAILED"


def test_log_training_refuses_bad_input_and_logs_nothing_then(store: str, tmp_path: Path) -> None:
    good = tmp_path / "ok.txt"
    good.write_text("fine")
    bad_curves = tmp_path / "c.json"
    bad_curves.write_text(json.dumps({"escalation": {"model": {"pr": {"precision": [0.5], "recall": [0.1, 0.2]}}}}))
    leaky = tmp_path / "leak.md"
    leaky.write_text(f"电话{PHONE}")
    with pytest.raises(RuntimeError, match="active run"):
        log_training({}, {"m": 1.0}, _tags(), {})
    with start_run(store) as run:
        with pytest.raises(ValueError, match="lexicon_version"):
            log_training({}, {"m": 1.0}, _tags(lexicon_version=""), {})
        with pytest.raises(TypeError, match=r"escalation\.label"):
            log_training({}, {"escalation": {"label": "high", "pr_auc": 0.3}}, _tags(), {})
        with pytest.raises(TypeError, match="flag"):
            log_training({}, {"flag": True}, _tags(), {})
        with pytest.raises(ValueError, match="relative path"):
            log_training({}, {"m": 1.0}, _tags(), {"../up": good})
        with pytest.raises(ValueError, match="log_decision"):
            log_training({}, {"m": 1.0}, _tags(), {"promotion.json": good})
        with pytest.raises(ValueError, match="differ in length"):
            log_training({}, {"m": 1.0}, _tags(), {"curves.json": bad_curves})
        with pytest.raises(PersonalDataError, match=r"leak\.md"):
            log_training({"a": 1}, {"m": 1.0}, _tags(), {"ok.txt": good, "leak.md": leaky})
        with pytest.raises(PersonalDataError, match="note"):
            log_training({"note": f"caller {ID_NUMBER}"}, {"m": 1.0}, _tags(), {})
    client = registry._client(store)
    logged = client.get_run(run.info.run_id)
    assert logged.data.metrics == {}
    assert logged.data.params == {}
    assert client.list_artifacts(run.info.run_id) == []


def test_default_artifact_root_sits_next_to_a_sqlite_store(tmp_path: Path) -> None:
    assert registry.default_artifact_root(f"sqlite:///{tmp_path}/x/mlflow.db") == tmp_path / "x" / "mlartifacts"
    assert registry.default_artifact_root("http://mlflow.internal:5000") is None


def test_feature_list_hash_depends_on_order() -> None:
    assert feature_list_hash(["a", "b"]) != feature_list_hash(["b", "a"])
    assert len(feature_list_hash(["a", "b"])) == 12


# --------------------------------------------------------------------------- registry


def test_register_sets_challenger_and_promote_moves_champion(store: str, tmp_path: Path) -> None:
    name = DISPUTE_MODEL
    run1 = _train(store, tmp_path / "r1", pr_auc=0.40, marker="first")
    v1 = registry.register(run1, name, "bundle", "first try", tracking_uri=store)
    assert registry.aliases(name, store) == {CHALLENGER: v1}
    assert registry.champion_info(name, store) is None
    with pytest.raises(LookupError, match="no champion"):
        registry.download_champion_bundle(name, tmp_path / "none", store)

    assert registry.promote(name, v1, store) is None
    assert registry.aliases(name, store) == {CHALLENGER: v1, CHAMPION: v1}

    run2 = _train(store, tmp_path / "r2", pr_auc=0.45, marker="second")
    v2 = registry.register(run2, name, "bundle", "second try", tracking_uri=store)
    assert v2 == v1 + 1
    assert registry.aliases(name, store) == {CHALLENGER: v2, CHAMPION: v1}

    assert registry.promote(name, v2, store) == v1
    assert registry.aliases(name, store) == {CHALLENGER: v2, CHAMPION: v2}
    info = registry.champion_info(name, store)
    assert info is not None
    assert (info["version"], info["run_id"], info["artifact_path"]) == (v2, run2, "bundle")
    assert info["source"] == f"runs:/{run2}/bundle"
    assert info["aliases"] == [CHALLENGER, CHAMPION]
    assert info["metrics"]["escalation.test.pr_auc"] == 0.45
    assert info["tags"] == _tags()

    assert registry.promote(name, v1, store) == v2  # rollback
    assert registry.aliases(name, store) == {CHALLENGER: v2, CHAMPION: v1}
    dst = registry.download_champion_bundle(name, tmp_path / "serve", store)
    assert (dst / "model.onnx").read_bytes() == b"\x08\x07first"
    assert (dst / "manifest.json").is_file()
    with pytest.raises(FileExistsError):
        registry.download_champion_bundle(name, dst, store)

    client = registry._client(store)
    assert client.get_run(run2).data.tags[f"registry.{name}.version"] == str(v2)
    assert client.get_model_version(name, str(v2)).tags["data_fingerprint"] == _tags()["data_fingerprint"]
    assert registry.aliases(ESCALATION_MODEL, store) == {}  # the other model is untouched


def test_register_refuses_unknown_names_missing_artifacts_and_uris(store: str, tmp_path: Path) -> None:
    run_id = _train(store, tmp_path / "r", pr_auc=0.3, marker="x")
    with pytest.raises(ValueError, match="unknown registered model"):
        registry.register(run_id, "yujing_escalation", "bundle", "typo", tracking_uri=store)
    with pytest.raises(FileNotFoundError, match="no artifact 'onnx'"):
        registry.register(run_id, ESCALATION_MODEL, "onnx", "wrong path", tracking_uri=store)
    with pytest.raises(FileNotFoundError, match="no logged model 'm-123'"):
        registry.register(run_id, ESCALATION_MODEL, "models:/m-123", "a logged model", tracking_uri=store)
    with pytest.raises(ValueError, match="artifact path inside the run"):
        registry.register(run_id, ESCALATION_MODEL, f"runs:/{run_id}/bundle", "a URI", tracking_uri=store)
    from mlflow.exceptions import MlflowException  # after models.registry: mlflow starts private

    with pytest.raises(MlflowException, match="not found"):
        registry.promote(ESCALATION_MODEL, 7, store)
    assert registry.aliases(ESCALATION_MODEL, store) == {}


def test_functions_default_to_the_store_of_the_last_run(store: str, tmp_path: Path) -> None:
    run_id = _train(store, tmp_path / "r", pr_auc=0.3, marker="x")
    version = registry.register(run_id, ESCALATION_MODEL, "bundle/model.onnx", "a single file")
    assert registry.aliases(ESCALATION_MODEL) == {CHALLENGER: version}


def _stored_paths(db: Path) -> list[str]:
    import sqlite3

    con = sqlite3.connect(db)
    try:
        return [
            str(value)
            for table, column in tracking_store.PATH_COLUMNS
            for (value,) in con.execute(f"SELECT {column} FROM {table}")
            if value
        ]
    finally:
        con.close()


def test_a_moved_store_rewrites_its_paths_and_still_serves_its_champion(store: str, tmp_path: Path) -> None:
    import sqlite3

    run_id = _train(store, tmp_path / "r", pr_auc=0.3, marker="moved")
    registry.promote(DISPUTE_MODEL, registry.register(run_id, DISPUTE_MODEL, "bundle", "x", tracking_uri=store), store)
    old = tmp_path / "store"
    for step, new in enumerate((tmp_path / "elsewhere" / "var", tmp_path / "third")):
        if step == 1:  # a store made before the marker: the folder is inferred from the experiment's location
            con = sqlite3.connect(old / "mlflow.db")
            con.execute(f"DROP TABLE {tracking_store.STORE_TABLE}")
            con.commit()
            con.close()
        new.parent.mkdir(parents=True, exist_ok=True)
        old.rename(new)
        uri = f"sqlite:///{new / 'mlflow.db'}"
        assert registry.open_store(uri) == uri
        paths = _stored_paths(new / "mlflow.db")
        assert not any(p.startswith(str(old)) for p in paths)
        assert registry._client(uri).get_run(run_id).info.artifact_uri == f"{new / 'mlartifacts'}/{run_id}/artifacts"
        dst = registry.download_champion_bundle(DISPUTE_MODEL, tmp_path / f"serve{step}", uri)
        assert (dst / "model.onnx").read_bytes() == b"\x08\x07moved"
        old = new
    assert registry.default_artifact_root(uri) == old / "mlartifacts"


# --------------------------------------------------------------------------- promotion rule


@pytest.mark.parametrize(
    ("candidate", "champion", "margin", "parity_ok", "promote", "reason"),
    [
        (0.30, None, 0.02, True, True, "no champion"),
        (0.31, 0.30, 0.02, True, False, "< champion"),
        (0.90, 0.30, 0.02, False, False, "parity"),
        (0.90, None, 0.02, False, False, "parity"),
        (0.30, 0.10, 0.20, True, True, ">= champion"),  # exactly the margin (0.1 + 0.2 > 0.3 in floats)
        (0.35, 0.30, 0.02, True, True, ">= champion"),
        (0.30, 0.30, 0.0, True, True, ">= champion"),
        (float("nan"), 0.30, 0.02, True, False, "not finite"),
    ],
)
def test_decide_promotion(
    candidate: float, champion: float | None, margin: float, parity_ok: bool, promote: bool, reason: str
) -> None:
    champ = None if champion is None else {"pr_auc": champion}
    decision = decide_promotion({"pr_auc": candidate}, champ, margin=margin, parity_ok=parity_ok)
    assert decision.promote is promote
    assert reason in decision.reason
    assert decision.champion_value == champion
    assert decision.margin == margin
    assert (decision.metric, decision.parity_ok) == ("pr_auc", parity_ok)


def test_decide_promotion_reads_nested_metrics_and_champion_info() -> None:
    candidate = {"escalation": {"test": {"pr_auc": 0.52}, "valid": {"pr_auc": 0.9}}}
    champion = {"version": 3, "metrics": {"escalation.test.pr_auc": 0.50, "escalation.valid.pr_auc": 0.1}}
    decision = decide_promotion(candidate, champion, margin=0.03, parity_ok=True, metric="escalation.test.pr_auc")
    assert (decision.promote, decision.candidate_value, decision.champion_value) == (False, 0.52, 0.50)
    with pytest.raises(ValueError, match=r"escalation\.test\.pr_auc"):
        decide_promotion(candidate, champion, margin=0.03, parity_ok=True)  # 'pr_auc' alone is no key here
    kept = decide_promotion({"pr_auc": 0.9}, {"roc_auc": 0.5}, margin=0.0, parity_ok=True)
    assert not kept.promote
    assert "champion has no finite pr_auc" in kept.reason
    with pytest.raises(ValueError, match="margin"):
        decide_promotion({"pr_auc": 0.9}, None, margin=-0.01, parity_ok=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.promote = True  # type: ignore[misc]


def test_decisions_are_logged_to_the_run_and_followed(store: str, tmp_path: Path) -> None:
    name, metric = ESCALATION_MODEL, "escalation.test.pr_auc"
    run1 = _train(store, tmp_path / "r1", pr_auc=0.40, marker="one")
    v1 = registry.register(run1, name, "bundle", "one", tracking_uri=store)
    first = promotion.apply_promotion_rule(name, v1, margin=0.02, parity_ok=True, metric=metric, tracking_uri=store)
    assert first.promote
    assert registry.aliases(name, store) == {CHALLENGER: v1, CHAMPION: v1}

    run2 = _train(store, tmp_path / "r2", pr_auc=0.41, marker="two")
    v2 = registry.register(run2, name, "bundle", "two", tracking_uri=store)
    second = promotion.apply_promotion_rule(name, v2, margin=0.02, parity_ok=True, metric=metric, tracking_uri=store)
    assert not second.promote
    assert registry.aliases(name, store) == {CHALLENGER: v2, CHAMPION: v1}

    run3 = _train(store, tmp_path / "r3", pr_auc=0.60, marker="three")
    v3 = registry.register(run3, name, "bundle", "three", tracking_uri=store)
    third = promotion.apply_promotion_rule(name, v3, margin=0.02, parity_ok=False, metric=metric, tracking_uri=store)
    assert not third.promote  # better, but parity failed
    assert registry.aliases(name, store) == {CHALLENGER: v3, CHAMPION: v1}

    client = registry._client(store)
    tags = client.get_run(run2).data.tags
    prefix = f"promotion.{name}"
    assert tags[f"{prefix}.decision"] == "keep"
    assert (tags[f"{prefix}.candidate_value"], tags[f"{prefix}.champion_value"]) == ("0.41", "0.4")
    assert (tags[f"{prefix}.margin"], tags[f"{prefix}.metric"], tags[f"{prefix}.version"]) == ("0.02", metric, str(v2))
    local = client.download_artifacts(run2, registry.PROMOTION_FILE, str(tmp_path))
    record = json.loads(Path(local).read_text())[name]
    assert record["decision"] == "keep"
    assert (record["candidate_value"], record["champion_value"], record["margin"]) == (0.41, 0.40, 0.02)
    assert (record["parity_ok"], record["version"]) == (True, v2)
    assert client.get_run(run3).data.tags[f"{prefix}.parity_ok"] == "False"
    assert client.get_model_version(name, str(v3)).tags["promotion"] == "keep"

    # a run that trains both models keeps both decisions in one promotion.json
    other = Decision(True, "no champion yet", 0.8, None, 0.02, "dispute.test.f1", True)
    promotion.log_decision(run2, DISPUTE_MODEL, None, other, store)
    both = json.loads(Path(client.download_artifacts(run2, registry.PROMOTION_FILE, str(tmp_path / "b"))).read_text())
    assert set(both) == {name, DISPUTE_MODEL}
    assert both[name]["decision"] == "keep"

    runs = registry.latest_runs(10, tracking_uri=store)
    assert list(runs["run_id"]) == [run3, run2, run1]
    assert list(runs[metric]) == [0.60, 0.41, 0.40]


# --------------------------------------------------------------------------- the escalation gate


def _evaluation(model: float, rules: float, low: float, high: float, backtest: bool = True) -> dict:
    """``evaluate_escalation``'s dict, reduced to what the gate reads (backtest per the contract)."""
    single = {
        "k": 5,
        "model": {"recall_at_k": 0.30, "pr_auc": 0.02},
        "rules": {"recall_at_k": 0.31, "pr_auc": 0.01},
        "model_minus_rules_ci": {"recall_at_k": [-0.05, 0.03], "pr_auc": [0.001, 0.02]},
    }
    if backtest:
        single["backtest"] = {
            "k": 5,
            "folds": [],
            "pooled": {
                "rows": 1000,
                "positives": 40,
                "model": {"recall_at_k": model},
                "rules": {"recall_at_k": rules},
                "model_minus_rules_ci": {"recall_at_k": [low, high]},
            },
        }
    return single


WEAK = _evaluation(0.33, 0.35, -0.06, 0.02)  # loses to the rules: the interval includes 0
STRONG = _evaluation(0.42, 0.35, 0.02, 0.12)


def test_the_gate_refuses_a_model_that_does_not_surely_beat_the_rules() -> None:
    weak = decide_gate(gate_evidence(WEAK, "recall_at_k"), None, 0.005, parity_ok=True)
    assert not weak.promote and weak.ranking_engine == "rules"
    assert (
        weak.reason
        == "the model's pooled recall@5 − rules interval [-0.060, +0.020] (model 0.330, rules 0.350) includes 0"
    )
    assert engine_sentence(weak.to_dict()).startswith("the scoring rules will rank: the model's pooled recall@5")
    # better on the point estimate is not enough
    unsure = decide_gate(gate_evidence(_evaluation(0.40, 0.35, -0.001, 0.1), "recall_at_k"), None, 0.0, True)
    assert not unsure.promote and "includes 0" in unsure.reason
    below = decide_gate(gate_evidence(_evaluation(0.2, 0.35, -0.2, -0.1), "recall_at_k"), None, 0.0, True)
    assert not below.promote and "lies below 0" in below.reason
    # a strong model whose ONNX export does not match is refused all the same
    broken = decide_gate(gate_evidence(STRONG, "recall_at_k"), None, 0.005, parity_ok=False)
    assert not broken.promote and "parity" in broken.reason and broken.ranking_engine == "rules"


def test_the_gate_promotes_a_model_that_beats_the_rules_and_the_champion() -> None:
    evidence = gate_evidence(STRONG, "recall_at_k")
    first = decide_gate(evidence, None, 0.005, True)
    assert first.promote and first.ranking_engine == "model"
    assert first.reason.endswith("is above 0, and there is no champion yet")
    paired = ChampionEvidence(3, "paired", candidate=0.42, champion=0.40, interval=(0.0, 0.05))
    better = decide_gate(evidence, paired, 0.005, True)
    assert better.promote and "on the same test rows it scores 0.4200 against champion v3's 0.4000" in better.reason
    assert (better.champion_version, better.champion_how, better.champion_interval) == (3, "paired", (0.0, 0.05))
    assert engine_sentence(better.to_dict(), 4).startswith("the model will rank (new champion v4): ")


def test_the_gate_refuses_a_model_that_beats_the_rules_but_not_the_champion() -> None:
    evidence = gate_evidence(STRONG, "recall_at_k")
    same = ChampionEvidence(3, "paired", candidate=0.42, champion=0.418, interval=(-0.01, 0.012))
    kept = decide_gate(evidence, same, 0.005, True)
    assert not kept.promote and kept.ranking_engine == "model"  # the champion keeps ranking, not the rules
    assert "but on the same test rows it scores 0.4200 against champion v3's 0.4180" in kept.reason
    assert engine_sentence(kept.to_dict()).startswith("champion model v3 keeps ranking; this run's model is not")
    # a champion that cannot be compared is kept
    unknown = decide_gate(evidence, ChampionEvidence(3, "logged", 0.42, None), 0.005, True)
    assert not unknown.promote and "compare by hand" in unknown.reason


def test_without_a_paired_score_the_champion_is_compared_on_a_key_both_runs_logged() -> None:
    evidence = gate_evidence(STRONG, "recall_at_k")
    ours = {"escalation.backtest.pooled.model.recall_at_k": 0.42, "escalation.test.model.recall_at_k": 0.30}
    new_style = {"version": 2, "metrics": {"escalation.backtest.pooled.model.recall_at_k": 0.45}}
    champ = logged_champion(new_style, ours, evidence)
    assert (champ.how, champ.key, champ.candidate, champ.champion) == (
        "logged",
        "escalation.backtest.pooled.model.recall_at_k",
        0.42,
        0.45,
    )
    old_style = {"version": 1, "metrics": {"escalation.test.model.recall_at_k": 0.28}}
    champ = logged_champion(old_style, ours, evidence)  # a champion from before the backtest: single test periods
    assert (champ.key, champ.candidate, champ.champion) == ("escalation.test.model.recall_at_k", 0.30, 0.28)
    decision = decide_gate(evidence, champ, 0.005, True)
    assert decision.promote and "its logged escalation.test.model.recall_at_k is 0.3000" in decision.reason


def test_without_a_backtest_the_gate_uses_the_single_split_and_says_so() -> None:
    evidence = gate_evidence(_evaluation(0, 0, 0, 0, backtest=False), "recall_at_k")
    assert isinstance(evidence, GateEvidence)
    assert (evidence.source, evidence.candidate, evidence.rules, evidence.interval) == (
        "single split",
        0.30,
        0.31,
        (-0.05, 0.03),
    )
    assert evidence.logged_key == "escalation.test.model.recall_at_k"
    decision = decide_gate(evidence, None, 0.005, True)
    assert "recall@5 (single test period: no backtest)" in decision.reason and not decision.promote
    assert gate_evidence(_evaluation(0, 0, 0, 0, backtest=False), "pr_auc").interval == (0.001, 0.02)
    with pytest.raises(ValueError, match="cannot gate"):
        gate_evidence(STRONG, "brier")


def test_the_gate_through_mlflow_keeps_the_rules_then_promotes_then_keeps_the_champion(
    store: str, tmp_path: Path
) -> None:
    """Register + apply: a weak model leaves no champion; a strong one becomes it; a weaker one leaves it."""
    name = ESCALATION_MODEL
    weak_run = _train(store, tmp_path / "weak", pr_auc=0.02, marker="weak")
    v1 = registry.register(weak_run, name, "bundle", "weak", tracking_uri=store)
    weak = promotion.apply_gate(name, v1, decide_gate(gate_evidence(WEAK, "recall_at_k"), None, 0.005, True), store)
    assert not weak.promote
    assert registry.aliases(name, store) == {CHALLENGER: v1}  # no champion: the rules rank
    assert registry.champion_info(name, store) is None
    tags = registry._client(store).get_run(weak_run).data.tags
    assert tags[f"promotion.{name}.decision"] == "keep"
    assert tags[f"promotion.{name}.ranking_engine"] == "rules"
    assert tags[f"promotion.{name}.rules_interval"] == "[-0.06, 0.02]"

    pooled = "escalation.backtest.pooled.model.recall_at_k"
    strong_run = _train(store, tmp_path / "strong", pr_auc=0.03, marker="strong", extra={pooled: 0.42})
    v2 = registry.register(strong_run, name, "bundle", "strong", tracking_uri=store)
    evidence = gate_evidence(STRONG, "recall_at_k")
    assert registry.champion_info(name, store) is None
    strong = promotion.apply_gate(name, v2, decide_gate(evidence, None, 0.005, True), store)
    assert strong.promote and registry.aliases(name, store) == {CHALLENGER: v2, CHAMPION: v2}

    # beats the rules (same evidence) but not the champion on its logged pooled recall: refused, champion stays
    third_run = _train(store, tmp_path / "third", pr_auc=0.03, marker="third", extra={pooled: 0.421})
    v3 = registry.register(third_run, name, "bundle", "third", tracking_uri=store)
    champ = logged_champion(registry.champion_info(name, store), {pooled: 0.421}, evidence)
    third = promotion.apply_gate(name, v3, decide_gate(evidence, champ, 0.005, True), store)
    assert not third.promote and third.ranking_engine == "model"
    assert registry.aliases(name, store) == {CHALLENGER: v3, CHAMPION: v2}
    local = registry._client(store).download_artifacts(third_run, registry.PROMOTION_FILE, str(tmp_path))
    record = json.loads(Path(local).read_text())[name]
    assert (record["champion_version"], record["champion_how"], record["champion_value"]) == (v2, "logged", 0.42)
    assert registry._client(store).get_model_version(name, str(v3)).tags["promotion.ranking_engine"] == "model"


# --------------------------------------------------------------------------- personal-data guard


@pytest.mark.parametrize(
    ("filename", "text"),
    [
        ("a.json", json.dumps({"phone": PHONE})),
        ("a.md", f"报警人电话{PHONE}，称被打"),
        ("a.csv", f"row,id\n1,{ID_NUMBER[:-1]}X\n"),
        ("a.html", "<td>+86 135 1234 9668</td>"),
        ("a.txt", f"身份证号：{ID_NUMBER}。"),
        ("a.txt", "电话１３５１２３４９６６８"),  # full-width digits
        ("a.json", json.dumps({"phone": float(PHONE)})),  # a phone that became a float
    ],
)
def test_guard_rejects_unmasked_id_and_phone(tmp_path: Path, filename: str, text: str) -> None:
    path = tmp_path / filename
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PersonalDataError) as caught:
        assert_no_personal_data(path)
    message = str(caught.value)
    assert filename in message
    assert PHONE not in message
    assert ID_NUMBER[:10] not in message


@pytest.mark.parametrize(
    "text",
    [
        "报警人 135****9668 称",
        "身份证 1505**********2829 与 150502********1234",
        "<PHONE> <ID> <NAME>",
        '{"pr_auc": 0.13512349668, "brier": 0.012345678901234567}',  # decimals, not numbers of people
        "fingerprint a13512349668b run 150502199001011234abc",  # inside hex digests and ids
        "2024-04-11 call 110, 120; counts 1351234 966",
    ],
)
def test_guard_accepts_masked_forms_and_innocent_numbers(tmp_path: Path, text: str) -> None:
    path = tmp_path / "report.md"
    path.write_text(text, encoding="utf-8")
    assert_no_personal_data(path)


def test_guard_scans_folders_and_binary_files(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "sub").mkdir(parents=True)
    (bundle / "manifest.json").write_text("{}")
    (bundle / "model.onnx").write_bytes(b"\x08\x07\x00\xff" * 64)
    assert_no_personal_data(bundle)
    (bundle / "sub" / "labels.onnx").write_bytes(b"\x12\x0b" + ID_NUMBER.encode() + b"\x1a\x00")
    with pytest.raises(PersonalDataError, match=r"sub/labels\.onnx: unmasked ID number at byte offset 2"):
        assert_no_personal_data(bundle)
    with pytest.raises(FileNotFoundError):
        assert_no_personal_data(tmp_path / "missing")


# --------------------------------------------------------------------------- curves format


@pytest.mark.parametrize(
    ("curves", "message"),
    [
        ({}, "non-empty object of tasks"),
        ({"escalation": {"model": {}}}, "needs 'pr' and/or 'calibration'"),
        ({"escalation": {"model": {"pr": {"precision": [0.5]}}}}, "recall must be a non-empty list"),
        ({"escalation": {"model": {"pr": {"precision": [1.5], "recall": [0.1]}}}}, "outside"),
        ({"escalation": {"model": {"calibration": {"predicted": [0.1], "observed": [None]}}}}, "not a finite"),
        ({"escalation": {"model": {"calibration": {"predicted": [0.1], "observed": [0.1], "n": [-1]}}}}, "negative"),
        (
            {"escalation": {"model": {"calibration": {"predicted": [0.1], "observed": [0.1], "n": [1, 2]}}}},
            "one row count per bin",
        ),
    ],
)
def test_validate_curves_names_the_problem(curves: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        registry.validate_curves(curves)


def test_validate_curves_accepts_the_documented_example() -> None:
    registry.validate_curves(_curves())
