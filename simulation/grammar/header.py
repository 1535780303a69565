"""The 110 record header: ``时间 姓名( 电话 ，身份证 ) 报警：``.

Real records vary in how the time is typed, whether the caller is named in
full or as 张女士, how the contact block is bracketed, and the verb. The
header carries only what the input gives: a missing phone or ID is omitted,
never invented.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from simulation.grammar.engine import uniform_choice

#: Regex that parses every header this module writes (used by the tests; the
#: same shape as the real records).
HEADER_RE = re.compile(
    r"^(?P<time>\d{4}年\d{1,2}月\d{1,2}日 \d{1,2}时\d{1,2}分\d{1,2}秒|\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})"
    r" (?P<name>[^\s()（）]*)"
    r"(?:[(（] ?(?P<contact>[^()（）]*?) ?[)）])?"
    r" ?(?P<verb>报警：|报警称：|来电：|报称：|报案：)"
    r"(?P<body>.*)$",
    re.S,
)

VERBS: tuple[str, ...] = ("报警：", "报警称：", "来电：", "报称：")
_VERB_P = np.array([0.8, 0.07, 0.07, 0.06])
#: Verbs by how the call came in: a 12345 transfer is a 来电; a report at a station is 报警 or 报案.
CHANNEL_VERBS: dict[str, tuple[str, ...]] = {"12345": ("来电：",), "in_person": ("报警：", "报警：", "报案：")}
#: What the record shows instead of a name when the caller refused to give one.
REFUSED_CALLER: tuple[str, ...] = ("不愿透露", "不愿透露", "未留名", "匿名")

_PAD = np.array([f"{i:02d}" for i in range(61)], dtype=object)
_NUM = np.array([str(i) for i in range(61)], dtype=object)


def render_time(ts: pd.Series, rng: np.random.Generator) -> np.ndarray:
    """Received time in one of four typed formats (72% standard)."""
    n = len(ts)
    if ts.isna().any():
        raise ValueError("received_at has missing values")
    dt = pd.DatetimeIndex(ts)
    year = dt.year.astype(str).to_numpy(dtype=object)
    mo, d = dt.month.to_numpy(), dt.day.to_numpy()
    h, mi, s = dt.hour.to_numpy(), dt.minute.to_numpy(), dt.second.to_numpy()
    fmt = rng.choice(4, size=n, p=[0.72, 0.12, 0.1, 0.06])
    std = year + "年" + _NUM[mo] + "月" + _NUM[d] + "日 " + _PAD[h] + "时" + _PAD[mi] + "分" + _PAD[s] + "秒"
    unpadded = year + "年" + _NUM[mo] + "月" + _NUM[d] + "日 " + _NUM[h] + "时" + _NUM[mi] + "分" + _NUM[s] + "秒"
    iso = year + "-" + _PAD[mo] + "-" + _PAD[d] + " " + _PAD[h] + ":" + _PAD[mi] + ":" + _PAD[s]
    full = year + "年" + _PAD[mo] + "月" + _PAD[d] + "日 " + _PAD[h] + "时" + _PAD[mi] + "分" + _PAD[s] + "秒"
    out = np.select([fmt == 0, fmt == 1, fmt == 2], [std, unpadded, iso], default=full)
    return out.astype(object)


def render_caller(names: pd.Series, sexes: pd.Series, rng: np.random.Generator) -> np.ndarray:
    """The caller as the record gives it (full name or 张女士); anonymous callers get 匿名/未留名.

    The incident's ``caller_name`` column already decides full name, title or
    nothing (simulation/incidents.py), so the header repeats it unchanged: a
    record whose header and caller column disagree would be a simulator
    artefact, not realism. ``sexes`` is kept for the interface.
    """
    n = len(names)
    missing = pd.isna(names).to_numpy()
    given = names.where(~missing, "").astype(str).str.strip().to_numpy(dtype=object)
    anon = uniform_choice(("匿名", "匿名", "匿名", "未留名", "未留名", "", "无名"), n, rng)
    return np.where(missing, anon, given).astype(object)


def render_contact(phones: pd.Series, ids: pd.Series, rng: np.random.Generator) -> np.ndarray:
    """The bracketed contact block with the pieces the input gives."""
    n = len(phones)
    ph = phones.to_numpy(dtype=object)
    idn = ids.to_numpy(dtype=object)
    has_ph = ~pd.isna(phones).to_numpy()
    has_id = ~pd.isna(ids).to_numpy()
    ph_s = np.where(has_ph, ph, "").astype(object)
    id_s = np.where(has_id, idn, "").astype(object)
    style = rng.choice(4, size=n, p=[0.55, 0.2, 0.15, 0.1])
    sep = np.where(style == 3, ",", "，").astype(object)
    both = has_ph & has_id
    inner = np.where(both, ph_s + sep + id_s, ph_s + id_s).astype(object)
    opener = np.array(["( ", "(", "（", "( "], dtype=object)[style]
    closer = np.array([" )", ")", "）", " )"], dtype=object)[style]
    filled = opener + inner + closer
    empty_style = rng.choice(3, size=n, p=[0.35, 0.15, 0.5])
    empty = np.array(["( )", "()", ""], dtype=object)[empty_style]
    return np.where(has_ph | has_id, filled, empty).astype(object)


def render_header(
    calls: pd.DataFrame,
    rng: np.random.Generator,
    channel: np.ndarray | None = None,
    refused: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Header strings (up to and including the verb) and the verb per row.

    ``channel`` (``110`` / ``12345`` / ``in_person``) picks the verb of a
    transfer or a station report; ``refused`` rows show 不愿透露 as the caller
    half of the time. Both are optional and drawn after the old draws, so a
    frame without them renders as before.
    """
    n = len(calls)
    time = render_time(calls["received_at"], rng)
    caller = render_caller(calls["caller_name"], calls["caller_sex"], rng)
    contact = render_contact(calls["phone_shown"], calls["id_shown"], rng)
    verb = np.asarray(VERBS, dtype=object)[rng.choice(len(VERBS), size=n, p=_VERB_P)]
    if channel is not None:
        for name, verbs in CHANNEL_VERBS.items():
            rows = np.flatnonzero(channel == name)
            verb[rows] = uniform_choice(verbs, len(rows), rng)
    if refused is not None:
        rows = np.flatnonzero(refused & (rng.random(n) < 0.5) & pd.isna(calls["caller_name"]).to_numpy())
        caller[rows] = uniform_choice(REFUSED_CALLER, len(rows), rng)
    has_name_or_contact = (caller != "") | (contact != "")
    gap = np.where(has_name_or_contact, " ", "").astype(object)
    return time + " " + caller + contact + gap + verb, verb
