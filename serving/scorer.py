"""Score feature rows with the ONNX models of a bundle, in batch and online.

One ``OnnxScorer`` holds one onnxruntime ``InferenceSession`` per model of a
bundle (``models.bundle``). Sessions are built from the very bytes whose
SHA-256 was checked against the manifest, run once on a zero row so the first
real request does not pay for lazy initialisation, and are shared by all
threads: ``InferenceSession.run`` is thread-safe and releases the GIL, and the
scorer keeps no other mutable state.

Session options are chosen for tree ensembles on small machines (see
docs/onnx.md for the measurements): one intra-op thread by default (a single
row is scored in a few microseconds; a thread pool only adds hand-offs and,
with spinning, burns the other core), sequential execution (the graph is one
node), all graph optimisations (free at load time), spinning off when more
than one thread is asked for. For large inputs ``predict_batched`` bounds
memory by scoring in chunks and, with ``workers > 1``, scores chunks in
parallel on single-threaded runs, which on two cores beats onnxruntime's own
parallelisation over trees.

Serving imports ``features`` and ``models`` only, never ``pipelines``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

from models.bundle import BundleError, Manifest, ModelEntry, check_widths, load_manifest, read_model_bytes
from models.calibration import Calibration

DEFAULT_BATCH_SIZE = 16_384
"""Rows per chunk in ``predict_batched``: ~4 MB of float32 input at 60 features, well inside L2/L3 per run."""


def positive_class(proba: np.ndarray) -> np.ndarray:
    """The positive-class score of raw probabilities: P(class 1) for a binary model, 1 - P(class 0) otherwise."""
    return proba[:, 1] if proba.shape[1] == 2 else 1.0 - proba[:, 0]


class ScorerError(ValueError):
    """Input that the scorer cannot score as asked (unknown model, wrong shape, no calibration)."""


def session_options(intra_op_num_threads: int = 1, allow_spinning: bool = False) -> ort.SessionOptions:
    """onnxruntime options for one tree-ensemble model (why: see the module docstring)."""
    if intra_op_num_threads < 1:
        raise ValueError("intra_op_num_threads must be >= 1")
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_num_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: warnings would repeat per session in every worker's log
    if intra_op_num_threads > 1:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    return options


class OnnxScorer:
    """Raw and calibrated probabilities from a bundle's models; safe to share between threads."""

    def __init__(self, manifest: Manifest, sessions: dict[str, ort.InferenceSession]) -> None:
        self.manifest = manifest
        self._sessions = sessions

    @classmethod
    def from_bundle(
        cls,
        bundle_dir: str | os.PathLike[str],
        *,
        intra_op_num_threads: int = 1,
        allow_spinning: bool = False,
    ) -> OnnxScorer:
        """Load and verify a bundle, build one warmed-up session per model."""
        manifest = load_manifest(Path(bundle_dir), graphs=False)  # the widths are checked on the sessions below
        options = session_options(intra_op_num_threads, allow_spinning)
        sessions: dict[str, ort.InferenceSession] = {}
        for name, entry in manifest.models.items():
            data = read_model_bytes(entry)
            try:
                session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # what load_manifest said when it parsed the graph with onnx
                raise BundleError(
                    f"{entry.path} is not an ONNX model ({type(exc).__name__}); re-export the bundle"
                ) from None
            inputs, outputs = session.get_inputs(), session.get_outputs()
            if len(inputs) != 1 or inputs[0].name != entry.input_name:
                raise ScorerError(f"{entry.path}: graph input is not {entry.input_name!r}; re-export the bundle")
            if len(outputs) != 1 or outputs[0].name != entry.output_name:
                raise ScorerError(f"{entry.path}: graph output is not {entry.output_name!r}; re-export the bundle")
            widths = [
                shape[-1] if shape and isinstance(shape[-1], int) else None
                for shape in (inputs[0].shape, outputs[0].shape)
            ]
            check_widths(entry.path, name, entry.feature_names, entry.classes, *widths)
            session.run([entry.output_name], {entry.input_name: np.zeros((1, entry.n_features), np.float32)})
            sessions[name] = session
        return cls(manifest, sessions)

    @property
    def model_names(self) -> tuple[str, ...]:
        """Names of the models in the bundle."""
        return tuple(self.manifest.models)

    def entry(self, model_name: str) -> ModelEntry:
        """The manifest entry of a model (features, classes, calibration, thresholds)."""
        try:
            return self.manifest.models[model_name]
        except KeyError:
            msg = f"no model {model_name!r} in bundle {self.manifest.path}; it has {self.model_names}"
            raise ScorerError(msg) from None

    def feature_names(self, model_name: str) -> tuple[str, ...]:
        """Input columns of a model, in order: build feature matrices with exactly these."""
        return self.entry(model_name).feature_names

    def _input(self, entry: ModelEntry, X: np.ndarray) -> np.ndarray:
        """X as a C-contiguous float32 [rows, features] array, or a clear error."""
        X = np.asarray(X)
        if X.ndim != 2:
            raise ScorerError(
                f"model {entry.name!r} takes a 2-D array [rows, {entry.n_features}], got shape {X.shape};"
                " for one row use X.reshape(1, -1)"
            )
        if X.shape[1] != entry.n_features:
            raise ScorerError(
                f"model {entry.name!r} expects {entry.n_features} features but X has {X.shape[1]} columns;"
                f" build X with scorer.feature_names({entry.name!r}) (first: {list(entry.feature_names[:3])})"
            )
        if X.dtype.kind not in "fiub":
            raise ScorerError(f"model {entry.name!r} takes numbers; X has dtype {X.dtype}")
        return np.ascontiguousarray(X, dtype=np.float32)

    def _run(self, entry: ModelEntry, x: np.ndarray) -> np.ndarray:
        return self._sessions[entry.name].run([entry.output_name], {entry.input_name: x})[0]

    def predict(self, model_name: str, X: np.ndarray) -> np.ndarray:
        """Raw class probabilities, float32 [rows, classes] in ``entry(model_name).classes`` order."""
        entry = self.entry(model_name)
        x = self._input(entry, X)
        if len(x) == 0:
            return np.empty((0, len(entry.classes)), np.float32)
        return self._run(entry, x)

    def predict_batched(
        self,
        model_name: str,
        X: np.ndarray,
        batch_size: int = DEFAULT_BATCH_SIZE,
        workers: int = 1,
    ) -> np.ndarray:
        """``predict`` over chunks of ``batch_size`` rows, written into one preallocated output.

        Memory beyond the input and output stays bounded by one chunk per
        worker. ``workers > 1`` scores chunks concurrently (onnxruntime
        releases the GIL), i.e. parallel over rows like LightGBM's own predict.
        """
        if batch_size < 1 or workers < 1:
            raise ScorerError("batch_size and workers must be >= 1")
        entry = self.entry(model_name)
        x = self._input(entry, X)
        out = np.empty((len(x), len(entry.classes)), np.float32)
        starts: Sequence[int] = range(0, len(x), batch_size)

        def score(start: int) -> None:
            out[start : start + batch_size] = self._run(entry, x[start : start + batch_size])

        if workers == 1 or len(starts) == 1:
            for start in starts:
                score(start)
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="yujing-score") as pool:
                for _ in pool.map(score, starts):
                    pass
        return out

    def predict_calibrated(
        self,
        model_name: str,
        X: np.ndarray,
        batch_size: int = DEFAULT_BATCH_SIZE,
        workers: int = 1,
    ) -> np.ndarray:
        """Calibrated positive-class probability, float64 [rows].

        Positive class: P(class 1) for a binary model, 1 - P(class 0) for a
        multiclass one (class 0 is "none"). Warning thresholds in the manifest
        are on this scale.
        """
        self._calibration(model_name)  # fail before scoring when there is none
        proba = self.predict_batched(model_name, X, batch_size=batch_size, workers=workers)
        return self.calibrate(model_name, positive_class(proba))

    def _calibration(self, model_name: str) -> Calibration:
        entry = self.entry(model_name)
        if entry.calibration is None:
            raise ScorerError(
                f"model {model_name!r} has no calibration in the bundle; use predict() for raw probabilities"
                " or re-export the bundle with a calibration"
            )
        return entry.calibration

    def calibrate(self, model_name: str, positive: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (float64) of positive-class scores already computed (:func:`positive_class`).

        For callers that need both the raw score and the calibrated probability:
        the model runs once instead of twice (``predict_calibrated`` would score again).
        """
        return self._calibration(model_name).apply(positive)
