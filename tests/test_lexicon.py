"""The packaged keyword library and its validation (features.lexicon)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from features.keywords import get_matcher
from features.lexicon import (
    CATEGORIES,
    CUE_GROUPS,
    FRAME_GROUPS,
    MIN_CATEGORY_ENTRIES,
    NEGATION_GROUPS,
    Entry,
    Lexicon,
    LexiconError,
    default_lexicon,
    default_lexicon_path,
    lexicon_version,
    load_lexicon,
    validate,
)

HEADER = "term,kind,group,weight,match,note"


@pytest.fixture(scope="module")
def packaged_text() -> str:
    return default_lexicon_path().read_text(encoding="utf-8")


def _write(tmp_path: Path, text: str, extra: list[str] | None = None) -> tuple[Path, int]:
    """Write ``text`` plus ``extra`` rows; return the path and the line number of the first extra row."""
    body = text.rstrip("\n") + "\n"
    first_extra = body.count("\n") + 1
    if extra:
        body += "\n".join(extra) + "\n"
    path = tmp_path / "lexicon.csv"
    path.write_text(body, encoding="utf-8")
    return path, first_extra


def _error(path: Path) -> LexiconError:
    with pytest.raises(LexiconError) as info:
        load_lexicon(path)
    return info.value


# -- the packaged library ------------------------------------------------------------------------


def test_packaged_lexicon_is_valid_and_large_enough() -> None:
    lex = load_lexicon()
    assert validate(lex) == []
    assert lex.n_category_entries() >= MIN_CATEGORY_ENTRIES
    counts = lex.counts()
    for code in CATEGORIES:
        assert counts.get(("category", code), 0) >= 150, code
    for group in CUE_GROUPS:
        assert counts.get(("cue", group), 0) >= 30, group
    for group in NEGATION_GROUPS:
        assert counts.get(("negation", group), 0) >= 50, group


def test_packaged_distribution_is_realistic() -> None:
    """debt, family and neighbor carry most disputes (BRIEF §4), so they have the most vocabulary."""
    counts = default_lexicon().counts()
    per_cat = {c: counts[("category", c)] for c in CATEGORIES}
    top3 = sorted(per_cat, key=per_cat.__getitem__, reverse=True)[:3]
    assert set(top3) == {"debt", "family", "neighbor"}


def test_packaged_lexicon_loads_from_package_resources() -> None:
    path = default_lexicon_path()
    assert path.name == "lexicon.csv" and path.parent.name == "resources"
    assert path.is_file()
    assert default_lexicon().source == str(path)


def test_regional_land_vocabulary_present() -> None:
    land = {e.term for e in default_lexicon() if e.kind == "category" and e.group == "land"}
    for term in ("草场", "嘎查", "牧户", "放牧", "网围栏", "饮水井", "苏木", "宅基地", "承包地"):
        assert term in land, term


# -- version -------------------------------------------------------------------------------------


def test_version_is_12_hex_and_independent_of_row_order() -> None:
    lex = default_lexicon()
    assert re.fullmatch(r"[0-9a-f]{12}", lex.version)
    assert Lexicon(tuple(reversed(lex.entries))).version == lex.version
    assert lexicon_version(lex.entries) == lex.version


def test_version_stable_across_loads_and_copies(tmp_path: Path, packaged_text: str) -> None:
    path, _ = _write(tmp_path, packaged_text)
    assert load_lexicon(path).version == load_lexicon().version


def test_version_changes_with_content_not_with_notes() -> None:
    lex = default_lexicon()
    entries = list(lex.entries)
    first = entries[0]
    reweighted = [dataclasses.replace(first, weight=first.weight / 2), *entries[1:]]
    assert Lexicon(tuple(reweighted)).version != lex.version
    added = [*entries, Entry("测试新词", "category", "other", 0.5)]
    assert Lexicon(tuple(added)).version != lex.version
    renoted = [dataclasses.replace(first, note="edited note"), *entries[1:]]
    assert Lexicon(tuple(renoted)).version == lex.version
    # "0.50" and "0.5" are the same library
    assert lexicon_version([Entry("甲乙", "category", "debt", 0.50)]) == lexicon_version(
        [Entry("甲乙", "category", "debt", 0.5)]
    )


# -- validation: each rule names the file, the line and the fix ----------------------------------


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("欠钱不还,category,debt,0.9,substr,", "duplicate of line"),
        ("欠钱不还,category,family,0.9,substr,", "category 'family' here and 'debt'"),
        ("欠钱不还,negation,negation,0.9,substr,", "a negation term cannot be anything else"),
        ("新的词语,category,debt,0,substr,", "weight is 0.0"),
        ("新的词语,category,debt,1.5,substr,", "weight is 1.5"),
        ("新的词语,category,debt,abc,substr,", "weight is not a number"),
        ("新的词语,category,gambling,0.5,substr,", "group 'gambling' is not valid for kind 'category'"),
        ("新的词语,keyword,debt,0.5,substr,", "kind 'keyword' is not one of"),
        ("新的词语,category,debt,0.5,regex,", "match 'regex' is not a match mode"),
        ("钱,category,debt,0.5,substr,", "single character"),
        ("１２０急救车,cue,injury,0.5,substr,", "write it as '120急救车'"),
        ("新的 词语,category,debt,0.5,substr,", "contains whitespace"),
        (",category,debt,0.5,substr,", "term is empty"),
        ("新词,category,debt,0.5,substr", "expected 6 fields, found 5"),
        ("夫妻互殴打架,category,family,0.9,substr,", "contains the cue '打架' (violence"),
        ("邻居未动手了,category,neighbor,0.5,substr,", "contains the negation '未动手'"),
        (
            "殴打后已调解,negation,deescalation,0.5,substr,",
            "deescalation term '殴打后已调解' contains the cue",
        ),
    ],
)
def test_invalid_row_is_reported_with_file_line_and_fix(
    tmp_path: Path, packaged_text: str, row: str, expected: str
) -> None:
    path, line = _write(tmp_path, packaged_text, [row])
    err = _error(path)
    hits = [p for p in err.problems if expected in p]
    assert hits, err.problems[:5]
    assert all(f"{path}:{line}:" in p and "Fix:" in p for p in hits), hits
    assert str(path) in str(err)


def test_carried_cue_makes_a_containing_phrase_valid(tmp_path: Path, packaged_text: str) -> None:
    rows = ["夫妻互殴打架,category,family,0.9,substr,", "夫妻互殴打架,cue,violence,0.9,substr,"]
    path, _ = _write(tmp_path, packaged_text, rows)
    lex = load_lexicon(path)
    assert {(e.kind, e.group) for e in lex if e.term == "夫妻互殴打架"} == {
        ("category", "family"),
        ("cue", "violence"),
    }


def test_missing_category_and_cue_group_are_reported(tmp_path: Path, packaged_text: str) -> None:
    kept = [ln for ln in packaged_text.splitlines() if ",category,property," not in ln and ",cue,alcohol," not in ln]
    # (phrases that carried an alcohol cue lose that row too, so only coverage fails)
    path, _ = _write(tmp_path, "\n".join(kept))
    problems = _error(path).problems
    assert any("no entries for category group 'property'" in p and "Fix:" in p for p in problems)
    assert any("no entries for cue group 'alcohol'" in p for p in problems)
    assert all(str(path) in p for p in problems)


def test_too_few_category_entries_is_reported(tmp_path: Path) -> None:
    rows = [f"{c}词语,category,{c},0.5,substr," for c in CATEGORIES]
    rows += [f"{g}词语,cue,{g},0.5,substr," for g in CUE_GROUPS]
    rows += [f"{g}词语,negation,{g},0.5,substr," for g in NEGATION_GROUPS]
    rows += [f"{c}的人,role,{c},0.5,substr," for c in CATEGORIES]
    rows += [f"{g}框架,frame,{g},1.0,substr," for g in FRAME_GROUPS]
    path, _ = _write(tmp_path, HEADER, rows)
    problems = _error(path).problems
    assert problems == [
        f"{path}: only 8 category entries; the library needs at least 2,400. "
        "Fix: add real dispute vocabulary to the thin categories"
    ]


def test_bad_header_and_bad_encoding(tmp_path: Path) -> None:
    path = tmp_path / "lexicon.csv"
    path.write_text("word,type,weight\n欠钱,debt,0.9\n", encoding="utf-8")
    assert "header is 'word,type,weight'" in _error(path).problems[0]
    path.write_bytes(HEADER.encode() + "\n欠钱不还,category,debt,0.9,substr,\n".encode("gb18030"))
    err = _error(path)
    assert err.problems[0].startswith(f"{path}:2: not valid UTF-8")


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_lexicon(tmp_path / "nope.csv")


def test_validate_works_on_in_memory_lexicons() -> None:
    lex = Lexicon((Entry("甲乙", "category", "debt", 0.5), Entry("甲乙", "category", "debt", 0.7)))
    problems = validate(lex)
    assert any("duplicate" in p for p in problems)
    assert any("only 2 category entries" in p for p in problems)


def test_structure_rows_are_not_matched_as_keywords() -> None:
    """Role and frame rows feed features/frames.py; the keyword automaton never reports them."""
    lex = default_lexicon()
    assert {e.kind for e in lex} == {"category", "cue", "negation", "role", "frame"}
    kinds = {x.kind for x in get_matcher(lex).match("称其与前夫因彩礼发生纠纷，被前夫打伤，对方扬言报复")}
    assert kinds and kinds <= {"category", "cue", "negation"}
