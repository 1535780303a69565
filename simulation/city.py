"""The synthetic city end to end: draw it, split exported tables from truth, write it.

Each stage draws from its own child of one ``SeedSequence``, so a city is a
pure function of its :class:`SimConfig` (same seed, byte-identical tables) and
changing one stage does not reshuffle the others.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.fingerprint import dataset_fingerprint, file_sha256
from features.schema import TABLES
from simulation.config import SIMULATOR_VERSION, SimConfig
from simulation.conflicts import People, draw_conflicts, neighbour_pairs
from simulation.dynamics import run_dynamics
from simulation.incidents import assemble_dispute_calls, draw_background_calls, finish_incidents
from simulation.narratives import render_calls
from simulation.population import build_population
from simulation.records import build_cases, build_relations, build_visits

Progress = Callable[[str], None]
STAGES = ("population", "conflicts", "dynamics", "background", "incidents", "narratives", "records")


@dataclass
class City:
    """Exported tables (the data contract) and the truth only the simulator knows."""

    config: SimConfig
    tables: dict[str, pd.DataFrame]
    truth: dict[str, pd.DataFrame]
    timings: dict[str, float] = field(default_factory=dict)


def _quiet(_: str) -> None:
    return None


def simulate_city(config: SimConfig, progress: Progress = _quiet) -> City:
    """Draw a whole city; ``progress`` receives one line per stage."""
    seeds = np.random.SeedSequence(config.seed).spawn(len(STAGES))
    rngs = {name: np.random.default_rng(s) for name, s in zip(STAGES, seeds, strict=True)}
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def done(stage: str, what: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = round(now - clock, 3)
        clock = now
        progress(f"{stage:<11} {what} ({timings[stage]:.1f}s)")

    pop = build_population(config, rngs["population"])
    done("population", f"{len(pop.persons):,} persons in {len(pop.households):,} households")
    people = People.of(pop)
    pairs = neighbour_pairs(pop)
    conflicts = draw_conflicts(config, pop, people, rngs["conflicts"])
    done("conflicts", f"{len(conflicts):,} latent conflicts")
    dyn = run_dynamics(config, conflicts, rngs["dynamics"])
    done(
        "dynamics",
        f"{len(dyn.calls):,} dispute calls, {len(dyn.escalations):,} escalations (burn-in included)",
    )
    background = draw_background_calls(config, pop, rngs["background"])
    done("background", f"{len(background):,} other calls")
    disputes = assemble_dispute_calls(config, pop, conflicts, dyn.calls, pairs, rngs["incidents"])
    calls = finish_incidents(config, pop, disputes, background, rngs["incidents"])
    done("incidents", f"{len(calls):,} incidents")
    rendered = render_calls(calls, rngs["narratives"])
    for column in ("narrative", "subtype", "mentioned_cues", "template_id"):
        calls[column] = rendered[column].to_numpy()
    done("narratives", f"{calls['narrative'].nunique():,} distinct narratives")
    cases, escalation_truth = build_cases(config, pop, conflicts, dyn.escalations, calls, rngs["records"])
    visits = build_visits(config, pop, conflicts, dyn.mediations, rngs["records"])
    relations = build_relations(config, pop, conflicts, pairs, rngs["records"])
    done(
        "records",
        f"{cases['case_id'].nunique():,} cases, {len(visits):,} visits, {len(relations):,} relations",
    )

    return City(
        config,
        _export_tables(pop, calls, cases, visits, relations),
        _truth_tables(pop, conflicts, calls, escalation_truth),
        timings,
    )


def _export_tables(pop, calls, cases, visits, relations) -> dict[str, pd.DataFrame]:  # type: ignore[no-untyped-def]
    incidents = pd.DataFrame(
        {
            "incident_id": calls["incident_id"],
            "received_at": calls["received_at"],
            "caller_name": calls["caller_name"],
            "caller_phone": calls["phone_shown"],
            "caller_id_number": calls["id_shown"],
            "location_text": calls["location_text"],
            "narrative": calls["narrative"],
            "category_l1": calls["category_l1"],
            "category_l2": calls["category_l2"],
            "station_id": calls["station_id"],
            "disposition": calls["disposition"],
        }
    )
    tables = {
        "addresses": pop.geography.addresses,
        "households": pop.households,
        "persons": pop.persons,
        "relations": relations,
        "incidents": incidents,
        "cases": cases,
        "visits": visits,
    }
    assert set(tables) == set(TABLES), "the simulator must write exactly the contract tables"
    return {name: frame[list(TABLES[name].columns)].reset_index(drop=True) for name, frame in tables.items()}


CONSUMER_DISPUTE_TYPES: tuple[str, ...] = ("fare_dispute",)
"""Non-household call types that the dispute definition counts as disputes (category ``other``)."""


def _truth_tables(pop, conflicts, calls, escalation_truth) -> dict[str, pd.DataFrame]:  # type: ignore[no-untyped-def]
    person_ids = pop.persons["person_id"].to_numpy()
    hh_ids = pop.households["household_id"].to_numpy()

    def ids(rows: pd.Series, table: np.ndarray) -> np.ndarray:
        values = rows.to_numpy()
        return np.where(values >= 0, table[np.maximum(values, 0)], None)

    conflict_id = "C" + conflicts["conflict_row"].astype(str).str.zfill(7)
    truth_conflicts = pd.DataFrame(
        {
            "conflict_id": conflict_id,
            "category": conflicts["category"],
            "kind": conflicts["kind"],
            "person_a": ids(conflicts["person_a"], person_ids),
            "person_b": ids(conflicts["person_b"], person_ids),
            "household_a": ids(conflicts["household_a"], hh_ids),
            "household_b": ids(conflicts["household_b"], hh_ids),
            "start_day": conflicts["start_day"],
            "end_day": conflicts["end_day"],
            "hidden": conflicts["hidden"],
            "severity0": conflicts["severity0"].round(4),
            "alcohol": conflicts["alcohol"],
            "temper": conflicts["temper"].round(4),
            "mental": conflicts["mental"],
            "prior": conflicts["prior"],
        }
    )
    row_to_id = pd.Series(conflict_id.to_numpy(), index=conflicts["conflict_row"].to_numpy())
    truth_incidents = pd.DataFrame(
        {
            "incident_id": calls["incident_id"],
            "call_type": calls["call_type"],
            # docs/dispute-definition.md: a consumer quarrel (taxi fare, restaurant bill) is a dispute of type
            # ``other``, though it belongs to no household conflict (no conflict_id) and never escalates here
            "is_dispute": calls["call_type"].isin((*CONSUMER_DISPUTE_TYPES, "dispute")),
            "category": calls["category"].where(~calls["call_type"].isin(CONSUMER_DISPUTE_TYPES), "other"),
            "subtype": calls["subtype"],
            "conflict_id": calls["conflict_row"].map(row_to_id),
            "escalation_call": calls["escalation_call"],
            "caller_role": calls["caller_role"],
            "caller_person_id": person_ids[calls["caller_row"].to_numpy()],
            "place_household_id": hh_ids[calls["place_household"].to_numpy()],
            "repeat_n": calls["repeat_n"],
            "channel": calls["channel"],
            "duplicate_of": np.where(
                calls["duplicate_of"].to_numpy() >= 0,
                calls["incident_id"].to_numpy()[np.maximum(calls["duplicate_of"].to_numpy(), 0)],
                None,
            ),
            **{
                f"true_{c}": calls[c]
                for c in ("violence", "weapon", "injury", "threat", "alcohol", "self_harm", "separation")
            },
            "mentioned_cues": calls["mentioned_cues"],
            "template_id": calls["template_id"],
        }
    )
    escalations = escalation_truth.assign(conflict_id=escalation_truth["conflict_row"].map(row_to_id)).drop(
        columns="conflict_row"
    )
    latent = pop.latent.drop(columns="age")
    return {
        "conflicts": truth_conflicts,
        "incidents": truth_incidents,
        "escalations": escalations,
        "persons_latent": latent,
    }


def write_city(city: City, out: str | Path) -> dict:
    """Write tables as ``out/<table>.parquet``, truth under ``out/truth/``, and ``manifest.json``.

    Files are written to a temporary name and renamed, so an interrupted run
    never leaves a half-written table that looks whole.
    """
    out = Path(out)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    for folder, tables in ((out, city.tables), (out / "truth", city.truth)):
        for name, frame in tables.items():
            path = folder / f"{name}.parquet"
            tmp = path.with_suffix(".parquet.tmp")
            frame.to_parquet(tmp, index=False)
            tmp.replace(path)
            files[str(path.relative_to(out))] = file_sha256(path)
    manifest = {
        "simulator_version": SIMULATOR_VERSION,
        # the morning after the last simulated day: when a real center would have exported this (features/loaders.py)
        "export_date": f"{pd.Timestamp(city.config.start) + pd.Timedelta(days=city.config.days):%Y-%m-%d}",
        "seed": city.config.seed,
        "config": asdict(city.config),
        "row_counts": {name: len(frame) for name, frame in city.tables.items()},
        "truth_row_counts": {name: len(frame) for name, frame in city.truth.items()},
        "fingerprint": dataset_fingerprint(out),
        "files": files,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True) + "\n")
    return manifest
