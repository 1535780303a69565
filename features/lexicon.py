"""The dispute keyword library: loading, validation and its version string.

The library is package data, ``features/resources/lexicon.csv`` (UTF-8), one
row per (term, kind, group)::

    term,kind,group,weight,match,note

``kind`` and ``group``
    ``category``  -> one of :data:`CATEGORIES` (the police scheme's 8 dispute types);
    ``cue``       -> one of :data:`CUE_GROUPS` (escalation cues that cut across types);
    ``negation``  -> ``negation`` (cancels cues in a scope, see :mod:`features.keywords`)
    or ``deescalation`` (the dispute calmed down; reported and counted, cancels nothing);
    ``role``      -> one of :data:`CATEGORIES`: a relation word (丈夫, 邻居, 房东) and the type
    of dispute it makes when it stands as the other side of a conflict; ``weight`` is
    that evidence (docs/dispute-definition.md);
    ``frame``     -> one of :data:`FRAME_GROUPS`: the structure of a call — a conflict
    (``bilateral`` disagreement, ``act`` against another party, ``claim`` on another
    party), a ``stranger``, or an exclusion frame (``excl_theft`` … ``excl_consult``).
    Role and frame rows are read by :mod:`features.frames` (every occurrence, so they
    hide nothing); the keyword automaton matches only :data:`MATCHER_KINDS`.

``weight`` in (0, 1]
    How strongly the term alone indicates its group. For categories the scorer
    (:mod:`models.rules`) combines weights as ``1 - prod(1 - w)``; the tiers used
    when writing the library are: >= 0.5 the term alone makes a 110 narrative a
    dispute of that category; 0.25-0.5 it names the category's setting (selects the
    category when something else makes the text a dispute); < 0.25 weak context.
    Cue and negation weights are carried for explanation only.

``match``
    Only ``substr``: the term matches anywhere in the normalised text
    (:func:`features.text.normalize`). No second mode exists because none was
    needed: ambiguous short words are kept out (terms of one character are
    rejected) and a longer term masks the shorter ones inside it, so
    disambiguation is done with phrases, not tokenisation (which would put
    jieba on the hot path).

``note``
    Free text (provenance, register). It is not part of :attr:`Lexicon.version`:
    the version identifies matching behaviour, so editing a note does not
    invalidate artifacts built with the library.

Overlapping entries, allowed and not (the rules of :func:`validate`):

* the same (term, kind, group) twice is a duplicate;
* a term belongs to at most one category (a word cannot vote for two types);
* a term may be a category *and* one or more cues (``家暴`` is family and
  violence, ``离婚`` family and separation) because the matcher reports every
  entry of the span it keeps;
* a ``negation``-kind term is nothing else and in one negation group only;
* because a longer match hides the matches inside it, a term that contains a
  cue term must carry that cue group itself, no non-negation term may contain a
  negation term, and a ``deescalation`` term may not contain a cue term (it
  would silently swallow it). Negation terms are *meant* to contain cues
  (``未受伤`` contains ``受伤``): that is how they cancel them.

Any invalid file raises :class:`LexiconError` naming the file, the line and the
fix, so a bad edit fails at load time instead of skewing scores quietly.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import ahocorasick

from features.schema import CATEGORIES  # the contract owns the category codes
from features.text import normalize

CUE_GROUPS: tuple[str, ...] = (
    "violence",
    "weapon",
    "injury",
    "threat",
    "alcohol",
    "self_harm",
    "separation",
    "repeat",
)
NEGATION_GROUPS: tuple[str, ...] = ("negation", "deescalation")
CONFLICT_FRAMES: tuple[str, ...] = ("bilateral", "act", "claim")
"""Frames that make a conflict: a disagreement, an act against another party, a claim on another party."""
EXCLUSION_FRAMES: tuple[str, ...] = (
    "excl_theft",
    "excl_fraud",
    "excl_robbery",
    "excl_sexual",
    "excl_help",
    "excl_missing",
    "excl_business",
    "excl_crash",
    "excl_fire",
    "excl_lost",
    "excl_tip",
    "excl_consult",
)
"""Frames of calls that are not disputes unless a relationship is explicit (docs/dispute-definition.md)."""
FRAME_GROUPS: tuple[str, ...] = (*CONFLICT_FRAMES, "stranger", *EXCLUSION_FRAMES)
GROUPS_BY_KIND: dict[str, tuple[str, ...]] = {
    "category": CATEGORIES,
    "cue": CUE_GROUPS,
    "negation": NEGATION_GROUPS,
    "role": CATEGORIES,
    "frame": FRAME_GROUPS,
}
MATCHER_KINDS: frozenset[str] = frozenset({"category", "cue", "negation"})
"""Kinds matched by the keyword automaton (features/keywords.py); ``role`` and ``frame`` rows are read
by the structure reader (features/frames.py), which sees every occurrence, so they hide nothing."""
MATCH_MODES: tuple[str, ...] = ("substr",)
HEADER: tuple[str, ...] = ("term", "kind", "group", "weight", "match", "note")
MIN_CATEGORY_ENTRIES = 2400
"""The reports describe an "8 categories, 2,400+ keywords" library; fewer means a gap."""

_RESOURCE = ("resources", "lexicon.csv")


class LexiconError(ValueError):
    """An invalid lexicon file; ``problems`` holds one ``file:line: what. Fix: how`` per issue."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        shown = "\n  ".join(problems[:25])
        more = f"\n  ... and {len(problems) - 25} more" if len(problems) > 25 else ""
        super().__init__(f"invalid lexicon {source}: {len(problems)} problem(s)\n  {shown}{more}")


