"""Reminders: planned maintenance coming due, and a booking coming up.

Maintenance, per car and service cycle. The cycle is the forecast's base date (the last
maintenance visit, else the car's first odometer reading): a new maintenance visit starts
a new cycle, while new readings, which move the planned date, do not. The first reminder
(`maintenance:<car>:<base date>:first`) goes on any day from `days_before` days before the
planned date to the date itself, so a day missed, or a planned date that jumps over the
exact day, loses nothing. Once more (`...:again`) from `again_after_days` days after the
planned date, for a window as wide as the first's, when the client has not come since the
first one's window opened (whether the first went or not: a client without an address then
may have one now). Neither goes while the client has a booking holding time from today
on: a client who booked has heard us. Both are service messages, and wait out the client's
night when a caught-up day runs in it.

A booking coming up, only once it is confirmed: the day before (`booking:<id>:reminder:day`,
from `day_before_at` on the branch's clock, the day before its start there) and
`hours_before` the start (`booking:<id>:reminder:hours`). Each is due at an instant; once the
hours one is due the day one is no longer sent (the hours one says the same, nearer), and
a booking confirmed after a reminder fell due does not get that one (its confirmation has
just told the client).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, String, case, exists, false, literal, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.ext.asyncio import AsyncSession

from crm.booking import CONFIRMED, HOLDING, BookingRules, BranchHours
from crm.booking.notify import booking_section
from crm.clock import Moment
from crm.context import CarFacts, ClientFacts, CompanyInfo, message_context, reachable_channels
from crm.maintenance import MaintenancePolicy, forecast_query
from crm.recipients import FACT_COLUMNS, latest_cars
from crm.templates import TemplateLibrary
from gateway.consent import SERVICE
from gateway.outbox import Recipient, enqueue
from gateway.quiet import Night, morning_after
from storage.booking import Booking
from storage.models import Branch, Car, Client, OdometerReading, Visit
from storage.outbox import Message
from storage.sqlfunc import day_number

MAINTENANCE_TEMPLATE = "maintenance_reminder"
BOOKING_TEMPLATE = "booking_reminder"
FIRST, AGAIN = "first", "again"
DAY, HOURS = "day", "hours"
PAGE = 500
"""Reminders queued per transaction."""


@dataclass(frozen=True, slots=True)
class MaintenanceReminders:
    """How maintenance reminders go out (config `[reminders]`)."""

    library: TemplateLibrary
    company: CompanyInfo
    plan: tuple[str, ...]
    days_before: int
    again_after_days: int
    """0: no second reminder."""
    night: Night | None


@dataclass(frozen=True, slots=True)
class BookingReminders:
    """How booking reminders go out (config `[reminders]`)."""

    library: TemplateLibrary
    company: CompanyInfo
    plan: tuple[str, ...]
    day_before_at: time | None
    """None: no day-before reminder."""
    hours_before: timedelta
    """Zero: no reminder hours before."""
    night: Night | None


@dataclass(frozen=True, slots=True)
class DueMaintenance:
    """A car in a reminder's window on the day, not reminded for it yet."""

    car_id: int
    client_id: int
    which: str  # FIRST or AGAIN
    base_date: date
    planned: date
    due_by: str
    due_km: int | None
    booked: bool  # the client has a booking holding time from the day on
    came: bool  # the client came since the first reminder's window opened

    @property
    def key(self) -> str:
        return maintenance_key(self.car_id, self.base_date, self.which)


def maintenance_key(car_id: int, base_date: date, which: str) -> str:
    return f"maintenance:{car_id}:{base_date.isoformat()}:{which}"


async def maintenance_due(
    session: AsyncSession,
    policy: MaintenancePolicy,
    reminders: MaintenanceReminders,
    day: date,
    day_starts: datetime,
) -> list[DueMaintenance]:
    """Every car in a reminder's window on `day` whose reminder is not in the outbox yet,
    by car; `day_starts` is the instant the day begins (bookings from then on stop them).

    One query over the forecast of every car: only the cars in a window come out, so the
    list is a few weeks' worth of planned dates, not the fleet.
    """
    f = forecast_query(policy, day).subquery("forecast")
    lead, again_after = reminders.days_before, reminders.again_after_days
    first = f.c.days_left.between(0, lead)
    again = f.c.days_left.between(-(again_after + lead), -again_after) if again_after else false()
    which = case((f.c.days_left >= 0, literal(FIRST)), else_=literal(AGAIN))
    key = _concat("maintenance:", f.c.car_id, ":", f.c.base_date, ":", which)
    booked = exists().where(
        Booking.client_id == f.c.client_id,
        Booking.state.in_(HOLDING),
        Booking.starts_at >= day_starts,
    )
    window_opened = f.c.today_day + f.c.days_left - lead  # the planned date's day number - lead
    came = exists().where(
        Visit.client_id == f.c.client_id,
        Visit.visited_on <= day,
        day_number(Visit.visited_on) >= window_opened,
    )
    rows = await session.execute(
        select(
            f.c.car_id,
            f.c.client_id,
            which.label("which"),
            f.c.base_date,
            f.c.planned,
            f.c.due_by,
            f.c.base_km,
            f.c.interval_km,
            booked.label("booked"),
            came.label("came"),
        )
        .where(first | again, ~exists().where(Message.idempotency_key == key))
        .order_by(f.c.car_id)
    )
    return [
        DueMaintenance(
            car_id=row.car_id,
            client_id=row.client_id,
            which=row.which,
            base_date=row.base_date,
            planned=row.planned,
            due_by=row.due_by,
            due_km=None if row.base_km is None else row.base_km + row.interval_km,
            booked=bool(row.booked),
            came=bool(row.came),
        )
        for row in rows
    ]


