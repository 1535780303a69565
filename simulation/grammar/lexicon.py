"""Word lists of the narrative grammar: keywords, who-terms, fillers, cue phrases.

Everything here is data. Two invariants are checked at import time (and by
the tests): filler words never contain a stock dispute keyword (so a
template's keyword status is known from its text), and every cue pool has
phrasings both with and without stock keywords where that is possible.
"""

from __future__ import annotations

import re

# --------------------------------------------------------------------------
# Keyword lists used to *measure* the grammar (and by the confuser control).
# --------------------------------------------------------------------------

#: The stock words a naive dispute keyword rule fires on. "Keyword-free"
#: dispute narratives and "keyword-bearing" non-dispute narratives are
#: defined against this list.
DISPUTE_KEYWORDS: tuple[str, ...] = (
    "纠纷",
    "矛盾",
    "吵架",
    "打架",
    "争吵",
    "口角",
    "争执",
    "吵起来",
    "打起来",
    "吵闹",
    "欠钱",
    "欠款",
    "家暴",
    "殴打",
    "讨债",
    "要账",
    "闹事",
    "冲突",
)
KEYWORD_RE = re.compile("|".join(map(re.escape, DISPUTE_KEYWORDS)))

#: Category language (BRIEF section 4 plus the colloquial words the grammar
#: uses). Used by tests and the doc to show each category speaks its own
#: language *and* borrows the others'.
CATEGORY_WORDS: dict[str, tuple[str, ...]] = {
    "debt": (
        "欠",
        "借",
        "还钱",
        "还款",
        "不还",
        "要账",
        "讨债",
        "合伙",
        "货款",
        "担保",
        "债",
        "要钱",
        "不给钱",
        "利息",
        "房租",
        "租金",
        "赊",
    ),
    "family": (
        "丈夫",
        "妻子",
        "老公",
        "老婆",
        "媳妇",
        "爱人",
        "对象",
        "家暴",
        "离婚",
        "分居",
        "赡养",
        "男朋友",
        "女朋友",
        "男友",
        "前夫",
        "前妻",
        "彩礼",
        "婆婆",
        "父亲",
        "母亲",
        "儿子",
        "女儿",
        "闺女",
        "孩子",
        "两口子",
        "老人",
        "遗产",
        "家产",
    ),
    "neighbor": (
        "邻居",
        "楼上",
        "楼下",
        "隔壁",
        "对门",
        "噪音",
        "漏水",
        "占道",
        "杂物",
        "装修",
        "车位",
        "楼道",
        "垃圾",
        "停车",
        "狗",
    ),
    "land": (
        "草场",
        "承包地",
        "宅基地",
        "放牧",
        "网围栏",
        "地界",
        "边界",
        "嘎查",
        "牛羊",
        "羊",
        "土地",
        "地边",
        "田埂",
        "界石",
        "地头",
        "水井",
        "机井",
        "放水",
        "林子",
        "树苗",
        "打草",
        "苜蓿",
        "玉米",
        "院墙",
        "牲口",
        "牛",
        "林地",
        "树",
        "浇地",
        "水渠",
        "盖房",
        "庄稼",
        "地里",
    ),
    "labor": ("工资", "欠薪", "讨薪", "包工头", "工头", "工伤", "工钱", "工程款", "干活", "工人", "老板"),
    "medical_school": (
        "医院",
        "医生",
        "大夫",
        "医疗",
        "手术",
        "学校",
        "老师",
        "校园",
        "班主任",
        "幼儿园",
        "家长",
        "患者",
        "看病",
    ),
    "property": (
        "物业",
        "拆迁",
        "购房",
        "烂尾",
        "开发商",
        "房东",
        "押金",
        "房产证",
        "业主",
        "交房",
        "补偿",
        "征地",
    ),
    "other": (
        "琐事",
        "口角",
        "消费",
        "赔偿",
        "小事",
        "商家",
        "网上",
        "事故",
        "插队",
        "退货",
        "微信",
        "退钱",
        "打牌",
        "说话难听",
        "质量",
        "游戏",
        "刮",
        "撞",
        "骂",
    ),
}

# --------------------------------------------------------------------------
# Names and places
# --------------------------------------------------------------------------

#: Common Han surnames; a caller name starting with one of these can be
#: written as surname + 女士/先生. Names that do not (Mongolian names such as
#: 巴特尔, 其木格) are always written in full.
SURNAMES_2: tuple[str, ...] = (
    "欧阳",
    "司马",
    "上官",
    "诸葛",
    "东方",
    "皇甫",
    "尉迟",
    "公孙",
    "慕容",
    "令狐",
    "长孙",
    "宇文",
    "司徒",
    "夏侯",
    "端木",
)
SURNAMES_1: str = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任"
    "沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫"
    "孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅"
    "童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车"
    "项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛"
    "仲虞敖巩明佘池查麻苑迟邝"
)

#: Surnames used to make colloquial third-person references (老王, 姓刘的).
_NICK_SURNAMES = "王李张刘陈杨赵吴周孙马朱胡郭高罗郑韩冯曹白包宝于吕石丁任"
NICKNAMES: tuple[str, ...] = tuple(
    [f"老{s}" for s in _NICK_SURNAMES]
    + [f"姓{s}的" for s in _NICK_SURNAMES[:18]]
    + [f"小{s}" for s in _NICK_SURNAMES[:10]]
)

#: Where a neighbour hears it.
NEIGHBOR_PLACES: tuple[str, ...] = (
    "隔壁",
    "楼上",
    "楼下",
    "对门",
    "邻居家",
    "隔壁院",
    "对面那户",
    "楼上那家",
    "同单元一户人家",
    "后院邻居家",
    "隔壁那家",
    "楼下那户",
    "斜对门",
    "东院",
    "西院",
    "隔壁屋",
)