@dataclass(frozen=True, slots=True)
class Entry:
    """One row of the library; ``line`` is its line in the source file (0 when built in memory)."""

    term: str
    kind: str
    group: str
    weight: float
    match: str = "substr"
    note: str = ""
    line: int = 0


@dataclass(frozen=True, eq=False)
class Lexicon:
    """A loaded library. Equality is identity; compare :attr:`version` to compare content."""

    entries: tuple[Entry, ...]
    source: str = "<memory>"
    version: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "version", lexicon_version(self.entries))

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    def counts(self) -> dict[tuple[str, str], int]:
        """Rows per (kind, group), for docs and coverage checks."""
        out: dict[tuple[str, str], int] = defaultdict(int)
        for e in self.entries:
            out[(e.kind, e.group)] += 1
        return dict(out)

    def n_category_entries(self) -> int:
        """Category rows: the number the "2,400+ keywords" requirement is about."""
        return sum(1 for e in self.entries if e.kind == "category")


def lexicon_version(entries: Iterable[Entry]) -> str:
    """First 12 hex chars of sha256 over the sorted behavioural content.

    Sorting makes the version independent of row order; weights are written with
    ``repr`` so ``0.50`` and ``0.5`` are the same library. Notes and line numbers
    are left out (they do not change what matches or how it scores).
    """
    lines = sorted(f"{e.term}\t{e.kind}\t{e.group}\t{float(e.weight)!r}\t{e.match}" for e in entries)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()[:12]


def default_lexicon_path() -> Path:
    """Where the packaged library lives (works for editable and wheel installs)."""
    return Path(str(resources.files("features").joinpath(*_RESOURCE)))


