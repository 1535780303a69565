"""LightGBM boosters to ONNX, and the parity check that gates every export.

Serving scores with onnxruntime, never with LightGBM, so the exported graph
must give the same probabilities and, above all, flag the same rows as the
booster it came from. Three things stand in the way, and each is handled here:

* **ZipMap.** onnxmltools ends a classifier with ZipMap (a list of Python dicts,
  slow and awkward). We convert with ``zipmap=False`` and then rebuild the graph
  around the single ``TreeEnsembleClassifier`` node: one input ``input``
  (float32 ``[None, n_features]``), one output ``probabilities`` (float32
  ``[None, n_classes]``; binary gives ``[1 - p, p]``), no label output, no
  Cast/Identity/Mul left over from the converter.
* **float32 thresholds.** ONNX tree ensembles hold thresholds as float32;
  LightGBM compares ``x <= t`` in float64. onnxmltools rounds ``t`` to the
  *nearest* float32, which can land just above ``t``: a row whose value equals
  that float32 then goes left in ONNX and right in LightGBM (measured: 8.8e-5
  probability error on a plain 300-tree model, far worse on large-magnitude
  features). For a float32 input ``x``, ``x <= t`` holds exactly when
  ``x <= round_down_to_float32(t)``, so we rewrite every numerical threshold
  to the largest float32 not above it *in the LightGBM model text* before
  conversion. The rewritten booster is equivalent on every float32 input,
  and the conversion is then exact up to float32 summation of leaf values
  (~1e-7). Categorical splits are left alone.
* **Inputs that float32 cannot hold.** What remains is the cast of the
  *features* to float32: a raw epoch timestamp (1.7e9 s, float32 step 128 s)
  or an amount in cents above 2**24 loses digits, and the model then sees
  other values than it was trained on. No exporter can fix that; the feature
  builders must emit float32-safe features (days, yuan, logs) and train on
  the same float32 matrix that serving will see. ``check_parity`` reports the
  size of that drift as ``cast_max_abs_diff`` when given float64 features.

The output is deterministic: the same booster gives the same bytes.
"""

from __future__ import annotations

import itertools
import re
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import TensorProto, helper

if TYPE_CHECKING:
    import lightgbm

INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"
TARGET_OPSET = 15
"""Default-domain opset declared by every exported model (onnxmltools 1.16 supports up to 15)."""
ML_OPSET = 1
"""ai.onnx.ml opset: TreeEnsembleClassifier-1 has every attribute we emit (no *_as_tensor)."""
IR_VERSION = 8
"""The ONNX IR version that goes with opset 15."""

PARITY_MIN_ROWS = 10_000
PARITY_TOL = 1e-5

_TREE_LINE = re.compile(r"^Tree=\d+$", re.MULTILINE)
_CATEGORICAL_MASK = 1  # LightGBM decision_type bit 0: categorical split
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_LEFTOVER_OPS = {"Identity", "Cast", "Mul"}  # what onnxmltools puts after the tree node with zipmap=False


class ExportError(ValueError):
    """The booster cannot be exported faithfully (objective, boosting type, feature count...)."""


def _round_down_float32(value: float) -> float:
    """The largest float32 that is <= ``value``, as a Python float (exactly representable in float32)."""
    f32 = np.float32(value)
    if float(f32) > value:
        f32 = np.nextafter(f32, np.float32(-np.inf))
    return float(f32)


def _rewrite_thresholds(block: str) -> str:
    """Round every numerical threshold of one LightGBM tree block down to float32."""
    lines = block.split("\n")
    idx = {line.split("=", 1)[0]: i for i, line in enumerate(lines) if "=" in line}
    if "threshold" not in idx or "decision_type" not in idx:
        raise ExportError("unexpected LightGBM model text: a tree without threshold/decision_type lines")
    thresholds = lines[idx["threshold"]].split("=", 1)[1].split()
    decisions = lines[idx["decision_type"]].split("=", 1)[1].split()
    if len(thresholds) != len(decisions):
        raise ExportError("unexpected LightGBM model text: threshold and decision_type lengths differ")
    out = []
    for token, decision in zip(thresholds, decisions, strict=True):
        value = float(token)
        if int(decision) & _CATEGORICAL_MASK or not abs(value) <= _FLOAT32_MAX:
            # Categorical thresholds index cat_threshold; +-inf and +-1e300 ("all non-missing values go
            # left") become +-inf in float32, which compares exactly like LightGBM for every finite input.
            out.append(token)
        else:
            out.append(repr(_round_down_float32(value)))
    lines[idx["threshold"]] = "threshold=" + " ".join(out)
    return "\n".join(lines)


