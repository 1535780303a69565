"""The intervention model and ``yujing whatif``: coupling, no-visit identity, monotone effects, policies, errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from simulation.city import STAGES, simulate_city, write_city
from simulation.config import SimConfig
from simulation.conflicts import People, draw_conflicts
from simulation.dynamics import run_dynamics
from simulation.intervention import (
    ACTIONS,
    Effect,
    Intervention,
    coin,
    effect,
    expected_prevented,
    household_visits_to_conflicts,
)
from simulation.population import build_population

WORLD = SimConfig(persons=30_000, days=730, seed=3)
PLAIN_FINGERPRINT = {"calls": "2aa162e61124096d", "escalations": "9f01948cfa360016", "mediations": "10809a023a437604"}
"""``run_dynamics`` on WORLD as the code before the intervention hook drew it (75 escalations, 1,244 calls)."""
CITY_FINGERPRINT = {
    "incidents": "7c768036c1df1c07",
    "cases": "1d38695be5953084",
    "visits": "34392367bc2799c4",
    "truth/escalations": "3c4963a3765e276f",
    "truth/conflicts": "51fa690e4a236678",
}
"""``simulate_city(SimConfig(persons=4000, days=400, seed=7))`` as the code before the hook wrote it."""


def _hash(frame: pd.DataFrame) -> str:
    values = pd.util.hash_pandas_object(frame.reset_index(drop=True), index=False).to_numpy()
    return hashlib.sha256(values.tobytes()).hexdigest()[:16]


@pytest.fixture(scope="session")  # session: xdist interleaves modules, a module fixture would be rebuilt
def world() -> tuple[pd.DataFrame, np.random.SeedSequence]:
    """WORLD's conflicts and the seed of its dynamics stream, as simulate_city draws them."""
    seeds = dict(zip(STAGES, np.random.SeedSequence(WORLD.seed).spawn(len(STAGES)), strict=True))
    pop = build_population(WORLD, np.random.default_rng(seeds["population"]))
    conflicts = draw_conflicts(WORLD, pop, People.of(pop), np.random.default_rng(seeds["conflicts"]))
    return conflicts, seeds["dynamics"]


@pytest.fixture(scope="session")  # session: xdist interleaves modules, a module fixture would be rebuilt
def plain(world: tuple):  # type: ignore[no-untyped-def]
    """WORLD's dynamics without visits."""
    conflicts, seed = world
    return run_dynamics(WORLD, conflicts, np.random.default_rng(seed))


@pytest.fixture(scope="session")  # session: xdist interleaves modules, a module fixture would be rebuilt
def city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """WORLD written as a city (the replay regenerates the world from its manifest)."""
    out = tmp_path_factory.mktemp("whatif") / "city"
    write_city(simulate_city(WORLD), out)
    return out


@pytest.fixture(scope="session")  # session: xdist interleaves modules, a module fixture would be rebuilt
def replayed(city: Path) -> dict:
    """The regenerated world, its records prepared once, and a replay function per policy."""
    from pipelines.preparation import prepare
    from pipelines.whatif import city_config, regenerate_world, replay_window

    sim = city_config(city)
    world = regenerate_world(sim)
    prepared = prepare(city)
    addresses = prepared.tables["addresses"].set_index("address_id")["station_id"]
    station_of = pd.Series(
        addresses.reindex(prepared.tables["households"]["address_id"]).to_numpy(), index=world.household_ids
    )
    return {"world": world, "prepared": prepared, "window": replay_window(sim, None), "station_of": station_of}


def test_plain_run_and_written_city_are_unchanged_by_the_hook(plain) -> None:  # type: ignore[no-untyped-def]
    dyn = plain
    assert {k: _hash(getattr(dyn, k)) for k in PLAIN_FINGERPRINT} == PLAIN_FINGERPRINT
    assert dyn.prevented is None
    small = simulate_city(SimConfig(persons=4000, days=400, seed=7))
    tables = {**small.tables, **{f"truth/{k}": v for k, v in small.truth.items()}}
    assert {k: _hash(tables[k]) for k in CITY_FINGERPRINT} == CITY_FINGERPRINT


