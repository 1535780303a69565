"""Scheduled retraining and ``yujing models list | history | promote | rollback`` (docs/retraining.md).

Every test works on a copy of the shared trained city's MLflow store (``copy_store``):
the session's store keeps its aliases for the other tests. The copy rewrites the
store's absolute artifact paths, so new runs and downloads stay inside the copy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from models import champions, registry
from pipelines.cli import app

pytestmark = pytest.mark.xdist_group("trained")

ESC, DIS = registry.ESCALATION_MODEL, registry.DISPUTE_MODEL


def copy_store(uri: str, target: Path) -> str:
    """A copy of a SQLite MLflow store (``mlflow.db`` and its ``mlartifacts``): opening it moves its paths there."""
    source = Path(uri.removeprefix("sqlite:///")).parent
    shutil.copytree(source, target)
    return registry.open_store(f"sqlite:///{target / 'mlflow.db'}")


def cli(args: list[str], uri: str, home: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """``yujing ARGS`` in this process against the store ``uri``."""
    from conf import get_settings

    monkeypatch.setenv("YUJING_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, args)
    finally:
        get_settings.cache_clear()


@pytest.fixture(scope="session")  # session: xdist interleaves modules, a module fixture would be rebuilt
def retrained(trained: dict, prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The scheduled training flow run once more on the trained city, against a copy of its store.

    Same data and seed as champion v1: the escalation model is the same model, so it can
    beat neither the rules (on this small city the gate keeps them) nor the champion by the
    margin; the dispute classifier ties its champion. Both are registered, neither promoted.
    """
    from conf import get_settings
    from pipelines.scheduled import scheduled_train

    root = tmp_path_factory.mktemp("retrain")
    uri = copy_store(trained["uri"], root / "store")
    before = champions.champions_now(uri)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("YUJING_HOME", str(root / "var"))  # settings (warnings database ...) of a fresh home
        get_settings.cache_clear()
        try:
            outcome = scheduled_train(
                data_dir=str(trained["root"] / "city"),
                out_dir=str(root / "run"),
                tracking_uri=uri,
                config={"bootstrap_samples": 40, "parity_rows": 10_000},  # the trained fixture's knobs
            )
        finally:
            get_settings.cache_clear()
    return {"root": root, "uri": uri, "before": before, "outcome": outcome}


@pytest.mark.slow
def test_a_scheduled_run_that_loses_is_registered_not_promoted_and_says_so(retrained: dict, trained: dict) -> None:
    from prefect.client.orchestration import get_client

    from pipelines.retraining import ARTIFACT_KEY

    uri, outcome = retrained["uri"], retrained["outcome"]
    assert retrained["before"] == {ESC: 1, DIS: 1}
    assert outcome["promoted"] == {ESC: False, DIS: False}
    assert outcome["champion_after"] == {ESC: 1, DIS: 1}  # the champions did not move
    for name in (ESC, DIS):
        new = outcome["versions"][name]
        assert new > 1 and registry.aliases(name, uri) == {"champion": 1, "challenger": new}  # registered
        tags = registry._client(uri).get_model_version(name, str(new)).tags
        assert tags["promotion"] == "keep" and tags["promotion.reason"] == outcome["decisions"][name]["reason"]
    esc_reason = outcome["decisions"][ESC]["reason"]
    assert ("includes 0" in esc_reason) or ("on the same test rows it scores" in esc_reason)  # rules, or champion
    sentence = outcome["sentence"]
    assert sentence.startswith(f"scheduled training on data {outcome['data_fingerprint']}: ")
    assert f"{ESC} v{outcome['versions'][ESC]} registered, not promoted (champion stays v1): " in sentence
    assert f"{DIS} v{outcome['versions'][DIS]} registered, not promoted (champion stays v1): " in sentence
    assert esc_reason in sentence
    assert champions.history(ESC, uri) == []  # nothing was promoted, so no champion change is recorded
    with get_client(sync_client=True) as client:  # by id: Artifact.get of Prefect 3.8 sends an invalid filter
        published = client.request("GET", "/artifacts/{id}", path_params={"id": outcome["artifact_id"]}).json()
    assert published["key"] == ARTIFACT_KEY and published["flow_run_id"] is not None
    assert f"| {ESC} | v{outcome['versions'][ESC]} | no | v1 | v1 |" in published["data"]
    # the scheduled flow ran the training flow's steps: the same numbers as the plain run of the same city
    report = json.loads((retrained["root"] / "run" / "report.json").read_text(encoding="utf-8"))
    assert report["onnx"]["max_abs_diff"] <= 1e-5
    assert report["escalation"]["model"]["pr_auc"] == trained["report"]["escalation"]["model"]["pr_auc"]


