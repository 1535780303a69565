"""The escalation model fitted by lightgbm.dask on a local cluster vs one process, on the same snapshots.

    .venv/bin/python benchmarks/bench_cluster_training.py --data CITY [--data CITY2 ...]
    .venv/bin/python benchmarks/bench_cluster_training.py --persons 40000      # simulate a small city first

For each dataset: the driver prepares it (load, rules, links), a 2-worker local
cluster builds the snapshots (pipelines/cluster_training.py), and then every
rolling-origin backtest fold of the settings is fitted twice on exactly the same
train/tune/test rows: once by ``models.escalation.train_escalation`` in a process
of its own (the single-process path; its peak RSS is that process's), once by
``lightgbm.dask`` on the workers of a fresh cluster (so their peaks are the fits' alone).
Both are scored on the folds' test periods, pooled: ROC-AUC, PR-AUC and the
project's recall@k (each station's top k of each week), with the paired
household-bootstrap interval of cluster − single (models.backtest.paired_intervals):
an interval holding 0 means the difference is within noise.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def peak_rss() -> int:
    """This process's peak resident memory in bytes."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def single_process_fits(frame_path: str, names: list[str], folds: list[dict[str, np.ndarray]], seed: int) -> dict:
    """In a fresh process: ``train_escalation`` on every fold; test scores, rounds, seconds and peak RSS."""
    import pandas as pd

    from models.escalation import train_escalation

    frame = pd.read_parquet(frame_path, columns=[*names, "label"])
    X, y = frame[names].to_numpy(np.float32), frame["label"].to_numpy()
    del frame
    out = []
    for fold in folds:
        started = time.perf_counter()
        model = train_escalation(
            X[fold["train"]], y[fold["train"]], X[fold["tune"]], y[fold["tune"]], names, {"seed": seed}
        )
        seconds = time.perf_counter() - started
        test = fold["test"]
        out.append({"raw": model.raw(X[test]), "rounds": model.params["rounds"], "seconds": seconds})
    return {"folds": out, "peak": peak_rss()}


def dask_fits(
    client: Any, training: Any, frame: Any, names: list[str], labels: np.ndarray, folds: list, seed: int
) -> dict:
    """lightgbm.dask on every fold (the parts stay on the workers), cut at the replayed early stop."""
    from models.escalation import finish_model
    from pipelines.cluster import worker_peaks
    from pipelines.cluster_training import dask_params, fit_dask

    X = frame[names].to_numpy(np.float32)
    out = []
    for fold in folds:
        started = time.perf_counter()
        fitted = fit_dask(client, training.parts, names, fold.train, labels, seed, tune=fold.tune)
        best = fitted.booster_.best_iteration
        model = finish_model(fitted.booster_, best, X[fold.tune], labels[fold.tune], names, dask_params(names, seed))
        seconds = time.perf_counter() - started
        out.append({"raw": model.raw(X[fold.test]), "rounds": model.params["rounds"], "seconds": seconds})
    return {"folds": out, "peaks": worker_peaks(client)}


def pooled(frame: Any, labels: np.ndarray, folds: list, fits: dict, k: int) -> dict[str, Any]:
    """Pooled test-period metrics of one arm over all folds (models.evaluation.ranking_metrics)."""
    from models.evaluation import ranking_metrics

    rows = np.concatenate([np.flatnonzero(f.test) for f in folds])
    raw = np.concatenate([f["raw"] for f in fits["folds"]])
    groups = frame.iloc[rows][["station_id", "snapshot_date"]].reset_index(drop=True)
    return ranking_metrics(labels[rows], raw, raw, groups, k) | {"raw": raw, "rows": rows}


