"""Narrative grammar: turn simulated 110 calls into realistic narratives.

Public interface (the simulator core codes against it)::

    render_calls(calls, rng) -> DataFrame[narrative, subtype, mentioned_cues, template_id, ...]
    render_narratives(calls, rng) -> Series   # render_calls(...)["narrative"]

A narrative is ``header + location + "，" + content``. The header is
``时间 姓名( 电话 ，身份证 ) 报警：`` (:mod:`simulation.grammar.header`); the
content is assembled from slots::

    [repeat-front] [lead] MAIN [details] [wrap] [cue clauses] [negations]
    [repeat-back] [mediation] [request] [terminator]

Each slot is a pool of templates (word lists in :mod:`simulation.grammar.lexicon`,
dispute clauses in :mod:`simulation.grammar.disputes`, other call types in
:mod:`simulation.grammar.nondisputes`). Rows that share a pool are drawn with
one rng call and filled with numpy object-array concatenation
(:mod:`simulation.grammar.engine`), so 700,000 calls render in well under a
minute. ``docs/narratives.md`` explains the rates and shows the measurements.

Determinism: all randomness comes from the ``rng`` passed in. It seeds one
child generator per step, so identical input and seed give identical output.

``python -m simulation.narratives samples|stats|speed`` prints the doc samples,
the diversity/confuser statistics and the timing.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import pandas as pd

from simulation.grammar import disputes as dsp
from simulation.grammar import lexicon as lx
from simulation.grammar import nondisputes as nds
from simulation.grammar.engine import (
    BIT,
    CUE_LETTERS,
    CUE_MASK,
    CUES,
    MODE_ANY,
    MODE_FREE,
    MODE_KW,
    Pool,
    compile_pool,
    concat,
    fill,
    groups,
    keyed_choice,
    pick,
    uniform_choice,
)
from simulation.grammar.header import render_header

__all__ = [
    "CALLER_ROLES",
    "CALL_COLUMNS",
    "CUES",
    "OPTIONAL_COLUMNS",
    "OUTPUT_COLUMNS",
    "RATES",
    "SUBTYPES",
    "Rates",
    "render_calls",
    "render_narratives",
]

CALL_COLUMNS: tuple[str, ...] = (
    "received_at", "call_type", "category", "subtype", "counterpart", "caller_role", "caller_sex",
    "caller_name", "phone_shown", "id_shown", "location_text", *CUES, "repeat_n", "mediated_before",
    "detail",
)  # fmt: skip
#: Optional input columns: ``channel`` (``110`` / ``12345`` / ``in_person``; default 110), ``refused``
#: (the caller would not give name and ID; default False) and ``duplicate_of`` (the *position* of the
#: record this one re-logs, -1 if none: its body is copied from there).
OPTIONAL_COLUMNS: tuple[str, ...] = ("channel", "refused", "duplicate_of")
OUTPUT_COLUMNS: tuple[str, ...] = (
    "narrative", "subtype", "mentioned_cues", "template_id", "negated_cues", "mentions_repeat",
    "mentions_mediation",
)  # fmt: skip
CALLER_ROLES: tuple[str, ...] = ("party", "family_member", "neighbor", "passerby", "other")

#: The subtypes per dispute category (chosen here when the input has none).
SUBTYPES: dict[str, tuple[str, ...]] = {cat: tuple(subs) for cat, subs in dsp.SUBTYPES.items()}


@dataclass(frozen=True)
class Rates:
    """Every probability of the grammar in one place (documented in docs/narratives.md)."""

    terse_base: float = 0.03  # P(terse) = terse_base + terse_slope * (1 - detail)^2
    terse_slope: float = 0.35
    implicit: float = 0.13  # dispute rendered with no stock keyword at all
    generic: float = 0.3  # dispute main clause from the shared generic pool
    main_keyword: float = 0.35  # explicit dispute: main clause drawn from keyword-bearing templates
    cue_first: float = 0.2  # "被丈夫殴打，...，起因是..." when an act (V/K/I/T) is stated
    combo: tuple[tuple[str, float], ...] = (("VK", 0.5), ("VI", 0.4), ("VA", 0.35), ("TK", 0.4))
    repeat: float = 0.55  # x (0.4 + 0.6 detail), only when repeat_n > 1
    repeat_front: float = 0.3
    mediation: float = 0.5  # x (0.4 + 0.6 detail), only when mediated_before
    request: float = 0.6
    request_terse: float = 0.55  # terse calls: "家里有人吵架" + "请民警到场"
    nd_detail_1: float = 1.0  # x (0.4 + 0.6 detail): a non-dispute call gets a detail clause
    nd_detail_2: float = 0.6  # x (0.4 + 0.6 detail): ... and a second one
    bare: float = 0.2  # a party's dispute with violence written: the body is only the act (被丈夫殴打。)
    time_word: float = 0.5  # "今晚" / "刚才" in front of the main clause
    vague_base: float = 0.25  # P(vague note) = vague_base + vague_slope * (1 - detail): 具体情况不详
    vague_slope: float = 0.35
    desk_note: float = 0.5  # 报警人情绪激动, 报警人在楼下等候
    ambulance_injured: float = 0.3  # injury written: 已通知120 / 120已到场
    ambulance_not_needed: float = 0.15  # violence written, nobody hurt: 不需要120
    ambulance_care: float = 0.1  # a drunk person or a stranger assault: 已通知120
    refusal_note: float = 0.6  # a caller who refused details: 报警人不愿透露姓名
    typo_base: float = 0.03  # P(typo) = typo_base + typo_slope * (1 - detail)
    typo_slope: float = 0.05
    drop_punct: float = 0.03
    halfwidth_comma: float = 0.02
    drop_location: float = 0.03
    #: P(mention | cue true) before the detail factor (0.45 + 0.55 detail); terse x0.4.
    mention: dict[str, float] = field(
        default_factory=lambda: {
            "violence": 0.92, "weapon": 0.9, "injury": 0.85, "threat": 0.8, "alcohol": 0.7,
            "self_harm": 0.9, "separation": 0.6,
        }
    )  # fmt: skip
    #: P(negation | cue false) for disputes before the factor (0.3 + 0.7 detail); terse x0.3.
    negate_dispute: dict[str, float] = field(
        default_factory=lambda: {
            "violence": 0.22, "weapon": 0.04, "injury": 0.15, "threat": 0.02, "alcohol": 0.05,
            "self_harm": 0.01, "separation": 0.0,
        }
    )  # fmt: skip
    #: The same for non-dispute types, only where a call taker would say it.
    negate_nd: dict[str, dict[str, float]] = field(
        default_factory=lambda: {
            "traffic": {"injury": 0.45}, "fire": {"injury": 0.2},
            "fare_dispute": {"violence": 0.2, "injury": 0.05}, "noise": {"violence": 0.05},
            "drunk_person": {"violence": 0.05, "injury": 0.05}, "theft": {"injury": 0.02},
        }
    )  # fmt: skip


RATES = Rates()

_ROLE = {r: i for i, r in enumerate(CALLER_ROLES)}
_PARTY, _FAMILY, _NEIGHBOR, _PASSERBY, _OTHER = range(5)
_PARTNERS = (
    "husband",
    "wife",
    "ex_husband",
    "ex_wife",
    "boyfriend",
    "girlfriend",
    "ex_boyfriend",
    "ex_girlfriend",
)
#: An institution does not hit anyone or smell of drink: its people do.
_INSTITUTION_PEOPLE: dict[str, tuple[str, ...]] = {
    "hospital": ("对方", "医生", "大夫", "医院的人", "医院保安"),
    "school": ("对方", "老师", "学校保安", "校长", "班主任"),
    "property_company": ("对方", "物业的人", "物业保安", "物业经理"),
    "developer": ("对方", "对方工作人员", "开发商的人", "售楼处的人", "拆迁公司的人"),
}
_TERMINATORS = np.array(["。", "", "、", "！"], dtype=object)
_TERMINATOR_P = [0.76, 0.16, 0.05, 0.03]
#: Natural orders of the cue clauses (slot names: cue letters and combos).
_ORDERS: tuple[tuple[str, ...], ...] = (
    ("P", "A", "VA", "V", "VK", "K", "VI", "I", "T", "TK", "S"),
    ("A", "VA", "V", "VK", "VI", "K", "I", "T", "TK", "S", "P"),
    ("V", "VA", "VK", "VI", "I", "K", "A", "T", "TK", "P", "S"),
    ("T", "TK", "S", "A", "VA", "V", "VK", "K", "VI", "I", "P"),
)
_STREAMS = (
    "header", "category", "subtype", "counterpart", "voice", "modes", "mention", "fillers", "main",
    "cues", "negation", "extras", "wrap", "noise", "order", "extras_nd", "channel",
)  # fmt: skip
_ND_CODE: dict[str, int] = {t: i for i, t in enumerate(nds.NON_DISPUTE_TYPES)}
_SUB_KEYS: dict[tuple[str, str], int] = {
    (c, s): i for i, (c, s) in enumerate((c, s) for c, subs in dsp.SUBTYPES.items() for s in subs)
}
_SUBTYPE_SPECS: dict[tuple[str, str], dsp.Subtype] = {
    (c, s): spec for c, subs in dsp.SUBTYPES.items() for s, spec in subs.items()
}
_MONEY_SCALE: dict[int, int] = {
    _SUB_KEYS[k]: {"any": 0, "small": 1, "large": 2}[spec.money] for k, spec in _SUBTYPE_SPECS.items()
}


# --------------------------------------------------------------------------
# Pools, compiled once
# --------------------------------------------------------------------------


def _pool(name: str, templates: Sequence[str], default_tags: str = "", ids: Sequence[str] | None = None) -> Pool:
    return compile_pool(name, templates, lx.KEYWORD_RE, default_tags=default_tags, ids=ids)


def _merged(name: str, parts: Sequence[tuple[str, Sequence[str]]]) -> Pool:
    """One pool from several template lists, keeping each template's origin id."""
    templates: list[str] = []
    ids: list[str] = []
    for origin, items in parts:
        templates += list(items)
        ids += [f"{origin}#{i:02d}" for i in range(len(items))]
    return _pool(name, templates, ids=ids)


