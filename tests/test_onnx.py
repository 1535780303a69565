"""ONNX export: graph shape, determinism and parity with LightGBM on >= 10,000 rows.

The boosters are trained here on synthetic data (single-threaded, fixed
seeds, ~100 trees) so the whole module runs in a few seconds. No timing
assertions: speed lives in benchmarks/bench_scoring.py.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from models.onnx_export import (
    INPUT_NAME,
    OUTPUT_NAME,
    PARITY_MIN_ROWS,
    ExportError,
    check_parity,
    float32_exact_model_text,
    to_onnx,
)

N_FEATURES = 20
N_TEST = 12_000
PARAMS = {"verbose": -1, "num_threads": 1, "deterministic": True, "seed": 1, "min_data_in_leaf": 20}


def _features(n: int, seed: int) -> np.ndarray:
    """Counts, one-decimal durations, flags, codes and scores, 5 % missing: what the builders emit."""
    rng = np.random.default_rng(seed)
    X = np.column_stack(
        [
            rng.poisson(2.0, (n, 4)),
            np.round(rng.exponential(20.0, (n, 4)), 1),
            rng.random((n, 4)) < 0.2,
            rng.integers(0, 30, (n, 4)),
            rng.normal(0.0, 1.0, (n, 4)),
        ]
    ).astype(np.float64)
    X[rng.random(X.shape) < 0.05] = np.nan
    return X.astype(np.float32)


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    X = _features(12_000 + N_TEST, seed=3)
    f = np.nan_to_num(X)
    z = 0.6 * f[:, 0] - 0.05 * f[:, 4] + 1.5 * f[:, 8] + np.sin(f[:, 16]) + 0.3 * (f[:, 12] % 5 == 2) - 2.0
    y_bin = (rng.random(len(X)) < 1.0 / (1.0 + np.exp(-z))).astype(np.int32)
    logits = np.column_stack([f[:, j % N_FEATURES] * (0.3 + 0.1 * j) for j in range(9)])
    y_multi = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1).astype(np.int32)
    return {"train": X[:12_000], "test": X[12_000:], "y_bin": y_bin[:12_000], "y_multi": y_multi[:12_000]}


@pytest.fixture(scope="module")
def binary(data: dict[str, np.ndarray]) -> lgb.Booster:
    params = {**PARAMS, "objective": "binary", "num_leaves": 15, "learning_rate": 0.1}
    return lgb.train(params, lgb.Dataset(data["train"], data["y_bin"]), 100)


@pytest.fixture(scope="module")
def multiclass(data: dict[str, np.ndarray]) -> lgb.Booster:
    params = {**PARAMS, "objective": "multiclass", "num_class": 9, "num_leaves": 7, "learning_rate": 0.2}
    return lgb.train(params, lgb.Dataset(data["train"], data["y_multi"]), 12)  # 12 rounds x 9 classes = 108 trees


@pytest.fixture(scope="module")
def binary_onnx(binary: lgb.Booster) -> onnx.ModelProto:
    return to_onnx(binary, N_FEATURES, "escalation")


@pytest.fixture(scope="module")
def multiclass_onnx(multiclass: lgb.Booster) -> onnx.ModelProto:
    return to_onnx(multiclass, N_FEATURES, "dispute_type")


def _run(model: onnx.ModelProto, X: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(X, dtype=np.float32)})[0]


def test_binary_parity(binary: lgb.Booster, binary_onnx: onnx.ModelProto, data: dict[str, np.ndarray]) -> None:
    report = check_parity(binary, binary_onnx, data["test"])
    assert report["rows"] == N_TEST >= PARITY_MIN_ROWS
    assert report["max_abs_diff"] <= 1e-5
    assert report["top_k_identical"]
    assert report["argmax_agreement"] == 1.0
    assert report["cast_max_abs_diff"] == 0.0
    assert report["ok"]


def test_binary_output_is_one_minus_p_then_p(
    binary: lgb.Booster, binary_onnx: onnx.ModelProto, data: dict[str, np.ndarray]
) -> None:
    proba = _run(binary_onnx, data["test"][:500])
    assert proba.dtype == np.float32 and proba.shape == (500, 2)
    np.testing.assert_allclose(proba[:, 1], binary.predict(data["test"][:500]), atol=1e-5)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)


def test_multiclass_parity(
    multiclass: lgb.Booster, multiclass_onnx: onnx.ModelProto, data: dict[str, np.ndarray]
) -> None:
    assert multiclass.num_trees() == 108
    report = check_parity(multiclass, multiclass_onnx, data["test"])
    assert report["rows"] >= PARITY_MIN_ROWS
    assert report["max_abs_diff"] <= 1e-5
    assert report["top_k_identical"]
    assert report["argmax_agreement"] == 1.0
    assert report["ok"]
    proba = _run(multiclass_onnx, data["test"][:100])
    assert proba.shape == (100, 9)
    np.testing.assert_allclose(proba, multiclass.predict(data["test"][:100]), atol=1e-5)


@pytest.mark.parametrize(("fixture", "n_classes"), [("binary_onnx", 2), ("multiclass_onnx", 9)])
def test_graph_is_one_tree_node_without_zipmap(fixture: str, n_classes: int, request: pytest.FixtureRequest) -> None:
    model: onnx.ModelProto = request.getfixturevalue(fixture)
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node] == ["TreeEnsembleClassifier"]
    assert all(n.op_type != "ZipMap" for n in model.graph.node)
    (inp,) = model.graph.input
    (out,) = model.graph.output
    assert inp.name == INPUT_NAME and out.name == OUTPUT_NAME
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    in_dims = inp.type.tensor_type.shape.dim
    out_dims = out.type.tensor_type.shape.dim
    assert not in_dims[0].HasField("dim_value") and in_dims[1].dim_value == N_FEATURES
    assert not out_dims[0].HasField("dim_value") and out_dims[1].dim_value == n_classes
    opsets = {i.domain: i.version for i in model.opset_import}
    assert opsets.get("", 0) <= 15 and opsets["ai.onnx.ml"] <= 3


def test_export_is_deterministic(binary: lgb.Booster, multiclass: lgb.Booster) -> None:
    for booster, name in ((binary, "escalation"), (multiclass, "dispute_type")):
        first = to_onnx(booster, N_FEATURES, name).SerializeToString()
        second = to_onnx(booster, N_FEATURES, name).SerializeToString()
        assert first == second


def test_gridded_values_unseen_in_training_keep_parity() -> None:
    """The case nearest-float32 thresholds get wrong, and the reason for rounding them down.

    A feature on a 0.1 grid is trained on even tenths only; LightGBM puts its
    thresholds at the midpoints (the odd tenths, in float64). Rounded to the
    nearest float32 some land exactly on float32(odd tenth), and every test
    row holding that value goes the other way.
    """
    rng = np.random.default_rng(5)
    grid_train = rng.integers(0, 500, 12_000) * 2
    X_train = np.column_stack([grid_train / 10.0, rng.normal(size=12_000)]).astype(np.float32)
    y = (rng.random(12_000) < 1 / (1 + np.exp(-np.sin(X_train[:, 0] / 5.0) * 3))).astype(np.int32)
    booster = lgb.train({**PARAMS, "objective": "binary", "num_leaves": 31}, lgb.Dataset(X_train, y), 60)
    X_test = np.column_stack([rng.integers(0, 1000, N_TEST) / 10.0, rng.normal(size=N_TEST)]).astype(np.float32)

    report = check_parity(booster, to_onnx(booster, 2, "grid"), X_test)
    assert report["max_abs_diff"] <= 1e-5 and report["top_k_identical"] and report["ok"]

    # The same data does break a nearest-rounding export: this test would catch a regression.
    from onnxmltools.convert import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    plain = convert_lightgbm(
        booster, initial_types=[(INPUT_NAME, FloatTensorType([None, 2]))], target_opset=15, zipmap=False
    )
    session = ort.InferenceSession(plain.SerializeToString(), providers=["CPUExecutionProvider"])
    nearest = session.run(["probabilities"], {INPUT_NAME: X_test})[0][:, 1]
    assert np.max(np.abs(nearest - booster.predict(X_test))) > 1e-4


def test_thresholds_are_float32_exact_and_never_above_lightgbm(binary: lgb.Booster) -> None:
    before = binary.trees_to_dataframe()
    after = lgb.Booster(model_str=float32_exact_model_text(binary)).trees_to_dataframe()
    t0 = before["threshold"].dropna().to_numpy(np.float64)
    t1 = after["threshold"].dropna().to_numpy(np.float64)
    assert len(t0) == len(t1) > 0
    assert np.all(t1 <= t0)
    in_range = np.abs(t1) < 1e38  # LightGBM's 1e300 means "every non-missing value goes left"; kept as is
    assert in_range.mean() > 0.9
    assert np.array_equal(t1[in_range].astype(np.float32).astype(np.float64), t1[in_range])
    assert np.array_equal(t0[~in_range], t1[~in_range])


def test_float64_features_report_cast_drift() -> None:
    """Raw epoch seconds: exact on float32 input, but float32 is not what the model was trained on."""
    rng = np.random.default_rng(9)
    n = 12_000 + N_TEST
    as_of = 1_735_689_600
    seconds = as_of - rng.integers(0, 365 * 86_400, n)
    X = np.column_stack([seconds, rng.normal(size=n)]).astype(np.float64)
    y = (rng.random(n) < 1 / (1 + np.exp((as_of - seconds) / 86_400 / 30 - 2))).astype(np.int32)
    booster = lgb.train({**PARAMS, "objective": "binary"}, lgb.Dataset(X[:12_000], y[:12_000]), 60)
    report = check_parity(booster, to_onnx(booster, 2, "raw_seconds"), X[12_000:])
    assert report["max_abs_diff"] <= 1e-5  # the export itself is exact on float32 input
    assert report["cast_max_abs_diff"] > 1e-4  # but float32 seconds are not the seconds it was trained on
    assert not report["ok"]


def test_parity_fails_for_a_different_model(binary: lgb.Booster, data: dict[str, np.ndarray]) -> None:
    other = lgb.train(
        {**PARAMS, "objective": "binary", "num_leaves": 15, "learning_rate": 0.1},
        lgb.Dataset(data["train"], data["y_bin"]),
        60,
    )
    report = check_parity(binary, to_onnx(other, N_FEATURES, "other"), data["test"])
    assert report["max_abs_diff"] > 1e-3
    assert not report["ok"]


def test_parity_needs_enough_rows(
    binary: lgb.Booster, binary_onnx: onnx.ModelProto, data: dict[str, np.ndarray]
) -> None:
    with pytest.raises(ValueError, match="at least 10000 rows"):
        check_parity(binary, binary_onnx, data["test"][:500])


def test_best_iteration_is_exported(data: dict[str, np.ndarray]) -> None:
    train, valid = data["train"][:9_000], data["train"][9_000:]
    booster = lgb.train(
        {**PARAMS, "objective": "binary", "num_leaves": 15, "learning_rate": 0.3},
        lgb.Dataset(train, data["y_bin"][:9_000]),
        300,
        valid_sets=[lgb.Dataset(valid, data["y_bin"][9_000:])],
        callbacks=[lgb.early_stopping(5, verbose=False)],
        keep_training_booster=True,  # keeps the trees after the best iteration, as a tuning loop would
    )
    assert 0 < booster.best_iteration < booster.current_iteration()
    model = to_onnx(booster, N_FEATURES, "early")
    assert int(next(p.value for p in model.metadata_props if p.key == "n_trees")) == booster.best_iteration
    assert check_parity(booster, model, data["test"])["ok"]


def test_rejects_what_it_cannot_reproduce(binary: lgb.Booster, data: dict[str, np.ndarray]) -> None:
    with pytest.raises(ExportError, match="trained on 20 features, not 19"):
        to_onnx(binary, 19, "x")
    regression = lgb.train({**PARAMS, "objective": "regression"}, lgb.Dataset(data["train"], data["y_bin"]), 5)
    with pytest.raises(ExportError, match="objective 'regression'"):
        to_onnx(regression, N_FEATURES, "x")
    ova = lgb.train(
        {**PARAMS, "objective": "multiclassova", "num_class": 9}, lgb.Dataset(data["train"], data["y_multi"]), 3
    )
    with pytest.raises(ExportError, match="multiclassova"):
        to_onnx(ova, N_FEATURES, "x")


def test_top_k_parity_allows_ties_at_the_boundary_only() -> None:
    from models.onnx_export import same_top_k

    expected = np.array([0.9, 0.99999990, 0.99999995, 0.5, 0.99999999, 0.1])
    got = expected.astype(np.float32).astype(np.float64)  # float32 makes the three near-1 scores equal
    got[1] += 1e-7  # and rounding reorders them
    assert same_top_k(expected, got, 2, 1e-6)  # which tied row fills place 2 is rounding
    moved = expected.copy()
    moved[5] = 1.0  # a row far below the k-th score enters the top: a different model
    assert not same_top_k(expected, moved, 2, 1e-6)
