"""Tests for features/text.py: normalisation, 110 headers, masking, segmentation.

No personal data is stored here: ID numbers, phones and cards are generated at test
time (IDs with a valid checksum, so the ID rules are tested on IDs that look real).
"""

from __future__ import annotations

import json
import logging
import random
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

import features.text as text_mod
from features.text import (
    USERDICT_PATH,
    Header,
    Segmenter,
    get_segmenter,
    mask,
    mask_series,
    normalize,
    parse_header,
    read_userdict,
    safe_repr,
)

ROOT = Path(__file__).resolve().parents[1]
REALTEXT = ROOT.parent / "shared" / "realtext"

# --------------------------------------------------------------------------------------------------
# Generators (also used by benchmarks/bench_text.py)
# --------------------------------------------------------------------------------------------------


def _w(words: str) -> list[str]:
    return words.split()


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_REGIONS = ("150502", "150521", "150522", "150523", "150524", "150525", "150526", "150581", "152301")


def make_id(rng: random.Random) -> str:
    """A fake 18-digit resident ID with a valid GB 11643 checksum."""
    body = (
        rng.choice(_REGIONS)
        + f"{rng.randint(1940, 2012):04d}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        + f"{rng.randint(0, 999):03d}"
    )
    check = _ID_CHECK[sum(int(c) * w for c, w in zip(body, _ID_WEIGHTS, strict=True)) % 11]
    return body + check


def make_id15(rng: random.Random) -> str:
    return (
        rng.choice(_REGIONS)
        + f"{rng.randint(40, 99):02d}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        + (f"{rng.randint(0, 999):03d}")
    )


def make_mobile(rng: random.Random) -> str:
    return "1" + rng.choice("3456789") + "".join(rng.choice("0123456789") for _ in range(9))


def make_card(rng: random.Random) -> str:
    n = rng.choice((16, 17, 19))
    return "62" + "".join(rng.choice("0123456789") for _ in range(n - 2))


def make_plate(rng: random.Random) -> str:
    letter = rng.choice("ABCDEFGHJKLMN")
    kind = rng.randrange(4)
    if kind == 0:
        return f"蒙{letter}{rng.randint(10000, 99999)}"
    if kind == 1:
        return f"蒙{letter}·{rng.choice('ABCDEFGH')}{rng.randint(1000, 9999)}"
    if kind == 2:
        return f"蒙{letter}{rng.choice('DF')}{rng.randint(10000, 99999)}"
    return f"{rng.choice('京冀辽吉黑')}{letter}{rng.randint(100, 999)}{rng.choice('ABC')}{rng.randint(0, 9)}"


def fullwidth(s: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s)


def phone_variants(rng: random.Random, p: str) -> str:
    k = rng.randrange(8)
    return [
        p,
        f"{p[:3]}-{p[3:7]}-{p[7:]}",
        f"{p[:3]} {p[3:7]} {p[7:]}",
        f"+86{p}",
        f"+86 {p[:3]} {p[3:7]} {p[7:]}",
        f"{p[:3]}****{p[7:]}",
        fullwidth(p),
        f"86-{p}",
    ][k]


def id_variants(rng: random.Random, i: str) -> str:
    k = rng.randrange(7)
    return [
        i,
        i[:-1] + "X",
        i[:4] + "*" * 10 + i[-4:],
        i[:6] + "*" * 8 + i[-4:],
        i.lower(),
        fullwidth(i),
        f"{i[:6]} {i[6:14]} {i[14:]}",
    ][k]


SURNAMES = "张王李赵刘陈杨黄周吴徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董潘于蒋蔡包白宝"
GIVEN = _w("伟 芳 娜 敏 静 丽 强 磊 军 洋 勇 艳 杰 建国 桂兰 玉兰 海龙")
MONGOL = _w("巴特尔 其其格 乌云 额尔敦 苏和 斯琴 乌兰 图雅 萨仁 那日苏 孟和 特木尔")
RARE = ["㛃", "䶮", "\u9fd7", "\u3400"]  # CJK ext-A and post-9FD5 characters: the engines' Han ranges differ
TITLES = _w("女士 先生 大姐 师傅")
COUNTIES = _w("科尔沁区 科左中旗 科左后旗 开鲁县 库伦旗 奈曼旗 扎鲁特旗 霍林郭勒市 开发区")
TOWNS = _w("保康镇 甘旗卡镇 开鲁镇 库伦镇 大沁他拉镇 鲁北镇 东风镇 木里图镇 明仁街道 某镇")
RELATIVES = _w("丈夫 妻子 前夫 前妻 前男友 男朋友 婆婆 儿媳 儿子 女婿 公公 邻居 房东")
ACTIONS = _w("殴打 推搡 掐脖子 扇耳光 持刀威胁 用菜刀砍伤 拳打脚踢 辱骂 砸东西 扬言要杀")
NEGATIONS = _w("未动手 无人受伤 已调解 双方和解 不需要120 未受伤 不需要民警到场")
VERBS = _w("报警： 报警称： 来电： 来电称： 报称： 报警: 来电称:")


