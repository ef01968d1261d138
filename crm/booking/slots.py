"""Free slots: a branch's working time, cut on the slot grid, minus what bookings hold.

A slot is a start time. It is free for a service when the service fits between it and
the end of the working stretch it starts in (it never runs across lunch or past closing),
it is at least `min_lead` from now and within the horizon, and at no instant of it do as
many bookings run as the branch has bays. Slots are cut from each stretch's start in
absolute time, so a day on which the clocks change has its hours and no slot twice.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum

from sqlalchemy import Integer, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.booking.calendar import BookingRules, BranchHours, Service
from storage.booking import Booking
from storage.models import Branch

REQUESTED, CONFIRMED, ARRIVED = "requested", "confirmed", "arrived"
COMPLETED, CANCELLED, DECLINED, NO_SHOW = "completed", "cancelled", "declined", "no_show"
HOLDING = (REQUESTED, CONFIRMED, ARRIVED)
"""States in which a booking holds its time."""
STATES = (*HOLDING, COMPLETED, CANCELLED, DECLINED, NO_SHOW)


class DayState(StrEnum):
    FREE = "free"
    FULL = "full"
    """Works that day, but nothing is free for this service."""
    CLOSED = "closed"
    """Does not work: a weekday off, a holiday, a closed date."""
    OUT = "out"
    """Before the first bookable moment or past the horizon."""


@dataclass(frozen=True, slots=True)
class Day:
    day: date
    state: DayState
    starts: tuple[datetime, ...] = ()
    """Free starts, UTC."""


Held = Sequence[tuple[datetime, datetime]]


def starts_on(branch: BranchHours, service: Service, day: date, step: timedelta) -> list[datetime]:
    """Every start on the grid at which the service fits in a working stretch of the day."""
    found = []
    for begin, end in branch.stretches(day):
        at = begin
        while at + service.duration <= end:
            found.append(at)
            at += step
    return found


def busiest(held: Held, start: datetime, end: datetime) -> int:
    """The most bookings of `held` (sorted by start) running at one instant of [start, end)."""
    running = [(s, e) for s, e in held if s < end and e > start]
    if not running:
        return 0
    # The most overlap is reached at the start of the stretch or at some booking's start.
    points = [start, *(s for s, _ in running if s > start)]
    return max(sum(1 for s, e in running if s <= point < e) for point in points)


def is_free(held: Held, start: datetime, end: datetime, bays: int) -> bool:
    return busiest(held, start, end) < bays


async def held_times(
    session: AsyncSession,
    branch_code: str,
    since: datetime,
    until: datetime,
    *,
    leaving_out: int | None = None,
) -> list[tuple[datetime, datetime]]:
    """(start, end) of the branch's bookings that hold time in [since, until), by start."""
    params = {
        "branch": branch_code,
        "since": since,
        "until": until,
        "after": since - timedelta(days=1),
        "out": leaving_out or 0,
    }
    rows = await session.execute(_HELD, params)
    return [(start, end) for start, end in rows]


_HELD = (
    select(Booking.starts_at, Booking.ends_at)
    .join(Branch, Branch.id == Booking.branch_id)
    .where(
        Branch.code == bindparam("branch"),
        Booking.state.in_(HOLDING),
        Booking.starts_at < bindparam("until"),
        # A booking is never longer than a day: this bound lets the index skip the past.
        Booking.starts_at > bindparam("after"),
        Booking.ends_at > bindparam("since"),
        Booking.id != bindparam("out", type_=Integer),
    )
    .order_by(Booking.starts_at)
)


async def free_days(
    session: AsyncSession,
    rules: BookingRules,
    branch: BranchHours,
    service: Service,
    now: datetime,
    *,
    first: date | None = None,
    days: int | None = None,
    leaving_out: int | None = None,
) -> list[Day]:
    """Each day from `first` (default: today at the branch) for `days` (default: to the end
    of the horizon), with its free starts; `leaving_out`: a booking being moved, whose own
    time counts as free."""
    today = branch.local(now).date()
    first = first or today
    last = rules.last_day(branch, now)
    count = days if days is not None else (last - first).days + 1
    wanted = [first + timedelta(days=n) for n in range(max(0, count))]
    if not wanted:
        return []
    since = branch.instant(wanted[0], time(0))
    until = branch.instant(wanted[-1] + timedelta(days=1), time(0))
    held = await held_times(session, branch.code, since, until, leaving_out=leaving_out)
    earliest = now + rules.min_lead
    return [_day(rules, branch, service, day, held, earliest, last) for day in wanted]


def _day(
    rules: BookingRules,
    branch: BranchHours,
    service: Service,
    day: date,
    held: Held,
    earliest: datetime,
    last: date,
) -> Day:
    if day > last:
        return Day(day, DayState.OUT)
    starts = starts_on(branch, service, day, rules.slot)
    if not starts:
        return Day(day, DayState.CLOSED)
    ahead = [start for start in starts if start >= earliest]
    if not ahead:
        return Day(day, DayState.OUT)
    # The day's bookings only: bisect on starts, a booking is never longer than a day.
    begin = bisect_left(held, (ahead[0] - timedelta(days=1),))
    stop = bisect_right(held, (ahead[-1] + service.duration,))
    day_held = held[begin:stop]
    free = tuple(s for s in ahead if is_free(day_held, s, s + service.duration, branch.bays))
    return Day(day, DayState.FREE if free else DayState.FULL, free)


async def nearest_free(
    session: AsyncSession,
    rules: BookingRules,
    branch: BranchHours,
    service: Service,
    around: datetime,
    now: datetime,
    *,
    count: int = 5,
    leaving_out: int | None = None,
) -> list[datetime]:
    """The `count` free starts nearest to `around` (before or after it), in time order:
    what a client who lost a slot is offered instead."""
    center = branch.local(around).date()
    first = max(center - timedelta(days=3), branch.local(now).date())
    days = await free_days(
        session, rules, branch, service, now, first=first, days=8, leaving_out=leaving_out
    )
    starts = [start for day in days for start in day.starts]
    if len(starts) < count:  # a busy week: look further ahead
        later = await free_days(
            session,
            rules,
            branch,
            service,
            now,
            first=first + timedelta(8),
            leaving_out=leaving_out,
        )
        starts += [start for day in later for start in day.starts]
    nearest = sorted(starts, key=lambda start: (abs(start - around), start))[:count]
    return sorted(nearest)


def on_grid(rules: BookingRules, branch: BranchHours, service: Service, start: datetime) -> bool:
    """Whether `start` is a start the grid offers for the service on its day."""
    return start in starts_on(branch, service, branch.local(start).date(), rules.slot)


def flatten(days: Iterable[Day]) -> list[datetime]:
    return [start for day in days for start in day.starts]
