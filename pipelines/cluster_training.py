"""Training on a Dask cluster: snapshots built per partition on the workers, the served model fitted with lightgbm.dask.

``yujing train --cluster local|tcp://…`` hands ``run_training`` a ``distributed.Client``;
this module is what changes then (docs/province.md, "Training on a cluster"):

* **Snapshots per partition, on the workers.** The unit is a city partition
  (``features.partitions.cities``; a flat city is one unit). A worker prepares its
  partition (load, rules, links; a flat city's, which the driver has prepared
  already, is handed to it instead), builds the weekly snapshots, rule points and
  labels (``pipelines.training.build_escalation_data``) over the dataset's snapshot
  span, and writes them as Parquet parts with float32 features, one part per
  worker (rows dealt round-robin so every part holds every date).
* **The served model, on the workers.** ``lightgbm.dask.DaskLGBMClassifier`` reads
  the parts where they were written (data-parallel LightGBM, one machine per
  worker), with the single-process recipe's parameters (models/escalation.py),
  stopped early on the tuning period that every worker sees whole (``fit_dask``
  says why that matters), then cut and calibrated here as single-process.
* **Everything else, here.** The driver gathers the parts into the snapshot frame
  (in the single-process row order) for the rolling-origin backtest, the evaluation,
  the ONNX export and its parity check, the drift reference and the report: the
  existing code, unchanged. The backtest's fits stay single-process: they measure
  the recipe on a city's frame, and the cluster fit is measured against the same
  recipe by ``benchmarks/bench_cluster_training.py``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.backtest import Fold
from models.escalation import (
    DEFAULT_PARAMS,
    MAX_ROUNDS,
    EscalationModel,
    finish_model,
    monotone_constraints,
)

LABEL = "label"
ROW = "row"
"""Extra columns of a snapshot part: the escalation label, and the row's position within its partition."""

_SKLEARN_NAMES = {
    "min_data_in_leaf": "min_child_samples",
    "feature_fraction": "colsample_bytree",
    "bagging_fraction": "subsample",
    "bagging_freq": "subsample_freq",
    "lambda_l2": "reg_lambda",
}
"""LightGBM parameter names the scikit-learn interface (and so lightgbm.dask) spells differently."""


def training_units(data_dir: Path) -> list[Any]:
    """The partitions snapshots are built from: one per city of a partitioned dataset, ``[None]`` for a flat city."""
    from features.partitions import Partition, cities

    codes = cities(Path(data_dir))
    return [Partition(city=code) for code in codes] or [None]


def unit_name(unit: Any) -> str:
    """The folder of a unit's parts: ``city=<code>``, or ``all`` for a flat city."""
    return "all" if unit is None or getattr(unit, "city", None) is None else f"city={unit.city}"


def _prepare_unit(data_dir: Path, unit: Any) -> Any:
    """``pipelines.preparation.prepare`` of one partition (the whole dataset when ``unit`` is None)."""
    from pipelines.preparation import prepare

    return prepare(data_dir, partition=unit)


def build_unit(
    data_dir: str,
    unit: Any,
    config: Any,
    span: tuple[pd.Timestamp, pd.Timestamp],
    folder: str,
    n_parts: int,
    prepared: Any = None,
) -> dict[str, Any]:
    """On a worker: one partition's snapshots, rule points and labels, written as ``n_parts`` Parquet parts.

    The worker prepares its partition itself unless ``prepared`` is handed to it (a flat
    city, which the driver has prepared already). Features are float32 (what the model
    reads); rows are dealt round-robin over the parts and keep their position in ``row``,
    so the driver can restore the order.
    """
    from pipelines.training import build_escalation_data

    started = time.perf_counter()
    if prepared is None:
        prepared = _prepare_unit(Path(data_dir), unit)
    frame, names, labels, points = build_escalation_data(prepared, config, span)
    del prepared
    frame[names] = frame[names].astype(np.float32)
    frame[LABEL] = np.asarray(labels)  # its own dtype: the driver hands on what build_escalation_data made
    frame[ROW] = np.arange(len(frame), dtype=np.int64)
    out = Path(folder) / unit_name(unit)
    out.mkdir(parents=True, exist_ok=True)
    files, rows = [], []
    for i in range(n_parts):
        part = frame.iloc[i::n_parts]
        path = out / f"part-{i:03d}.parquet"
        tmp = path.with_suffix(".parquet.part")
        part.to_parquet(tmp, index=False)
        tmp.replace(path)
        files.append(str(path))
        rows.append(len(part))
    return {
        "unit": unit_name(unit),
        "files": files,
        "rows": rows,
        "names": names,
        "points": list(points),
        "seconds": round(time.perf_counter() - started, 1),
    }


