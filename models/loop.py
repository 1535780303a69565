"""The closed loop's clock: each warning's deadline, whether it is overdue, and how long each step took.

Pure functions (no database, no clock: ``now`` is always an argument, so a page, a report and a test
computed "as of" one moment agree). The store reads the rows (``WarningStore.loop_frames``); this
module turns them into the loop's timing; models/assessment.py scores stations from that.

The deadline policy (docs/assessment.md#deadline-policy):

* A warning's deadline is its latest supervision's ``new_deadline`` (the county's word overrides the
  policy, earlier or later), else ``created_at`` + ``hours[level]`` (setting
  ``warning_deadline_hours``: red 24, orange 72, yellow 168, blue 360 by default).
* Times are the loop's own real clock: ``created_at`` is when the ranking pushed the warning and an
  event's ``at`` is when the station acted. The ranking ``date`` (a day of the data, simulated in the
  demo city) is never used for timing.
* A warning is open while ``pushed`` or ``acknowledged``, closed once ``handled`` or ``fed_back``.
  It is overdue when open, active (not withdrawn by a re-run of its date) and ``now`` is past its
  deadline.
* Skipping a step is allowed in the store (a station may mark handled a warning it never
  acknowledged in the system), so the first move out of ``pushed`` counts as the acknowledgement,
  and feeding back counts as handling if ``handled`` was skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from models.warning_tables import OPEN_STATUSES, STATUSES

CLOSED_STATUSES = tuple(s for s in STATUSES if s not in OPEN_STATUSES)
"""``handled`` and ``fed_back``: the station has done the work."""

LOOP_COLUMNS = (
    "base_deadline",
    "deadline",
    "supervised",
    "open",
    "overdue",
    "acknowledged_at",
    "handled_at",
    "fed_back_at",
    "hours_to_acknowledge",
    "hours_to_handle",
    "hours_allowed",
)
"""Columns :func:`loop_frame` adds to the warnings (see its docstring)."""

TIME_DTYPE = "datetime64[us, UTC]"
"""Every time column of the loop's frames: microseconds (what both backends store), UTC."""

# The stage an event reaches: a later stage implies the earlier ones (skipping is allowed).
_STAGE = {status: i for i, status in enumerate(STATUSES)}


def _is(column: pd.Series, value: str) -> np.ndarray:
    """``column == value`` as a plain boolean array, vectorised (``Series.map`` walks Arrow strings one by one)."""
    return (column == value).to_numpy(dtype=bool, na_value=False)


