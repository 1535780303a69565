"""Shared fixtures: one small simulated city per test session (per xdist worker), one trained city.

Tests that use ``trained`` or ``prefect_harness`` carry
``pytest.mark.xdist_group("trained")`` so that, with ``--dist loadgroup``
(the Makefile's), they all run on one worker and the city is trained once.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from simulation.city import City, simulate_city, write_city
from simulation.config import SimConfig

SMALL_CITY = SimConfig(persons=60_000, days=730, seed=7)
TRAINED_CITY = SimConfig(persons=40_000, days=730, seed=21)


def train_config():  # type: ignore[no-untyped-def]
    """The training knobs of the shared trained city (fewer bootstrap samples: tests need speed, not CIs)."""
    from pipelines.training import TrainConfig

    return TrainConfig(bootstrap_samples=40, parity_rows=10_000)


@pytest.fixture(scope="session")
def small_city(tmp_path_factory: pytest.TempPathFactory) -> tuple[City, Path]:
    """A two-year city of 60,000 persons, simulated once and written to a temp folder."""
    city = simulate_city(SMALL_CITY)
    out = tmp_path_factory.mktemp("city")
    write_city(city, out)
    return city, out


@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A private ``python3`` kernelspec running this interpreter, and private Jupyter/IPython folders."""
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "yujing venv", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))  # searched before user and system folders
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    # an earlier MLflow run in this process exported its registry (mlflow.set_registry_uri): not the kernel's
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)


def execute_notebook(path: Path, workdir: Path) -> list:  # type: ignore[type-arg]
    """Run a notebook top to bottom in ``workdir`` (kernel from :func:`kernel_env`); the code cells' outputs."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(workdir)}}).execute()
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def coverage_module() -> ModuleType:
    """benchmarks/lexicon_coverage.py as a module: the one loader of the real CAIL text for tests."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "lexicon_coverage.py"
    spec = importlib.util.spec_from_file_location("lexicon_coverage", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["lexicon_coverage"] = module  # dataclasses resolve their module at class creation
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 40,000-person city trained once: data, MLflow store (champion v1) and run folder ``run1``.

    Whether the promotion gate lets this small city's model rank is the gate's
    business (tests/test_registry.py tests it): v1 of each model is promoted
    explicitly when the gate did not, so the tests downstream always have a
    champion, and ``gate`` records what the gate decided.
    """
    from models import registry
    from pipelines.training import run_training

    root = tmp_path_factory.mktemp("train")
    write_city(simulate_city(TRAINED_CITY), root / "city")
    uri = f"sqlite:///{root / 'store' / 'mlflow.db'}"
    (root / "store").mkdir()
    report = run_training(root / "city", root / "run1", uri, train_config())
    gate = report["mlflow"]["decisions"]
    for name in (registry.ESCALATION_MODEL, registry.DISPUTE_MODEL):
        if not gate[name]["promote"]:
            registry.promote(name, report["mlflow"]["model_versions"][name], uri)
    return {"root": root, "uri": uri, "report": report, "bundle": root / "run1" / "bundle", "gate": gate}


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One Prefect ephemeral API for the session (it can take 10-75 s to start on a busy machine)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(scope="session")
def dask_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One local Dask cluster per test session (2 process workers, 1 thread each; ~4 s to start)."""
    from pipelines.cluster import open_cluster

    with open_cluster("local", workers=2, memory_limit="4GiB", scratch=tmp_path_factory.mktemp("dask")) as client:
        yield client


@pytest.fixture(scope="session")
def ranked(trained: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The trained city ranked once as of the day after its last call, with the run's bundle."""
    from pipelines.ranking import RankConfig, run_ranking

    root = tmp_path_factory.mktemp("ranked")
    store = f"sqlite:///{root / 'warnings.db'}"
    result = run_ranking(
        trained["root"] / "city", None, root / "rankings", store, trained["bundle"], "test v1", RankConfig()
    )
    return {
        **trained,
        "city": trained["root"] / "city",
        "rankings": root / "rankings",
        "store": store,
        "result": result,
    }


def own_service_settings(ranked: dict, root: Path, keys: dict, **overrides: object):  # type: ignore[no-untyped-def]
    """Settings for a service on the ranked city with its own copy of the warnings database and its own keys.

    Tests that move warnings (feedback, fuzzing) must not move the shared
    store's; ``overrides`` are further settings (limits, batch size ...).
    """
    import shutil

    from conf import Settings

    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(ranked["store"].removeprefix("sqlite:///"), root / "warnings.db")
    (root / "keys.json").write_text(json.dumps(keys), encoding="utf-8")
    return Settings(
        home=root / "var",
        api_keys_file=root / "keys.json",
        rankings_dir=ranked["rankings"],
        warnings_db_url=f"sqlite:///{root / 'warnings.db'}",
        serve_bundle=ranked["bundle"],
        reload_interval_seconds=0,
        **overrides,
    )
