"""Incident text: normalisation, 110-header parsing, masking and segmentation.

Everything downstream (keyword rules, classifiers, the linking of incidents to
households) reads 110 narratives through this module, so it has to be
tolerant (real exports are messy), cheap (millions of narratives a day) and
safe (narratives carry names, phone numbers and ID numbers that must never
reach a log, an MLflow artifact or an exception message). See ``docs/text.md``.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import time
import unicodedata
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pandas is only needed by mask_series; keep the import cost out of the hot path
    import pandas as pd

__all__ = [
    "CARD",
    "ID",
    "NAME",
    "NUM",
    "PHONE",
    "PLATE",
    "USERDICT_PATH",
    "Header",
    "Segmenter",
    "get_segmenter",
    "mask",
    "mask_series",
    "normalize",
    "parse_header",
    "read_userdict",
    "safe_repr",
]

_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Full-width to half-width (NFKC) and collapsed whitespace.

    Call takers type on many keyboards; ``１３５`` and ``135`` must match the
    same rules, so every matcher works on normalised text.
    """
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


# --------------------------------------------------------------------------------------------------
# 110 header
# --------------------------------------------------------------------------------------------------

# The header regex accepts both full-width and ASCII punctuation so that it can run on raw text
# (mask() needs positions in the raw string) as well as on normalised text (parse_header()).
_WS = r"[\s\u3000]*"
_TIME = (
    r"(?:(?P<y>\d{4})\s*年\s*(?P<mo>\d{1,2})\s*月\s*(?P<d>\d{1,2})\s*[日号]"
    r"(?:[\s\u3000]*(?P<h>\d{1,2})\s*[时点:：]\s*(?:(?P<mi>\d{1,2})\s*分?)?\s*(?:(?P<s>\d{1,2})\s*秒)?)?"
    r"|(?P<y2>\d{4})[-/.](?P<mo2>\d{1,2})[-/.](?P<d2>\d{1,2})"
    r"(?:[\s\u3000T]*(?P<h2>\d{1,2})[:：](?P<mi2>\d{1,2})(?:[:：](?P<s2>\d{1,2}))?)?)"
)
# A caller is a short run without spaces, digits, brackets or punctuation: 张伟, 张女士, 巴特尔,
# 包·巴特尔, 匿名, the <NAME> placeholder left by an earlier mask(), or nothing at all.
_CALLER = r"(?P<caller>[^\s\u3000\d０-９()（）\[\]【】:：,，。;；、!?！？\"“”'‘’]{0,12}?)"
_PAREN = r"(?:[(（\[【](?P<paren>[^()（）\[\]【】\n]{0,120})[)）\]】]" + _WS + r")"
_BARE = r"(?:(?P<bare>[\d０-９*＊+＋][\d０-９*＊XxＸｘ\s\u3000,，、;；/+＋\-－]{5,80}?)" + _WS + r")"
_VERB = r"(?P<verb>报警称|报警|来电称|来电|报称|报案称|报案)" + _WS + r"[:：]"
_HEADER = re.compile(
    r"^"
    + _WS
    + r"(?:(?P<time>"
    + _TIME
    + r")"
    + _WS
    + r")?"
    + _CALLER
    + _WS
    + r"(?:"
    + _PAREN
    + r"|"
    + _BARE
    + r")?"
    + _VERB
    + _WS
)

# Callers that are not a person's name: anonymous markers give caller=None, generic nouns are kept
# as the caller but never masked through the text (masking every 邻居 would destroy the content).
_ANONYMOUS = frozenset(["匿名", "未留名", "未留姓名", "无", "无名", "不详", "未知", "不愿透露", "保密"])
_GENERIC_CALLERS = frozenset(
    [
        "群众",
        "市民",
        "居民",
        "村民",
        "路人",
        "本人",
        "事主",
        "家属",
        "邻居",
        "报警人",
        "来电人",
        "某某",
        "网友",
    ]
)

