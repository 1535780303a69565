"""Drift monitoring (docs/drift.md): PSI by hand, bins, volume tests, and injected drift on a trained city.

The city tests reuse the session's trained and ranked city: one load of its data (``city_now``),
then each injection changes only what it injects (the narratives of the last four weeks; one
county's calls doubled), so every assertion names the one check that must catch it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.drift import (
    DriftConfig,
    bin_edges,
    bin_shares,
    drift_report,
    load_drift_config,
    psi,
    summary_line,
)
from models.drift_config import DriftConfigError
from models.drift_volume import volume_rows

SHAPE = {"reference", "thresholds", "features", "score", "text", "volume", "breaches", "status"}


# --------------------------------------------------------------------------------------------- formulas


def test_psi_matches_hand_computed_values() -> None:
    # 0.1 ln(0.6/0.5) + (-0.1) ln(0.4/0.5) = 0.018232 + 0.022314
    assert psi([0.5, 0.5], [0.6, 0.4]) == pytest.approx(0.0405465, abs=1e-6)
    assert psi([0.25] * 4, [0.25] * 4) == 0.0
    # deciles of a reference, and a current population in only half of them: five bins at 0.2 (0.1 ln 2 each),
    # five empty (floored at 1e-4): 5 x 0.0693147 + 5 x (1e-4 - 0.1) ln(1e-4 / 0.1) = 0.346574 + 3.450424
    assert psi([0.1] * 10, [0.2] * 5 + [0.0] * 5) == pytest.approx(3.796998, abs=1e-5)
    with pytest.raises(ValueError, match="bins"):
        psi([0.5, 0.5], [1.0])


def test_bins_quantiles_constants_and_mostly_zero_features() -> None:
    rng = np.random.default_rng(0)
    normal = rng.normal(size=20_000)
    edges = bin_edges(normal, 10)
    assert len(edges) == 9
    assert bin_shares(normal, edges)[:10] == pytest.approx([0.1] * 10, abs=0.001)
    assert psi(bin_shares(normal, edges), bin_shares(rng.normal(size=20_000), edges)) < 0.01
    shifted = psi(bin_shares(normal, edges), bin_shares(rng.normal(0.5, 1, size=20_000), edges))
    assert 0.2 < shifted < 0.3  # a half-sd shift of a normal: ~0.25, the "major shift" line
    mostly_zero = np.where(rng.random(10_000) < 0.95, 0.0, rng.exponential(3, 10_000))
    edges = bin_edges(mostly_zero, 10)
    assert edges[0] == 0.0 and bin_shares(mostly_zero, edges)[0] == pytest.approx(0.95, abs=0.01)
    assert bin_edges(np.full(100, 2.0), 10) == [2.0]
    assert bin_shares(np.array([2.0, 3.0, np.nan, 1.0]), [2.0]) == [0.5, 0.25, 0.25]  # <=2, >2, NaN
    counts = np.repeat([0.0, 1.0, 2.0, 5.0], [70, 20, 9, 1])
    assert bin_edges(counts, 10) == [0.0, 1.0, 2.0, 5.0]  # few distinct values: one bin each


def test_volume_small_station_bursts_are_not_news_a_doubling_is() -> None:
    rng = np.random.default_rng(3)
    config = DriftConfig()
    history = {f"S{i:03d}": list(rng.poisson(0.6, 26)) for i in range(100)}
    history["S100"] = list(rng.poisson(30, 26))
    county = {s: "150500" for s in history}
    rows = volume_rows({"S001": 4, "S002": 3, "S100": 31}, history, county, 7, config, "station")
    status = {r["station_id"]: r["status"] for r in rows}
    assert status["S001"] == status["S002"] == status["S100"] == "ok"  # 4 calls where 0.6 are usual: one family
    doubled = volume_rows({"S100": 62}, history, county, 7, config, "station")
    row = next(r for r in doubled if r["station_id"] == "S100")
    assert row["status"] == "alert" and row["ratio"] == pytest.approx(62 / row["expected"], rel=1e-3)
    lost = next(r for r in volume_rows({"S100": 5}, history, county, 7, config, "station") if r["station_id"] == "S100")
    assert lost["status"] == "alert"  # a station whose calls vanished: an export that lost them


def test_volume_tails_equal_scipy_stats_distributions() -> None:
    """The tails from scipy.special are scipy.stats' Poisson and negative binomial tails (to 1e-12, relatively)."""
    from scipy import stats

    from models.drift_volume import _tail

    checked = 0
    for mean in (0.3, 2.0, 7.5, 40.0, 310.0):
        for alpha in (0.0, 0.05, 0.7, 2.5):
            for calls in sorted({0, 1, 2, int(mean), int(mean) + 1, int(3 * mean) + 4}):
                size = 1 / alpha if alpha else 0.0
                dist = stats.nbinom(size, size / (size + mean)) if alpha else stats.poisson(mean)
                expected = dist.sf(calls - 1) if calls >= mean else dist.cdf(calls)
                assert _tail(calls, mean, alpha) == pytest.approx(expected, rel=1e-12, abs=1e-300)
                checked += 1
    assert checked > 80 and _tail(3, 0.0, 0.5) == 0.0 and _tail(0, 0.0, 0.5) == 1.0


