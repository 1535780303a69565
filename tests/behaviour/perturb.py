"""INV and DIR perturbations of the base cases (CheckList's invariance and directional tests).

* INV (:func:`inv_cases`): the caller's name, phone, masked ID layout, header
  layout or its absence, the location, punctuation, full-width vs half-width
  characters and stray spaces say nothing about the call: the verdict
  ``(is_dispute, category)`` must be the same as on the base text.
* DIR (:func:`dir_pairs`): a de-escalating clause (``未动手``, ``已和解``,
  ``双方已协商解决``) must not add an escalation cue (violence, weapon, threat)
  nor raise the number of cue groups; an escalating one (``持刀``,
  ``扬言要杀``) must add the weapon or threat cue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .cases import (
    CASES,
    COUNTIES,
    HEADER_STYLES,
    Case,
    compose,
    fake_caller,
    fake_id,
    fake_phone,
    header,
    place_for,
)


@dataclass(frozen=True)
class Variant:
    base_id: str
    kind: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.base_id}~{self.kind}"


def _head(case: Case, **kw: str) -> str:
    return header(case.id, case.style, **kw)


def _caller(case: Case) -> str | None:
    if case.style == "none":
        return None
    other = fake_caller(case.id + "~inv")
    if other == fake_caller(case.id):
        other = "匿名"
    return compose(_head(case, caller=other), case.place, case.body)


def _phone(case: Case) -> str | None:
    if case.style == "none":
        return None
    alt = fake_phone(case.id + "~inv", "full" if len(case.id) % 2 else "mask7")
    return compose(_head(case, phone=alt), case.place, case.body)


def _id_format(case: Case) -> str | None:
    if case.style in ("none", "no_id", "refused"):
        return None
    layout = ("full", "mask6", "mask2")[len(case.id) % 3]  # full 18-digit made-up IDs appear only here
    return compose(_head(case, id_number=fake_id(case.id, layout)), case.place, case.body)


def _header_variant(case: Case) -> str | None:
    styles = [s for s in dict.fromkeys(HEADER_STYLES) if s not in ("none", case.style)]
    style = styles[len(case.id) % len(styles)]
    verb = "来电称：" if len(case.id) % 2 else None
    return compose(header(case.id, style, verb=verb), case.place, case.body)


def _no_header(case: Case) -> str | None:
    style = "full" if case.style == "none" else "none"
    return compose(header(case.id, style), case.place, case.body)


def _place(case: Case) -> str | None:
    head = _head(case)
    if case.body.startswith(COUNTIES):
        county = next(c for c in COUNTIES if case.body.startswith(c))
        swap = COUNTIES[(COUNTIES.index(county) + 3) % len(COUNTIES)]
        first, sep, rest = case.body.partition("，")
        first = swap + first[len(county) :]
        first = "".join(str((int(ch) + 3) % 10) if ch.isdigit() else ch for ch in first)
        return head + first + sep + rest
    if case.body.startswith(("某路口", "12345", "报警人到所", "重复报警")):
        return None
    return compose(head, place_for(case.id, case.frame, salt="inv"), case.body)


def _punctuation(case: Case) -> str | None:
    """ASCII punctuation for the Chinese one, the closing full stop dropped, brackets without padding."""
    text = case.text.replace("( ", "(").replace(" )", ")")
    text = text[:-1] if text.endswith("。") else text
    for zh, ascii_ in (("，", ","), ("。", "."), ("：", ":"), ("；", ";"), ("、", ",")):
        text = text.replace(zh, ascii_)
    return text


def _to_full_width(text: str) -> str:
    return "".join(chr(ord(ch) + 0xFEE0) if ch.isascii() and ch.isalnum() else ch for ch in text)


def _width(case: Case) -> str | None:
    text = _to_full_width(case.text)
    return text if text != case.text else None


def _spaces(case: Case) -> str | None:
    return " " + case.text.replace("，", "， ", 2) + "\u3000"


PERTURBATIONS: dict[str, Callable[[Case], str | None]] = {
    "caller": _caller,
    "phone": _phone,
    "id_format": _id_format,
    "header_variant": _header_variant,
    "no_header": _no_header,
    "place": _place,
    "punctuation": _punctuation,
    "width": _width,
    "spaces": _spaces,
}


def inv_bases(per_frame: int = 2) -> list[Case]:
    """The base cases perturbed: the first ``per_frame`` of every frame, ambiguous ones left out."""
    seen: dict[str, int] = {}
    out = []
    for c in CASES:
        if c.label == "ambiguous" or seen.get(c.frame, 0) >= per_frame:
            continue
        seen[c.frame] = seen.get(c.frame, 0) + 1
        out.append(c)
    return out


def inv_cases(per_frame: int = 2) -> list[Variant]:
    """Every applicable perturbation of every base; each must keep the base's verdict."""
    out = []
    for c in inv_bases(per_frame):
        for kind, fn in PERTURBATIONS.items():
            if c.source == "mediation" and kind not in ("punctuation", "width", "spaces"):
                continue
            text = fn(c)
            if text is not None and text != c.text:
                out.append(Variant(c.id, kind, text))
    return out


# --------------------------------------------------------------------------------------------------
# DIR
# --------------------------------------------------------------------------------------------------

CALM = ("未动手", "双方已和解", "双方已协商解决")
ESCALATE = {"weapon": "对方持刀", "threat": "对方扬言要杀了他"}
ESCALATION_CUES = ("violence", "weapon", "threat")

# Disputes with no violence in them: a calm clause reads naturally after each.
CALM_BASES = (
    "family_quarrel-02",
    "family_quarrel-05",
    "family_ex_partner-03",
    "family_property-02",
    "debt_claim-01",
    "debt_contract-01",
    "neighbor-02",
    "neighbor-06",
    "neighbor-11",
    "land-05",
    "land-07",
    "labor-04",
    "property-01",
    "crash_quarrel-01",
    "other_trivial-02",
    "medical_school-04",
)
# Disputes without a weapon or a threat: an escalating clause can be added to each.
ESCALATE_BASES = (
    "family_quarrel-02",
    "family_ex_partner-03",
    "debt_claim-01",
    "debt_contract-01",
    "neighbor-02",
    "neighbor-13",
    "land-05",
    "land-11",
    "labor-04",
    "property-02",
    "other_trivial-02",
    "medical_school-06",
)


@dataclass(frozen=True)
class DirPair:
    base_id: str
    kind: str  # "calm" or the cue group the clause must add ("weapon", "threat")
    clause: str
    base: str
    variant: str

    @property
    def id(self) -> str:
        return f"{self.base_id}+{self.clause}"


def with_clause(text: str, clause: str) -> str:
    """``text`` with ``，clause`` before its final full stop."""
    stem = text[:-1] if text.endswith("。") else text
    return f"{stem}，{clause}。"


def dir_pairs() -> list[DirPair]:
    by_id = {c.id: c for c in CASES}
    out = []
    for cid in CALM_BASES:
        c = by_id[cid]
        out.extend(DirPair(cid, "calm", clause, c.text, with_clause(c.text, clause)) for clause in CALM)
    for cid in ESCALATE_BASES:
        c = by_id[cid]
        out.extend(DirPair(cid, kind, clause, c.text, with_clause(c.text, clause)) for kind, clause in ESCALATE.items())
    return out