def _moment(value: Any, what: str) -> datetime:
    """An aware UTC datetime from a datetime or an ISO string (the store's dicts carry ISO strings)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if not isinstance(value, datetime):
        raise ValueError(f"{what} must be a datetime or an ISO 8601 string, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} has no time zone; the loop's times are aware (UTC in the store)")
    return value.astimezone(UTC)


def _hours_for(level: Any, hours: Mapping[str, int]) -> int:
    if level not in hours:
        raise ValueError(f"no deadline hours for level {level!s:.12}; warning_deadline_hours needs every level")
    return int(hours[level])


def deadline_of(
    warning: Mapping[str, Any], hours: Mapping[str, int], supervisions: Sequence[Mapping[str, Any]]
) -> datetime:
    """The deadline of one warning (aware, UTC): the latest supervision's ``new_deadline``, else the policy's.

    ``supervisions`` may be the warning's own or a longer list: rows carrying another ``warning_id``
    are ignored, so ``store.supervisions([w["id"]])`` and a page's whole list both work. "Latest" is by
    ``at``, then ``id`` (two supervisions in one instant: the later written wins).
    """
    own = [s for s in supervisions if "warning_id" not in s or s["warning_id"] == warning.get("id")]
    if own:
        latest = max(own, key=lambda s: (_moment(s["at"], "a supervision's at"), s.get("id", 0)))
        return _moment(latest["new_deadline"], "a supervision's new_deadline")
    created = _moment(warning["created_at"], "created_at")
    return created + timedelta(hours=_hours_for(warning["level"], hours))


def is_overdue(warning: Mapping[str, Any], deadline: datetime, now: datetime) -> bool:
    """Whether a warning is overdue at ``now``: open, active and past ``deadline`` (from :func:`deadline_of`)."""
    if warning["status"] not in OPEN_STATUSES or not warning.get("active", True):
        return False
    return _moment(now, "now") > _moment(deadline, "deadline")


def utc_times(values: Any) -> pd.Series:
    """A column of times (datetimes, ISO strings, naive ones taken as UTC) as :data:`TIME_DTYPE`."""
    return pd.to_datetime(values, utc=True, format="ISO8601").astype(TIME_DTYPE)


def loop_frame(
    warnings: pd.DataFrame,
    events: pd.DataFrame,
    supervisions: pd.DataFrame,
    hours: Mapping[str, int],
    now: datetime,
) -> pd.DataFrame:
    """The warnings with their loop's timing as of ``now``, vectorised (one row per warning, order kept).

    Inputs are the three frames of ``WarningStore.loop_frames`` (or any frames with the same
    columns: warnings ``id, level, status, created_at`` and optionally ``active``; events
    ``warning_id, to_status, at``; supervisions ``warning_id, new_deadline, at`` and optionally
    ``id``). Times may be ISO strings or datetimes; they are read as UTC. Added columns:

    * ``base_deadline``: ``created_at`` + ``hours[level]`` (the policy, before any supervision);
    * ``deadline``: the latest supervision's ``new_deadline``, else ``base_deadline``;
    * ``supervised``: whether any supervision exists; ``open``: status pushed or acknowledged;
    * ``overdue``: open, active and ``now`` > ``deadline``;
    * ``acknowledged_at``, ``handled_at``, ``fed_back_at``: the first event reaching that stage or a
      later one (NaT when not reached);
    * ``hours_to_acknowledge``, ``hours_to_handle``: hours from ``created_at`` (NaN when not reached);
    * ``hours_allowed``: hours from ``created_at`` to ``base_deadline`` (the level's policy hours).
    """
    moment = _moment(now, "now")
    out = warnings.copy()
    missing = [c for c in ("id", "level", "status", "created_at") if c not in out]
    if missing:
        raise ValueError(f"warnings frame lacks column(s) {', '.join(missing)}; pass WarningStore.loop_frames()[0]")
    levels = out["level"]
    unknown = sorted(set(levels.dropna().unique()) - set(hours)) + (["(empty)"] if levels.isna().any() else [])
    if unknown:
        raise ValueError(f"no deadline hours for level(s) {', '.join(map(str, unknown))[:60]}")
    ids = out["id"].astype("int64")
    created = utc_times(out["created_at"])
    out["created_at"] = created
    allowed = pd.Series(np.select([_is(levels, k) for k in hours], [float(v) for v in hours.values()]), index=out.index)
    out["base_deadline"] = (created + pd.to_timedelta(allowed, unit="h")).astype(TIME_DTYPE)

    deadline = out["base_deadline"].copy()
    supervised = pd.Series(False, index=out.index)
    if len(supervisions):
        sup = supervisions.assign(
            at=utc_times(supervisions["at"]),
            new_deadline=utc_times(supervisions["new_deadline"]),
            _id=supervisions["id"] if "id" in supervisions else np.arange(len(supervisions)),
        )
        latest = sup.sort_values(["warning_id", "at", "_id"]).groupby("warning_id", sort=False).tail(1)
        by_warning = pd.Series(latest["new_deadline"].to_numpy(), index=latest["warning_id"].astype("int64"))
        mapped = ids.map(by_warning)
        has = mapped.notna().to_numpy()
        supervised = pd.Series(has, index=out.index)
        deadline = deadline.where(~has, utc_times(mapped))
    out["deadline"] = deadline
    out["supervised"] = supervised

    active = out["active"].astype(bool) if "active" in out else pd.Series(True, index=out.index)
    out["open"] = out["status"].isin(OPEN_STATUSES)
    out["overdue"] = out["open"] & active & (out["deadline"] < moment)

    reached = {stage: pd.Series(pd.NaT, index=out.index, dtype=TIME_DTYPE) for stage in CLOSED_STATUSES}
    reached["acknowledged"] = reached["handled"].copy()
    moves = events[events["to_status"] != "pushed"] if len(events) else events
    if len(moves):
        at = utc_times(moves["at"])
        stage = np.select([_is(moves["to_status"], status) for status in STATUSES], list(range(len(STATUSES))), -1)
        first = (
            pd.DataFrame({"warning_id": moves["warning_id"].astype("int64"), "stage": stage, "at": at})
            .groupby(["warning_id", "stage"])["at"]
            .min()
            .unstack("stage")
        )
        for status in ("acknowledged", "handled", "fed_back"):
            later = [c for c in first.columns if c >= _STAGE[status]]
            if later:
                when = first[later].min(axis=1)
                reached[status] = utc_times(ids.map(when))
    out["acknowledged_at"] = reached["acknowledged"]
    out["handled_at"] = reached["handled"]
    out["fed_back_at"] = reached["fed_back"]
    hour = pd.Timedelta(hours=1)
    out["hours_to_acknowledge"] = (out["acknowledged_at"] - created) / hour
    out["hours_to_handle"] = (out["handled_at"] - created) / hour
    out["hours_allowed"] = allowed
    return out
