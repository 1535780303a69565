"""Check a published ranking of any size against what the city's tests check, reading it in slices.

Run from the repository root::

    .venv/bin/python benchmarks/check_publication.py OUT/<date> --db sqlite:////abs/warnings.db

The suite checks a city's publication by loading it whole; a province's
ranking.parquet (≈9.7M rows) is checked here in batches so the check itself
fits in a few GiB. Checked, each as a line of output, exit 1 on the first
failure:

- every file the manifest lists exists with its size and sha256, and nothing
  else is in the folder but the manifest;
- ``ranking.parquet`` passes ``pipelines.ranking_columns._canonical`` batch by
  batch (types, allowed levels, categories, no empty key) and comes back in
  the same order (so the whole file is in the published order: station, then
  its warnings by rank, then its other households), station ids never go
  backwards across batches, and household ids are unique over the file;
- its row count, warnings per level and in-scope count equal the manifest's;
- the warnings database holds exactly the warned households of that date,
  with their levels.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check(folder: Path, db_url: str | None, batch_rows: int = 500_000) -> list[str]:
    """The checks' lines; raises AssertionError naming the first failure."""
    import pyarrow.parquet as pq
    import sqlalchemy as sa

    from pipelines.ranking_columns import _canonical

    lines: list[str] = []
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    listed = manifest["files"]
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {"manifest.json"}
    assert on_disk == set(listed), f"files differ from the manifest: {sorted(on_disk ^ set(listed))[:5]}"
    for name, entry in listed.items():
        path = folder / name
        assert path.stat().st_size == entry["size"], f"{name}: size differs from the manifest"
        assert _sha256(path) == entry["sha256"], f"{name}: sha256 differs from the manifest"
    lines.append(f"files: {len(listed)} listed in the manifest, sizes and sha256 equal, none extra")

    seen: set[str] = set()
    levels: Counter[str] = Counter()
    rows = in_scope = 0
    last_station = ""
    warned: dict[str, str] = {}
    for batch in pq.ParquetFile(folder / "ranking.parquet").iter_batches(batch_size=batch_rows):
        frame = batch.to_pandas()
        canonical = _canonical(frame)
        assert canonical["household_id"].tolist() == frame["household_id"].tolist(), "rows out of published order"
        first = str(frame["station_id"].iloc[0])
        assert first >= last_station, f"station {first} after {last_station}: stations out of order"
        last_station = str(frame["station_id"].iloc[-1])
        ids = frame["household_id"].astype(str)
        assert not any(i in seen for i in ids), "a household appears twice"
        seen.update(ids)
        rows += len(frame)
        in_scope += int(frame["in_scope"].sum())
        hit = frame[frame["level"].notna()]
        levels.update(hit["level"].astype(str))
        warned.update(zip(hit["household_id"].astype(str), hit["level"].astype(str), strict=True))
    assert rows == manifest["households"], f"{rows} rows, manifest says {manifest['households']}"
    assert in_scope == manifest["in_scope"], f"{in_scope} in scope, manifest says {manifest['in_scope']}"
    assert {k: levels.get(k, 0) for k in manifest["warnings"]} == manifest["warnings"], "warnings per level differ"
    lines.append(
        f"ranking.parquet: {rows:,} households (unique, in published order, canonical types), "
        f"{in_scope:,} in scope, warnings {dict(levels)} = manifest"
    )
    if db_url:
        engine = sa.create_engine(db_url)
        with engine.connect() as conn:
            stored = dict(
                conn.execute(
                    sa.text("SELECT household_id, level FROM warnings WHERE date = :d AND active"),
                    {"d": manifest["date"]},
                ).all()
            )
        engine.dispose()
        assert stored == warned, f"database: {len(stored)} active warnings, ranking has {len(warned)} warned"
        lines.append(f"database: {len(stored):,} active warnings of {manifest['date']}, the ranking's, same levels")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a published ranking folder, OUT/<date>")
    parser.add_argument("--db", help="the warnings database URL the ranking wrote to")
    args = parser.parse_args(argv)
    try:
        for line in check(args.folder.resolve(), args.db):
            print(line)
    except AssertionError as exc:
        print(f"FAILED: {exc}")
        return 1
    print("publication OK")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
