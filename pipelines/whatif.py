"""``yujing whatif``: replay a simulated year with K visits per station per week chosen by a policy.

The design (docs/whatif.md#the-replay): the world behind a simulated city is
regenerated from its manifest's ``SimConfig`` (population, conflicts and the
dynamics' random stream, exactly as ``yujing simulate`` drew them); the
policy ranks each station's households every week from the city's written
records as of that morning (point-in-time snapshots, features/snapshots.py),
and visits the top K; the year's dynamics are then run again with the visits
lowering the escalation hazard (simulation/intervention.py), coupled to the
plain run through shared random numbers, so the difference between the two
arms is the visits' effect and not noise. The result is escalations prevented
per 100 visits, with a bootstrap interval over stations, under the low,
central and high assumed effect sizes.

What the replay ignores: the policy ranks from the plain world's records, so
it does not see that a prevented escalation never made its call (or the
calls of a conflict that went on because of it); and a visit leaves no record
(``visits`` table) that later features would read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulation.city import STAGES
from simulation.config import SIMULATOR_VERSION, SimConfig
from simulation.dynamics import Dynamics, run_dynamics
from simulation.intervention import (
    ACTIONS,
    SCENARIOS,
    Intervention,
    days_since_visit,
    effect,
    expected_prevented,
    household_visits_to_conflicts,
)

POLICIES = ("model", "rules", "random", "oracle")
"""``oracle`` visits the listed households that escalate in the next 30 days (the simulator's truth): a ceiling."""
ORACLE_DAYS = 30
REACH_DAYS = 30
"""An escalation counts as reached when its conflict had a visit in the 30 days before (the report's reach)."""
WHATIF_STEPS = (
    "regenerate the world",
    "load, score and link the records",
    "weekly snapshots and visits",
    "replay the year",
    "write the report",
)
NO_MODEL = (
    "--policy model: no escalation champion in the registry and no --bundle; fix: run `yujing train`, "
    "pass --bundle DIR, or use --policy rules"
)

Progress = Callable[[str], None]


class WhatifError(ValueError):
    """The replay cannot run as asked; the message names the input and the fix."""


@dataclass(frozen=True)
class WhatifConfig:
    """What to replay: K visits per station per week by ``policy``, ``action``'s assumed effects, ``seeds`` replays."""

    visits: int
    policy: str
    action: str = "visit"
    seeds: int = 3
    year: int | None = None
    seed: int = 20240411
    bootstrap: int = 2000

    def __post_init__(self) -> None:
        if self.visits < 1:
            raise WhatifError(f"--visits {self.visits}: a station must visit at least 1 household a week; fix: K >= 1")
        if self.policy not in POLICIES:
            raise WhatifError(f"--policy {self.policy!r} is unknown; fix: choose one of {', '.join(POLICIES)}")
        if self.action not in ACTIONS:
            raise WhatifError(f"--action {self.action!r} is unknown; fix: choose one of {', '.join(ACTIONS)}")
        if self.seeds < 1:
            raise WhatifError(f"--seeds {self.seeds}: at least one replay is needed; fix: --seeds 1 or more")


@dataclass
class World:
    """The simulated city's hidden side, regenerated: conflicts, the plain run, and where each household is."""

    config: SimConfig
    conflicts: pd.DataFrame
    household_ids: np.ndarray
    dynamics_seed: np.random.SeedSequence
    plain: Dynamics

    def rng(self) -> np.random.Generator:
        """The dynamics stage's stream from its start, as ``simulate_city`` drew it."""
        return np.random.default_rng(self.dynamics_seed)


def city_config(data_dir: Path) -> SimConfig:
    """The ``SimConfig`` a simulated city was drawn with, from its manifest; a clear error for any other data."""
    path = data_dir / "manifest.json"
    if not path.is_file():
        raise WhatifError(
            f"{path}: no manifest; whatif replays a simulated city only; "
            "fix: point --data at the output of `yujing simulate`"
        )
    manifest = json.loads(path.read_text())
    if "config" not in manifest:
        raise WhatifError(f"{path}: no 'config' key (not a simulated city); fix: run `yujing simulate` to make one")
    version = manifest.get("simulator_version")
    if version != SIMULATOR_VERSION:
        raise WhatifError(
            f"{path}: drawn by simulator {version}, this code is {SIMULATOR_VERSION}: the world cannot be "
            "regenerated exactly; fix: draw the city again with `yujing simulate`"
        )
    return SimConfig(**manifest["config"])


def regenerate_world(config: SimConfig) -> World:
    """Population, conflicts and the plain dynamics, from the same seeds as ``simulate_city``."""
    from simulation.conflicts import People, draw_conflicts
    from simulation.population import build_population

    seeds = np.random.SeedSequence(config.seed).spawn(len(STAGES))
    stage = dict(zip(STAGES, seeds, strict=True))
    pop = build_population(config, np.random.default_rng(stage["population"]))
    conflicts = draw_conflicts(config, pop, People.of(pop), np.random.default_rng(stage["conflicts"]))
    plain = run_dynamics(config, conflicts, np.random.default_rng(stage["dynamics"]))
    return World(config, conflicts, pop.households["household_id"].to_numpy(), stage["dynamics"], plain)


def replay_window(config: SimConfig, year: int | None) -> tuple[int, int]:
    """Days [first, last] (day 0 = config.start) of the year replayed: the city's last full year by default."""
    start = pd.Timestamp(config.start)
    last_day = start + pd.Timedelta(days=config.days - 1)
    years = sorted({d.year for d in pd.date_range(start, last_day, freq="D")})
    if year is None:
        full = [y for y in years if start <= pd.Timestamp(y, 1, 1) and pd.Timestamp(y, 12, 30) <= last_day]
        year = full[-1] if full else years[-1]
    if year not in years:
        raise WhatifError(f"--year {year}: the city covers {years[0]}..{years[-1]}; fix: pick a year in that range")
    first = max(pd.Timestamp(year, 1, 1), start + pd.Timedelta(days=90))  # a quarter of history before any ranking
    last = min(pd.Timestamp(year, 12, 31), last_day)
    if last <= first:
        raise WhatifError(f"--year {year}: fewer than 90 days of history before it; fix: pick a later year")
    return (first - start).days, (last - start).days


def weekly_lists(
    prepared: Any, world: World, window: tuple[int, int], policy: str, bundle: Path | None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every (household, Monday) the policy could rank in the window, with its order within the station.

    Candidates are the households with a dispute call in the year before the
    snapshot (the model's population); the snapshot reads only records from
    before that morning. ``order`` is 1 for the household the station would
    visit first.
    """
    from features.snapshots import build_snapshots, snapshot_dates
    from models.levels import priority, worst_scenarios
    from models.warning import load_scenarios, points_at_snapshots

    start = pd.Timestamp(world.config.start)
    dates = snapshot_dates(start + pd.Timedelta(days=window[0]), start + pd.Timedelta(days=window[1]))
    snaps = build_snapshots(prepared.calls, prepared.tables, dates)
    frame = snaps.frame
    scenarios = load_scenarios()
    points = points_at_snapshots(prepared.calls, frame["household_id"], frame["snapshot_date"], scenarios)
    for name, values in points.items():
        frame[f"points_{name}"] = values.astype(np.float32)
    rules_points = worst_scenarios(points, scenarios)[2]
    engine: dict[str, Any] = {"policy": policy}
    score = np.full(len(frame), np.nan)
    if policy == "model":
        score, engine = _model_scores(frame, snaps.feature_names + [f"points_{n}" for n in points], bundle)
    elif policy == "oracle":
        score = _oracle_scores(frame, world, start)
    table = frame[["household_id", "snapshot_date", "station_id"]].copy()
    table["day"] = (table["snapshot_date"] - start).dt.days.to_numpy()
    table["priority"] = priority(score, rules_points, table["household_id"].to_numpy())
    if policy != "random":
        table["order"] = table.groupby(["station_id", "day"])["priority"].rank(ascending=False, method="first")
    return table, engine


def _model_scores(frame: pd.DataFrame, names: list[str], bundle: Path | None) -> tuple[np.ndarray, dict[str, Any]]:
    from pipelines.ranking import ESCALATION, load_scorer
    from serving.incident import model_scores

    if bundle is None:
        raise WhatifError(NO_MODEL)
    scorer, why = load_scorer(bundle, names)
    if scorer is None:
        raise WhatifError(f"--policy model: {why}; fix: pass a working --bundle DIR or use --policy rules")
    X = frame[list(scorer.feature_names(ESCALATION))].to_numpy(np.float32)
    raw, _ = model_scores(scorer, X, workers=2)
    entry = scorer.entry(ESCALATION)
    return raw, {"policy": "model", "bundle": str(bundle), "escalation_sha256": entry.sha256}


def _oracle_scores(frame: pd.DataFrame, world: World, start: pd.Timestamp) -> np.ndarray:
    """1 for a household with an escalation of the plain run in the next ORACLE_DAYS days, else 0."""
    esc = world.plain.escalations
    parts = []
    for column in ("household_a", "household_b"):
        household = world.conflicts[column].to_numpy()[esc["conflict_row"].to_numpy()]
        known = household >= 0
        parts.append(
            pd.DataFrame({"household_id": world.household_ids[household[known]], "day": esc["day"].to_numpy()[known]})
        )
    events = pd.concat(parts)
    day = (frame["snapshot_date"] - start).dt.days.to_numpy()
    by_household = events.groupby("household_id")["day"].apply(np.sort).to_dict()
    hit = np.zeros(len(frame))
    for i, (hh, d) in enumerate(zip(frame["household_id"].to_numpy(), day, strict=True)):
        days = by_household.get(hh)
        if days is not None:
            j = np.searchsorted(days, d)
            hit[i] = float(j < len(days) and days[j] < d + ORACLE_DAYS)
    return hit


def choose_visits(lists: pd.DataFrame, k: int, policy: str, seed: int) -> pd.DataFrame:
    """Each station's top ``k`` of each week's list (``random``: k of the list drawn with ``seed``)."""
    if policy == "random":
        noise = np.random.default_rng(seed).random(len(lists))
        order = lists.assign(noise=noise).groupby(["station_id", "day"])["noise"].rank(method="first")
        return lists[order.to_numpy() <= k].reset_index(drop=True)
    return lists[lists["order"].to_numpy() <= k].reset_index(drop=True)


def _per_station(world: World, escalations: pd.DataFrame, window: tuple[int, int], station_of: pd.Series) -> pd.Series:
    """Escalations in the window per station (the station of the first party's household)."""
    esc = escalations[(escalations["day"] >= window[0]) & (escalations["day"] <= window[1])]
    households = world.conflicts["household_a"].to_numpy()[esc["conflict_row"].to_numpy()]
    stations = station_of.reindex(world.household_ids[households]).to_numpy()
    return pd.Series(1, index=stations).groupby(level=0).sum()


def replay(
    world: World,
    visits: pd.DataFrame,
    window: tuple[int, int],
    action: str,
    scenario: str,
    seed: int,
    station_of: pd.Series,
) -> dict[str, Any]:
    """One intervened run of the year against the plain run: escalations per station in both arms."""
    code = pd.Series(np.arange(len(world.household_ids)), index=world.household_ids)
    rows = code.reindex(visits["household_id"].to_numpy()).to_numpy()
    conflict_rows, days = household_visits_to_conflicts(world.conflicts, rows, visits["day"].to_numpy())
    intervention = Intervention(effect(action, scenario), conflict_rows, days, seed=seed)
    treated = run_dynamics(world.config, world.conflicts, world.rng(), intervention)
    prevented = treated.prevented
    in_window = prevented[(prevented["day"] >= window[0]) & (prevented["day"] <= window[1])]
    plain = world.plain.escalations
    plain = plain[(plain["day"] >= window[0]) & (plain["day"] <= window[1])]
    expected = expected_prevented(intervention, plain["conflict_row"].to_numpy(), plain["day"].to_numpy())
    since = days_since_visit(intervention, plain["conflict_row"].to_numpy(), plain["day"].to_numpy())
    return {
        "plain": _per_station(world, world.plain.escalations, window, station_of),
        "treated": _per_station(world, treated.escalations, window, station_of),
        "visits": visits.groupby("station_id").size(),
        "prevented_direct": len(in_window),
        "expected_direct": float(expected.sum()),
        "reached_30d": int((since <= REACH_DAYS).sum()),
        "conflicts_reached": len(np.unique(conflict_rows)),
    }


def per_100(
    plain: pd.Series, treated: pd.Series, visits: pd.Series, stations: list[str], samples: int, seed: int
) -> dict[str, float]:
    """Escalations prevented per 100 visits, with a 95 % bootstrap interval over stations (paired arms)."""
    p = plain.reindex(stations, fill_value=0).to_numpy(np.float64)
    t = treated.reindex(stations, fill_value=0).to_numpy(np.float64)
    v = visits.reindex(stations, fill_value=0).to_numpy(np.float64)
    point = 100.0 * (p - t).sum() / max(v.sum(), 1.0)
    pick = np.random.default_rng(seed).integers(0, len(stations), (samples, len(stations)))
    boot = 100.0 * (p - t)[pick].sum(axis=1) / np.maximum(v[pick].sum(axis=1), 1.0)
    low, high = np.percentile(boot, [2.5, 97.5])
    return {
        "per_100_visits": round(float(point), 3),
        "low": round(float(low), 3),
        "high": round(float(high), 3),
        "prevented": round(float((p - t).sum()), 2),
        "plain_escalations": int(p.sum()),
        "visits": int(v.sum()),
        "share_prevented": round(float((p - t).sum() / max(p.sum(), 1.0)), 4),
    }


def run_whatif(
    data_dir: Path,
    config: WhatifConfig,
    bundle: Path | None,
    model_version: str | None = None,
    progress: Progress = lambda _: None,
) -> dict[str, Any]:
    """The whole replay: world, records, weekly visits, intervened runs per scenario and seed; the result dict."""
    from pipelines.preparation import code_version, prepare

    if config.policy == "model" and bundle is None:
        raise WhatifError(NO_MODEL)
    clock = time.perf_counter()
    timings: dict[str, float] = {}

    def done(stage: str) -> None:
        nonlocal clock
        timings[stage] = round(time.perf_counter() - clock, 2)
        clock = time.perf_counter()

    progress(WHATIF_STEPS[0])
    sim = city_config(data_dir)
    window = replay_window(sim, config.year)
    world = regenerate_world(sim)
    done(WHATIF_STEPS[0])
    progress(WHATIF_STEPS[1])
    prepared = prepare(data_dir)
    registered = prepared.tables["households"]["household_id"].to_numpy()
    if len(registered) != len(world.household_ids) or not np.array_equal(registered, world.household_ids):
        raise WhatifError(
            f"{data_dir}: its households are not the ones its manifest's config draws (edited or not simulated); "
            "fix: draw the city again with `yujing simulate`"
        )
    addresses = prepared.tables["addresses"].set_index("address_id")["station_id"]
    station_of = pd.Series(
        addresses.reindex(prepared.tables["households"]["address_id"]).to_numpy(), index=world.household_ids
    )
    stations = sorted(addresses.dropna().unique().tolist())
    done(WHATIF_STEPS[1])
    progress(WHATIF_STEPS[2])
    lists, engine = weekly_lists(prepared, world, window, config.policy, bundle)
    if model_version:
        engine["model_version"] = model_version
    done(WHATIF_STEPS[2])
    progress(WHATIF_STEPS[3])
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in SCENARIOS}
    visits_by_seed = []
    total = config.seeds * len(SCENARIOS)
    for i in range(config.seeds):
        seed = config.seed + i
        visits = choose_visits(lists, config.visits, config.policy, seed)
        visits_by_seed.append(visits)
        for scenario in SCENARIOS:
            progress(f"replay fold {sum(map(len, runs.values())) + 1}/{total} ({scenario} effect, seed {seed})")
            runs[scenario].append(replay(world, visits, window, config.action, scenario, seed, station_of))
    done(WHATIF_STEPS[3])
    result = summarise(config, sim, window, runs, stations, engine)
    result["timings"] = timings
    result["code_version"] = code_version()
    result["data_fingerprint"] = prepared.fingerprint
    result["data_dir"] = str(data_dir)
    return result


def summarise(
    config: WhatifConfig,
    sim: SimConfig,
    window: tuple[int, int],
    runs: dict[str, list[dict[str, Any]]],
    stations: list[str],
    engine: dict[str, Any],
) -> dict[str, Any]:
    """Per scenario: the per-100 estimate pooled over seeds (mean per station) and each seed's own figure."""
    start = pd.Timestamp(sim.start)
    table = {}
    for scenario, items in runs.items():
        mean = {
            key: sum(r[key].reindex(stations, fill_value=0) for r in items) / len(items)
            for key in ("plain", "treated", "visits")
        }
        pooled = per_100(mean["plain"], mean["treated"], mean["visits"], stations, config.bootstrap, config.seed)
        per_seed = [
            per_100(r["plain"], r["treated"], r["visits"], stations, 1, config.seed)["per_100_visits"] for r in items
        ]
        fx = effect(config.action, scenario)
        table[scenario] = {
            **pooled,
            "hazard_ratio": fx.hazard_ratio,
            "decay_days": fx.decay_days,
            "per_seed": per_seed,
            "prevented_direct_mean": round(float(np.mean([r["prevented_direct"] for r in items])), 2),
            "expected_direct": round(float(np.mean([r["expected_direct"] for r in items])), 3),
            "expected_direct_per_100_visits": round(
                float(100 * np.mean([r["expected_direct"] for r in items]) / max(pooled["visits"], 1)), 4
            ),
            "conflicts_reached_mean": round(float(np.mean([r["conflicts_reached"] for r in items])), 1),
            "escalations_visited_30d_before": round(float(np.mean([r["reached_30d"] for r in items])), 1),
        }
    return {
        "parameters": asdict(config),
        "window": {
            "first": f"{start + pd.Timedelta(days=window[0]):%Y-%m-%d}",
            "last": f"{start + pd.Timedelta(days=window[1]):%Y-%m-%d}",
        },
        "city": {"persons": sim.persons, "seed": sim.seed, "simulator_version": SIMULATOR_VERSION},
        "stations": len(stations),
        "engine": engine,
        "scenarios": table,
        "central": table["central"],
    }


def write_whatif(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """``whatif.json`` (everything) and ``whatif.md`` (the sensitivity table and the assumptions) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "whatif.json", out_dir / "whatif.md"
    json_path.write_text(json.dumps(result, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    md_path.write_text(markdown(result), encoding="utf-8")
    return [json_path, md_path]


def markdown(result: dict[str, Any]) -> str:
    """The page a reader opens: what was replayed, the sensitivity table, what the numbers assume."""
    p, w, c = result["parameters"], result["window"], result["central"]
    engine = result["engine"]
    lines = [
        f"# What if each station made {p['visits']} {p['action']}s a week, chosen by the {p['policy']} policy?",
        "",
        f"Replay of {w['first']} .. {w['last']} in the simulated city of {result['city']['persons']:,} persons "
        f"(seed {result['city']['seed']}, simulator {result['city']['simulator_version']}), {result['stations']} "
        f"stations, {p['seeds']} replay seed(s) from {p['seed']}. Policy: {p['policy']}"
        + (f" ({engine.get('model_version') or engine.get('bundle')})" if p["policy"] == "model" else "")
        + ".",
        "",
        f"**Central assumption: {c['per_100_visits']:.3f} escalations prevented per 100 visits "
        f"(95 % interval over stations {c['low']:.3f} .. {c['high']:.3f}); {c['prevented']:.1f} of "
        f"{c['plain_escalations']} escalations ({100 * c['share_prevented']:.1f} %) for {c['visits']:,} visits.**",
        "",
        "## Sensitivity to the assumed effect",
        "",
        "| assumed effect | hazard ratio on the day | fades over (days) | prevented per 100 visits | 95 % interval |"
        " escalations prevented | of the year's escalations | expected directly prevented per 100 visits |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for name, row in result["scenarios"].items():
        lines.append(
            f"| {name} | {row['hazard_ratio']:.2f} | {row['decay_days']:.0f} | {row['per_100_visits']:.3f} | "
            f"{row['low']:.3f} .. {row['high']:.3f} | {row['prevented']:.1f} | {100 * row['share_prevented']:.1f} % | "
            f"{row['expected_direct_per_100_visits']:.4f} |"
        )
    lines += [
        "",
        f"Reach: {c['escalations_visited_30d_before']:.0f} of the {c['plain_escalations']} escalations of the year "
        f"without visits had a visit to their conflict in the {REACH_DAYS} days before; "
        f"{c['conflicts_reached_mean']:.0f} conflicts were visited at least once. "
        "*Expected directly prevented* sums 1 - m(t) over the escalations without visits: the same quantity "
        "without the coin's noise and without the later escalations of conflicts that went on.",
    ]
    lines += [
        "",
        "The interval resamples stations (both arms together); it does not cover the uncertainty of the "
        "assumed effect itself, which is what the rows above show. Each seed's central figure: "
        + ", ".join(f"{v:.3f}" for v in c["per_seed"])
        + ".",
        "",
        "## What this assumes",
        "",
        "- A visit multiplies the conflict's daily escalation hazard by the hazard ratio on the day, fading "
        "back exponentially; the numbers are assumptions with sources in docs/whatif.md, not measurements.",
        "- A visit to either party's household reaches every conflict of that household active that day.",
        "- The policy ranks from the plain world's records: it does not see that a prevented escalation "
        "never made its call, and visits leave no record that later features would read.",
        "- The two arms share every random number (coupling), so the difference is the visits' effect.",
        "",
        f"Code {result.get('code_version')}, data {result.get('data_fingerprint')}.",
        "",
    ]
    return "\n".join(lines)
