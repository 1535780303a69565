"""What the HTTP speed-ups (issue 11) must not change: scores, dates, the audit log, where a request runs."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

import serving.routers.incidents as incidents_module
from conf import Settings
from models.calibration import Calibration
from pipelines.commands.serve import MAX_DEFAULT_WORKERS, default_workers
from serving.app import create_app
from serving.audit import AuditWriter
from serving.incident import ESCALATION, call_date, model_scores
from serving.routers.incidents import INLINE_NARRATIVE_CHARS
from serving.scorer import OnnxScorer, positive_class
from serving.state import ServiceState

KEY = "speed-test-key-0123456789"


class CountingScorer:
    """A scorer stand-in: fixed probabilities, a real calibration, and a count of model runs."""

    def __init__(self, proba: np.ndarray, calibration: Calibration) -> None:
        self.proba, self.calibration, self.runs = proba, calibration, 0

    def predict_batched(self, model_name: str, X: np.ndarray, workers: int = 1) -> np.ndarray:
        self.runs += 1
        return self.proba

    def calibrate(self, model_name: str, positive: np.ndarray) -> np.ndarray:
        return self.calibration.apply(positive)


def test_model_scores_runs_the_model_once_for_raw_and_calibrated() -> None:
    proba = np.array([[0.9, 0.1], [0.35, 0.65], [0.02, 0.98]], dtype=np.float32)
    calibration = Calibration(method="isotonic", x=(0.0, 0.5, 1.0), y=(0.0, 0.2, 0.9))
    scorer = CountingScorer(proba, calibration)
    raw, calibrated = model_scores(scorer, np.zeros((3, 4), np.float32))  # type: ignore[arg-type]
    assert scorer.runs == 1
    np.testing.assert_array_equal(raw, proba[:, 1].astype(np.float64))
    np.testing.assert_allclose(calibrated, [0.04, 0.41, 0.872], atol=1e-6)  # interp on (0,0)-(0.5,0.2)-(1,0.9)


def test_calibrate_of_one_run_is_predict_calibrated_on_the_trained_bundle(trained: dict) -> None:
    scorer = OnnxScorer.from_bundle(trained["bundle"])
    X = np.random.default_rng(5).normal(size=(64, len(scorer.feature_names(ESCALATION)))).astype(np.float32)
    raw = positive_class(scorer.predict_batched(ESCALATION, X))
    calibrated = scorer.calibrate(ESCALATION, raw)
    assert calibrated.dtype == np.float64 and np.ptp(calibrated) > 0
    np.testing.assert_array_equal(calibrated, scorer.predict_calibrated(ESCALATION, X))
    np.testing.assert_array_equal(model_scores(scorer, X)[1], calibrated)


@pytest.mark.parametrize(("cores", "expected"), [(1, 1), (2, 2), (3, 3), (8, MAX_DEFAULT_WORKERS)])
def test_serve_defaults_to_one_worker_per_available_core_at_most_four(
    cores: int, expected: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(cores)))
    assert default_workers() == expected


@pytest.mark.parametrize(
    "stamp",
    ["1970-01-01 00:00:00", "1969-12-31 23:59:59", "1677-09-22 00:00:00", "2024-02-29 23:59:59", "2262-04-11 00:00:00"],
)
def test_call_date_is_the_pandas_date(stamp: str) -> None:
    sec = int(pd.Timestamp(stamp).value // 1_000_000_000)
    assert call_date(sec) == f"{pd.Timestamp(sec, unit='s'):%Y-%m-%d}" == stamp[:10]


def test_call_date_agrees_with_pandas_over_three_centuries() -> None:
    secs = np.random.default_rng(3).integers(-9_000_000_000, 9_000_000_000, 2_000)
    assert [call_date(int(s)) for s in secs] == [f"{pd.Timestamp(int(s), unit='s'):%Y-%m-%d}" for s in secs]


def _write_lines(path: str, worker: int, n: int) -> None:
    writer = AuditWriter(Path(path))
    for i in range(n):
        writer.write({"worker": worker, "i": i, "pad": "x" * (i % 300)})
    writer.close()


def test_audit_lines_are_on_disk_at_once_and_whole_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "audit.jsonl"
    writer = AuditWriter(path)
    writer.write({"route": "/healthz", "status": 200})
    assert json.loads(path.read_text(encoding="utf-8")) == {"route": "/healthz", "status": 200}  # nothing buffered
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_lines, args=(str(path), w, 2_000)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    writer.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4_001
    seen = [json.loads(line) for line in lines[1:]]  # raises if two workers' lines interleaved
    for w in range(2):
        assert [e["i"] for e in seen if e["worker"] == w] == list(range(2_000))


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A degraded service (no bundle, no ranking: the rules answer) with one city key."""
    home = tmp_path_factory.mktemp("speed")
    keys = home / "keys.json"
    keys.write_text(json.dumps({KEY: {"scope": "city"}}), encoding="utf-8")
    settings = Settings(home=home, api_keys_file=keys, reload_interval_seconds=0)
    state = ServiceState(rankings_dir=home / "rankings", thresholds=settings.level_thresholds)
    with TestClient(create_app(settings, state)) as c:
        c.home = home
        yield c


def test_ordinary_incidents_are_scored_on_the_loop_long_ones_in_the_thread_pool(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    hops: list[str] = []
    real = incidents_module.run_in_threadpool

    async def counting(func: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(func.__name__)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(incidents_module, "run_in_threadpool", counting)
    short = "报警称：丈夫酒后动手打人，扬言要杀了她"
    answers = []
    for narrative in (short, short + "。" * (INLINE_NARRATIVE_CHARS - len(short))):
        r = client.post("/v1/incidents/score", headers={"X-API-Key": KEY}, json={"narrative": narrative})
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        answers.append(r.json())
    assert hops == []  # INLINE_NARRATIVE_CHARS characters still run inline
    r = client.post(
        "/v1/incidents/score", headers={"X-API-Key": KEY}, json={"narrative": short + "。" * INLINE_NARRATIVE_CHARS}
    )
    assert r.status_code == 200 and hops == ["score_checked"]
    assert answers[0]["is_dispute"] is True and answers[0]["degraded"] is True
    assert {"violence", "threat"} <= set(answers[0]["cues"]) and short not in r.text


def test_every_request_has_its_audit_line_when_the_answer_arrives(client: Any) -> None:
    log = client.home / "logs" / "audit.jsonl"
    before = len(log.read_text(encoding="utf-8").splitlines())
    assert client.get("/healthz").json()["status"] == "degraded"
    assert client.post("/v1/incidents/score", json={"narrative": "x"}).status_code == 401
    lines = [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines()[before:]]
    assert [(x["route"], x["status"]) for x in lines] == [("/healthz", 200), ("/v1/incidents/score", 401)]