def parse_lexicon(text: str, source: str = "<memory>") -> tuple[Lexicon, list[str]]:
    """Parse CSV text into a :class:`Lexicon` plus the problems that stop it being read.

    Only structural problems are reported here (header, field count); content
    rules live in :func:`validate` so an in-memory lexicon is checked the same way.
    """
    problems: list[str] = []
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        return Lexicon((), source), [f"{source}:1: file is empty. Fix: start with the header {','.join(HEADER)}"]
    if tuple(h.strip() for h in header) != HEADER:
        return Lexicon((), source), [
            f"{source}:1: header is {','.join(header)!r}. Fix: the first line must be exactly {','.join(HEADER)}"
        ]
    entries: list[Entry] = []
    for row in reader:
        line = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(HEADER):
            problems.append(
                f"{source}:{line}: expected {len(HEADER)} fields, found {len(row)}. "
                "Fix: write term,kind,group,weight,match,note and quote a note that contains a comma"
            )
            continue
        term, kind, group, weight, match, note = row
        try:
            w = float(weight)
        except ValueError:
            w = math.nan
        entries.append(Entry(term, kind.strip(), group.strip(), w, match.strip(), note, line))
    return Lexicon(tuple(entries), source), problems


def load_lexicon(path: str | Path | None = None) -> Lexicon:
    """Read and validate a library; the packaged one when ``path`` is None.

    Raises :class:`LexiconError` (file, line, fix) on any problem, and
    ``FileNotFoundError`` when the file does not exist.
    """
    p = Path(path) if path is not None else default_lexicon_path()
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise LexiconError(
            str(p), [f"{p}:{line}: not valid UTF-8 ({exc.reason}). Fix: save the file as UTF-8"]
        ) from None
    lexicon, problems = parse_lexicon(text, str(p))
    problems += validate(lexicon)
    if problems:
        raise LexiconError(str(p), problems)
    return lexicon


@lru_cache(maxsize=1)
def default_lexicon() -> Lexicon:
    """The packaged library, loaded and validated once per process."""
    return load_lexicon(None)


def validate(lexicon: Lexicon) -> list[str]:
    """Every problem in ``lexicon`` as ``file:line: what. Fix: how`` (empty when valid)."""
    src = lexicon.source
    problems: list[str] = []

    def at(e: Entry) -> str:
        return f"{src}:{e.line}" if e.line else f"{src}:{e.term}"

    for e in lexicon.entries:
        problems.extend(f"{at(e)}: {p}" for p in _field_problems(e))

    by_key: dict[tuple[str, str, str], Entry] = {}
    by_term: dict[str, list[Entry]] = defaultdict(list)
    for e in lexicon.entries:
        key = (e.term, e.kind, e.group)
        if key in by_key:
            first = by_key[key]
            problems.append(
                f"{at(e)}: duplicate of line {first.line} ({e.term!r}, {e.kind}, {e.group}). "
                "Fix: delete one of the two rows"
            )
            continue
        by_key[key] = e
        by_term[e.term].append(e)

    for term, rows in by_term.items():
        cats = [e for e in rows if e.kind == "category"]
        for e in cats[1:]:
            problems.append(
                f"{at(e)}: {term!r} is category {e.group!r} here and {cats[0].group!r} on line "
                f"{cats[0].line}. Fix: a term counts for one category only; keep the row of the "
                "category it indicates most and delete the other"
            )
        negs = [e for e in rows if e.kind == "negation"]
        if negs and len(rows) > 1:
            # report at the later row: the one most likely just added
            first, later = sorted((negs[0], next(e for e in rows if e is not negs[0])), key=lambda e: e.line)
            problems.append(
                f"{at(later)}: {term!r} is {later.kind}/{later.group} here and {first.kind}/"
                f"{first.group} on line {first.line}. Fix: a negation term cannot be anything "
                "else; delete one of the rows"
            )
        modes = {e.match for e in rows}
        if len(modes) > 1:
            problems.append(
                f"{at(rows[-1])}: {term!r} has match modes {sorted(modes)} on different rows. "
                "Fix: use one match mode for all rows of a term"
            )

    matched = {t: [e for e in rows if e.kind in MATCHER_KINDS] for t, rows in by_term.items()}
    problems.extend(_containment_problems({t: rows for t, rows in matched.items() if rows}, at))
    problems.extend(_coverage_problems(lexicon))
    return problems


