"""The data contract: the tables a center exports and the pipeline reads.

One declaration per column (:class:`Col`) drives three things, so they cannot
drift apart: the pandera schemas that validate a table, the type coercion the
loaders apply to CSV text, and the column list in ``docs/data-contract.md``
(a test checks the document names every column declared here).

The simulator writes exactly these tables; a real export with the same
columns drops in without code changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandera.pandas as pa

Kind = Literal["str", "int", "float", "bool", "datetime"]

CATEGORIES: tuple[str, ...] = (
    "debt",
    "family",
    "neighbor",
    "land",
    "labor",
    "medical_school",
    "property",
    "other",
)
"""The 8 dispute categories (BRIEF §4), in the order of their share."""

CATEGORY_NAMES: dict[str, str] = {
    "debt": "经济债务",
    "family": "婚姻家庭",
    "neighbor": "邻里",
    "land": "土地草场",
    "labor": "劳资",
    "medical_school": "涉医涉校",
    "property": "房产物业",
    "other": "其他",
}
"""What a station calls each category (reasons, pages, CSV)."""

ID_NUMBER_PATTERN = r"^\d{17}[\dX]$"
"""An 18-digit resident ID (last character may be X). Registry tables carry it whole."""

SHOWN_ID_PATTERN = r"^[\d*]{14,17}[\dX*]$"
"""An ID as a 110 record shows it: whole, or with stars in place of digits."""

SHOWN_PHONE_PATTERN = r"^[\d*+\-]{7,16}$"

PERSONAL_NUMBER_PATTERN = r"(?<![0-9])(?:1[3-9]\d{9}|\d{17}[\dXx])(?![0-9])"
"""A mobile number or an 18-digit ID number standing alone inside a longer string: what a key must never be.

The online API echoes a caller's own reference back; a reference that is a
phone or an ID number would carry personal data into responses and logs.
"""


@dataclass(frozen=True)
class Col:
    """One column of the contract.

    ``allowed`` lists the only legal values; ``pattern`` is a full-match regex;
    ``ge``/``le`` bound numbers. ``nullable`` says whether a real export may
    leave it empty (caller identity often is).
    """

    kind: Kind
    doc: str
    nullable: bool = False
    allowed: tuple[str, ...] | None = None
    pattern: str | None = None
    ge: float | None = None
    le: float | None = None
    unique: bool = False
    event: bool = False
    """A time something happened that police recorded: it must fall in the load's plausible window
    (``earliest_event_date`` to the export date, features/loaders.py). Every datetime must be before the end of
    the export date."""


@dataclass(frozen=True)
class Table:
    """A table of the contract: its columns and the key that identifies a row."""

    name: str
    doc: str
    columns: dict[str, Col]
    key: tuple[str, ...] = field(default_factory=tuple)

    @property
    def required(self) -> list[str]:
        return list(self.columns)

    def schema(self) -> pa.DataFrameSchema:
        """The pandera schema; row-level failures carry the row's index."""
        return pa.DataFrameSchema(
            {name: _pandera_column(name, col) for name, col in self.columns.items()},
            unique=list(self.key) if len(self.key) > 1 else None,
            strict=False,
            name=self.name,
        )


DTYPES: dict[Kind, str] = {
    "str": "str",
    "int": "Int64",
    "float": "float64",
    "bool": "bool",
    "datetime": "datetime64[ns]",
}
"""The dtype of each kind once loaded (the loader coerces to it; pandera and the loader's fast check expect it)."""


def _pandera_column(name: str, col: Col) -> pa.Column:
    checks: list[pa.Check] = []
    if col.allowed is not None:
        checks.append(pa.Check.isin(list(col.allowed)))
    if col.pattern is not None:
        checks.append(pa.Check.str_matches(col.pattern))
    if col.ge is not None:
        checks.append(pa.Check.ge(col.ge))
    if col.le is not None:
        checks.append(pa.Check.le(col.le))
    return pa.Column(
        DTYPES[col.kind],
        checks=checks,
        nullable=col.nullable,
        unique=col.unique,
        coerce=col.kind in ("datetime", "int"),
        name=name,
    )


STATION = Col(
    "str",
    "Police station id (the simulator uses `S001`..`S137`; real exports use their own organisation codes).",
    pattern=r"^[A-Za-z0-9_-]{2,24}$",
)

