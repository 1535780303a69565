"""Shared fixtures: one small simulated city per test session (per xdist worker)."""

from __future__ import annotations

from pathlib import Path

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