def _name(rng: random.Random) -> str:
    k = rng.randrange(10)
    if k < 4:
        return rng.choice(SURNAMES) + rng.choice(GIVEN)
    if k < 6:
        return rng.choice(SURNAMES) + rng.choice(TITLES)
    if k < 8:
        return rng.choice(MONGOL)
    if k == 8:
        return rng.choice(SURNAMES) + rng.choice(RARE) + rng.choice(GIVEN)
    return rng.choice(["匿名", "未留名", "无"])


def _location(rng: random.Random) -> str:
    county = rng.choice(COUNTIES)
    town = rng.choice(TOWNS)
    k = rng.randrange(6)
    if k == 0:
        room = f"{rng.randint(1, 18)}0{rng.randint(1, 4)}"
        return f"{county}某小区{rng.randint(1, 30)}号楼{rng.randint(1, 6)}单元{room}室"
    if k == 1:
        return f"{county}{town}某嘎查"
    if k == 2:
        return f"{county}{town}某村{rng.randint(1, 9)}组"
    if k == 3:
        return f"{county}某路与某街交叉口"
    if k == 4:
        return f"{county}{rng.choice('ABC')}座{rng.randint(1, 30)}-{rng.randint(1, 6)}-{rng.randint(101, 1802)}"
    return f"{county}某饭店门前"


_CONTENTS: list[Callable[[random.Random, str], str]] = [
    lambda r, n: f"称被{r.choice(RELATIVES)}{r.choice(ACTIONS)}，头部受伤，{r.choice(NEGATIONS)}。",
    lambda r, n: f"称与{r.choice(RELATIVES)}因琐事发生口角，{r.choice(NEGATIONS)}，其余情况不清。",
    lambda r, n: f"称{r.choice(RELATIVES)}酒后{r.choice(ACTIONS)}，{n}称已被打{r.randint(2, 6)}次，要求出警。",
    lambda r, n: f"称有人欠其工钱{r.randint(1000, 90000)}元不给，包工头电话{make_mobile(r)}打不通。",
    lambda r, n: f"称借给他人{r.randint(1, 50)}.{r.randint(1, 9)}万元，对方欠钱不还，双方发生纠纷。",
    lambda r, n: f"称邻居家草场网围栏越界，牛羊啃食其承包地青苗，约{r.randint(1, 30)}亩。",
    lambda r, n: f"称楼上{r.randint(1, 30)}0{r.randint(1, 4)}室漏水，与邻居发生纠纷，原因不明。",
    lambda r, n: f"称车牌{make_plate(r)}的车辆堵门，双方吵架，{r.choice(NEGATIONS)}。",
    lambda r, n: f"称物业费{r.randint(100, 5000)}元未交，物业公司停水，业主{n}情绪激动。",
    lambda r, n: (
        f"称宅基地边界纠纷，对方扬言要同归于尽，50%的损失要对方赔偿，{r.randint(3, 4)}-{r.randint(5, 6)}人在场。"
    ),
    lambda r, n: (
        f"称其{r.choice(RELATIVES)}离家出走，联系电话0475-{r.randint(1000000, 9999999)}，身高1.{r.randint(50, 85)}米。"
    ),
    lambda r, n: f"称彩礼{r.randint(5, 30)}万元退还问题，{r.choice(RELATIVES)}与其厮打，KTV门口，C区3#楼。",
    lambda r, n: f"称被前男友跟踪骚扰，前男友微信号wx_{r.randint(1000, 9999)}，QQ号{r.randint(10000000, 999999999)}。",
    lambda r, n: f"称拆迁补偿款{r.randint(1, 99)}万元分配不均，兄弟姐妹发生争吵，{r.choice(NEGATIONS)}。",
    lambda r, n: f"称{r.randint(20, 23)}:{r.randint(10, 59)}左右听到隔壁吵闹，疑似家暴，0.5米高的墙被推倒。",
]