_PLACE_MARK = re.compile(
    r"区|旗|县|市|镇|乡|苏木|嘎查|村|屯|组|小区|楼|单元|室|号|路|街|巷|道|胡同|院|社区|广场|公园|学校|医院"
    r"|宾馆|酒店|饭店|饭馆|超市|商场|市场|公司|厂|店|门口|门前|附近|对面|路口|交叉口|加油站|车站|网吧|浴池|牧场"
    r"|农场|林场|营子|窝堡|分场|工地|停车场|小卖部|家中|住处|住宅"
)
# ... and ends like one (室, 号, 门口, 某嘎查, 3-2-1201 ...): content clauses such as 超市门口有火情
# contain place words too, but end on the event.
_PLACE_END = re.compile(
    r"(?:区|旗|县|市|镇|乡|苏木|嘎查|村|屯|组|楼|单元|室|号|路|街|巷|道|胡同|院|社区|广场|公园|学校|医院|宾馆|酒店"
    r"|饭店|饭馆|超市|商场|市场|公司|厂|店|门口|门前|门外|附近|对面|路口|交叉口|站|网吧|浴池|牧场|农场|林场|营子"
    r"|窝堡|分场|工地|停车场|小卖部|家|家中|家里|住处|住宅|楼下|楼上|楼道|内|旁|边|处|侧|[0-9A-Za-z])$"
)
# A first clause that starts like speech or contains these is content, not a location.
_NOT_PLACE_START = re.compile(r"^(?:称|说|讲|反映|求助|要求|报称|自称|其|我|有人|对方|被|因|现|看到|听到|刚|路人)")
_NOT_PLACE_WORD = re.compile(
    r"称|被|殴打|打架|吵架|纠纷|发生|受伤|要求|求助|报警|丢失|走失|被盗|诈骗|喝酒|醉酒|有人|有个|有一|看到|听到|发现"
    r"|路过|一名|一个|打车|了|的事|手机"
)
_CLAUSE_SEP = re.compile(r"[,，]")
_CONTACT_SPLIT = re.compile(r"[,，;；、/]+")
_CONTACT_STRIP = re.compile(r"[\s\u3000\-－]+")
_ID_TOKEN = re.compile(r"[\d*]{14}[\d*Xx]|[\d*]{17}[\d*Xx]|<ID>")
_MOBILE_TOKEN = re.compile(r"(?:\+?86|0086)?(1[\d*]{10})")
_LANDLINE_TOKEN = re.compile(r"\(?0\d{2,3}\)?[\d*]{7,8}")


@dataclass(frozen=True, slots=True, repr=False)
class Header:
    """The parts of a 110 narrative. All string fields are normalised (see :func:`normalize`).

    ``phone`` and ``id_number`` are kept as written (possibly partly masked, e.g.
    ``135****9668``) but with separators and a +86 prefix removed, so they can be used
    for linking. They and ``caller`` are personal data, so ``repr()`` shows placeholders:
    a Header that ends up in a log line or a traceback carries no name, phone or ID.
    ``received_at`` is naive local time; a date without a time of day gives midnight.
    """

    received_at: datetime | None
    caller: str | None
    phone: str | None
    id_number: str | None
    location: str | None
    content: str
    has_header: bool

    def __repr__(self) -> str:
        def hide(value: str | None, placeholder: str) -> str:
            return "None" if value is None else placeholder

        content = self.content
        if self.caller and len(self.caller) >= 2 and self.caller not in _GENERIC_CALLERS:
            content = content.replace(self.caller, NAME)  # the content names the caller too
        loc = "None" if self.location is None else repr(safe_repr(self.location))
        return (
            f"Header(received_at={self.received_at!r}, caller={hide(self.caller, NAME)}, "
            f"phone={hide(self.phone, PHONE)}, id_number={hide(self.id_number, ID)}, location={loc}, "
            f"content={safe_repr(content)!r}, has_header={self.has_header})"
        )


def _to_datetime(m: re.Match[str]) -> datetime | None:
    if m.group("time") is None:
        return None
    if m.group("y") is not None:
        parts = [m.group(k) for k in ("y", "mo", "d", "h", "mi", "s")]
    else:
        parts = [m.group(k) for k in ("y2", "mo2", "d2", "h2", "mi2", "s2")]
    try:
        y, mo, d, h, mi, s = (int(p) if p else 0 for p in parts)
        return datetime(y, mo, d, h, mi, s)
    except ValueError:  # 2月30日, 25时 ...: keep the header, drop the time
        return None


