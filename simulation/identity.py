"""Synthetic personal identifiers: names, 18-digit ID numbers and mobile numbers.

They look real (valid ID checksums, Tongliao region codes, Han and Mongol
naming customs) so that linking and masking are tested on realistic input,
but every one is drawn from a seeded generator.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Common Han surnames with rough frequency weights (northern China skews to 王/李/张/刘).
HAN_SURNAMES = (
    "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶"
    "阎余潘杜戴夏钟汪田任姜范方石姚谭廖邹熊金陆郝孔白崔康毛邱秦江史顾侯邵孟龙万段"
)
HAN_GIVEN_MALE = "伟强磊军洋勇杰涛明超刚平辉鹏华飞鑫波斌宇浩凯健俊帆帅旭宁龙林阳建国峰成东亮志文博海兵"
HAN_GIVEN_FEMALE = "芳娜敏静丽艳娟霞秀英华慧巧美玉萍红玲桂兰凤洁梅琳素云莲真环雪荣爱妹香月莺媛瑞凡佳嘉琼勤珍贞莉淑"
MONGOL_GIVEN_MALE = (
    "巴特尔",
    "额尔敦",
    "苏和",
    "毕力格",
    "朝鲁",
    "宝音",
    "那日苏",
    "孟和",
    "阿拉坦",
    "巴雅尔",
    "乌力吉",
    "吉日嘎拉",
    "额尔德木图",
    "特木尔",
    "布和",
    "哈斯",
    "达来",
    "满都拉",
    "图雅",
    "白音",
    "那顺",
    "色音",
    "锡林",
    "敖日格勒",
    "金山",
    "宝力道",
    "巴图",
    "格日勒图",
    "吉雅",
    "永胜",
)
MONGOL_GIVEN_FEMALE = (
    "其其格",
    "乌云",
    "斯琴",
    "萨仁",
    "高娃",
    "托娅",
    "娜仁",
    "格日乐",
    "塔娜",
    "乌兰",
    "阿拉坦其其格",
    "包金花",
    "琪琪格",
    "海棠",
    "秀梅",
    "萨日娜",
    "乌日娜",
    "其木格",
    "索伦高娃",
    "苏日娜",
)
MONGOL_SURNAMES = "包白吴韩宝鲍海陈何"
"""Many Mongols in Horqin carry a Han-style surname (包, 白, 吴 ...) before the given name."""

_ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
_ID_CHECK = np.array(list("10X98765432"))
_MOBILE_PREFIXES = np.array(
    [
        "134",
        "135",
        "136",
        "137",
        "138",
        "139",
        "150",
        "151",
        "152",
        "157",
        "158",
        "159",
        "130",
        "131",
        "132",
        "155",
        "156",
        "185",
        "186",
        "133",
        "153",
        "180",
        "189",
        "177",
        "187",
        "188",
        "198",
        "199",
        "166",
        "176",
    ]
)


def _pick_chars(rng: np.random.Generator, pool: str, n: int) -> np.ndarray:
    chars = np.array(list(pool))
    return chars[rng.integers(0, len(chars), n)]


def make_names(rng: np.random.Generator, sex: np.ndarray, mongol: np.ndarray) -> np.ndarray:
    """One full name per person, following Han or Mongol naming customs."""
    n = len(sex)
    male = sex == "M"
    weights = np.linspace(3.0, 0.3, len(HAN_SURNAMES))
    surname = np.array(list(HAN_SURNAMES))[rng.choice(len(HAN_SURNAMES), n, p=weights / weights.sum())]
    first = np.where(male, _pick_chars(rng, HAN_GIVEN_MALE, n), _pick_chars(rng, HAN_GIVEN_FEMALE, n))
    second = np.where(male, _pick_chars(rng, HAN_GIVEN_MALE, n), _pick_chars(rng, HAN_GIVEN_FEMALE, n))
    two_char = rng.random(n) < 0.7
    han = np.char.add(np.char.add(surname, first), np.where(two_char, second, ""))

    m_male = np.array(MONGOL_GIVEN_MALE)[rng.integers(0, len(MONGOL_GIVEN_MALE), n)]
    m_female = np.array(MONGOL_GIVEN_FEMALE)[rng.integers(0, len(MONGOL_GIVEN_FEMALE), n)]
    m_given = np.where(male, m_male, m_female)
    m_surname = _pick_chars(rng, MONGOL_SURNAMES, n)
    mongol_name = np.where(rng.random(n) < 0.45, np.char.add(m_surname, m_given), m_given)
    # Some Mongol families use Han-style names.
    use_mongol = mongol & (rng.random(n) < 0.7)
    return np.where(use_mongol, mongol_name, han).astype(object)


def id_checksum(first17: np.ndarray) -> np.ndarray:
    """The GB 11643 check character for an array of 17-digit strings."""
    digits = np.frombuffer("".join(first17).encode("ascii"), dtype=np.uint8).reshape(-1, 17) - 48
    return _ID_CHECK[(digits @ _ID_WEIGHTS) % 11]


def make_id_numbers(rng: np.random.Generator, region: np.ndarray, birth: pd.Series, sex: np.ndarray) -> np.ndarray:
    """Unique 18-digit ID numbers: region code, birth date, sequence (odd for men), checksum.

    The sequence is the person's rank within (region, birth date, sex), so no two
    persons share a number however large the city.
    """
    n = len(region)
    frame = pd.DataFrame({"region": region, "birth": birth.dt.strftime("%Y%m%d").to_numpy(), "sex": sex})
    groups = frame.groupby(["region", "birth", "sex"], sort=False)
    rank = groups.cumcount().to_numpy()
    # Each group starts at a random slot so numbers do not all begin at 000.
    frame["base"] = rng.integers(0, 50, n)
    base = groups["base"].transform("first").to_numpy()
    if (rank >= 450).any():  # more than 450 of one sex born the same day in one county: not a real city
        raise ValueError("ID sequence space exhausted; lower the population or spread birth dates")
    seq = (base + rank) * 2 + (sex == "M")
    first17 = (pd.Series(region).str.cat(frame["birth"]).str.cat(pd.Series(seq).astype(str).str.zfill(3))).to_numpy()
    return np.char.add(first17.astype(str), id_checksum(first17))


def make_phones(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unique-looking mobile numbers (1xx + 8 digits); duplicates are re-drawn."""
    if n == 0:  # np.char.zfill cannot take an empty array
        return np.array([], dtype=object)
    prefix = _MOBILE_PREFIXES[rng.integers(0, len(_MOBILE_PREFIXES), n)]
    body = rng.integers(0, 100_000_000, n)
    phones = np.char.add(prefix, np.char.zfill(body.astype(str), 8))
    _, first_index = np.unique(phones, return_index=True)
    dup = np.ones(n, dtype=bool)
    dup[first_index] = False
    while dup.any():
        k = int(dup.sum())
        phones[dup] = np.char.add(
            _MOBILE_PREFIXES[rng.integers(0, len(_MOBILE_PREFIXES), k)],
            np.char.zfill(rng.integers(0, 100_000_000, k).astype(str), 8),
        )
        _, first_index = np.unique(phones, return_index=True)
        dup[:] = True
        dup[first_index] = False
    return phones.astype(object)


def mask_phone(phones: np.ndarray) -> np.ndarray:
    """``13512349668`` -> ``135****9668`` as 110 records show it."""
    s = pd.Series(phones, dtype=object)
    return (s.str[:3] + "****" + s.str[-4:]).to_numpy()


def mask_id(ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An 18-character ID -> ``1505**********1234`` (first 4, last 4) or ``150502********1234`` (first 6, last 4)."""
    s = pd.Series(ids, dtype=object)
    short = s.str[:4] + "*" * 10 + s.str[-4:]
    long = s.str[:6] + "*" * 8 + s.str[-4:]
    return np.where(rng.random(len(s)) < 0.6, short, long)