def _time(rng: random.Random) -> str:
    y, mo, d = 2024, rng.randint(1, 12), rng.randint(1, 28)
    h, mi, s = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
    k = rng.randrange(4)
    if k == 0:
        return f"{y}年{mo}月{d}日 {h}时{mi}分{s}秒 "
    if k == 1:
        return f"{y}年{mo:02d}月{d:02d}日 {h:02d}时{mi:02d}分{s:02d}秒 "
    if k == 2:
        return f"{y}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d} "
    return ""


def _contacts(rng: random.Random) -> str:
    phone = phone_variants(rng, make_mobile(rng)) if rng.random() < 0.8 else ""
    idn = id_variants(rng, make_id(rng)) if rng.random() < 0.6 else ""
    inner = rng.choice(["，", ",", "， "]).join(x for x in (phone, idn) if x)
    k = rng.randrange(5)
    if k == 0:
        return ""
    if k in (1, 2):
        return f"( {inner} )"
    return f"（{inner}）"


def make_narratives(n: int, seed: int = 110) -> list[str]:
    """Realistic 110-style narratives from varied templates (all invented)."""
    rng = random.Random(seed)
    out: list[str] = []
    for i in range(n):
        name = _name(rng)
        content = rng.choice(_CONTENTS)(rng, name)
        if i % 17 == 0:  # header-less text
            out.append(content)
            continue
        header = f"{_time(rng)}{name}{_contacts(rng)}{rng.choice(['', ' '])}{rng.choice(VERBS)}"
        out.append(f"{header}{_location(rng)}，{content}")
    return out


def load_realtext(limit: int | None = None) -> list[str]:
    """Sentences/facts from ../shared/realtext (read only; never copied into the repo)."""
    texts: list[str] = []
    for path in sorted(REALTEXT.glob("*.jsonl")):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                d = json.loads(line)
                if "fact" in d:
                    texts.append(d["fact"])
                else:
                    texts.extend(s["sentence"] for s in d.get("sentences", []))
    return texts[:limit] if limit else texts


# --------------------------------------------------------------------------------------------------
# normalize
# --------------------------------------------------------------------------------------------------


def test_normalize_full_width_digits_letters_and_spaces() -> None:
    assert normalize("１３５ＡＢｃ　\t  蒙Ｇ１２３４５") == "135ABc 蒙G12345"
    assert normalize("（报警：）") == "(报警:)"
    assert normalize("  a \n\n b ") == "a b"
    assert normalize(normalize("１２　３")) == normalize("１２　３")


# --------------------------------------------------------------------------------------------------
# parse_header
# --------------------------------------------------------------------------------------------------

T = datetime(2024, 4, 11, 21, 26, 17)
_ID_X = make_id(random.Random(42))[:-1] + "X"  # generated, never a literal
LOC = "科尔沁区某小区4号楼1单元302室"
BODY = "称被丈夫殴打,头部受伤,不需要120。"