ADDRESSES = Table(
    "addresses",
    "Every address down to building/unit/room (urban) or house number (village), "
    "with the station and county that cover it.",
    {
        "address_id": Col("str", "Address key.", unique=True),
        "county_code": Col(
            "str",
            "6-digit administrative code of the county/district (Tongliao: 1505xx).",
            pattern=r"^\d{6}$",
        ),
        "county_name": Col("str", "County/district name, e.g. 科尔沁区, 科左中旗."),
        "station_id": STATION,
        "station_name": Col("str", "Station name, e.g. 明仁派出所."),
        "area_type": Col(
            "str", "urban compound, rural village or pastoral area.", allowed=("urban", "rural", "pastoral")
        ),
        "township": Col("str", "街道 / 镇 / 乡 / 苏木."),
        "community": Col("str", "小区 (urban) or 村 / 嘎查 (rural, pastoral)."),
        "building": Col("int", "楼 number (urban only).", nullable=True, ge=1),
        "unit": Col("int", "单元 number (urban only).", nullable=True, ge=1),
        "room": Col("int", "室 number, floor*100+door (urban only).", nullable=True, ge=101),
        "house_no": Col("int", "号 within the village or 嘎查 (rural, pastoral only).", nullable=True, ge=1),
        "address_text": Col("str", "Canonical full address string as the registry writes it."),
    },
    key=("address_id",),
)

HOUSEHOLDS = Table(
    "households",
    "Households (户): where they live and who heads them. Members are persons with this household_id.",
    {
        "household_id": Col("str", "Household key.", unique=True),
        "address_id": Col("str", "Where the household lives (addresses.address_id)."),
        "head_person_id": Col("str", "The 户主 (persons.person_id)."),
        "size": Col("int", "Number of members, 1 to 8.", ge=1, le=8),
        "household_type": Col(
            "str", "registered (户籍户) or floating (流动人口户).", allowed=("registered", "floating")
        ),
    },
    key=("household_id",),
)

RELATION_TO_HEAD = ("户主", "配偶", "子女", "父母", "孙子女", "兄弟姐妹", "儿媳女婿", "其他")
EMPLOYMENT = ("employed", "self_employed", "farmer", "herder", "unemployed", "retired", "student", "child")

PERSONS = Table(
    "persons",
    "The actual-population registry (实有人口) joined with shared risk registries.",
    {
        "person_id": Col("str", "Person key.", unique=True),
        "id_number": Col("str", "18-digit resident ID number (personal data).", pattern=ID_NUMBER_PATTERN),
        "name": Col("str", "Full name (personal data)."),
        "sex": Col("str", "M or F.", allowed=("M", "F")),
        "birth_date": Col("datetime", "Date of birth."),
        "ethnicity": Col("str", "民族.", allowed=("汉族", "蒙古族", "满族", "回族", "其他")),
        "household_id": Col("str", "The household (households.household_id)."),
        "relation_to_head": Col("str", "与户主关系.", allowed=RELATION_TO_HEAD),
        "residence_type": Col("str", "registered (户籍) or floating (流动).", allowed=("registered", "floating")),
        "employment": Col("str", "Employment status.", allowed=EMPLOYMENT),
        "phone": Col("str", "Mobile number (personal data).", nullable=True, pattern=r"^1[3-9]\d{9}$"),
        "mental_illness_registry": Col("bool", "On the severe mental illness care registry (卫健)."),
        "community_correction": Col("bool", "Under community correction or released within 5 years (司法)."),
        "prior_record": Col("bool", "Has a criminal or administrative record before the data window."),
    },
    key=("person_id",),
)

RELATION_KINDS = (
    "neighbor",
    "ex_partner",
    "partner",
    "creditor_debtor",
    "employer_worker",
    "coworker",
    "land_neighbor",
)

RELATIONS = Table(
    "relations",
    "Person-to-person links beyond the household. creditor_debtor and employer_worker "
    "are directed: person_a is the creditor / employer.",
    {
        "person_id_a": Col("str", "First person."),
        "person_id_b": Col("str", "Second person."),
        "relation": Col("str", "Kind of link.", allowed=RELATION_KINDS),
        "since": Col("datetime", "When the link was first recorded.", nullable=True),
        "source": Col(
            "str",
            "Where the link comes from: registry, visit, incident.",
            allowed=("registry", "visit", "incident"),
        ),
    },
    key=("person_id_a", "person_id_b", "relation"),
)

CATEGORY_L1 = ("刑事警情", "治安警情", "交通警情", "纠纷警情", "群众求助", "火灾事故", "其他警情")