@dataclass(frozen=True)
class _Pools:
    subtype: dict[tuple[str, str, str], Pool]  # (category, subtype, side group)
    generic: Pool
    reason: Pool
    terse: dict[str, Pool]  # by category
    witness: dict[tuple[int, str], Pool]  # (caller role, category)
    nd: dict[str, Pool]
    nd_terse: dict[str, Pool]
    nd_details: list[Pool]  # by _ND_CODE
    cue_party: dict[str, Pool]
    separation_other: Pool
    self_harm_party: Pool
    cue_witness: dict[str, Pool]
    combos: dict[str, Pool]
    negations: dict[str, Pool]
    repeat_back: Pool
    repeat_front: Pool
    mediation: Pool
    req_dispute: Pool
    req_nd: Pool
    lead_party: Pool
    lead_witness: Pool
    wrap: Pool
    wrap_witness: Pool
    bare: Pool
    notes_vague: Pool
    notes_desk: Pool
    ambulance_injured: Pool
    ambulance_not_needed: Pool
    refusals: Pool

    def main_pools(self) -> list[Pool]:
        """Pools a call's main clause comes from (each needs a cue-free template)."""
        return [
            *self.subtype.values(), self.generic, self.reason, *self.terse.values(), *self.witness.values(),
            *self.nd.values(), *self.nd_terse.values(),
        ]  # fmt: skip


@cache
def _pools() -> _Pools:
    subtype: dict[tuple[str, str, str], Pool] = {}
    for cat, subs in dsp.SUBTYPES.items():
        for sub, spec in subs.items():
            base = f"{cat}.{sub}"
            for side in list(spec.sided) or [""]:
                parts = [(base, spec.events)] + ([(f"{base}.{side}", spec.sided[side])] if side else [])
                subtype[(cat, sub, side)] = _merged(f"{base}.{side}" if side else base, parts)
    terse = {
        cat: _merged(
            f"terse.{cat}",
            [("terse.any", dsp.TERSE["any"])] + ([(f"terse.{cat}", dsp.TERSE[cat])] if cat in dsp.TERSE else []),
        )
        for cat in dsp.CATEGORIES
    }
    witness = {}
    for role, table, label in (
        (_NEIGHBOR, dsp.WITNESS_NEIGHBOR, "neighbor"),
        (_PASSERBY, dsp.WITNESS_PASSERBY, "passerby"),
    ):
        for cat in dsp.CATEGORIES:
            # the generic scenes are urban; a pastoral dispute is heard in a village
            rural = label == "neighbor" and cat == "land"
            parts = [] if rural else [(f"witness.{label}.any", table["any"])]
            if cat in table:
                parts.append((f"witness.{label}.{cat}", table[cat]))
            witness[(role, cat)] = _merged(f"witness.{label}.{cat}", parts)
    return _Pools(
        subtype=subtype,
        generic=_pool("generic", dsp.GENERIC),
        reason=_pool("reason", lx.REASON_TAILS),
        terse=terse,
        witness=witness,
        nd={t: _pool(f"nd.{t}", nds.POOLS[t], default_tags="s") for t in nds.NON_DISPUTE_TYPES},
        nd_terse={t: _pool(f"nd_terse.{t}", v, default_tags="b") for t, v in nds.TERSE_ND.items()},
        nd_details=[_pool(f"nd_detail.{t}", nds.DETAILS[t]) for t in nds.NON_DISPUTE_TYPES],
        cue_party={c: _pool(f"cue.{c}", v) for c, v in lx.CUE_PARTY.items()},
        separation_other=_pool("cue.separation_other", lx.CUE_SEPARATION_OTHER),
        self_harm_party=_pool("cue.self_harm_party", lx.CUE_SELF_HARM_PARTY),
        cue_witness={c: _pool(f"cuew.{c}", v) for c, v in lx.CUE_WITNESS.items()},
        combos={k: _pool(f"combo.{k}", v) for k, v in lx.CUE_COMBOS.items()},
        negations={c: _pool(f"neg.{c}", v) for c, v in lx.NEGATIONS.items() if v},
        repeat_back=_pool("repeat", lx.REPEAT_BACK),
        repeat_front=_pool("repeat_front", lx.REPEAT_FRONT),
        mediation=_pool("mediation", lx.MEDIATION),
        req_dispute=_pool("request", lx.REQUESTS_DISPUTE),
        req_nd=_pool("request_nd", lx.REQUESTS_ND),
        lead_party=_pool("lead", lx.LEADS_PARTY),
        lead_witness=_pool("lead_w", lx.LEADS_WITNESS),
        wrap=_pool("wrap", lx.WRAPS),
        wrap_witness=_pool("wrap_w", lx.WRAPS_WITNESS),
        bare=_pool("bare", lx.BARE_ACTS),
        notes_vague=_pool("note.vague", lx.NOTES_VAGUE),
        notes_desk=_pool("note.desk", lx.NOTES_DESK),
        ambulance_injured=_pool("ambulance", lx.AMBULANCE_INJURED),
        ambulance_not_needed=_pool("ambulance_no", lx.AMBULANCE_NOT_NEEDED),
        refusals=_pool("refusal", lx.REFUSALS),
    )


