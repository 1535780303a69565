"""The registered models as MLflow models: load the champion in a fresh process, score, move the store.

Uses the session's ``trained`` store (champion v1 of both models, logged by the
training flow as pyfunc models holding the ONNX bundle) and its ``ranked``
city; nothing here trains.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models import pyfunc, registry, tracking_store
from models.levels import threshold_levels

pytestmark = pytest.mark.xdist_group("trained")

# A fresh interpreter, as a data scientist's notebook: only the tracking URI comes from outside.
LOAD_AND_PREDICT = textwrap.dedent(
    """
    import sys
    import pandas as pd
    from models import registry  # first: MLflow stays private (telemetry off)
    import mlflow.pyfunc

    registry.open_store()  # MLFLOW_TRACKING_URI; fixes stored paths if the store was moved
    model = mlflow.pyfunc.load_model("models:/yujing-escalation@champion")
    out = model.predict(pd.read_parquet(sys.argv[1]))
    out.to_parquet(sys.argv[2])
    """
)


@contextlib.contextmanager
def _fluent_store(uri: str) -> Iterator[None]:
    """MLflow's process-wide URIs on ``uri`` for the block (``models:/`` URIs resolve through them)."""
    import mlflow

    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(registry.open_store(uri))
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])


def _run_fresh(uri: str, rows: Path, out: Path) -> pd.DataFrame:
    # both stores named: mlflow.set_registry_uri (any earlier run in this process) exports MLFLOW_REGISTRY_URI
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
    done = subprocess.run(
        [sys.executable, "-c", LOAD_AND_PREDICT, str(rows), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return pd.read_parquet(out)


@pytest.fixture(scope="session")  # session: xdist interleaves modules, a module fixture would be rebuilt
def snapshots(ranked: dict, tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    """The ranked city's household feature rows as of the ranking day, with the ranking's probability."""
    from pipelines.preparation import prepare
    from pipelines.ranking import household_features

    day = pd.Timestamp(ranked["result"].date)
    frame, _names, _points, _snaps = household_features(prepare(ranked["city"]), day)
    ranking = pd.read_parquet(ranked["result"].folder / "ranking.parquet")
    probability = ranking.set_index("household_id")["probability"]
    frame = frame.assign(ranked_probability=probability.reindex(frame["household_id"].astype(str)).to_numpy())
    path = tmp_path_factory.mktemp("pyfunc") / "snapshots.parquet"
    frame.drop(columns=["ranked_probability"]).to_parquet(path)
    return frame, path


def test_the_champion_loads_in_a_fresh_process_and_scores_like_the_ranking(
    ranked: dict, snapshots: tuple[pd.DataFrame, Path], tmp_path: Path
) -> None:
    frame, rows = snapshots
    out = _run_fresh(ranked["uri"], rows, tmp_path / "scores.parquet")

    assert len(out) == len(frame) > 1000 and list(out.columns) == list(pyfunc.ESCALATION_OUTPUTS)
    ranked_p = frame["ranked_probability"].to_numpy(np.float64)
    assert np.isfinite(ranked_p).all()  # the ranking scored every household with the model
    assert np.abs(out["probability"].to_numpy() - ranked_p).max() < 1e-6
    assert out["probability"].nunique() > 10 and (out["score"].between(0, 1)).all()
    from conf import get_settings

    expected = threshold_levels(ranked_p, get_settings().level_thresholds)
    assert [None if pd.isna(v) else v for v in out["level"]] == list(expected)
    assert out["level"].notna().sum() > 0


def test_every_version_is_an_mlflow_model_with_signature_example_and_datasets(trained: dict, tmp_path: Path) -> None:
    import mlflow

    uri = trained["uri"]
    client = registry._client(uri)
    bundle = json.loads((trained["bundle"] / "manifest.json").read_text(encoding="utf-8"))
    features = bundle["models"]["escalation"]["features"]
    run_id = trained["report"]["mlflow"]["run_id"]
    folders = {}
    for name in registry.MODEL_NAMES:
        info = registry.champion_info(name, uri)
        assert info is not None and info["source"] == f"models:/{info['model_id']}"
        assert info["artifact_path"] == pyfunc.BUNDLE_PATH and info["run_id"] == run_id
        model = client.get_logged_model(info["model_id"])
        assert (
            model.source_run_id == run_id
            and model.tags["data_fingerprint"] == trained["report"]["provenance"]["data_fingerprint"]
        )
        local = Path(
            mlflow.artifacts.download_artifacts(artifact_uri=model.artifact_location, dst_path=str(tmp_path / name))
        )
        folders[name] = local
        registry.assert_no_personal_data(local)  # the example, the pickled class, the bundle: nothing personal
        requirements = (local / "requirements.txt").read_text(encoding="utf-8")
        assert "onnxruntime==" in requirements and "mlflow==" in requirements
        assert (local / pyfunc.BUNDLE_PATH / "manifest.json").read_bytes() == (
            trained["bundle"] / "manifest.json"
        ).read_bytes()

    with _fluent_store(uri):  # the MLmodel names its logged model, looked up in the process's tracking store
        meta = mlflow.models.get_model_info(str(folders[registry.ESCALATION_MODEL]))
        dispute = mlflow.models.get_model_info(str(folders[registry.DISPUTE_MODEL]))
    assert meta.signature.inputs.input_names() == features
    assert {c.type.name for c in meta.signature.inputs.inputs} == {"double"}
    assert meta.signature.outputs.input_names() == list(pyfunc.ESCALATION_OUTPUTS)
    example = json.loads((folders[registry.ESCALATION_MODEL] / "input_example.json").read_text(encoding="utf-8"))
    assert example["columns"] == features and len(example["data"]) == len(pyfunc.EXAMPLE_QUANTILES)
    assert dispute.signature.inputs.input_names() == ["narrative", "received_at"]
    dispute_example = json.loads((folders[registry.DISPUTE_MODEL] / "input_example.json").read_text("utf-8"))
    assert dispute_example["data"] == [[pyfunc.EXAMPLE_NARRATIVE, "2024-06-01T20:30:00"]]

    inputs = {d.dataset.name: d for d in client.get_run(run_id).inputs.dataset_inputs}
    assert set(inputs) == {"escalation-snapshots", "dispute-incidents"}
    snaps = inputs["escalation-snapshots"]
    schema = json.loads(snaps.dataset.schema)["mlflow_colspec"]
    assert [c["name"] for c in schema] == ["snapshot_date", *features, "label"]
    profile = json.loads(snaps.dataset.profile)  # every labelled snapshot: the folds' rows overlap, so not their sum
    assert profile["num_rows"] >= max(trained["report"]["escalation"]["rows"].values())
    assert profile["num_elements"] == profile["num_rows"] * (len(features) + 2)
    tags = {t.key: t.value for t in snaps.tags}
    assert (
        tags["mlflow.data.context"] == "training"
        and tags["data_fingerprint"] == trained["report"]["provenance"]["data_fingerprint"]
    )
    incident_columns = {c["name"] for c in json.loads(inputs["dispute-incidents"].dataset.schema)["mlflow_colspec"]}
    assert incident_columns.isdisjoint(
        {"narrative", "caller_name", "caller_phone", "caller_id_number", "location_text"}
    )


def test_the_dispute_model_scores_narratives_like_the_bundle(trained: dict) -> None:
    import mlflow

    from models.dispute import CLASSES
    from serving.dispute import load_dispute_model

    with _fluent_store(trained["uri"]):
        model = mlflow.pyfunc.load_model("models:/yujing-dispute@champion")
    texts = [pyfunc.EXAMPLE_NARRATIVE, "报警称：丈夫酒后动手打人，扬言要杀了她", "咨询户口迁移手续"]
    out = model.predict(pd.DataFrame({"narrative": texts}))
    expected = load_dispute_model(trained["bundle"]).predict(texts)
    assert list(out.columns) == list(expected.columns) and {f"p_{c}" for c in CLASSES} <= set(out.columns)
    pd.testing.assert_frame_equal(out, expected)
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="narrative"):
        model.predict(pd.DataFrame({"text": texts}))


def test_a_moved_store_still_serves_its_champion_and_loads_as_a_pyfunc(
    trained: dict, snapshots: tuple[pd.DataFrame, Path], tmp_path: Path
) -> None:
    """Copy the store, open it there, move it again (the first copy gone): every path follows."""
    source = Path(trained["uri"].removeprefix("sqlite:///")).parent
    first, moved = tmp_path / "first", tmp_path / "moved"
    first.mkdir()
    shutil.copy2(source / "mlflow.db", first / "mlflow.db")
    shutil.copytree(source / registry.ARTIFACT_DIR, first / registry.ARTIFACT_DIR)
    registry.open_store(f"sqlite:///{first / 'mlflow.db'}")
    first.rename(moved)
    uri = f"sqlite:///{moved / 'mlflow.db'}"

    bundle = registry.champion_bundle(uri, tmp_path / "cache", registry.ESCALATION_MODEL)
    assert (
        bundle is not None
        and (bundle / "manifest.json").read_bytes() == (trained["bundle"] / "manifest.json").read_bytes()
    )
    con = sqlite3.connect(moved / "mlflow.db")
    try:
        stored = [
            str(value)
            for table, column in tracking_store.PATH_COLUMNS
            for (value,) in con.execute(f"SELECT {column} FROM {table}")
            if value
        ]
        assert con.execute(f"SELECT value FROM {tracking_store.STORE_TABLE}").fetchall() == [(str(moved.resolve()),)]
    finally:
        con.close()
    assert not any(str(first) in value or str(source) in value for value in stored)
    assert any(value.startswith(str(moved.resolve() / registry.ARTIFACT_DIR)) for value in stored)

    import mlflow

    frame, rows = snapshots
    with _fluent_store(uri):
        out = mlflow.pyfunc.load_model("models:/yujing-escalation@champion").predict(pd.read_parquet(rows).head(200))
    assert np.abs(out["probability"].to_numpy() - frame["ranked_probability"].to_numpy()[:200]).max() < 1e-6