INCIDENTS = Table(
    "incidents",
    "110 records, one per call. Caller identity may be masked or missing; the narrative "
    "is the call taker's free text in the 110 layout.",
    {
        "incident_id": Col("str", "Incident key (接警单号).", unique=True),
        "received_at": Col("datetime", "When the call was received.", event=True),
        "caller_name": Col("str", "Caller name as given (personal data; may be a title like 张女士).", nullable=True),
        "caller_phone": Col(
            "str",
            "Caller phone, whole or masked (personal data).",
            nullable=True,
            pattern=SHOWN_PHONE_PATTERN,
        ),
        "caller_id_number": Col(
            "str",
            "Caller ID number, whole or masked (personal data).",
            nullable=True,
            pattern=SHOWN_ID_PATTERN,
        ),
        "location_text": Col("str", "Where, as the caller said it (not normalised).", nullable=True),
        "narrative": Col("str", "Free-text narrative (personal data inside)."),
        "category_l1": Col("str", "Police category, level 1.", allowed=CATEGORY_L1),
        "category_l2": Col("str", "Police category, level 2 (e.g. 家庭纠纷, 盗窃, 打架斗殴)."),
        "station_id": STATION,
        "disposition": Col("str", "How it was handled (处置结果)."),
    },
    key=("incident_id",),
)

CHARGES = (
    "故意伤害",
    "故意杀人",
    "寻衅滋事",
    "故意毁坏财物",
    "非法拘禁",
    "殴打他人",
    "盗窃",
    "诈骗",
    "抢劫",
    "其他",
)
VIOLENT_CHARGES = ("故意伤害", "故意杀人", "寻衅滋事", "故意毁坏财物", "非法拘禁", "殴打他人", "抢劫")
"""Charges that make a later case an escalation (民转刑) of an earlier dispute."""

CASES = Table(
    "cases",
    "Criminal and administrative cases, one row per (case, person involved).",
    {
        "case_id": Col("str", "Case key (案件编号)."),
        "opened_at": Col("datetime", "When the case was opened (受案/立案).", event=True),
        "case_type": Col("str", "criminal (刑事) or administrative (行政).", allowed=("criminal", "administrative")),
        "charge": Col("str", "Charge (案由).", allowed=CHARGES),
        "station_id": STATION,
        "person_id": Col("str", "A person involved (persons.person_id)."),
        "role": Col("str", "suspect or victim.", allowed=("suspect", "victim")),
        "source_incident_id": Col("str", "The 110 incident that opened it, when there was one.", nullable=True),
    },
    key=("case_id", "person_id"),
)

VISITS = Table(
    "visits",
    "Door-to-door visits (入户走访), dispute screening, mediation and follow-up visits.",
    {
        "visit_id": Col("str", "Visit key.", unique=True),
        "visited_at": Col("datetime", "When.", event=True),
        "household_id": Col("str", "Household visited."),
        "station_id": STATION,
        "visit_type": Col("str", "Kind of visit.", allowed=("入户走访", "矛盾排查", "调解", "回访")),
        "outcome": Col("str", "Outcome.", allowed=("无异常", "已化解", "调解中", "未化解", "未遇")),
    },
    key=("visit_id",),
)

TABLES: dict[str, Table] = {t.name: t for t in (ADDRESSES, HOUSEHOLDS, PERSONS, RELATIONS, INCIDENTS, CASES, VISITS)}
"""Every table of the contract, by name (the file stem a dataset folder uses)."""


def contract_markdown() -> str:
    """The column tables of ``docs/data-contract.md``, generated so the doc cannot drift from code."""
    lines: list[str] = []
    for table in TABLES.values():
        lines += [f"### `{table.name}`", "", table.doc, "", f"Key: `{', '.join(table.key)}`", ""]
        lines += ["| column | type | nullable | rule | meaning |", "|---|---|---|---|---|"]
        for name, col in table.columns.items():
            rule = []
            if col.allowed:
                rule.append("one of " + ", ".join(f"`{v}`" for v in col.allowed))
            if col.pattern:
                rule.append(f"matches `{col.pattern}`")
            if col.ge is not None:
                rule.append(f">= {col.ge:g}")
            if col.le is not None:
                rule.append(f"<= {col.le:g}")
            if col.unique:
                rule.append("unique")
            if col.kind == "datetime":
                rule.append("from `earliest_event_date` to the export date" if col.event else "up to the export date")
            lines.append(
                f"| `{name}` | {col.kind} | {'yes' if col.nullable else 'no'} | {'; '.join(rule)} | {col.doc} |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(contract_markdown())