def read_rows(path: str, names: list[str], rows: np.ndarray) -> np.ndarray:
    """On a worker: the float32 feature matrix of some rows of one part."""
    return pd.read_parquet(path, columns=names).to_numpy(np.float32)[rows]


@dataclass
class Part:
    """One Parquet part and the snapshot-frame positions of its rows (driver side)."""

    path: str
    positions: np.ndarray


class ClusterTraining:
    """The cluster's share of one training run: snapshots per partition, then the served model's fit.

    Made by ``run_training`` when it is given a client; ``build_escalation_data`` and
    ``final_trainer`` replace their single-process counterparts, nothing else changes.
    """

    def __init__(self, client: Any, data_dir: Path, folder: Path, say: Callable[[str], None] | None = None) -> None:
        self.client = client
        self.data_dir = Path(data_dir)
        self.folder = Path(folder)
        self.say = say or (lambda _m: None)
        self.parts: list[Part] = []
        self.fit_seconds = 0.0

    def workers(self) -> int:
        """How many workers the cluster has now (at least one)."""
        return max(1, len(self.client.scheduler_info()["workers"]))

    def build_escalation_data(self, prepared: Any, config: Any) -> tuple[pd.DataFrame, list[str], np.ndarray, dict]:
        """Snapshots of every partition built on the workers, gathered here in the single-process row order."""
        from distributed import as_completed

        from pipelines.training import snapshot_span

        span = snapshot_span(prepared.incidents["received_at"], config)
        units = training_units(self.data_dir)
        n_parts = self.workers()
        # a flat city is one unit the driver has prepared already: hand it over rather than prepare it twice
        shipped = self.client.scatter(prepared, direct=True) if units == [None] else None
        futures = [
            self.client.submit(
                build_unit, str(self.data_dir), unit, config, span, str(self.folder), n_parts, shipped, pure=False
            )
            for unit in units
        ]
        for done, future in enumerate(as_completed(futures), start=1):
            info = future.result()
            rows = sum(info["rows"])
            self.say(f"  snapshots {info['unit']}: {rows:,} rows in {info['seconds']} s ({done}/{len(units)})")
        infos = [f.result() for f in futures]
        frames, offset = [], 0
        self.parts = []
        for info in infos:
            pieces = [pd.read_parquet(path) for path in info["files"]]
            for path, piece in zip(info["files"], pieces, strict=True):
                self.parts.append(Part(path, offset + piece[ROW].to_numpy()))
            unit_frame = pd.concat(pieces, ignore_index=True).sort_values(ROW, kind="stable")
            offset += len(unit_frame)
            frames.append(unit_frame)
        frame = pd.concat(frames, ignore_index=True).drop(columns=ROW)
        labels = frame.pop(LABEL).to_numpy()
        names = infos[0]["names"]
        points = {name: frame[f"points_{name}"].to_numpy(np.float64) for name in infos[0]["points"]}
        return frame, names, labels, points

    def final_trainer(
        self, frame: pd.DataFrame, names: list[str], config: Any
    ) -> Callable[[Fold, np.ndarray], EscalationModel]:
        """The served model's trainer: lightgbm.dask on the parts, cut and calibrated on the tuning period here."""
        X = frame[names]

        def fit(final: Fold, y: np.ndarray) -> EscalationModel:
            started = time.perf_counter()
            fitted = fit_dask(self.client, self.parts, names, final.train, y, config.seed, tune=final.tune)
            booster = fitted.booster_
            params = dask_params(names, config.seed)
            X_tune = X.to_numpy(np.float32)[final.tune]
            escalation = finish_model(booster, booster.best_iteration, X_tune, y[final.tune], names, params)
            escalation.params |= {"trainer": "lightgbm.dask", "workers": self.workers()}
            self.fit_seconds = time.perf_counter() - started
            rounds = escalation.params["rounds"]
            self.say(f"  lightgbm.dask on {self.workers()} workers: {rounds} rounds in {self.fit_seconds:.0f} s")
            return escalation

        return fit


