"""The text layer on text it was not tuned on: rules vs the fused model+rules answer, side by side.

    python benchmarks/text_eval.py --city DIR [--bundle DIR] [--json FILE]

* trains the dispute model on ``--city`` the way ``yujing train`` does (police codes through
  conf/dispute_labels.toml, ambiguous codes left out; earliest 60 % train, next 20 % tune) and
  scores the latest 20 % against the simulator's truth: rules, model alone, fused;
* runs the same model (or the ``--bundle``'s, as served) on the hand-written behavioural sets
  in ``tests/behaviour/`` (``cases.py``: the set the rules were tuned on; ``heldout*.py``: sets
  written by colleagues who saw neither the rules nor the other sets) and on CAIL court text
  (``../shared/realtext``, skipped when absent);
* reports how often the out-of-distribution gate fires on each.

Prints Markdown tables (docs/dispute-model.md holds a run of it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from features.labels import dispute_labels_from_codes  # noqa: E402
from models.dispute import fuse, rule_predictions, split_incidents_by_time, train_dispute_model  # noqa: E402
from models.evaluation import dispute_metrics  # noqa: E402
from tests.behaviour.harness import Result, metrics, table  # noqa: E402


def train_on_city(city: Path) -> tuple[object, pd.DataFrame]:
    """The dispute model trained on the city's police codes, and the test period with truth labels."""
    incidents = pd.read_parquet(city / "incidents.parquet")
    truth = pd.read_parquet(city / "truth" / "incidents.parquet", columns=["incident_id", "is_dispute", "category"])
    frame = incidents[["incident_id", "narrative", "received_at"]].join(dispute_labels_from_codes(incidents))
    frame = frame.sort_values(["received_at", "incident_id"], kind="stable").reset_index(drop=True)
    train, tune, test = split_incidents_by_time(frame)
    t0 = time.perf_counter()
    model = train_dispute_model(train[train["usable"]], tune[tune["usable"]])
    print(f"trained on {int(train['usable'].sum()):,} coded calls in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    test = test[["incident_id", "narrative", "received_at"]].merge(truth, on="incident_id", how="left")
    test["is_dispute"] = test["is_dispute"].fillna(False).astype(bool)
    return model, test


def simulator_table(model: object, test: pd.DataFrame) -> tuple[str, float]:
    texts = test["narrative"].tolist()
    m_out = model.predict(texts, test["received_at"].tolist())  # type: ignore[attr-defined]
    r_out = rule_predictions(texts)
    f_out = fuse(m_out, r_out)
    rows = [
        "| engine | precision | recall | F1 | category accuracy |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, out in (("rules", r_out), ("model alone", m_out), ("model+rules (fused)", f_out)):
        m = dispute_metrics(test["is_dispute"], out["is_dispute"], test["category"], out["category"])
        cells = " | ".join(f"{m[k]:.3f}" for k in ("precision", "recall", "f1", "category_accuracy"))
        rows.append(f"| {name} | {cells} |")
    return "\n".join(rows), float(m_out["ood"].mean())


def behaviour_sets() -> dict[str, list]:
    from tests.behaviour.cases import cases

    sets = {"cases.py (rules tuned on it)": cases()}
    for k in ("", "2", "3", "4"):
        module, fn = f"heldout{k}", f"heldout{k}_cases"
        try:
            mod = __import__(f"tests.behaviour.{module}", fromlist=[fn])
        except ImportError:
            continue
        sets[f"{module}.py"] = getattr(mod, fn)()
    return sets


def fused_engine(model: object):  # type: ignore[no-untyped-def]
    from models.classify import rules_answer, with_model
    from models.rules import score_text

    def predict(texts: list[str]) -> list[tuple[bool, str | None]]:
        answers = [rules_answer(i, score_text(t), "") for i, t in enumerate(texts)]
        out = with_model(answers, [{"id": i, "narrative": t} for i, t in enumerate(texts)], model)
        return [(bool(o["is_dispute"]), o["category"]) for o in out]

    return predict


def cail_texts() -> dict[str, list[str]]:
    root = ROOT.parent / "shared" / "realtext"
    out: dict[str, list[str]] = {}
    for domain in ("divorce", "labor", "loan"):
        path = root / f"cail2019_{domain}.jsonl"
        if path.is_file():
            docs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            out[domain] = ["".join(s["sentence"] for s in d["sentences"]) for d in docs]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--city", type=Path, required=True, help="a city written by yujing simulate")
    ap.add_argument("--bundle", type=Path, help="score the behavioural sets with this ONNX bundle instead")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)
    from tests.behaviour.engines import rules_predict

    model, test = train_on_city(args.city)
    sim, sim_ood = simulator_table(model, test)
    print(f"## Simulator, latest period ({len(test):,} calls, {int(test['is_dispute'].sum()):,} disputes; truth)\n")
    print(sim + "\n")
    served = model
    if args.bundle:
        from serving.dispute import load_dispute_model

        served = load_dispute_model(args.bundle)
    fused = fused_engine(served)
    numbers: dict[str, dict[str, Result]] = {}
    ood = {"simulator test period": sim_ood}
    for name, cs in behaviour_sets().items():
        numbers[name] = {"rules": metrics(cs, rules_predict), "model+rules": metrics(cs, fused)}
        texts = [c.text for c in cs if c.label != "ambiguous"]
        ood[name] = float(served.predict(texts)["ood"].mean())  # type: ignore[attr-defined]
        print(f"## {name}\n")
        print(table(numbers[name]).split("\n\n")[0] + "\n")
    for domain, texts in cail_texts().items():
        out = served.predict(texts)  # type: ignore[attr-defined]
        ood[f"CAIL2019 {domain}"] = float(out["ood"].mean())
    print("## Out-of-distribution gate: share of texts it sends to the rules\n")
    print("| text | OOD share |\n|---|---:|")
    for name, share in ood.items():
        print(f"| {name} | {share:.3f} |")
    if args.json:
        plain = {k: {e: vars(r) for e, r in v.items()} for k, v in numbers.items()}
        args.json.write_text(json.dumps({"ood": ood, "sets": plain}, default=str, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
