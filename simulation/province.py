"""A synthetic Inner Mongolia: every league/city simulated as one task on a Dask cluster, written partitioned.

Each city is the simulator's calibrated city (simulation/city.py) at the city's
census size, seeded from the province seed and its code alone
(:func:`simulation.province_geo.city_seed`), relabelled so that its keys are
its own (:func:`simulation.province_geo.relabel`), and written by the worker
that drew it as hive partitions ``<table>/city=<code>/county=<code>/part-0.parquet``
(features/partitions.py). Only a small summary per city returns to the
driver, which writes ``manifest.json`` last. The bytes of a city depend on
(province seed, code, scale, days, start) and nothing else, so the province
is the same whatever the worker count or the order the cities finish in.
"""

from __future__ import annotations

import hashlib
import json
import resource
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.fingerprint import dataset_fingerprint, file_sha256
from features.partitions import Partition, write_partitioned
from simulation.config import SIMULATOR_VERSION, SimConfig
from simulation.province_geo import BY_CODE, CITIES, TEMPLATE_CODE, city_seed, relabel

Progress = Callable[[str], None]
TRUTH = "truth"
KIND = "province"
"""``manifest.json`` → ``kind``: what tells a province folder from a single city's."""


class ProvinceError(ValueError):
    """A province cannot be simulated as asked; the message names the value and the fix."""


@dataclass(frozen=True)
class CityPlan:
    """One city's task: what to simulate and where it comes from."""

    code: str
    name: str
    census_persons: int
    persons: int
    seed: int


def plan(seed: int, scale: float = 1.0, codes: Sequence[str] | None = None) -> list[CityPlan]:
    """The cities to simulate, biggest first (the longest tasks start first; ties by code)."""
    if not 0 < scale <= 1.0:
        raise ProvinceError(f"--scale {scale} is outside (0, 1]; fix: 1 for the real size, 0.01 for a hundredth")
    chosen = list(dict.fromkeys(c.strip() for c in codes)) if codes else [c.code for c in CITIES]
    unknown = [c for c in chosen if c not in BY_CODE]
    if unknown or not chosen:
        known = ", ".join(f"{c.code} {c.name}" for c in CITIES)
        raise ProvinceError(f"unknown city code {', '.join(unknown) or '(none)'}; fix: --cities with codes of: {known}")
    plans = []
    for code in chosen:
        city = BY_CODE[code]
        persons = round(city.persons * scale)
        if persons < 100:
            raise ProvinceError(
                f"{city.code} {city.name} would have {persons} persons at --scale {scale} (a city needs 100); "
                f"fix: --scale {100 / city.persons:.5f} or more, or leave {city.code} out of --cities"
            )
        plans.append(CityPlan(city.code, city.name, city.persons, persons, city_seed(seed, code)))
    return sorted(plans, key=lambda p: (-p.persons, p.code))


def _counties(tables: dict[str, pd.DataFrame], truth: dict[str, pd.DataFrame]) -> dict[str, pd.Series | None]:
    """The county of every row, by table (None: the table is filed at city level).

    Addresses carry it; households follow their address, persons their
    household, calls, cases and visits the station that took them. Relations
    (two persons, possibly two counties) and escalations stay at city level.
    """
    addresses = tables["addresses"]
    of_address = pd.Series(addresses["county_code"].to_numpy(), index=addresses["address_id"].to_numpy())
    of_station = addresses.drop_duplicates("station_id").set_index("station_id")["county_code"]
    households = tables["households"]
    of_household = pd.Series(
        of_address.loc[households["address_id"].to_numpy()].to_numpy(), index=households["household_id"].to_numpy()
    )

    def via(index: pd.Series, keys: pd.Series) -> pd.Series:
        return pd.Series(index.loc[keys.to_numpy()].to_numpy(), dtype=object)

    persons = via(of_household, tables["persons"]["household_id"])
    conflict_households = truth["conflicts"]["household_a"]
    return {
        "addresses": addresses["county_code"],
        "households": via(of_address, households["address_id"]),
        "persons": persons,
        "relations": None,
        "incidents": via(of_station, tables["incidents"]["station_id"]),
        "cases": via(of_station, tables["cases"]["station_id"]),
        "visits": via(of_station, tables["visits"]["station_id"]),
        f"{TRUTH}/conflicts": via(of_household, conflict_households) if conflict_households.notna().all() else None,
        f"{TRUTH}/incidents": via(of_station, tables["incidents"]["station_id"]),
        f"{TRUTH}/escalations": None,
        f"{TRUTH}/persons_latent": persons,
    }