def dask_params(names: list[str], seed: int) -> dict[str, Any]:
    """The single-process recipe's parameters (models/escalation.py) for the cluster fit."""
    params = {**DEFAULT_PARAMS, "monotone_constraints": monotone_constraints(names), "seed": seed}
    params.pop("num_threads")  # lightgbm.dask uses each worker's threads
    return params


def quiet_lightgbm() -> None:
    """LightGBM's own log lines (ports, ranks, "Finding random open ports") to a logger that keeps errors only.

    Run on every worker and on the driver: the C++ library prints its network set-up
    at Info level whatever ``verbose`` says, and workers share the terminal.
    """
    import logging

    import lightgbm as lgb

    logger = logging.getLogger("yujing.lightgbm")
    logger.setLevel(logging.ERROR)
    lgb.register_logger(logger)


def _arrays(parts: list[Part], names: list[str], rows: np.ndarray, y: np.ndarray) -> tuple[list, list]:
    """Dask chunks of the chosen rows (boolean over the snapshot frame): features read on a worker, labels from here."""
    import dask.array as da
    from dask import delayed

    X_parts, y_parts = [], []
    for part in parts:
        chosen = np.flatnonzero(rows[part.positions])
        if not len(chosen):
            continue
        X_parts.append(
            da.from_delayed(
                delayed(read_rows, pure=True)(part.path, names, chosen),
                shape=(len(chosen), len(names)),
                dtype=np.float32,
            )
        )
        y_parts.append(da.from_array(np.asarray(y)[part.positions[chosen]].astype(np.int8), chunks=-1))
    return X_parts, y_parts


def fit_dask(
    client: Any,
    parts: list[Part],
    names: list[str],
    rows: np.ndarray,
    y: np.ndarray,
    seed: int,
    tune: np.ndarray | None = None,
) -> Any:
    """``DaskLGBMClassifier`` on the ``rows`` of the parts, read on the workers; stopped early on ``tune`` if given.

    Early stopping is safe here only because every worker judges the *whole* tuning period:
    lightgbm.dask gives eval chunk j to training chunk j mod n, so the eval set is one copy of
    the tuning rows per training chunk (average precision of k identical copies is that of one).
    Each worker then sees the same metric after each round and stops at the same one; with
    lightgbm.dask's own split of the eval set, workers judge different rows, may stop at
    different rounds and the others wait for ever (LightGBM issue 6197).
    """
    import dask.array as da
    import lightgbm as lgb
    from lightgbm.dask import DaskLGBMClassifier

    from models.escalation import EARLY_STOPPING

    X_parts, y_parts = _arrays(parts, names, rows, y)
    params = {_SKLEARN_NAMES.get(k, k): v for k, v in dask_params(names, seed).items()}
    fit_args: dict[str, Any] = {}
    if tune is not None:
        X_tune, y_tune = _arrays(parts, names, tune, y)
        one_x = da.concatenate(X_tune).rechunk({0: -1})
        one_y = da.concatenate(y_tune).rechunk(-1)
        fit_args = {
            "eval_X": (da.concatenate([one_x] * len(X_parts)),),
            "eval_y": (da.concatenate([one_y] * len(y_parts)),),
            "eval_metric": "average_precision",
            "callbacks": [lgb.early_stopping(EARLY_STOPPING, verbose=False)],
        }
        params["metric"] = "average_precision"
    client.run(quiet_lightgbm)
    quiet_lightgbm()
    model = DaskLGBMClassifier(client=client, n_estimators=MAX_ROUNDS, **params)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
        return model.fit(da.concatenate(X_parts), da.concatenate(y_parts), feature_name=list(names), **fit_args)
