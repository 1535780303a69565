"""Keyword matching throughput: Aho-Corasick matcher vs naive scans, one core.

Run from the repository root::

    .venv/bin/python benchmarks/bench_matching.py [--n 20000] [--seed 7]

The sample is synthetic on purpose (real text stays outside the repository):
~40 hand-written 110-style narratives, cycled and perturbed with a random
header (time, masked caller, phone and ID), a location, and filler clauses, so
every text differs and lengths vary around 80 characters. A correctness check
asserts that the automaton finds exactly the term set of the naive scan.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable as a plain script from any directory
    sys.path.insert(0, str(REPO))

from features.keywords import get_matcher  # noqa: E402
from features.lexicon import default_lexicon  # noqa: E402
from features.text import normalize  # noqa: E402
from models.rules import rule_features, score_text  # noqa: E402

NARRATIVES: tuple[str, ...] = (
    "称被丈夫殴打，头部受伤，不需要120",
    "称其老公喝多了在家摔东西，孩子吓哭了，请求出警",
    "称前男友一直打电话骚扰，今天堵在单位门口不让走",
    "称儿子向其要钱买车不给就骂人，老人情绪激动",
    "称与妻子因孩子上学问题吵架，妻子要回娘家",
    "称婆婆和儿媳因做饭琐事发生口角，未动手",
    "称楼上半夜跺脚噪音扰民，多次沟通无果",
    "称楼上卫生间漏水把自家天花板泡了，对方不开门",
    "称对门邻居在楼道堆放杂物，双方发生争执",
    "称邻居家的狗没拴绳把孩子吓到了，双方吵了起来",
    "称车位被人私装地锁，找物业也没人管",
    "称同村李某借其三万元至今未还，今天上门要账被对方推搡",
    "称合伙开饭店散伙后账目不清，双方因分钱发生纠纷",
    "称有人到家里讨债，说其丈夫欠高利贷，扬言不还钱就天天来",
    "称卖给粮贩子的玉米款一直没给，对方电话不接",
    "称朋友借车不还，车里还有东西",
    "称草场边界的网围栏被邻居拆了，牛羊跑进自家草场",
    "称邻村的羊群进地把玉米啃了，找对方理论发生口角",
    "称与邻居因宅基地地界问题发生争吵，对方要砌墙",
    "称嘎查两户牧民因饮水井用水发生纠纷",
    "称在工地干了两个月活，包工头拖欠工资不给",
    "称饭店老板辞退其后不给结工钱，双方争吵",
    "称在厂里干活时手被机器压伤，老板不给算工伤",
    "称患者家属在医院门口拉横幅，称医生误诊",
    "称孩子在学校被同学打了，家长到学校讨说法",
    "称培训机构跑路，几十名家长要求退培训费",
    "称物业停水停电，业主与物业人员发生冲突",
    "称房东不退押金还换了门锁，与房东发生争执",
    "称在超市买到过期食品，商家拒绝退款，双方吵了起来",
    "称与出租车司机因车费发生口角",
    "称两车剐蹭，双方因赔偿协商不成发生争执",
    "称在烧烤店与邻桌因琐事发生口角，对方持酒瓶砸人",
    "称有人在微信群里造谣辱骂其本人",
    "称家中被盗，丢失现金两千元",
    "称在公交车上钱包被偷",
    "称接到陌生电话冒充客服，被骗转账五千元",
    "称在路口发生交通事故，双方车辆受损，无人受伤",
    "称母亲外出走失，穿灰色上衣，至今未归",
    "称小区内有车辆着火，请求消防支援",
    "称丈夫扬言要喝农药自杀，现已离家",
)
CALLERS = ("张女士", "李先生", "王女士", "刘先生", "赵女士", "陈某", "孙女士", "巴特尔", "其木格", "乌云")
PLACES = (
    "科尔沁区某小区4号楼1单元302室",
    "开鲁县某镇某村",
    "科左中旗某苏木某嘎查",
    "奈曼旗某街道某饭店门口",
    "霍林郭勒市某小区门口",
    "扎鲁特旗某镇农贸市场",
)
FILLERS = ("", "，其余情况不清", "，现场有人围观", "，请民警到场处理", "，对方已离开现场", "，双方情绪激动")


def make_sample(n: int, seed: int) -> list[str]:
    """``n`` raw 110 records: header + location + narrative + filler, all masked."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        body = NARRATIVES[i % len(NARRATIVES)]
        head = ""
        if rng.random() < 0.7:
            phone = f"1{rng.randint(30, 89)}****{rng.randint(1000, 9999)}"
            id_no = f"1505**********{rng.randint(1000, 9999)}"  # masked, as in real exports
            day = f"2024年{rng.randint(1, 12)}月{rng.randint(1, 28)}日"
            when = f"{day} {rng.randint(0, 23)}时{rng.randint(0, 59)}分"
            head = f"{when} {rng.choice(CALLERS)}( {phone}，{id_no} ) 报警："
        out.append(f"{head}{rng.choice(PLACES)}，{body}{rng.choice(FILLERS)}。")
    return out


