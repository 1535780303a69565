"""notebooks/monitoring.ipynb runs top to bottom against the trained city's MLflow store, so it cannot rot.

Like tests/test_notebook.py: a private ``python3`` kernelspec running this
interpreter (``kernel_env``), nothing downloaded, the notebook writes nothing.
The store is the ``trained`` fixture's: its training run logged
``disparity.json`` and ``capacity.json`` (pipelines/audit.py), and
``drift.json`` when drift monitoring recorded one; the notebook shows the
drift tables and figure, or says the run has none and goes on.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import nbformat
import pandas as pd
import pytest
from conftest import execute_notebook

from models import registry

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "monitoring.ipynb"


def _text(outputs: list) -> str:
    return "\n".join(
        str(o.get("text", ""))
        + str(o.get("data", {}).get("text/plain", ""))
        + str(o.get("data", {}).get("text/html", ""))
        for o in outputs
    )


def _logged_json(uri: str, run_id: str, name: str) -> dict:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return json.loads(Path(registry._client(uri).download_artifacts(run_id, name, tmp)).read_text(encoding="utf-8"))


DRIFT = {
    "reference": {"available": True},
    "thresholds": {"psi_warn": 0.1, "psi_alert": 0.25},
    "features": [
        {"name": "calls_30d", "psi": 0.31, "status": "alert"},
        {"name": "calls_90d", "psi": 0.02, "status": "ok"},
        {"name": "new_feature", "psi": None, "status": "ok"},
    ],
    "score": {"psi": 0.12, "status": "warn"},
    "text": [{"name": "ood_share", "value": 0.2, "reference": 0.05, "status": "alert"}],
    "volume": [{"station_id": "S001", "calls": 40, "expected": 20.0, "ratio": 2.0, "status": "alert"}],
    "breaches": [{"kind": "feature", "name": "calls_30d", "value": 0.31, "threshold": 0.25, "status": "alert"}],
    "status": "alert",
}


def test_the_drift_cells_show_a_measured_drift_json_worst_first() -> None:
    """The notebook's own drift cells on a drift.json in the drift helper's shape (the trained store's first run
    has no champion to measure against), in this process: tables worst first, one figure with readable axes."""
    cells = [c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code"]
    drift_cells = [c for c in cells if "measured" in c]
    assert len(drift_cells) == 2
    shown, figures = [], []
    namespace = {"drift": DRIFT, "RUN_ID": "r1", "pd": pd, "plt": plt, "display": shown.append, "show": figures.append}
    for source in drift_cells:
        exec(compile(source, "monitoring.ipynb", "exec"), namespace)  # the notebook's committed code
    assert shown[0]["feature"].tolist() == ["calls_30d", "calls_90d", "new_feature"]  # alert first
    assert shown[1]["name"].tolist() == ["ood_share"] and shown[2]["threshold"].tolist() == [0.25]
    (fig,) = figures
    psi_ax, volume_ax = fig.axes
    assert psi_ax.get_xlabel() == "population stability index (PSI, unitless)" and len(psi_ax.patches) == 2
    assert volume_ax.get_ylabel() == "calls ÷ expected from the station's own history"
    assert [t.get_text() for t in psi_ax.texts] == ["0.1: warn", "0.25: alert"]
    plt.close(fig)


def test_monitoring_notebook_is_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow  # a kernel start and three artifact downloads: ~15-30 s
@pytest.mark.xdist_group("trained")
def test_monitoring_notebook_reads_drift_disparity_and_capacity(
    trained: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel_env: None
) -> None:
    uri = trained["uri"]
    runs = registry.latest_runs(50, tracking_uri=uri)
    run_id = runs[runs["disparity.flagged"].notna()].iloc[0]["run_id"]  # the newest audited training run
    logged = {a.path for a in registry._client(uri).list_artifacts(run_id)}
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    workdir = tmp_path / "cwd"
    workdir.mkdir()

    outputs = execute_notebook(NOTEBOOK, workdir)
    assert not [o for o in outputs if o.output_type == "error"]
    text = _text(outputs)
    assert f"tracking store: {uri}" in text
    assert f"latest training run: {run_id}" in text
    assert "disparity.json yes, capacity.json yes" in text
    figures = 2
    if "drift.json" not in logged:
        assert f"run {run_id} has no drift.json" in text
    elif _logged_json(uri, run_id, "drift.json").get("reference", {}).get("available", True):
        assert "drift status:" in text and "score PSI" in text
        figures = 3
    else:  # the first run of a store has no champion to compare with
        assert "drift status: ok; not measured:" in text
    assert "disparity table, flagged first:" in text
    assert "status (model)" in text and "status (rules)" in text and "warning_rate" in text
    for attribute in ("county", "ethnicity", "sex", "residence", "age_band"):
        assert attribute in text
    assert "capacity table (recall at k visits per station):" in text and "per week" in text
    assert "recall at 5 visits per county:" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == figures
    assert list(workdir.iterdir()) == []  # the notebook writes nothing