def test_config_file_errors_name_the_key(tmp_path: Path) -> None:
    config = load_drift_config()
    assert (config.psi_warn, config.psi_alert, config.bins) == (0.1, 0.25, 10)
    bad = tmp_path / "drift.toml"
    bad.write_text("[psi]\nwarn = 0.3\nalert = 0.25\n", encoding="utf-8")
    with pytest.raises(DriftConfigError, match="psi_warn <= psi_alert"):
        load_drift_config(bad)
    bad.write_text("[psi]\nwran = 0.1\n", encoding="utf-8")
    with pytest.raises(DriftConfigError, match="unknown key 'wran' in \\[psi\\]") as caught:
        load_drift_config(bad)
    from pipelines.commands.errors import is_known

    assert is_known(caught.value)  # the CLI prints the message, not a traceback


# ------------------------------------------------------------------------------------------- the city


@pytest.fixture(scope="session")  # session: xdist interleaves modules, a module fixture would be rebuilt
def city_now(ranked: dict) -> dict:
    """The ranked city loaded once, its population as of the ranking day, and the champion's scores."""
    from pipelines.drift import _champion_scores, data_end, latest_population
    from pipelines.preparation import prepare

    prepared = prepare(ranked["city"])
    day = data_end(prepared)
    frame = latest_population(prepared, day)
    return {
        **ranked,
        "prepared": prepared,
        "day": day,
        "frame": frame,
        "score": _champion_scores(ranked["bundle"], frame),
    }


def _drift(city: dict, prepared: object) -> dict:
    from pipelines.drift import current_drift

    return current_drift(prepared, city["bundle"], city["day"], city["frame"], city["score"])


def _kinds(report: dict) -> set[str]:
    return {b["kind"] for b in report["breaches"]}


@pytest.mark.xdist_group("trained")
def test_clean_ranking_raises_nothing_and_publishes_the_table(ranked: dict) -> None:
    drift = ranked["result"].drift
    assert set(drift) == SHAPE
    assert drift["reference"]["available"] and drift["reference"]["rows"] > 1000
    assert drift["status"] != "alert", drift["breaches"]
    assert not {"text", "volume", "score"} & _kinds(drift), drift["breaches"]
    assert max(row["psi"] for row in drift["features"]) < 0.1
    assert len(drift["features"]) == len(ranked["result"].drift["features"]) > 50
    folder = ranked["result"].folder
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["drift"]["status"] == drift["status"]
    assert {"station_id", "calls", "expected", "ratio", "status"} <= set(manifest["drift"]["volume"][0])
    page = (folder / "index.html").read_text(encoding="utf-8")
    assert 'id="drift"' in page and "模型输入漂移监测" in page and "drift-features" in page
    assert summary_line(drift).startswith("drift: 0 breaches")


@pytest.mark.xdist_group("trained")
def test_a_clean_month_of_daily_checks_raises_nothing(city_now: dict) -> None:
    from pipelines.drift import _champion_scores, current_drift, latest_population

    prepared = city_now["prepared"]
    for back in range(0, 29, 7):  # the last month's mornings, each against the champion's reference
        day = city_now["day"] - pd.Timedelta(days=back)
        frame = latest_population(prepared, day)
        report = current_drift(prepared, city_now["bundle"], day, frame, _champion_scores(city_now["bundle"], frame))
        assert report["breaches"] == [], (back, report["breaches"])
        assert max(row["psi"] for row in report["features"]) < 0.1 and report["score"]["psi"] < 0.1


