"""Keyword matching over 110 narratives: one Aho-Corasick automaton per lexicon.

Semantics (what a :class:`Match` means), in the order they are applied:

1. **Normalise.** :meth:`KeywordMatcher.match` runs :func:`features.text.normalize`
   (NFKC + whitespace collapse) first; ``start``/``end`` index into that
   normalised string (``end`` exclusive). Every term is ``substr``: it matches
   wherever it occurs in the normalised text.
2. **Longest match wins.** Every occurrence of every term is found, then any
   occurrence lying inside a longer one is dropped. So ``未动手`` (negation) hides
   the cue ``动手`` inside it and ``不需要120`` hides ``需要120``. Occurrences that
   only *partly* overlap are both kept (``被打伤`` yields ``被打`` and ``打伤``): a
   leftmost-longest scan would throw one of them away and lose a cue.
3. **One occurrence, every entry.** A kept span reports one :class:`Match` per
   row of its term (``家暴`` -> family category and violence cue).
4. **Negation scope.** A match of group ``negation`` (N, span ``[ns, ne)``)
   cancels a cue match C (``negated=True``) when C's group is in N's *scope* and

   * C overlaps N, or
   * C starts after N (``C.start >= ne``), at most :data:`NEGATION_WINDOW`
     characters after N's end, with no scope break between them: clause
     punctuation ``，。；！？、,.;!?``, whitespace (``normalize`` turns newlines into
     spaces, so a line break is seen as a space) or a contrast word ``但``/``却``.

   N's scope is the set of cue groups of the cue terms contained in N
   (``未受伤`` contains ``受伤`` -> {injury}; ``没有喝酒`` -> {alcohol}, so
   ``没有喝酒就动手打人`` keeps the violence). A negation that contains no cue term
   (``并未``, ``不再``) scopes every cue group. Cues hidden inside N are never
   reported separately; :attr:`MatchSummary.negated_mask` records them as
   negated. Negations never cancel categories, and ``deescalation`` matches
   (``已调解``) cancel nothing: they are reported and counted only.

Examples: ``称被丈夫殴打，未受伤`` -> violence kept, injury negated;
``双方发生口角，未动手`` -> no violence cue; ``未动手，对方持刀`` -> weapon kept (the
comma ends the scope).

Matchers are built once per lexicon version (:func:`get_matcher`) and are
read-only afterwards, so one instance is safe to share between threads.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ahocorasick

from features.lexicon import CATEGORIES, CUE_GROUPS, MATCHER_KINDS, Lexicon, default_lexicon
from features.text import normalize

NEGATION_WINDOW = 6
"""Max characters between a negation's end and the start of a cue it cancels.

Six covers ``没有对其进行殴打`` (gap 4) while keeping a negation from reaching a
cue in the next thought of a run-on sentence (110 call takers often skip commas).
"""
SCOPE_BREAKS = frozenset("，。；！？,.;!?、 \n\r\t但却")
"""Characters that end a negation's scope."""
WEAK_WEIGHT = 0.5
"""Category terms below this weight name a setting rather than a dispute (see ``summary_normalized(mute=)``)."""
WEIGHT_CAP = 0.999
"""Weights are capped before ``-ln(1 - w)`` so a weight of 1.0 stays finite and comparable."""

_CAT_INDEX = {c: i for i, c in enumerate(CATEGORIES)}
_CUE_BIT = {g: 1 << i for i, g in enumerate(CUE_GROUPS)}
_ALL_CUES = (1 << len(CUE_GROUPS)) - 1
_NEG, _DEESC = 1, 2

# Payload stored in the automaton for each term: a tuple, fast to unpack on the hot path.
# _P_BLEN is the term's length in UTF-8 bytes (the automaton runs on bytes, see _to_bytes).
_Payload = tuple[Any, ...]
_Span = tuple[int, int, _Payload]  # (byte start, byte end, payload)
_P_TID, _P_BLEN, _P_CAT, _P_EVID, _P_CUE, _P_NEG, _P_SCOPE, _P_ABSORB, _P_ENTRIES, _P_TERM, _P_SUBJ = range(11)
_OTHER = CATEGORIES.index("other")


def _to_bytes(text: str) -> str:
    """UTF-8 bytes of ``text``, one latin-1 character per byte.

    pyahocorasick looks a node's children up one by one; with ~900 distinct first
    characters every character of the text costs a long search at the root. Over
    bytes the fan-out is at most 256 and the scan runs 4-6x faster. UTF-8 is
    self-synchronising, so a byte match always starts and ends on character
    boundaries and containment between matches is the same as over characters.
    """
    return text.encode("utf-8").decode("latin-1")


def _from_bytes(chunk: str) -> str:
    return chunk.encode("latin-1").decode("utf-8")


@dataclass(frozen=True, slots=True)
class Match:
    """One lexicon entry found in a text; offsets index ``normalize(text)``."""

    term: str
    kind: str
    group: str
    weight: float
    start: int
    end: int
    negated: bool = False