def _split_contacts(block: str | None) -> tuple[str | None, str | None]:
    """Phone and ID number from the bracket block; either may be absent or partly masked."""
    phone: str | None = None
    id_number: str | None = None
    if not block:
        return None, None
    for raw in _CONTACT_SPLIT.split(block):
        token = _CONTACT_STRIP.sub("", raw).replace("＊", "*")
        if not token:
            continue
        if token == "<PHONE>":
            phone = phone or token
        elif id_number is None and _ID_TOKEN.fullmatch(token):
            id_number = token
        elif phone is None and (mobile := _MOBILE_TOKEN.fullmatch(token.replace("+", "", 1))):
            phone = mobile.group(1)
        elif phone is None and _LANDLINE_TOKEN.fullmatch(token):
            phone = token.replace("(", "").replace(")", "")
    return phone, id_number


def _looks_like_place(clause: str) -> bool:
    return (
        0 < len(clause) <= 60
        and _PLACE_MARK.search(clause) is not None
        and _PLACE_END.search(clause) is not None
        and _NOT_PLACE_START.search(clause) is None
        and _NOT_PLACE_WORD.search(clause) is None
    )


def parse_header(narrative: str) -> Header:
    """Split a 110 narrative into time, caller, phone, ID, location and content.

    Tolerant by design: any input (``None``, non-strings, court prose, header-less
    text) gives a Header instead of an exception, with ``has_header=False`` and the whole
    normalised text as ``content`` when no ``<caller>…报警：`` header is found. The
    location is the first clause after the verb, and only when it looks like a place;
    otherwise ``location`` is None and ``content`` is everything after the verb.
    """
    if not isinstance(narrative, str):
        narrative = "" if narrative is None else str(narrative)
    text = normalize(narrative)
    m = _HEADER.match(text)
    if m is None:
        return Header(None, None, None, None, None, text, False)
    caller: str | None = m.group("caller").strip()
    if not caller or caller in _ANONYMOUS:
        caller = None
    phone, id_number = _split_contacts(m.group("paren") or m.group("bare"))
    rest = text[m.end() :].strip()
    location: str | None = None
    content = rest
    sep = _CLAUSE_SEP.search(rest)
    if sep is not None:
        first = rest[: sep.start()].strip()
        if _looks_like_place(first):
            location = first
            content = rest[sep.end() :].strip()
    return Header(_to_datetime(m), caller, phone, id_number, location, content, True)


# --------------------------------------------------------------------------------------------------
# Masking
# --------------------------------------------------------------------------------------------------

ID = "<ID>"
PHONE = "<PHONE>"
PLATE = "<PLATE>"
NAME = "<NAME>"
CARD = "<CARD>"
NUM = "<NUM>"

_NB = r"(?<![\d*＊])"  # not preceded by a digit or a mask star
_NA = r"(?![\d*＊])"  # not followed by one
_NAX = r"(?![\d*＊XxＸｘ])"
_STAR = re.compile(r"[*＊]")
_DIGIT = re.compile(r"\d")
_ID18_SHAPE = re.compile(r"[1-9]\d{5}(?:18|19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]")
_ID15_SHAPE = re.compile(r"[1-9]\d{7}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}")


def _ascii_digits(s: str) -> str:
    return unicodedata.normalize("NFKC", s)


def _repl_id18(m: re.Match[str]) -> str:
    s = m.group(0)
    if not _DIGIT.search(s):
        return s
    if _STAR.search(s) or not s[-1].isdigit():
        return ID
    return ID if _ID18_SHAPE.fullmatch(_ascii_digits(s)) else CARD


def _repl_id15(m: re.Match[str]) -> str:
    s = m.group(0)
    if not _DIGIT.search(s):
        return s
    if _STAR.search(s):
        return ID
    return ID if _ID15_SHAPE.fullmatch(_ascii_digits(s)) else NUM


def _repl_run(m: re.Match[str]) -> str:
    """Leftover runs of digits and mask stars: partly masked numbers, or any 11+ digit run."""
    s = m.group(0)
    digits = len(_DIGIT.findall(s))
    if _STAR.search(s):
        if digits < 2:
            return s
        return ID if len(s) >= 14 else PHONE
    return NUM if digits >= 11 else s


