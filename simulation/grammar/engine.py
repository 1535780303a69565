"""A small vectorised template engine for the 110 narrative grammar.

Why a home-made engine: the simulator renders ~10^6 calls, so we cannot draw
fragments row by row. Every slot of a narrative is a *pool* of templates; for
a whole array of rows we draw one template index per row with one
``rng.integers`` call per group of rows that share the same constraints, then
fill the ``{SLOT}`` placeholders with numpy object-array concatenation (one
C-level pass per template part, not per row).

A template is a string like ``"VK|{W2}拿{WPN}打{O}"``:

* the optional prefix before ``|`` lists *tags*: the cue letters it states
  (``V`` violence, ``K`` weapon, ``I`` injury, ``T`` threat, ``A`` alcohol,
  ``S`` self-harm, ``P`` separation) and the caller kinds it suits (``w``
  witness: neighbour/passer-by, ``s`` the caller speaks for a party). A
  template is *eligible* for a row only when every tag is among the row's
  traits, so a fragment never states a cue that the event does not have (or
  that the call taker decided not to write down).
* a leading ``~`` marks a clause after which no optional detail clause may
  follow (a parked car has no "车辆受损").
* ``{NAME}`` is a slot filled from a per-row filler array (see
  :mod:`simulation.grammar.lexicon`). Fillers never contain a stock dispute
  keyword, so whether a rendered fragment contains one is decided by the
  template text alone; the pool records it (``kw``) and rows can ask for
  keyword-free or keyword-bearing fragments. That is how the confuser shares
  are controlled exactly instead of hoped for.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

CUES: tuple[str, ...] = ("violence", "weapon", "injury", "threat", "alcohol", "self_harm", "separation")
CUE_LETTERS = "VKITASP"
BIT: dict[str, int] = {letter: 1 << i for i, letter in enumerate(CUE_LETTERS)}
BIT["w"] = 1 << 7  # the caller is a witness (neighbour, passer-by)
BIT["s"] = 1 << 8  # the caller speaks for a party (party, family member, other)
CUE_MASK = (1 << len(CUES)) - 1
ROLE_MASK = BIT["w"] | BIT["s"]

MODE_ANY, MODE_KW, MODE_FREE = 0, 1, 2

_SLOT = re.compile(r"\{([A-Z][A-Z0-9]*)\}")
_TAGGED = re.compile(r"^([A-Za-z]+)\|(.*)$", re.S)

Part = tuple[bool, str]  # (is_slot, literal text or slot name)


@dataclass(frozen=True)
class Pool:
    """One slot's templates, pre-parsed, with tag bits and keyword flags."""

    name: str
    texts: tuple[str, ...]
    need: np.ndarray  # int64 trait bits each template requires
    kw: np.ndarray  # bool: template text contains a stock dispute keyword
    parts: tuple[tuple[Part, ...], ...]
    id_array: np.ndarray  # object: a stable id per template ("family.spouse_quarrel#03")
    closed: np.ndarray  # bool: text began with "~": no optional detail clauses may follow

    def __len__(self) -> int:
        return len(self.texts)

    def slots(self) -> set[str]:
        """Slot names used by any template of the pool."""
        return {value for parts in self.parts for is_slot, value in parts if is_slot}


def compile_pool(
    name: str,
    templates: Sequence[str],
    keyword_re: re.Pattern[str],
    default_tags: str = "",
    ids: Sequence[str] | None = None,
) -> Pool:
    """Parse tags and slots once; flag templates that carry a stock keyword.

    ``default_tags`` is added to templates that carry no caller-kind tag
    (``w``/``s``/``b``); ``b`` means "both kinds" and is dropped. ``ids``
    name each template by its origin list, so a template shared by several
    pools keeps one id in the diversity statistics.
    """
    if ids is not None and len(ids) != len(templates):
        raise ValueError(f"pool {name}: {len(ids)} ids for {len(templates)} templates")
    if not templates:
        raise ValueError(f"pool {name} is empty")
    texts, need, kw, parts, closed = [], [], [], [], []
    for raw in templates:
        tags, text = "", raw
        while (match := _TAGGED.match(text)) is not None:  # "w|V|..." stacks tag groups
            tags, text = tags + match.group(1), match.group(2)
        if not any(t in tags for t in "wsb"):
            tags += default_tags
        bits = 0
        for t in tags.replace("b", ""):
            if t not in BIT:
                raise ValueError(f"pool {name}: unknown tag {t!r}")
            bits |= BIT[t]
        closed.append(text.startswith("~"))
        text = text.removeprefix("~")
        texts.append(text)
        need.append(bits)
        kw.append(bool(keyword_re.search(_SLOT.sub("", text))))
        parts.append(_split(text))
    return Pool(
        name=name,
        texts=tuple(texts),
        need=np.asarray(need, dtype=np.int64),
        kw=np.asarray(kw, dtype=bool),
        parts=tuple(parts),
        closed=np.asarray(closed, dtype=bool),
        id_array=np.asarray(
            list(ids) if ids is not None else [f"{name}#{i:02d}" for i in range(len(texts))], dtype=object
        ),
    )


