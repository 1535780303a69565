"""The daily ranking: levels and capacity, reasons side by side, outputs, database, idempotence, atomicity."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.warning_store import WarningStore
from pipelines import ranking
from pipelines.outputs import published
from pipelines.ranking import RankConfig, RankingError, run_ranking

pytestmark = pytest.mark.xdist_group("trained")


def _digest(folder: Path, name: str) -> str:
    return hashlib.sha256((folder / name).read_bytes()).hexdigest()


def test_every_household_is_scored_and_only_in_scope_ones_are_warned(ranked: dict) -> None:
    result = ranked["result"]
    folder = published(ranked["rankings"], result.date)
    assert folder is not None and folder == result.folder.resolve()
    table = pd.read_parquet(folder / "ranking.parquet")
    households = pd.read_parquet(ranked["city"] / "households.parquet")
    assert len(table) == len(households) == result.households
    assert result.engine == "model" and table["probability"].notna().all()
    warned = table[table["level"].notna()]
    # The model warns only its population (in scope); the rules grade every household.
    assert len(warned) > 0 and (warned["in_scope"] | (warned["raised_by"] == "rules")).all()
    assert warned.loc[warned["raised_by"] != "rules", "in_scope"].all()
    assert result.warnings == {lvl: int((warned["level"] == lvl).sum()) for lvl in ("red", "orange", "yellow", "blue")}
    # A level is earned by threshold first; capacity only ever lowers it.
    order = {"red": 0, "orange": 1, "yellow": 2, "blue": 3}
    assert all(order[a] >= order[b] for a, b in zip(warned["level"], warned["threshold_level"], strict=True))
    capacity = RankConfig().capacity
    per_station = warned.groupby(["station_id", "level"]).size()
    for (station, level), count in per_station.items():
        assert count <= capacity.get(level, 10**9), (station, level)
    # Ranks are 1..n inside each station, worst level first.
    for _, rows in warned.groupby("station_id"):
        assert sorted(rows["rank_in_station"]) == list(range(1, len(rows) + 1))
        by_rank = rows.sort_values("rank_in_station")
        assert list(by_rank["level"].map(order)) == sorted(by_rank["level"].map(order))


def test_reasons_from_the_model_and_the_rules_sit_side_by_side(ranked: dict) -> None:
    table = pd.read_parquet(ranked["result"].folder / "ranking.parquet")
    warned = table[table["level"].notna()]
    assert (warned["model_reasons"].map(len) > 0).mean() > 0.9
    assert (warned["rules_reasons"].map(len) > 0).all()
    recent = warned[warned["disputes_90d"] > 0]
    assert len(recent) and (recent["matched_terms"].map(len) > 0).mean() > 0.8
    top = ranked["result"].top
    assert len(top) == min(10, len(warned)) and top["level"].notna().all()


def test_the_published_level_follows_the_policy(ranked: dict) -> None:
    """Rules-red is red; raised_by names the side(s) reaching the level; every model level has a recent call."""
    from models.levels import level_rank

    table = pd.read_parquet(ranked["result"].folder / "ranking.parquet")
    assert (table.loc[table["rules_level"] == "red", "level"] == "red").all()
    warned = table[table["level"].notna()]
    for row in warned.itertuples(index=False):
        rules = level_rank(row.rules_level) <= level_rank(row.level)
        model = level_rank(row.model_level) <= level_rank(row.level) and row.calls_90d > 0
        assert row.raised_by == ("both" if rules and model else "rules" if rules else "model"), row.household_id
        assert level_rank(row.level) <= level_rank(row.rules_level)  # the model never lowers the rules
        assert row.recent_calls is not None and len(row.recent_calls) > 0  # every warning shows its calls
    model_raised = warned[warned["raised_by"] == "model"]
    assert (model_raised["calls_90d"] > 0).all()  # no warning on static traits alone
    # Within a station: level, then the raw score (strict), then points.
    for _, rows in warned.groupby("station_id"):
        rows = rows.sort_values("rank_in_station")
        keys = list(zip(rows["level"].map(level_rank), -rows["score"], -rows["rules_points"], strict=True))
        assert keys == sorted(keys)


def test_outputs_carry_their_provenance(ranked: dict) -> None:
    folder = ranked["result"].folder
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    for key in ("code_version", "data_fingerprint", "lexicon_version", "model_version", "params", "feature_names"):
        assert manifest[key], key
    assert manifest["model"]["escalation_sha256"] and manifest["model_version"] == "test v1"
    assert (folder / "warnings.csv").read_bytes()[:3] == b"\xef\xbb\xbf"
    assert (folder / "index.html").is_file() and any((folder / "stations").glob("*.html"))
    for name in ("features", "calls", "context", "person_households"):
        assert (folder / f"{name}.parquet").is_file()
    calls = pd.read_parquet(folder / "calls.parquet")
    assert "narrative" not in calls.columns  # no text leaves the job in the online tables


def test_the_database_holds_the_warnings_with_status_pushed(ranked: dict) -> None:
    store = WarningStore(ranked["store"])
    try:
        rows = store.warnings_for(ranked["result"].date)
        assert len(rows) == sum(ranked["result"].warnings.values())
        assert {r["status"] for r in rows} == {"pushed"}
        assert all(r["reasons"]["rules"] for r in rows)
        assert store.run_info(ranked["result"].date)["info"]["data_fingerprint"]
    finally:
        store.dispose()


def test_rerunning_a_date_is_idempotent_and_keeps_what_stations_did(ranked: dict, tmp_path: Path) -> None:
    rankings, store_url = tmp_path / "rankings", f"sqlite:///{tmp_path / 'w.db'}"
    city = ranked["city"]
    first = run_ranking(city, None, rankings, store_url, ranked["bundle"], "test v1", RankConfig())
    store = WarningStore(store_url)
    try:
        warning = store.warnings_for(first.date)[0]
        store.set_status(warning["id"], "acknowledged", actor="S-test")
        digests = {n: _digest(first.folder, n) for n in ("ranking.parquet", "warnings.csv", "index.html")}
        first_target = first.folder.resolve()
        second = run_ranking(city, None, rankings, store_url, ranked["bundle"], "test v1", RankConfig())
        assert {n: _digest(second.folder, n) for n in digests} == digests
        assert second.database["inserted"] == 0 and second.database["updated"] == 0
        assert second.database["unchanged"] == sum(first.warnings.values())
        assert store.get(warning["id"])["status"] == "acknowledged"
        assert not first_target.exists() and second.folder.resolve() != first_target  # the old one is gone
        assert len([p for p in rankings.iterdir() if p.name.startswith(".") and p.is_dir()]) == 1
    finally:
        store.dispose()


def test_a_failed_run_leaves_the_previous_day_intact(ranked: dict, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rankings, store_url = tmp_path / "rankings", f"sqlite:///{tmp_path / 'w.db'}"
    city = ranked["city"]
    first = run_ranking(city, None, rankings, store_url, ranked["bundle"], "test v1", RankConfig())
    before = _digest(first.folder, "ranking.parquet")

    def broken(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("database went away")

    monkeypatch.setattr(WarningStore, "prepare", broken)
    tighter = dataclasses.replace(RankConfig(), thresholds={"red": 0.5, "orange": 0.4, "yellow": 0.3, "blue": 0.2})
    with pytest.raises(RuntimeError, match="database went away"):
        run_ranking(city, None, rankings, store_url, ranked["bundle"], "test v1", tighter)
    assert published(rankings, first.date) == first.folder.resolve()
    assert _digest(first.folder, "ranking.parquet") == before
    hidden = [p for p in rankings.iterdir() if p.name.startswith(".") and p.is_dir()]
    assert hidden == [first.folder.resolve()]  # the staged folder was removed


def test_without_a_model_the_rules_rank_and_say_so(ranked: dict, tmp_path: Path) -> None:
    city = ranked["city"]
    result = run_ranking(city, None, tmp_path / "r", f"sqlite:///{tmp_path / 'w.db'}", None, None, RankConfig())
    assert result.engine == "rules"
    table = pd.read_parquet(result.folder / "ranking.parquet")
    warned = table[table["level"].notna()]
    assert table["probability"].isna().all() and len(warned) > 0
    assert (warned["threshold_level"] == warned["rules_level"]).all()
    assert "降级" in (result.folder / "index.html").read_text(encoding="utf-8")


def test_a_corrupt_bundle_falls_back_to_the_rules(ranked: dict, tmp_path: Path) -> None:
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(ranked["bundle"], bundle)
    (bundle / "escalation.onnx").write_bytes(b"not a model")
    scorer, why = ranking.load_scorer(bundle, ranked["result"].top.columns.tolist())
    assert scorer is None and "unusable" in why


def test_dates_are_checked(ranked: dict) -> None:
    incidents = pd.DataFrame({"received_at": pd.to_datetime(["2023-01-01 08:00", "2024-12-30 20:00"])})
    assert ranking.ranking_day(incidents, None) == pd.Timestamp("2024-12-31")
    assert ranking.ranking_day(incidents, "2024-06-01") == pd.Timestamp("2024-06-01")
    for bad in ("2022-05-01", "not-a-date", "2024-06-01T10:00"):
        with pytest.raises(RankingError):
            ranking.ranking_day(incidents, bad)
    # an export states its date: that is "today" for the data, and a day it cannot know is refused
    exported = pd.Timestamp("2025-01-03")
    assert ranking.ranking_day(incidents, None, exported) == exported
    assert ranking.ranking_day(incidents, "2025-01-04", exported) == pd.Timestamp("2025-01-04")
    with pytest.raises(RankingError, match="after the data was exported"):
        ranking.ranking_day(incidents, "2099-01-02", exported)


def test_the_cli_ranks_prints_the_top_ten_and_reruns_identically_in_another_process(
    ranked: dict, tmp_path: Path
) -> None:
    """Two processes with different hash seeds: the second run of the date changes nothing."""
    import os
    import re
    import subprocess
    import sys

    yujing = Path(sys.executable).parent / "yujing"
    args = [str(yujing), "rank", "--data", str(ranked["city"]), "--bundle", str(ranked["bundle"]), "--no-prefect"]
    outputs = []
    for seed in ("1", "2"):
        env = dict(os.environ, YUJING_HOME=str(tmp_path / "var"), PYTHONHASHSEED=seed)
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(done.stdout)
    first, second = outputs
    assert first.count("模型因素") == min(10, sum(ranked["result"].warnings.values()))
    assert "warnings.csv" in first and "scored by model" in first
    n = sum(ranked["result"].warnings.values())
    assert f"database: {n} new, 0 updated" in first
    assert f"database: 0 new, 0 updated, {n} unchanged" in second
    # the second process scores and links nothing anew (the incident cache under YUJING_HOME), and says so
    calls = len(pd.read_parquet(ranked["city"] / "incidents.parquet", columns=["incident_id"]))
    assert f"incident cache: rules 0 reused, {calls:,} scored; links 0 reused, {calls:,} linked" in first
    assert f"incident cache: rules {calls:,} reused, 0 scored; links {calls:,} reused, 0 linked" in second
    # the recent calls' readings and the text-drift scores too: the first run read them, the second reuses them
    some = r"[1-9][\d,]*"
    assert re.search(rf"recent-call readings 0 reused, {some} read; text drift 0 reused, {some} scored", first)
    assert re.search(rf"recent-call readings {some} reused, 0 read; text drift {some} reused, 0 scored", second)
    assert re.search(rf"escalations' rules levels 0 reused, {some} computed", first)
    assert re.search(rf"escalations' rules levels {some} reused, 0 computed", second)
    same = [[line for line in out.split("database:")[0].splitlines() if not line.startswith("incident cache:")]
            for out in outputs]  # fmt: skip
    assert same[0] == same[1]  # same summary and counts
    env = dict(os.environ, YUJING_HOME=str(tmp_path / "var"))
    bad = subprocess.run(
        [*args[:4], "--date", "1999-01-01", "--no-prefect"], env=env, capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and "before the data starts" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_the_prefect_flow_gives_the_same_ranking(ranked: dict, tmp_path: Path, prefect_harness: None) -> None:
    from pipelines.flows import build_rank_flow

    city = ranked["city"]
    summary = build_rank_flow()(
        data_dir=str(city),
        out_root=str(tmp_path / "rankings"),
        store_url=f"sqlite:///{tmp_path / 'w.db'}",
        bundle_dir=str(ranked["bundle"]),
        config=dataclasses.asdict(RankConfig()),
    )
    assert summary["warnings"] == ranked["result"].warnings
    flow_table = pd.read_parquet(Path(summary["folder"]) / "ranking.parquet")
    plain_table = pd.read_parquet(ranked["result"].folder / "ranking.parquet")
    assert np.allclose(flow_table["probability"], plain_table["probability"])


def test_the_daily_deployment_runs_on_the_configured_cron(tmp_path: Path) -> None:
    from conf import Settings
    from pipelines.flows import daily_deployment

    settings = Settings(home=tmp_path / "var", schedule_cron="30 5 * * *")
    deployment = daily_deployment(settings)
    assert deployment.name == "yujing-daily-rank"
    assert deployment.schedules[0].schedule.cron == "30 5 * * *"
    assert deployment.schedules[0].schedule.timezone == "Asia/Shanghai"  # 05:30 in Beijing, not UTC
    assert deployment.parameters["date"] is None  # each run ranks its own today
    assert deployment.entrypoint.endswith("pipelines/scheduled.py:daily_rank")  # loadable by the runner


def test_occlusion_in_blocks_equals_one_block(ranked: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """The model's reasons measured block by block (models/reasons.py) are the one-block contributions, bit for bit."""
    import models.reasons
    from features.matrix import float32_matrix
    from models.reasons import occlusion_contributions
    from serving.scorer import OnnxScorer

    prepared = ranking.prepare(ranked["city"])
    day = ranking.ranking_day(prepared.incidents, None, prepared.export_date)
    scored = ranking.score_households(prepared, day, ranked["bundle"], "test v1")
    scorer = OnnxScorer.from_bundle(ranked["bundle"])
    names = list(scorer.feature_names(ranking.ESCALATION))
    X = float32_matrix(scored.frame[scored.frame["in_scope"]].head(400), names)

    def raw(x: np.ndarray) -> np.ndarray:
        return scorer.predict_batched(ranking.ESCALATION, x, workers=2)[:, 1]

    whole = occlusion_contributions(raw, X, names)
    monkeypatch.setattr(models.reasons, "OCCLUSION_BLOCK", 700)  # a few rows per block, a short last one
    assert occlusion_contributions(raw, X, names).tobytes() == whole.tobytes()
    assert np.count_nonzero(whole) > 400  # the rows have reasons to compare


def test_households_scored_block_by_block_get_the_whole_matrix_scores(
    ranked: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scoring in blocks of rows (never the whole matrix: features/matrix.py) changes no bit of a score."""
    import features.matrix
    from features.matrix import float32_matrix
    from serving.incident import model_scores
    from serving.scorer import OnnxScorer

    prepared = ranking.prepare(ranked["city"])
    day = ranking.ranking_day(prepared.incidents, None, prepared.export_date)
    monkeypatch.setattr(features.matrix, "BLOCK_ROWS", 997)  # many blocks and a short last one
    scored = ranking.score_households(prepared, day, ranked["bundle"], "test v1")
    assert scored.engine == "model" and len(scored.frame) > 3 * 997
    scorer = OnnxScorer.from_bundle(ranked["bundle"])
    X = float32_matrix(scored.frame, scorer.feature_names(ranking.ESCALATION))
    score, probability = model_scores(scorer, X, workers=2)
    assert scored.score.tobytes() == score.tobytes()
    assert scored.probability.tobytes() == probability.tobytes()
