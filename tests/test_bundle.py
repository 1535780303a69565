"""Calibration, the ONNX bundle (write, verify, atomicity) and the serving scorer."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

import models.bundle as bundle_mod
from models.bundle import BundleError, BundleModel, load_manifest, write_bundle
from models.calibration import Calibration, fit_calibration
from models.onnx_export import check_parity, to_onnx
from serving.scorer import OnnxScorer, ScorerError

REPO = Path(__file__).resolve().parents[1]
N_FEATURES = 12
FEATURES = tuple(f"feat_{i:02d}" for i in range(N_FEATURES))
CATEGORIES = ("none", "family", "neighbour", "debt", "labour", "land", "medical", "traffic", "other")
PROVENANCE = {
    "code_version": "abc1234",
    "data_fingerprint": "sha256:0f0f",
    "lexicon_version": "lex-5e3a",
    "params": {"num_leaves": 15, "learning_rate": 0.1},
    "created_from_run": "run-42",
}
PARAMS = {"verbose": -1, "num_threads": 1, "deterministic": True, "seed": 1}


# ---------------------------------------------------------------- calibration


def _miscalibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores whose true probability is score**2: over-confident, as boosted trees often are."""
    rng = np.random.default_rng(seed)
    scores = rng.random(n)
    return scores, (rng.random(n) < scores**2).astype(np.int32)


def test_isotonic_is_monotone_in_range_and_matches_sklearn() -> None:
    from sklearn.isotonic import IsotonicRegression

    scores, labels = _miscalibrated(20_000, 1)
    cal = fit_calibration(scores, labels, method="isotonic")
    assert cal.method == "isotonic"
    assert all(b >= a for a, b in zip(cal.y, cal.y[1:], strict=False))
    grid = np.linspace(-0.5, 1.5, 5_001)
    out = cal.apply(grid)
    assert np.all(np.diff(out) >= 0)
    assert out.min() >= 0.0 and out.max() <= 1.0
    reference = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(scores, labels)
    np.testing.assert_allclose(out, reference.predict(grid), atol=1e-12)
    assert abs(cal.apply(np.array([0.5]))[0] - 0.25) < 0.05  # learned the square


def test_platt_recovers_a_known_sigmoid() -> None:
    rng = np.random.default_rng(2)
    scores = rng.uniform(0.01, 0.99, 50_000)
    logit = np.log(scores / (1 - scores))
    labels = (rng.random(len(scores)) < 1 / (1 + np.exp(-(2.0 * logit - 1.0)))).astype(np.int32)
    cal = fit_calibration(scores, labels, method="platt")
    a, b = cal.coef
    assert abs(a - 2.0) < 0.1 and abs(b + 1.0) < 0.1
    out = cal.apply(np.linspace(0, 1, 1_001))
    assert np.all(np.diff(out) >= 0) and out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibration_json_round_trip(method: str) -> None:
    scores, labels = _miscalibrated(5_000, 3)
    cal = fit_calibration(scores, labels, method=method)
    back = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert back == cal
    probe = np.random.default_rng(4).random(1_000)
    assert np.array_equal(back.apply(probe), cal.apply(probe))


def test_calibration_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="one class"):
        fit_calibration(np.random.default_rng(0).random(100), np.zeros(100))
    with pytest.raises(ValueError, match="0/1"):
        fit_calibration(np.array([0.1, 0.2]), np.array([0, 2]))
    with pytest.raises(ValueError, match="NaN"):
        fit_calibration(np.array([0.1, np.nan]), np.array([0, 1]))
    with pytest.raises(ValueError, match="unknown calibration method"):
        fit_calibration(np.array([0.1, 0.9]), np.array([0, 1]), method="beta")
    with pytest.raises(ValueError, match="non-decreasing"):
        Calibration.from_dict({"method": "isotonic", "x": [0.1, 0.5], "y": [0.6, 0.2]})


# ---------------------------------------------------------------- models and bundles


@pytest.fixture(scope="module")
def trained() -> dict[str, object]:
    rng = np.random.default_rng(21)
    n = 6_000
    X = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    X[rng.random(X.shape) < 0.03] = np.nan
    f = np.nan_to_num(X)
    y_bin = (rng.random(n) < 1 / (1 + np.exp(-(1.5 * f[:, 0] - f[:, 3] * f[:, 5] - 1.5)))).astype(np.int32)
    y_cat = np.argmax(f[:, :9] + rng.gumbel(size=(n, 9)), axis=1).astype(np.int32)
    escalation = lgb.train(
        {**PARAMS, "objective": "binary", "num_leaves": 15}, lgb.Dataset(X[:4_000], y_bin[:4_000]), 40
    )
    dispute = lgb.train(
        {**PARAMS, "objective": "multiclass", "num_class": 9, "num_leaves": 7},
        lgb.Dataset(X[:4_000], y_cat[:4_000]),
        8,
    )
    tuning = X[4_000:]
    return {
        "X": X,
        "escalation": escalation,
        "dispute": dispute,
        "escalation_cal": fit_calibration(escalation.predict(tuning), y_bin[4_000:]),
        "dispute_cal": fit_calibration(1 - dispute.predict(tuning)[:, 0], (y_cat[4_000:] != 0).astype(int), "platt"),
    }