@dataclass(frozen=True, slots=True)
class MatchSummary:
    """What the scorer needs from one text, without building per-match objects.

    ``category_evidence[i]`` is ``sum(-ln(1 - min(w, WEIGHT_CAP)))`` over the
    *distinct* terms of category ``CATEGORIES[i]`` found (a term repeated in a
    text counts once), so ``1 - exp(-evidence) == 1 - prod(1 - w)``.
    ``cue_mask`` has bit ``i`` set when cue group ``CUE_GROUPS[i]`` occurs at
    least once un-negated; ``negated_mask`` when it was cancelled somewhere
    (in scope of a negation, or hidden inside one); a group can be in both.
    """

    category_evidence: tuple[float, ...]
    cue_mask: int
    negated_mask: int
    n_negation: int
    n_deescalation: int
    other_subject: float = 0.0
    """The part of ``other``'s evidence from terms that name a subject (交通事故, 消费纠纷), not a conflict."""


def cue_groups_of(mask: int) -> list[str]:
    """Cue group names for a bit mask, in :data:`CUE_GROUPS` order."""
    return [g for g in CUE_GROUPS if mask & _CUE_BIT[g]]


class KeywordMatcher:
    """All terms of one :class:`Lexicon` in one Aho-Corasick automaton."""

    def __init__(self, lexicon: Lexicon) -> None:
        self.lexicon = lexicon
        self.version = lexicon.version
        by_term: dict[str, list[tuple[str, str, float]]] = {}
        for e in lexicon.entries:
            if e.kind in MATCHER_KINDS:  # role and frame rows are read by features.frames
                by_term.setdefault(e.term, []).append((e.kind, e.group, e.weight))

        # Cue groups contained in each negation term define that negation's scope.
        cue_terms = {t: rows for t, rows in by_term.items() if any(k == "cue" for k, _g, _w in rows)}
        cue_auto = ahocorasick.Automaton()
        for t in cue_terms:
            cue_auto.add_word(t, t)
        if cue_terms:
            cue_auto.make_automaton()

        conflict_words = [
            e.term for e in lexicon.entries if e.kind == "frame" and e.group in ("bilateral", "act", "claim")
        ]
        auto = ahocorasick.Automaton()
        for tid, (term, rows) in enumerate(sorted(by_term.items())):
            cat, evid, cue, neg, scope, absorb = -1, 0.0, 0, 0, 0, 0
            for kind, group, weight in rows:
                if kind == "category":
                    cat = _CAT_INDEX[group]
                    evid = -math.log1p(-min(weight, WEIGHT_CAP))
                elif kind == "cue":
                    cue |= _CUE_BIT[group]
                elif kind == "negation":
                    neg = _NEG if group == "negation" else _DEESC
            if neg == _NEG:
                if cue_terms:
                    for _end, inner in cue_auto.iter(term):
                        for kind, group, _w in cue_terms[inner]:
                            if kind == "cue":
                                absorb |= _CUE_BIT[group]
                scope = absorb or _ALL_CUES
            key = _to_bytes(term)
            # an ``other`` term that contains a conflict word (发生纠纷, 吵架) says there is a dispute, not
            # what it is about; only the rest (交通事故, 消费纠纷, 误工费) name ``other`` as a subject
            subject = cat == _OTHER and not any(c in term for c in conflict_words)
            payload = (tid, len(key), cat, evid, cue, neg, scope, absorb, tuple(rows), term, subject)
            auto.add_word(key, payload)
        auto.make_automaton()
        self._auto = auto
        self.n_terms = len(by_term)

    # -- core -------------------------------------------------------------------------------------

    def _spans(self, data: str) -> list[_Span]:
        """Occurrences in byte text ``data``, dropping any that lies inside a longer one.

        ``iter`` yields by end position; kept spans never nest, so their starts
        rise with their ends and everything a new span contains is a suffix of
        ``kept``. One pass, no sort.
        """
        kept: list[_Span] = []
        for end, p in self._auto.iter(data):
            end += 1
            start = end - p[_P_BLEN]
            if kept:
                top = kept[-1]
                if top[1] == end and top[0] <= start:
                    continue  # same end, a longer occurrence is already kept
                while kept and kept[-1][0] >= start:
                    kept.pop()  # inside this occurrence
            kept.append((start, end, p))
        return kept

    @staticmethod
    def _negate(data: str, spans: list[_Span]) -> tuple[list[int], int]:
        """Per-span mask of negated cue groups, plus the mask of cues hidden inside negations."""
        negated = [0] * len(spans)
        absorbed = 0
        for ns, ne, np_ in spans:
            if np_[_P_NEG] != _NEG:
                continue
            absorbed |= np_[_P_ABSORB]
            scope = np_[_P_SCOPE]
            for i, (cs, ce, cp) in enumerate(spans):
                bits = cp[_P_CUE] & scope
                if not bits:
                    continue
                if cs < ne and ce > ns:
                    negated[i] |= bits
                elif cs >= ne:
                    gap = _from_bytes(data[ne:cs]) if cs > ne else ""
                    if len(gap) <= NEGATION_WINDOW and not any(ch in SCOPE_BREAKS for ch in gap):
                        negated[i] |= bits
        return negated, absorbed

    # -- public API -------------------------------------------------------------------------------

    def match(self, text: str) -> list[Match]:
        """Every entry found in ``text`` (normalised first), in text order."""
        return self.match_normalized(normalize(text))

    def match_normalized(self, text: str, start: int = 0) -> list[Match]:
        """Like :meth:`match` for text already normalised, scanning ``text[start:]``.

        Offsets index ``text`` (not the slice) so callers can skip a header
        without re-basing spans.
        """
        data = _to_bytes(text[start:])
        spans = self._spans(data)
        if not spans:
            return []
        has_neg = any(p[_P_NEG] == _NEG for _s, _e, p in spans)
        negated = self._negate(data, spans)[0] if has_neg else [0] * len(spans)
        out: list[Match] = []
        byte_pos, char_pos = 0, start
        for (s, _e, p), neg_bits in zip(spans, negated, strict=True):
            char_pos += len(_from_bytes(data[byte_pos:s]))  # spans are sorted by start
            byte_pos = s
            term = p[_P_TERM]
            end = char_pos + len(term)
            for kind, group, weight in p[_P_ENTRIES]:
                is_neg = kind == "cue" and bool(neg_bits & _CUE_BIT[group])
                out.append(Match(term, kind, group, weight, char_pos, end, is_neg))
        return out

    def summary(self, text: str) -> MatchSummary:
        """Fast path for scoring: normalise and summarise without per-match objects."""
        return self.summary_normalized(normalize(text))

    def summary_normalized(self, text: str, start: int = 0, mute: Sequence[tuple[int, int]] = ()) -> MatchSummary:
        """:meth:`summary` for text already normalised, scanning ``text[start:]``.

        ``mute`` lists character ranges (indexing ``text``) whose *weak* category terms
        (weight below :data:`WEAK_WEIGHT`) count for nothing: the rules pass the relation
        words that do not stand as the other party of a conflict (``其女儿被人…``), so a
        daughter who was harmed by a stranger does not vote for ``family``.
        """
        data = _to_bytes(text[start:] if start else text)
        spans = self._spans(data)
        if not spans:
            return _EMPTY
        muted = _byte_ranges(text, start, mute) if mute else ()
        evidence = [0.0] * len(CATEGORIES)
        other_subject = 0.0
        seen: set[int] = set()
        cue_any = n_neg = n_deesc = 0
        for s, e, p in spans:
            if p[_P_CAT] >= 0 and p[_P_TID] not in seen:
                if muted and p[_P_EVID] < _WEAK_EVID and any(s < me and e > ms for ms, me in muted):
                    continue
                seen.add(p[_P_TID])
                evidence[p[_P_CAT]] += p[_P_EVID]
                if p[_P_SUBJ]:
                    other_subject += p[_P_EVID]
            cue_any |= p[_P_CUE]
            if p[_P_NEG]:
                if p[_P_NEG] == _NEG:
                    n_neg += 1
                else:
                    n_deesc += 1
        if not n_neg:
            return MatchSummary(tuple(evidence), cue_any, 0, 0, n_deesc, other_subject)
        negated, cancelled = self._negate(data, spans)
        kept = 0
        for (_s, _e, p), bits in zip(spans, negated, strict=True):
            kept |= p[_P_CUE] & ~bits
            cancelled |= bits
        return MatchSummary(tuple(evidence), kept, cancelled, n_neg, n_deesc, other_subject)


_EMPTY = MatchSummary((0.0,) * len(CATEGORIES), 0, 0, 0, 0)
_WEAK_EVID = -math.log1p(-WEAK_WEIGHT)


def _byte_ranges(text: str, start: int, ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Character ranges of ``text`` as byte offsets into ``_to_bytes(text[start:])``."""
    out = []
    for s, e in ranges:
        bs = len(text[start:s].encode("utf-8"))
        out.append((bs, bs + len(text[s:e].encode("utf-8"))))
    return out


_CACHE: dict[str, KeywordMatcher] = {}
_LOCK = threading.Lock()


def get_matcher(lexicon: Lexicon | None = None) -> KeywordMatcher:
    """The matcher for ``lexicon`` (the packaged one by default), built once per version.

    Building the automaton for ~3,500 terms takes tens of milliseconds; callers
    that score one incident at a time (the dispatch desk) must not pay it per call.
    """
    lex = lexicon if lexicon is not None else default_lexicon()
    matcher = _CACHE.get(lex.version)
    if matcher is None:
        with _LOCK:
            matcher = _CACHE.get(lex.version)
            if matcher is None:
                matcher = KeywordMatcher(lex)
                _CACHE[lex.version] = matcher
    return matcher