# --------------------------------------------------------------------------
# Per-call state
# --------------------------------------------------------------------------


class _Ctx:
    """Input arrays, resolved dispute fields, fillers and per-step generators."""

    def __init__(self, calls: pd.DataFrame, rng: np.random.Generator) -> None:
        missing = [c for c in CALL_COLUMNS if c not in calls.columns]
        if missing:
            raise ValueError(f"calls lacks columns: {missing}")
        seeds = rng.integers(0, 2**63 - 1, size=len(_STREAMS))
        self.rng = {name: np.random.default_rng(int(s)) for name, s in zip(_STREAMS, seeds, strict=True)}
        self.calls = calls
        self.n = n = len(calls)
        ctype = calls["call_type"].astype(object).to_numpy()
        unknown = sorted({str(t) for t in set(ctype) - {"dispute", *nds.NON_DISPUTE_TYPES}})
        if unknown:
            raise ValueError(f"unknown call_type values: {unknown}")
        self.ctype = ctype
        self.is_disp = ctype == "dispute"
        detail = pd.to_numeric(calls["detail"], errors="coerce").fillna(0.5).to_numpy(float)
        self.detail = np.clip(detail, 0.0, 1.0)
        self.role = calls["caller_role"].map(_ROLE).fillna(_PARTY).to_numpy(dtype=np.int64)
        self.witness = (self.role == _NEIGHBOR) | (self.role == _PASSERBY)
        self.female = calls["caller_sex"].astype(object).to_numpy() == "F"
        truth = np.zeros(n, dtype=np.int64)
        for i, c in enumerate(CUES):
            truth |= calls[c].astype("boolean").fillna(False).to_numpy(dtype=bool).astype(np.int64) << i
        for t, cue in nds.IMPLIED_CUES.items():  # a drunk-person call is about drink, whatever the flag
            truth[ctype == t] |= BIT[CUE_LETTERS[CUES.index(cue)]]
        self.truth = truth
        repeat = pd.to_numeric(calls["repeat_n"], errors="coerce").fillna(1).clip(lower=1)
        self.repeat_n = repeat.to_numpy(np.int64)
        self.mediated = calls["mediated_before"].astype("boolean").fillna(False).to_numpy(dtype=bool)
        hours = pd.DatetimeIndex(calls["received_at"]).hour.to_numpy()
        self.hour_bucket = np.select([hours < 6, hours < 12, hours < 18], [0, 1, 2], default=3)
        self.category = np.full(n, None, dtype=object)
        self.counterpart = np.full(n, None, dtype=object)
        self.subtype = np.full(n, None, dtype=object)
        self.fillers: dict[str, np.ndarray] = {}
        self.channel = (
            calls["channel"].astype(object).where(calls["channel"].notna(), "110").to_numpy()
            if "channel" in calls
            else np.full(n, "110", dtype=object)
        )
        self.refused = (
            calls["refused"].astype("boolean").fillna(False).to_numpy(dtype=bool)
            if "refused" in calls
            else np.zeros(n, dtype=bool)
        )
        dup = calls["duplicate_of"] if "duplicate_of" in calls else pd.Series(-1, index=calls.index)
        self.duplicate_of = pd.to_numeric(dup, errors="coerce").fillna(-1).to_numpy(np.int64)
        if ((self.duplicate_of >= n) | (self.duplicate_of == np.arange(n))).any():
            raise ValueError("duplicate_of must be -1 or the position of another row")
        self.bare = np.zeros(n, dtype=bool)

    def filler(self, name: str) -> np.ndarray:
        try:
            return self.fillers[name]
        except KeyError:
            raise KeyError(f"template slot {{{name}}} has no filler") from None


def _column(calls: pd.DataFrame, name: str) -> np.ndarray:
    col = calls[name].astype(object)
    return col.where(col.notna(), None).to_numpy().copy()


def _resolve_dispute_fields(ctx: _Ctx) -> None:
    """Category, counterpart and subtype for every dispute row (None elsewhere).

    Missing or unknown values are drawn: category by the BRIEF shares, the
    counterpart from the category's usual roles, the subtype by
    :func:`simulation.grammar.disputes.subtype_weights` (which fits the
    counterpart and only allows ``domestic_violence`` with violence).
    """
    cat, cp, sub = (
        _column(ctx.calls, "category"),
        _column(ctx.calls, "counterpart"),
        _column(ctx.calls, "subtype"),
    )
    disp = ctx.is_disp
    cats = np.array(dsp.CATEGORIES, dtype=object)
    bad = disp & ~np.isin(cat, cats)
    if bad.any():
        shares = np.array([dsp.CATEGORY_SHARES[c] for c in dsp.CATEGORIES])
        cat[bad] = cats[ctx.rng["category"].choice(len(cats), size=int(bad.sum()), p=shares / shares.sum())]
    cp_ok = np.isin(cp, np.array(lx.COUNTERPARTS, dtype=object))
    cp = np.where(cp_ok, cp, None).astype(object)
    for c in dsp.CATEGORIES:
        pos = np.flatnonzero(disp & ~cp_ok & (cat == c))
        if len(pos):
            cp[pos] = uniform_choice(dsp.DEFAULT_COUNTERPART[c], len(pos), ctx.rng["counterpart"])
    valid = np.array([s in dsp.SUBTYPES.get(c, {}) if c else False for c, s in zip(cat, sub, strict=True)])
    choose = disp & ~valid
    if choose.any():
        viol = (ctx.truth & BIT["V"]) > 0
        codes, uniques = pd.factorize(pd.Series(list(zip(cat, cp, viol, strict=True))))
        for code, pos in groups(np.where(choose, codes, -1)):
            if code < 0:
                continue
            c, p, v = uniques[code]
            w = dsp.subtype_weights(c, p or "", bool(v))
            names = np.array(list(w), dtype=object)
            sub[pos] = names[ctx.rng["subtype"].choice(len(names), size=len(pos), p=np.array(list(w.values())))]
    for arr in (cat, cp, sub):
        arr[~disp] = None
    ctx.category, ctx.counterpart, ctx.subtype = cat, cp, sub


