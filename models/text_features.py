"""Incident-level features for the dispute classifier: rules, tokens, time, caller role, shape.

One 110 call becomes one float32 row. The blocks, and why each is there:

* **Rule evidence** (:func:`models.rules.rule_features`, 19 columns): the keyword
  library's category scores, cue flags and negation counts. The model learns how far
  to trust each of them instead of the hand-set ``1 - prod(1 - w)`` and the 0.5
  threshold; this block carries ~60 % of the model's gain.
* **Caller role** (regexes on the content): third-party calls (``听到隔壁``, ``看到有人``,
  ``路过``) and hedged ones (``不知道``, ``像是``) describe disputes and street fights
  alike; first-person ``我与/其与`` phrasing names a party to the conflict. Plus which
  header fields are present (caller, phone, ID, location): anonymous callers are more
  often witnesses.
* **Time** (received time, else the time in the header): hour and day of year as
  sin/cos (family calls peak at night, land in spring, labour before Spring
  Festival), weekday, weekend, and a flag when no time is known (then sin = cos = 0, a
  point no real time maps to). Never a raw timestamp: a temporal split must not be
  learnable from the date.
* **Shape**: content length, clauses, tokens (terse ``发生纠纷，原因不明`` calls).
* **Selected tokens**: jieba tokens of the *masked* content (after
  :func:`features.text.parse_header`), binary presence, for a vocabulary chosen on the
  training narratives by chi² against the 9 classes among tokens in at least
  ``min_df`` documents. Binary rather than counts so a 2,000-character court document
  does not sit far outside the range a 60-character call trains on.

Personal data never reaches a feature: every narrative is passed through
:func:`features.text.mask` first (phones, IDs, plates, the caller's name), and only the
content after the header is segmented; the header contributes presence flags only.
Other people's names are not masked by the text layer (there is no reliable name
detector), but they do not reach the stored token lists either: without HMM, jieba emits
a multi-character Han token only when it is a dictionary word, so an unlisted name comes
out as single characters (``张``, ``伟``); the listed ones (jieba's dictionary holds
common full names such as ``王建国``, the user dictionary Mongolian given names) are
replaced by :data:`PERSON_TOKEN` before counting (:func:`person_name_words`). Masking
leaves no digit run of 6 or more, so no number in them is part of a phone or ID. The
artifact can go to MLflow.

**Out-of-distribution signal** (not a model input; :meth:`IncidentFeaturizer.transform_ood`):
the share of content tokens outside the training vocabulary (all tokens in at least
``known_min_df`` training documents), smoothed as ``n_oov / (n_tokens + OOV_PRIOR)`` so a
three-word call with one unknown name does not count as foreign. Generated 110 text of a
later period scores 0 up to the 99th percentile (at most ~0.2); court text 0.33-0.83.
:mod:`models.dispute` uses it to hand the answer back to the rules.

The vocabulary and every parameter are stored by :meth:`to_dict` (JSON), with the
lexicon version and a hash of the segmentation dictionary, so the serving side
rebuilds identical rows; :meth:`from_dict` refuses an artifact built with another
lexicon or dictionary (the rule and token columns would silently mean something else).
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from features.keywords import get_matcher
from features.lexicon import CUE_GROUPS
from features.text import USERDICT_PATH, Segmenter, get_segmenter, mask, parse_header, read_userdict
from models.rules import RuleResult, rule_feature_names, rule_features, score_text

FORMAT_VERSION = 2
PERSON_TOKEN = "<人名>"
"""Stands for any token the dictionaries tag as a person's name (see :func:`person_name_words`)."""
OOV_PRIOR = 4.0
"""Pseudo-tokens added to the OOV denominator: short calls need several unknown words to look foreign."""

_HAN = re.compile(r"[\u4e00-\u9fff]")
_ALNUM = re.compile(r"^[0-9A-Za-z]+$")
_PLACEHOLDER_WORDS = frozenset(["ID", "PHONE", "PLATE", "NAME", "CARD", "NUM"])
_CLAUSE = re.compile(r"[,，。;；!！?？、]")