_PLATE_BODY_DIGITS = 3


def _repl_plate(m: re.Match[str]) -> str:
    body = m.group("body")
    return PLATE if len(_DIGIT.findall(body)) >= _PLATE_BODY_DIGITS else m.group(0)


# Order matters: IDs before cards (both 18 digits), cards before phones, generic runs last.
_MASK_RULES: tuple[tuple[re.Pattern[str], Any], ...] = (
    # 18-character IDs: digits, mask stars, trailing X
    (re.compile(_NB + r"[\d*＊]{17}[\d*＊XxＸｘ]" + _NAX), _repl_id18),
    # grouped ID 6-8-4
    (re.compile(_NB + r"\d{6}[ \-]\d{8}[ \-]\d{3}[\dXxＸｘ]" + _NAX), ID),
    # grouped bank card 4-4-4-4(-1..3)
    (re.compile(_NB + r"\d{4}(?:[ \-]\d{4}){3}(?:[ \-]?\d{1,3})?" + _NA), CARD),
    # contiguous bank card 16-19 digits (18 already taken above)
    (re.compile(_NB + r"\d{16,19}" + _NA), CARD),
    # 15-digit (old) IDs
    (re.compile(_NB + r"[\d*＊]{15}" + _NAX), _repl_id15),
    # mobile: optional +86 / 0086 / 86, separators, partly masked
    (
        re.compile(
            r"(?<![\d*＊+＋])(?:(?:[+＋]|00)\s?86[\s\-]?|86[\s\-]?)?"
            r"1[3-9][\d*＊](?:[\s\-]?[\d*＊]{4}){2}" + _NA
        ),
        PHONE,
    ),
    # landline: (0475)8231234, 0475-8231234, 0475 82312345, 047582312345
    (re.compile(_NB + r"(?:[(（]0\d{2,3}[)）]\s?|0\d{2,3}[\s\-]?)[\d*＊]{7,8}" + _NA), PHONE),
    # anything left: partly masked runs, 11+ digit runs
    (re.compile(_NB + r"[\d*＊]{7,}[XxＸｘ]?" + _NAX), _repl_run),
    # a number right after a contact word, whatever its shape (local 7-digit numbers, QQ ...)
    (
        re.compile(r"(电话|手机|号码|联系方式|微信号?|QQ号?|qq号?|座机)([号码是为:：\s]{0,4})\d[\d\s\-]{3,}\d"),
        r"\1\2" + PHONE,
    ),
    # vehicle plates: 蒙G12345, 蒙G·A1234, 蒙GD12345 (new energy), 蒙G1234学
    (
        re.compile(
            r"[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼][A-Za-zＡ-Ｚａ-ｚ]"
            r"[·•・．.\s\-]?(?P<body>[A-Za-z0-9Ａ-Ｚａ-ｚ０-９]{5,6}(?![A-Za-z0-9Ａ-Ｚａ-ｚ０-９])[挂学警]?"
            r"|[A-Za-z0-9Ａ-Ｚａ-ｚ０-９]{4}[挂学警领港澳])"
        ),
        _repl_plate,
    ),
)


def _mask_caller(text: str) -> str:
    """Replace the header's caller, and later occurrences of that exact name, by <NAME>."""
    m = _HEADER.match(text)
    if m is None:
        return text
    caller = m.group("caller")
    name = caller.strip()
    if not name or "<" in name or name in _ANONYMOUS or name in _GENERIC_CALLERS:
        return text
    start, end = m.span("caller")
    rest = text[end:]
    if len(name) >= 2:  # a one-character "name" replaced through the text would destroy it
        rest = rest.replace(name, NAME)
    return text[:start] + NAME + rest


def _apply_rules(text: str) -> str:
    for pattern, repl in _MASK_RULES:
        text = pattern.sub(repl, text)
    return text


