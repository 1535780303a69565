"""The Aho-Corasick matcher: longest match, negation scope, offsets, caching, thread safety.

Speed is measured in benchmarks/bench_matching.py, not here.
"""

from __future__ import annotations

import math
import random
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from features.keywords import (
    NEGATION_WINDOW,
    KeywordMatcher,
    Match,
    cue_groups_of,
    get_matcher,
)
from features.lexicon import CATEGORIES, Entry, Lexicon, default_lexicon
from features.text import normalize

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_matching import make_sample


@pytest.fixture(scope="module")
def matcher() -> KeywordMatcher:
    return get_matcher()


def _tiny(*rows: tuple[str, str, str]) -> KeywordMatcher:
    """A matcher over a hand-made lexicon (not validated: only matching semantics are under test)."""
    return KeywordMatcher(Lexicon(tuple(Entry(t, k, g, 0.5) for t, k, g in rows)))


def _cues(m: KeywordMatcher, text: str) -> tuple[set[str], set[str]]:
    """(un-negated cue groups, negated cue groups) from match()."""
    found = [x for x in m.match(text) if x.kind == "cue"]
    return {x.group for x in found if not x.negated}, {x.group for x in found if x.negated}


# -- longest match -------------------------------------------------------------------------------


def test_negation_hides_the_cue_inside_it(matcher: KeywordMatcher) -> None:
    found = matcher.match("双方发生口角，未动手")
    assert [(x.term, x.kind) for x in found if x.term in ("未动手", "动手")] == [("未动手", "negation")]
    found = matcher.match("被打伤，不需要120")
    terms = [x.term for x in found]
    assert "不需要120" in terms and "需要120" not in terms


def test_inner_occurrence_dropped_partial_overlaps_kept() -> None:
    m = _tiny(
        ("被打", "cue", "violence"),
        ("打伤", "cue", "injury"),
        ("丈夫", "category", "family"),
        ("被丈夫打", "category", "family"),
    )
    spans = [(x.term, x.start, x.end) for x in m.match("她被丈夫打了，又被打伤")]
    assert spans == [("被丈夫打", 1, 5), ("被打", 8, 10), ("打伤", 9, 11)]


def test_one_span_reports_every_entry_of_its_term(matcher: KeywordMatcher) -> None:
    found = [(x.kind, x.group) for x in matcher.match("长期遭受家暴") if x.term == "家暴"]
    assert ("category", "family") in found and ("cue", "violence") in found


def _reference(text: str, terms: list[str]) -> list[tuple[int, int, str]]:
    occ = [(i, i + len(t), t) for t in terms for i in range(len(text)) if text.startswith(t, i)]
    kept = [o for o in occ if not any(p != o and p[0] <= o[0] and o[1] <= p[1] for p in occ)]
    return sorted(kept)


@pytest.mark.parametrize("seed", range(5))
def test_span_resolution_matches_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = "甲乙丙丁"
    for _ in range(300):
        terms = sorted({"".join(rng.choice(alphabet) for _ in range(rng.randint(2, 4))) for _ in range(6)})
        m = _tiny(*((t, "category", "other") for t in terms))
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 18)))
        got = sorted({(x.start, x.end, x.term) for x in m.match(text)})
        assert got == _reference(text, terms), (terms, text)


# -- negation scope ------------------------------------------------------------------------------


def test_brief_examples(matcher: KeywordMatcher) -> None:
    kept, _ = _cues(matcher, "称被丈夫殴打，未受伤")
    assert "violence" in kept and "injury" not in kept
    summary = matcher.summary("称被丈夫殴打，未受伤")
    assert cue_groups_of(summary.cue_mask) == ["violence"]
    assert "injury" in cue_groups_of(summary.negated_mask)

    kept, _ = _cues(matcher, "双方发生口角，未动手")
    assert "violence" not in kept
    assert cue_groups_of(matcher.summary("双方发生口角，未动手").negated_mask) == ["violence"]


def test_negation_scope_is_limited_to_the_groups_it_names(matcher: KeywordMatcher) -> None:
    assert "violence" in _cues(matcher, "没有喝酒就动手打人")[0]  # alcohol negation, violence kept
    assert _cues(matcher, "没有动手打人")[0] == set()


def test_scope_ends_at_clause_punctuation_space_and_contrast(matcher: KeywordMatcher) -> None:
    assert _cues(matcher, "未动手，对方持刀")[0] == {"weapon"}
    generic = _tiny(("并未", "negation", "negation"), ("殴打", "cue", "violence"))
    assert _cues(generic, "并未殴打")[1] == {"violence"}
    for text in (
        "并未，殴打",
        "并未。殴打",
        "并未;殴打",
        "并未 殴打",
        "并未\n殴打",
        "并未但殴打",
        "并未却殴打",
    ):
        assert _cues(generic, text) == ({"violence"}, set()), text