def test_visits_without_effect_or_without_visits_replay_the_plain_run_exactly(world: tuple, plain) -> None:  # type: ignore[no-untyped-def]
    conflicts, seed = world
    every_conflict = conflicts["conflict_row"].to_numpy()
    no_effect = Intervention(Effect("visit", "none", 1.0, 30.0), every_conflict, conflicts["start_day"].to_numpy())
    no_visits = Intervention(effect("visit", "high"), np.empty(0, np.int64), np.empty(0, np.int64))
    for intervention in (no_effect, no_visits):
        same = run_dynamics(WORLD, conflicts, np.random.default_rng(seed), intervention)
        for part in ("calls", "escalations", "mediations"):
            pd.testing.assert_frame_equal(getattr(same, part), getattr(plain, part))
        assert len(same.prevented) == 0


def test_a_visit_lowers_the_hazard_by_the_documented_ratio_and_fades() -> None:
    fx = effect("visit", "central")
    tracker = Intervention(fx, np.array([2]), np.array([10])).tracker(4)
    tracker.advance(10)
    assert tracker.multiplier(np.array([2, 3])) == pytest.approx([fx.hazard_ratio, 1.0])
    tracker.advance(10 + int(fx.decay_days))
    assert tracker.multiplier(np.array([2]))[0] == pytest.approx(1 - (1 - fx.hazard_ratio) / np.e)
    for action in ACTIONS:  # low <= central <= high in strength
        ratios = [effect(action, s).hazard_ratio for s in ("low", "central", "high")]
        assert ratios == sorted(ratios, reverse=True) and all(0 < r < 1 for r in ratios)
    assert np.array_equal(coin(5, np.arange(4), 9), coin(5, np.arange(4), 9))
    many = coin(5, np.arange(10_000), 9)
    assert many.min() >= 0 and many.max() < 1 and many.mean() == pytest.approx(0.5, abs=0.02)


def test_a_stronger_effect_prevents_at_least_as_many_escalations(world: tuple, plain) -> None:  # type: ignore[no-untyped-def]
    conflicts, seed = world
    # visit every household of a conflict every week of the second year
    days = np.arange(365, 730, 7)
    households = np.unique(conflicts["household_a"].to_numpy())
    rows, when = household_visits_to_conflicts(
        conflicts, np.repeat(households, len(days)), np.tile(days, len(households))
    )
    counts, expected = [], []
    for scenario in ("low", "central", "high"):
        intervention = Intervention(effect("visit", scenario), rows, when, seed=11)
        treated = run_dynamics(WORLD, conflicts, np.random.default_rng(seed), intervention)
        counts.append(len(treated.prevented))
        expected.append(
            expected_prevented(intervention, plain.escalations["conflict_row"], plain.escalations["day"]).sum()
        )
        # what a visit prevents is an escalation of the plain run, on the day the plain run had it
        assert set(map(tuple, treated.prevented.to_numpy())) <= set(map(tuple, plain.escalations.to_numpy()))
    assert counts == sorted(counts) and counts[-1] > counts[0]
    assert expected == sorted(expected) and expected[0] > 0


def test_an_oracle_prevents_more_per_visit_than_random_visits(replayed: dict) -> None:
    from pipelines.whatif import choose_visits, replay, weekly_lists

    w, window = replayed["world"], replayed["window"]
    per_visit = {}
    for policy in ("oracle", "random"):
        lists, _ = weekly_lists(replayed["prepared"], w, window, policy, None)
        runs = [
            replay(w, visits, window, "visit", "central", seed, replayed["station_of"])
            for seed in (1, 2)
            for visits in [choose_visits(lists, 1, policy, seed)]
        ]
        assert all(r["visits"].sum() > 0 for r in runs)
        per_visit[policy] = np.mean([r["expected_direct"] / r["visits"].sum() for r in runs])
    # the oracle's visits find the households that escalate next month; random ones find them by chance
    assert per_visit["oracle"] > 1.2 * per_visit["random"] > 0


def _cli(args: list[str], home: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from conf import get_settings

    monkeypatch.setenv("YUJING_HOME", str(home))
    # mlflow.set_tracking_uri (any earlier run in this process) also sets the variable: the home's store only
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, ["whatif", *args])
    finally:
        get_settings.cache_clear()