def mask(text: str) -> str:
    """Replace personal data by fixed placeholders; idempotent.

    IDs (18/15 digits, partly masked, trailing X) -> ``<ID>``; mobiles (+86, separators,
    partly masked) and landlines -> ``<PHONE>``; bank cards (16-19 digits) -> ``<CARD>``;
    other runs of 11+ digits -> ``<NUM>``; plates -> ``<PLATE>``; the caller named in the
    110 header, and the same name later in the text -> ``<NAME>``. Everything else is left
    exactly as it was (no normalisation), so masked text stays readable.
    """
    if not isinstance(text, str):
        raise TypeError(f"mask() expects str, got {type(text).__name__}")
    return _apply_rules(_mask_caller(text))


def mask_series(s: pd.Series) -> pd.Series:
    """:func:`mask` for a table column, with pandas ``.str.replace`` per rule.

    Missing values stay missing; non-string values (a phone stored as int) are turned
    into strings first so they are masked too. Patterns are passed as compiled Python
    regexes so pandas never hands them to pyarrow's RE2 (which lacks look-arounds and
    treats ``\\d`` as ASCII only): the result equals ``s.map(mask)`` element by element.
    """
    import pandas as pd

    if not isinstance(s, pd.Series):
        raise TypeError(f"mask_series() expects a pandas Series, got {type(s).__name__}")
    missing = s.isna().to_numpy()
    values = [
        v if isna else _mask_caller(v if isinstance(v, str) else str(v))
        for v, isna in zip(s.tolist(), missing, strict=True)
    ]
    out = pd.Series(values, index=s.index, name=s.name, dtype=object)
    if (~missing).any():
        for pattern, repl in _MASK_RULES:
            out = out.str.replace(pattern, repl, regex=True)
    if isinstance(s.dtype, pd.StringDtype):
        out = out.astype(s.dtype)
    return out


_SAFE_SCAN = 2000
_SAFE_LIMIT = 60


def safe_repr(value: object, limit: int = _SAFE_LIMIT) -> str:
    """A short, masked description of ``value`` for error messages and logs.

    Masks before truncating (a cut ID would escape the patterns) and only scans the first
    2,000 characters, so a huge value cannot make an error path slow. Masking shrinks an
    identifier to a placeholder, so the 60 characters shown always come from fully scanned
    text. Never raises.
    """
    try:
        s = value if isinstance(value, str) else repr(value)
    except Exception:  # a broken __repr__ must not break the error path
        return f"<{type(value).__name__}>"
    n = len(s)
    try:
        masked = mask(s[:_SAFE_SCAN])
    except Exception:
        return f"<{type(value).__name__} len={n}>"
    if len(masked) <= limit and n <= _SAFE_SCAN:
        return masked
    return f"{masked[:limit]}…(len={n})"


# --------------------------------------------------------------------------------------------------
# Segmentation
# --------------------------------------------------------------------------------------------------

USERDICT_PATH = Path(__file__).parent / "resources" / "userdict.txt"
_Entry = tuple[str, int | None, str | None]  # word, frequency, part-of-speech tag
Engine = Literal["jieba", "rjieba"]

# Frequency policy for words added at run time (the keyword lexicon): words already in the
# dictionary are left alone; new words get max(3 x jieba's suggested frequency, 50): just enough
# to be cut out whole in context without pulling characters off their neighbours. The user
# dictionary was built with the same rule (docs/text.md).
_EXTRA_MIN_FREQ = 50
_EXTRA_FREQ_FACTOR = 3

# jieba (Python) treats only U+4E00-U+9FD5 as Han; jieba-rs also treats CJK extension A-F and
# compatibility ideographs as Han. The rjieba engine emits those characters alone, as jieba does.
_RS_ONLY_HAN = re.compile(
    "([\u3400-\u4dbf\u9fd6-\u9fff\uf900-\ufaff\U00020000-\U0002a6df\U0002a700-\U0002ebef\U0002f800-\U0002fa1f])"
)
# jieba's HMM path splits non-Han runs with this regex (jieba/finalseg); jieba-rs 0.11 keeps the
# whole run. Only runs containing one of these joiners can differ.
_FINALSEG_SKIP = re.compile(r"([a-zA-Z0-9]+(?:\.\d+)?%?)")
_ASCII_JOINER = re.compile(r"[+#&._%\-]")
_ASCII_RUN = re.compile(r"[a-zA-Z0-9+#&._%\-]{2,}")

_log = logging.getLogger(__name__)


