"""The structure of a 110 narrative: is there a conflict, between whom, and is it a call of another kind.

Keywords alone flag one real non-dispute call in five: a KTV noise complaint
names noise, a stranger's sexual assault names violence, a missing child names a
son. A dispute (docs/dispute-definition.md) needs a **conflict frame** — a
disagreement, an act of one party against another, or a claim on another party —
and a **known other side**; calls of another kind (stranger crime, help requests,
business nuisance, crashes, fires, lost property, tips, consultations) are not
disputes unless the relationship is explicit. This module reads those pieces
from the ``role`` and ``frame`` rows of the keyword library
(``features/resources/lexicon.csv``); :mod:`models.rules` decides with them.

What is read, on the normalised content (the 110 header skipped):

* **Frames**: every occurrence of every ``frame`` term (all occurrences, not
  longest-match: a frame hides nothing). A conflict term right after a
  negation (``未发生争执``, ``没有动手``, ``无矛盾``) is *negated* and does not count.
* **Roles** (relation words: 丈夫, 邻居, 房东 ...), each with the place it
  stands in, because the word alone does not say who is in conflict with whom:

  - ``counterpart``: the other side of the conflict — after 被/遭 (``被丈夫殴打``),
    after 与/和/跟/同/对/向/找 (``与邻居发生纠纷``), after 系 (``双方系夫妻关系``),
    a collective pair (``夫妻``, ``婆媳``, ``两家``), or the subject of a conflict act
    in the same clause (``丈夫酒后拿菜刀威胁``);
  - ``victim``: followed by 被/遭 (``其女儿被人猥亵``, ``其丈夫在路上被撞``) — the
    caller's relative harmed by someone else names no family conflict;
  - ``mention``: anything else (``申请人的儿子驾车与…相撞``).

Roles are matched longest-first (``前男友`` before ``男友``); a role inside a frame
term is still read (``被丈夫殴打`` has the role 丈夫 and the act 殴打). Beyond the
library's phrases, a few patterns read what is too short to be a term:

* one-character blows and quarrels with what follows them (``往他后背上打``, ``在那吵呢``);
* 他/她 before an act stands for the person last named in the sentence
  (``问钱去哪了他就动手``), 对方 acting for the person named before it; a 他/她 nobody
  introduced, acting at home, is family (``他又喝多了回家，刚才掐她脖子``);
* another household's kin is not the caller's family (``对方儿子``, ``老王媳妇``), a relative
  the caller acts for (``为女儿``, ``陪同妻子``) is an ally, and so is one who *demands*
  something from a third party (``爷爷奶奶到园内要求赔偿``).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, replace

import ahocorasick

from features.lexicon import CONFLICT_FRAMES, EXCLUSION_FRAMES, Lexicon, default_lexicon

SENTENCE_BREAKS = "。；！？;!?"
"""Characters that end a sentence: an actor and its act must share one (a comma does not end the
subject's reach: ``儿子不听话，跟她动手了``)."""
ACTOR_WINDOW = 16
"""Most characters between a role word and the conflict act it is the subject of."""

_STRIKE = re.compile(
    r"(?<![没未不别])(?:打|揍|踹|挠|掐|扇|踢|捶|砸|抽|拧|烫|拽|捅|砍)"
    r"(?=了|我|她|他|其|人|的|伤|得|成|在|一顿|两下|几下|头|脸|孩子|老人|媳妇|老婆|老公|[，。！？,.!?]|$)"
)
"""A one-character blow with what follows it (``往他后背上打``, ``拿衣架打的``, ``打了``): too short for a library
term, and ``打`` alone is 打电话, 打工, 打车 — so the next character must say it is a blow."""
_QUARREL = re.compile(
    r"(?<![很太好真挺特别])吵(?=呢|着|了|起|翻|成|个|[，。！？,.!?]|$)|骂(?=了|人|我|她|他|其|着|起|街)"
)
"""``在那吵呢``, ``她不给就骂``: one-character quarrelling, with what follows it."""
_PRONOUN_ACTOR = re.compile(r"(?:他|她)(?:就|还|又|也|便|再|竟|直接|上来就)?$")
"""An act right after 他/她 is the act of the person last named (``问钱去哪了他就动手``)."""
SELF_WORDS = re.compile(r"被?申请人|报警人|当事人|求助人|来电人")
"""Words for the caller's or a party's own side: the nearest person before an act, so they stop a relation
word further back from being taken as the actor (``申请人带孙女…孙女摔下…申请人要求赔偿``)."""
DEMANDS = ("要求", "讨", "索", "追讨", "维权", "要说法", "要个说法", "去要", "上门要", "要钱")
"""Claims a person *makes* (not refusals they commit): a relative who demands compensation from a school stands
with the caller, not against them."""
PRONOUN_REACH = 40
"""How far back (characters, same sentence) a 他/她 before an act looks for the person it stands for."""
_HOME = re.compile(r"回家|在家|家里|家中|屋里|卧室|客厅|回来")
"""Words that put an unnamed 他/她 at home: the caller's family."""
_NOT_A_BLOW = re.compile(r"打(?:了?(?:电话|\d|车|工|针|官司|款|钱|给|卡|牌|麻将|游戏|听|扫|算|开|包|印|折|球)|过去)")
_NEGATED = re.compile(r"(?:未|没|没有|无|并未|未曾|并无|否认|不是|不存在|没发生|未发生|无人)(?:发生|有|再|过|和|与)?$")
_AGENT_BEFORE = re.compile(r"(?:被|遭|遭到|遭受|受到)(?:其|她|他|我|自己)?(?:的)?$")
_PARTY_BEFORE = re.compile(r"(?:与|和|跟|同|对|向|找)(?:其|她|他|我|自己|本人|报警人|被申请人|申请人)?(?:的)?$")
_RECIPIENT_BEFORE = re.compile(r"(?:给|帮|陪同|陪|带着|带|搭载|为|代|替)(?:其|她|他|我|自己)?(?:的)?$")
_OTHERS_KIN_BEFORE = re.compile(
    r"(?:对方|人家|别人家?|他家|对方家|被申请人|老[\u4e00-\u9fff]家?|[\u4e00-\u9fff]某家?)的?$"
)
"""A family word after another household's name (``对方儿子``, ``老王媳妇``) is that household's member."""
_NEIGHBOURS_KIN_BEFORE = re.compile(r"(?:邻居|邻居家|隔壁|隔壁家|对门|楼上|楼下|邻院|前院|后院)的?$")
WEAK_STRANGER = frozenset({"有人", "被人"})
"""Stranger markers too common to cut an actor from its act (``怀疑她外面有人，把她手机摔了``)."""
_PLACE_BEFORE = re.compile(r"(?:在|到|去|往|从|跑到|躲到|住在)$")
_RELATION_BEFORE = re.compile(r"(?:系|是)(?:她|他|其|我)?(?:孩子|儿子|女儿)?的?$")
_VICTIM_AFTER = re.compile(r"^[^，。；！？,.;!?]{0,8}?(?:被|遭|让人|叫人)")
VIOLENT_VERBS = frozenset("打揍踢砍捅掐推砸咬抓扇烫烧踹拽")
"""The :data:`AGENT_VERBS` that are violence."""
GENERIC_SIDES = frozenset(["双方", "两人", "二人", "俩人", "对方", "与人", "和人", "跟人", "他人"])
"""Words that say there is another side without saying who: enough for a disagreement
(``与他人发生纠纷``), not for an act (``被人推倒，对方跑了`` is a stranger's act)."""
AGENT_VERBS = frozenset("打揍踢砍捅掐推骂砸咬抓扇烫烧踹撵赶逼拽扯")
"""One-character verbs of an act against the caller by a named other side (``被老公打了``)."""
COLLECTIVE_ROLES = frozenset(
    [
        "夫妻",
        "两口子",
        "小两口",
        "婆媳",
        "父子",
        "母子",
        "母女",
        "父女",
        "兄弟",
        "姐妹",
        "兄妹",
        "姐弟",
        "妯娌",
        "夫妻俩",
        "老两口",
        "两家",
        "邻里",
        "双方",
        "两人",
        "二人",
        "俩人",
        "对方",
        "与人",
        "和人",
        "跟人",
        "他人",
    ]
)
"""Role words that name both sides at once (``夫妻``, ``双方``) or the other side itself (``对方``,
``与人``): wherever they stand, they are a side of the conflict."""


@dataclass(frozen=True, slots=True)
class FrameHit:
    """One frame term found; offsets index the normalised text."""

    term: str
    group: str
    start: int
    end: int
    negated: bool = False


@dataclass(frozen=True, slots=True)
class RoleHit:
    """One relation word found, with the place it stands in (``counterpart``, ``victim``, ``mention``)."""

    term: str
    category: str
    weight: float
    start: int
    end: int
    position: str
    family_word: bool = False
    """The word is a family relation, even where it names another household's member (``对方媳妇``)."""


@dataclass(frozen=True, slots=True)
class Structure:
    """What :meth:`StructureReader.read` found in one narrative."""

    frames: tuple[FrameHit, ...]
    roles: tuple[RoleHit, ...]
    violent_agent: bool = False
    """A blow in one-character words (``被老公打了``, ``拿擀面杖往他后背上打``): a violence cue."""

    @property
    def conflict_terms(self) -> list[str]:
        return [f.term for f in self.frames if f.group in CONFLICT_FRAMES and not f.negated]

    @property
    def bilateral(self) -> bool:
        return any(f.group == "bilateral" and not f.negated for f in self.frames)

    @property
    def conflict(self) -> bool:
        return any(f.group in CONFLICT_FRAMES and not f.negated for f in self.frames)

    @property
    def claim(self) -> bool:
        return any(f.group == "claim" and not f.negated for f in self.frames)

    @property
    def stranger(self) -> bool:
        return any(f.group == "stranger" for f in self.frames)

    @property
    def named_stranger(self) -> bool:
        """A stranger or an online contact is named (``陌生男子``, ``网上认识的``), not just ``有人``."""
        return any(f.group == "stranger" and f.term not in WEAK_STRANGER for f in self.frames)

    @property
    def exclusions(self) -> list[str]:
        """Exclusion groups found, in :data:`EXCLUSION_FRAMES` order."""
        found = {f.group for f in self.frames}
        return [g for g in EXCLUSION_FRAMES if g in found]

    @property
    def counterparts(self) -> list[RoleHit]:
        return [r for r in self.roles if r.position == "counterpart"]

    @property
    def named_counterparts(self) -> list[RoleHit]:
        """Counterparts that say who the other side is (not :data:`GENERIC_SIDES`)."""
        return [r for r in self.roles if r.position == "counterpart" and r.term not in GENERIC_SIDES]

    @property
    def mentions(self) -> list[RoleHit]:
        return [r for r in self.roles if r.position == "mention"]


_EMPTY = Structure((), ())


def _by_start(hit: tuple[int, str]) -> tuple[int, int]:
    return hit[0], -len(hit[1])


def _alternation(terms: list[str]) -> re.Pattern[str]:
    """One pattern matching any of ``terms``, longest first at each position."""
    ordered = sorted(set(terms), key=lambda t: (-len(t), t))
    return re.compile("|".join(re.escape(t) for t in ordered))


class StructureReader:
    """The ``role`` and ``frame`` rows of one lexicon, compiled; read-only, safe to share between threads."""

    def __init__(self, lexicon: Lexicon) -> None:
        self.version = lexicon.version
        self._frame_groups: dict[str, list[str]] = {}
        self._roles: dict[str, tuple[str, float]] = {}
        for e in lexicon.entries:
            if e.kind == "frame":
                self._frame_groups.setdefault(e.term, []).append(e.group)
            elif e.kind == "role":
                self._roles[e.term] = (e.group, e.weight)
        # an automaton finds every occurrence of every frame term (overlaps included) in one pass
        self._frames_auto = ahocorasick.Automaton()
        for term in self._frame_groups:
            self._frames_auto.add_word(term, term)
        if self._frame_groups:
            self._frames_auto.make_automaton()
        self._role_re = _alternation(list(self._roles))

    def read(self, text: str, start: int = 0) -> Structure:
        """The structure of normalised ``text[start:]`` (offsets index ``text``)."""
        content = text[start:]
        if not content:
            return _EMPTY
        frames: list[FrameHit] = []
        hits = (
            sorted(((end + 1 - len(term), term) for end, term in self._frames_auto.iter(content)), key=_by_start)
            if self._frame_groups
            else []
        )
        for s, term in hits:
            groups = self._frame_groups[term]
            # 没有动手: negated; 把自己反锁在屋里: done to oneself, no other side
            negated = any(g in CONFLICT_FRAMES for g in groups) and bool(
                _NEGATED.search(content[max(0, s - 5) : s]) or "自己" in content[max(0, s - 4) : s]
            )
            for g in groups:
                frames.append(FrameHit(term, g, start + s, start + s + len(term), negated and g in CONFLICT_FRAMES))
        # a relation word used as a place (在楼下, 到隔壁) is no person: it neither acts nor hides the actor
        found = [
            m
            for m in self._role_re.finditer(content)
            if not _PLACE_BEFORE.search(content[max(0, m.start() - 3) : m.start()])
        ]
        selves = [m.start() for m in SELF_WORDS.finditer(content)]
        strikes = [m.start() for m in _STRIKE.finditer(content) if not _NOT_A_BLOW.match(content, m.start())]
        for s in strikes:
            frames.append(FrameHit(content[s], "act", start + s, start + s + 1))
        for q in _QUARREL.finditer(content):
            group = "bilateral" if content[q.start()] == "吵" else "act"
            frames.append(FrameHit(q.group(0), group, start + q.start(), start + q.end()))
        for m in found:  # 打奶奶, 骂老人: a one-character verb right before a relation word is an act on them
            s = m.start()
            if s and content[s - 1] in VIOLENT_VERBS | {"骂"} and content[max(0, s - 2) : s - 1] != "被":
                frames.append(FrameHit(content[s - 1 : m.end()], "act", start + s - 1, start + m.end()))
        acts = [(f.start - start, f.end - start) for f in frames if f.group in CONFLICT_FRAMES and not f.negated]
        refusals = [
            (f.start - start, f.end - start)
            for f in frames
            if f.group in CONFLICT_FRAMES and not f.negated and not f.term.startswith(DEMANDS)
        ]
        strangers = [f.start - start for f in frames if f.group == "stranger" and f.term not in WEAK_STRANGER]
        nexts = [m.start() for m in found[1:]] + [len(content)] * bool(found)
        nexts = [min([n, *(x for x in selves if m.end() <= x < n)]) for m, n in zip(found, nexts, strict=True)]
        roles = [
            self._role(content, m, refusals if self._roles[m.group(0)][0] == "family" else acts, strangers, start, nxt)
            for m, nxt in zip(found, nexts, strict=True)
        ]
        roles = self._resolve_pronouns(content, roles, acts, start)
        roles = self._resolve_other_side(roles)
        if not roles and not any(f.group == "stranger" for f in frames):
            roles = self._unnamed_actor(content, acts, start)
        violent = bool(strikes)
        for r in roles:  # 被老公打了, 被儿子推倒: the verb is one character, too short for a library term
            s, e = r.start - start, r.end - start
            if (
                r.position == "counterpart"
                and content[e : e + 1] in AGENT_VERBS
                and _AGENT_BEFORE.search(content[max(0, s - 8) : s])
            ):
                frames.append(FrameHit(content[max(0, s - 1) : e + 1], "act", r.start - 1, r.end + 1))
                violent = violent or content[e] in VIOLENT_VERBS
        return Structure(tuple(frames), tuple(roles), violent)

    @staticmethod
    def _resolve_pronouns(
        content: str, roles: list[RoleHit], acts: list[tuple[int, int]], offset: int
    ) -> list[RoleHit]:
        """The person a 他/她 before an act stands for becomes the act's actor (the other side)."""
        out = list(roles)
        for a_start, _a_end in acts:
            if not _PRONOUN_ACTOR.search(content[max(0, a_start - 6) : a_start]):
                continue
            for i in range(len(out) - 1, -1, -1):
                r = out[i]
                e = r.end - offset
                if e > a_start:
                    continue
                if a_start - e > PRONOUN_REACH or any(ch in SENTENCE_BREAKS for ch in content[e:a_start]):
                    break
                if r.position == "mention":
                    out[i] = replace(r, position="counterpart")
                if r.position != "victim":
                    break
        return out

    @staticmethod
    def _resolve_other_side(roles: list[RoleHit]) -> list[RoleHit]:
        """``对方`` acting stands for the person named before it (``朋友借了他钱…找到家里对方还骂人``)."""
        out = list(roles)
        for i, r in enumerate(out):
            if r.term != "对方" or r.position != "counterpart":
                continue
            for j in range(i - 1, -1, -1):
                if out[j].position == "mention" and out[j].term not in GENERIC_SIDES:
                    out[j] = replace(out[j], position="counterpart")
                    break
        return out

    @staticmethod
    def _unnamed_actor(content: str, acts: list[tuple[int, int]], offset: int) -> list[RoleHit]:
        """``他又喝多了回家，刚才掐她脖子``: a 他/她 nobody introduced, acting, is someone the caller knows.

        Only when no relation word and no stranger is in the call; at home it is taken for family.
        """
        for a_start, _a_end in acts:
            m = _PRONOUN_ACTOR.search(content[max(0, a_start - 6) : a_start])
            if m:
                home = bool(_HOME.search(content))
                at = max(0, a_start - 6) + m.start()
                return [
                    RoleHit(
                        content[at],
                        "family" if home else "other",
                        0.6 if home else 0.3,
                        offset + at,
                        offset + at + 1,
                        "counterpart",
                        home,
                    )
                ]
        return []

    @staticmethod
    def _whose(term: str, category: str, before: str) -> str:
        """The category a relation word stands for here: another household's kin is not family."""
        if category != "family" or term in COLLECTIVE_ROLES:  # 楼上两口子: the couple is both sides
            return category
        if _NEIGHBOURS_KIN_BEFORE.search(before):
            return "neighbor"
        if _OTHERS_KIN_BEFORE.search(before):
            return "other"
        return category

    def _role(
        self,
        content: str,
        m: re.Match[str],
        acts: list[tuple[int, int]],
        strangers: list[int],
        offset: int,
        next_role: int,
    ) -> RoleHit:
        term = m.group(0)
        category, weight = self._roles[term]
        s, e = m.start(), m.end()
        before = content[max(0, s - 6) : s]
        category = self._whose(term, category, before)
        after = content[e : e + 12]
        if term in COLLECTIVE_ROLES or _AGENT_BEFORE.search(before) or _RELATION_BEFORE.search(before):
            position = "counterpart"
        elif self._victim(after, e, acts) or _RECIPIENT_BEFORE.search(before):
            position = "victim"
        elif _PARTY_BEFORE.search(before) or self._acts_in_clause(
            content, e, min(next_role, e + ACTOR_WINDOW), acts, strangers
        ):
            position = "counterpart"
        else:
            position = "mention"
        return RoleHit(term, category, weight, offset + s, offset + e, position, self._roles[term][0] == "family")

    @staticmethod
    def _victim(after: str, end: int, acts: list[tuple[int, int]]) -> bool:
        """A 被/遭 follows within the clause and no act of this person comes first (``其女儿放学路上被…``)."""
        m = _VICTIM_AFTER.match(after)
        return bool(m) and not any(end <= a < end + m.end() - 1 for a, _e in acts)

    @staticmethod
    def _acts_in_clause(content: str, end: int, limit: int, acts: list[tuple[int, int]], strangers: list[int]) -> bool:
        """A conflict term starts after ``end`` and before ``limit`` (the window, or the next relation word:
        the nearest one is the actor), in the same sentence, with no stranger (``有人``) in between."""
        for a_start, _a_end in acts:
            if (
                end <= a_start <= limit
                and not any(ch in SENTENCE_BREAKS for ch in content[end:a_start])
                and not any(end <= x < a_start for x in strangers)
            ):
                return True
        return False


_CACHE: dict[str, StructureReader] = {}
_LOCK = threading.Lock()


def get_reader(lexicon: Lexicon | None = None) -> StructureReader:
    """The reader for ``lexicon`` (the packaged one by default), built once per version."""
    lex = lexicon if lexicon is not None else default_lexicon()
    reader = _CACHE.get(lex.version)
    if reader is None:
        with _LOCK:
            reader = _CACHE.get(lex.version)
            if reader is None:
                reader = StructureReader(lex)
                _CACHE[lex.version] = reader
    return reader
