"""Demo input, measurements and doc samples for the narrative grammar.

:func:`demo_calls` builds a plausible ``calls`` frame (not the simulator: just
enough variety to exercise every branch of the grammar), used by the tests,
the doc samples and the statistics. The measurement helpers are shared by
the tests and ``python -m simulation.narratives stats`` so the documented
numbers and the asserted numbers are computed the same way.
"""

from __future__ import annotations

import re
import time

import numpy as np
import pandas as pd

from simulation.grammar import disputes as dsp
from simulation.grammar import lexicon as lx
from simulation.narratives import CALLER_ROLES, render_calls, render_narratives

_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰红梅建国志强海燕春花宝山金凤"
_MONGOL = (
    "巴特尔",
    "其木格",
    "斯琴",
    "乌云",
    "额尔敦",
    "苏日娜",
    "那仁",
    "阿拉坦",
    "朝鲁",
    "萨仁",
    "格日乐",
    "哈斯",
    "宝音",
    "图雅",
)
_DISTRICTS = ("科尔沁区", "开鲁县", "科左中旗", "科左后旗", "奈曼旗", "库伦旗", "扎鲁特旗", "霍林郭勒市")

#: Non-dispute mix of the demo input (an assumption; the simulator has its own).
ND_MIX: dict[str, float] = {
    "theft": 0.14, "fraud": 0.08, "traffic": 0.16, "lost_property": 0.08, "fire": 0.03, "help": 0.12,
    "noise": 0.07, "missing_person": 0.03, "suspicious": 0.05, "stranger_assault": 0.05, "fare_dispute": 0.05,
    "drunk_person": 0.04, "consult": 0.06, "alarm_false": 0.04,
}  # fmt: skip
_CP_BY_CAT: dict[str, tuple[str, ...]] = {
    "debt": (
        "debtor", "debtor", "creditor", "relative", "sibling", "business_partner", "merchant", "landlord",
        "tenant",
    ),
    "family": (
        "husband", "husband", "husband", "wife", "wife", "ex_husband", "ex_wife", "boyfriend", "ex_boyfriend",
        "son", "daughter", "father", "mother", "sibling", "in_law", "relative", "girlfriend", "ex_girlfriend",
    ),
    "neighbor": ("neighbor",),
    "land": ("villager", "herder", "neighbor", "relative"),
    "labor": ("employer", "contractor", "worker"),
    "medical_school": ("hospital", "school"),
    "property": ("property_company", "developer", "landlord", "tenant"),
    "other": ("stranger", "merchant", "neighbor"),
}  # fmt: skip