def float32_exact_model_text(booster: lightgbm.Booster) -> str:
    """The booster's model text (best iteration, as ``predict`` uses) with float32-exact thresholds.

    The text format stores the byte size of each tree block in ``tree_sizes``;
    we check our block split against it before rewriting, then recompute it,
    so that a change in LightGBM's format fails loudly here instead of loading
    a different model.
    """
    text = booster.model_to_string(num_iteration=None)
    starts = [m.start() for m in _TREE_LINE.finditer(text)]
    end = text.find("end of trees")
    sizes_match = re.search(r"^tree_sizes=(.*)$", text, re.MULTILINE)
    if not starts or end < 0 or sizes_match is None:
        raise ExportError("unexpected LightGBM model text: no trees, no 'end of trees' or no tree_sizes")
    bounds = [*starts, end]
    blocks = [text[a:b] for a, b in itertools.pairwise(bounds)]
    declared = [int(s) for s in sizes_match.group(1).split()]
    if declared != [len(b.encode()) for b in blocks]:
        raise ExportError("unexpected LightGBM model text: tree_sizes does not match the tree blocks")
    new_blocks = [_rewrite_thresholds(b) for b in blocks]
    head = text[: starts[0]]
    head = head.replace(sizes_match.group(0), "tree_sizes=" + " ".join(str(len(b.encode())) for b in new_blocks))
    return head + "".join(new_blocks) + text[end:]


def _objective(model_text: str) -> tuple[str, int]:
    """(objective, n_classes) from the model text header; only what the graph reproduces exactly."""
    header = dict(line.split("=", 1) for line in model_text.split("\n\n", 1)[0].splitlines() if "=" in line)
    parts = header.get("objective", "").split()
    if not parts:
        raise ExportError("the booster has no objective in its model text (custom objective?); cannot export")
    name, options = parts[0], dict(p.split(":", 1) for p in parts[1:] if ":" in p)
    if name == "binary":
        if float(options.get("sigmoid", "1")) != 1.0:
            raise ExportError(
                f"binary objective with sigmoid:{options['sigmoid']} is not exported; train with sigmoid=1"
            )
        return name, 2
    if name == "multiclass":
        return name, int(header["num_class"])
    raise ExportError(f"objective {name!r} is not exported: only 'binary' and 'multiclass' (softmax) are supported")