@pytest.fixture(scope="module")
def bundle_models(trained: dict[str, object]) -> dict[str, BundleModel]:
    escalation_onnx = to_onnx(trained["escalation"], N_FEATURES, "escalation")
    parity = check_parity(trained["escalation"], escalation_onnx, np.tile(trained["X"], (2, 1)))
    return {
        "escalation": BundleModel(
            escalation_onnx,
            FEATURES,
            (0, 1),
            calibration=trained["escalation_cal"],
            thresholds={"red": 0.5, "orange": 0.3, "yellow": 0.15},
            parity=parity,
        ),
        "dispute_type": BundleModel(
            to_onnx(trained["dispute"], N_FEATURES, "dispute_type"),
            FEATURES,
            CATEGORIES,
            calibration=trained["dispute_cal"],
        ),
    }


@pytest.fixture()
def bundle_dir(tmp_path: Path, bundle_models: dict[str, BundleModel]) -> Path:
    return write_bundle(tmp_path / "bundle-v1", bundle_models, PROVENANCE)


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_bundle_round_trip(bundle_dir: Path, bundle_models: dict[str, BundleModel]) -> None:
    assert sorted(p.name for p in bundle_dir.iterdir()) == ["dispute_type.onnx", "escalation.onnx", "manifest.json"]
    assert _leftovers(bundle_dir.parent) == []
    manifest = load_manifest(bundle_dir)
    assert manifest.provenance == PROVENANCE
    assert set(manifest.models) == {"escalation", "dispute_type"}
    esc = manifest.models["escalation"]
    assert esc.feature_names == FEATURES and esc.classes == (0, 1)
    assert esc.calibration == bundle_models["escalation"].calibration
    assert esc.thresholds == {"red": 0.5, "orange": 0.3, "yellow": 0.15}
    assert esc.parity is not None and esc.parity["ok"] and esc.parity["rows"] >= 10_000
    assert esc.path.read_bytes() == bundle_models["escalation"].model.SerializeToString(deterministic=True)
    dis = manifest.models["dispute_type"]
    assert dis.classes == CATEGORIES and dis.calibration is not None and dis.calibration.method == "platt"
    raw = json.loads((bundle_dir / "manifest.json").read_text(encoding="utf-8"))
    assert raw["models"]["escalation"]["opset"] == {"ai.onnx": 15, "ai.onnx.ml": 1}


def test_bundle_bytes_are_reproducible(tmp_path: Path, bundle_models: dict[str, BundleModel]) -> None:
    a = write_bundle(tmp_path / "a", bundle_models, PROVENANCE)
    b = write_bundle(tmp_path / "b", bundle_models, PROVENANCE)
    for name in ("manifest.json", "escalation.onnx", "dispute_type.onnx"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_bundles_are_immutable_unless_overwrite(bundle_dir: Path, bundle_models: dict[str, BundleModel]) -> None:
    with pytest.raises(BundleError, match="already exists"):
        write_bundle(bundle_dir, bundle_models, PROVENANCE)
    write_bundle(bundle_dir, bundle_models, {**PROVENANCE, "created_from_run": "run-43"}, overwrite=True)
    assert load_manifest(bundle_dir).provenance["created_from_run"] == "run-43"
    assert _leftovers(bundle_dir.parent) == []


def test_sha_mismatch_names_the_file_and_the_fix(bundle_dir: Path) -> None:
    path = bundle_dir / "escalation.onnx"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"escalation\.onnx: sha256 .* does not match .*re-export"):
        load_manifest(bundle_dir)
    with pytest.raises(BundleError, match=r"escalation\.onnx"):
        OnnxScorer.from_bundle(bundle_dir)


def test_missing_file_names_the_file_and_the_fix(bundle_dir: Path) -> None:
    (bundle_dir / "dispute_type.onnx").unlink()
    with pytest.raises(BundleError, match=r"dispute_type\.onnx is missing .*copy the whole bundle folder"):
        load_manifest(bundle_dir)


def test_missing_manifest(bundle_dir: Path) -> None:
    (bundle_dir / "manifest.json").unlink()
    with pytest.raises(BundleError, match=r"manifest\.json is missing"):
        load_manifest(bundle_dir)