HEADER_CASES = [
    pytest.param(
        "2024年4月11日 21时26分17秒 张女士( 135****9668，1505**********2829 ) 报警："
        "科尔沁区某小区4号楼1单元302室，称被丈夫殴打，头部受伤，不需要120。",
        Header(T, "张女士", "135****9668", "1505**********2829", LOC, BODY, True),
        id="brief-example",
    ),
    pytest.param(
        "2024年04月11日 21时26分17秒 张伟（13512345678，150502********2829）报警称：" + LOC + "，" + BODY,
        Header(T, "张伟", "13512345678", "150502********2829", LOC, BODY, True),
        id="padded-fullwidth-parens-verb-baojingcheng",
    ),
    pytest.param(
        f"2024-04-11 21:26:17 巴特尔(135-1234-5678,{_ID_X})来电：" + LOC + "," + BODY,
        Header(T, "巴特尔", "13512345678", _ID_X, LOC, BODY, True),
        id="iso-time-ascii-parens-laidian",
    ),
    pytest.param(
        "其其格（ ）来电称：" + LOC + "，" + BODY,
        Header(None, "其其格", None, None, LOC, BODY, True),
        id="no-time-empty-parens",
    ),
    pytest.param(
        "2024年4月11日21时26分17秒王先生（1505**********2829）报称:" + LOC + "，" + BODY,
        Header(T, "王先生", None, "1505**********2829", LOC, BODY, True),
        id="only-id-no-space-ascii-colon",
    ),
    pytest.param(
        "2024年4月1日 9时5分7秒 李大姐(+86 135 1234 5678)报警：开鲁县东风镇某村3组，称牛羊被偷。",
        Header(
            datetime(2024, 4, 1, 9, 5, 7),
            "李大姐",
            "13512345678",
            None,
            "开鲁县东风镇某村3组",
            "称牛羊被偷。",
            True,
        ),
        id="only-phone-plus86",
    ),
    pytest.param(
        "2024年4月11日 21时26分17秒 匿名 报警：" + LOC + "，" + BODY,
        Header(T, None, None, None, LOC, BODY, True),
        id="anonymous-no-parens",
    ),
    pytest.param(
        "未留名（）报警：称有人打架。",
        Header(None, None, None, None, None, "称有人打架。", True),
        id="unnamed-no-location",
    ),
    pytest.param(
        "无(0475-8231234)报警：奈曼旗大沁他拉镇某超市门口，有人打架",
        Header(None, None, "04758231234", None, "奈曼旗大沁他拉镇某超市门口", "有人打架", True),
        id="no-caller-landline",
    ),
    pytest.param(
        "张伟13512345678报警：称被殴打",
        Header(None, "张伟", "13512345678", None, None, "称被殴打", True),
        id="bare-phone-no-parens",
    ),
    pytest.param(
        "2024-04-11 21:26:17 张伟 报警：称楼上漏水，与邻居吵架",
        Header(T, "张伟", None, None, None, "称楼上漏水,与邻居吵架", True),
        id="first-clause-not-a-place",
    ),
    pytest.param(
        "2024年4月11日 21时26分17秒 报警：超市门口有火情，已经打了119",
        Header(T, None, None, None, None, "超市门口有火情,已经打了119", True),
        id="no-caller-no-contact-event-clause",
    ),
    pytest.param(
        "2024年4月11日 21时26分17秒 ( 135****9668 ) 报警：科左中旗某嘎查，称草场被占",
        Header(T, None, "135****9668", None, "科左中旗某嘎查", "称草场被占", True),
        id="no-caller-with-contact",
    ),
    pytest.param(
        "张伟() 报警：科尔沁区A座3-2-1201，称楼上漏水",
        Header(None, "张伟", None, None, "科尔沁区A座3-2-1201", "称楼上漏水", True),
        id="address-ending-in-room-number",
    ),
    pytest.param(
        "2024-02-30 21:26:17 张伟 报警：称被殴打",
        Header(None, "张伟", None, None, None, "称被殴打", True),
        id="impossible-date",
    ),
    pytest.param(
        "称被丈夫殴打，头部受伤。",
        Header(None, None, None, None, None, "称被丈夫殴打,头部受伤。", False),
        id="no-header",
    ),
    pytest.param(
        "2018年5月3日21时30分许，被告人张某在科尔沁区某饭店内因琐事与被害人王某发生口角。",
        Header(
            None,
            None,
            None,
            None,
            None,
            "2018年5月3日21时30分许,被告人张某在科尔沁区某饭店内因琐事与被害人王某发生口角。",
            False,
        ),
        id="court-prose",
    ),
    pytest.param("", Header(None, None, None, None, None, "", False), id="empty"),
]


@pytest.mark.parametrize(("narrative", "expected"), HEADER_CASES)
def test_parse_header_variants(narrative: str, expected: Header) -> None:
    assert parse_header(narrative) == expected


@pytest.mark.parametrize("verb", ["报警：", "报警称：", "来电：", "来电称：", "报称：", "报警:", "来电称 :"])
def test_parse_header_every_verb(verb: str) -> None:
    h = parse_header(f"张女士（135****9668）{verb}{LOC}，称被打")
    assert (h.caller, h.phone, h.location, h.content, h.has_header) == (
        "张女士",
        "135****9668",
        LOC,
        "称被打",
        True,
    )


def test_content_is_a_suffix_of_the_normalised_text() -> None:
    """So callers that need an offset (e.g. models/rules.py) get it as len(norm) - len(content)."""
    for s in make_narratives(500, seed=8) + [c.values[0] for c in HEADER_CASES]:
        norm = normalize(s)
        h = parse_header(s)
        assert norm.endswith(h.content)
        assert norm[len(norm) - len(h.content) :] == h.content


