"""Shared fixtures: one small simulated city per test session (per xdist worker)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from simulation.city import City, simulate_city, write_city
from simulation.config import SimConfig

SMALL_CITY = SimConfig(persons=60_000, days=730, seed=7)


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


def coverage_module() -> ModuleType:
    """benchmarks/lexicon_coverage.py as a module: the one loader of the real CAIL text for tests."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "lexicon_coverage.py"
    spec = importlib.util.spec_from_file_location("lexicon_coverage", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["lexicon_coverage"] = module  # dataclasses resolve their module at class creation
    spec.loader.exec_module(module)
    return module