def test_feature_count_mismatch(bundle_dir: Path) -> None:
    path = bundle_dir / "manifest.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw["models"]["escalation"]["features"] = raw["models"]["escalation"]["features"][:-1]
    path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(BundleError, match=r"escalation\.onnx takes 12 features but manifest\.json lists 11"):
        load_manifest(bundle_dir)
    # the scorer reads the widths from its sessions instead of parsing the graphs: the same check, the same words
    with pytest.raises(BundleError, match=r"escalation\.onnx takes 12 features but manifest\.json lists 11"):
        OnnxScorer.from_bundle(bundle_dir)


def test_scorer_refuses_a_file_that_is_not_onnx(bundle_dir: Path) -> None:
    """Bytes that match the manifest's sha256 but are no ONNX graph: the scorer says so, as the manifest check did."""
    path = bundle_dir / "manifest.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    junk = b"not an onnx graph"
    (bundle_dir / "escalation.onnx").write_bytes(junk)
    raw["models"]["escalation"]["sha256"] = hashlib.sha256(junk).hexdigest()
    path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(BundleError, match=r"escalation\.onnx is not an ONNX model"):
        OnnxScorer.from_bundle(bundle_dir)


def test_scorer_checks_the_class_count_on_its_sessions(bundle_dir: Path) -> None:
    path = bundle_dir / "manifest.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw["models"]["escalation"]["classes"] = [*raw["models"]["escalation"]["classes"], 2]
    path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(BundleError, match=r"escalation\.onnx outputs 2 classes but manifest\.json lists 3"):
        OnnxScorer.from_bundle(bundle_dir)


def test_write_checks_models_against_their_metadata(tmp_path: Path, bundle_models: dict[str, BundleModel]) -> None:
    esc = bundle_models["escalation"]
    short = BundleModel(esc.model, FEATURES[:-1], (0, 1))
    with pytest.raises(BundleError, match="takes 12 features but 11 feature names"):
        write_bundle(tmp_path / "b", {"escalation": short}, PROVENANCE)
    with pytest.raises(BundleError, match="3 classes"):
        write_bundle(tmp_path / "b", {"escalation": BundleModel(esc.model, FEATURES, (0, 1, 2))}, PROVENANCE)
    with pytest.raises(BundleError, match="provenance lacks"):
        write_bundle(tmp_path / "b", {"escalation": esc}, {"code_version": "x"})
    with pytest.raises(BundleError, match="lower-case"):
        write_bundle(tmp_path / "b", {"Escalation Model": esc}, PROVENANCE)
    assert not (tmp_path / "b").exists() and _leftovers(tmp_path) == []


