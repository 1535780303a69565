"""Every rate the synthetic city uses, with where it comes from.

``docs/simulator.md`` explains each number; tests assert the city lands
within documented tolerances of the targets marked TARGET here. Rates are per
person-year or per day as named. Shape constants (hour-of-day curves, cue
logits, charge mixes) live beside the code that uses them, documented there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from features.schema import CATEGORIES  # the contract owns the category codes

SIMULATOR_VERSION = "1.1.0"

__all__ = ["CATEGORIES", "CATEGORY_SHARE", "COUNTIES", "NON_DISPUTE_SHARE", "County", "SimConfig"]

# BRIEF §4: a county bureau's 2023 dispute statistics. TARGET for the share of latent conflicts.
CATEGORY_SHARE = {
    "debt": 0.403,
    "family": 0.231,
    "neighbor": 0.214,
    "land": 0.057,
    "labor": 0.047,
    "medical_school": 0.011,
    "property": 0.010,
    "other": 0.028,
}

NON_DISPUTE_SHARE = {
    "traffic": 0.18,
    "theft": 0.14,
    "help": 0.14,
    "fraud": 0.10,
    "lost_property": 0.08,
    "noise": 0.06,
    "suspicious": 0.05,
    "consult": 0.05,
    "stranger_assault": 0.04,
    "drunk_person": 0.04,
    "fare_dispute": 0.03,
    "fire": 0.03,
    "missing_person": 0.03,
    "alarm_false": 0.03,
}
"""Mix of the calls that are not household/neighbourhood disputes (most calls are not)."""


@dataclass(frozen=True)
class County:
    """A county-level unit of Tongliao with its sub-center."""

    code: str
    name: str
    population_share: float
    urban_share: float
    pastoral_share: float
    mongol_share: float
    townships: tuple[str, ...]


# Population shares follow the 2020 census order of magnitude for Tongliao (2.87 M):
# 科尔沁区 about a third, the banners 0.1-0.4 M each; Mongol share is about 46 % city-wide,
# highest in the Horqin banners. Figures are rounded and documented as approximate.
COUNTIES: tuple[County, ...] = (
    County(
        "150502",
        "科尔沁区",
        0.305,
        0.80,
        0.00,
        0.32,
        (
            "明仁",
            "施介",
            "科尔沁",
            "永清",
            "红星",
            "西门",
            "东郊",
            "清河",
            "大林",
            "钱家店",
            "丰田",
            "余粮堡",
            "育新",
            "敖力布皋",
            "莫力庙",
            "庆和",
            "建国",
            "铁南",
            "团结",
            "交通",
        ),
    ),
    County("150571", "开发区", 0.035, 0.85, 0.00, 0.25, ("辽河", "河西", "木里图", "新城")),
    County(
        "150581",
        "霍林郭勒市",
        0.042,
        0.90,
        0.05,
        0.30,
        ("珠斯花", "莫斯台", "宝日呼吉尔", "沙尔呼热", "达来胡硕"),
    ),
    County(
        "150521",
        "科左中旗",
        0.163,
        0.25,
        0.15,
        0.72,
        (
            "保康",
            "宝龙山",
            "舍伯吐",
            "巴彦塔拉",
            "门达",
            "架玛吐",
            "花吐古拉",
            "代力吉",
            "努日木",
            "希伯花",
            "胜利",
            "敖包",
            "珠日河",
            "图布信",
            "腰林毛都",
            "协代",
        ),
    ),
    County(
        "150522",
        "科左后旗",
        0.118,
        0.25,
        0.25,
        0.75,
        (
            "甘旗卡",
            "吉尔嘎朗",
            "金宝屯",
            "常胜",
            "朝鲁吐",
            "海鲁吐",
            "努古斯台",
            "散都",
            "双胜",
            "阿古拉",
            "茂道吐",
            "巴嘎塔拉",
            "查日苏",
        ),
    ),
    County(
        "150523",
        "开鲁县",
        0.133,
        0.35,
        0.02,
        0.12,
        ("开鲁", "大榆树", "黑龙坝", "麦新", "义和塔拉", "建华", "小街基", "东风", "吉日嘎郎", "东来"),
    ),
    County(
        "150524",
        "库伦旗",
        0.058,
        0.30,
        0.15,
        0.60,
        ("库伦", "扣河子", "白音花", "六家子", "额勒顺", "茫汗", "先进", "水泉"),
    ),
    County(
        "150525",
        "奈曼旗",
        0.102,
        0.30,
        0.10,
        0.40,
        (
            "大沁他拉",
            "八仙筒",
            "青龙山",
            "新镇",
            "治安",
            "东明",
            "沙日浩来",
            "义隆永",
            "苇莲苏",
            "白音他拉",
            "土城子",
            "固日班花",
            "黄花塔拉",
        ),
    ),
    County(
        "150526",
        "扎鲁特旗",
        0.044,
        0.35,
        0.35,
        0.50,
        (
            "鲁北",
            "黄花山",
            "嘎亥图",
            "巨日合",
            "阿日昆都楞",
            "香山",
            "乌力吉木仁",
            "格日朝鲁",
            "道老杜",
            "前德门",
        ),
    ),
)

N_STATIONS = 137  # BRIEF §1: "1+9+137+N"

HOUSEHOLD_SIZE_P = (0.25, 0.33, 0.22, 0.11, 0.06, 0.03)
"""P(size = 1..6). Mean 2.49, Inner Mongolia's 2020 census average is about 2.4."""