#: Public places (streets, shops, village spots).
PUBLIC_PLACES: tuple[str, ...] = (
    "小区门口",
    "超市门口",
    "路边",
    "公交站",
    "广场",
    "市场里",
    "饭店门口",
    "网吧门口",
    "火车站",
    "医院门口",
    "学校门口",
    "十字路口",
    "加油站",
    "村口",
    "烧烤店门口",
    "KTV门口",
    "银行门口",
    "停车场",
    "菜市场",
    "小区里",
    "楼下",
    "马路边",
    "商场门口",
    "汽车站",
    "嘎查村部门口",
    "集市上",
    "夜市",
    "公园里",
    "桥头",
    "街上",
    "巷子口",
    "洗浴中心门口",
    "小卖部门口",
    "牧业点",
    "国道边上",
)

SHOPS: tuple[str, ...] = (
    "饭店",
    "烧烤店",
    "超市",
    "理发店",
    "洗浴中心",
    "KTV",
    "小卖部",
    "火锅店",
    "网吧",
    "宾馆",
    "早餐店",
    "手机店",
    "药店",
    "服装店",
    "奶茶店",
    "美容院",
    "修车铺",
    "台球厅",
)

#: Buildings and spots inside a housing estate.
BUILDINGS: tuple[str, ...] = (
    *(f"{b}号楼" for b in (1, 2, 3, 5, 6, 7, 8, 9, 11, 12, 15, 18, 21)),
    "小区",
    "单元楼",
    "写字楼",
    "商场",
    "医院",
    "宾馆",
)

EATERIES: tuple[str, ...] = (
    "饭店",
    "烧烤店",
    "火锅店",
    "早餐店",
    "面馆",
    "饺子馆",
    "羊肉馆",
    "小吃店",
    "农家乐",
    "餐馆",
)

#: Who a witness reports about in a non-dispute call.
ND_WITNESS_SUBJECTS: tuple[str, ...] = (
    "一名老人",
    "一名女子",
    "一名男子",
    "一个小孩",
    "其邻居",
    "其朋友",
    "一位大姐",
    "路人",
)

ITEMS: tuple[str, ...] = (
    "手机",
    "钱包",
    "电动车",
    "自行车",
    "包",
    "金项链",
    "笔记本电脑",
    "现金",
    "身份证",
    "银行卡",
    "电瓶",
    "手表",
    "钥匙",
    "行李箱",
    "耳机",
    "平板电脑",
    "驾驶证",
    "金戒指",
    "摩托车",
    "背包",
    "羊皮袄",
    "车钥匙",
)

VEHICLES: tuple[str, ...] = (
    "出租车",
    "网约车",
    "滴滴",
    "三轮车",
    "私家车",
    "大货车",
    "面包车",
    "电动车",
    "摩托车",
    "农用车",
    "公交车",
    "拉煤车",
    "小轿车",
    "越野车",
)

#: Family members named in non-dispute calls (a deliberate confuser: family
#: words without a family dispute).
RELATIVES_ND: tuple[str, ...] = (
    "孩子", "老人", "儿子", "女儿", "父亲", "母亲", "老伴", "孙子", "弟弟", "妹妹", "爷爷", "奶奶", "外甥",
    "侄子",
)  # fmt: skip
#: Spouses named in non-dispute calls, by the caller's sex ("其老公的钱包丢了").
SPOUSES_ND: dict[str, tuple[str, ...]] = {"F": ("丈夫", "老公", "爱人"), "M": ("妻子", "媳妇", "爱人")}

BODY_PARTS: tuple[str, ...] = (
    "头",
    "头部",
    "脸",
    "脸部",
    "胳膊",
    "手",
    "手臂",
    "腿",
    "眼睛",
    "嘴角",
    "鼻子",
    "后背",
    "耳朵",
    "额头",
    "脖子",
    "眉骨",
    "手指",
)

WEAPONS: dict[str, tuple[str, ...]] = {
    "family": (
        "菜刀",
        "刀",
        "水果刀",
        "擀面杖",
        "剪刀",
        "椅子",
        "酒瓶子",
        "皮带",
        "衣架",
        "棍子",
        "烟灰缸",
        "暖壶",
    ),
    "neighbor": ("棍子", "铁锹", "菜刀", "砖头", "拖把", "木棒", "刀", "扳手"),
    "land": ("铁锹", "镐头", "镰刀", "木棒", "铁叉", "套马杆", "斧子", "棍子", "钢管", "铁棍"),
    "labor": ("钢管", "扳手", "铁锹", "砖头", "刀", "锤子", "钢筋"),
    "other": ("刀", "棍子", "钢管", "酒瓶", "砍刀", "匕首", "甩棍", "砖头", "啤酒瓶", "铁棍"),
}

LIVESTOCK: tuple[str, ...] = (
    "一头牛",
    "一只羊",
    "一匹马",
    "两只羊",
    "一头驴",
    "别人家的羊",
    "一头黄牛",
    "几只羊",
    "一条狗",
)

ANIMALS: tuple[str, ...] = (
    "羊",
    "牛",
    "马",
    "牛羊",
    "羊群",
    "几十只羊",
    "一群牛",
    "十几头牛",
    "一群羊",
    "骆驼",
    "二百多只羊",
)

DURATIONS: tuple[str, ...] = (
    "两年",
    "一年多",
    "半年",
    "三个多月",
    "好几年",
    "两个月",
    "一个多月",
    "大半年",
    "三年",
    "五六年",
    "十来天",
    "好几个月",
    "四个月",
    "一年",
    "两三年",
    "一个月",
)

COUNTS: tuple[str, ...] = ("两", "三", "几", "五六", "十几", "二十多", "七八")