def _side_group(cat: str, sub: str, counterpart: str | None) -> str:
    spec = dsp.SUBTYPES[cat][sub]
    return spec.side_of.get(counterpart or "", spec.default_group) if spec.sided else ""


def _sub_key(category: str | None, subtype: str | None) -> int:
    return -1 if category is None or subtype is None else _SUB_KEYS.get((category, subtype), -1)


# --------------------------------------------------------------------------
# Fillers: who is speaking about whom, and the small words
# --------------------------------------------------------------------------


def _build_people(ctx: _Ctx) -> None:
    """``S``/``SP``/``O``/``PS`` (the party) and ``W``/``W2`` (the other side).

    A party caller speaks in one of five voices (称与丈夫... / 其... / 我... /
    报警人... / 她...); a family member names both sides from their own
    position in consistent pairs (我妈 / 我爸); an "other" caller names the
    party as 一女子 / 其朋友; a witness knows neither.
    """
    n, r, rv = ctx.n, ctx.rng["fillers"], ctx.rng["voice"]
    pron = np.where(ctx.female, "她", "他").astype(object)
    voice = rv.choice(5, size=n, p=[0.4, 0.2, 0.2, 0.12, 0.08])
    subj = np.array(["", "其", "我", "报警人", ""], dtype=object)[voice]
    subj_full = np.array(["其", "其", "我", "报警人", ""], dtype=object)[voice]
    obj = np.array(["", "", "我", "报警人", ""], dtype=object)[voice]
    poss = np.array(["其", "其", "我的", "报警人的", ""], dtype=object)[voice]
    prefix_word = np.array(["其", "其", "我", "", ""], dtype=object)[voice]  # never "报警人同居的男友"
    v4 = voice == 4
    subj, subj_full = np.where(v4, pron, subj), np.where(v4, pron, subj_full)
    obj = np.where((voice == 0) | (voice == 1) | v4, pron, obj)
    poss, prefix_word = np.where(v4, pron + "的", poss), np.where(v4, pron, prefix_word)

    cp = ctx.counterpart
    cp_codes = np.array([lx.COUNTERPARTS.index(c) if c in lx.WHO else -1 for c in cp], dtype=np.int64)
    who = keyed_choice(cp_codes, {i: lx.WHO[c] for i, c in enumerate(lx.COUNTERPARTS)}, r, default="对方")
    for (c, s), spec in _SUBTYPE_SPECS.items():
        for role_code, words in spec.who.items():  # e.g. bride price: in-laws are 丈母娘/亲家, not 连襟
            hit = np.flatnonzero((ctx.category == c) & (ctx.subtype == s) & (cp == role_code))
            if len(hit):
                who[hit] = uniform_choice(words, len(hit), r)
    family_cp = np.isin(cp, np.array(sorted(lx.FAMILY_COUNTERPARTS), dtype=object))
    male_cp = np.isin(cp, np.array(sorted(lx.MALE_COUNTERPARTS), dtype=object))
    female_cp = np.isin(cp, np.array(sorted(lx.FEMALE_COUNTERPARTS), dtype=object))
    prefixed = family_cp & (ctx.role == _PARTY) & (rv.random(n) < 0.3)
    who = np.where(prefixed, prefix_word + who, who).astype(object)

    fam = ctx.role == _FAMILY
    fam_pair = fam & family_cp & ctx.is_disp
    for code, pos in groups(np.where(fam_pair, cp_codes, -1)):
        if code < 0:
            continue
        pairs = lx.FAMILY_CALLER_PAIRS[lx.COUNTERPARTS[code]]
        k = rv.integers(0, len(pairs), size=len(pos))
        subj[pos] = np.array([p[0] for p in pairs], dtype=object)[k]
        who[pos] = np.array([p[1] for p in pairs], dtype=object)[k]
    fam_other = fam & ~fam_pair
    subj[fam_other] = uniform_choice(lx.FAMILY_CALLER_PARTY, int(fam_other.sum()), rv)
    other = ctx.role == _OTHER
    if other.any():
        gkey = np.where(male_cp, 0, np.where(female_cp, 1, 2))[other]
        pools = {
            0: lx.OTHER_CALLER_PARTY["female"],
            1: lx.OTHER_CALLER_PARTY["male"],
            2: lx.OTHER_CALLER_PARTY["any"],
        }
        subj[other] = keyed_choice(gkey, pools, rv)
        who = np.where(other & family_cp & (rv.random(n) < 0.6), "其" + who, who).astype(object)
    third = fam | other
    subj_full = np.where(third, subj, subj_full)
    obj = np.where(third, subj, obj)
    poss = np.where(third, subj + "的", poss)

    wit = ctx.witness
    subj, subj_full = np.where(wit, "", subj), np.where(wit, "当事人", subj_full)
    obj, poss = np.where(wit, "当事人", obj), np.where(wit, "当事人的", poss)
    who = np.where(wit, "对方", who).astype(object)
    nd_wit = np.flatnonzero(wit & ~ctx.is_disp)  # a witness reports someone else's theft, accident...
    if len(nd_wit):
        person = uniform_choice(lx.ND_WITNESS_SUBJECTS, len(nd_wit), rv)
        subj_full[nd_wit], obj[nd_wit], poss[nd_wit] = person, person, person + "的"
    nd_types = sorted(set(ctx.ctype[~ctx.is_disp]))
    if nd_types:  # non-dispute: the other side is the type's actor (小偷, 对方司机, 醉汉)
        nd_key = np.array([-1 if d else nd_types.index(t) for t, d in zip(ctx.ctype, ctx.is_disp, strict=True)])
        actors = {i: lx.ND_ACTORS.get(t, lx.ND_ACTORS["default"]) for i, t in enumerate(nd_types)}
        who = np.where(ctx.is_disp, who, keyed_choice(nd_key, actors, r)).astype(object)

    # W2: how later clauses refer back to the counterpart (the name again, 对方, 他/她)
    gendered = np.where(male_cp, "他", np.where(female_cp, "她", "对方"))
    gendered = np.where(ctx.role == _PARTY, gendered, "对方").astype(object)
    u = r.random(n)
    who2 = np.where(u < 0.5, who, np.where(u < 0.8, "对方", gendered)).astype(object)
    said_once = np.asarray([w.startswith("一") for w in who], dtype=bool)  # "一男子" is said once
    who2 = np.where(said_once | wit | (who2 == obj), "对方", who2).astype(object)  # never "她威胁她"
    for code, words in _INSTITUTION_PEOPLE.items():
        hit = np.flatnonzero((cp == code) & ctx.is_disp & ~wit)
        if len(hit):
            who2[hit] = uniform_choice(words, len(hit), r)
    ctx.fillers.update(
        S=subj.astype(object), SP=subj_full.astype(object), O=obj.astype(object), PS=poss.astype(object),
        W=who, W2=who2,
    )  # fmt: skip