@pytest.mark.slow
def test_promote_and_rollback_are_recorded_and_the_next_ranking_uses_the_restored_champion(
    retrained: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.ranking import resolve_champion

    uri = copy_store(retrained["uri"], tmp_path / "store")
    new = retrained["outcome"]["versions"][ESC]
    home = tmp_path / "var"
    why = "王建国反映 13512345678 的家庭被漏报, v2 catches it"
    promoted = cli(["models", "promote", ESC, str(new), "--why", why, "--by", "li.data"], uri, home, monkeypatch)
    assert promoted.exit_code == 0, promoted.output
    assert f"{ESC}: champion v1 → v{new} (promote by li.data)" in promoted.stdout
    assert registry.aliases(ESC, uri)["champion"] == new
    assert resolve_champion(uri, tmp_path / "cache")[1] == f"{ESC} v{new}"

    rolled = cli(
        ["models", "rollback", "escalation", "--why", "over-warns since the promotion"], uri, home, monkeypatch
    )
    assert rolled.exit_code == 0, rolled.output
    assert f"{ESC}: champion v{new} → v1 (rollback by " in rolled.stdout
    assert registry.aliases(ESC, uri) == {"champion": 1, "challenger": new}
    bundle, label = resolve_champion(uri, tmp_path / "cache")  # what the next ranking (flow or CLI) ranks with
    assert label == f"{ESC} v1" and bundle is not None and bundle.name == f"{ESC}-v1"

    events = champions.history(ESC, uri)
    assert [(e.action, e.from_version, e.to_version) for e in events] == [("promote", 1, new), ("rollback", new, 1)]
    assert events[0].by == "li.data" and events[1].by == champions.default_actor()
    assert "13512345678" not in events[0].why and "王建国" not in events[0].why and "漏报" in events[0].why
    listed = cli(["models", "list", "--name", ESC], uri, home, monkeypatch)
    assert listed.exit_code == 0
    assert f"v{new:<3} challenger" in listed.stdout and "v1   champion" in listed.stdout
    assert "promoted by hand (li.data, " in listed.stdout and "restored by rollback (" in listed.stdout
    history = cli(["models", "history"], uri, home, monkeypatch)
    assert f"promote  v1 → v{new}  by li.data: " in history.stdout and f"rollback v{new} → v1" in history.stdout

    again = cli(["models", "rollback", ESC, "--why", "once more"], uri, home, monkeypatch)  # v1 was the first
    assert again.exit_code == 2 and "no previous champion before v1" in again.stderr
    assert "Traceback" not in again.output


@pytest.mark.slow
def test_the_gates_promotions_join_the_succession(retrained: dict, tmp_path: Path) -> None:
    """A gate promotion recorded by a training run is rolled back like a hand-made one, two steps deep."""
    uri = copy_store(retrained["uri"], tmp_path / "store")
    new = retrained["outcome"]["versions"][ESC]
    registry.promote(ESC, new, uri)
    champions.record_gate(ESC, new, {"promote": True, "reason": "beats the rules"}, 1, "scheduled training", uri)
    assert champions.record_gate(ESC, new, {"promote": False, "reason": "kept"}, 1, "yujing train", uri) is None
    assert champions.succession(ESC, uri) == [1, new]
    champions.promote(ESC, 1, "compare by hand", "li.data", tracking_uri=uri)
    assert champions.succession(ESC, uri) == [1, new, 1]
    assert champions.rollback(ESC, "back to the gate's choice", tracking_uri=uri).to_version == new
    assert champions.rollback(ESC, "and before it", tracking_uri=uri).to_version == 1
    frame = champions.history_frame([ESC], uri)
    assert frame["action"].tolist() == ["gate", "promote", "rollback", "rollback"]
    assert frame["by"].iloc[0] == "scheduled training" and frame["why"].iloc[0] == "beats the rules"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["models", "promote", "yujing-risk", "1", "--why", "x"], "NAME: unknown registered model 'yujing-risk'"),
        (["models", "promote", ESC, "99", "--why", "x"], f"{ESC} has no version 99 (versions: "),
        (["models", "promote", ESC, "latest", "--why", "x"], "VERSION: 'latest' is not a model version"),
        (["models", "promote", ESC, "1"], "--why: a reason is required and was empty"),
        (["models", "rollback", DIS, "--why", "   "], "--why: a reason is required and was empty"),
        (["models", "promote", ESC, "1", "--why", "x"], f"{ESC} v1 is already the champion"),
        (["models", "rollback", DIS, "--why", "x"], f"{DIS} has no previous champion before v1"),
        (["models", "list", "--name", "risk"], "--name: unknown registered model 'risk'"),
    ],
)
def test_bad_input_names_the_key_and_the_fix(
    trained: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    uri = copy_store(trained["uri"], tmp_path / "store")
    result = cli(args, uri, tmp_path / "var", monkeypatch)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {message}") and "fix:" in result.stderr
    assert "Traceback" not in result.output
    assert registry.aliases(ESC, uri)["champion"] == 1  # nothing moved


def test_without_a_store_models_says_so_and_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}"
    result = cli(["models", "list"], uri, tmp_path / "var", monkeypatch)
    assert result.exit_code == 2 and "no MLflow store at" in result.stderr and "yujing train" in result.stderr
    assert not (tmp_path / "none").exists()


def test_the_training_deployment_runs_on_train_cron(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from conf import Settings
    from pipelines.flows import train_deployment

    deployment = train_deployment(Settings(home=tmp_path / "var"))
    assert deployment.name == "yujing-scheduled-train"
    assert deployment.schedules[0].schedule.cron == "0 2 1 * *"  # 02:00 on the 1st, before the 06:00 ranking
    assert deployment.schedules[0].schedule.timezone == "Asia/Shanghai"
    assert deployment.entrypoint.endswith("pipelines/scheduled.py:scheduled_train")
    weekly = train_deployment(Settings(home=tmp_path / "var", train_cron="0 3 * * 0"))
    assert weekly.schedules[0].schedule.cron == "0 3 * * 0"
    bad = cli(["schedule", "--train-cron", "monthly"], "sqlite:///unused", tmp_path / "var", monkeypatch)
    assert bad.exit_code == 2 and bad.stderr.startswith("error: --train-cron: 'monthly' is not a cron of five fields")
