"""Linking speed and peak memory per city size, with link precision / recall against the truth.

    .venv/bin/python benchmarks/bench_linking.py                  # 100k and 1M persons, two years
    .venv/bin/python benchmarks/bench_linking.py --sizes 2870000  # the full city (~620k incidents)
    .venv/bin/python benchmarks/bench_linking.py --data /tmp/link_city --quality   # a simulated folder,
                                                                  # with precision / recall per method and role
    .venv/bin/python benchmarks/bench_linking.py --data /tmp/link_city --perturb   # fuzzy-address thresholds

``--perturb`` takes home addresses of the folder and (a) changes one character of the compound or
village name to one that is no near-homophone (a typo the folding cannot undo), (b) replaces the
name by a compound of another county (a place the registry does not know). It links both at a few
``fuzzy_min`` / ``fuzzy_margin`` settings: (a) measures what the bigram fallback recovers, (b) how
often it links a place that is not in the registry at all (every such link is wrong).

Each size is simulated into a temporary folder (Parquet, as ``yujing simulate`` writes it), then
linked in a fresh interpreter that first loads the four tables, so the memory figures are the
linking's alone: ``tables MiB`` is the resident size once the tables are loaded, ``peak MiB`` the
highest resident size while linking (Linux VmHWM, reset after loading; elsewhere ru_maxrss, which
includes the load). Truth is read only to score the links. These machines are shared and noisy:
read the timings as an order of magnitude.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable as a plain script from any directory
    sys.path.insert(0, str(REPO))

from features.linking import HOMOPHONES, link_incidents  # noqa: E402

# Common characters for typos; near-homophones of the folding table are dropped below.
_TYPO_POOL = (
    "的一是在不了有人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定"
    "行学法所民得经十三之进着等部度电力里如水高自理起小物现实加量都两体制机当使点从业本去把性好应开它还因由其些然前外天"
)
_GRID = ((0.6, 0.1), (0.7, 0.1), (0.75, 0.15), (0.8, 0.15))

SIMULATE = """
import sys
from simulation.city import simulate_city, write_city
from simulation.config import SimConfig
config = SimConfig(persons=int(sys.argv[1]), days=int(sys.argv[2]), seed=int(sys.argv[3]))
write_city(simulate_city(config), sys.argv[4])
"""

LINK = """
import gc, json, resource, sys, time
from pathlib import Path
import pandas as pd
from features.linking import link_incidents, link_quality

def rss_mib(field):
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

data = Path(sys.argv[1])
tables = {t: pd.read_parquet(data / f"{t}.parquet") for t in ("incidents", "persons", "households", "addresses")}
gc.collect()
loaded = rss_mib("VmRSS")
try:
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current RSS
except OSError:
    pass
best = None
for _ in range(int(sys.argv[2])):
    t0 = time.perf_counter()
    result = link_incidents(tables["incidents"], tables["persons"], tables["households"], tables["addresses"])
    elapsed = time.perf_counter() - t0
    best = elapsed if best is None else min(best, elapsed)