def test_failure_mid_write_leaves_no_bundle(
    tmp_path: Path, bundle_models: dict[str, BundleModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = bundle_mod._write_file
    written: list[str] = []

    def write_then_fail(path: Path, data: bytes) -> None:
        if written:  # the first model file is on disk, the second write dies (disk full, kill...)
            raise OSError(28, "No space left on device")
        real_write(path, data)
        written.append(path.name)

    monkeypatch.setattr(bundle_mod, "_write_file", write_then_fail)
    with pytest.raises(OSError, match="No space left"):
        write_bundle(tmp_path / "bundle", bundle_models, PROVENANCE)
    assert written == ["dispute_type.onnx"]
    assert not (tmp_path / "bundle").exists()
    assert list(tmp_path.iterdir()) == []


def test_unserialisable_provenance_leaves_no_bundle(tmp_path: Path, bundle_models: dict[str, BundleModel]) -> None:
    """The manifest is written after the model files: a bad value there must not leave them behind."""
    with pytest.raises(BundleError, match="not plain JSON"):
        write_bundle(tmp_path / "bundle", bundle_models, {**PROVENANCE, "params": {"leaves": {15}}})
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_old_bundle(
    bundle_dir: Path, bundle_models: dict[str, BundleModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = (bundle_dir / "manifest.json").read_bytes()
    monkeypatch.setattr(bundle_mod, "_fsync_dir", lambda path: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(OSError, match="I/O error"):
        write_bundle(bundle_dir, bundle_models, {**PROVENANCE, "created_from_run": "run-99"}, overwrite=True)
    assert (bundle_dir / "manifest.json").read_bytes() == before
    assert _leftovers(bundle_dir.parent) == []


def test_failed_swap_puts_the_old_bundle_back(
    bundle_dir: Path, bundle_models: dict[str, BundleModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = (bundle_dir / "manifest.json").read_bytes()
    real_rename = bundle_mod.os.rename

    def rename(src: str | Path, dst: str | Path) -> None:
        if Path(src).name.startswith(".bundle-v1.tmp-"):  # the new bundle cannot be moved into place
            raise OSError(5, "I/O error")
        real_rename(src, dst)

    monkeypatch.setattr(bundle_mod.os, "rename", rename)
    with pytest.raises(OSError, match="I/O error"):
        write_bundle(bundle_dir, bundle_models, {**PROVENANCE, "created_from_run": "run-99"}, overwrite=True)
    assert (bundle_dir / "manifest.json").read_bytes() == before
    assert load_manifest(bundle_dir).provenance["created_from_run"] == "run-42"
    assert _leftovers(bundle_dir.parent) == []


# ---------------------------------------------------------------- scorer


@pytest.fixture()
def scorer(bundle_dir: Path) -> OnnxScorer:
    return OnnxScorer.from_bundle(bundle_dir)


def test_scorer_matches_lightgbm(scorer: OnnxScorer, trained: dict[str, object]) -> None:
    X = trained["X"]
    esc = scorer.predict("escalation", X)
    assert esc.dtype == np.float32 and esc.shape == (len(X), 2)
    np.testing.assert_allclose(esc[:, 1], trained["escalation"].predict(X), atol=1e-5)
    dis = scorer.predict("dispute_type", X)
    assert dis.shape == (len(X), 9)
    np.testing.assert_allclose(dis, trained["dispute"].predict(X), atol=1e-5)


def test_scorer_session_options(bundle_dir: Path) -> None:
    one = OnnxScorer.from_bundle(bundle_dir)
    two = OnnxScorer.from_bundle(bundle_dir, intra_op_num_threads=2)
    assert one._sessions["escalation"].get_session_options().intra_op_num_threads == 1
    assert two._sessions["escalation"].get_session_options().intra_op_num_threads == 2
    np.testing.assert_array_equal(
        one.predict("escalation", np.zeros((3, 12))), two.predict("escalation", np.zeros((3, 12)))
    )


def test_scorer_rejects_wrong_feature_count(scorer: OnnxScorer, trained: dict[str, object]) -> None:
    X = trained["X"]
    with pytest.raises(ScorerError, match=r"'escalation' expects 12 features but X has 11 columns.*feature_names"):
        scorer.predict("escalation", X[:, :11])
    with pytest.raises(ScorerError, match="expects 12 features"):
        scorer.predict_calibrated("dispute_type", np.zeros((5, 13), np.float32))
    with pytest.raises(ScorerError, match=r"reshape\(1, -1\)"):
        scorer.predict("escalation", X[0])
    with pytest.raises(ScorerError, match="no model 'risk'"):
        scorer.predict("risk", X)
    with pytest.raises(ScorerError, match="takes numbers"):
        scorer.predict("escalation", np.full((2, 12), "x"))


def test_calibrated_output_is_a_probability(scorer: OnnxScorer, trained: dict[str, object]) -> None:
    X = trained["X"]
    esc = scorer.predict_calibrated("escalation", X)
    assert esc.shape == (len(X),) and np.all((esc >= 0) & (esc <= 1))
    np.testing.assert_allclose(esc, trained["escalation_cal"].apply(scorer.predict("escalation", X)[:, 1]))
    dis = scorer.predict_calibrated("dispute_type", X)
    assert np.all((dis >= 0) & (dis <= 1))
    np.testing.assert_allclose(dis, trained["dispute_cal"].apply(1.0 - scorer.predict("dispute_type", X)[:, 0]))


def test_calibrated_needs_a_calibration(tmp_path: Path, bundle_models: dict[str, BundleModel]) -> None:
    esc = bundle_models["escalation"]
    path = write_bundle(tmp_path / "raw", {"escalation": BundleModel(esc.model, FEATURES, (0, 1))}, PROVENANCE)
    with pytest.raises(ScorerError, match="no calibration"):
        OnnxScorer.from_bundle(path).predict_calibrated("escalation", np.zeros((1, 12)))


def test_batched_equals_one_call(scorer: OnnxScorer, trained: dict[str, object]) -> None:
    X = trained["X"]
    whole = scorer.predict("dispute_type", X)
    for batch_size, workers in ((7, 1), (1_000, 2), (len(X) * 2, 2)):
        np.testing.assert_array_equal(scorer.predict_batched("dispute_type", X, batch_size, workers), whole)
    assert scorer.predict_batched("escalation", X[:0]).shape == (0, 2)


def test_concurrent_predictions_equal_sequential(scorer: OnnxScorer, trained: dict[str, object]) -> None:
    X = trained["X"]
    jobs = [(name, slice(i, i + 1 + (i % 97))) for i in range(0, 3_000, 13) for name in scorer.model_names]
    sequential = [scorer.predict(name, X[s]) for name, s in jobs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(lambda job: scorer.predict(job[0], X[job[1]]), jobs))
    assert len(concurrent) == len(sequential) > 400
    for a, b in zip(sequential, concurrent, strict=True):
        np.testing.assert_array_equal(a, b)


def test_serving_does_not_import_training_code() -> None:
    code = (
        "import sys, serving.scorer\n"
        "training = {'pipelines', 'lightgbm', 'sklearn', 'onnxmltools', 'onnx'}\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & training)\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