def _field_problems(e: Entry) -> list[str]:
    out: list[str] = []
    if not e.term.strip():
        out.append("term is empty. Fix: write the keyword in the first field or delete the row")
        return out
    if any(ch.isspace() for ch in e.term):
        out.append(f"term {e.term!r} contains whitespace. Fix: write it without spaces")
    elif normalize(e.term) != e.term:
        out.append(
            f"term {e.term!r} changes under features.text.normalize (NFKC), so it could never "
            f"match. Fix: write it as {normalize(e.term)!r}"
        )
    if len(e.term.strip()) < 2:
        out.append(
            f"term {e.term!r} is a single character and would match inside unrelated words. "
            "Fix: use a phrase of two or more characters"
        )
    if e.kind not in GROUPS_BY_KIND:
        out.append(f"kind {e.kind!r} is not one of {', '.join(GROUPS_BY_KIND)}. Fix: correct the kind")
    elif e.group not in GROUPS_BY_KIND[e.kind]:
        out.append(
            f"group {e.group!r} is not valid for kind {e.kind!r}. Fix: use one of {', '.join(GROUPS_BY_KIND[e.kind])}"
        )
    if math.isnan(e.weight) or not (0.0 < e.weight <= 1.0):
        shown = "not a number" if math.isnan(e.weight) else repr(e.weight)
        out.append(f"weight is {shown}. Fix: write a decimal in (0, 1], e.g. 0.5")
    if e.match not in MATCH_MODES:
        out.append(f"match {e.match!r} is not a match mode. Fix: use {' or '.join(MATCH_MODES)}")
    return out


def _containment_problems(by_term: dict[str, list[Entry]], at: Callable[[Entry], str]) -> list[str]:
    """Terms that would hide a cue or a negation inside them (longest match wins)."""
    auto = ahocorasick.Automaton()
    for term in by_term:
        if term:
            auto.add_word(term, term)
    if not len(auto):
        return []
    auto.make_automaton()
    out: list[str] = []
    for term, rows in by_term.items():
        if not term:
            continue
        kinds = {e.kind for e in rows}
        own_cues = {e.group for e in rows if e.kind == "cue"}
        groups = {e.group for e in rows}
        first = rows[0]
        for _end, inner in auto.iter(term):
            if inner == term:
                continue
            for ie in by_term[inner]:
                if ie.kind == "negation" and "negation" not in kinds:
                    out.append(
                        f"{at(first)}: {term!r} contains the negation {inner!r} (line {ie.line}); the "
                        "longer match would hide it. Fix: delete this row or make the term a negation"
                    )
                elif ie.kind == "cue" and "negation" not in kinds and ie.group not in own_cues:
                    out.append(
                        f"{at(first)}: {term!r} contains the cue {inner!r} ({ie.group}, line {ie.line}) "
                        f"but does not carry cue {ie.group!r}, so the longer match hides it. Fix: add "
                        f"the row {term},cue,{ie.group},{ie.weight},substr, or drop the term"
                    )
                elif ie.kind == "cue" and "deescalation" in groups:
                    out.append(
                        f"{at(first)}: deescalation term {term!r} contains the cue {inner!r} "
                        f"({ie.group}, line {ie.line}) and would swallow it. Fix: make it a negation "
                        "row or rephrase it"
                    )
    return sorted(set(out))


def _coverage_problems(lexicon: Lexicon) -> list[str]:
    src = lexicon.source
    counts = lexicon.counts()
    out = [
        f"{src}: no entries for {kind} group {group!r}. Fix: add rows with kind={kind}, group={group}"
        for kind, groups in GROUPS_BY_KIND.items()
        for group in groups
        if not counts.get((kind, group))
    ]
    n = lexicon.n_category_entries()
    if n < MIN_CATEGORY_ENTRIES:
        out.append(
            f"{src}: only {n} category entries; the library needs at least {MIN_CATEGORY_ENTRIES:,}. "
            "Fix: add real dispute vocabulary to the thin categories"
        )
    return out