def test_whatif_command_writes_the_report(city: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    args = ["--visits", "2", "--policy", "rules", "--seeds", "1", "--data", str(city), "--out", str(out)]
    result = _cli(args, tmp_path / "var", monkeypatch)
    assert result.exit_code == 0, result.output
    assert "prevented per 100 visits" in result.stdout and f"wrote {out / 'whatif.json'}" in result.stdout
    written = json.loads((out / "whatif.json").read_text())
    assert set(written["scenarios"]) == {"low", "central", "high"}
    assert written["window"] == {"first": "2024-01-01", "last": "2024-12-30"}
    assert written["parameters"]["policy"] == "rules" and written["data_fingerprint"]
    central = written["scenarios"]["central"]
    assert central["plain_escalations"] > 0 and central["low"] <= central["per_100_visits"] <= central["high"]
    page = (out / "whatif.md").read_text()
    assert "| central | 0.85 | 30 |" in page and "## What this assumes" in page


def test_the_replay_is_deterministic_given_the_seed(replayed: dict) -> None:
    from pipelines.whatif import choose_visits, replay, weekly_lists

    w, window = replayed["world"], replayed["window"]
    lists = [weekly_lists(replayed["prepared"], w, window, "rules", None)[0] for _ in range(2)]
    pd.testing.assert_frame_equal(lists[0], lists[1])
    picks = [choose_visits(lists[0], 1, "random", seed) for seed in (4, 4, 5)]
    pd.testing.assert_frame_equal(picks[0], picks[1])
    assert not picks[0].equals(picks[2])
    runs = [replay(w, picks[0], window, "visit", "high", 4, replayed["station_of"]) for _ in range(2)]
    for key in ("plain", "treated", "visits"):
        pd.testing.assert_series_equal(runs[0][key], runs[1][key])
    assert runs[0]["expected_direct"] == runs[1]["expected_direct"] > 0


def test_bad_arguments_fail_with_the_option_and_the_fix(
    city: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.commands import whatif as command
    from pipelines.whatif import POLICIES, WhatifConfig, WhatifError, run_whatif
    from simulation.intervention import ACTIONS as MODEL_ACTIONS

    assert command.POLICIES == POLICIES and command.ACTIONS == MODEL_ACTIONS
    home = tmp_path / "var"
    cases = {
        ("--visits", "0"): "--visits: 0: a station must visit at least one household a week",
        ("--policy", "best"): "--policy: 'best' is unknown; fix: choose one of model, rules, random, oracle",
        ("--action", "arrest"): "--action: 'arrest' is unknown",
        ("--policy", "rules", "--data", str(city), "--year", "2019"): "--year 2019: the city covers 2023..2024",
        ("--policy", "model", "--data", str(city)): "--policy model: no escalation champion in the registry",
    }
    for args, message in cases.items():
        result = _cli(list(args), home, monkeypatch)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr and "Traceback" not in result.output
    with pytest.raises(WhatifError, match="at least 1 household"):
        WhatifConfig(0, "rules")
    with pytest.raises(WhatifError, match="no escalation champion in the registry and no --bundle"):
        run_whatif(city, WhatifConfig(1, "model"), None)
    not_simulated = tmp_path / "export"
    not_simulated.mkdir()
    with pytest.raises(WhatifError, match="no manifest; whatif replays a simulated city only"):
        run_whatif(not_simulated, WhatifConfig(1, "rules"), None)


@pytest.mark.xdist_group("trained")
def test_the_model_policy_ranks_with_the_champion_bundle(trained: dict) -> None:
    from pipelines.whatif import WhatifConfig, run_whatif

    result = run_whatif(trained["root"] / "city", WhatifConfig(2, "model", seeds=1), trained["bundle"], "test v1")
    assert result["engine"]["policy"] == "model" and result["engine"]["model_version"] == "test v1"
    assert len(result["engine"]["escalation_sha256"]) == 64
    central = result["scenarios"]["central"]
    assert central["visits"] > 0 and central["plain_escalations"] > 0
    assert central["expected_direct"] > 0