def _jieba_cache_dir() -> Path:
    """A private, per-user directory under the system temp dir for jieba's dictionary cache.

    Never inside the package (read-only installs, and a cache there would be committed or
    shipped), and not the shared temp dir itself: jieba unmarshals the cache, so it must
    sit where only this user can write.
    """
    uid = os.getuid() if hasattr(os, "getuid") else None
    path = Path(tempfile.gettempdir()) / f"yujing-jieba-{uid if uid is not None else 'user'}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = path.stat()
        if uid is not None and (st.st_uid != uid or st.st_mode & 0o022):
            raise PermissionError("jieba cache dir is not private")
        if not os.access(path, os.W_OK):
            raise PermissionError("jieba cache dir is not writable")
        return path
    except OSError:
        return Path(tempfile.mkdtemp(prefix="yujing-jieba-"))


def _quiet_jieba() -> None:
    """jieba logs 'Building prefix dict …' at DEBUG to stderr by default; keep its warnings only."""
    lg = logging.getLogger("jieba")
    if lg.level < logging.WARNING:
        lg.setLevel(logging.WARNING)


def read_userdict(path: Path = USERDICT_PATH) -> list[_Entry]:
    """Entries of a jieba user dictionary (``word [freq] [tag]`` per line)."""
    entries: list[_Entry] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.strip().lstrip("\ufeff").split()
            if not parts:
                continue
            word = parts[0]
            freq: int | None = None
            tag: str | None = None
            for p in parts[1:3]:
                if p.isdigit() and freq is None and tag is None:
                    freq = int(p)
                elif tag is None:
                    tag = p
                else:
                    raise ValueError(f"{path.name}:{lineno}: bad user dictionary line")
            entries.append((word, freq, tag))
    return entries