@pytest.mark.xdist_group("trained")
def test_new_call_taker_style_is_caught_as_text_drift(city_now: dict) -> None:
    from models.rules import rule_verdicts
    from simulation.drift import restyle_narratives

    prepared = city_now["prepared"]
    incidents = restyle_narratives(prepared.incidents, city_now["day"] - pd.Timedelta(days=28), seed=1)
    changed = np.flatnonzero((incidents["narrative"] != prepared.incidents["narrative"]).to_numpy())
    assert len(changed) > 150
    rules = prepared.rules.copy()
    fresh = rule_verdicts(incidents["narrative"].iloc[changed].reset_index(drop=True))
    for column in rules.columns:
        rules.loc[changed, column] = fresh[column].to_numpy()
    report = _drift(city_now, dataclasses.replace(prepared, incidents=incidents, rules=rules))
    assert report["status"] == "alert"
    assert _kinds(report) == {"text"}, report["breaches"]
    text = {row["name"]: row for row in report["text"]}
    assert text["ood_share"]["status"] == "alert" and text["ood_share"]["value"] > 0.3 > text["ood_share"]["reference"]
    assert text["no_dispute_verdict"]["status"] == "alert"
    assert sum(row["status"] == "alert" for name, row in text.items() if name.startswith("lexicon_")) >= 2


@pytest.mark.xdist_group("trained")
def test_a_county_doubling_is_caught_in_that_county_only(city_now: dict) -> None:
    from pipelines.drift import station_counties
    from simulation.drift import double_county_calls

    prepared = city_now["prepared"]
    county_of = station_counties(prepared.tables["addresses"])
    biggest = prepared.incidents["station_id"].astype(str).map(county_of).value_counts().index[0]
    doubled = double_county_calls(
        prepared.incidents, prepared.tables["addresses"], biggest, city_now["day"] - pd.Timedelta(days=28), seed=2
    )
    rules = prepared.rules.loc[doubled.index].reset_index(drop=True)
    report = _drift(city_now, dataclasses.replace(prepared, incidents=doubled.reset_index(drop=True), rules=rules))
    assert _kinds(report) == {"volume"}, report["breaches"]
    counties = {row["station_id"]: row for row in report["volume"] if row["level"] == "county"}
    assert counties[biggest]["status"] == "alert" and counties[biggest]["ratio"] > 1.8
    assert [code for code, row in counties.items() if row["status"] != "ok"] == [biggest]
    stations = [row for row in report["volume"] if row["level"] == "station" and row["status"] != "ok"]
    assert all(row["county_code"] == biggest for row in stations)
    assert report["status"] == "alert"