def test_header_repr_hides_personal_data() -> None:
    rng = random.Random(4)
    p, i = make_mobile(rng), make_id(rng)
    h = parse_header(f"张伟({p},{i})报警：科尔沁区某小区，称被张伟的前夫殴打")
    assert (h.caller, h.phone, h.id_number) == ("张伟", p, i)
    r = repr(h)
    assert "张伟" not in r and p not in r and i not in r
    assert "caller=<NAME>" in r and "phone=<PHONE>" in r and "id_number=<ID>" in r


def test_parse_header_never_raises() -> None:
    rng = random.Random(7)
    alphabet = "张女士()（）：:，,报警称来电0123456789*X年月日时分秒- \n区楼室<>"
    for _ in range(3000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        assert isinstance(parse_header(s), Header)
    for odd in (None, 12345, b"bytes", ["list"], float("nan")):
        assert isinstance(parse_header(odd), Header)  # type: ignore[arg-type]


def test_parse_header_on_generated_narratives() -> None:
    """Every generated narrative with a header parses, with the generated caller and a place."""
    for s in make_narratives(1000, seed=3):
        h = parse_header(s)
        if s.startswith("称"):  # the generator's header-less lines
            assert h == Header(None, None, None, None, None, normalize(s), False)
            continue
        assert h.has_header, safe_repr(s)
        assert h.location is not None, safe_repr(s)
        assert h.content.startswith("称"), safe_repr(s)
        assert h.caller is None or h.caller in s
        assert h.caller not in ("匿名", "未留名", "无")


# --------------------------------------------------------------------------------------------------
# mask
# --------------------------------------------------------------------------------------------------

_SNIPPETS = [
    "称被丈夫殴打",
    "于3号楼门口",
    "欠款1200元",
    "在12单元",
    "头部受伤",
    "科左中旗某嘎查",
    "约20人围观",
    "凌晨2时许",
    "家中",
    "对方称",
    "其余情况不清",
]


def _secret(rng: random.Random) -> tuple[str, int]:
    """(text as written, digits that must not survive in a row)."""
    k = rng.randrange(6)
    if k == 0:
        return phone_variants(rng, make_mobile(rng)), 7
    if k == 1:
        return id_variants(rng, make_id(rng)), 6
    if k == 2:
        return make_id15(rng), 6
    if k == 3:
        c = make_card(rng)
        return (c if rng.random() < 0.5 else " ".join(c[i : i + 4] for i in range(0, len(c), 4))), 7
    if k == 4:
        area = rng.choice(["0475-", "0475 ", "(0475)", "（0475）", "0475"])
        return area + str(rng.randint(1000000, 99999999)), 7
    return make_plate(rng), 3


_RUN = {n: re.compile(r"[\d０-９](?:[\s\-]?[\d０-９]){" + str(n - 1) + "}") for n in (6, 7)}


def test_mask_property_no_identifier_survives() -> None:
    rng = random.Random(20240411)
    plate = re.compile(r"[京津冀辽吉黑蒙][A-Z]·?[A-Z0-9]{5,6}")
    for _ in range(2000):
        parts: list[str] = []
        secrets: list[tuple[str, int]] = []
        for _ in range(rng.randint(1, 3)):
            parts.append(rng.choice(_SNIPPETS))
            sec = _secret(rng)
            secrets.append(sec)
            parts.append(rng.choice(["，", "：", "是", "号码", " ", "电话", "车牌"]) + sec[0])
        parts.append(rng.choice(_SNIPPETS))
        text = "".join(parts)
        out = mask(text)
        assert _RUN[6].search(out) is None, safe_repr(out)
        assert plate.search(out) is None, safe_repr(out)
        assert mask(out) == out  # idempotent
        for sec, _ in secrets:
            assert sec not in out


def test_mask_brief_example_and_names() -> None:
    s = (
        "2024年4月11日 21时26分17秒 张女士( 135****9668，1505**********2829 ) 报警："
        "科尔沁区某小区4号楼1单元302室，称被丈夫殴打，张女士头部受伤，不需要120。"
    )
    assert mask(s) == (
        "2024年4月11日 21时26分17秒 <NAME>( <PHONE>，<ID> ) 报警："
        "科尔沁区某小区4号楼1单元302室，称被丈夫殴打，<NAME>头部受伤，不需要120。"
    )


def test_mask_later_occurrences_of_full_name_and_mongolian_name() -> None:
    s = "巴特尔（" + make_mobile(random.Random(1)) + "）报警：奈曼旗某村，称其妻与巴特尔吵架，巴特尔被打。"
    out = mask(s)
    assert "巴特尔" not in out
    assert out.count("<NAME>") == 3
    assert out.endswith("称其妻与<NAME>吵架，<NAME>被打。")


@pytest.mark.parametrize("caller", ["匿名", "未留名", "无", "邻居", "群众"])
def test_mask_does_not_mask_anonymous_or_generic_callers(caller: str) -> None:
    s = f"{caller}报警：某小区门口，称邻居与群众打架，无人受伤。"
    assert mask(s) == s


def test_mask_leaves_ordinary_numbers() -> None:
    s = "2024-04-11 21:26:17 称欠款1200元，4号楼1单元302室，约20人，1.5米，50%，2024年4月11日，120到场。"
    assert mask(s) == s


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("车牌蒙G12345", "车牌<PLATE>"),
        ("车牌蒙G·A1234的车", "车牌<PLATE>的车"),
        ("蒙GD12345新能源", "<PLATE>新能源"),
        ("教练车蒙G1234学", "教练车<PLATE>"),
        ("座机0475-1234567", "座机<PHONE>"),
        ("座机0475-12345678。", "座机<PHONE>。"),
        ("手机135-1234-5678", "手机<PHONE>"),
        ("+86 135 1234 5678", "<PHONE>"),
        ("卡号6222021234567890123", "卡号<CARD>"),
        ("卡号6222 0212 3456 7890", "卡号<CARD>"),
        ("联系电话8231234", "联系电话<PHONE>"),
        ("编号20240411212617123", "编号<CARD>"),
        ("<NAME>(<PHONE>,<ID>)报警:", "<NAME>(<PHONE>,<ID>)报警:"),
        ("135****9668", "<PHONE>"),
        ("****9668", "<PHONE>"),
        ("打了****一顿", "打了****一顿"),
    ],
)
def test_mask_forms(raw: str, expected: str) -> None:
    assert mask(raw) == expected
    assert mask(expected) == expected