async def remind_maintenance(
    session: AsyncSession,
    reminders: MaintenanceReminders,
    due: Sequence[DueMaintenance],
    moment: Moment,
) -> Counter[str]:
    """Queue the reminders of `due` (a page of `maintenance_due`), in the caller's
    transaction; counts queued, duplicates and skipped by why."""
    counts: Counter[str] = Counter()
    sending = []
    for item in due:
        if item.booked:
            counts["skipped (booked)"] += 1
        elif item.which == AGAIN and item.came:
            counts["skipped (came since)"] += 1
        else:
            sending.append(item)
    if not sending:
        return counts
    clients = await _clients(session, {item.client_id for item in sending})
    cars = await _cars(session, [item.car_id for item in sending])
    groups: dict[datetime | None, list[Recipient]] = defaultdict(list)
    for item in sending:
        client = clients.get(item.client_id)
        channels = () if client is None else reachable_channels(client, reminders.plan)
        if client is None or not channels:
            counts["skipped (no address)"] += 1
            continue
        section = {"due_on": item.planned, "due_km": item.due_km, "reason": item.due_by}
        context = message_context(
            reminders.company, client, cars.get(item.car_id), moment.today, maintenance=section
        )
        wait = _morning(client, reminders.company, reminders.night, moment.now)
        groups[wait].append(Recipient(item.client_id, item.key, context, channels=channels))
    await _queue(
        session, reminders.library, MAINTENANCE_TEMPLATE, reminders.plan, groups, moment, counts
    )
    return counts


# ------------------------------------------------------------------------------ bookings


@dataclass(frozen=True, slots=True)
class DueBooking:
    """A confirmed booking whose reminder is due now and not in the outbox yet."""

    booking_id: int
    client_id: int
    car_id: int | None
    branch_id: int
    which: str  # DAY or HOURS
    section: Mapping[str, Any]  # the context's `booking`

    @property
    def key(self) -> str:
        return booking_key(self.booking_id, self.which)


def booking_key(booking_id: int, which: str) -> str:
    return f"booking:{booking_id}:reminder:{which}"


def reminder_due(
    reminders: BookingReminders, zone: ZoneInfo, starts_at: datetime, now: datetime
) -> tuple[str, datetime] | None:
    """Which reminder of a booking starting at `starts_at` is due at `now`, and since when;
    None before the first is due or once the booking has started."""
    if now >= starts_at:
        return None
    if reminders.hours_before:
        hours_due = starts_at - reminders.hours_before
        if now >= hours_due:
            return HOURS, hours_due
    if reminders.day_before_at is not None:
        eve = starts_at.astimezone(zone).date() - timedelta(days=1)
        day_due = datetime.combine(eve, reminders.day_before_at, zone).astimezone(UTC)
        if now >= day_due:
            return DAY, day_due
    return None


async def bookings_due(
    session: AsyncSession, reminders: BookingReminders, rules: BookingRules, now: datetime
) -> tuple[list[DueBooking], Counter[str]]:
    """The confirmed bookings whose reminder is due at `now` and not queued yet, and what
    was skipped and why."""
    counts: Counter[str] = Counter()
    # A day-before reminder falls due at most two days before the start (at 00:00 the day
    # before a booking at 23:59), an hour more across a change of the clocks.
    horizon = max(timedelta(hours=49), reminders.hours_before)
    day_sent = exists().where(
        Message.idempotency_key == _concat("booking:", Booking.id, ":reminder:day")
    )
    hours_sent = exists().where(
        Message.idempotency_key == _concat("booking:", Booking.id, ":reminder:hours")
    )
    rows = await session.execute(
        select(
            Booking.id,
            Booking.client_id,
            Booking.car_id,
            Booking.branch_id,
            Booking.starts_at,
            Booking.confirmed_at,
            Booking.service_name,
            Branch.code,
            day_sent.label("day_sent"),
            hours_sent.label("hours_sent"),
        )
        .join(Branch, Branch.id == Booking.branch_id)
        .where(
            Booking.state == CONFIRMED,
            Booking.starts_at > now,
            Booking.starts_at <= now + horizon,
        )
        .order_by(Booking.starts_at, Booking.id)
    )
    due = []
    for row in rows:
        branch = _branch(rules, reminders.company, row.code)
        found = reminder_due(reminders, branch.zone, row.starts_at, now)
        if found is None:
            continue
        which, since = found
        if row.day_sent if which == DAY else row.hours_sent:
            continue
        if row.confirmed_at is not None and row.confirmed_at >= since:
            counts["skipped (confirmed since it fell due)"] += 1
            continue
        section = booking_section(branch, reminders.company, row.starts_at, row.service_name)
        due.append(DueBooking(row.id, row.client_id, row.car_id, row.branch_id, which, section))
    return due, counts