@pytest.mark.xdist_group("trained")
def test_without_a_reference_drift_says_why_and_raises_nothing(city_now: dict, tmp_path: Path) -> None:
    from models.bundle import BundleError, load_manifest
    from pipelines.drift import current_drift, read_reference

    prepared = city_now["prepared"]
    report = current_drift(prepared, None, city_now["day"], city_now["frame"], city_now["score"])
    assert report["status"] == "ok" and report["breaches"] == [] and not report["reference"]["available"]
    assert "no champion" in report["reference"]["why"]
    older = tmp_path / "older"  # a bundle exported before drift monitoring: no file listed, no file there
    shutil.copytree(city_now["bundle"], older)
    manifest = json.loads((older / "manifest.json").read_text(encoding="utf-8"))
    manifest.pop("files")
    (older / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (older / "drift_reference.json").unlink()
    load_manifest(older)  # still a valid bundle
    profile, why = read_reference(older)
    assert profile is None and "has no drift_reference.json" in why
    assert summary_line(current_drift(prepared, older, city_now["day"], city_now["frame"], None)).startswith(
        "drift: not measured"
    )
    tampered = tmp_path / "tampered"
    shutil.copytree(city_now["bundle"], tampered)
    (tampered / "drift_reference.json").write_text("{}", encoding="utf-8")
    with pytest.raises(BundleError, match=r"drift_reference\.json: sha256 does not match"):
        load_manifest(tampered)


@pytest.mark.xdist_group("trained")
def test_training_compares_its_latest_data_with_the_champion(trained: dict, city_now: dict) -> None:
    from pipelines.drift import training_drift

    first = trained["report"]["drift"]  # the first run had no champion to compare with
    assert not first["reference"]["available"] and "no champion yet" in first["reference"]["why"]
    assert "## 漂移 / Drift" in (trained["root"] / "run1" / "report.md").read_text(encoding="utf-8")
    assert json.loads((trained["root"] / "run1" / "drift.json").read_text(encoding="utf-8")) == first
    report = training_drift(city_now["prepared"], trained["uri"])  # the champion's bundle, from the registry
    assert report["reference"]["available"] and report["reference"]["current"]["made_by"] == "training"
    assert report["status"] != "alert" and not report["breaches"], report["breaches"]
    assert report["score"]["psi"] is not None and report["score"]["psi"] < 0.1


def test_flow_flag_is_a_completed_state_named_drifted() -> None:
    from pipelines.drift import DRIFTED, drift_state

    clean = {"date": "2024-12-31", "drift": {"status": "warn"}}
    assert drift_state(clean) is clean  # a warning shows in the tables, it does not flag the run
    alert = {"date": "2024-12-31", "drift": {"status": "alert", "reference": {"available": True}, "breaches": []}}
    state = drift_state(alert, publish=False)
    assert state.name == DRIFTED and state.is_completed()


def test_report_shape_without_rows_is_plain_json() -> None:
    config = DriftConfig()
    reference = {
        "format": "yujing-drift-reference",
        "format_version": 1,
        "provenance": {"data_fingerprint": "x"},
        "features": {"a": {"edges": [0.0], "shares": [0.5, 0.5, 0.0]}},
        "score": {"edges": [0.5], "shares": [0.5, 0.5, 0.0]},
        "text": {"calls": 0, "ood_threshold": 0.3, "shares": {}},
        "volume": {"stations": {}, "county_of": {}},
    }
    report = drift_report(reference, pd.DataFrame({"a": [0.0] * 10}), None, None, None, {}, {}, config)
    assert set(report) == SHAPE and report["status"] == "ok"  # 10 rows: below psi_min_rows, reported not raised
    assert report["features"][0]["psi"] > 0.25 and report["features"][0]["status"] == "ok"
    assert json.loads(json.dumps(report, allow_nan=False)) == report
    assert math.isfinite(report["features"][0]["psi"])


def test_the_shared_table_shows_breaches_first_with_their_places() -> None:
    from models.drift_views import drift_lines, drift_view
    from web.render import environment

    report = {
        "reference": {"available": True, "data_fingerprint": "abc", "current": {"date": "2024-12-31", "rows": 618}},
        "thresholds": {},
        "features": [{"name": "calls_30d", "psi": 0.31, "status": "alert", "rows": 618}],
        "score": {"psi": 0.02, "status": "ok"},
        "text": [{"name": "ood_share", "value": 0.4, "reference": 0.002, "status": "alert", "threshold": 0.03}],
        "volume": [
            {"station_id": "150502", "county_code": "150502", "level": "county", "calls": 61, "expected": 25.6,
             "ratio": 2.38, "p_value": 1e-8, "status": "alert"},
            {"station_id": "S001", "county_code": "150502", "level": "station", "calls": 1, "expected": 0.8,
             "ratio": 1.25, "p_value": 0.5, "status": "ok"},
        ],
        "breaches": [
            {"kind": "volume", "name": "county 150502", "value": 2.38, "threshold": 1.8, "status": "alert"},
            {"kind": "text", "name": "ood_share", "value": 0.4, "threshold": 0.03, "status": "alert"},
        ],
        "status": "alert",
    }  # fmt: skip
    view = drift_view(report)
    assert [b["name"] for b in view["breaches"]] == ["旗县区 150502", "分布外叙述占比 (OOD)"]
    assert [v["label"] for v in view["volume"]] == ["旗县区 150502"]  # counties always, stations only when breached
    html = environment().from_string('{% import "_drift.html" as d %}{{ d.drift_section(v) }}').render(v=view)
    assert 'data-drift-status="alert"' in html and "旗县区 150502" in html and "2.380" in html
    assert "<script" not in html
    assert drift_view(None) is None
    assert "| alert | volume | county 150502 | 2.380 | 1.800 |" in drift_lines(report)