def _split(text: str) -> tuple[Part, ...]:
    out: list[Part] = []
    pos = 0
    for m in _SLOT.finditer(text):
        if m.start() > pos:
            out.append((False, text[pos : m.start()]))
        out.append((True, m.group(1)))
        pos = m.end()
    if pos < len(text):
        out.append((False, text[pos:]))
    return tuple(out)


def groups(codes: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(code, positions)`` for each distinct code, in sorted code order.

    Sorted order matters: it fixes the order of rng draws, hence determinism.
    """
    if len(codes) == 0:
        return
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    cuts = np.flatnonzero(sorted_codes[1:] != sorted_codes[:-1]) + 1
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [len(codes)]))
    for s, e in zip(starts, ends, strict=True):
        yield int(sorted_codes[s]), order[s:e]


def _eligible(pool: Pool, traits: int, mode: int) -> np.ndarray:
    """Template indices a row with these traits/mode may use, with fallbacks.

    Fallback order keeps the cue guarantee (never state an absent cue) and
    gives up, in turn, the keyword wish and the caller-kind fit.
    """
    need = pool.need
    ok = (need & ~traits) == 0
    if mode == MODE_KW:
        cand = ok & pool.kw
    elif mode == MODE_FREE:
        cand = ok & ~pool.kw
    else:
        cand = ok
    if cand.any():
        return np.flatnonzero(cand)
    if ok.any():
        return np.flatnonzero(ok)
    relaxed = ((need & ~ROLE_MASK) & ~traits) == 0
    if relaxed.any():
        return np.flatnonzero(relaxed)
    return np.flatnonzero((need & CUE_MASK) == 0)


def pick(pool: Pool, traits: np.ndarray, mode: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw one eligible template index per row (uniform among eligible ones)."""
    n = len(traits)
    out = np.zeros(n, dtype=np.int64)
    if n == 0:
        return out
    codes = traits.astype(np.int64) * 3 + mode.astype(np.int64)
    for code, pos in groups(codes):
        t, m = divmod(code, 3)
        cand = _eligible(pool, t, m)
        if len(cand) == 0:
            raise ValueError(f"pool {pool.name}: no template usable without cue tags")
        out[pos] = cand[rng.integers(0, len(cand), size=len(pos))]
    return out


def fill(
    pool: Pool,
    choice: np.ndarray,
    rows: np.ndarray,
    filler: Callable[[str], np.ndarray],
) -> np.ndarray:
    """Render ``pool.texts[choice[i]]`` for row ``rows[i]`` into an object array.

    ``filler(name)`` returns the full-length filler array for a slot; only the
    rows that use a template are indexed.
    """
    out = np.empty(len(rows), dtype=object)
    for t, pos in groups(choice):
        r = rows[pos]
        acc: np.ndarray | str = ""
        for is_slot, value in pool.parts[t]:
            piece = filler(value)[r] if is_slot else value
            acc = acc + piece if not (isinstance(acc, str) and acc == "") else piece
        if isinstance(acc, str):
            acc = np.full(len(pos), acc, dtype=object)
        out[pos] = acc
    return out


def concat(*arrays: np.ndarray | str) -> np.ndarray:
    """Element-wise string concatenation of object arrays (and scalars)."""
    acc: np.ndarray | str = ""
    for a in arrays:
        acc = a if isinstance(acc, str) and acc == "" else acc + a
    if isinstance(acc, str):
        raise ValueError("concat needs at least one array")
    return acc


def keyed_choice(
    keys: np.ndarray, pools: dict[int, Sequence[str]], rng: np.random.Generator, default: str = ""
) -> np.ndarray:
    """Per row, a uniform draw from ``pools[key]`` (``default`` if the key has none)."""
    out = np.full(len(keys), default, dtype=object)
    for key, pos in groups(np.asarray(keys, dtype=np.int64)):
        words = pools.get(key)
        if not words:
            continue
        arr = np.asarray(words, dtype=object)
        out[pos] = arr[rng.integers(0, len(arr), size=len(pos))]
    return out


def uniform_choice(words: Sequence[str], n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` uniform draws from one word list, as an object array."""
    arr = np.asarray(words, dtype=object)
    return arr[rng.integers(0, len(arr), size=n)]