def _peak_rss() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def simulate_and_write(city: CityPlan, days: int, start: str, out: str) -> dict[str, Any]:
    """Draw, relabel and write one city's partitions under ``out`` (runs on a worker); returns its summary.

    The city's old partitions (of an earlier run) are removed first, so a
    city's folders always hold one run's files.
    """
    from simulation.city import simulate_city

    clock = time.perf_counter()
    root = Path(out)
    sim = simulate_city(SimConfig(persons=city.persons, days=days, start=start, seed=city.seed))
    tables, truth = relabel(sim.tables, sim.truth, city.code, city.name)
    timings = sim.timings
    del sim  # the template's id columns go; the relabelled frames share the rest
    counties = _counties(tables, truth)
    frames = {**tables, **{f"{TRUTH}/{name}": frame for name, frame in truth.items()}}
    files: dict[str, str] = {}
    for name, frame in frames.items():
        folder = root / name / f"city={city.code}"
        if folder.exists():
            shutil.rmtree(folder)
        for path in write_partitioned(frame, root / name, city.code, counties[name]):
            files[path.relative_to(root).as_posix()] = file_sha256(path)
    return {
        "code": city.code,
        "name": city.name,
        "census_persons": city.census_persons,
        "persons": city.persons,
        "seed": city.seed,
        "row_counts": {name: len(frame) for name, frame in tables.items()},
        "truth_row_counts": {name: len(frame) for name, frame in truth.items()},
        "fingerprint": dataset_fingerprint(root, Partition(city=city.code)),
        "files": dict(sorted(files.items())),
        "seconds": round(time.perf_counter() - clock, 1),
        "stage_seconds": timings,
        "peak_rss_bytes": _peak_rss(),
    }


def check_out(out: Path, plans: list[CityPlan]) -> None:
    """``out`` must be new, empty, or a province (finished or not) whose cities this run all rewrites."""
    from features.partitions import cities
    from features.schema import TABLES

    if not out.exists():
        return
    if not out.is_dir():
        raise ProvinceError(f"--out {out} is a file; fix: give a folder")
    names = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    strange = sorted(names - {*TABLES, TRUTH, "manifest.json", "quarantine"})  # quarantine: `yujing validate`
    if strange:
        raise ProvinceError(
            f"--out {out} holds {', '.join(strange[:3])}, not a simulated province; fix: --out an empty or new folder"
        )
    others = sorted(set(cities(out)) - {p.code for p in plans})
    if others:
        raise ProvinceError(
            f"--out {out} holds cities {', '.join(others)} of an earlier run that this run does not simulate; "
            "fix: include them in --cities, or --out a new folder"
        )


