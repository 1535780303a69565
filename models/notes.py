"""Masking the free-text notes stations write before they are stored (the closed loop's feedback).

A note is written by an officer about a family, so it names people. The
project's masker (features.text.mask) takes IDs, phones, cards and plates;
names need the segmenter and the surname list the dispute model already
uses (models.text_features). Kept apart from the HTTP route so any other
writer of free text (a workbench form, an import) masks the same way.
"""

from __future__ import annotations

import functools
import re

from features.text import NAME, get_segmenter, mask
from models.text_features import SURNAMES, person_name_words

_NAME_MARKERS = (
    "姓名|名叫|叫做|我叫|我是|名字是|名字叫|本人|当事人|报警人|户主|联系人|家属|丈夫|妻子|老公|老婆|"
    "儿子|女儿|父亲|母亲|邻居|对方|走访|联系了|联系|找到|约谈|见到"
)

_COMPOUND_SURNAMES = (
    "欧阳",
    "司马",
    "诸葛",
    "上官",
    "东方",
    "皇甫",
    "尉迟",
    "公孙",
    "慕容",
    "长孙",
    "夏侯",
    "令狐",
    "端木",
)


def mask_note(note: str) -> str:
    """A station's note with IDs, phones, plates and names replaced, before it is stored.

    The project's masker (features.text.mask) replaces IDs, phones, cards,
    plates and a 110 header's caller. Names in free text have no reliable
    pattern, so three rules are added, each erring towards masking:
    a person-name word of the segmenter's dictionary (``王建国``; the same
    list the dispute model replaces before counting tokens), a word jieba
    found only by its HMM (not in any dictionary) that starts with a common
    surname (``王翠兰``), and a surname (or a compound one, 司马) plus one or two characters
    right after a marker such as 姓名/我是/当事人/户主/走访. A name written without any of
    these (a rare given name split into dictionary words, no marker before it)
    can still pass: docs/serving.md says so.
    """
    text = mask(note)
    segmenter = get_segmenter()
    names = person_name_words()
    plain = set(segmenter.cut(text, hmm=False))
    found = {
        tok
        for tok in segmenter.cut(text)
        if tok in names
        or (tok not in plain and 2 <= len(tok) <= 4 and (tok[0] in SURNAMES or tok[:2] in _COMPOUND_SURNAMES))
    }
    for tok in sorted(found, key=len, reverse=True):
        text = text.replace(tok, NAME)
    return _after_marker(SURNAMES).sub(lambda m: m.group(1) + m.group(2) + NAME, text)


@functools.cache
def _after_marker(surnames: str) -> re.Pattern[str]:
    """A marker (姓名, 我是, 当事人 ...), up to two joiners (：是为叫), then a surname and one or two characters."""
    compound = "|".join(_COMPOUND_SURNAMES)
    return re.compile(f"({_NAME_MARKERS})([：:\\s是为叫]{{0,2}})(?:{compound}|[{surnames}])[\u4e00-\u9fff]{{1,2}}")