def to_onnx(booster: lightgbm.Booster, n_features: int, name: str) -> onnx.ModelProto:
    """Export a binary or multiclass LightGBM booster to a minimal, deterministic ONNX graph.

    The graph has one ``TreeEnsembleClassifier`` node, float32 input ``input``
    of shape ``[None, n_features]`` and float32 output ``probabilities`` of
    shape ``[None, n_classes]`` (binary: ``[1 - p, p]``). It uses the booster's
    best iteration when early stopping set one, exactly like ``booster.predict``.
    """
    import lightgbm
    from onnxmltools.convert import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    if booster.num_feature() != n_features:
        raise ExportError(f"booster {name!r} was trained on {booster.num_feature()} features, not {n_features}")
    text = float32_exact_model_text(booster)
    objective, n_classes = _objective(text)
    if "average_output" in text.split("\n\n", 1)[0].splitlines():
        raise ExportError("random-forest boosting (average_output) is not exported; use gbdt")
    if "is_linear=1" in text:
        raise ExportError("linear trees are not exported: TreeEnsembleClassifier has constant leaves only")

    exact = lightgbm.Booster(model_str=text)
    converted = convert_lightgbm(
        exact,
        name=name,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        target_opset=TARGET_OPSET,
        zipmap=False,
    )
    trees = [n for n in converted.graph.node if n.op_type == "TreeEnsembleClassifier"]
    others = {n.op_type for n in converted.graph.node if n.op_type != "TreeEnsembleClassifier"}
    if len(trees) != 1 or not others <= _LEFTOVER_OPS:
        raise ExportError(f"unexpected graph from onnxmltools: ops {sorted(others)}; the exporter needs review")

    attributes = [a for a in trees[0].attribute if a.name != "nodes_hitrates"]  # hit rates: unused by any runtime
    node = helper.make_node(
        "TreeEnsembleClassifier",
        [INPUT_NAME],
        ["label", OUTPUT_NAME],  # the label output is required by the operator; nothing consumes it
        name=f"{name}_trees",
        domain="ai.onnx.ml",
    )
    node.attribute.extend(attributes)
    graph = helper.make_graph(
        [node],
        name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [None, n_classes])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", TARGET_OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)],
        ir_version=IR_VERSION,
        producer_name="yujing.models.onnx_export",
        producer_version=version("onnxmltools"),
        doc_string="LightGBM booster; thresholds rounded down to float32; no ZipMap",
    )
    helper.set_model_props(
        model,
        {
            "objective": objective,
            "n_classes": str(n_classes),
            "n_features": str(n_features),
            "n_trees": str(exact.num_trees()),
            "lightgbm": lightgbm.__version__,
        },
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def _positive_score(proba: np.ndarray) -> np.ndarray:
    """Positive-class score: P(1) for binary, 1 - P(class 0) for multiclass (class 0 = no risk / none)."""
    return proba[:, 1] if proba.shape[1] == 2 else 1.0 - proba[:, 0]


def _top_k(score: np.ndarray, k: int) -> set[int]:
    """Indices of the k highest scores; ties broken by row index so both sides break them alike."""
    order = np.argsort(-score, kind="stable")
    return {int(i) for i in order[:k]}


def same_top_k(expected: np.ndarray, got: np.ndarray, k: int, tol: float) -> bool:
    """The k highest rows agree, except rows tied with the k-th score within ``tol``.

    A saturated model (many calls at P(dispute) ~ 1) has many rows equal in float32 that
    float64 still orders: which of them fill the last places of a top-k is float rounding,
    not a different model.
    """
    a, b = _top_k(expected, k), _top_k(got, k)
    if a == b:
        return True
    kth = float(np.sort(expected)[::-1][k - 1])
    return all(abs(float(expected[i]) - kth) <= tol for i in a ^ b)


def check_parity(
    booster: lightgbm.Booster,
    model: onnx.ModelProto,
    X: np.ndarray,
    k: int = 100,
    *,
    min_rows: int = PARITY_MIN_ROWS,
    tol: float = PARITY_TOL,
) -> dict[str, Any]:
    """Compare ``booster.predict`` (float64) with onnxruntime on the same float32-cast rows.

    Returns ``max_abs_diff`` (largest probability difference over all classes),
    ``top_k_identical`` (same set of k rows by positive-class score, up to rows tied with
    the k-th within ``tol``: :func:`same_top_k`),
    ``argmax_agreement`` (share of rows with the same most probable class),
    ``rows``, ``cast_max_abs_diff`` (booster on ``X`` as given vs on its float32
    cast: non-zero means features that float32 cannot hold, the builders'
    problem, see the module docstring) and ``ok`` (all of: rows >= min_rows,
    max_abs_diff <= tol, identical top-k, cast_max_abs_diff <= tol). Argmax
    agreement is reported but not required: rows whose two best classes are
    within float32 rounding of each other may legitimately flip.
    """
    import onnxruntime as ort

    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D [rows, features], got shape {X.shape}")
    if X.shape[0] < min_rows:
        raise ValueError(f"parity needs at least {min_rows} rows to mean anything, got {X.shape[0]}")
    x32 = np.ascontiguousarray(X, dtype=np.float32)

    expected = np.asarray(booster.predict(x32.astype(np.float64)), dtype=np.float64)
    if expected.ndim == 1:
        expected = np.column_stack([1.0 - expected, expected])
    cast_diff = 0.0
    if X.dtype != np.float32:
        as_given = np.asarray(booster.predict(X.astype(np.float64)), dtype=np.float64)
        as_given = as_given.reshape(len(X), -1)
        cast_diff = float(np.max(np.abs(as_given - expected[:, -as_given.shape[1] :])))

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], {INPUT_NAME: x32})[0].astype(np.float64)
    if got.shape != expected.shape:
        raise ValueError(f"ONNX output shape {got.shape} differs from the booster's {expected.shape}")

    max_abs_diff = float(np.max(np.abs(got - expected)))
    k = min(k, len(x32))
    top_k_identical = same_top_k(_positive_score(expected), _positive_score(got), k, tol)
    argmax_agreement = float(np.mean(np.argmax(expected, axis=1) == np.argmax(got, axis=1)))
    return {
        "max_abs_diff": max_abs_diff,
        "top_k_identical": bool(top_k_identical),
        "argmax_agreement": argmax_agreement,
        "rows": len(x32),
        "cast_max_abs_diff": cast_diff,
        "ok": bool(max_abs_diff <= tol and top_k_identical and cast_diff <= tol),
    }