class Segmenter:
    """jieba word segmentation with the project's user dictionary, on a private tokenizer.

    A private ``jieba.Tokenizer`` (not the global ``jieba.dt``) keeps our dictionary from
    leaking into, or being changed by, other code that uses jieba. The dictionary is loaded
    in the constructor so the first request does not pay for it, and the instance is never
    changed afterwards, which is what makes ``cut`` safe to call from many threads.

    ``engine="rjieba"`` (opt-in) uses jieba-rs through rjieba, about 10x faster; it is made
    to give jieba's tokens exactly (a golden test in tests/test_text.py checks this on
    generated narratives and on real court text). Callers should pass normalised text
    (:func:`normalize`); ``cut`` does not normalise, so that it is a pure function of its input.
    """

    def __init__(
        self,
        extra_words: Iterable[str] = (),
        *,
        engine: Engine = "jieba",
        userdict: Path | None = USERDICT_PATH,
        cache_dir: Path | None = None,
    ) -> None:
        t0 = time.perf_counter()
        if engine not in ("jieba", "rjieba"):
            raise ValueError(f"unknown engine {safe_repr(engine)}; use 'jieba' or 'rjieba'")
        self.engine: Engine = engine
        entries = read_userdict(userdict) if userdict is not None else []
        extra = self._check_extra(extra_words)
        self.added_words: dict[str, int] = {}
        """Frequencies given to user-dictionary and extra words (for audits and tests)."""
        if engine == "jieba":
            self._init_jieba(entries, extra, cache_dir)
        else:
            self._init_rjieba(entries, extra)
        self.init_seconds = time.perf_counter() - t0
        _log.debug("segmenter %s ready in %.3f s (%d words added)", engine, self.init_seconds, len(self.added_words))

    @staticmethod
    def _check_extra(extra_words: Iterable[str]) -> list[str]:
        if isinstance(extra_words, str):
            raise TypeError("extra_words must be an iterable of words, not one string")
        out: list[str] = []
        for w in extra_words:
            if not isinstance(w, str):
                raise TypeError(f"extra word of type {type(w).__name__}; expected str")
            w = normalize(w)
            if not w:
                continue
            if any(c.isspace() for c in w):
                raise ValueError(f"extra word contains whitespace: {safe_repr(w)}")
            out.append(w)
        return out

    def _init_jieba(self, entries: Sequence[_Entry], extra: Sequence[str], cache_dir: Path | None) -> None:
        with warnings.catch_warnings():  # jieba 0.42.1's regex literals warn when first compiled
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", SyntaxWarning)
            import jieba

        _quiet_jieba()
        tk = jieba.Tokenizer()
        tk.tmp_dir = str(cache_dir or _jieba_cache_dir())
        tk.initialize()
        # jieba sums every line of dict.txt into the total, so a duplicated line (B超 is listed
        # twice) is counted twice; jieba-rs sums the distinct words. Use the distinct sum, and keep
        # it exact below, so both engines score every route the same.
        tk.total = sum(tk.FREQ.values())

        def add(word: str, freq: int, tag: str | None) -> None:
            # jieba adds the new frequency to the total without taking the old one off when a
            # word is already in the dictionary; jieba-rs (and arithmetic) replaces it.
            old = tk.FREQ.get(word, 0)
            tk.add_word(word, freq, tag)
            tk.total -= old
            self.added_words[word] = freq

        for word, freq, tag in entries:
            add(word, freq if freq is not None else self._extra_freq(tk.suggest_freq(word, False)), tag)
        for word in extra:
            if not tk.FREQ.get(word):
                add(word, self._extra_freq(tk.suggest_freq(word, False)), None)
        self._tk = tk
        self._rj = None

    def _init_rjieba(self, entries: Sequence[_Entry], extra: Sequence[str]) -> None:
        import rjieba

        rj = rjieba.Jieba()
        for word, freq, tag in entries:
            f = freq if freq is not None else self._extra_freq(rj.suggest_freq(word))
            rj.add_word(word, f, tag)
            self.added_words[word] = f
        for word in extra:
            if not rj.has_word(word):
                f = self._extra_freq(rj.suggest_freq(word))
                rj.add_word(word, f, None)
                self.added_words[word] = f
        self._tk = None
        self._rj = rj

    @staticmethod
    def _extra_freq(suggested: int) -> int:
        return max(_EXTRA_FREQ_FACTOR * int(suggested), _EXTRA_MIN_FREQ)

    def cut(self, text: str, hmm: bool = True) -> list[str]:
        """Tokens of ``text``; ``hmm=True`` lets jieba join unknown words (names, places)."""
        if not isinstance(text, str):
            raise TypeError(f"cut() expects str, got {type(text).__name__}")
        if self._tk is not None:
            return list(self._tk.cut(text, HMM=hmm))
        if _RS_ONLY_HAN.search(text) is None:
            return self._rj_cut(text, hmm)
        out: list[str] = []
        for i, piece in enumerate(_RS_ONLY_HAN.split(text)):
            if i % 2:
                out.append(piece)
            elif piece:
                out.extend(self._rj_cut(piece, hmm))
        return out

    def _rj_cut(self, text: str, hmm: bool) -> list[str]:
        rj = self._rj
        assert rj is not None
        tokens: list[str] = rj.cut(text, hmm)
        if not hmm or _ASCII_JOINER.search(text) is None:
            return tokens
        out: list[str] = []
        for t in tokens:
            if len(t) > 1 and _ASCII_RUN.fullmatch(t) and not _FINALSEG_SKIP.fullmatch(t) and not rj.has_word(t):
                out.extend(p for p in _FINALSEG_SKIP.split(t) if p)
            else:
                out.append(t)
        return out

    def cut_many(self, texts: Iterable[str], hmm: bool = True) -> list[list[str]]:
        """:meth:`cut` over many texts, in order."""
        cut = self.cut
        return [cut(t, hmm) for t in texts]

    def __repr__(self) -> str:
        return f"Segmenter(engine={self.engine!r}, added_words={len(self.added_words)})"


_SEGMENTER: Segmenter | None = None
_SEGMENTER_LOCK = threading.Lock()


def get_segmenter() -> Segmenter:
    """The process-wide default :class:`Segmenter` (jieba engine, project user dictionary).

    Built once, under a lock, on first use: a server's concurrent first requests wait for
    one dictionary load instead of each building their own.
    """
    global _SEGMENTER
    seg = _SEGMENTER
    if seg is None:
        with _SEGMENTER_LOCK:
            seg = _SEGMENTER
            if seg is None:
                seg = _SEGMENTER = Segmenter()
    return seg
