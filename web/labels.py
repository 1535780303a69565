"""The Chinese names and colours of the codes pages show: levels, engines, statuses, outcomes, categories.

Codes live with their rules (levels in models/levels.py, statuses and outcomes in
models/warning_tables.py, categories in features/schema.py); how a person reads them lives
here, once, for the published pages, the reports, the workbench and the spreadsheet.
"""

from __future__ import annotations

import math
from typing import Any

from features.schema import CATEGORIES, CATEGORY_NAMES
from models.levels import LEVELS, RAISED_BY
from models.warning_tables import OUTCOMES, STATUSES

LEVEL_COLOURS = {"red": "#d62728", "orange": "#ff7f0e", "yellow": "#e6b800", "blue": "#1f77b4"}
LEVEL_NAMES = {"red": "红色预警", "orange": "橙色预警", "yellow": "黄色预警", "blue": "蓝色预警"}
LEVEL_SHORT = {"red": "红", "orange": "橙", "yellow": "黄", "blue": "蓝"}
ENGINE_NAMES = {"model": "模型", "rules": "积分规则"}
RAISED_BY_NAMES = {"rules": "积分规则", "model": "模型", "both": "规则与模型"}
STATUS_NAMES = {"pushed": "已推送", "acknowledged": "已签收", "handled": "已处置", "fed_back": "已反馈"}
OUTCOME_NAMES = {
    "resolved": "已化解",
    "ongoing": "持续跟进",
    "escalated": "已激化（民转刑）",
    "false_alarm": "误报",
    "referred": "已移交（调解/职能部门）",
}
CATEGORY_COLOURS = dict(
    zip(
        CATEGORIES,
        ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#9c755f"),
        strict=False,
    )
)

assert tuple(LEVEL_NAMES) == LEVELS and tuple(RAISED_BY_NAMES) == RAISED_BY
assert set(STATUS_NAMES) == set(STATUSES), "every status needs a Chinese name"
assert set(OUTCOMES) <= set(OUTCOME_NAMES), "every outcome needs a Chinese name"


def missing(value: Any) -> bool:
    """None, NA, NaT or NaN: a cell with nothing to show."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    try:
        import pandas as pd

        return value is pd.NA or value is pd.NaT
    except ImportError:  # pragma: no cover - pandas is a dependency
        return False


def _named(names: dict[str, str], value: Any) -> str:
    return "" if missing(value) else names.get(value, str(value))


def level_name(level: Any) -> str:
    """红色预警 for ``red``; an unknown code shows as itself, nothing as empty."""
    return _named(LEVEL_NAMES, level)


def category_name(category: Any) -> str:
    """家庭纠纷 for ``family``."""
    return _named(CATEGORY_NAMES, category)


def status_name(status: Any) -> str:
    return _named(STATUS_NAMES, status)


def outcome_name(outcome: Any) -> str:
    return _named(OUTCOME_NAMES, outcome)


def engine_name(engine: Any) -> str:
    return _named(ENGINE_NAMES, engine)


def raised_by_name(value: Any) -> str:
    return _named(RAISED_BY_NAMES, value)