def demo_calls(n: int, rng: np.random.Generator, *, dispute_share: float = 0.3, masked: bool = True) -> pd.DataFrame:
    """A plausible ``calls`` frame with every column of the interface.

    With ``masked=True`` every phone and ID is masked (safe for docs); with
    ``masked=False`` they are full random digits (tests only, never printed).
    """
    is_disp = rng.random(n) < dispute_share
    nd_types = np.array(list(ND_MIX), dtype=object)
    nd_p = np.array(list(ND_MIX.values()))
    ctype = np.where(is_disp, "dispute", nd_types[rng.choice(len(nd_types), size=n, p=nd_p / nd_p.sum())])
    ctype = ctype.astype(object)
    cats = np.array(dsp.CATEGORIES, dtype=object)
    shares = np.array([dsp.CATEGORY_SHARES[c] for c in dsp.CATEGORIES])
    drawn = cats[rng.choice(len(cats), size=n, p=shares / shares.sum())]
    category = np.where(is_disp, drawn, None).astype(object)
    cp_draw = rng.random(n)
    counterpart = np.array(
        [
            _CP_BY_CAT[c][int(u * len(_CP_BY_CAT[c]))] if c is not None else None
            for c, u in zip(category, cp_draw, strict=True)
        ],
        dtype=object,
    )
    role_p = np.where(is_disp[:, None], [0.72, 0.1, 0.08, 0.05, 0.05], [0.75, 0.08, 0.05, 0.1, 0.02])
    role_idx = (rng.random(n)[:, None] > np.cumsum(role_p, axis=1)).sum(axis=1).clip(max=4)
    caller_role = np.array(CALLER_ROLES, dtype=object)[role_idx]
    sex = np.where(rng.random(n) < 0.55, "F", "M").astype(object)
    party = caller_role == "party"
    sex[np.isin(counterpart, ["husband", "ex_husband", "boyfriend", "ex_boyfriend"]) & party] = "F"
    sex[np.isin(counterpart, ["wife", "ex_wife", "girlfriend", "ex_girlfriend"]) & party] = "M"
    given = rng.integers(0, len(_GIVEN), size=(n, 2))
    sur = rng.integers(0, 80, size=n)
    two = rng.random(n) < 0.6
    names = np.array(
        [
            lx.SURNAMES_1[s] + _GIVEN[g[0]] + (_GIVEN[g[1]] if t else "")
            for s, g, t in zip(sur, given, two, strict=True)
        ],
        dtype=object,
    )
    mongol = rng.random(n) < 0.15
    names[mongol] = np.array(_MONGOL, dtype=object)[rng.integers(0, len(_MONGOL), size=int(mongol.sum()))]
    names[rng.random(n) < 0.12] = None
    digits = rng.integers(0, 10, size=(n, 18)).astype(str)
    mid_phone = np.array(["****" if masked else "".join(d[2:6]) for d in digits], dtype=object)
    mid_id = np.array(["*" * 10 if masked else "".join(d[2:12]) for d in digits], dtype=object)
    phones = np.array(["1" + "3578"[int(d[0]) % 4] + d[1] for d in digits], dtype=object) + mid_phone
    phones = phones + np.array(["".join(d[6:10]) for d in digits], dtype=object)
    ids = np.array(["15" + "".join(d[:2]) for d in digits], dtype=object) + mid_id
    ids = ids + np.array(["".join(d[12:16]) for d in digits], dtype=object)
    phones[rng.random(n) < 0.1] = None
    ids[rng.random(n) < 0.45] = None
    dist = np.array(_DISTRICTS, dtype=object)[rng.integers(0, len(_DISTRICTS), size=n)]
    b, un, rm, kind = (
        rng.integers(1, 30, n),
        rng.integers(1, 7, n),
        rng.integers(101, 1802, n),
        rng.integers(0, 4, n),
    )
    loc = np.array(
        [
            (f"{d}某小区{x}号楼{y}单元{z}室", f"{d}某嘎查", f"{d}某路与某街交叉口", f"{d}某超市门口")[k]
            for d, x, y, z, k in zip(dist, b, un, rm, kind, strict=True)
        ],
        dtype=object,
    )
    received = np.datetime64("2023-01-01T00:00:00") + rng.integers(0, 730 * 86400, size=n).astype("timedelta64[s]")
    viol = rng.random(n) < np.where(is_disp, 0.3, np.where(ctype == "stranger_assault", 0.7, 0.02))
    return pd.DataFrame(
        {
            "received_at": pd.to_datetime(received),
            "call_type": ctype,
            "category": category,
            "subtype": None,
            "counterpart": counterpart,
            "caller_role": caller_role,
            "caller_sex": sex,
            "caller_name": names,
            "phone_shown": phones,
            "id_shown": ids,
            "location_text": loc,
            "violence": viol,
            "weapon": (rng.random(n) < np.where(is_disp, 0.06, 0.01)) & (viol | (rng.random(n) < 0.3)),
            "injury": (rng.random(n) < np.where(is_disp, 0.35, 0.2)) & viol,
            "threat": rng.random(n) < np.where(is_disp, 0.12, 0.01),
            "alcohol": rng.random(n) < np.where(is_disp, 0.18, np.where(ctype == "drunk_person", 1.0, 0.03)),
            "self_harm": rng.random(n) < np.where(is_disp, 0.03, 0.003),
            "separation": rng.random(n) < np.where(category == "family", 0.3, np.where(is_disp, 0.02, 0.0)),
            "repeat_n": np.where(is_disp, rng.geometric(0.55, size=n), 1),
            "mediated_before": is_disp & (rng.random(n) < 0.15),
            "detail": rng.beta(2.5, 1.5, size=n),
        }
    )


# --------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------

_HEADER_CUT = re.compile(r"^.*?(?:报警：|报警称：|来电：|报称：|报案：)")


def content_of(narratives: pd.Series, locations: pd.Series) -> pd.Series:
    """What the grammar wrote: the narrative without header and location."""
    body = narratives.str.replace(_HEADER_CUT, "", n=1, regex=True)
    loc = locations.fillna("").astype(str)
    out = [b[len(x) + 1 :] if x and b.startswith(x) else b for b, x in zip(body, loc, strict=True)]
    return pd.Series(out, index=narratives.index, dtype=object)


def diversity(content: pd.Series, template_id: pd.Series, skeleton: pd.Series | None = None) -> dict[str, float]:
    """Distinct content share, top template (and skeleton) share, distinct character 4-grams."""
    grams: set[str] = set()
    for s in content:
        grams.update(s[i : i + 4] for i in range(len(s) - 3))
    out = {
        "n": float(len(content)),
        "distinct_content_share": content.nunique() / max(len(content), 1),
        "top_template_share": float(template_id.value_counts(normalize=True).iloc[0]) if len(content) else 0.0,
        "distinct_templates": float(template_id.nunique()),
        "distinct_4grams": float(len(grams)),
    }
    if skeleton is not None and len(skeleton):
        out["top_skeleton_share"] = float(skeleton.value_counts(normalize=True).iloc[0])
    return out