def test_mask_ids_with_valid_checksum_all_variants() -> None:
    rng = random.Random(5)
    for _ in range(300):
        i = make_id(rng)
        for v in (
            i,
            i[:-1] + "X",
            i[:-1] + "x",
            fullwidth(i),
            i[:4] + "*" * 10 + i[-4:],
            i[:6] + "*" * 8 + i[-4:],
        ):
            assert mask(f"身份证号{v}。") == "身份证号<ID>。"
        assert mask(f"老身份证{make_id15(rng)}号") == "老身份证<ID>号"


def test_mask_rejects_non_str() -> None:
    with pytest.raises(TypeError) as exc:
        mask(13512345678)  # type: ignore[arg-type]
    assert "13512345678" not in str(exc.value)


def test_mask_series_equals_mask_elementwise() -> None:
    texts = make_narratives(400, seed=9)
    s = pd.Series(texts, index=range(100, 500), name="narrative", dtype=object)
    out = mask_series(s)
    assert out.index.equals(s.index) and out.name == "narrative"
    assert out.tolist() == [mask(t) for t in texts]
    # pandas' default string dtype (pyarrow-backed when available) takes the same Python-regex path
    s2 = pd.Series(texts[:50], dtype="string")
    out2 = mask_series(s2)
    assert out2.dtype == s2.dtype
    assert out2.tolist() == [mask(t) for t in texts[:50]]
    s3 = pd.Series(texts[:50])
    assert mask_series(s3).tolist() == [mask(t) for t in texts[:50]]


def test_mask_series_missing_and_non_strings() -> None:
    s = pd.Series(["张伟(13512345678)报警:称被打", None, float("nan"), 13512345678, "无"])
    out = mask_series(s)
    assert out[0] == "<NAME>(<PHONE>)报警:称被打"
    assert pd.isna(out[1]) and pd.isna(out[2])
    assert out[3] == "<PHONE>"
    assert out[4] == "无"
    assert mask_series(pd.Series([None, None], dtype=object)).isna().all()


def test_safe_repr_masks_and_truncates() -> None:
    rng = random.Random(2)
    i, p = make_id(rng), make_mobile(rng)
    s = f"2024-04-11 21:26:17 张伟({p},{i})报警：科尔沁区某小区，称被丈夫殴打" + "，后续" * 100
    r = safe_repr(s)
    assert i not in r and p not in r and "张伟" not in r
    assert len(r) <= 80 and r.endswith(f"(len={len(s)})")
    assert p not in safe_repr({"phone": int(p)})
    assert safe_repr("短文本") == "短文本"
    big = "字" * 1_000_000 + p
    assert p not in safe_repr(big)

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError(p)

    assert safe_repr(Broken()) == "<Broken>"