async def remind_bookings(
    session: AsyncSession, reminders: BookingReminders, due: Sequence[DueBooking], moment: Moment
) -> Counter[str]:
    """Queue the reminders of `due` (a page of `bookings_due`), in the caller's transaction.

    The day-before reminder waits out the client's night; the one hours before does not
    (it would come after the start)."""
    counts: Counter[str] = Counter()
    if not due:
        return counts
    clients = await _clients(session, {item.client_id for item in due})
    cars = await _cars(session, [item.car_id for item in due if item.car_id is not None])
    latest = await latest_cars(session, list({item.client_id for item in due}))
    groups: dict[datetime | None, list[Recipient]] = defaultdict(list)
    for item in due:
        client = clients.get(item.client_id)
        channels = () if client is None else reachable_channels(client, reminders.plan)
        if client is None or not channels:
            counts["skipped (no address)"] += 1
            continue
        car = cars.get(item.car_id) if item.car_id is not None else latest.get(item.client_id)
        context = message_context(
            reminders.company, client, car, moment.today, booking=dict(item.section)
        )
        wait = None
        if item.which == DAY:
            wait = _morning(client, reminders.company, reminders.night, moment.now)
        recipient = Recipient(item.client_id, item.key, context, item.branch_id, channels)
        groups[wait].append(recipient)
    await _queue(
        session, reminders.library, BOOKING_TEMPLATE, reminders.plan, groups, moment, counts
    )
    return counts


# -------------------------------------------------------------------------------- shared


async def _queue(
    session: AsyncSession,
    library: TemplateLibrary,
    name: str,
    plan: Sequence[str],
    groups: Mapping[datetime | None, list[Recipient]],
    moment: Moment,
    counts: Counter[str],
) -> None:
    """Queue the reminders as service messages, each group at its time (None: now)."""
    template = await library.get(session, name)
    for wait, recipients in groups.items():
        done = await enqueue(
            session, template, recipients, plan=plan, kind=SERVICE, now=moment.now, not_before=wait
        )
        counts["queued"] += done.queued
        counts["duplicates"] += done.duplicates


def _concat(*parts: Any) -> ColumnElement[str]:
    """Text parts and columns joined as one string in SQL (an idempotency key)."""
    pieces: list[ColumnElement[str]] = [
        literal(part, String) if isinstance(part, str) else sql_cast(part, String) for part in parts
    ]
    joined = pieces[0]
    for piece in pieces[1:]:
        joined = joined + piece
    return joined


def _branch(rules: BookingRules, company: CompanyInfo, code: str) -> BranchHours:
    """The branch's hours; a branch no longer configured keeps its code as its name."""
    found = rules.branches.get(code)
    if found is not None:
        return found
    return BranchHours(code=code, name=code, zone=ZoneInfo(company.timezone))


def _morning(
    client: ClientFacts, company: CompanyInfo, night: Night | None, now: datetime
) -> datetime | None:
    """When the client's night around `now` ends; None: it is day where they are."""
    return morning_after(now, ZoneInfo(client.timezone or company.timezone), night)


async def _clients(session: AsyncSession, client_ids: set[int]) -> dict[int, ClientFacts]:
    rows = await session.execute(select(*FACT_COLUMNS).where(Client.id.in_(client_ids)))
    facts = (ClientFacts(*cast(tuple[Any, ...], row)) for row in rows)
    return {client.id: client for client in facts}


async def _cars(session: AsyncSession, car_ids: Sequence[int]) -> dict[int, CarFacts]:
    """The cars with their last odometer reading."""
    if not car_ids:
        return {}
    odometer = (
        select(OdometerReading.km)
        .where(OdometerReading.car_id == Car.id)
        .order_by(OdometerReading.read_on.desc(), OdometerReading.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    rows = await session.execute(
        select(Car.id, Car.make, Car.model, Car.year, Car.plate, Car.vin, odometer).where(
            Car.id.in_(list(car_ids))
        )
    )
    return {row[0]: CarFacts(*row[1:]) for row in rows}


def pages(items: Sequence[Any], size: int | None = None) -> list[Sequence[Any]]:
    """`items` in slices of `size` (None: `PAGE`), one transaction each."""
    size = size or PAGE
    return [items[start : start + size] for start in range(0, len(items), size)]