peak = rss_mib("VmHWM")
quality = link_quality(result.links, pd.read_parquet(data / "truth" / "incidents.parquet"))
print(json.dumps({
    "incidents": len(tables["incidents"]), "persons": len(tables["persons"]),
    "addresses": len(tables["addresses"]), "seconds": best, "tables_mib": loaded, "peak_mib": peak,
    "quality": quality,
}, default=float))
"""


def _run(code: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False, cwd=REPO)
    if done.returncode != 0:
        sys.exit(f"benchmark child failed:\n{done.stderr[-2000:]}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=0, help="timed runs per size (default: 3 below 500k, else 1)")
    parser.add_argument("--data", type=Path, nargs="+", help="link these simulated folders instead of simulating")
    parser.add_argument("--quality", action="store_true", help="also print precision / recall per method and role")
    parser.add_argument("--perturb", action="store_true", help="with --data: typo / unknown-compound experiment")
    parser.add_argument("--perturb-n", type=int, default=5000, help="home addresses per perturbation")
    args = parser.parse_args()
    if args.perturb and not args.data:
        parser.error("--perturb needs --data (a simulated folder with truth/)")
    print(f"python {platform.python_version()}, {platform.machine()}, days={args.days}, seed={args.seed}")
    print(
        "| persons | addresses | incidents | link s | incidents/s | tables MiB | peak MiB "
        "| person P / R | household P / R |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---|---|")
    results = []
    for source in args.data or args.sizes:
        if isinstance(source, Path):
            r = json.loads(_run(LINK, str(source), str(args.repeat or 1)).strip().splitlines()[-1])
        else:
            with tempfile.TemporaryDirectory(prefix="bench_linking_") as out:
                _run(SIMULATE, str(source), str(args.days), str(args.seed), out)
                repeat = args.repeat or (3 if source < 500_000 else 1)
                r = json.loads(_run(LINK, out, str(repeat)).strip().splitlines()[-1])
        p, h = r["quality"]["person"]["overall"], r["quality"]["household"]["overall"]
        print(
            f"| {r['persons']:,} | {r['addresses']:,} | {r['incidents']:,} | {r['seconds']:.1f} "
            f"| {r['incidents'] / r['seconds']:,.0f} | {r['tables_mib']:,.0f} | {r['peak_mib']:,.0f} "
            f"| {p['precision']:.4f} / {p['recall']:.4f} | {h['precision']:.4f} / {h['recall']:.4f} |",
            flush=True,
        )
        results.append(r)
    if args.quality:
        for r in results:
            _print_quality(r)
    if args.perturb:
        for source in args.data or []:
            _perturbation_check(source, args.perturb_n, args.seed)


def _print_quality(r: dict) -> None:
    """Per method (precision, share of all incidents recalled) and per true caller role."""
    q = r["quality"]
    print(f"\n{r['persons']:,} persons, {r['incidents']:,} incidents\n")
    for side in ("person", "household"):
        print(f"| {side} method | linked | share | precision | recall (contribution) |")
        print("|---|---:|---:|---:|---:|")
        for method, m in sorted(q[side]["by_method"].items(), key=lambda kv: -kv[1]["linked"]):
            print(
                f"| {method} | {m['linked']:,} | {m['linked'] / r['incidents']:.3f} "
                f"| {m['precision']:.4f} | {m['recall']:.4f} |"
            )
        o = q[side]["overall"]
        print(f"| unlinked | {q[side]['unlinked']:,} | {q[side]['unlinked'] / r['incidents']:.3f} | | |")
        print(
            f"| **all** | {o['linked']:,} | {o['linked'] / r['incidents']:.3f} "
            f"| {o['precision']:.4f} | {o['recall']:.4f} |"
        )
        print()
    print("| caller role | incidents | person P | person R | household P | household R |")
    print("|---|---:|---:|---:|---:|---:|")
    for role, p in q["person"]["by_caller_role"].items():
        h = q["household"]["by_caller_role"][role]
        print(
            f"| {role} | {p['n']:,} | {p['precision']:.4f} | {p['recall']:.4f} "
            f"| {h['precision']:.4f} | {h['recall']:.4f} |"
        )


def _perturbation_check(data: Path, n: int, seed: int) -> None:
    """Fuzzy-address fallback on typos it should recover and on places it must not link."""
    tables = {t: pd.read_parquet(data / f"{t}.parquet") for t in ("incidents", "persons", "households", "addresses")}
    truth = pd.read_parquet(data / "truth" / "incidents.parquet")[["incident_id", "place_household_id"]]
    addresses = tables["addresses"]
    place = truth.merge(tables["households"], left_on="place_household_id", right_on="household_id")
    place = place.merge(addresses[["address_id", "community", "county_code"]], on="address_id")
    inc = tables["incidents"].merge(place[["incident_id", "place_household_id", "community", "county_code"]])
    spoken = [c in t for c, t in zip(inc["community"], inc["location_text"].fillna(""), strict=True)]
    home = inc["location_text"].str.contains(r"(?:室|\d+号|\d-\d+-\d+)$", regex=True).fillna(False).to_numpy()
    rng = np.random.default_rng(seed)
    sample = inc[home & np.array(spoken)]
    sample = sample.iloc[rng.permutation(len(sample))[:n]].reset_index(drop=True)
    fold = set("".join(HOMOPHONES))
    pool = [c for c in _TYPO_POOL if c not in fold]

    def typo(name: str) -> str:
        i = int(rng.integers(0, len(name)))
        new = pool[int(rng.integers(0, len(pool)))]
        while new == name[i]:
            new = pool[int(rng.integers(0, len(pool)))]
        return name[:i] + new + name[i + 1 :]

    by_county = addresses.groupby("county_code")["community"].agg(lambda s: set(s.unique()))
    names = addresses.drop_duplicates("community")[["community", "county_code"]].to_numpy()

    def stranger(county: str) -> str:
        while True:
            name, other = names[int(rng.integers(0, len(names)))]
            if other != county and name not in by_county[county]:
                return name

    cases = {
        "typo (one character, not a homophone)": [typo(c) for c in sample["community"]],
        "compound of another county": [stranger(k) for k in sample["county_code"]],
    }
    print(f"\n{data}: {len(sample):,} home addresses per perturbation\n")
    print("| perturbation | fuzzy_min | fuzzy_margin | address links | correct | wrong | bigram links |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, replacement in cases.items():
        perturbed = sample.copy()
        perturbed["location_text"] = [
            t.replace(c, r, 1)
            for t, c, r in zip(sample["location_text"], sample["community"], replacement, strict=True)
        ]
        for fuzzy_min, fuzzy_margin in _GRID:
            result = link_incidents(
                perturbed[tables["incidents"].columns],
                tables["persons"],
                tables["households"],
                tables["addresses"],
                fuzzy_min=fuzzy_min,
                fuzzy_margin=fuzzy_margin,
            )
            by_address = result.links["address_id"].notna().to_numpy()
            right = result.links["household_id"].to_numpy(dtype=object) == sample["place_household_id"].to_numpy()
            print(
                f"| {label} | {fuzzy_min} | {fuzzy_margin} | {by_address.sum():,} | {(by_address & right).sum():,} "
                f"| {(by_address & ~right).sum():,} | {result.stats['address_fuzzy_bigram']:,} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
