"""Which days a report covers: the calendar week, month or quarter that contains its end day.

A center reports by calendar period (周报 Monday to Sunday, 月报, 季报), so the
period is the calendar one that holds ``--end``, cut at ``--end`` when that
day is not its last (a report "to date"). The comparison is the whole
calendar period before it; counts are compared as rates per day, so a period
to date is not made to look quiet by being short.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

KINDS = ("week", "month", "quarter")
KIND_NAMES = {"week": "周报", "month": "月报", "quarter": "季报"}


@dataclass(frozen=True)
class Period:
    """The report's days (``first`` .. ``last``, both included) and the whole calendar period before them."""

    kind: str
    first: dt.date
    last: dt.date
    full_last: dt.date
    previous_first: dt.date
    previous_last: dt.date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    @property
    def previous_days(self) -> int:
        return (self.previous_last - self.previous_first).days + 1

    @property
    def partial(self) -> bool:
        """Whether the period is cut at its end day (a report to date)."""
        return self.last < self.full_last

    @property
    def name(self) -> str:
        """The folder name: ``month-2024-12-30``."""
        return f"{self.kind}-{self.last.isoformat()}"

    @property
    def title(self) -> str:
        """How a reader names it: 2024年12月 月报, 2024年第4季度 季报, 2024年第52周 周报."""
        if self.kind == "month":
            head = f"{self.first.year}年{self.first.month}月"
        elif self.kind == "quarter":
            head = f"{self.first.year}年第{(self.first.month - 1) // 3 + 1}季度"
        else:
            year, week, _ = self.first.isocalendar()
            head = f"{year}年第{week}周"
        return f"{head} {KIND_NAMES[self.kind]}"


def _start(kind: str, day: dt.date) -> dt.date:
    if kind == "week":
        return day - dt.timedelta(days=day.weekday())
    if kind == "month":
        return day.replace(day=1)
    return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)


def _next_start(kind: str, first: dt.date) -> dt.date:
    if kind == "week":
        return first + dt.timedelta(days=7)
    months = 1 if kind == "month" else 3
    month = first.month - 1 + months
    return dt.date(first.year + month // 12, month % 12 + 1, 1)


def report_period(kind: str, end: dt.date) -> Period:
    """The calendar ``kind`` (week, month, quarter) containing ``end``, cut at ``end``, and the one before."""
    if kind not in KINDS:
        raise ValueError(f"period {kind!r} is not one of {', '.join(KINDS)}")
    first = _start(kind, end)
    full_last = _next_start(kind, first) - dt.timedelta(days=1)
    previous_last = first - dt.timedelta(days=1)
    return Period(kind, first, end, full_last, _start(kind, previous_last), previous_last)