ROLE_PATTERNS: dict[str, re.Pattern[str]] = {
    # the caller saw or heard it: a witness, not a party
    "role_witness": re.compile(r"看到|看见|听到|听见|听着|瞧见|路过|路人|围观|过路"),
    # the other party is placed by where they live (also the setting of neighbour disputes)
    "role_nearby": re.compile(r"隔壁|邻居|对门|斜对门|楼上|楼下|西院|东院|前院|后院|对面"),
    # the caller does not know what happened
    "role_uncertain": re.compile(r"不知道|不清楚|像是|好像|看样子|看着像|听着像|原因不明|情况不明|不详"),
    # first-person / reported party: "我与", "其与", "报警人和"
    "role_party": re.compile(r"(?:我|其|她|他|报警人|本人)(?:与|和|跟|同)"),
    # someone unnamed did something: street incidents more than household ones
    "role_stranger": re.compile(r"有人|不认识|陌生|一男一女|两名男子|几个人|一伙人"),
    # a relative called for someone else
    "role_relative": re.compile(r"(?:其|我|他|她)家(?:人|里人)?|(?:其|我|他|她)的?(?:儿子|女儿|父亲|母亲|妈妈|爸爸)"),
}

HEADER_FEATURES: tuple[str, ...] = ("has_header", "has_caller", "has_phone", "has_id", "has_location")
TIME_FEATURES: tuple[str, ...] = (
    "has_time",
    "hour_sin",
    "hour_cos",
    "weekday",
    "is_weekend",
    "doy_sin",
    "doy_cos",
)
SHAPE_FEATURES: tuple[str, ...] = ("content_chars", "n_clauses", "n_tokens")


SMALL_BATCH = 16
"""Up to this many texts, rule features are read from ``score_text`` instead of ``rule_features``."""


def _rule_row(result: RuleResult) -> dict[str, float]:
    """The :func:`rule_features` values of one text, from its :class:`RuleResult`.

    ``rule_features`` builds a DataFrame: ~200-500 us of pandas for a single incident,
    half the dispatch desk's budget. ``score_text`` gives the same numbers (the rules'
    documented invariant) in ~50 us; a test checks the two paths agree on every
    narrative of a city and on court documents.
    """
    row: dict[str, float] = {"dispute_score": result.dispute_score}
    row.update({f"cat_{c}": s for c, s in result.category_scores.items()})
    row.update({f"cue_{g}": float(g in result.cues) for g in CUE_GROUPS})
    negations = [m["group"] for m in result.matched_terms if m["kind"] == "negation"]
    row["n_negation"] = float(negations.count("negation"))
    row["n_deescalation"] = float(negations.count("deescalation"))
    row.update(result.flags)
    return row


def rule_matrix(texts: Sequence[str]) -> np.ndarray:
    """The rule block (:func:`models.rules.rule_feature_names` order) as float64, one row per text."""
    names = rule_feature_names()
    if len(texts) > SMALL_BATCH:
        # select by name: the rules table may carry extra (non-numeric) columns
        return rule_features(texts)[names].to_numpy(dtype=np.float64)
    matcher = get_matcher()
    out = np.zeros((len(texts), len(names)), dtype=np.float64)
    for i, text in enumerate(texts):
        row = _rule_row(score_text(text, matcher))
        out[i] = [row[n] for n in names]
    return out


SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任"
    "沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付傅方白邹孟熊秦邱江尹薛闫阎段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴"
    "莫孔向汤包鲍宝吉康常乔赖文樊葛齐安易岳柴牛关佟海敖那"
)
"""Common Han surnames (the top ~120, plus those frequent in Tongliao: 包 鲍 宝 佟 敖 那 海)."""


@functools.cache
def person_name_words() -> frozenset[str]:
    """Dictionary words that are person names: replaced by :data:`PERSON_TOKEN` before counting.

    A word is a name when the user dictionary tags it ``nr`` (Mongolian given names, used
    alone as full names), or jieba's dictionary tags it ``nr*`` *and* it is 2-4 characters
    starting with a common surname (``王建国``, ``张志强``). The surname condition is there
    because jieba's tags are noisy: ``扬言``, ``老公``, ``养老``, ``银行卡``, ``今天下午`` are
    ``nr`` too. Lexicon terms and words the user dictionary tags otherwise always stay
    words. Loaded once (~0.1 s over jieba's 350,000-line dictionary).
    """
    import jieba  # imported by the segmenter anyway; kept off module import

    own = {word: tag for word, _freq, tag in read_userdict()}
    keep = {e.term for e in get_matcher().lexicon.entries} | {w for w, t in own.items() if not t.startswith("nr")}
    names = {w for w, t in own.items() if t.startswith("nr")}
    with jieba.get_dict_file() as fh:
        for raw in fh:
            parts = raw.decode("utf-8").split()
            if len(parts) >= 3 and parts[2].startswith("nr") and 2 <= len(parts[0]) <= 4 and parts[0][0] in SURNAMES:
                names.add(parts[0])
    return frozenset(names - keep)


