"""The dispute model against the keyword rules: every table in docs/dispute-model.md.

    .venv/bin/yujing simulate --persons 300000 --seed 20240411 --out /tmp/dc_city
    .venv/bin/python benchmarks/bench_dispute.py --city /tmp/dc_city [--realtext DIR] [--json out.json]

Trains the model on the first 60 % of the city's days, early-stops and tunes the
threshold on the next 20 %, and reports on the latest 20 % (no day in two periods).
Then the same fitted model, unchanged, on real text (CAIL2019 divorce/labor/loan
documents, CAIL2018 facts; read from ``../shared/realtext`` or ``$YUJING_REALTEXT``,
never copied into the repository) and on the hand-written 110 calls of
``tests/test_rules.py``. Rules, model and fused answer are all scored with
:func:`models.evaluation.dispute_metrics`. Prints markdown; no narrative text is
printed (only counts).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
if str(REPO / "tests") not in sys.path:  # tests/test_rules.py (hand-written calls) imports its conftest
    sys.path.insert(1, str(REPO / "tests"))

from features.lexicon import CATEGORIES  # noqa: E402
from models.dispute import (  # noqa: E402
    DisputeModel,
    fuse,
    load_city,
    rule_predictions,
    split_incidents_by_time,
    train_dispute_model,
    tune_threshold,
)
from models.evaluation import confusion_table, dispute_metrics  # noqa: E402
from models.rules import CATEGORY_MIN, rule_feature_names, rule_features  # noqa: E402
from models.text_features import (  # noqa: E402
    HEADER_FEATURES,
    ROLE_PATTERNS,
    SHAPE_FEATURES,
    TIME_FEATURES,
    IncidentFeaturizer,
)

METRIC_COLS = ("precision", "recall", "f1", "category_accuracy")


def _load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module at class creation
    spec.loader.exec_module(module)
    return module


def coverage_module() -> ModuleType:
    """benchmarks/lexicon_coverage.py: the real-text loaders the rules' tables use."""
    return _load_module("lexicon_coverage", REPO / "benchmarks" / "lexicon_coverage.py")


