"""Print the behavioural metrics table: ``python -m tests.behaviour.report [--bundle DIR] [--errors]``.

Rules always; the fused engine too when ``--bundle`` names a trained bundle
folder (``<run>/bundle``). ``--errors`` adds, per engine, the case ids it gets
wrong grouped by frame (ids only: no narrative text is printed).
"""

from __future__ import annotations

import argparse

from .cases import CASES
from .engines import fused_predictor, rules_predict
from .harness import Result, metrics, table


def results(bundle: str | None = None) -> dict[str, Result]:
    out = {"rules": metrics(CASES, rules_predict)}
    if bundle:
        out["fused"] = metrics(CASES, fused_predictor(bundle))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", help="a trained bundle folder: also report the fused model+rules engine")
    parser.add_argument("--errors", action="store_true", help="list the wrong case ids per frame")
    args = parser.parse_args(argv)
    res = results(args.bundle)
    print(table(res))
    if args.errors:
        for engine, r in res.items():
            print(f"\n## {engine}: wrong cases by frame\n")
            for frame, msg in r.frame_failures().items():
                print(f"- {frame}: {msg}")


if __name__ == "__main__":
    main()