def _userdict_hash() -> str:
    """First 12 hex of the user dictionary's sha256: tokens change when it does."""
    try:
        return hashlib.sha256(USERDICT_PATH.read_bytes()).hexdigest()[:12]
    except OSError:  # pragma: no cover - the dictionary is package data
        return "missing"


def _keep_token(tok: str) -> bool:
    """Han words and short alphanumerics (``120``, ``KTV``); not punctuation, not placeholders."""
    tok = tok.strip()
    if not tok:
        return False
    if _HAN.search(tok):
        return True
    return bool(_ALNUM.match(tok)) and tok not in _PLACEHOLDER_WORDS and len(tok) <= 6


@dataclass(frozen=True, slots=True)
class _Parsed:
    """One narrative after masking and header parsing; never logged (content may still hold names)."""

    masked: str
    content: str
    tokens: frozenset[str]
    n_tokens: int
    when: datetime | None
    header: tuple[float, ...]


def _as_datetime(value: Any) -> datetime | None:
    """``datetime``/``Timestamp``/``date``/ISO string -> naive datetime; missing -> None."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.to_pydatetime()
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, np.datetime64):
        ts = pd.Timestamp(value)
        return None if pd.isna(ts) else ts.to_pydatetime()
    if isinstance(value, str):
        try:
            ts = pd.Timestamp(value)
        except (ValueError, TypeError):
            return None
        return None if pd.isna(ts) else ts.to_pydatetime()
    return None


def _time_row(when: datetime | None) -> tuple[float, ...]:
    if when is None:
        return (0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0)
    hour = when.hour + when.minute / 60.0
    a = 2.0 * math.pi * hour / 24.0
    doy = when.timetuple().tm_yday - 1
    b = 2.0 * math.pi * doy / 365.25
    wd = when.weekday()
    return (1.0, math.sin(a), math.cos(a), float(wd), float(wd >= 5), math.sin(b), math.cos(b))


class IncidentFeaturizer:
    """Turns 110 narratives (+ received time) into the dispute model's float32 rows.

    Deterministic: the vocabulary is chosen by chi² with ties broken by the token
    string, jieba runs without HMM (no guessed words, and faster), and nothing
    depends on input order or on the process.
    """

    def __init__(
        self,
        n_tokens: int = 300,
        min_df: int = 10,
        known_min_df: int = 2,
        max_known: int = 50_000,
        hmm: bool = False,
        segmenter: Segmenter | None = None,
    ) -> None:
        self.n_tokens = int(n_tokens)
        self.min_df = int(min_df)
        self.known_min_df = int(known_min_df)
        self.max_known = int(max_known)
        self.hmm = bool(hmm)
        self._segmenter = segmenter
        self.vocabulary: list[str] = []
        self.known_tokens: frozenset[str] = frozenset()
        self.lexicon_version: str = get_matcher().version
        self.userdict_hash: str = _userdict_hash()
        self._index: dict[str, int] = {}
        self.fitted = False

    # -- names ----------------------------------------------------------------------------------------

    @property
    def base_feature_names(self) -> list[str]:
        """Every column except the token block, in matrix order."""
        return [*rule_feature_names(), *ROLE_PATTERNS, *HEADER_FEATURES, *TIME_FEATURES, *SHAPE_FEATURES]

    @property
    def feature_names(self) -> list[str]:
        """Column names of :meth:`transform`; token columns are ``tok_<word>``."""
        return [*self.base_feature_names, *(f"tok_{t}" for t in self.vocabulary)]

    # -- parsing --------------------------------------------------------------------------------------

    @property
    def segmenter(self) -> Segmenter:
        if self._segmenter is None:
            self._segmenter = get_segmenter()
        return self._segmenter

    def _parse(self, narratives: Sequence[Any], received_at: Sequence[Any] | None) -> list[_Parsed]:
        texts = [t if isinstance(t, str) else ("" if t is None else str(t)) for t in narratives]
        if received_at is not None and len(received_at) != len(texts):
            raise ValueError(f"received_at has {len(received_at)} values for {len(texts)} narratives")
        times = list(received_at) if received_at is not None else [None] * len(texts)
        seg = self.segmenter
        names = person_name_words()
        out: list[_Parsed] = []
        for text, raw_when in zip(texts, times, strict=True):
            masked = mask(text)
            header = parse_header(masked)
            toks = [PERSON_TOKEN if w in names else w for w in seg.cut(header.content, hmm=self.hmm) if _keep_token(w)]
            when = _as_datetime(raw_when)
            if when is None:
                when = header.received_at
            flags = (
                float(header.has_header),
                float(header.caller is not None),
                float(header.phone is not None),
                float(header.id_number is not None),
                float(header.location is not None),
            )
            out.append(_Parsed(masked, header.content, frozenset(toks), len(toks), when, flags))
        return out

    # -- fit ------------------------------------------------------------------------------------------

    def fit(
        self,
        narratives: Sequence[Any],
        received_at: Sequence[Any] | None,
        labels: Sequence[Any],
    ) -> IncidentFeaturizer:
        """Choose the token vocabulary on training narratives and their 9-class labels.

        ``labels`` are the classes the model will learn (``"none"`` or a category);
        received times are accepted for symmetry and not used by fitting.
        """
        self._fit_parsed(self._parse(narratives, received_at), labels)
        return self

    def _fit_parsed(self, parsed: list[_Parsed], labels: Sequence[Any]) -> None:
        y = np.asarray([str(v) for v in labels], dtype=object)
        if len(y) != len(parsed):
            raise ValueError(f"{len(y)} labels for {len(parsed)} narratives")
        df: Counter[str] = Counter()
        for p in parsed:
            df.update(p.tokens)
        known = sorted((t for t, c in df.items() if c >= self.known_min_df), key=lambda t: (-df[t], t))
        self.known_tokens = frozenset(known[: self.max_known])
        candidates = sorted(t for t, c in df.items() if c >= self.min_df)
        vocabulary: list[str] = []
        if candidates and len(set(y)) > 1:
            col = {t: j for j, t in enumerate(candidates)}
            rows: list[int] = []
            cols: list[int] = []
            for i, p in enumerate(parsed):
                for t in p.tokens:
                    j = col.get(t)
                    if j is not None:
                        rows.append(i)
                        cols.append(j)
            m = sparse.csr_matrix(
                (np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=(len(parsed), len(candidates))
            )
            from sklearn.feature_selection import chi2  # fitting only: the daily ranking and serving never load it

            scores, _p = chi2(m, y)
            scores = np.nan_to_num(scores, nan=0.0)
            order = sorted(range(len(candidates)), key=lambda j: (-round(float(scores[j]), 6), candidates[j]))
            vocabulary = [candidates[j] for j in order[: self.n_tokens] if scores[j] > 0]
        self.vocabulary = vocabulary
        self._index = {t: j for j, t in enumerate(vocabulary)}
        self.lexicon_version = get_matcher().version
        self.userdict_hash = _userdict_hash()
        self.fitted = True

    # -- transform ------------------------------------------------------------------------------------

    def _matrix(self, parsed: list[_Parsed]) -> np.ndarray:
        if not self.fitted:
            raise RuntimeError("IncidentFeaturizer is not fitted: call fit() or from_dict() first")
        n = len(parsed)
        base = len(self.base_feature_names)
        x = np.zeros((n, base + len(self.vocabulary)), dtype=np.float32)
        if n == 0:
            return x
        rules = rule_matrix([p.masked for p in parsed])
        n_rule = rules.shape[1]
        x[:, :n_rule] = rules
        for i, p in enumerate(parsed):
            content = p.content  # parse_header returns normalised text
            roles = [float(bool(rx.search(content))) for rx in ROLE_PATTERNS.values()]
            shape = (float(len(content)), float(len(_CLAUSE.findall(content)) + 1), float(p.n_tokens))
            row = (*roles, *p.header, *_time_row(p.when), *shape)
            x[i, n_rule : n_rule + len(row)] = row
            for t in p.tokens:
                j = self._index.get(t)
                if j is not None:
                    x[i, base + j] = 1.0
        return x

    def transform(self, narratives: Sequence[Any], received_at: Sequence[Any] | None = None) -> np.ndarray:
        """Feature matrix, float32, one row per narrative (``received_at`` None: the header's time)."""
        return self._matrix(self._parse(narratives, received_at))

    def transform_ood(
        self, narratives: Sequence[Any], received_at: Sequence[Any] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`transform` plus the OOD score of each narrative (one segmentation for both)."""
        parsed = self._parse(narratives, received_at)
        return self._matrix(parsed), self._ood(parsed)

    def _ood(self, parsed: Iterable[_Parsed]) -> np.ndarray:
        known = self.known_tokens
        out = []
        for p in parsed:
            # distinct tokens: a court document repeating 原告 forty times is one unknown word, not forty
            n_oov = sum(1 for t in p.tokens if t not in known)
            out.append(n_oov / (len(p.tokens) + OOV_PRIOR))
        return np.asarray(out, dtype=np.float64)

    def ood_scores(self, narratives: Sequence[Any]) -> np.ndarray:
        """Share of distinct content tokens outside the training vocabulary, smoothed (see module doc)."""
        return self._ood(self._parse(narratives, None))

    def fit_transform(
        self, narratives: Sequence[Any], received_at: Sequence[Any] | None, labels: Sequence[Any]
    ) -> np.ndarray:
        """:meth:`fit` then :meth:`transform` on the same narratives, segmenting them once."""
        parsed = self._parse(narratives, received_at)
        self._fit_parsed(parsed, labels)
        return self._matrix(parsed)

    # -- persistence ----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: parameters, vocabulary, known tokens, and what they depend on."""
        if not self.fitted:
            raise RuntimeError("IncidentFeaturizer is not fitted")
        return {
            "format_version": FORMAT_VERSION,
            "params": {
                "n_tokens": self.n_tokens,
                "min_df": self.min_df,
                "known_min_df": self.known_min_df,
                "max_known": self.max_known,
                "hmm": self.hmm,
                "oov_prior": OOV_PRIOR,
            },
            "lexicon_version": self.lexicon_version,
            "userdict_hash": self.userdict_hash,
            "vocabulary": list(self.vocabulary),
            "known_tokens": sorted(self.known_tokens),
            "feature_names": self.feature_names,
        }

    @classmethod
    def from_dict(
        cls, state: dict[str, Any], strict: bool = True, segmenter: Segmenter | None = None
    ) -> IncidentFeaturizer:
        """Rebuild a fitted featurizer; ``strict`` refuses another lexicon or segmentation dictionary."""
        if state.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported featurizer format {state.get('format_version')!r}")
        params = state["params"]
        f = cls(
            n_tokens=params["n_tokens"],
            min_df=params["min_df"],
            known_min_df=params["known_min_df"],
            max_known=params["max_known"],
            hmm=params["hmm"],
            segmenter=segmenter,
        )
        if strict:
            if state["lexicon_version"] != f.lexicon_version:
                raise ValueError(
                    f"featurizer built with lexicon {state['lexicon_version']}, this process has "
                    f"{f.lexicon_version}: rule features would differ; retrain or pass strict=False"
                )
            if state["userdict_hash"] != f.userdict_hash:
                raise ValueError("featurizer built with another jieba user dictionary: tokens would differ")
        f.lexicon_version = state["lexicon_version"]
        f.userdict_hash = state["userdict_hash"]
        f.vocabulary = list(state["vocabulary"])
        f._index = {t: j for j, t in enumerate(f.vocabulary)}
        f.known_tokens = frozenset(state["known_tokens"])
        f.fitted = True
        person_name_words()  # load now, not on the first incident the server scores
        if state.get("feature_names") and state["feature_names"] != f.feature_names:
            raise ValueError("feature names differ from the stored ones: code and artifact disagree")
        return f

    def __repr__(self) -> str:
        state = f"{len(self.vocabulary)} tokens" if self.fitted else "unfitted"
        return f"IncidentFeaturizer({state}, lexicon={self.lexicon_version})"