#: Time words, by the hour bucket of ``received_at`` (night, morning,
#: afternoon, evening), so "今天早上" is never said at 23:00.
TIME_WORDS: dict[int, tuple[str, ...]] = {
    0: ("刚才", "半夜", "凌晨", "夜里", "刚刚", "后半夜"),
    1: ("今天早上", "一早", "上午", "刚才", "早上", "刚刚"),
    2: ("中午", "下午", "刚才", "今天下午", "刚刚", "午饭后"),
    3: ("晚上", "今晚", "刚才", "傍晚", "刚刚", "吃完晚饭"),
}


def _money() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Amounts as people say them (3万元, 五千块钱, 两万多): (small < 1万, large)."""
    cn = {
        200: "二百",
        300: "三百",
        500: "五百",
        800: "八百",
        1000: "一千",
        2000: "两千",
        3000: "三千",
        5000: "五千",
        8000: "八千",
    }
    small: list[str] = []
    for v in (200, 300, 500, 800, 1000, 1500, 2000, 3000, 4000, 5000, 6000, 8000):
        small += [f"{v}元", f"{v}块钱"]
        if v in cn:
            small += [f"{cn[v]}块钱", f"{cn[v]}多"]
    small += ["几千块钱", "四五千", "好几千"]
    large: list[str] = []
    for w in ("1", "1.2", "1.5", "2", "3", "4", "5", "6", "8", "10", "12", "15", "20", "30", "50"):
        large += [f"{w}万元", f"{w}万", f"{w}万块钱"]
    large += ["两万多", "三万多块钱", "十几万", "七八万", "一万多", "好几万", "二十多万"]
    return tuple(small), tuple(large)


MONEY_SMALL, MONEY_LARGE = _money()
MONEY: tuple[str, ...] = MONEY_SMALL + MONEY_LARGE

# --------------------------------------------------------------------------
# Who: counterpart terms, from the speaker's side
# --------------------------------------------------------------------------

COUNTERPARTS: tuple[str, ...] = (
    "husband",
    "wife",
    "ex_husband",
    "ex_wife",
    "boyfriend",
    "girlfriend",
    "ex_boyfriend",
    "ex_girlfriend",
    "son",
    "daughter",
    "father",
    "mother",
    "sibling",
    "in_law",
    "relative",
    "neighbor",
    "creditor",
    "debtor",
    "business_partner",
    "employer",
    "worker",
    "contractor",
    "landlord",
    "tenant",
    "villager",
    "herder",
    "hospital",
    "school",
    "property_company",
    "developer",
    "merchant",
    "stranger",
)

FAMILY_COUNTERPARTS = frozenset(COUNTERPARTS[:15])
MALE_COUNTERPARTS = frozenset({"husband", "ex_husband", "boyfriend", "ex_boyfriend", "son", "father"})
FEMALE_COUNTERPARTS = frozenset({"wife", "ex_wife", "girlfriend", "ex_girlfriend", "daughter", "mother"})

#: Colloquial names of the counterpart, as the party says them (without a
#: possessive; the voice adds 其/我/报警人 in front now and then).
WHO: dict[str, tuple[str, ...]] = {
    "husband": ("丈夫", "老公", "爱人", "对象", "孩子他爸", "男人", "孩子爸爸", "老伴", "丈夫", "老公"),
    "wife": ("妻子", "老婆", "媳妇", "爱人", "对象", "孩子他妈", "媳妇儿", "老伴", "妻子", "老婆"),
    "ex_husband": ("前夫", "前老公", "离婚的丈夫", "前任", "孩子他爸", "前夫"),
    "ex_wife": ("前妻", "前老婆", "离婚的媳妇", "前任", "孩子他妈", "前妻"),
    "boyfriend": ("男朋友", "男友", "对象", "处的对象", "同居的男友", "男朋友"),
    "girlfriend": ("女朋友", "女友", "对象", "同居女友", "女朋友"),
    "ex_boyfriend": ("前男友", "前男朋友", "分手的男朋友", "以前的对象", "前任"),
    "ex_girlfriend": ("前女友", "前女朋友", "以前的对象", "前任"),
    "son": ("儿子", "大儿子", "小儿子", "二儿子", "儿子", "孩子"),
    "daughter": ("女儿", "闺女", "大女儿", "小女儿", "姑娘", "女儿"),
    "father": ("父亲", "老父亲", "老爹", "父亲", "老爷子"),
    "mother": ("母亲", "老母亲", "老娘", "母亲", "老太太"),
    "sibling": ("哥哥", "弟弟", "姐姐", "妹妹", "亲哥", "大哥", "二哥", "亲弟弟", "大姐", "兄弟", "小叔子"),
    "in_law": (
        "婆婆",
        "公公",
        "丈母娘",
        "岳父",
        "岳母",
        "儿媳",
        "儿媳妇",
        "女婿",
        "小姑子",
        "大姑姐",
        "小舅子",
        "大舅哥",
        "嫂子",
        "弟媳",
        "姐夫",
        "妯娌",
        "连襟",
    ),
    "relative": (
        "亲戚",
        "表哥",
        "表弟",
        "堂哥",
        "堂弟",
        "叔叔",
        "舅舅",
        "大伯",
        "姑姑",
        "侄子",
        "外甥",
        "二叔",
        "三叔",
        "婶子",
    ),
    "neighbor": (
        "邻居",
        "楼上",
        "楼上邻居",
        "楼下",
        "楼下邻居",
        "隔壁",
        "隔壁邻居",
        "对门",
        "对门邻居",
        "隔壁那家",
        "楼上那家人",
        "同单元的邻居",
        "隔壁院的",
        "东院的",
        "西院邻居",
        "后院的",
        "邻居",
    ),
    "creditor": ("债主", "放贷的", "借给钱的人", "来要钱的人", "催收的", "对方", "债主", "放高利贷的"),
    "debtor": (
        "借了钱的人",
        "借钱的人",
        "借款人",
        "对方",
        "朋友",
        "同学",
        "以前的同事",
        "老乡",
        "熟人",
        "战友",
        *NICKNAMES[:12],
    ),
    "business_partner": ("合伙人", "生意伙伴", "合伙的朋友", "一起做生意的", "股东", "合作伙伴", "合伙人"),
    "employer": ("老板", "老板娘", "雇主", "公司老板", "厂长", "饭店老板", "牧场老板", "东家", "老板"),
    "worker": ("工人", "雇的工人", "干活的", "员工", "打工的", "羊倌", "雇的羊倌", "司机", "伙计"),
    "contractor": ("包工头", "工头", "承包人", "小包工头", "带班的", "项目经理", "工程老板", "包工头"),
    "landlord": ("房东", "房主", "出租房子的", "门市房东", "房东"),
    "tenant": ("租户", "房客", "租房的", "租客", "租门市的", "租户"),
    "villager": ("同村的", "邻村的", "村民", "本村村民", "同村村民", "村里的", "邻居", *NICKNAMES[12:30]),
    "herder": (
        "牧民",
        "邻居牧户",
        "嘎查牧民",
        "一户牧民",
        "邻嘎查的牧民",
        "放羊的",
        "隔壁牧户",
        *NICKNAMES[30:44],
    ),
    "hospital": ("医院", "医生", "大夫", "院方", "诊所", "卫生院", "主治医生", "医院"),
    "school": ("学校", "老师", "班主任", "校方", "幼儿园", "园长", "校长", "学校"),
    "property_company": ("物业", "物业公司", "物业的人", "物业经理", "物业保安", "小区物业"),
    "developer": ("开发商", "售楼处", "房地产公司", "拆迁公司", "施工方", "开发商"),
    "merchant": ("商家", "店主", "老板", "店家", "卖家", "店员", "饭店老板", "商户"),
    "stranger": (
        "一男子",
        "一名男子",
        "一女子",
        "陌生人",
        "对方",
        "一个男的",
        "路人",
        "他人",
        "别人",
        "一个女的",
    ),
}

#: When a family member calls, the party and the counterpart are both named
#: from the caller's side, as consistent pairs (party, counterpart).
FAMILY_CALLER_PAIRS: dict[str, tuple[tuple[str, str], ...]] = {
    "husband": (
        ("其母亲", "其父亲"),
        ("我妈", "我爸"),
        ("其女儿", "其女婿"),
        ("我姐", "我姐夫"),
        ("其妹妹", "妹夫"),
        ("我女儿", "女婿"),
        ("其母亲", "其继父"),
        ("她妈", "她爸"),
    ),
    "wife": (
        ("其父亲", "其母亲"),
        ("我爸", "我妈"),
        ("其儿子", "儿媳"),
        ("我哥", "我嫂子"),
        ("其弟弟", "弟媳"),
        ("我儿子", "儿媳妇"),
    ),
    "boyfriend": (
        ("其女儿", "女儿的男朋友"),
        ("我姐", "我姐对象"),
        ("其妹妹", "妹妹的男友"),
        ("我女儿", "她对象"),
    ),
    "girlfriend": (("其儿子", "儿子的女朋友"), ("我哥", "我哥对象"), ("其弟弟", "弟弟女朋友")),
    "ex_husband": (
        ("其女儿", "女儿前夫"),
        ("我妈", "我妈的前夫"),
        ("我姐", "我姐前夫"),
        ("其妹妹", "妹妹的前夫"),
    ),
    "ex_wife": (("其儿子", "儿子的前妻"), ("我哥", "我哥前妻"), ("我爸", "我爸前妻")),
    "ex_boyfriend": (("其女儿", "女儿前男友"), ("我姐", "我姐前男友"), ("其妹妹", "妹妹以前的对象")),
    "ex_girlfriend": (("其儿子", "儿子前女友"), ("我哥", "我哥前女友")),
    "son": (
        ("其父亲", "其哥哥"),
        ("我爸", "我弟"),
        ("我妈", "我哥"),
        ("其母亲", "其弟弟"),
        ("其老伴", "儿子"),
        ("我老伴", "儿子"),
    ),
    "daughter": (("其母亲", "其姐姐"), ("我爸", "我妹"), ("我老伴", "闺女"), ("其父亲", "其妹妹")),
    "father": (("其哥哥", "其父亲"), ("我弟", "我爸"), ("我老公", "我公公"), ("我媳妇", "我岳父")),
    "mother": (("其哥哥", "其母亲"), ("我姐", "我妈"), ("我老公", "我婆婆"), ("我媳妇", "丈母娘")),
    "sibling": (
        ("其父亲", "其叔叔"),
        ("我爸", "我大伯"),
        ("我妈", "我舅舅"),
        ("我老公", "他弟弟"),
        ("我媳妇", "她姐"),
    ),
    "in_law": (
        ("我妈", "我奶奶"),
        ("我老婆", "我妈"),
        ("我老公", "我妈"),
        ("其儿媳", "其老伴"),
        ("其嫂子", "其母亲"),
    ),
    "relative": (("其父亲", "其堂叔"), ("我爸", "我二叔"), ("我妈", "我舅"), ("其丈夫", "其表哥")),
}

#: A family member calling about a non-family conflict names the party only.
FAMILY_CALLER_PARTY: tuple[str, ...] = (
    "其父亲",
    "其母亲",
    "我爸",
    "我妈",
    "其丈夫",
    "其妻子",
    "我老公",
    "我儿子",
    "其哥哥",
    "其儿子",
    "我媳妇",
    "其老伴",
    "其女儿",
)

#: "Other" callers (grid worker, friend, village cadre) name the party like this.
OTHER_CALLER_PARTY: dict[str, tuple[str, ...]] = {
    "female": ("一女子", "一名妇女", "其朋友", "辖区一女子", "本村一妇女", "一名女士"),
    "male": ("一男子", "一名男子", "其朋友", "辖区一男子", "本村一村民", "一名男士"),
    "any": (
        "其朋友",
        "其同事",
        "其亲戚",
        "村民",
        "辖区居民",
        "一名群众",
        "本村村民",
        "一名牧民",
        "其邻居",
        "其老乡",
    ),
}

#: Terms for the other side in non-dispute calls, used by cue clauses.
ND_ACTORS: dict[str, tuple[str, ...]] = {
    "theft": ("小偷", "那人", "对方", "偷东西的人"),
    "fraud": ("对方", "骗子", "那人"),
    "traffic": ("对方司机", "对方", "开车的", "肇事司机"),
    "stranger_assault": ("对方", "那人", "那名男子", "打人的", "那几个人", "对方"),
    "fare_dispute": ("司机", "老板", "对方", "店员"),
    "drunk_person": ("醉汉", "那人", "那名男子", "对方"),
    "default": ("对方", "那人"),
}

# --------------------------------------------------------------------------
# Cue clauses (the caller speaks for a party) - {W2} counterpart reference,
# {O} the party as object, {SP} the party as subject.
# --------------------------------------------------------------------------

CUE_PARTY: dict[str, tuple[str, ...]] = {
    "violence": (
        "V|{W2}动手打了{O}",
        "V|{W2}动手了",
        "V|{W2}打了{O}几下",
        "V|{SP}被{W2}打了",
        "V|{W2}殴打{O}",
        "V|{SP}遭到{W2}殴打",
        "V|{W2}对{O}拳打脚踢",
        "V|{W2}扇了{O}几个耳光",
        "V|{W2}扇了{O}一巴掌",
        "V|{W2}掐{O}脖子",
        "V|{W2}推搡{O}",
        "V|双方发生推搡",
        "V|双方撕扯在一起",
        "V|两人厮打起来",
        "V|双方打起来了",
        "V|{W2}把{O}推倒在地",
        "V|{W2}揪着{O}头发打",
        "V|{W2}踹了{O}几脚",
        "V|{W2}把{O}按在地上打",
        "V|双方互殴",
        "V|{W2}动手打人",
        "V|{W2}上来就打",
        "V|{W2}对{O}动手",
        "V|双方发生肢体冲突",
        "V|{W2}拿拳头砸{O}",
        "V|{W2}把{O}从屋里拽出来打",
        "V|{W2}掐住{O}不放",
        "V|{W2}薅着{O}的头发往墙上撞",
        "V|{W2}打人了",
    ),
    "weapon": (
        "K|{W2}持刀",
        "K|{W2}拿着{WPN}",
        "K|{W2}手里拿着{WPN}",
        "K|{W2}拿{WPN}出来了",
        "K|{W2}拎着{WPN}站在门口",
        "K|{W2}持{WPN}",
        "K|{W2}把{WPN}拿出来比划",
        "K|{W2}抄起{WPN}",
        "K|{W2}拿{WPN}追着{O}",
        "K|{W2}手里攥着{WPN}",
        "K|{W2}拿了把刀",
        "K|{W2}从屋里拿出{WPN}",
    ),
    "injury": (
        "I|{SP}{BODY}受伤了",
        "I|{SP}{BODY}被打伤",
        "I|{SP}受伤流血了",
        "I|{SP}头破了",
        "I|{SP}脸肿了",
        "I|{SP}胳膊擦伤",
        "I|{SP}{BODY}出血",
        "I|{SP}身上多处淤青",
        "I|{SP}{BODY}肿了",
        "I|{SP}鼻子出血了",
        "I|{SP}眼睛被打青了",
        "I|有人受伤",
        "I|{SP}受了轻伤",
        "I|{BODY}有伤",
        "I|{SP}牙被打掉了",
        "I|{W2}也受伤了",
        "I|{SP}{BODY}划了个口子",
        "I|需要120",
        "I|已经叫了120",
        "I|{SP}被打得起不来了",
        "I|{SP}{BODY}流血了",
    ),
    "threat": (
        "T|{W2}扬言要弄死{O}",
        "T|{W2}扬言要报复",
        "T|{W2}威胁{O}",
        "T|{W2}说要杀了{O}",
        "T|{W2}说要同归于尽",
        "T|{W2}说要弄死{O}全家",
        "T|{W2}放话要找人收拾{O}",
        "T|{W2}威胁说不给钱就要{O}好看",
        "T|{W2}说不给钱就烧{O}家房子",
        "T|{W2}扬言要砍人",
        "T|{W2}说要让{O}出不了门",
        "T|{W2}说{O}敢走就打断{O}的腿",
        "T|{W2}发信息威胁{O}",
        "T|{W2}说早晚要报复",
        "T|{W2}说要去{O}单位闹",
        "T|{W2}说要跟{O}拼命",
        "T|{W2}扬言要杀人",
        "T|{W2}说要让{O}付出代价",
    ),
    "alcohol": (
        "A|{W2}喝多了",
        "A|{W2}酒后闹事",
        "A|{W2}喝了酒",
        "A|{W2}醉酒",
        "A|{W2}酒后情绪激动",
        "A|{W2}满身酒气",
        "A|{W2}又喝大了",
        "A|双方都喝了酒",
        "A|{W2}喝醉了",
        "A|{W2}喝完酒回来",
        "A|{W2}酒喝多了在闹",
        "A|{W2}每次喝完酒就这样",
        "A|{W2}醉醺醺的",
        "A|{W2}喝了一下午酒",
    ),
    "self_harm": (
        "S|{W2}扬言要跳楼",
        "S|{W2}说要喝药",
        "S|{W2}说不想活了",
        "S|{W2}要自杀",
        "S|{W2}站在阳台上说要跳下去",
        "S|{W2}拿着农药说要喝",
        "S|{SP}想不开说要跳楼",
        "S|{SP}说要割腕",
        "S|{SP}情绪低落说要寻短见",
        "S|{W2}说要死在{O}面前",
        "S|{W2}往河边走说要跳河",
        "S|{SP}说活着没意思要喝药",
    ),
    "separation": (
        "P|双方正在闹离婚",
        "P|双方已分居",
        "P|{W2}搬出去了",
        "P|{SP}要离婚{W2}不同意",
        "P|{W2}要离婚",
        "P|离婚后{W2}一直纠缠",
        "P|两人已经离婚了",
        "P|双方分居{D}了",
        "P|{SP}已经搬出去住了",
        "P|两人分手了",
        "P|{W2}闹着要离婚",
        "P|{SP}已经起诉离婚了",
        "P|双方协议离婚还没办手续",
        "P|离婚官司还没判",
    ),
}

#: Separation when the counterpart is not the partner: it is the party's own
#: marriage that is breaking up (a stress factor, not the conflict itself).
CUE_SEPARATION_OTHER: tuple[str, ...] = (
    "P|{SP}正在闹离婚",
    "P|{SP}跟爱人分居了",
    "P|{SP}离婚后一个人住",
    "P|{SP}刚离了婚",
    "P|{SP}和爱人已经分开了",
    "P|{SP}两口子在闹离婚",
    "P|{SP}和对象分手了",
)

#: Self-harm by the party itself (used when the other side is an institution:
#: a hospital does not threaten suicide, the patient's family might).
CUE_SELF_HARM_PARTY: tuple[str, ...] = (
    "S|{SP}想不开说要跳楼", "S|{SP}说要割腕", "S|{SP}情绪低落说要寻短见", "S|{SP}说活着没意思要喝药",
    "S|{SP}说要死在{W}门口", "S|{SP}扬言要从楼上跳下去", "S|{SP}拿着农药说要喝",
)  # fmt: skip

#: Combined clauses state two cues at once (used in place of both singles).
CUE_COMBOS: dict[str, tuple[str, ...]] = {
    "VK": (
        "VK|{W2}拿{WPN}打{O}",
        "VK|{W2}持{WPN}殴打{O}",
        "VK|{W2}抄起{WPN}就打",
        "VK|{W2}拿{WPN}追着{O}打",
        "VK|{W2}挥着{WPN}冲{O}过来打",
        "VK|{W2}拿{WPN}砍{O}",
        "VK|{W2}拿{WPN}往{O}身上抡",
    ),
    "VI": (
        "VI|{SP}被{W2}打伤了",
        "VI|{W2}把{O}{BODY}打破了",
        "VI|{SP}被{W2}打得{BODY}流血",
        "VI|{W2}把{O}打出血了",
        "VI|{SP}被{W2}打得满脸是血",
        "VI|{W2}把{O}{BODY}打肿了",
    ),
    "VA": (
        "VA|{W2}喝多了动手打人",
        "VA|{W2}酒后打人",
        "VA|{W2}喝完酒就动手",
        "VA|{W2}借着酒劲打了{O}",
        "VA|{W2}醉酒后殴打{O}",
        "VA|{W2}喝了酒回来就动手",
    ),
    "TK": (
        "TK|{W2}拿着{WPN}扬言要砍人",
        "TK|{W2}持{WPN}威胁{O}",
        "TK|{W2}拿{WPN}比划说要弄死{O}",
        "TK|{W2}提着{WPN}说要同归于尽",
    ),
}

#: Cue clauses heard or seen by a witness (no names known).
CUE_WITNESS: dict[str, tuple[str, ...]] = {
    "violence": (
        "V|听着像动手了",
        "V|好像打起来了",
        "V|听到有打人的声音",
        "V|有摔打的声音",
        "V|看到男的在打女的",
        "V|看见两人撕扯在一起",
        "V|两人厮打在一起",
        "V|有人被推倒了",
        "V|听到女的在喊救命",
        "V|听见有人喊别打了",
        "V|看着像是在殴打",
    ),
    "weapon": (
        "K|有人手里拿着刀",
        "K|看到有人拿着棍子",
        "K|听到有人说要拿刀",
        "K|男的拎着{WPN}",
        "K|有人拿着{WPN}",
    ),
    "injury": ("I|有人流血了", "I|看到有人头上有血", "I|有人倒在地上起不来", "I|女的脸上有伤", "I|地上有血"),
    "threat": ("T|有人喊要杀人", "T|听到男的说要弄死她", "T|有人在喊要报复", "T|听到有人扬言要砍人"),
    "alcohol": ("A|男的好像喝多了", "A|都喝了酒", "A|一身酒气", "A|像是喝醉了", "A|说话像是喝了酒"),
    "self_harm": (
        "S|有人喊要跳楼",
        "S|女的哭着说不想活了",
        "S|有人站在窗户边上要往下跳",
        "S|听到有人说要喝药",
    ),
    "separation": ("P|听着是在闹离婚", "P|吵着要离婚", "P|听说两口子分居了"),
}

#: Negations, stated sometimes for cues the event does NOT have.
NEGATIONS: dict[str, tuple[str, ...]] = {
    "violence": (
        "未动手",
        "没有动手",
        "双方未发生肢体冲突",
        "没打起来",
        "暂未打起来",
        "没有肢体接触",
        "只是吵没动手",
        "未发生打斗",
        "对方没打人",
        "双方没有动手",
        "还没动手",
        "未发生肢体接触",
    ),
    "injury": ("无人受伤", "没有人受伤", "未受伤", "双方均未受伤", "没受伤", "无人员受伤", "人没事"),
    "weapon": ("未持械", "没拿东西", "手里没有凶器", "对方没拿刀"),
    "threat": ("对方没说什么狠话", "未扬言报复"),
    "alcohol": ("双方均未饮酒", "没喝酒", "对方没喝酒", "未饮酒"),
    "self_harm": ("无轻生念头", "没有想不开"),
    "separation": (),
}

REPEAT_BACK: tuple[str, ...] = (
    "又来了",
    "再次报警",
    "多次报警",
    "经常这样",
    "已经报过几次警",
    "之前报过警",
    "这是第{RN}次报警",
    "前几天刚报过警",
    "对方又来闹了",
    "这个月已经第{RN}次了",
    "以前也报过警",
    "之前因为同样的事报过警",
    "三天两头这样",
    "又闹起来了",
    "上次报警后还是这样",
    "不是第一次了",
)
REPEAT_FRONT: tuple[str, ...] = ("再次报警", "又一次报警", "第{RN}次报警", "又来电", "再次来电", "重复报警")

MEDIATION: tuple[str, ...] = (
    "之前已调解过",
    "社区调解过一次",
    "派出所调解过",
    "村委会调解过没用",
    "以前调解过但对方不履行",
    "已经调解过几次了",
    "调解后对方不执行",
    "之前在派出所调解过对方不认",
    "嘎查调解过",
    "调解协议对方不执行",
    "司法所调解过",
    "上次调解后好了几天",
    "之前民警来调解过",
)

REQUESTS_DISPUTE: tuple[str, ...] = (
    "请民警到场处理",
    "需要民警出警",
    "要求出警",
    "请求民警出警",
    "要求民警处理",
    "请民警过来看看",
    "需要警察到场",
    "请派人来",
    "要求民警到场调解",
    "要求处理",
    "希望民警帮忙解决",
    "请尽快出警",
    "不需要120",
    "请民警到场",
    "要求民警帮忙",
    "现场情绪激动",
    "对方还在现场",
    "对方已离开",
    "人还在门口",
)
REQUESTS_ND: tuple[str, ...] = (
    "请民警到场处理",
    "需要民警出警",
    "要求出警",
    "请求帮助",
    "要求民警处理",
    "请民警过来看看",
    "需要民警协助",
    "请派人来",
    "请尽快出警",
    "要求查看监控",
    "需要帮助",
)

LEADS_PARTY: tuple[str, ...] = (
    "称",
    "称",
    "称",
    "称",
    "称",
    "称",
    "称",
    "反映",
    "报称",
    "",
    "",
    "",
    "报警人称",
    "来电称",
    "其称",
    "报警人反映",
    "电话中称",
    "来电反映",
    "报警人报称",
    "据报警人称",
)
LEADS_WITNESS: tuple[str, ...] = ("称", "称", "反映", "", "报警人称", "来电称", "报警人反映")

#: Openings of a call transferred from the 12345 government hotline (the body starts with them).
TRANSFER_OPENERS: tuple[str, ...] = (
    "12345转办：",
    "12345转办：",
    "市民热线转来：",
    "12345热线转来：",
    "12345政务服务热线转办：",
    "12345转来工单：",
    "市民热线转办：",
)
#: ... and how the hotline's text goes on.
TRANSFER_LEADS: tuple[str, ...] = ("市民反映", "市民反映", "来电人反映", "反映", "市民称", "", "诉求人反映")
#: Openings of a report made in person at a station.
IN_PERSON_LEADS: tuple[str, ...] = (
    "报警人到所报称",
    "报警人到所报称",
    "来所报警称",
    "报警人到所反映",
    "报警人来所称",
    "到所报称",
    "其到所报称",
    "报警人到派出所报称",
)
#: Verbs in front of an in-person report's location (the header; never 报称： before 到所报称).
IN_PERSON_VERBS: tuple[str, ...] = ("报警：", "报警：", "报案：")

#: Bare terse forms: the whole body is the act (``被丈夫殴打。``); party voice only.
BARE_ACTS: tuple[str, ...] = (
    "V|被{W}殴打",
    "V|被{W}打了",
    "V|遭{W}殴打",
    "V|{W}打人",
    "V|{W}动手打人",
    "V|被{W}打",
    "VI|被{W}打伤",
    "VI|被{W}打伤了",
    "VK|{W}持刀伤人",
    "T|{W}扬言要打人",
    "T|{W}威胁{O}",
    "V|{W}又打人",
)

#: Call-taker notes that say how little is known (vaguer bodies; keyword-free).
NOTES_VAGUE: tuple[str, ...] = (
    "具体情况不详",
    "其余情况不清",
    "详细情况不清楚",
    "现场情况不明",
    "具体原因不详",
    "报警人未说明具体原因",
    "报警人说不清楚具体情况",
    "具体情况未说明",
    "其他情况不详",
    "详情不清",
    "原因不明",
    "报警人未讲清楚",
    "电话中未讲明",
)
#: Call-taker notes about the caller and the scene (keyword-free).
NOTES_DESK: tuple[str, ...] = (
    "报警人情绪激动",
    "报警人在现场等候",
    "报警人在楼下等候",
    "报警人语气很急",
    "报警人说话含糊",
    "报警人在门口等民警",
    "报警人要求民警联系其本人",
    "报警人电话中情绪低落",
    "已告知报警人注意安全",
    "报警人说话有口音",
    "报警人称现场人较多",
    "电话里声音嘈杂",
    "报警人称自己在外面",
    "报警人要求回电",
    "报警人要求民警到了给其打电话",
    "报警人称现场有监控",
    "报警人要求民警尽快到场",
    "报警人称其在路口等民警",
    "报警人称不方便多说",
    "报警人电话中一直在哭",
    "报警人反复说了几遍",
    "报警人称手机快没电了",
)
#: Notes on the ambulance when someone is hurt (injury written or true).
AMBULANCE_INJURED: tuple[str, ...] = (
    "I|已通知120",
    "I|120已到场",
    "I|已联系120",
    "I|已打120",
    "I|需要120到场",
    "I|已转120",
    "I|120正在赶来",
)
#: ... and when nobody is hurt enough for one.
AMBULANCE_NOT_NEEDED: tuple[str, ...] = ("不需要120", "不需要120", "无需120", "称不用叫120", "暂不需要120")
#: A caller who would not say who they are (the rest of the record is blank).
REFUSALS: tuple[str, ...] = (
    "报警人不愿透露姓名",
    "报警人拒绝提供身份信息",
    "不愿留姓名",
    "报警人不愿透露身份",
    "报警人拒绝留下姓名和身份证号",
    "不肯说姓名",
)

REASON_TAILS: tuple[str, ...] = (
    "起因是{R}",
    "因{R}引起",
    "原因是{R}的事",
    "系因{R}",
    "据称是因为{R}",
    "事情起因是{R}问题",
    "双方因{R}有矛盾",
    "为{R}的事",
    "是因为{R}",
    "起因系{R}",
    "双方因{R}发生纠纷",
    "两人因{R}起了争执",
    "之前就因{R}有矛盾",
    "是为了{R}吵起来的",
    "双方因{R}闹矛盾已久",
    "因{R}发生口角引起",
    "事情是因{R}的纠纷引起的",
)

#: Appended to a keyword-bearing dispute when the main clause said nothing
#: like a dispute (e.g. "老公一晚上没回家..." + "，双方发生争吵").
WRAPS: tuple[str, ...] = (
    "双方发生纠纷",
    "两人吵了起来",
    "为此发生争吵",
    "双方因此发生口角",
    "由此产生矛盾",
    "双方起了争执",
    "二人发生争执",
    "双方发生口角",
    "两人为此吵架",
    "双方因此闹矛盾",
    "现在两人吵起来了",
    "为这事吵了好几次架",
    "两人在门口吵起来了",
    "两人争执不下",
    "为此双方产生纠纷",
    "说了几句就吵起来了",
    "一直为这事闹矛盾",
    "双方因此起了冲突",
    "为这个事吵架",
    "两边吵得很凶",
    "双方发生争吵",
    "二人因此发生口角",
    "两人当场吵起来了",
    "双方互不相让发生争执",
)
#: The same for witness calls (the caller does not know the parties).
WRAPS_WITNESS: tuple[str, ...] = (
    "像是有纠纷",
    "好像是家里闹矛盾",
    "听着像是在吵架",
    "像是发生了纠纷",
    "不知道因为什么吵起来的",
    "看着像打架",
    "应该是有什么矛盾",
    "像是两家有纠纷",
    "听着吵得很凶",
    "看样子是起了争执",
)

#: Homophone / near-form typos a call taker makes, applied to the content.
TYPOS: tuple[tuple[str, str], ...] = (
    ("殴打", "欧打"),
    ("已经", "以经"),
    ("丈夫", "丈付"),
    ("邻居", "临居"),
    ("纠纷", "纠分"),
    ("矛盾", "矛顿"),
    ("吵架", "炒架"),
    ("威胁", "威协"),
    ("赡养", "善养"),
    ("调解", "调节"),
    ("再次", "在次"),
    ("在家", "再家"),
    ("受伤", "受上"),
    ("现在", "现再"),
    ("一直", "一只"),
    ("借钱", "接钱"),
    ("草场", "草厂"),
    ("宅基地", "宅机地"),
    ("工资", "公资"),
    ("物业", "务业"),
    ("离婚", "离昏"),
    ("前夫", "钱夫"),
    ("楼上", "楼尚"),
    ("扬言", "杨言"),
    ("菜刀", "菜到"),
    ("喝多了", "和多了"),
    ("分居", "分局"),
    ("报复", "抱负"),
    ("媳妇", "息妇"),
    ("的事", "得事"),
    ("没有", "没又"),
    ("不还", "不换"),
    ("孩子", "孩字"),
    ("漏水", "露水"),
    ("彩礼", "采礼"),
)

CN_ORDINAL: tuple[str, ...] = ("", "一", "二", "三", "四", "五", "六", "七", "八", "九", "十")


def ordinal(n: int) -> str:
    """Chinese numeral for "the n-th call" (好几 beyond ten)."""
    return CN_ORDINAL[n] if 0 < n <= 10 else "好几"


def _check_fillers() -> None:
    """Fillers must be keyword-free: the engine reads keyword status off templates."""
    lists: list[tuple[str, ...]] = [
        NEIGHBOR_PLACES,
        PUBLIC_PLACES,
        SHOPS,
        EATERIES,
        BUILDINGS,
        ND_WITNESS_SUBJECTS,
        ITEMS,
        VEHICLES,
        RELATIVES_ND,
        *SPOUSES_ND.values(),
        BODY_PARTS,
        ANIMALS,
        LIVESTOCK,
        DURATIONS,
        COUNTS,
        MONEY,
        NICKNAMES,
        FAMILY_CALLER_PARTY,
    ]
    lists += list(WHO.values()) + list(WEAPONS.values()) + list(TIME_WORDS.values()) + list(ND_ACTORS.values())
    lists += [tuple(w for pair in pairs for w in pair) for pairs in FAMILY_CALLER_PAIRS.values()]
    lists += list(OTHER_CALLER_PARTY.values())
    bad = sorted({w for words in lists for w in words if KEYWORD_RE.search(w)})
    if bad:
        raise ValueError(f"filler words contain stock keywords: {bad}")


_check_fillers()