def test_scope_window_in_characters() -> None:
    m = _tiny(("并未", "negation", "negation"), ("殴打", "cue", "violence"))
    inside = "并未" + "对" * NEGATION_WINDOW + "殴打"
    outside = "并未" + "对" * (NEGATION_WINDOW + 1) + "殴打"
    assert _cues(m, inside) == (set(), {"violence"})
    assert _cues(m, outside) == ({"violence"}, set())


def test_cues_before_a_negation_are_not_negated() -> None:
    m = _tiny(("并未", "negation", "negation"), ("殴打", "cue", "violence"))
    assert _cues(m, "殴打并未") == ({"violence"}, set())


def test_partially_overlapping_cue_is_negated() -> None:
    m = _tiny(("无人受伤", "negation", "negation"), ("受伤", "cue", "injury"), ("伤害人", "cue", "injury"))
    found = {(x.term, x.negated) for x in m.match("无人受伤害人")}
    assert ("伤害人", True) in found


def test_deescalation_is_counted_and_cancels_nothing(matcher: KeywordMatcher) -> None:
    text = "双方因琐事发生口角并互相推搡，经民警调解已和解"
    summary = matcher.summary(text)
    assert "violence" in cue_groups_of(summary.cue_mask)
    assert summary.n_deescalation >= 1 and summary.n_negation == 0
    assert cue_groups_of(summary.negated_mask) == []


@pytest.mark.parametrize(
    ("group", "text"),
    [
        ("violence", "称被丈夫拳打脚踢，现场很乱"),
        ("weapon", "对方拿着菜刀在楼道里追人"),
        ("injury", "被打得头破血流，已送医院"),
        ("threat", "对方扬言要杀他全家"),
        ("alcohol", "其丈夫酒后回家闹事"),
        ("self_harm", "妻子扬言要喝农药自杀"),
        ("separation", "两人正在闹离婚，女方已搬回娘家"),
        ("repeat", "这是她本月第三次报警，男方又来了"),
    ],
)
def test_every_cue_group_fires_on_a_realistic_sentence(matcher: KeywordMatcher, group: str, text: str) -> None:
    assert group in _cues(matcher, text)[0]
    assert group in cue_groups_of(matcher.summary(text).cue_mask)


# -- offsets, summary consistency, caching ---------------------------------------------------------


def test_offsets_index_the_normalised_text(matcher: KeywordMatcher) -> None:
    texts = [*make_sample(400, seed=3), "ＡＢＣ  称被丈夫殴打，\n未受伤，不需要１２０"]
    for raw in texts:
        norm = normalize(raw)
        for x in matcher.match(raw):
            assert norm[x.start : x.end] == x.term, (raw, x)


def test_match_normalized_skips_a_prefix_but_keeps_offsets(matcher: KeywordMatcher) -> None:
    text = normalize("张女士(邻居) 报警:称被丈夫殴打")
    start = text.index("称")
    found = matcher.match_normalized(text, start)
    assert found and all(x.start >= start and text[x.start : x.end] == x.term for x in found)
    assert "邻居" not in {x.term for x in found}
    assert "邻居" in {x.term for x in matcher.match_normalized(text)}


def test_summary_agrees_with_match(matcher: KeywordMatcher) -> None:
    for raw in make_sample(600, seed=11):
        found = matcher.match(raw)
        summary = matcher.summary(raw)
        assert set(cue_groups_of(summary.cue_mask)) == {x.group for x in found if x.kind == "cue" and not x.negated}
        assert {x.group for x in found if x.kind == "cue" and x.negated} <= set(cue_groups_of(summary.negated_mask))
        for i, code in enumerate(CATEGORIES):
            weights = {x.term: x.weight for x in found if x.kind == "category" and x.group == code}
            expected = 1.0
            for w in weights.values():
                expected *= 1 - w
            assert summary.category_evidence[i] == pytest.approx(-math.log(expected) if weights else 0.0)
        assert summary.n_negation == sum(1 for x in found if x.kind == "negation" and x.group == "negation")


def test_match_is_a_frozen_dataclass(matcher: KeywordMatcher) -> None:
    x = matcher.match("对方持刀")[0]
    assert isinstance(x, Match)
    with pytest.raises(AttributeError):
        x.negated = True  # type: ignore[misc]


def test_matcher_cached_per_lexicon_version() -> None:
    assert get_matcher() is get_matcher(default_lexicon())
    other = Lexicon((*default_lexicon().entries, Entry("测试专用词", "category", "other", 0.5)))
    m2 = get_matcher(other)
    assert m2 is not get_matcher() and m2.version == other.version
    assert get_matcher(Lexicon(other.entries)) is m2  # same content, same matcher


def test_matcher_is_safe_to_share_between_threads(matcher: KeywordMatcher) -> None:
    texts = make_sample(2000, seed=5)
    expected = [matcher.summary(t) for t in texts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        chunks = list(pool.map(lambda chunk: [matcher.summary(t) for t in chunk], [texts] * 4))
    assert all(chunk == expected for chunk in chunks)
