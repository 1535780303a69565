"""``GET /v1/rankings/{date}``: a date's warnings with reasons, for the key's scope."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path as FsPath
from typing import Annotated, Any

import pandas as pd
import pyarrow.parquet as pq
from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError

from pipelines.ranking_columns import API_COLUMNS, LIST_COLUMNS
from serving.audit import hashed, record
from serving.routers._common import CheckedRoute, errors, json_ok
from serving.routers.warnings import from_store
from serving.schemas import COUNTY_PATTERN, DATE_PATTERN, ID_PATTERN, RankingOut, valid_date
from serving.security import Caller
from serving.state import ranking_folder

router = APIRouter(prefix="/v1/rankings", tags=["rankings"], route_class=CheckedRoute)


@router.get("/{date}", response_model=RankingOut, responses=errors(401, 403, 404, 422))
def ranking(
    request: Request,
    principal: Caller,
    date: Annotated[str, Path(pattern=DATE_PATTERN, description="The ranking's date, YYYY-MM-DD.")],
    station: Annotated[str | None, Query(pattern=ID_PATTERN, description="One station's warnings.")] = None,
    county: Annotated[str | None, Query(pattern=COUNTY_PATTERN, description="One county's warnings.")] = None,
) -> Response:
    """A date's warnings with reasons, for the key's scope (a station key: its own station)."""
    if valid_date(date) is None:
        raise RequestValidationError([{"loc": ["path", "date"], "msg": "Input should be a valid date", "type": "date"}])
    record(request, date=date, county=county)
    if principal.scope == "station":
        if station is not None and station != principal.station:
            record(request, station=hashed(station))
            raise HTTPException(403, "a station key sees only its own station's ranking")
        station = principal.station
    if principal.scope == "county" and county is not None and county != principal.county:
        raise HTTPException(403, "a county key sees only its own county's ranking")
    folder = ranking_folder(request.app.state.settings.rankings_dir, date)
    if folder is None:
        raise HTTPException(404, "no ranking published for that date (dates look like 2024-12-31)")
    warnings, manifest = warnings_of(str(folder))
    known = station is not None and (bool((warnings["station_id"] == station).any()) or station == principal.station)
    if station is not None:
        record(request, station=station if known else hashed(station))
    rows = warnings
    if station is not None:
        rows = rows[rows["station_id"] == station]
    if county is not None:
        rows = rows[rows["county_code"] == county]
    if principal.scope == "county":
        rows = rows[rows["county_code"] == principal.county]
        if station is not None and rows.empty and (warnings["station_id"] == station).any():
            raise HTTPException(403, "that station is outside this key's county")
    statuses = {
        r["household_id"]: {"id": r["id"], "status": r["status"]}
        for r in from_store(request, "warnings_for", date) or []
    }
    records: list[dict[str, Any]] = json.loads(rows.to_json(orient="records", force_ascii=False))
    for row in records:
        row["warning"] = statuses.get(row["household_id"])
    return json_ok(
        {
            "date": date,
            "engine": manifest.get("engine"),
            "model_version": manifest.get("model_version"),
            "station": station if known else None,  # an unknown value is never echoed back
            "county": county if principal.scope != "county" else principal.county,
            "count": len(records),
            "warnings": records,
        }
    )


@lru_cache(maxsize=8)
def warnings_of(folder: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A published date's warned rows (cached per folder: a re-publish is a new folder)."""
    path = FsPath(folder)
    present = set(pq.read_schema(path / "ranking.parquet").names)
    columns = [c for c in API_COLUMNS if c in present]  # a ranking from before a column existed still serves
    table = pd.read_parquet(path / "ranking.parquet", columns=columns)
    warned = table[table["level"].notna()].sort_values(["station_id", "rank_in_station"]).reset_index(drop=True)
    for column in LIST_COLUMNS:
        if column in warned.columns:
            warned[column] = warned[column].map(list)
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    return warned, manifest