@dataclass(frozen=True)
class SimConfig:
    """Parameters of one synthetic city. Defaults are the documented rates."""

    persons: int = 300_000
    days: int = 730
    start: str = "2023-01-01"
    seed: int = 20240411
    burn_in_days: int = 180
    """Conflicts may start before the window; their earlier calls are not exported (left-censoring)."""

    # --- population -------------------------------------------------------------
    floating_share_urban: float = 0.15
    floating_share_rural: float = 0.04
    alcohol_misuse_male: float = 0.09  # latent
    alcohol_misuse_female: float = 0.015  # latent
    debt_stress: float = 0.10  # latent
    mental_illness_registry: float = 0.0045  # observed, severe mental illness care registry ~4.5 per mille
    prior_record_male: float = 0.05  # observed
    prior_record_female: float = 0.006
    community_correction: float = 0.003  # observed
    phone_owner_adult: float = 0.95

    # --- calls ------------------------------------------------------------------
    non_dispute_calls_per_person_year: float = 0.09
    """TARGET: dispute calls are roughly a fifth of all calls; the rest follow NON_DISPUTE_SHARE."""
    conflicts_per_person_year: float = 0.0105
    """Latent conflicts starting per person-year (Xilingol: 6,500 disputes for ~1.1 M people)."""
    hidden_conflict_share: float = 0.25
    """Conflicts that never call 110 (they can still escalate: a ceiling on any model's recall)."""
    excitation_decay_days: float = 10.0
    """Self-excitation memory: a call raises the chance of another for about this long."""
    branching_mean: float = 0.36
    branching_max: float = 0.85
    baseline_calls_mean: float = 0.45
    """Expected spontaneous calls over a conflict's life after the first one."""
    duration_days: dict[str, float] = field(
        default_factory=lambda: {
            "debt": 150.0,
            "family": 240.0,
            "neighbor": 180.0,
            "land": 120.0,
            "labor": 60.0,
            "medical_school": 30.0,
            "property": 90.0,
            "other": 20.0,
        }
    )
    call_rate_multiplier: dict[str, float] = field(
        default_factory=lambda: {
            "debt": 0.8,
            "family": 1.6,
            "neighbor": 1.2,
            "land": 1.0,
            "labor": 1.0,
            "medical_school": 0.6,
            "property": 0.7,
            "other": 0.4,
        }
    )

    # --- escalation (民转刑) ------------------------------------------------------
    escalation_base_hazard: float = 0.00007
    """Daily hazard at average risk; tuned so a few per cent of calling conflicts escalate within 90 days."""
    escalation_weights: dict[str, float] = field(
        default_factory=lambda: {
            "severity": 0.85,
            "excitation": 0.9,
            "violence": 0.8,
            "weapon": 1.0,
            "threat": 0.8,
            "injury": 0.5,
            "alcohol_misuse": 0.8,
            "temper": 0.5,
            "mental_illness": 0.8,
            "prior_record": 0.6,
            "unemployed": 0.3,
            "separation": 0.9,
            "mediated": -0.5,
        }
    )
    escalation_category_factor: dict[str, float] = field(
        default_factory=lambda: {
            "debt": 0.8,
            "family": 1.4,
            "neighbor": 1.0,
            "land": 1.3,
            "labor": 0.6,
            "medical_school": 0.4,
            "property": 0.4,
            "other": 1.6,
        }
    )
    escalation_call_share: float = 0.85
    """An escalation usually comes with a 110 call reporting it."""
    conflict_ends_after_escalation: float = 0.7

    # --- responses ----------------------------------------------------------------
    mediation_after_call: float = 0.45
    mediation_severity_relief: float = 0.6
    routine_visits_per_household_year: float = 0.5
    """Tongliao reports 1.26 M door knocks in a year for ~1.1 M households; half that keeps tables small."""
    screening_finds_hidden: float = 0.3

    # --- linkage noise -------------------------------------------------------------
    caller_name_full: float = 0.62
    caller_name_title: float = 0.28  # 张女士 / 王先生; the rest are anonymous
    phone_full: float = 0.55
    phone_masked: float = 0.33  # the rest missing
    phone_not_registered: float = 0.08
    id_full: float = 0.2
    id_masked: float = 0.43  # the rest missing; real exports show a middle-masked ID on about 4 calls in 10
    no_contact_given: float = 0.05
    """Callers who leave neither phone nor ID on record (hung up, called from a shop, would not say)."""
    refused_details: float = 0.02
    """Callers who refuse to give their name and ID (the record says 不愿透露); their phone may remain."""
    duplicate_log: float = 0.015
    """Calls logged twice: a second record with a new incident number a minute or two later, same text."""
    channel_12345: dict[str, float] = field(
        default_factory=lambda: {
            "noise": 0.15, "neighbor": 0.07, "property": 0.12, "labor": 0.08, "debt": 0.03, "consult": 0.08,
            "land": 0.04, "help": 0.02, "traffic": 0.01,
        }
    )  # fmt: skip
    """Share of calls of a type (dispute category or call type) transferred from the 12345 hotline."""
    channel_in_person: dict[str, float] = field(
        default_factory=lambda: {
            "fraud": 0.15, "lost_property": 0.12, "theft": 0.08, "consult": 0.06, "debt": 0.07, "labor": 0.06,
            "family": 0.03, "land": 0.05, "property": 0.05, "other": 0.03, "neighbor": 0.02, "traffic": 0.03,
        }
    )  # fmt: skip
    """Share reported in person at a station (报警人到所报称); the station writes the caller's ID in full."""
    dispute_coded_as_dispute: float = 0.62
    """Call takers code a dispute call under 纠纷 this often; otherwise 打架斗殴, 求助, 其他."""
    family_violence_codes: dict[str, float] = field(
        default_factory=lambda: {
            "家庭暴力": 0.56, "虐待": 0.05, "家庭纠纷": 0.2, "打架斗殴": 0.1, "殴打他人": 0.04, "其他": 0.05,
        }
    )  # fmt: skip
    """Level-2 codes of a family dispute call with violence (虐待 three times as often between parent and child)."""
    family_calm_coded_violence: float = 0.04
    """A family call without violence still coded 家庭暴力 (the caller said 家暴; the call taker took it down)."""

    def __post_init__(self) -> None:
        if self.persons < 100:
            raise ValueError(f"persons must be at least 100 to form a city, got {self.persons}")
        if not 30 <= self.days <= 3660:
            raise ValueError(f"days must be between 30 and 3660, got {self.days}")