def has_keyword(content: pd.Series) -> pd.Series:
    """Whether each text contains a stock dispute keyword (:data:`lexicon.DISPUTE_KEYWORDS`)."""
    return content.str.contains(lx.KEYWORD_RE, regex=True).astype(bool)


def category_word_shares(content: pd.Series, category: pd.Series) -> pd.DataFrame:
    """Per category: share of its calls with its own words, and of other categories' calls with them."""
    rows = {}
    for cat, words in lx.CATEGORY_WORDS.items():
        hit = content.str.contains("|".join(map(re.escape, words)), regex=True)
        own = (category == cat).to_numpy()
        rows[cat] = {"own": float(hit[own].mean()), "others": float(hit[~own].mean())}
    return pd.DataFrame(rows).T


def print_stats(n: int = 20_000, seed: int = 7) -> None:
    """The numbers quoted in docs/narratives.md (n dispute + n non-dispute calls)."""
    calls = demo_calls(2 * n, np.random.default_rng(seed), dispute_share=0.5)
    t0 = time.perf_counter()
    out = render_calls(calls, np.random.default_rng(seed + 1), with_skeleton=True)
    elapsed = time.perf_counter() - t0
    content = content_of(out["narrative"], calls["location_text"])
    disp = (calls["call_type"] == "dispute").to_numpy()
    for label, mask in (("dispute", disp), ("non-dispute", ~disp)):
        d = diversity(content[mask], out["template_id"][mask], out["skeleton"][mask])
        print(label, {k: round(v, 4) for k, v in d.items()})
    kw = has_keyword(content)
    print("dispute keyword-free share", round(1 - kw[disp].mean(), 4))
    print(
        "dispute keyword-free share by category",
        (~kw[disp]).groupby(calls.loc[disp, "category"]).mean().round(3).to_dict(),
    )
    print("non-dispute keyword share", round(kw[~disp].mean(), 4))
    print(
        "non-dispute keyword share by type",
        kw[~disp].groupby(calls.loc[~disp, "call_type"]).mean().round(3).to_dict(),
    )
    print("category words (own / other categories' calls):")
    print(category_word_shares(content[disp], calls.loc[disp, "category"]).round(3).to_string())
    print(f"render_calls with skeleton, {2 * n} calls: {elapsed:.2f}s")


def print_speed(n: int = 700_000, seed: int = 3) -> None:
    """Time ``render_narratives`` on ``n`` demo calls (input building not timed)."""
    calls = demo_calls(n, np.random.default_rng(seed))
    t0 = time.perf_counter()
    render_narratives(calls, np.random.default_rng(seed))
    print(f"render_narratives: {n} calls in {time.perf_counter() - t0:.1f}s")


PHONE_RE = re.compile(r"(?<!\d)1\d{10}(?!\d)")
ID_RE = re.compile(r"(?<![\dX])\d{17}[\dXx](?![\dXx])")

_SAMPLE_GROUPS: dict[str, tuple[str, ...]] = {
    "theft, fraud, lost_property": ("theft", "fraud", "lost_property"),
    "traffic, fare_dispute": ("traffic", "fare_dispute"),
    "stranger_assault, drunk_person, suspicious": ("stranger_assault", "drunk_person", "suspicious"),
    "fire, help, missing_person": ("fire", "help", "missing_person"),
    "noise, consult, alarm_false": ("noise", "consult", "alarm_false"),
}


def samples(per_kind: int = 20, seed: int = 11) -> str:
    """Markdown sample sections for the doc; every phone and ID is masked (checked)."""
    calls = demo_calls(60_000, np.random.default_rng(seed), dispute_share=0.5, masked=True)
    out = render_calls(calls, np.random.default_rng(seed + 1))
    chooser = np.random.default_rng(seed + 2)
    sections = [(f"Dispute / {c}", (calls["category"] == c).to_numpy()) for c in dsp.CATEGORIES]
    sections += [(f"Non-dispute / {k}", calls["call_type"].isin(v).to_numpy()) for k, v in _SAMPLE_GROUPS.items()]
    lines: list[str] = []
    for title, mask in sections:
        chosen = np.sort(chooser.choice(np.flatnonzero(mask), size=per_kind, replace=False))
        lines += [f"### {title}", "", "```text"]
        for i in chosen:
            row, meta = out.iloc[i], calls.iloc[i]
            kind = meta["call_type"] if meta["call_type"] != "dispute" else f"{meta['category']}/{row['subtype']}"
            lines.append(f"[{kind}; {meta['caller_role']}; cues={row['mentioned_cues'] or '-'}] {row['narrative']}")
        lines += ["```", ""]
    text = "\n".join(lines)
    if PHONE_RE.search(text) or ID_RE.search(text):
        raise RuntimeError("an unmasked phone or ID reached the samples")
    return text