# --------------------------------------------------------------------------------------------------
# Segmentation
# --------------------------------------------------------------------------------------------------

EXTRA_WORDS = _w("欠钱不还 借钱不还 未动手 无人受伤 已调解 双方和解 要杀了你 喝农药 放牧越界 楼上噪音")


@pytest.fixture(scope="module")
def seg() -> Segmenter:
    return get_segmenter()


@pytest.fixture(scope="module")
def seg_rj() -> Segmenter:
    return Segmenter(engine="rjieba")


def test_userdict_format_and_size() -> None:
    entries = read_userdict(USERDICT_PATH)
    assert 300 <= len(entries) <= 1000
    words = [w for w, _, _ in entries]
    assert len(words) == len(set(words))
    for line in USERDICT_PATH.read_text(encoding="utf-8").splitlines():
        assert re.fullmatch(r"\S+ \d+ [a-z]+", line), line  # jieba's `word freq tag`
    for w in _w("户主 前男友 派出所 辅警 家暴 讨薪 网围栏 科左中旗 嘎查 巴特尔 其其格"):
        assert w in words
    assert "110" not in words and "120" not in words  # see test_numbers_stay_whole


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("科左中旗保康镇某嘎查村民因草场网围栏发生纠纷", "科左中旗"),
        ("科左中旗保康镇某嘎查村民因草场网围栏发生纠纷", "网围栏"),
        ("科左中旗保康镇某嘎查村民因草场网围栏发生纠纷", "嘎查"),
        ("称被前男友持刀威胁", "前男友"),
        ("报警人巴特尔称其妻子其其格离家出走", "其其格"),
        ("辅警出警后调解", "辅警"),
        ("工人讨薪被打", "讨薪"),
        ("科左后旗甘旗卡镇", "科左后旗"),
    ],
)
def test_segmentation_uses_user_dictionary(seg: Segmenter, text: str, token: str) -> None:
    assert token in seg.cut(text)
    assert token in seg.cut(text, hmm=False)


def test_private_tokenizer_leaves_global_jieba_alone(seg: Segmenter) -> None:
    import jieba  # already imported (quietly) by the segmenter

    assert "网围栏" in seg.cut("草场网围栏")
    assert "网围栏" not in jieba.dt.FREQ or not jieba.dt.FREQ.get("网围栏")


def test_numbers_stay_whole(seg: Segmenter) -> None:
    """110/120 are not dictionary words: as words they would split 1105室 into 110/5."""
    assert seg.cut("称1105室漏水，欠款1200元，不需要120") == [
        "称", "1105", "室", "漏水", "，", "欠款", "1200", "元", "，", "不", "需要", "120",
    ]  # fmt: skip