def simulate_province(
    client: Any,
    out: str | Path,
    seed: int,
    scale: float = 1.0,
    codes: Sequence[str] | None = None,
    days: int = 730,
    start: str = "2023-01-01",
    progress: Progress = lambda _: None,
) -> dict[str, Any]:
    """Simulate the cities on ``client``'s workers (one task each), then write ``out/manifest.json``.

    Without a client (None) the cities are simulated one after the other in this process: the same bytes.

    ``progress`` receives one line as each city finishes, with an estimate of
    the time left (by persons still to simulate).
    """
    config = SimConfig(persons=100, days=days, start=start, seed=seed)  # checks days and start
    plans = plan(seed, scale, codes)
    out = Path(out).resolve()
    check_out(out, plans)
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)  # no manifest describes a half-written province

    total = sum(p.persons for p in plans)
    done_persons = 0
    began = time.perf_counter()
    summaries: dict[str, dict[str, Any]] = {}
    for summary in _run(client, plans, days, start, out):
        summaries[summary["code"]] = summary
        done_persons += summary["persons"]
        elapsed = time.perf_counter() - began
        left = elapsed * (total - done_persons) / max(done_persons, 1)
        progress(
            f"city {summary['code']} {summary['name']}: {summary['persons']:,} persons in {summary['seconds']:.0f}s "
            f"({len(summaries)}/{len(plans)} cities, {_clock(elapsed)} elapsed, about {_clock(left)} left)"
        )
    return write_manifest(out, config, scale, [summaries[p.code] for p in sorted(plans, key=lambda p: p.code)])


def _run(client: Any, plans: list[CityPlan], days: int, start: str, out: Path) -> Iterator[dict[str, Any]]:
    """City summaries as the tasks finish: on the cluster (largest first), or here one by one without a client."""
    if client is None:
        for p in plans:
            yield simulate_and_write(p, days, start, str(out))
        return
    from distributed import as_completed

    token = hashlib.sha256(f"{out}:{time.time_ns()}".encode()).hexdigest()[:8]
    futures = [
        client.submit(
            simulate_and_write, p, days, start, str(out),
            key=f"simulate-city-{p.code}-{token}", priority=p.persons, pure=False,
        )
        for p in plans
    ]  # fmt: skip
    code_of = {future.key: p.code for future, p in zip(futures, plans, strict=True)}
    for future in as_completed(futures):
        try:
            summary = future.result()
        except Exception as exc:  # a worker killed (memory), or the task raised: say which city
            for other in futures:
                other.cancel()
            raise ProvinceError(
                f"city {code_of[future.key]}: its task failed ({type(exc).__name__}); fix: if a worker was killed "
                "for memory, raise cluster_memory_limit or lower --scale; the other cities' folders may be partial"
            ) from None
        future.release()
        yield summary


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    minutes, rest = divmod(seconds, 60)
    return f"{minutes}:{rest:02d}"


def write_manifest(out: Path, config: SimConfig, scale: float, summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """``out/manifest.json``: what made the province, each city's counts and files, the dataset's fingerprint."""
    export_date = pd.Timestamp(config.start) + pd.Timedelta(days=config.days)
    cities = {}
    for s in summaries:
        cities[s["code"]] = {
            k: v for k, v in s.items() if k not in ("code", "peak_rss_bytes", "seconds", "stage_seconds")
        }
    names = sorted({n for s in summaries for n in s["row_counts"]})
    truth_names = sorted({n for s in summaries for n in s["truth_row_counts"]})
    manifest = {
        "kind": KIND,
        "simulator_version": SIMULATOR_VERSION,
        "export_date": f"{export_date:%Y-%m-%d}",
        "seed": config.seed,
        "scale": scale,
        "config": {"days": config.days, "start": config.start},
        "geography": (
            f"every city is the simulator's calibrated geography of {TEMPLATE_CODE} 通辽市 (9 counties, 137 stations) "
            "at the city's census size, relabelled with the city's code and name (docs/province.md)"
        ),
        "persons": sum(s["persons"] for s in summaries),
        "row_counts": {n: int(np.sum([s["row_counts"][n] for s in summaries])) for n in names},
        "truth_row_counts": {n: int(np.sum([s["truth_row_counts"][n] for s in summaries])) for n in truth_names},
        "cities": cities,
        "fingerprint": dataset_fingerprint(out),
    }
    path = out / "manifest.json"
    tmp = path.with_name(".manifest.json.tmp")
    tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return manifest