def rate(fn: Callable[[Sequence[str]], object], texts: Sequence[str], repeat: int = 3) -> float:
    """Best-of-``repeat`` texts per second for ``fn`` over the whole sample."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(texts)
        best = min(best, time.perf_counter() - t0)
    return len(texts) / best


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20_000, help="texts for the fast methods")
    ap.add_argument("--n-slow", type=int, default=1_000, help="texts for the naive methods")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)

    lex = default_lexicon()
    matcher = get_matcher(lex)
    raw = make_sample(args.n, args.seed)
    norm = [normalize(t) for t in raw]
    terms = sorted({e.term for e in lex})
    term_set = frozenset(terms)

    # correctness: the automaton sees every occurrence the naive scan sees
    import ahocorasick

    check = ahocorasick.Automaton()  # the same terms keyed by characters, for the comparison row
    for t in terms:
        check.add_word(t, t)
    check.make_automaton()
    for text in norm[: args.n_slow]:
        assert {t for _e, t in check.iter(text)} == {t for t in terms if t in text}, text
        assert {x.term for x in matcher.match_normalized(text)} <= {t for t in terms if t in text}, text

    import jieba

    jieba.setLogLevel(60)
    jieba.lcut(norm[0])  # load the dictionary outside the timing

    def normalize_only(ts: Sequence[str]) -> None:
        for t in ts:
            normalize(t)

    def chars_iter_only(ts: Sequence[str]) -> None:
        for t in ts:
            list(check.iter(t))

    def ac_summary_norm(ts: Sequence[str]) -> None:
        for t in ts:
            matcher.summary_normalized(t)

    def ac_summary(ts: Sequence[str]) -> None:
        for t in ts:
            matcher.summary(t)

    def ac_match(ts: Sequence[str]) -> None:
        for t in ts:
            matcher.match(t)

    def score(ts: Sequence[str]) -> None:
        for t in ts:
            score_text(t, matcher)

    def naive(ts: Sequence[str]) -> None:
        for t in ts:
            [term for term in terms if term in t]

    def jieba_tokens(ts: Sequence[str]) -> None:
        for t in ts:
            [w for w in jieba.lcut(t) if w in term_set]

    slow = args.n_slow
    rows = [
        ("aho-corasick summary, pre-normalised text", rate(ac_summary_norm, norm), args.n),
        ("  same terms keyed by characters: raw iter() only", rate(chars_iter_only, norm), args.n),
        ("  features.text.normalize() alone", rate(normalize_only, raw), args.n),
        ("aho-corasick summary incl. normalize()", rate(ac_summary, raw), args.n),
        ("aho-corasick match() -> Match objects", rate(ac_match, raw), args.n),
        (
            "rule_features() (vectorised, incl. header split)",
            rate(lambda ts: rule_features(ts, matcher), raw),
            args.n,
        ),
        ("score_text() full explanation", rate(score, raw), args.n),
        ("naive `term in text` loop, pre-normalised", rate(naive, norm[:slow], repeat=1), slow),
        (
            "jieba tokens & term set (misses multi-token terms)",
            rate(jieba_tokens, norm[:slow], repeat=1),
            slow,
        ),
    ]
    counts = lex.counts()
    n_cat = lex.n_category_entries()
    print(
        f"python {platform.python_version()} ({platform.machine()}), "
        f"pyahocorasick {version('pyahocorasick')}, jieba {version('jieba')}"
    )
    print(
        f"lexicon {lex.version}: {len(lex)} entries, {len(terms)} distinct terms, {n_cat} category entries, "
        f"{sum(v for (k, _g), v in counts.items() if k == 'cue')} cue, "
        f"{sum(v for (k, _g), v in counts.items() if k == 'negation')} negation"
    )
    lengths = [len(t) for t in norm]
    print(
        f"sample: {args.n} texts, mean {statistics.mean(lengths):.0f} chars "
        f"(min {min(lengths)}, max {max(lengths)}), seed {args.seed}; single thread"
    )
    print()
    print(f"| {'method':<52} | {'texts':>6} | {'texts/s':>10} | {'us/text':>8} |")
    print(f"|{'-' * 54}|{'-' * 8}|{'-' * 12}|{'-' * 10}|")
    for name, per_s, n in rows:
        print(f"| {name:<52} | {n:>6} | {per_s:>10,.0f} | {1e6 / per_s:>8.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