def _build_words(ctx: _Ctx) -> None:
    """The small fillers: reasons and objects of the subtype, money, places, time words."""
    n, r, f = ctx.n, ctx.rng["fillers"], ctx.fillers
    skey = np.array([_sub_key(c, s) for c, s in zip(ctx.category, ctx.subtype, strict=True)], dtype=np.int64)
    f["R"] = keyed_choice(skey, {_SUB_KEYS[k]: v.reasons for k, v in _SUBTYPE_SPECS.items()}, r, default="琐事")
    f["X"] = keyed_choice(skey, {_SUB_KEYS[k]: v.objects for k, v in _SUBTYPE_SPECS.items()}, r, default="东西")
    scale = np.array([_MONEY_SCALE.get(k, 0) for k in skey], dtype=np.int64)
    f["M"] = keyed_choice(scale, {0: lx.MONEY, 1: lx.MONEY_SMALL, 2: lx.MONEY_LARGE}, r)
    f["T"] = keyed_choice(ctx.hour_bucket, dict(lx.TIME_WORDS), r)
    for slot, words in (
        ("D", lx.DURATIONS), ("N", lx.COUNTS), ("PL", lx.PUBLIC_PLACES), ("NB", lx.NEIGHBOR_PLACES),
        ("AN", lx.ANIMALS), ("LV", lx.LIVESTOCK), ("BODY", lx.BODY_PARTS), ("ITEM", lx.ITEMS),
        ("VEH", lx.VEHICLES), ("SHOP", lx.SHOPS), ("EAT", lx.EATERIES), ("BLD", lx.BUILDINGS),
    ):  # fmt: skip
        f[slot] = uniform_choice(words, n, r)
    # a relative named in a non-dispute call; one in six is the spouse, matched to the caller's sex
    spouse = keyed_choice(ctx.female.astype(np.int64), {1: lx.SPOUSES_ND["F"], 0: lx.SPOUSES_ND["M"]}, r)
    f["REL"] = np.where(r.random(n) < 1 / 6, spouse, uniform_choice(lx.RELATIVES_ND, n, r)).astype(object)
    wkeys = {"family": 0, "neighbor": 1, "land": 2, "labor": 3}
    wk = np.array([wkeys.get(c or "", 4) for c in ctx.category], dtype=np.int64)
    weapons = {i: lx.WEAPONS[k] for k, i in wkeys.items()} | {4: lx.WEAPONS["other"]}
    f["WPN"] = keyed_choice(wk, weapons, r)
    f["RN"] = np.array([lx.ordinal(i) for i in range(12)], dtype=object)[np.clip(ctx.repeat_n, 0, 11)]


# --------------------------------------------------------------------------
# Rendering steps
# --------------------------------------------------------------------------