def compare(data: Path, workers: int, memory_limit: str, scratch: Path, seed: int | None) -> list[dict[str, Any]]:
    """Both arms on one dataset; one result row per arm."""

    from models.backtest import paired_intervals
    from pipelines.cluster import open_cluster, worker_peaks
    from pipelines.cluster_training import ClusterTraining
    from pipelines.preparation import prepare
    from pipelines.training import TrainConfig, backtest_folds, build_escalation_data

    config = TrainConfig()
    seed = config.seed if seed is None else seed
    started = time.perf_counter()
    prepared = prepare(data)
    t_prepare = time.perf_counter() - started
    started = time.perf_counter()
    frame_1p, *_ = build_escalation_data(prepared, config)
    t_build_1p = time.perf_counter() - started
    del frame_1p
    with open_cluster("local", workers, memory_limit, scratch / "dask") as client:
        training = ClusterTraining(client, data, scratch / "snapshots")
        started = time.perf_counter()
        frame, names, labels, _points = training.build_escalation_data(prepared, config)
        t_build = time.perf_counter() - started
        build_peaks = worker_peaks(client)
    del prepared
    folds = backtest_folds(frame, config)
    frame_path = scratch / "frame.parquet"
    frame[[*names]].assign(label=labels).to_parquet(frame_path)
    masks = [{"train": f.train, "tune": f.tune, "test": np.flatnonzero(f.test)} for f in folds]
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        single = pool.submit(single_process_fits, str(frame_path), names, masks, seed).result()
    with open_cluster("local", workers, memory_limit, scratch / "dask") as client:  # fresh workers: the fits' peaks
        cluster = dask_fits(client, training, frame, names, labels, folds, seed)
    one, many = pooled(frame, labels, folds, single, config.top_k), pooled(frame, labels, folds, cluster, config.top_k)
    households = frame["household_id"].to_numpy()[one["rows"]]
    groups = (frame["station_id"].astype(str) + "|" + frame["snapshot_date"].astype(str)).to_numpy()[one["rows"]]
    ci = paired_intervals(
        labels[one["rows"]], many["raw"], one["raw"], groups, households, config.top_k, config.bootstrap_samples, seed
    )
    common = {"data": data.name, "rows": len(frame), "positives": int(labels.sum()), "folds": len(folds)}
    gib = 2**30
    return [
        common
        | {
            "arm": "single process",
            "snapshots_s": round(t_prepare + t_build_1p, 1),
            "fit_s": round(sum(f["seconds"] for f in single["folds"]), 1),
            "rounds": [f["rounds"] for f in single["folds"]],
            "roc_auc": one["roc_auc"],
            "pr_auc": one["pr_auc"],
            "recall_at_k": one["recall_at_k"],
            "peak_gib": [round(single["peak"] / gib, 2)],
            "build_peak_gib": [round(peak_rss() / gib, 2)],
        },
        common
        | {
            "arm": f"lightgbm.dask, {workers} workers",
            "snapshots_s": round(t_build, 1),
            "fit_s": round(sum(f["seconds"] for f in cluster["folds"]), 1),
            "rounds": [f["rounds"] for f in cluster["folds"]],
            "roc_auc": many["roc_auc"],
            "pr_auc": many["pr_auc"],
            "recall_at_k": many["recall_at_k"],
            "peak_gib": [round(v / gib, 2) for v in cluster["peaks"].values()],
            "build_peak_gib": [round(v / gib, 2) for v in build_peaks.values()],
            "minus_single_ci": ci,
        },
    ]


def table(rows: list[dict[str, Any]], k: int) -> str:
    """The comparison as a Markdown table."""
    head = (
        f"| data | snapshot rows (positives) | arm | snapshots s | fits s ({rows[0]['folds']} folds) | rounds | "
        f"ROC-AUC | PR-AUC | recall@{k} | Δ recall@{k} 95% CI | fit peak GiB per process | "
        "snapshot peak GiB per process |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        ci = r.get("minus_single_ci", {}).get("recall_at_k")
        lines.append(
            f"| {r['data']} | {r['rows']:,} ({r['positives']:,}) | {r['arm']} | {r['snapshots_s']} | {r['fit_s']} | "
            f"{'/'.join(map(str, r['rounds']))} | {r['roc_auc']:.4f} | {r['pr_auc']:.4f} | {r['recall_at_k']:.4f} | "
            f"{f'[{ci[0]:+.4f}, {ci[1]:+.4f}]' if ci else '—'} | {', '.join(map(str, r['peak_gib']))} | "
            f"{', '.join(map(str, r['build_peak_gib']))} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, action="append", default=[], help="dataset folder (repeatable)")
    parser.add_argument("--persons", type=int, default=0, help="simulate a city of this many persons (seed 21)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="8GiB")
    args = parser.parse_args()
    from pipelines.training import TrainConfig

    with tempfile.TemporaryDirectory(prefix="bench_cluster_training_") as tmp:
        datasets = list(args.data)
        if args.persons:
            from simulation.city import simulate_city, write_city
            from simulation.config import SimConfig

            city = Path(tmp) / f"city{args.persons // 1000}k"
            write_city(simulate_city(SimConfig(persons=args.persons, days=730, seed=21)), city)
            datasets.append(city)
        rows = []
        for i, data in enumerate(datasets):
            scratch = Path(tmp) / f"run{i}"
            scratch.mkdir()
            rows += compare(data.resolve(), args.workers, args.memory_limit, scratch, None)
            print(table(rows[-2:], TrainConfig().top_k), flush=True)
    print("\n" + table(rows, TrainConfig().top_k))


if __name__ == "__main__":
    main()
