"""The synthetic city: deterministic, on contract, and within its documented statistical targets.

Tolerances are the ones in docs/simulator.md; the city is 60,000 persons over
two years (tests/conftest.py), so shares carry a few points of sampling noise.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.fingerprint import dataset_fingerprint, file_sha256
from features.loaders import load_dataset
from features.schema import TABLES, VIOLENT_CHARGES
from pipelines.cli import app
from simulation.city import City, simulate_city, write_city
from simulation.config import CATEGORY_SHARE, COUNTIES, N_STATIONS, SimConfig

HEADER = re.compile(r"^.*?(?:报警|来电|报称|报案)称?[:：]")


def _content(narratives: pd.Series) -> pd.Series:
    return narratives.str.replace(HEADER, "", regex=True)


def test_same_seed_gives_byte_identical_tables(tmp_path: Path) -> None:
    config = SimConfig(persons=4_000, days=120, seed=11)
    first = write_city(simulate_city(config), tmp_path / "a")
    second = write_city(simulate_city(config), tmp_path / "b")
    assert first["files"] == second["files"]
    other = write_city(simulate_city(SimConfig(persons=4_000, days=120, seed=12)), tmp_path / "c")
    assert other["fingerprint"] != first["fingerprint"]


def test_city_is_on_contract_and_truth_is_apart(small_city: tuple[City, Path]) -> None:
    _, out = small_city
    dataset = load_dataset(out)
    for name, result in dataset.tables.items():
        assert result.quarantined == 0, (name, result.quarantine["_reason"].value_counts().head().to_dict())
    top_level = {p.stem for p in out.glob("*.parquet")}
    assert top_level == set(TABLES)
    assert {p.stem for p in (out / "truth").glob("*.parquet")} == {
        "conflicts",
        "incidents",
        "escalations",
        "persons_latent",
    }
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["fingerprint"] == dataset_fingerprint(out)
    assert manifest["files"]["incidents.parquet"] == file_sha256(out / "incidents.parquet")
    assert manifest["row_counts"]["persons"] == 60_000


def test_geography_matches_tongliao(small_city: tuple[City, Path]) -> None:
    city, _ = small_city
    addresses = city.tables["addresses"]
    assert addresses["station_id"].nunique() == N_STATIONS
    assert addresses["county_code"].nunique() == len(COUNTIES) == 9
    shares = addresses["county_code"].value_counts(normalize=True)
    for county in COUNTIES:
        assert shares[county.code] == pytest.approx(county.population_share, abs=0.015), county.name
    assert set(addresses["area_type"]) == {"urban", "rural", "pastoral"}
    assert addresses["address_text"].is_unique
    urban = addresses[addresses["area_type"] == "urban"]
    assert urban["room"].notna().all() and urban["house_no"].isna().all()


def _id_checksum_ok(ids: pd.Series) -> bool:
    weights = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
    digits = np.array([list(map(int, s[:17])) for s in ids])
    expected = np.array(list("10X98765432"))[(digits @ weights) % 11]
    return bool((expected == ids.str[17].to_numpy()).all())


def test_population_statistics(small_city: tuple[City, Path]) -> None:
    city, _ = small_city
    persons, households = city.tables["persons"], city.tables["households"]
    assert households["size"].between(1, 6).all()
    assert households["size"].mean() == pytest.approx(2.49, abs=0.1)
    assert households["size"].sum() == len(persons)
    mongol = (persons["ethnicity"] == "蒙古族").mean()
    assert 0.38 < mongol < 0.52  # Tongliao: about 46 % Mongol
    assert persons["id_number"].is_unique
    assert _id_checksum_ok(persons["id_number"])
    assert (persons["relation_to_head"] == "户主").sum() == len(households)
    assert 0.002 < persons["mental_illness_registry"].mean() < 0.008
    assert 0.01 < persons["prior_record"].mean() < 0.05


def test_conflict_category_shares_follow_the_brief(small_city: tuple[City, Path]) -> None:
    city, _ = small_city
    shares = city.truth["conflicts"]["category"].value_counts(normalize=True)
    for category, target in CATEGORY_SHARE.items():
        assert shares.get(category, 0.0) == pytest.approx(target, abs=0.04), category


def test_most_calls_are_not_disputes(small_city: tuple[City, Path]) -> None:
    city, _ = small_city
    truth = city.truth["incidents"]
    assert 0.12 < truth["is_dispute"].mean() < 0.28
    types = truth.loc[~truth["is_dispute"], "call_type"].value_counts(normalize=True)
    assert types.index[0] == "traffic" and len(types) == 13  # fare quarrels are disputes (docs/dispute-definition.md)
    assert truth.loc[truth["call_type"] == "fare_dispute", "category"].eq("other").all()


def test_repeat_calls_come_in_bursts(small_city: tuple[City, Path]) -> None:
    city, _ = small_city
    truth = city.truth["incidents"]
    per_conflict = truth.loc[truth["is_dispute"]].groupby("conflict_id").size()
    assert 0.40 < (per_conflict == 1).mean() < 0.70
    assert 0.12 < (per_conflict >= 3).mean() < 0.40
    assert per_conflict.max() >= 8
    # Bursts: a repeat call follows the previous one within 30 days more often than a uniform process would.
    incidents = city.tables["incidents"][["incident_id", "received_at"]].merge(truth[["incident_id", "conflict_id"]])
    incidents = incidents.dropna(subset=["conflict_id"]).sort_values("received_at")
    gaps = incidents.groupby("conflict_id")["received_at"].diff().dropna().dt.days
    assert (gaps <= 30).mean() > 0.6


def test_escalation_base_rate_from_cases(small_city: tuple[City, Path]) -> None:
    """Among households with a dispute call, a few per cent have a violent case within 90 days."""
    city, _ = small_city
    incidents, truth, cases = city.tables["incidents"], city.truth["incidents"], city.tables["cases"]
    persons = city.tables["persons"][["person_id", "household_id"]]
    calls = incidents.merge(truth[["incident_id", "is_dispute", "place_household_id", "escalation_call"]])
    calls = calls[calls["is_dispute"] & ~calls["escalation_call"]]
    end = incidents["received_at"].max() - pd.Timedelta(days=90)
    first = calls[calls["received_at"] < end].groupby("place_household_id")["received_at"].min()
    violent = cases[cases["charge"].isin(VIOLENT_CHARGES)].merge(persons, on="person_id")
    joined = violent.merge(first.rename("first_call"), left_on="household_id", right_index=True)
    delta = (joined["opened_at"] - joined["first_call"]).dt.days
    escalated = joined.loc[delta.between(0, 90), "household_id"].nunique()
    rate = escalated / len(first)
    assert 0.015 < rate < 0.09, rate

    escalations = city.truth["escalations"]
    assert len(escalations) > 30
    # Most escalations come within three months of a prior call (VioGén: 56.5 %).
    called = truth[truth["is_dispute"] & ~truth["escalation_call"]].merge(incidents[["incident_id", "received_at"]])
    last = escalations.merge(called[["conflict_id", "received_at"]], on="conflict_id")
    last = last[last["received_at"] < last["opened_at"]].groupby("case_id")["received_at"].max()
    gap = (escalations.set_index("case_id").loc[last.index, "opened_at"] - last).dt.days
    assert (gap <= 90).mean() > 0.5


def test_seasonality_by_category(small_city: tuple[City, Path]) -> None:
    city, _ = small_city
    calls = city.tables["incidents"][["incident_id", "received_at"]].merge(city.truth["incidents"])
    land = calls[calls["category"] == "land"]
    assert land["received_at"].dt.month.isin([3, 4, 5]).mean() > 0.38  # uniform would be 0.25
    family = calls[calls["category"] == "family"]
    assert family["received_at"].dt.hour.between(18, 23).mean() > 0.4
    labor = calls[calls["category"] == "labor"]
    winter = labor["received_at"].dt.month.isin([12, 1, 2]).mean()
    assert winter > 0.33


def test_linkage_noise(small_city: tuple[City, Path]) -> None:
    city, _ = small_city
    incidents = city.tables["incidents"]
    assert 0.3 < incidents["caller_id_number"].isna().mean() < 0.55
    masked_phone = incidents["caller_phone"].str.contains(r"\*", na=False).mean()
    assert 0.25 < masked_phone < 0.42
    assert 0.2 < incidents["caller_name"].str.fullmatch(r".(女士|先生)", na=False).mean() < 0.35
    truth = city.truth["incidents"]
    roles = truth.loc[truth["is_dispute"], "caller_role"].value_counts(normalize=True)
    assert 0.15 < 1 - roles["party"] < 0.45
    registered = set(city.tables["persons"]["phone"].dropna())
    full = incidents["caller_phone"].dropna()
    full = full[~full.str.contains(r"\*")]
    assert 0.03 < 1 - full.isin(registered).mean() < 0.2


def test_narratives_are_diverse_and_keywords_do_not_solve_it(small_city: tuple[City, Path]) -> None:
    city, _ = small_city
    incidents = city.tables["incidents"].merge(city.truth["incidents"][["incident_id", "is_dispute"]])
    content = _content(incidents["narrative"])
    disputes = content[incidents["is_dispute"]]
    assert disputes.nunique() / len(disputes) > 0.85
    grams = {text[i : i + 4] for text in disputes for i in range(len(text) - 3)}
    assert len(grams) > 20_000
    stock = "纠纷|矛盾|吵架|打架|争吵|欠钱|家暴|殴打|口角"
    assert disputes.str.contains(stock).mean() < 0.95  # some dispute calls use none of the stock words
    others = content[~incidents["is_dispute"]]
    assert others.str.contains(stock).mean() > 0.03  # some non-dispute calls use them


def test_cli_simulate_and_validate(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "city"
    result = runner.invoke(app, ["simulate", "--persons", "3000", "--days", "60", "--seed", "5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "incidents.parquet" in result.output and str(out) in result.output
    result = runner.invoke(app, ["validate", "--data", str(out), "--strict"])
    assert result.exit_code == 0, result.output
    assert "incidents: read" in result.output and "0 rows quarantined" in result.output
    result = runner.invoke(app, ["validate", "--data", str(tmp_path / "missing")])
    assert result.exit_code == 2
    result = runner.invoke(app, ["simulate", "--persons", "10", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2


def test_narratives_look_like_real_exports(small_city: tuple[City, Path]) -> None:
    """The figures of simulation.stats.narrative_realism within bands around real exports (docs/simulator.md)."""
    from simulation.stats import narrative_realism

    city, _ = small_city
    r = narrative_realism(city.tables["incidents"], city.truth["incidents"])
    assert r["has_header"] == 1.0  # features.text.parse_header splits every layout the simulator writes
    assert 0.33 < r["id_masked_middle"] < 0.47  # real: about 4 in 10
    assert 0.06 < r["no_or_refused_caller_details"] < 0.18
    assert 0.005 < r["refused_caller_details"] < 0.03
    assert 0.008 < r["transfer_12345"] < 0.04
    assert 0.02 < r["in_person"] < 0.07
    assert 0.008 < r["duplicate_logs_truth"] < 0.025
    assert r["duplicate_logs"] == pytest.approx(r["duplicate_logs_truth"], abs=0.002)  # found from the export alone
    assert 0.01 < r["ambulance_notes"] < 0.05
    assert 30 <= r["body_chars_median"] <= 45  # real: about 40
    assert 16 <= r["body_chars_p10"] <= 25  # real: about 21
    assert 0.2 < r["body_starts_with_cheng"] < 0.36  # real: about 3 in 10


def test_duplicate_logs_are_marked_in_truth(small_city: tuple[City, Path]) -> None:
    from features.text import parse_header

    city, _ = small_city
    incidents, truth = city.tables["incidents"].set_index("incident_id"), city.truth["incidents"]
    copies = truth.dropna(subset=["duplicate_of"])
    assert copies["duplicate_of"].isin(truth.loc[truth["duplicate_of"].isna(), "incident_id"]).all()
    first, second = incidents.loc[copies["duplicate_of"]], incidents.loc[copies["incident_id"]]
    gap = (second["received_at"].to_numpy() - first["received_at"].to_numpy()) / np.timedelta64(1, "s")
    assert ((gap >= 40) & (gap <= 150)).all()  # a minute or two later
    same_body = [
        parse_header(a).content == parse_header(b).content
        for a, b in zip(first["narrative"], second["narrative"], strict=True)
    ]
    assert np.mean(same_body) == 1.0
    assert (first["location_text"].to_numpy() == second["location_text"].to_numpy()).all()
    original = truth.set_index("incident_id").loc[copies["duplicate_of"]]
    assert (original["call_type"].to_numpy() == copies["call_type"].to_numpy()).all()
    assert set(truth["channel"]) == {"110", "12345", "in_person"}


def test_family_violence_is_coded_like_real_desks(small_city: tuple[City, Path]) -> None:
    city, _ = small_city
    calls = city.tables["incidents"].merge(city.truth["incidents"], on="incident_id")
    violent = calls[(calls["category"] == "family") & calls["true_violence"] & ~calls["escalation_call"]]
    codes = violent["category_l2"].value_counts(normalize=True)
    assert 0.45 < codes.get("家庭暴力", 0) + codes.get("虐待", 0) < 0.75  # far more than the old 18 %
    assert 0.02 < codes.get("虐待", 0) < 0.12
    assert codes.get("打架斗殴", 0) + codes.get("殴打他人", 0) + codes.get("其他", 0) > 0.08  # desk noise
    assert 0.08 < codes.get("家庭纠纷", 0) < 0.35
    assert calls.loc[calls["category_l2"].isin(["家庭暴力", "虐待"]), "category_l1"].eq("治安警情").all()