def test_cut_many_and_types(seg: Segmenter) -> None:
    texts = ["称被丈夫殴打", "", "草场纠纷"]
    assert seg.cut_many(texts) == [seg.cut(t) for t in texts]
    assert seg.cut("") == []
    with pytest.raises(TypeError):
        seg.cut(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Segmenter(engine="nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Segmenter(["两 个词"])
    with pytest.raises(TypeError):
        Segmenter("欠钱不还")


def test_extra_words_are_added(seg: Segmenter) -> None:
    s = Segmenter(["欠钱不还", "放牧越界", "ｍｉｘ词"])
    assert "欠钱不还" in s.cut("对方欠钱不还")
    assert "放牧越界" in s.cut("邻居放牧越界")
    assert "mix词" in s.added_words  # normalised like the text it will be matched against
    assert "欠钱不还" not in seg.cut("对方欠钱不还")  # the shared default instance is unchanged


def test_get_segmenter_is_a_singleton_built_once(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[int] = []

    class Counting(Segmenter):
        def __init__(self) -> None:
            built.append(1)
            super().__init__(userdict=None)

    monkeypatch.setattr(text_mod, "_SEGMENTER", None)
    monkeypatch.setattr(text_mod, "Segmenter", Counting)
    barrier = threading.Barrier(8)
    got: list[Segmenter] = []

    def run() -> None:
        barrier.wait()
        got.append(get_segmenter())

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 1
    assert len({id(g) for g in got}) == 1


@pytest.mark.parametrize("engine", ["jieba", "rjieba"])
def test_concurrent_cut_matches_single_threaded(engine: str, seg: Segmenter, seg_rj: Segmenter) -> None:
    s = seg if engine == "jieba" else seg_rj
    texts = [normalize(t) for t in make_narratives(400, seed=11)]
    expected = [s.cut(t) for t in texts]
    results: dict[int, list[list[str]]] = {}
    barrier = threading.Barrier(8)

    def run(k: int) -> None:
        barrier.wait()
        order = list(range(len(texts)))
        random.Random(k).shuffle(order)
        got = [None] * len(texts)
        for i in order:
            got[i] = s.cut(texts[i])  # type: ignore[call-overload]
        results[k] = got  # type: ignore[assignment]

    threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8
    for got in results.values():
        assert got == expected


def test_init_is_quiet_and_cache_stays_out_of_the_package(tmp_path: Path) -> None:
    """A cold start (cache built) prints nothing to stderr and writes the cache where told."""
    code = (
        "from pathlib import Path; from features.text import Segmenter;"
        f"s = Segmenter(cache_dir=Path({str(tmp_path)!r})); print(round(s.init_seconds, 3))"
    )
    for _ in range(2):  # cold, then warm
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
        assert proc.stderr == ""
    assert (tmp_path / "jieba.cache").is_file()
    package = ROOT / "features"
    assert not list(package.rglob("*.cache"))
    assert logging.getLogger("jieba").level >= logging.WARNING or "jieba" not in sys.modules


def test_default_cache_dir_is_private_temp() -> None:
    d = text_mod._jieba_cache_dir()
    assert d.is_dir() and ROOT not in d.parents
    if hasattr(__import__("os"), "getuid"):
        assert d.stat().st_mode & 0o077 == 0


# --------------------------------------------------------------------------------------------------
# rjieba golden tests: the opt-in engine must give jieba's tokens exactly
# --------------------------------------------------------------------------------------------------


def _first_difference(a: list[list[str]], b: list[list[str]]) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x != y:
            return f"text #{i}: {safe_repr('/'.join(x))} != {safe_repr('/'.join(y))}"
    return ""


def test_jieba_total_stays_the_sum_of_frequencies(seg: Segmenter) -> None:
    """jieba's add_word double-counts re-added words in the total; the Segmenter corrects it."""
    assert seg._tk is not None
    assert seg._tk.total == sum(seg._tk.FREQ.values())


def test_rjieba_same_dictionary_frequencies(seg: Segmenter, seg_rj: Segmenter) -> None:
    assert seg.added_words == seg_rj.added_words
    a, b = Segmenter(EXTRA_WORDS), Segmenter(EXTRA_WORDS, engine="rjieba")
    assert a.added_words == b.added_words


@pytest.mark.parametrize("hmm", [True, False])
def test_rjieba_golden_generated_narratives(hmm: bool) -> None:
    texts = make_narratives(2500, seed=2024)
    assert sum(any(c in t for c in RARE) for t in texts) > 10  # the Han-range path is exercised
    assert sum(bool(re.search(r"[a-zA-Z0-9][-.%#][0-9]", t)) for t in texts) > 100  # so is the HMM fix
    a, b = Segmenter(EXTRA_WORDS), Segmenter(EXTRA_WORDS, engine="rjieba")
    for variant in (texts, [normalize(t) for t in texts]):
        ja = a.cut_many(variant, hmm=hmm)
        rb = b.cut_many(variant, hmm=hmm)
        assert ja == rb, _first_difference(ja, rb)


@pytest.mark.slow
@pytest.mark.skipif(not REALTEXT.is_dir(), reason="../shared/realtext absent (evaluation text, not shipped)")
@pytest.mark.parametrize("hmm", [True, False])
def test_rjieba_golden_realtext(hmm: bool, seg: Segmenter, seg_rj: Segmenter) -> None:
    texts = load_realtext()
    if not texts:
        pytest.skip("../shared/realtext has no .jsonl text")
    ja = seg.cut_many(texts, hmm=hmm)
    rb = seg_rj.cut_many(texts, hmm=hmm)
    assert ja == rb, _first_difference(ja, rb)


def test_rjieba_unmodified_would_differ(seg: Segmenter, seg_rj: Segmenter) -> None:
    """Documents why the adapter exists: raw jieba-rs keeps 2005-2010 whole, jieba splits it."""
    s = "2005-2010年间借款0.5万元"
    assert seg_rj._rj is not None
    assert seg_rj._rj.cut(s, True) != seg.cut(s)
    assert seg_rj.cut(s) == seg.cut(s)
    assert seg_rj.cut("王㛃䶮称") == seg.cut("王㛃䶮称")
