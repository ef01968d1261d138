"""The clock every crm/ service is handed: a callable returning an aware UTC datetime.

Nothing in crm/ reads the time itself, so tests and catch-up runs can set it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def local_today(clock: Clock, tz: ZoneInfo) -> date:
    """Today's date where the company is (a visit at 01:00 Moscow time is already tomorrow)."""
    return clock().astimezone(tz).date()


def years_before(day: date, years: int) -> date:
    """The same day `years` earlier; 29 February becomes 28 February in other years."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return date(day.year - years, 2, 28)


@dataclass(frozen=True, slots=True)
class Moment:
    """One instant as crm/ records it: `now` in UTC for timestamps, `today` where the
    company is, for what is counted in days (expiry, tiers, birthdays)."""

    now: datetime
    today: date

    @classmethod
    def of(cls, clock: Clock, tz: ZoneInfo) -> Moment:
        now = clock()
        return cls(now, now.astimezone(tz).date())