def _render_slot(
    ctx: _Ctx,
    pools: Sequence[Pool],
    pool_idx: np.ndarray,
    rows: np.ndarray,
    traits: np.ndarray,
    mode: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draw and fill one slot for ``rows``, row ``i`` using ``pools[pool_idx[i]]``.

    Returns (text, template id, cue bits the template states, closed flag),
    aligned with ``rows``.
    """
    text = np.empty(len(rows), dtype=object)
    tid = np.empty(len(rows), dtype=object)
    bits = np.zeros(len(rows), dtype=np.int64)
    closed = np.zeros(len(rows), dtype=bool)
    for p, pos in groups(pool_idx):
        pool, r = pools[p], rows[pos]
        choice = pick(pool, traits[r], mode[r], rng)
        text[pos] = fill(pool, choice, r, ctx.filler)
        tid[pos] = pool.id_array[choice]
        bits[pos] = pool.need[choice] & CUE_MASK
        closed[pos] = pool.closed[choice]
    return text, tid, bits, closed


class _Slot:
    """A full-length optional slot: text and ids, empty where unused."""

    def __init__(self, n: int) -> None:
        self.text = np.full(n, "", dtype=object)
        self.ids = np.full(n, "", dtype=object)

    def set(self, ctx: _Ctx, pools: Sequence[Pool], pool_idx: np.ndarray, rows: np.ndarray, s: _Draft) -> None:
        if len(rows):
            txt, tid, _, _ = _render_slot(ctx, pools, pool_idx, rows, s.traits, s.mode_all, s.rng)
            self.text[rows], self.ids[rows] = txt, tid

    def append(self, rows: np.ndarray, txt: np.ndarray, tid: np.ndarray) -> None:
        self.text[rows] = self.text[rows] + "，" + txt
        self.ids[rows] = self.ids[rows] + "+" + tid


@dataclass
class _Draft:
    """What the steps decide, row by row."""

    terse: np.ndarray
    implicit: np.ndarray
    mode_all: np.ndarray
    mode_main: np.ndarray
    decided: np.ndarray
    traits: np.ndarray
    rng: np.random.Generator


def _plan(ctx: _Ctx) -> _Draft:
    """Terse / keyword-free / confuser modes, and which true cues get written down."""
    n, detail, is_disp, rm = ctx.n, ctx.detail, ctx.is_disp, ctx.rng["modes"]
    terse = rm.random(n) < RATES.terse_base + RATES.terse_slope * (1 - detail) ** 2
    terse &= is_disp | np.isin(ctx.ctype, np.array(list(nds.TERSE_ND), dtype=object))
    implicit = is_disp & (rm.random(n) < RATES.implicit)
    conf_rate = np.array([nds.CONFUSER_RATE.get(t, 0.0) for t in ctx.ctype])
    confuser = ~is_disp & (rm.random(n) < conf_rate)
    mode_all = np.where(implicit | (~is_disp & ~confuser), MODE_FREE, MODE_ANY).astype(np.int64)
    prefer_kw = is_disp & ~implicit & (terse | (rm.random(n) < RATES.main_keyword))
    mode_main = np.where(confuser | prefer_kw, MODE_KW, mode_all).astype(np.int64)

    rmen = ctx.rng["mention"]
    factor = (0.45 + 0.55 * detail) * np.where(terse, 0.4, 1.0)
    implied = {c: np.isin(ctx.ctype, [t for t, v in nds.IMPLIED_CUES.items() if v == c]) for c in CUES}
    decided = np.zeros(n, dtype=np.int64)
    for i, c in enumerate(CUES):
        p = np.where(implied[c], 0.97, RATES.mention[c] * factor)
        decided |= ((((ctx.truth >> i) & 1) == 1) & (rmen.random(n) < p)).astype(np.int64) << i
    traits = decided | np.where(ctx.witness, BIT["w"], BIT["s"])
    return _Draft(terse, implicit, mode_all, mode_main, decided, traits, ctx.rng["extras"])


def _main_clause(ctx: _Ctx, d: _Draft) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The main clause of every call; returns (text, template id, cues stated, closed, cue-first)."""
    P, n, rmain = _pools(), ctx.n, ctx.rng["main"]
    harm = (d.decided & (BIT["V"] | BIT["K"] | BIT["I"] | BIT["T"])) > 0  # "被打了，起因是..." needs an act
    cue_first = ctx.is_disp & ~ctx.witness & ~d.terse & harm & (rmain.random(n) < RATES.cue_first) & ~ctx.bare
    use_generic = rmain.random(n) < RATES.generic
    pools: list[Pool] = []
    index: dict[object, int] = {}

    def pool_of(key: object, pool: Pool) -> int:
        if key not in index:
            index[key] = len(pools)
            pools.append(pool)
        return index[key]

    pidx = np.zeros(n, dtype=np.int64)
    for i in range(n):  # a dict lookup per row to name its pool; no rng here
        if ctx.bare[i]:
            pidx[i] = pool_of("bare", P.bare)
        elif ctx.is_disp[i]:
            cat, sub = ctx.category[i], ctx.subtype[i]
            if ctx.witness[i]:
                pidx[i] = pool_of(("w", ctx.role[i], cat), P.witness[(int(ctx.role[i]), cat)])
            elif cue_first[i]:
                pidx[i] = pool_of("reason", P.reason)
            elif d.terse[i]:
                pidx[i] = pool_of(("t", cat), P.terse[cat])
            elif use_generic[i]:
                pidx[i] = pool_of("generic", P.generic)
            else:
                side = _side_group(cat, sub, ctx.counterpart[i])
                pidx[i] = pool_of((cat, sub, side), P.subtype[(cat, sub, side)])
        else:
            t = ctx.ctype[i]
            pidx[i] = pool_of(("ndt", t), P.nd_terse[t]) if d.terse[i] else pool_of(("nd", t), P.nd[t])
    text, tid, stated, closed = _render_slot(ctx, pools, pidx, np.arange(n), d.traits, d.mode_main, rmain)
    return text, tid, stated, closed, cue_first


def _nd_details(ctx: _Ctx, d: _Draft, closed: np.ndarray) -> _Slot:
    """0-2 detail clauses for a thorough non-dispute call (损失约..., 对方车已开走)."""
    n, rd, detail = ctx.n, ctx.rng["extras_nd"], ctx.detail
    blocked = ctx.is_disp | d.terse | ctx.witness | closed  # a witness cannot tell what was lost
    thorough = 0.4 + 0.6 * detail
    count = (rd.random(n) < RATES.nd_detail_1 * thorough).astype(int) + (rd.random(n) < RATES.nd_detail_2 * thorough)
    count = np.where(blocked, 0, count)
    type_codes = np.array([_ND_CODE.get(t, -1) for t in ctx.ctype], dtype=np.int64)
    slot = _Slot(n)
    for k in (1, 2):
        rows = np.flatnonzero(count >= k)
        if len(rows):
            txt, tid, _, _ = _render_slot(ctx, _pools().nd_details, type_codes[rows], rows, d.traits, d.mode_all, rd)
            keep = txt != np.asarray([x.rsplit("，", 1)[-1] for x in slot.text[rows]], dtype=object)
            slot.append(rows[keep], txt[keep], tid[keep])
    return slot


def _cue_clauses(ctx: _Ctx, d: _Draft, pending: np.ndarray, cue_first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The decided cues the main clause did not state, as clauses in a natural order."""
    P, n, rc = _pools(), ctx.n, ctx.rng["cues"]
    institution = np.isin(ctx.counterpart, np.array(list(_INSTITUTION_PEOPLE), dtype=object))
    # cue-first rows name the counterpart in full: no 对方 before anyone is introduced
    ctx.fillers["W2"] = np.where(cue_first & ~institution, ctx.filler("W"), ctx.filler("W2")).astype(object)
    partner = np.isin(ctx.counterpart, np.array(_PARTNERS, dtype=object)) | ~ctx.is_disp
    pending = pending.copy()
    slots: dict[str, _Slot] = {}
    for combo, p in RATES.combo:  # "拿菜刀砍" states violence and weapon at once
        mask = BIT[combo[0]] | BIT[combo[1]]
        rows = np.flatnonzero(~ctx.witness & ((pending & mask) == mask) & (rc.random(n) < p))
        slots[combo] = _Slot(n)
        slots[combo].set(ctx, [P.combos[combo]], np.zeros(len(rows), np.int64), rows, _with_rng(d, rc))
        pending[rows] &= ~mask
    for i, c in enumerate(CUES):
        rows = np.flatnonzero((pending >> i) & 1 == 1)
        which = ctx.witness[rows].astype(np.int64)
        if c == "separation":  # not the partner: the party's own marriage is breaking up
            which = np.where(~ctx.witness[rows] & ~partner[rows], 2, which)
        if c == "self_harm":  # against an institution it is the party who threatens to end it
            which = np.where(~ctx.witness[rows] & institution[rows], 3, which)
        slots[CUE_LETTERS[i]] = _Slot(n)
        pools = [P.cue_party[c], P.cue_witness[c], P.separation_other, P.self_harm_party]
        slots[CUE_LETTERS[i]].set(ctx, pools, which, rows, _with_rng(d, rc))
    text = np.full(n, "", dtype=object)
    ids = np.full(n, "", dtype=object)
    for o, pos in groups(ctx.rng["order"].integers(0, len(_ORDERS), size=n)):
        acc, acc_id = np.full(len(pos), "", dtype=object), np.full(len(pos), "", dtype=object)
        for name in _ORDERS[o]:
            piece = slots[name].text[pos]
            acc = acc + np.where(piece != "", "，" + piece, "")
            acc_id = acc_id + np.where(piece != "", "+" + slots[name].ids[pos], "")
        text[pos], ids[pos] = acc, acc_id
    return text, ids


def _time_word(ctx: _Ctx, main: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``今晚``/``刚才`` in front of the main clause (not when it already says when)."""
    when = ctx.filler("T")
    said = np.asarray([t in m for t, m in zip(when, main, strict=True)], dtype=bool)
    return np.where(rows & ~said, when + main, main).astype(object)


@dataclass
class _Notes:
    ambulance: np.ndarray
    desk: np.ndarray
    vague: np.ndarray
    refusal: np.ndarray


_DESK_TYPES = np.array(
    ["theft", "fraud", "help", "missing_person", "suspicious", "stranger_assault", "fire", "drunk_person", "noise"],
    dtype=object,
)


def _notes(ctx: _Ctx, d: _Draft, said_120: np.ndarray) -> _Notes:
    """The call taker's own notes: the ambulance, the caller and scene, how little is known, a refusal.

    Each comes back with its leading comma (empty where not written). Bare
    acts (被丈夫殴打。) get none but the ambulance.
    """
    P, n, r = _pools(), ctx.n, ctx.rng["channel"]
    injury_said = (d.decided & BIT["I"]) > 0
    violence_said = (d.decided & BIT["V"]) > 0
    hurt_true = (ctx.truth & BIT["I"]) > 0
    assault = ctx.ctype == "stranger_assault"
    free = ~said_120
    injured = free & injury_said & (ctx.is_disp | assault) & (r.random(n) < RATES.ambulance_injured)
    not_needed = free & ctx.is_disp & violence_said & ~hurt_true & (r.random(n) < RATES.ambulance_not_needed)
    care = free & np.isin(ctx.ctype, np.array(["drunk_person"], dtype=object)) & (r.random(n) < RATES.ambulance_care)
    amb = _Slot(n)
    amb.set(ctx, [P.ambulance_injured], np.zeros(int(injured.sum()), np.int64), np.flatnonzero(injured), d)
    amb.set(ctx, [P.ambulance_not_needed], np.zeros(int(not_needed.sum()), np.int64), np.flatnonzero(not_needed), d)
    amb.text[care] = uniform_choice(("已通知120", "已联系120", "需要120"), int(care.sum()), r)
    plain = ~ctx.bare
    vague = plain & ~d.terse & (ctx.ctype != "consult")
    vague &= r.random(n) < RATES.vague_base + RATES.vague_slope * (1 - ctx.detail)
    desk = plain & (ctx.is_disp | np.isin(ctx.ctype, _DESK_TYPES)) & (r.random(n) < RATES.desk_note)
    desk &= ctx.channel == "110"  # "waiting downstairs", "crying on the phone": a 110 call, not a visit
    refusal = ctx.refused & (r.random(n) < RATES.refusal_note)
    slots = []
    for pool, rows in ((P.notes_desk, desk), (P.notes_vague, vague), (P.refusals, refusal)):
        slot = _Slot(n)
        slot.set(ctx, [pool], np.zeros(int(rows.sum()), np.int64), np.flatnonzero(rows), d)
        slots.append(_comma(slot.text))
    return _Notes(_comma(amb.text), *slots)


def _with_rng(d: _Draft, rng: np.random.Generator) -> _Draft:
    return _Draft(d.terse, d.implicit, d.mode_all, d.mode_main, d.decided, d.traits, rng)


def _negations(ctx: _Ctx, d: _Draft, closed: np.ndarray) -> tuple[_Slot, np.ndarray]:
    """Sometimes deny a cue the event does not have (未动手, 无人受伤); never a true one."""
    P, n, rneg = _pools(), ctx.n, ctx.rng["negation"]
    factor = (0.3 + 0.7 * ctx.detail) * np.where(d.terse, 0.3, 1.0)
    slot, negated = _Slot(n), np.zeros(n, dtype=np.int64)
    for c in ("violence", "weapon", "injury", "alcohol", "threat", "self_harm"):
        bit = 1 << CUES.index(c)
        nd_rate = np.array([RATES.negate_nd.get(t, {}).get(c, 0.0) for t in ctx.ctype])
        p = np.where(ctx.is_disp, RATES.negate_dispute[c], nd_rate) * factor
        eligible = ((ctx.truth & bit) == 0) & ~(closed & ~ctx.is_disp)
        rows = np.flatnonzero(eligible & (rneg.random(n) < p))
        if len(rows):
            pool = [P.negations[c]]
            txt, tid, _, _ = _render_slot(ctx, pool, np.zeros(len(rows), np.int64), rows, d.traits, d.mode_all, rneg)
            slot.append(rows, txt, tid)
            negated[rows] |= bit
    return slot, negated


def _apply_noise(content: np.ndarray, detail: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Typos (homophones), dropped or half-width commas, at modest rates."""
    n, out = len(content), content.copy()
    typo_rows = np.flatnonzero(rng.random(n) < RATES.typo_base + RATES.typo_slope * (1 - detail))
    for k, pos in groups(rng.integers(0, len(lx.TYPOS), size=len(typo_rows))):
        a, b = lx.TYPOS[k]
        rows = typo_rows[pos]
        out[rows] = [s.replace(a, b, 1) for s in out[rows]]
    u = rng.random(n)
    drop = np.flatnonzero(u < RATES.drop_punct)
    half = np.flatnonzero((u >= RATES.drop_punct) & (u < RATES.drop_punct + RATES.halfwidth_comma))
    joiner = rng.random(len(drop)) < 0.5
    out[drop] = [s.replace("，", " " if j else "") for s, j in zip(out[drop], joiner, strict=True)]
    out[half] = [s.replace("，", ",") for s in out[half]]
    return out


@cache
def _cue_names_table() -> np.ndarray:
    masks = range(1 << len(CUES))
    return np.array([",".join(c for i, c in enumerate(CUES) if m >> i & 1) for m in masks], dtype=object)


def _comma(a: np.ndarray) -> np.ndarray:
    return np.where(a != "", "，" + a, "").astype(object)


# --------------------------------------------------------------------------
# Public interface
# --------------------------------------------------------------------------


def render_calls(calls: pd.DataFrame, rng: np.random.Generator, *, with_skeleton: bool = False) -> pd.DataFrame:
    """Render one narrative per call, with what was chosen and said.

    Returns a DataFrame on the index of ``calls`` with the fixed interface
    columns ``narrative``, ``subtype`` (the dispute subtype used; None for
    other call types), ``mentioned_cues`` (comma-joined cue names the
    narrative states, in :data:`CUES` order) and ``template_id`` (the main
    content template), plus ``negated_cues`` (cues explicitly denied; always
    cues the event does not have), ``mentions_repeat`` and
    ``mentions_mediation``. ``with_skeleton=True`` adds ``skeleton``: the ids
    of every fragment used, for diversity statistics.
    """
    ctx = _Ctx(calls, rng)
    n = ctx.n
    if n == 0:
        empty = pd.DataFrame({c: pd.Series(dtype=object) for c in OUTPUT_COLUMNS}, index=calls.index)
        return empty.assign(skeleton=pd.Series(dtype=object)) if with_skeleton else empty
    _resolve_dispute_fields(ctx)
    _build_people(ctx)
    _build_words(ctx)
    P, d = _pools(), _plan(ctx)
    is_disp, wit = ctx.is_disp, ctx.witness
    rch = ctx.rng["channel"]
    violence_said = (d.decided & BIT["V"]) > 0
    ctx.bare = is_disp & (ctx.role == _PARTY) & violence_said & (rch.random(n) < RATES.bare)
    bare = ctx.bare

    main, template_id, stated, closed, cue_first = _main_clause(ctx, d)
    details = _nd_details(ctx, d, closed)
    main = concat(main, details.text)
    clauses, clause_ids = _cue_clauses(ctx, d, d.decided & ~stated, cue_first)
    # cue-first rows: "被丈夫打了，头破了，起因是..." - the clauses lead, the reason follows
    lead_clauses = np.asarray([s[1:] if s.startswith("，") else s for s in clauses], dtype=object)
    main = np.where(cue_first, lead_clauses + "，" + main, main).astype(object)
    clauses = np.where(cue_first, "", clauses).astype(object)
    negs, negated = _negations(ctx, d, closed)
    negs.text = np.where(bare, "", negs.text).astype(object)  # a bare act carries nothing else
    negs.ids = np.where(bare, "", negs.ids).astype(object)
    negated = np.where(bare, 0, negated)
    main = _time_word(ctx, main, ~bare & (rch.random(n) < RATES.time_word))

    rx, xfac = d.rng, 0.4 + 0.6 * ctx.detail
    said_repeat = (ctx.repeat_n > 1) & (rx.random(n) < RATES.repeat * xfac)
    front = said_repeat & (rx.random(n) < RATES.repeat_front) & (ctx.channel == "110")
    rep_front, rep_back, med, req = _Slot(n), _Slot(n), _Slot(n), _Slot(n)
    rep_front.set(ctx, [P.repeat_front], np.zeros(int(front.sum()), np.int64), np.flatnonzero(front), d)
    back = np.flatnonzero(said_repeat & ~front)
    rep_back.set(ctx, [P.repeat_back], np.zeros(len(back), np.int64), back, d)
    said_med = ctx.mediated & (rx.random(n) < RATES.mediation * xfac)
    med.set(ctx, [P.mediation], np.zeros(int(said_med.sum()), np.int64), np.flatnonzero(said_med), d)
    no_request = np.isin(ctx.ctype, np.array(["consult", "alarm_false"], dtype=object))
    req_rows = np.flatnonzero((rx.random(n) < np.where(d.terse, RATES.request_terse, RATES.request)) & ~no_request)
    req.set(ctx, [P.req_dispute, P.req_nd], np.where(is_disp, 0, 1)[req_rows], req_rows, d)
    said_120 = np.asarray(["120" in a or "120" in b for a, b in zip(clauses, main, strict=True)], dtype=bool)
    req.text = np.where(said_120 & (req.text == "不需要120"), "", req.text).astype(object)  # not after "需要120"

    header, verb = render_header(calls, ctx.rng["header"], ctx.channel, ctx.refused)
    lead = _Slot(n)
    lead.set(ctx, [P.lead_party, P.lead_witness], wit.astype(np.int64), np.arange(n), d)
    lead.text = np.where(np.isin(verb, np.array(["报警称：", "报称："], dtype=object)), "", lead.text).astype(object)
    opener = np.full(n, "", dtype=object)
    hotline, station = ctx.channel == "12345", ctx.channel == "in_person"
    opener[hotline] = uniform_choice(lx.TRANSFER_OPENERS, int(hotline.sum()), rch)
    lead.text[hotline] = uniform_choice(lx.TRANSFER_LEADS, int(hotline.sum()), rch)
    lead.text[station] = uniform_choice(lx.IN_PERSON_LEADS, int(station.sum()), rch)
    term = _TERMINATORS[rx.choice(len(_TERMINATORS), size=n, p=_TERMINATOR_P)]
    said_120 |= np.asarray(["120" in r for r in req.text], dtype=bool)
    notes = _notes(ctx, d, said_120)
    tail = concat(
        clauses, negs.text, _comma(rep_back.text), _comma(med.text), notes.ambulance, notes.desk, notes.vague,
        _comma(req.text), notes.refusal,
    )  # fmt: skip

    # keyword control: an explicit dispute that names no dispute gets "，双方发生纠纷"
    has_kw = pd.Series(concat(main, tail)).str.contains(lx.KEYWORD_RE, regex=True).to_numpy(dtype=bool)
    wrap = _Slot(n)
    wrap_rows = np.flatnonzero(is_disp & ~d.implicit & ~has_kw & ~bare)
    kw_mode = _Draft(d.terse, d.implicit, np.full(n, MODE_KW), d.mode_main, d.decided, d.traits, ctx.rng["wrap"])
    wrap.set(ctx, [P.wrap, P.wrap_witness], wit[wrap_rows].astype(np.int64), wrap_rows, kw_mode)
    front_txt = np.where(rep_front.text != "", rep_front.text + "，", "").astype(object)
    content = concat(opener, front_txt, lead.text, main, _comma(wrap.text), tail, term)

    content = _apply_noise(content, ctx.detail, ctx.rng["noise"])
    loc = np.asarray(["" if x is None else str(x) for x in _column(calls, "location_text")], dtype=object)
    drop_loc = (ctx.rng["noise"].random(n) < RATES.drop_location) | (loc == "")
    narrative = np.where(drop_loc, header + content, header + loc + "，" + content).astype(object)

    # A call logged twice: the second record has its own header (time, typing) and the first one's body.
    dup = np.flatnonzero(ctx.duplicate_of >= 0)
    src = ctx.duplicate_of[dup]
    narrative[dup] = header[dup] + np.asarray([t[len(h) :] for t, h in zip(narrative[src], header[src], strict=True)])
    for arr in (ctx.subtype, d.decided, template_id, negated, said_repeat, said_med):
        arr[dup] = arr[src]

    names = _cue_names_table()
    out = pd.DataFrame(
        {
            "narrative": narrative,
            "subtype": ctx.subtype,
            "mentioned_cues": names[d.decided],
            "template_id": template_id,
            "negated_cues": names[negated],
            "mentions_repeat": said_repeat,
            "mentions_mediation": said_med,
        },
        index=calls.index,
    )
    if with_skeleton:
        parts = [rep_front.ids, lead.ids, template_id + details.ids, wrap.ids, clause_ids, negs.ids]
        parts += [rep_back.ids, med.ids, req.ids, term]
        skeleton = parts[0]
        for p in parts[1:]:
            skeleton = skeleton + "|" + p
        out["skeleton"] = skeleton
    return out


def render_narratives(calls: pd.DataFrame, rng: np.random.Generator) -> pd.Series:
    """One narrative string per row of ``calls``, same index."""
    return render_calls(calls, rng)["narrative"]


if __name__ == "__main__":
    from simulation.grammar import demo

    cmd = sys.argv[1] if len(sys.argv) > 1 else "samples"
    if cmd == "samples":
        print(demo.samples())
    elif cmd == "stats":
        demo.print_stats()
    elif cmd == "speed":
        demo.print_speed(int(sys.argv[2]) if len(sys.argv) > 2 else 700_000)
    else:
        raise SystemExit("usage: python -m simulation.narratives [samples|stats|speed [N]]")
