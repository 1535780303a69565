"""Drift to inject into a simulated city, for tests and demonstrations of drift monitoring (docs/drift.md).

Two things a center really sees:

* **A new call-taker style.** A new shift (or an outsourced 12345 line) records
  calls in its own words: a formal, vague summary ("来电人反映其与相关人员因琐事
  产生矛盾…") instead of the caller's story. The header (time, caller, phone)
  and the address stay; the content is rewritten, so the words the lexicon and
  the dispute model know thin out. :func:`restyle_narratives`.
* **A county's calls doubling.** A campaign, a new hotline number, or an
  export that sends every call twice. :func:`double_county_calls` duplicates
  the county's recent incidents under new ids (a fresh ``D`` prefix: never an
  existing id), minutes later.

Both are deterministic given ``seed`` and work on the tables as written by
``simulation.city.write_city`` (or read back by the loaders).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["double_county_calls", "restyle_narratives"]

_OPEN = ("来电人反映：", "据来电人陈述，", "经询问，来电人表示", "来电人口述称")
_WHO = ("其与相关人员", "其与对方当事人", "当事双方", "其本人与另一方")
_WHAT = (
    "因琐事产生矛盾",
    "因往来事项沟通未果",
    "因生活细节问题互不相让",
    "因前期遗留问题再起争执",
    "因费用结算事宜意见不一",
)
_NOW = ("，目前情绪较为激动", "，现场气氛紧张", "，双方僵持不下", "，已持续一段时间", "")
_ASK = ("，要求民警到场处置。", "，请求派员协调。", "，望警方介入。", "，申请出警。")


def _content_start(narrative: str) -> int:
    """Where the content begins: after the header's colon and the address (the first comma after it)."""
    colon = narrative.find("：")
    if colon < 0:
        return 0
    comma = narrative.find("，", colon + 1)
    return comma + 1 if comma > 0 else colon + 1


def restyle_narratives(
    incidents: pd.DataFrame, since: str | pd.Timestamp, seed: int = 0, share: float = 1.0
) -> pd.DataFrame:
    """A copy of ``incidents`` whose calls from ``since`` on (a ``share`` of them) are written in the new style."""
    out = incidents.copy()
    rng = np.random.default_rng(seed)
    rows = np.flatnonzero((pd.to_datetime(out["received_at"]) >= pd.Timestamp(since)).to_numpy())
    rows = rows[rng.random(len(rows)) < share]
    column = out["narrative"].astype(str).to_numpy(object).copy()
    for row in rows:
        text = column[row]
        head = text[: _content_start(text)]
        parts = (_OPEN, _WHO, _WHAT, _NOW, _ASK)
        column[row] = head + "".join(p[rng.integers(len(p))] for p in parts)
    out["narrative"] = column
    return out


def double_county_calls(
    incidents: pd.DataFrame, addresses: pd.DataFrame, county_code: str, since: str | pd.Timestamp, seed: int = 0
) -> pd.DataFrame:
    """``incidents`` plus a second copy of every call of ``county_code``'s stations from ``since`` on, new ids.

    A copy keeps its source row's index label (the frame's index then repeats), so per-row tables made
    from the original (the rules' verdicts) line up with ``.loc[out.index]``; reset both before use.
    """
    stations = set(addresses.loc[addresses["county_code"].astype(str) == str(county_code), "station_id"].astype(str))
    at = pd.to_datetime(incidents["received_at"])
    extra = incidents[(at >= pd.Timestamp(since)).to_numpy() & incidents["station_id"].astype(str).isin(stations)]
    extra = extra.copy()
    rng = np.random.default_rng(seed)
    extra["incident_id"] = [f"D{i:017d}" for i in range(len(extra))]
    shift = pd.to_timedelta(rng.integers(5, 180, len(extra)), unit="m")
    extra["received_at"] = (pd.to_datetime(extra["received_at"]) + shift).clip(upper=at.max())
    return pd.concat([incidents, extra]).sort_values("received_at", kind="stable")
