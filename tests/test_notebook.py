"""notebooks/compare_runs.ipynb runs top to bottom against a temporary MLflow store, so it cannot rot.

The store is filled through models.registry itself (two training runs with
curves.json, the first promoted). The kernel is a ``python3`` kernelspec written
to a temp folder that points at this interpreter (the venv's), so a user- or
system-level ``python3`` kernel elsewhere can never be picked up; nothing is
downloaded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import execute_notebook

from models import registry

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "compare_runs.ipynb"


def _curves(precision_mid: float) -> dict:
    return {
        "escalation": {
            "model": {
                "pr": {"precision": [1.0, precision_mid, 0.05], "recall": [0.0, 0.5, 1.0]},
                "calibration": {"predicted": [0.05, 0.3, 0.7], "observed": [0.04, 0.25, 0.6]},
            },
            "rules": {"pr": {"precision": [0.35, 0.2], "recall": [0.25, 0.6]}},
        }
    }


def _fake_training(uri: str, folder: Path, pr_auc: float) -> int:
    folder.mkdir(parents=True)
    bundle = folder / "bundle"
    bundle.mkdir()
    (bundle / "escalation.onnx").write_bytes(b"\x08\x07fake")
    curves = folder / "curves.json"
    curves.write_text(json.dumps(_curves(pr_auc)))
    tags = {
        "code_version": "0.1.0+gtest",
        "data_fingerprint": "0123456789abcdef",
        "lexicon_version": "a1b2c3d4e5f6",
        "feature_list_hash": registry.feature_list_hash(["calls_30d"]),
    }
    metrics = {"escalation": {"test": {"pr_auc": pr_auc, "brier": 0.05}}}
    with registry.start_run(uri, run_name=f"train-{pr_auc}") as run:
        registry.log_training({"num_leaves": 31}, metrics, tags, {"bundle": bundle, "curves.json": curves})
    return registry.register(run.info.run_id, registry.ESCALATION_MODEL, "bundle", f"pr_auc {pr_auc}", uri)


def test_notebook_is_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    assert all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow  # a kernel start plus a fresh MLflow database: ~10-25 s
def test_compare_runs_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel_env: None) -> None:
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "store").mkdir()
    v1 = _fake_training(uri, tmp_path / "run1", pr_auc=0.40)
    registry.promote(registry.ESCALATION_MODEL, v1, uri)
    v2 = _fake_training(uri, tmp_path / "run2", pr_auc=0.45)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    workdir = tmp_path / "cwd"
    workdir.mkdir()

    outputs = execute_notebook(NOTEBOOK, workdir)
    text = "\n".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
        for o in outputs
        if o.output_type != "error"
    )
    assert f"python: {sys.executable}" in text  # the kernel ran the venv's interpreter
    assert f"tracking store: {uri}" in text
    assert f"champion v{v1}" in text
    assert f"challenger v{v2}" in text
    assert "challenger - champion" in text
    assert "escalation.test.pr_auc" in text
    assert "0.45" in text
    assert "0.05" in text  # brier, identical on both sides
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1
    assert list(workdir.iterdir()) == []  # the notebook writes nothing
