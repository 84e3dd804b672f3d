"""Calendar periods of a budget: the day and the month an instant falls in, in the budgets' time zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

DAY_KEEP_S = 62 * 86_400  # a day's spend is kept this long (``toolbag spend --since`` reaches this far back)
MONTH_KEEP_S = 400 * 86_400


@dataclass(frozen=True)
class Period:
    """One budget period: ``kind`` ``day`` or ``month``, its id (``d:2026-12-04``, ``m:2026-12``), when it
    resets (the next one begins) and how long its spend is kept."""

    kind: str
    id: str
    resets_at: datetime
    keep_s: int


def periods(now_s: float, time_zone: str) -> tuple[Period, Period]:
    """The day and the month that ``now_s`` (unix seconds) falls in."""
    zone = ZoneInfo(time_zone)
    local = datetime.fromtimestamp(now_s, zone)
    return day_period(local.date(), zone), month_period(local.date(), zone)


def day_period(day: date, zone: ZoneInfo) -> Period:
    nxt = day + timedelta(days=1)
    return Period("day", f"d:{day.isoformat()}", datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone), DAY_KEEP_S)


def month_period(day: date, zone: ZoneInfo) -> Period:
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return Period("month", f"m:{day.year:04d}-{day.month:02d}", datetime(year, month, 1, tzinfo=zone), MONTH_KEEP_S)