def three_way(
    texts: Sequence[str], times: Sequence[Any] | None, model: DisputeModel
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(rules, model, fused) outputs for the same texts."""
    m_out = model.predict(texts, times)
    r_out = rule_predictions(texts)
    return r_out, m_out, fuse(m_out, r_out)


def metrics_table(rows: dict[str, dict[str, float]], extra: Sequence[str] = ()) -> list[str]:
    cols = [*METRIC_COLS, *extra]
    lines = ["| | " + " | ".join(cols) + " |", "|---" + "|---:" * len(cols) + "|"]
    for name, m in rows.items():
        cells = [f"{m[c]:.3f}" if isinstance(m[c], float) else str(m[c]) for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def confusion_lines(truth: Sequence[str], predicted: Sequence[str | None], who: str) -> list[str]:
    table = confusion_table(truth, predicted)
    columns = [c for c in [*CATEGORIES, "none"] if c in table.columns]
    lines = [f"| true \\ {who} | " + " | ".join(columns) + " | own |", "|---" + "|---:" * (len(columns) + 1) + "|"]
    for category in [c for c in CATEGORIES if c in table.index]:
        row = table.loc[category]
        own = row.get(category, 0) / row.sum()
        lines.append(f"| {category} | " + " | ".join(str(int(row.get(c, 0))) for c in columns) + f" | {own:.0%} |")
    return lines


def simulator_section(city: Path, report: dict[str, Any]) -> tuple[DisputeModel, list[str]]:
    frame = load_city(city)
    train, tune, test = split_incidents_by_time(frame)
    t0 = time.perf_counter()
    model = train_dispute_model(train, tune)
    train_s = time.perf_counter() - t0
    texts, times = test["narrative"].tolist(), test["received_at"].tolist()
    r_out, m_out, f_out = three_way(texts, times, model)
    y, cat = test["is_dispute"].to_numpy(dtype=bool), test["category"]
    rows = {
        n: dispute_metrics(y, o["is_dispute"], cat, o["category"])
        for n, o in zip(("rules", "model", "fused"), (r_out, m_out, f_out), strict=True)
    }

    def period(df: pd.DataFrame) -> str:
        return f"{df['received_at'].min():%Y-%m-%d} .. {df['received_at'].max():%Y-%m-%d} ({len(df):,})"

    info = model.info
    lines = [
        f"city `{city}`: {len(frame):,} incidents; train {period(train)}, tune {period(tune)}, "
        f"test {period(test)}; lexicon {info['lexicon_version']}",
        f"model: {info['n_features']} features ({len(model.featurizer.vocabulary)} tokens), "
        f"best iteration {info['best_iteration']} x {len(model.classes)} classes = {info['n_trees']} trees, "
        f"threshold {model.threshold:.3f}, OOD threshold {model.ood_threshold:.3f}; trained in {train_s:.1f} s",
        "",
        f"### Simulator, held-out latest period ({rows['model']['n']:,} calls, {rows['model']['n_disputes']:,} "
        f"disputes; {int(m_out['ood'].sum())} flagged OOD)",
        "",
        *metrics_table(rows),
    ]
    # operating points: the chosen F1 threshold against "recall at least the rules' on tune"
    x_tune, _ = model.featurizer.transform_ood(tune["narrative"].tolist(), tune["received_at"].tolist())
    s_tune = 1.0 - model.predict_proba(x_tune)[:, 0]
    y_tune = tune["is_dispute"].to_numpy(dtype=bool)
    rules_tune = rule_predictions(tune["narrative"].tolist())
    rules_recall = float((rules_tune["is_dispute"].to_numpy() & y_tune).sum() / max(y_tune.sum(), 1))
    rules_prec = float((rules_tune["is_dispute"].to_numpy() & y_tune).sum() / max(rules_tune["is_dispute"].sum(), 1))
    grid = np.round(np.arange(0.005, 0.996, 0.005), 3)
    rec = np.array([((s_tune >= t) & y_tune).sum() / max(y_tune.sum(), 1) for t in grid])
    prec = np.array([((s_tune >= t) & y_tune).sum() / max((s_tune >= t).sum(), 1) for t in grid])
    t_recall = float(grid[rec >= rules_recall].max()) if (rec >= rules_recall).any() else float(grid[0])
    ok = prec >= rules_prec
    t_at_prec = float(grid[ok].min()) if ok.any() else float(grid[-1])
    assert abs(tune_threshold(y_tune, s_tune) - model.threshold) < 1e-6
    s_test = m_out["dispute_score"].to_numpy()
    top = m_out["top_category"].to_numpy()
    op_rows = {}
    for label, t in (
        (f"max F1 on tune (chosen) t={model.threshold:.3f}", model.threshold),
        (f"highest t with tune recall >= rules' ({rules_recall:.3f}) t={t_recall:.3f}", t_recall),
        (f"max recall at rules' tune precision ({rules_prec:.3f}) t={t_at_prec:.3f}", t_at_prec),
    ):
        pred = s_test >= t
        op_rows[label] = dispute_metrics(y, pred, cat, np.where(pred, top, None))
    lines += ["", "Operating points of the model on the same test period (threshold chosen on tune):", ""]
    lines += metrics_table(op_rows)
    lines += ["", "True category (rows) by the model's category, test-period disputes:", ""]
    lines += confusion_lines(cat[y].tolist(), m_out.loc[y, "category"].tolist(), "model")
    lines += ["", "True category (rows) by the rules' category, same calls:", ""]
    lines += confusion_lines(cat[y].tolist(), r_out.loc[y, "category"].tolist(), "rules")
    wrong = y & m_out["is_dispute"].to_numpy(dtype=bool) & (m_out["category"].to_numpy(dtype=object) != cat.to_numpy())
    rf = rule_features(texts)
    specific = rf[[f"cat_{c}" for c in CATEGORIES if c != "other"]].to_numpy().max(axis=1)
    unnamed = int((wrong & (specific < CATEGORY_MIN)).sum())
    lines += [
        "",
        f"Of the model's {int(wrong.sum())} wrong categories on detected disputes, {unnamed} are calls where "
        f"no specific category reaches {CATEGORY_MIN} in the rules (nothing in the text names the type: "
        "`与人发生纠纷，电话挂断`, `听到隔壁院有人吵架`).",
    ]
    report_unnamed = {"wrong": int(wrong.sum()), "unnamed": unnamed}
    truth = pd.read_parquet(city / "truth" / "incidents.parquet", columns=["incident_id", "call_type"])
    call_type = test[["incident_id"]].merge(truth, on="incident_id", how="left")["call_type"].to_numpy()
    for name, out in (("rules", r_out), ("model", m_out)):
        fp = Counter(call_type[out["is_dispute"].to_numpy(dtype=bool) & ~y])
        lines += [
            "",
            f"Non-dispute calls flagged by the {name} ({sum(fp.values())}): "
            + ", ".join(f"{k} {v}" for k, v in fp.most_common(8)),
        ]
    # alternatives considered for the in-distribution half of the fusion
    r_cat = r_out["category"].to_numpy(dtype=object)
    m_cat = m_out["category"].to_numpy(dtype=object)
    confident = r_out["dispute_score"].to_numpy() >= 0.95
    alt_cat = np.where(
        confident & m_out["is_dispute"].to_numpy(dtype=bool) & r_out["is_dispute"].to_numpy(dtype=bool), r_cat, m_cat
    )
    alt = {
        "model (= fused in distribution)": rows["model"],
        "model, but rules' category when rules score >= 0.95": dispute_metrics(y, m_out["is_dispute"], cat, alt_cat),
        "rules OR model for is_dispute, model's category": dispute_metrics(
            y, m_out["is_dispute"] | r_out["is_dispute"], cat, np.where(m_out["is_dispute"], m_cat, r_cat)
        ),
    }
    # "DV safety net": a family dispute with violence/weapon/threat/self-harm the rules see is never dropped
    severe = rf[["cue_violence", "cue_weapon", "cue_threat", "cue_self_harm"]].to_numpy().any(axis=1)
    net = (r_cat == "family") & severe & ~m_out["is_dispute"].to_numpy(dtype=bool)
    alt["model + DV safety net (rules' family + violence/weapon/threat/self-harm)"] = dispute_metrics(
        y, m_out["is_dispute"].to_numpy(dtype=bool) | net, cat, np.where(net, r_cat, m_cat)
    )
    net_fp = Counter(call_type[net & ~y])
    lines += ["", "Fusion alternatives on the same test period:", "", *metrics_table(alt)]
    lines += [
        "",
        f"DV safety net: {int(net.sum())} calls added, {int((net & y).sum())} of them disputes; false ones by type: "
        + ", ".join(f"{k} {v}" for k, v in net_fp.most_common(4)),
    ]
    lines += [
        "",
        "### Feature importance (gain, top 20)",
        "",
        "| # | feature | gain share | splits |",
        "|---:|---|---:|---:|",
    ]
    imp = model.feature_importance(20)
    for i, r in imp.iterrows():
        lines.append(f"| {i + 1} | `{r['feature']}` | {r['share']:.1%} | {int(r['splits'])} |")
    every = model.feature_importance(len(model.featurizer.feature_names))
    share = dict(zip(every["feature"], every["share"], strict=True))
    blocks = {
        "rules": rule_feature_names(),
        "tokens": [f for f in share if f.startswith("tok_")],
        "caller role": list(ROLE_PATTERNS),
        "time": list(TIME_FEATURES),
        "shape": list(SHAPE_FEATURES),
        "header": list(HEADER_FEATURES),
    }
    block_share = {b: sum(share.get(f, 0.0) for f in fs) for b, fs in blocks.items()}
    lines += ["", "Gain by block: " + ", ".join(f"{b} {v:.1%}" for b, v in block_share.items())]
    report.setdefault("_ood", {})["simulator test period (110, generated)"] = m_out["ood_score"].to_numpy()
    report.setdefault("_fuse_inputs", {})["simulator test period"] = (m_out, r_out, y, cat.to_numpy())
    report["simulator"] = {
        "rows": rows,
        "operating_points": op_rows,
        "alternatives": alt,
        "info": info,
        "threshold": model.threshold,
        "ood_threshold": model.ood_threshold,
        "train_seconds": round(train_s, 1),
        "category_errors": report_unnamed,
        "importance": imp[["feature", "share"]].to_dict(orient="records"),
        "block_share": block_share,
    }
    return model, lines


def cail_section(model: DisputeModel, root: Path, report: dict[str, Any]) -> list[str]:
    cov = coverage_module()
    if not (root / "cail2019_divorce.jsonl").is_file():
        return ["", f"(real text not found in {root}: CAIL tables skipped)"]
    docs = cov.load_cail2019(root)
    lines = [
        "",
        "### CAIL2019 documents (sentences joined; every document is a dispute of its domain)",
        "",
        "| domain (n) | OOD | rules recall | model recall | fused recall | rules cat. acc. | model cat. acc. "
        "| fused cat. acc. | model's categories |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    out: dict[str, Any] = {}
    for domain, texts in docs.items():
        own = cov.DOMAIN_CATEGORY[domain]
        r_out, m_out, f_out = three_way(texts, None, model)
        ms = {
            n: dispute_metrics([True] * len(texts), o["is_dispute"], [own] * len(texts), o["category"])
            for n, o in (("rules", r_out), ("model", m_out), ("fused", f_out))
        }
        cats = Counter(m_out["category"].fillna("none"))
        lines.append(
            f"| {domain} ({len(texts)}) | {m_out['ood'].mean():.0%} | "
            + " | ".join(f"{ms[n]['recall']:.3f}" for n in ("rules", "model", "fused"))
            + " | "
            + " | ".join(f"{ms[n]['category_accuracy']:.3f}" for n in ("rules", "model", "fused"))
            + " | "
            + ", ".join(f"{k} {v}" for k, v in cats.most_common(4))
            + " |"
        )
        report.setdefault("_ood", {})[f"CAIL2019 {domain}"] = m_out["ood_score"].to_numpy()
        out[domain] = {**ms, "ood_share": float(m_out["ood"].mean()), "ood_min": float(m_out["ood_score"].min())}
    facts = cov.load_cail2018(root)
    lines += [
        "",
        "### CAIL2018 facts, single charge: share read as a dispute (descriptive, not a clean negative set)",
        "",
        "| charge (n) | OOD | rules | model | fused |",
        "|---|---:|---:|---:|---:|",
    ]
    charges: dict[str, Any] = {}
    for charge in (*cov.VIOLENT_CHARGES, *cov.CONTROL_CHARGES):
        texts = [f for f, acc in facts if acc == [charge]]
        if not texts:
            continue
        r_out, m_out, f_out = three_way(texts, None, model)
        rates = [float(o["is_dispute"].mean()) for o in (r_out, m_out, f_out)]
        lines.append(
            f"| {charge} ({len(texts)}) | {m_out['ood'].mean():.0%} | " + " | ".join(f"{x:.1%}" for x in rates) + " |"
        )
        report.setdefault("_ood_2018", []).append(m_out["ood_score"].to_numpy())
        charges[charge] = {
            "n": len(texts),
            "ood_share": float(m_out["ood"].mean()),
            "rules": rates[0],
            "model": rates[1],
            "fused": rates[2],
        }
    report["cail2019"] = out
    report["cail2018"] = charges
    return lines


def handwritten_section(model: DisputeModel, report: dict[str, Any]) -> list[str]:
    tr = _load_module("test_rules_cases", REPO / "tests" / "test_rules.py")
    texts = [t for ts in tr.BY_CATEGORY.values() for t in ts] + list(tr.NOT_DISPUTES)
    cats = [c for c, ts in tr.BY_CATEGORY.items() for _ in ts] + [None] * len(tr.NOT_DISPUTES)
    y = [c is not None for c in cats]
    lines = []
    for label, prefix in (("bare", ""), ("with a 110 header", tr.HEADER.removesuffix("报警："))):
        batch = [prefix + t if prefix else t for t in texts]
        r_out, m_out, f_out = three_way(batch, None, model)
        rows = {
            n: dispute_metrics(y, o["is_dispute"], cats, o["category"])
            for n, o in (("rules", r_out), ("model", m_out), ("fused", f_out))
        }
        lines += [
            "",
            f"### Hand-written 110 calls of tests/test_rules.py, {label} ({sum(y)} disputes, "
            f"{len(y) - sum(y)} not; {int(m_out['ood'].sum())} flagged OOD)",
            "",
            *metrics_table(rows),
        ]
        report.setdefault("_ood", {})[f"hand-written 110, {label}"] = m_out["ood_score"].to_numpy()
        report.setdefault("_fuse_inputs", {})[f"hand-written, {label}"] = (m_out, r_out, y, cats)
        report[f"handwritten_{label.replace(' ', '_')}"] = {**rows, "ood": int(m_out["ood"].sum())}
    lines += ["", "(the rules were written to pass exactly these calls: an upper bound for them)"]
    return lines


def ood_section(model: DisputeModel, report: dict[str, Any]) -> list[str]:
    """Where the OOD score puts each kind of text, against the threshold the fusion uses."""
    groups = dict(report.pop("_ood", {}))
    facts = report.pop("_ood_2018", [])
    if facts:
        groups["CAIL2018 facts (charges above)"] = np.concatenate(facts)
    lines = [
        "",
        f"### OOD score by kind of text (threshold {model.ood_threshold:.3f})",
        "",
        "| text (n) | min | median | q99 | max | share >= threshold |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    summary = {}
    for name, v in groups.items():
        q = np.quantile(v, [0, 0.5, 0.99, 1]) if len(v) else np.zeros(4)
        share = float((v >= model.ood_threshold).mean()) if len(v) else 0.0
        lines.append(f"| {name} ({len(v):,}) | " + " | ".join(f"{x:.3f}" for x in q) + f" | {share:.1%} |")
        summary[name] = {"quantiles_0_50_99_100": [float(x) for x in q], "share_ood": share}
    report["ood_scores"] = summary
    inputs = report.pop("_fuse_inputs", {})
    lines += [
        "",
        "Fused answer if the OOD threshold were another (same model; CAIL is OOD at any of these):",
        "",
        "| OOD threshold | " + " | ".join(f"{n}: OOD share / F1 / cat. acc." for n in inputs) + " |",
        "|---:" + "|---" * len(inputs) + "|",
    ]
    sensitivity: dict[str, Any] = {}
    for t in (0.05, 0.10, 0.15, 0.20, model.ood_threshold):
        cells = []
        for name, (m_out, r_out, y, cat) in inputs.items():
            moved = m_out.assign(ood=m_out["ood_score"].to_numpy() >= t)
            f_out = fuse(moved, r_out)
            m = dispute_metrics(y, f_out["is_dispute"], cat, f_out["category"])
            cells.append(f"{moved['ood'].mean():.1%} / {m['f1']:.3f} / {m['category_accuracy']:.3f}")
            sensitivity[f"{t:.2f} {name}"] = m
        lines.append(f"| {t:.2f} | " + " | ".join(cells) + " |")
    report["ood_sensitivity"] = sensitivity
    return lines


def latency_section(model: DisputeModel, city: Path, n: int, report: dict[str, Any]) -> list[str]:
    texts = load_city(city).tail(n)
    feats, booster = model.featurizer, model.booster
    rows = list(zip(texts["narrative"], texts["received_at"], strict=True))
    for text, when in rows[:20]:  # warm-up
        booster.predict(feats.transform([text], [when]))
    f_us, b_us, p_us = [], [], []
    for text, when in rows:
        t0 = time.perf_counter()
        x, _ood = feats.transform_ood([text], [when])
        t1 = time.perf_counter()
        model.predict_proba(x)
        t2 = time.perf_counter()
        model.predict_one(text, when)
        t3 = time.perf_counter()
        f_us.append((t1 - t0) * 1e6)
        b_us.append((t2 - t1) * 1e6)
        p_us.append((t3 - t2) * 1e6)

    def q(v: list[float]) -> str:
        return f"{statistics.median(v):,.0f} | {np.quantile(v, 0.99):,.0f}"

    report["latency_us"] = {
        "featurize_median": statistics.median(f_us),
        "booster_median": statistics.median(b_us),
        "predict_median": statistics.median(p_us),
    }
    return [
        "",
        f"### One incident at a time ({len(rows):,} latest calls, one thread of Python, µs)",
        "",
        "| step | median | p99 |",
        "|---|---:|---:|",
        f"| featurize (mask, header, jieba, rules, tokens, OOD) | {q(f_us)} |",
        f"| LightGBM `Booster.predict`, 1 row | {q(b_us)} |",
        f"| `DisputeModel.predict_one` end to end | {q(p_us)} |",
    ]


def codes_section(city: Path, report: dict[str, Any]) -> list[str]:
    """The model trained on the call takers' category codes (what a real center has), scored against truth."""
    try:
        from features.labels import dispute_labels_from_codes
    except ImportError:  # pragma: no cover - features/labels.py belongs to the training pipeline
        return ["", "(features.labels not available: code-label section skipped)"]
    frame = load_city(city)
    codes = pd.read_parquet(city / "incidents.parquet", columns=["incident_id", "category_l1", "category_l2"])
    coded = frame[["incident_id"]].merge(codes, on="incident_id", how="left")
    labels = dispute_labels_from_codes(coded)
    trained_on = frame.assign(is_dispute=labels["is_dispute"].to_numpy(), category=labels["category"].to_numpy())
    train, tune, _ = split_incidents_by_time(trained_on)
    _, _, test = split_incidents_by_time(frame)  # same days, truth labels
    model = train_dispute_model(train, tune)
    texts = test["narrative"].tolist()
    r_out, m_out, f_out = three_way(texts, test["received_at"].tolist(), model)
    y, cat = test["is_dispute"], test["category"]
    coded_test = labels.loc[test.index]
    rows = {
        "call takers' codes themselves": dispute_metrics(y, coded_test["is_dispute"], cat, coded_test["category"]),
        "rules": dispute_metrics(y, r_out["is_dispute"], cat, r_out["category"]),
        "model trained on codes": dispute_metrics(y, m_out["is_dispute"], cat, m_out["category"]),
        "fused": dispute_metrics(y, f_out["is_dispute"], cat, f_out["category"]),
    }
    report["trained_on_codes"] = {"rows": rows, "threshold": model.threshold}
    return [
        "",
        "### Trained on the call takers' codes instead of truth, scored against truth (same test period)",
        "",
        f"threshold {model.threshold:.3f} (max F1 against the codes on the tuning period)",
        "",
        *metrics_table(rows),
    ]


def ablation_section(city: Path, root: Path, report: dict[str, Any]) -> list[str]:
    """Size of the token block: none, 100, 300 (default), 600; the model alone everywhere."""
    frame = load_city(city)
    train, tune, test = split_incidents_by_time(frame)
    cov = coverage_module()
    docs = cov.load_cail2019(root) if (root / "cail2019_divorce.jsonl").is_file() else {}
    tr = _load_module("test_rules_cases", REPO / "tests" / "test_rules.py")
    hand = [t for ts in tr.BY_CATEGORY.values() for t in ts] + list(tr.NOT_DISPUTES)
    hand_cat = [c for c, ts in tr.BY_CATEGORY.items() for _ in ts] + [None] * len(tr.NOT_DISPUTES)
    lines = [
        "",
        "### Ablation: size of the token vocabulary (model alone, no fusion)",
        "",
        "| tokens | trees | sim P | sim R | sim F1 | sim cat. acc. | hand-written F1 | hand-written cat. acc. | "
        + " | ".join(f"CAIL {d} cat. acc." for d in docs)
        + " |",
        "|---:" * (7 + len(docs)) + "|---:|",
    ]
    out = {}
    for n_tokens in (0, 100, 300, 600):
        model = train_dispute_model(train, tune, featurizer=IncidentFeaturizer(n_tokens=n_tokens))
        m_out = model.predict(test["narrative"].tolist(), test["received_at"].tolist())
        sim = dispute_metrics(test["is_dispute"], m_out["is_dispute"], test["category"], m_out["category"])
        h_out = model.predict(hand)
        hm = dispute_metrics([c is not None for c in hand_cat], h_out["is_dispute"], hand_cat, h_out["category"])
        cail = {}
        for d, texts in docs.items():
            o = model.predict(texts)
            own = [cov.DOMAIN_CATEGORY[d]] * len(texts)
            cail[d] = dispute_metrics([True] * len(texts), o["is_dispute"], own, o["category"])["category_accuracy"]
        lines.append(
            f"| {n_tokens} | {model.info['n_trees']} | {sim['precision']:.3f} | {sim['recall']:.3f} | "
            f"{sim['f1']:.3f} | "
            f"{sim['category_accuracy']:.3f} | {hm['f1']:.3f} | {hm['category_accuracy']:.3f} | "
            + " | ".join(f"{v:.3f}" for v in cail.values())
            + " |"
        )
        out[n_tokens] = {"sim": sim, "handwritten": hm, "cail_category_accuracy": cail}
    report["ablation"] = out
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--city", required=True, type=Path)
    ap.add_argument("--realtext", help="directory with the CAIL jsonl files (default ../shared/realtext)")
    ap.add_argument("--json", type=Path, help="also write the numbers as JSON here")
    ap.add_argument("--latency", type=int, default=2000, help="incidents for the one-at-a-time timing (0: skip)")
    ap.add_argument("--ablation", action="store_true", help="also retrain with 0/100/300/600 tokens")
    ap.add_argument("--codes", action="store_true", help="also train on the call takers' codes (features.labels)")
    args = ap.parse_args(argv)
    report: dict[str, Any] = {}
    model, lines = simulator_section(args.city, report)
    root = coverage_module().realtext_dir(args.realtext)
    lines += cail_section(model, root, report)
    lines += handwritten_section(model, report)
    lines += ood_section(model, report)
    if args.latency:
        lines += latency_section(model, args.city, args.latency, report)
    if args.codes:
        lines += codes_section(args.city, report)
    if args.ablation:
        lines += ablation_section(args.city, root, report)
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
