"""When a branch works: its week, lunch, bays, days off and the country's holidays.

Everything here is the branch's wall clock: hours are local times in the branch's time
zone, and a day's working stretches become absolute instants (UTC) only when slots are
cut from them, so a day on which the clocks change keeps its hours.

Public holidays and their transferred days off come from the `holidays` package's
production calendar for the company's country (Russia's by default); a transferred
working day (a Saturday the calendar makes a working day) is worked with the branch's
Monday hours. A branch may `work_on_holidays`; `closed` dates are off whatever else says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import cached_property
from zoneinfo import ZoneInfo

import holidays

from crm.errors import DomainError, NotFound

DEFAULT_HOURS = (time(9), time(18))
DEFAULT_WEEK: tuple[tuple[time, time] | None, ...] = (DEFAULT_HOURS,) * 6 + (None,)
"""Monday to Saturday 09:00-18:00: a branch with no hours configured books out of the box."""

Span = tuple[time, time]


@dataclass(frozen=True, slots=True)
class Service:
    code: str
    name: str
    duration: timedelta
    kind: str
    price_from: Decimal | None = None
    branches: frozenset[str] = frozenset()
    """Branch codes that offer it; empty: every branch."""

    def offered_at(self, branch: str) -> bool:
        return not self.branches or branch in self.branches


@dataclass(frozen=True)
class BranchHours:
    """One bookable branch."""

    code: str
    name: str
    zone: ZoneInfo
    week: tuple[Span | None, ...] = DEFAULT_WEEK
    """Monday first; None: closed that weekday."""
    lunch: Span | None = None
    bays: int = 1
    closed: frozenset[date] = frozenset()
    work_on_holidays: bool = False
    country: str = "RU"
    address: str = ""
    phone: str = ""
    _calendar: dict[int, holidays.HolidayBase] = field(
        default_factory=dict, repr=False, compare=False, hash=False
    )

    def hours_on(self, day: date) -> Span | None:
        """The day's opening and closing time, or None when the branch does not work."""
        if day in self.closed:
            return None
        calendar = self._holidays(day.year)
        if calendar is not None and not self.work_on_holidays:
            if day in calendar:
                return None
            if day in calendar.weekend_workdays:
                return self.week[0] or DEFAULT_HOURS
        return self.week[day.weekday()]

    def stretches(self, day: date) -> list[tuple[datetime, datetime]]:
        """The day's working time as absolute (UTC) stretches, lunch cut out."""
        hours = self.hours_on(day)
        if hours is None:
            return []
        parts = [hours]
        if self.lunch is not None:
            (start, end), (lunch_start, lunch_end) = hours, self.lunch
            if lunch_start < end and lunch_end > start:
                parts = [(start, lunch_start), (lunch_end, end)]
                parts = [(a, b) for a, b in parts if a < b]
        return [(self.instant(day, a), self.instant(day, b)) for a, b in parts]

    def instant(self, day: date, at: time) -> datetime:
        """The branch's wall clock time on `day` as a UTC instant (time.max: midnight after)."""
        if at == time.max:
            return self.instant(day + timedelta(days=1), time(0))
        return datetime.combine(day, at, self.zone).astimezone(UTC)

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.zone)

    def _holidays(self, year: int) -> holidays.HolidayBase | None:
        found = self._calendar.get(year)
        if found is None and self.country:
            try:
                found = holidays.country_holidays(self.country, years=year)
            except NotImplementedError:  # a country the package does not know: weekdays only
                return None
            self._calendar[year] = found
        return found


@dataclass(frozen=True)
class BookingRules:
    """Capacity and policy (`[[service]]`, `[[branch]]`, `[booking]`)."""

    services: Mapping[str, Service]
    branches: Mapping[str, BranchHours]
    """Bookable branches by code, in the config's order (the first is the default)."""
    slot: timedelta = timedelta(minutes=30)
    min_lead: timedelta = timedelta(hours=2)
    horizon_days: int = 21
    cancel_before: timedelta = timedelta(hours=2)
    auto_confirm: bool = False

    def service(self, code: str) -> Service:
        found = self.services.get(code)
        if found is None:
            raise NotFound(f"no service {code!r}", field="service", code="unknown_service")
        return found

    def branch(self, code: str | None) -> BranchHours:
        if code is None:
            if len(self.branches) == 1:
                return next(iter(self.branches.values()))
            raise DomainError("choose a branch", field="branch")
        found = self.branches.get(code)
        if found is None:
            raise NotFound(f"no branch {code!r} takes bookings", field="branch")
        return found

    def branches_for(self, service: Service) -> list[BranchHours]:
        return [b for code, b in self.branches.items() if service.offered_at(code)]

    def services_at(self, branch: str | None = None) -> list[Service]:
        return [s for s in self.services.values() if branch is None or s.offered_at(branch)]

    @cached_property
    def codes(self) -> tuple[str, ...]:
        return tuple(self.branches)

    def client_may_change(self, starts_at: datetime, now: datetime) -> bool:
        """Whether a client may still cancel or move a booking themselves (else: call)."""
        return now <= starts_at - self.cancel_before

    def first_day(self, branch: BranchHours, now: datetime) -> date:
        """The first day a booking may be on: the earliest start allowed is now + min_lead."""
        return branch.local(now + self.min_lead).date()

    def last_day(self, branch: BranchHours, now: datetime) -> date:
        """The last day of the horizon, counted from today at the branch."""
        return branch.local(now).date() + timedelta(days=self.horizon_days - 1)
